//! Lifecycle of the wasmtime proxy-wasm host: configure refusal, logs, local
//! replies, fuel, traps and FAIL_CLOSED (SPEC §A, §C, §G).
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

mod common;

use common::{probe_named as probe, probe_wasm};
use meshwasm_harness::host::{FilterSpec, HarnessError, Host, LogLevel};

#[test]
fn a_refused_configuration_is_an_error_carrying_the_filter_logs() {
    // Arrange
    let mut host = Host::builder().build().unwrap();
    let spec = FilterSpec::new("p", probe_wasm()).config(r#"{"name": "p", "refuse": true}"#);
    // Act
    let err = host.load(&[spec]).err().unwrap();
    // Assert
    match err {
        HarnessError::ConfigureRefused { filter, logs } => {
            assert_eq!(filter, "p");
            assert!(
                logs.iter()
                    .any(|l| l.contains("configuration refused: refuse=true")),
                "{logs:?}"
            );
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn a_request_without_ops_reaches_the_default_upstream() {
    // Arrange
    let mut host = Host::builder().build().unwrap();
    let chain = host.load(&[probe("a")]).unwrap();
    // Act
    let out = chain.request("GET", "/x").send().unwrap();
    // Assert
    assert_eq!(out.status(), 200);
    assert_eq!(out.local_reply(), None);
    assert_eq!(out.upstream_header("x-probe-order"), Some("a"));
    assert_eq!(out.upstream_header(":path"), Some("/x"));
    assert_eq!(out.response_header("x-probe-order"), Some("a"));
}

#[test]
fn a_local_reply_carries_status_details_body_and_text_plain() {
    // Arrange
    let mut host = Host::builder().build().unwrap();
    let chain = host.load(&[probe("a")]).unwrap();
    // Act
    let out = chain
        .request("GET", "/x")
        .header("x-probe-op", "status:403,details:denied by probe,get:x-a")
        .header("x-a", "1")
        .send()
        .unwrap();
    // Assert
    let reply = out.local_reply().unwrap();
    assert_eq!(reply.status, 403);
    assert_eq!(reply.details, "denied_by_probe");
    assert_eq!(reply.grpc_status, None);
    assert_eq!(
        String::from_utf8_lossy(&reply.body),
        r#"{"probe":"a","get:x-a":"1"}"#
    );
    assert!(
        reply
            .headers
            .contains(&("x-probe".to_owned(), "a".to_owned()))
    );
    assert!(
        reply
            .headers
            .contains(&("content-type".to_owned(), "text/plain".to_owned()))
    );
    assert_eq!(out.status(), 403);
    assert_eq!(out.upstream_request(), None);
    assert_eq!(out.response_header("x-probe-order"), Some("a"));
}

#[test]
fn every_request_spends_fuel_and_logs_are_captured_per_request() {
    // Arrange
    let mut host = Host::builder().log_level(LogLevel::Trace).build().unwrap();
    let chain = host.load(&[probe("a")]).unwrap();
    // Act
    let out = chain
        .request("GET", "/x")
        .header("x-probe-op", "log:hello")
        .send()
        .unwrap();
    // Assert
    assert!(out.fuel() > 0);
    assert_eq!(out.fuel_by_filter()[0].0, "a");
    assert!(out.logged("probe a: hello"));
    assert!(
        host.logs()
            .iter()
            .any(|l| l.message.contains("probe a: configured"))
    );
}

#[test]
fn a_panic_is_a_trap_error_with_the_panic_text() {
    // Arrange
    let mut host = Host::builder().build().unwrap();
    let chain = host.load(&[probe("a")]).unwrap();
    // Act
    let err = chain
        .request("GET", "/x")
        .header("x-probe-op", "panic")
        .send()
        .err()
        .unwrap();
    // Assert
    match &err {
        HarnessError::Trap {
            filter,
            callback,
            panic,
            ..
        } => {
            assert_eq!(filter, "a");
            assert_eq!(callback, "proxy_on_request_headers");
            assert!(
                panic
                    .as_deref()
                    .unwrap_or("")
                    .contains("probe a panics on request"),
                "{err}"
            );
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("probe a panics on request"));
}

#[test]
fn after_a_trap_the_worker_answers_503_wasm_fail_stream() {
    // Arrange
    let mut host = Host::builder().workers(2).build().unwrap();
    let chain = host.load(&[probe("a")]).unwrap();
    let _ = chain
        .request("GET", "/x")
        .header("x-probe-op", "panic")
        .worker(0)
        .send();
    // Act
    let failed = chain.request("GET", "/x").worker(0).send().unwrap();
    let healthy = chain.request("GET", "/x").worker(1).send().unwrap();
    // Assert
    let reply = failed.local_reply().unwrap();
    assert_eq!(
        (reply.status, reply.details.as_str()),
        (503, "wasm_fail_stream")
    );
    assert!(reply.body.is_empty());
    assert!(chain.is_failed(0, 0));
    assert_eq!(healthy.status(), 200);
}
