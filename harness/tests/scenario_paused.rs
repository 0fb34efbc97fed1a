//! The scenario runner's harness backend drives a request a filter holds paused
//! until its `on_tick` (as a fault delay does): it runs the virtual clock to the
//! next tick, and the time waited counts in the step's `elapsed_ms`.
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

use meshwasm_harness::scenario::{Backend, HarnessBackend, Scenario, Started};

fn harness(scenario: &Scenario) -> HarnessBackend {
    match HarnessBackend::start(scenario, 1).unwrap() {
        Started::Running(h) => h,
        Started::Refused(log) => panic!("refused:\n{log}"),
    }
}

#[test]
fn a_request_held_until_a_tick_takes_the_tick_s_virtual_time() {
    // Arrange: the probe's tick is armed at start-up, 5 s ahead.
    let scenario = Scenario::from_yaml(
        "paused",
        r#"
filters: [probe]
config:
  raw: '{"name": "p", "tick_ms": 5000}'
requests:
  - name: the probe holds the request until its tick
    headers: {x-probe-op: wait-tick, x-probe-reply: pass, x-test-delay-ms: "30"}
    expect: {status: 200, upstream: v1, elapsed_ms: {min: 5030, max: 5030}}
  - name: a request that is not held takes only the upstream's time
    headers: {x-test-delay-ms: "30"}
    expect: {status: 200, upstream: v1, elapsed_ms: {min: 30, max: 30}}
  - name: the next hold ends at the re-armed tick
    headers: {x-probe-op: wait-tick, x-probe-reply: pass}
    expect: {status: 200, upstream: v1, elapsed_ms: {min: 4940, max: 4940}}
"#,
    )
    .unwrap();
    let mut h = harness(&scenario);
    // Act
    let result = scenario.run(&mut [&mut h]);
    // Assert
    result.unwrap();
}

#[test]
fn a_request_held_with_nothing_scheduled_is_an_error() {
    // Arrange: no tick, so nothing will ever resume the request.
    let scenario = Scenario::from_yaml(
        "stuck",
        r#"
filters: [probe]
config:
  raw: '{"name": "p"}'
requests:
  - name: held forever
    headers: {x-probe-op: wait-tick, x-probe-reply: pass}
    expect: {status: 200}
"#,
    )
    .unwrap();
    let mut h = harness(&scenario);
    // Act
    let err = h.send(&scenario.requests[0]).unwrap_err();
    // Assert
    assert!(format!("{err:#}").contains("no tick"), "{err:#}");
}
