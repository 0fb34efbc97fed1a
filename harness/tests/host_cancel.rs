//! A downstream client resetting a paused stream (`PendingStream::cancel`), the end
//! of a stream's contexts (`on_log`, `on_done`, cancelled callouts) and
//! `Host::next_event_in` (envoy `conn_manager_impl.cc` `doDeferredStreamDestroy`,
//! `extensions/common/wasm/context.cc` `Context::log`/`onDestroy`/`~Context`).
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

mod common;

use std::time::Duration;

use common::probe_with;
use meshwasm_harness::host::{FilterSpec, HarnessError, Host};

/// Probe `name` recording `on_log`/`on_done` in shared data `probe_lifecycle`.
fn probe(name: &str, extra: &str) -> FilterSpec {
    probe_with(
        name,
        &format!(r#"{{"name": "{name}", "lifecycle": true{extra}}}"#),
    )
}

fn lifecycle(host: &Host) -> String {
    let value = host.shared_data("probe", "probe_lifecycle").unwrap().0;
    String::from_utf8(value).unwrap()
}

#[test]
fn a_client_reset_of_a_paused_stream_logs_every_filter_then_ends_them() {
    // Arrange
    let mut host = Host::builder().build().unwrap();
    let chain = host.load(&[probe("a", ""), probe("b", "")]).unwrap();
    let stream = chain
        .request("GET", "/x")
        .header("x-probe-filter", "a")
        .header("x-probe-op", "wait-tick")
        .start()
        .unwrap();
    assert!(stream.is_paused());
    // Act
    let out = stream.cancel().unwrap();
    // Assert
    assert_eq!(out.status(), 0);
    assert!(out.was_reset());
    assert!(out.was_cancelled());
    assert!(out.upstream_request().is_none());
    assert!(out.local_reply().is_none());
    assert!(out.body().is_empty());
    assert!(out.response_headers().is_empty());
    // `b` was never reached: `Context::log` creates its context for `on_log`.
    assert_eq!(lifecycle(&host), "log:a,log:b,done:a,done:b,");
    assert!(out.fuel_by_filter().iter().all(|(_, fuel)| *fuel > 0));
}

#[test]
fn a_completed_stream_ends_its_filters_in_the_same_order() {
    // Arrange
    let mut host = Host::builder().build().unwrap();
    let chain = host.load(&[probe("a", ""), probe("b", "")]).unwrap();
    // Act
    let out = chain
        .request("GET", "/x")
        .header("x-probe-filter", "a")
        .header("x-probe-op", "status:403")
        .send()
        .unwrap();
    // Assert
    assert_eq!(out.status(), 403);
    assert!(!out.was_reset() && !out.was_cancelled());
    assert_eq!(lifecycle(&host), "log:a,log:b,done:a,done:b,");
}

#[test]
fn the_callouts_of_a_cancelled_stream_are_cancelled() {
    // Arrange
    let mut host = Host::builder().cluster("authz").build().unwrap();
    let chain = host.load(&[probe("a", "")]).unwrap();
    let stream = chain
        .request("GET", "/x")
        .header("x-probe-op", "call:authz")
        .start()
        .unwrap();
    let token = stream.pending_calls()[0].token;
    // Act
    let out = stream.cancel().unwrap();
    // Assert
    assert!(out.was_cancelled());
    assert!(host.pending_calls().is_empty());
    let late = host.respond(token, &[(":status", "200")], b"", &[]);
    assert!(matches!(late, Err(HarnessError::UnknownToken(t)) if t == token));
    assert_eq!(host.next_event_in(), None, "the call's timeout is gone too");
    assert_eq!(lifecycle(&host), "log:a,done:a,");
}

#[test]
fn a_tick_after_the_cancel_cannot_set_the_gone_context_as_effective() {
    // Arrange
    let mut host = Host::builder().build().unwrap();
    let chain = host.load(&[probe("a", r#", "tick_ms": 100"#)]).unwrap();
    let stream = chain
        .request("GET", "/x")
        .header("x-probe-op", "wait-tick")
        .start()
        .unwrap();
    stream.cancel().unwrap();
    // Act
    host.advance(Duration::from_millis(100)).unwrap();
    // Assert
    let refused: Vec<String> = host
        .logs()
        .into_iter()
        .map(|l| l.message)
        .filter(|m| m.contains("set_effective_context"))
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].ends_with("Err(BadArgument)"), "{refused:?}");
    assert!(!chain.is_failed(0, 0));
}

#[test]
fn cancelling_a_completed_stream_returns_its_outcome() {
    // Arrange
    let mut host = Host::builder().build().unwrap();
    let chain = host.load(&[probe("a", "")]).unwrap();
    let stream = chain.request("GET", "/x").start().unwrap();
    assert!(stream.is_done());
    // Act
    let out = stream.cancel().unwrap();
    // Assert
    assert_eq!(out.status(), 200);
    assert!(!out.was_cancelled());
    assert!(out.upstream_request().is_some());
}

#[test]
fn next_event_in_is_the_time_to_the_next_tick_or_call_timeout() {
    // Arrange
    let mut host = Host::builder().cluster("authz").build().unwrap();
    assert_eq!(host.next_event_in(), None);
    let chain = host.load(&[probe("a", r#", "tick_ms": 100"#)]).unwrap();
    assert_eq!(host.next_event_in(), Some(Duration::from_millis(100)));
    // Act
    host.advance(Duration::from_millis(30)).unwrap();
    let _stream = chain
        .request("GET", "/x")
        .header("x-probe-op", "call:authz")
        .header("x-probe-timeout-ms", "20")
        .start()
        .unwrap();
    // Assert
    assert_eq!(host.next_event_in(), Some(Duration::from_millis(20)));
    host.advance(Duration::from_millis(20)).unwrap();
    assert_eq!(host.next_event_in(), Some(Duration::from_millis(50)));
}
