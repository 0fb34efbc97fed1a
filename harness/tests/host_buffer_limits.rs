//! The per-stream buffer limit and chunked bodies in the wasmtime host;
//! checked against Envoy 1.40 by `probe_differential_buffer_limits.rs`.
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

mod common;

use common::probe_named;
use meshwasm_harness::host::{Chain, Host, UpstreamResponse};

fn chain(host: &mut Host) -> Chain {
    let chain = host.load(&[probe_named("a")]).unwrap();
    chain.set_upstream(|_| {
        UpstreamResponse::new(200)
            .body_chunk(vec![b'x'; 600])
            .body_chunk(vec![b'y'; 600])
    });
    chain
}

#[test]
fn a_request_body_held_past_the_limit_is_answered_413() {
    // Arrange
    let mut host = Host::builder().buffer_limit(1024).build().unwrap();
    let chain = chain(&mut host);

    // Act
    let req = |n: usize| {
        let mut r = chain.request("POST", "/").header("x-probe-op", "body");
        for _ in 0..n {
            r = r.body(vec![b'a'; 512]);
        }
        r.send().unwrap()
    };
    let over = req(3);
    let at = req(2);

    // Assert
    assert_eq!(over.status(), 413);
    assert_eq!(over.body_text(), "Payload Too Large");
    assert_eq!(over.details(), Some("request_payload_too_large"));
    assert_eq!(at.status(), 200);
    assert!(
        at.body_text().contains(r#""body.len":1024"#),
        "{}",
        at.body_text()
    );
}

#[test]
fn a_response_body_held_past_the_limit_resets_the_stream_after_its_headers() {
    // Arrange
    let mut host = Host::builder().buffer_limit(1024).build().unwrap();
    let chain = chain(&mut host);

    // Act
    let held = chain
        .request("GET", "/")
        .header("x-probe-op", "resp-body")
        .header("x-probe-reply", "pass")
        .send()
        .unwrap();
    let streamed = chain.request("GET", "/").send().unwrap();

    // Assert
    assert_eq!(held.status(), 200);
    assert!(held.was_reset());
    assert!(held.body().is_empty());
    assert_eq!(held.details(), Some("response_payload_too_large"));
    assert_eq!(streamed.body().len(), 1200);
    assert!(!streamed.was_reset());
}
