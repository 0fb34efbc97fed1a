//! Http callouts, pauses, resumes, timeouts and ticks on the virtual clock
//! (SPEC §A.2, §E.1–E.3).
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

mod common;

use std::time::Duration;

use common::probe_with;
use meshwasm_harness::host::{FilterSpec, HarnessError, Host};

fn probe(config: &str) -> FilterSpec {
    probe_with("a", config)
}

#[test]
fn a_paused_request_resumes_when_its_callout_is_answered() {
    // Arrange
    let mut host = Host::builder().cluster("authz").build().unwrap();
    let chain = host.load(&[probe(r#"{"name": "a"}"#)]).unwrap();
    let stream = chain
        .request("GET", "/x")
        .header("x-probe-op", "call:authz")
        .start()
        .unwrap();
    assert!(stream.is_paused());
    let call = host.pending_calls().pop().unwrap();
    // Act
    host.respond(call.token, &[(":status", "200")], b"allowed", &[])
        .unwrap();
    // Assert
    let out = stream.finish().unwrap();
    assert_eq!(call.cluster, "authz");
    assert_eq!(call.header(":authority"), Some("authz"));
    assert_eq!(call.timeout, Some(Duration::from_millis(1000)));
    assert_eq!(
        out.body_text(),
        r#"{"probe":"a","call.status":"200","call.body":"allowed"}"#
    );
    assert!(host.pending_calls().is_empty());
}

#[test]
fn a_request_resumed_after_a_callout_reaches_the_upstream() {
    // Arrange
    let mut host = Host::builder().cluster("authz").build().unwrap();
    let chain = host.load(&[probe(r#"{"name": "a"}"#)]).unwrap();
    let stream = chain
        .request("GET", "/x")
        .header("x-probe-op", "call:authz")
        .header("x-probe-reply", "pass")
        .start()
        .unwrap();
    let token = stream.pending_calls()[0].token;
    // Act
    host.respond(token, &[(":status", "204")], b"", &[])
        .unwrap();
    // Assert
    let out = stream.finish().unwrap();
    assert_eq!(out.status(), 200);
    assert_eq!(
        out.upstream_header("x-probe-observations"),
        Some(r#"{"probe":"a","call.status":"204","call.body":""}"#)
    );
}

#[test]
fn finishing_a_paused_stream_is_an_error() {
    // Arrange
    let mut host = Host::builder().cluster("authz").build().unwrap();
    let chain = host.load(&[probe(r#"{"name": "a"}"#)]).unwrap();
    // Act
    let err = chain
        .request("GET", "/x")
        .header("x-probe-op", "call:authz")
        .send()
        .err()
        .unwrap();
    // Assert
    assert!(matches!(err, HarnessError::StillPaused(_)), "{err}");
}

#[test]
fn a_callout_times_out_on_the_virtual_clock_with_504() {
    // Arrange
    let mut host = Host::builder().cluster("authz").build().unwrap();
    let chain = host.load(&[probe(r#"{"name": "a"}"#)]).unwrap();
    let stream = chain
        .request("GET", "/x")
        .header("x-probe-op", "call:authz")
        .header("x-probe-timeout-ms", "50")
        .start()
        .unwrap();
    host.advance(Duration::from_millis(49)).unwrap();
    assert!(stream.is_paused());
    // Act
    host.advance(Duration::from_millis(1)).unwrap();
    // Assert
    let out = stream.finish().unwrap();
    assert_eq!(
        out.body_text(),
        r#"{"probe":"a","call.status":"504","call.body":"upstream request timeout"}"#
    );
}

#[test]
fn callouts_to_undeclared_clusters_or_without_authority_are_bad_arguments() {
    // Arrange
    let mut host = Host::builder().cluster("authz").build().unwrap();
    let chain = host.load(&[probe(r#"{"name": "a"}"#)]).unwrap();
    // Act
    let out = chain
        .request("GET", "/x")
        .header("x-probe-op", "call:nowhere,call-bad:authz")
        .send()
        .unwrap();
    // Assert
    assert_eq!(
        out.body_text(),
        r#"{"probe":"a","call:nowhere":"BadArgument","call-bad:authz":"BadArgument"}"#
    );
}

#[test]
fn ticks_fire_per_vm_and_are_re_armed_after_each_tick() {
    // Arrange
    let mut host = Host::builder().workers(2).build().unwrap();
    let _chain = host
        .load(&[probe(r#"{"name": "a", "tick_ms": 100}"#)])
        .unwrap();
    // Act
    host.advance(Duration::from_millis(250)).unwrap();
    // Assert: 2 ticks on each of 3 VMs — the main thread's and the 2 workers'
    // (SPEC §A.5, probe_differential_lifecycle.rs).
    assert_eq!(host.metric("wasmcustom.probe_ticks"), Some(6));
}

#[test]
fn a_tick_can_resume_a_paused_request_through_its_effective_context() {
    // Arrange
    let mut host = Host::builder().build().unwrap();
    let chain = host
        .load(&[probe(r#"{"name": "a", "tick_ms": 100}"#)])
        .unwrap();
    let stream = chain
        .request("GET", "/x")
        .header("x-probe-op", "wait-tick")
        .header("x-probe-reply", "pass")
        .start()
        .unwrap();
    assert!(stream.is_paused());
    // Act
    host.advance(Duration::from_millis(100)).unwrap();
    // Assert
    let out = stream.finish().unwrap();
    assert_eq!(out.status(), 200);
    assert!(out.upstream_request().is_some());
}

#[test]
fn the_virtual_clock_moves_only_when_advanced() {
    // Arrange
    let mut host = Host::builder().build().unwrap();
    let before = host.now();
    // Act
    host.advance(Duration::from_secs(5)).unwrap();
    // Assert
    assert_eq!(
        host.now().duration_since(before).unwrap(),
        Duration::from_secs(5)
    );
}
