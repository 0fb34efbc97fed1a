//! Shared data, queues, metrics, foreign functions and seeded randomness across
//! workers (SPEC §E.4, §F, §H, §I).
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

mod common;

use common::probe_with;
use meshwasm_harness::host::{FilterSpec, Host};

fn probe(config: &str) -> FilterSpec {
    probe_with("a", config)
}

#[test]
fn shared_data_cas_increments_are_shared_across_workers() {
    // Arrange
    let mut host = Host::builder().workers(2).build().unwrap();
    let chain = host.load(&[probe(r#"{"name": "a"}"#)]).unwrap();
    // Act
    let first = chain
        .request("GET", "/")
        .header("x-probe-op", "shared-incr:count")
        .worker(0)
        .send()
        .unwrap();
    let second = chain
        .request("GET", "/")
        .header("x-probe-op", "shared-incr:count")
        .worker(1)
        .send()
        .unwrap();
    // Assert
    assert_eq!(first.body_text(), r#"{"probe":"a","shared-incr:count":1}"#);
    assert_eq!(second.body_text(), r#"{"probe":"a","shared-incr:count":2}"#);
    assert_eq!(host.shared_data("probe", "count").unwrap().0, b"2");
    assert!(host.shared_data("other-vm", "count").is_none());
}

#[test]
fn a_stale_cas_is_a_cas_mismatch() {
    // Arrange
    let mut host = Host::builder().build().unwrap();
    let chain = host.load(&[probe(r#"{"name": "a"}"#)]).unwrap();
    // Act
    let out = chain
        .request("GET", "/")
        .header("x-probe-op", "shared-stale:k")
        .send()
        .unwrap();
    // Assert
    assert_eq!(
        out.body_text(),
        r#"{"probe":"a","shared-stale:k":"Err(CasMismatch)"}"#
    );
    assert_eq!(host.shared_data("probe", "k").unwrap().0, b"2");
}

#[test]
fn an_enqueued_item_is_delivered_to_the_registrant() {
    // Arrange
    let mut host = Host::builder().workers(2).build().unwrap();
    let chain = host
        .load(&[probe(r#"{"name": "a", "queue": true}"#)])
        .unwrap();
    // Act
    let out = chain
        .request("GET", "/")
        .header("x-probe-op", "enqueue:hello")
        .worker(0)
        .send()
        .unwrap();
    // Assert
    assert_eq!(out.body_text(), r#"{"probe":"a","enqueue:hello":"Ok(())"}"#);
    assert_eq!(host.metric("probe_queue_items"), Some(1));
    assert_eq!(host.shared_data("probe", "queue_last").unwrap().0, b"hello");
}

#[test]
fn metrics_are_shared_by_all_vms_and_counters_refuse_zero() {
    // Arrange
    let mut host = Host::builder().workers(2).build().unwrap();
    let chain = host.load(&[probe(r#"{"name": "a"}"#)]).unwrap();
    // Act
    chain
        .request("GET", "/")
        .header("x-probe-op", "metric:probe_total")
        .send()
        .unwrap();
    let out = chain
        .request("GET", "/")
        .header(
            "x-probe-op",
            "metric:probe_total,metric-zero:probe_total,gauge:probe_g=7,histogram:probe_h=3",
        )
        .send()
        .unwrap();
    // Assert
    assert_eq!(host.metric("wasmcustom.probe_total"), Some(2));
    assert_eq!(host.metric("probe_g"), Some(7));
    assert_eq!(host.histogram("probe_h"), Some(vec![3]));
    assert!(
        out.body_text()
            .contains(r#""metric-zero:probe_total":"Err(BadArgument)""#),
        "{}",
        out.body_text()
    );
}

#[test]
fn random_get_is_deterministic_for_a_seed() {
    // Arrange
    let run = |seed: u64| {
        let mut host = Host::builder().seed(seed).build().unwrap();
        let chain = host.load(&[probe(r#"{"name": "a"}"#)]).unwrap();
        chain
            .request("GET", "/")
            .header("x-probe-op", "random")
            .send()
            .unwrap()
            .body_text()
    };
    // Act
    let (a, b, c) = (run(7), run(7), run(8));
    // Assert
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn foreign_functions_resolve_by_name() {
    // Arrange
    let mut host = Host::builder().build().unwrap();
    host.register_foreign_function("echo", |args| Ok(args.to_vec()));
    let chain = host.load(&[probe(r#"{"name": "a"}"#)]).unwrap();
    // Act
    let out = chain
        .request("GET", "/")
        .header(
            "x-probe-op",
            "foreign:clear_route_cache,foreign:nope,foreign:echo=abc",
        )
        .send()
        .unwrap();
    // Assert
    assert_eq!(
        out.body_text(),
        r#"{"probe":"a","foreign:clear_route_cache":"Ok(0)","foreign:nope":"Err(NotFound)","foreign:echo=abc":"Ok(3)"}"#
    );
}
