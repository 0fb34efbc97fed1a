//! The fault filter's timers, as the glue owns them (docs/architecture.md):
//! a VM ticks only while a stream waits, the tick is armed for the earliest
//! deadline, every paused stream resumes at its own deadline, and a stream
//! reset by its client while paused is forgotten — no tick left armed, no
//! active fault held. Observed through the harness's virtual clock, which
//! follows Envoy's `Wasm::setTimerPeriod` (setting the period restarts the
//! tick).
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use meshwasm_harness::host::{Chain, FilterSpec, Host, UpstreamResponse};
use serde_json::json;

/// A VirtualService on host `a`: `x-delay: <ms>` selects a rule delaying
/// 100 % of its requests by that many ms.
fn config() -> String {
    let rule = |ms: u64| {
        json!({"match": [{"headers": {"x-delay": {"exact": ms.to_string()}}}],
               "fault": {"delay": {"fixedDelay": format!("{ms}ms"), "percentage": {"value": 100}}},
               "route": [{"destination": {"host": "a"}}]})
    };
    json!({"resources": [{
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "a"},
        "spec": {"hosts": ["a"], "http": [rule(100), rule(300), rule(1000),
                 {"route": [{"destination": {"host": "a"}}]}]}}]})
    .to_string()
}

fn setup() -> (Host, Chain) {
    let mut host = Host::builder().seed(1).build().unwrap();
    let wasm = meshwasm_harness::envoy::wasm_path("fault");
    let chain = host
        .load(&[FilterSpec::new("meshwasm.fault", wasm).config(config())])
        .unwrap();
    chain.set_upstream(|_| UpstreamResponse::new(200));
    (host, chain)
}

fn active(host: &Host) -> u64 {
    host.metric("meshwasm.fault.active_faults").unwrap_or(0)
}

#[test]
fn an_idle_filter_never_ticks_and_an_undelayed_request_arms_nothing() {
    let (host, chain) = setup();
    assert_eq!(host.next_event_in(), None);

    let out = chain.request("GET", "/").authority("a").send().unwrap();

    assert_eq!(out.status(), 200);
    assert_eq!(host.next_event_in(), None);
}

#[test]
fn the_tick_is_armed_for_the_earliest_deadline_and_stops_when_nothing_waits() {
    // Arrange: a 1 s delay, then a 100 ms one that must re-arm the tick.
    let (mut host, chain) = setup();
    let slow = chain
        .request("GET", "/")
        .authority("a")
        .header("x-delay", "1000")
        .start()
        .unwrap();
    assert_eq!(host.next_event_in(), Some(Duration::from_millis(1000)));
    let fast = chain
        .request("GET", "/")
        .authority("a")
        .header("x-delay", "100")
        .start()
        .unwrap();
    assert_eq!(host.next_event_in(), Some(Duration::from_millis(100)));
    assert_eq!(active(&host), 2);

    // Act + Assert: each resumes at its own deadline, no earlier.
    host.advance(Duration::from_millis(99)).unwrap();
    assert!(fast.is_paused());
    host.advance(Duration::from_millis(1)).unwrap();
    assert!(fast.is_done() && slow.is_paused());
    assert_eq!(host.next_event_in(), Some(Duration::from_millis(900)));
    host.advance(Duration::from_millis(900)).unwrap();
    assert!(slow.is_done());
    assert_eq!(fast.finish().unwrap().status(), 200);
    assert_eq!(slow.finish().unwrap().status(), 200);
    assert_eq!(host.next_event_in(), None, "nothing waits: no tick");
    assert_eq!(active(&host), 0);
}

#[test]
fn many_paused_streams_all_resume_on_time() {
    let (mut host, chain) = setup();
    let delays = [100u64, 300, 1000];
    let streams: Vec<_> = (0..60)
        .map(|i| {
            let ms = delays[i % 3];
            let s = chain
                .request("GET", "/")
                .authority("a")
                .header("x-delay", ms.to_string())
                .start()
                .unwrap();
            (ms, s)
        })
        .collect();
    assert_eq!(active(&host), 60);

    let mut elapsed = 0;
    for step in [100u64, 300, 1000] {
        host.advance(Duration::from_millis(step - elapsed - 1))
            .unwrap();
        assert!(
            streams
                .iter()
                .filter(|(ms, _)| *ms >= step)
                .all(|(_, s)| s.is_paused())
        );
        host.advance(Duration::from_millis(1)).unwrap();
        assert!(
            streams
                .iter()
                .filter(|(ms, _)| *ms <= step)
                .all(|(_, s)| s.is_done())
        );
        elapsed = step;
    }

    assert_eq!(active(&host), 0);
    assert_eq!(host.metric("meshwasm.fault.delays_injected"), Some(60));
    assert_eq!(host.next_event_in(), None);
}

#[test]
fn a_client_hanging_up_while_delayed_is_forgotten_cleanly() {
    // Arrange
    let (mut host, chain) = setup();
    let gone = chain
        .request("GET", "/")
        .authority("a")
        .header("x-delay", "100")
        .start()
        .unwrap();
    let stays = chain
        .request("GET", "/")
        .authority("a")
        .header("x-delay", "300")
        .start()
        .unwrap();
    // Act
    let out = gone.cancel().unwrap();
    // Assert: its fault is given back at once and the tick moves on to the
    // other stream's deadline; nothing ever wakes the reset stream.
    assert!(out.was_cancelled());
    assert!(out.upstream_request().is_none());
    assert_eq!(active(&host), 1);
    assert_eq!(host.next_event_in(), Some(Duration::from_millis(300)));
    host.advance(Duration::from_millis(300)).unwrap();
    assert_eq!(stays.finish().unwrap().status(), 200);
    assert_eq!(active(&host), 0);
    assert_eq!(host.next_event_in(), None);
    assert!(!chain.is_failed(0, 0));
}
