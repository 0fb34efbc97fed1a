//! gRPC calls and streams in the wasmtime host: what a test sees of them
//! (`Host::pending_grpc`) and how it answers them; checked against Envoy 1.40 by
//! `probe_differential_grpc_calls.rs`.
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

use std::time::Duration;

use meshwasm_harness::envoy::wasm_path;
use meshwasm_harness::host::{
    Chain, FilterSpec, GrpcEvent, GrpcKind, GrpcResponse, HarnessError, Host, VmRole,
};

fn start() -> (Host, Chain) {
    let wasm = wasm_path("probe_grpc");
    assert!(
        wasm.exists(),
        "{} is missing: cargo xtask build",
        wasm.display()
    );
    let mut host = Host::builder().cluster("grpc").build().unwrap();
    let chain = host
        .load(&[FilterSpec::new("g", wasm).config("{}")])
        .unwrap();
    (host, chain)
}

#[test]
fn a_unary_call_is_pending_with_what_the_filter_sent_until_the_test_answers() {
    // Arrange
    let (mut host, chain) = start();
    let s = chain
        .request("GET", "/")
        .header("x-grpc-op", "call:grpc/Unary/250")
        .header("x-grpc-msg", "ping")
        .start()
        .unwrap();

    // Act
    let calls = host.pending_grpc();
    host.grpc_respond(calls[0].id, &GrpcResponse::ok("pong"))
        .unwrap();

    // Assert
    let call = &calls[0];
    assert_eq!(call.kind, GrpcKind::Call);
    assert_eq!((call.token, call.cluster.as_str()), (5, "grpc"));
    assert_eq!(call.path(), "/probe.Echo/Unary");
    assert_eq!(call.messages, vec![b"ping".to_vec()]);
    assert_eq!(
        call.initial_metadata,
        vec![("x-probe-md".to_owned(), b"m".to_vec())]
    );
    assert_eq!(call.timeout, Some(Duration::from_millis(250)));
    assert_eq!((call.vm, call.stream), (VmRole::Worker(0), Some(s.id())));
    let out = s.finish().unwrap();
    assert!(
        out.body_text().contains(r#""call.body":"pong""#),
        "{}",
        out.body_text()
    );
    assert!(host.pending_grpc().is_empty());
}

#[test]
fn a_call_times_out_on_the_virtual_clock_with_envoys_status() {
    // Arrange
    let (mut host, chain) = start();
    let s = chain
        .request("GET", "/")
        .header("x-grpc-op", "call:grpc/Slow/300")
        .start()
        .unwrap();

    // Act
    assert_eq!(host.next_event_in(), Some(Duration::from_millis(300)));
    host.advance(Duration::from_millis(299)).unwrap();
    let before = s.is_done();
    host.advance(Duration::from_millis(1)).unwrap();

    // Assert
    assert!(!before);
    let body = s.finish().unwrap().body_text();
    assert!(body.contains(r#""call.status":14"#), "{body}");
    assert!(
        body.contains("14:upstream request timeout{response_timeout}"),
        "{body}"
    );
}

#[test]
fn a_stream_is_driven_event_by_event_and_ends_with_its_trailers() {
    // Arrange
    let (mut host, chain) = start();
    let s = chain
        .request("GET", "/")
        .header("x-grpc-op", "stream:grpc/Chat,send:a,wait")
        .start()
        .unwrap();
    let id = host.pending_grpc()[0].id;
    let trailers = vec![("grpc-status".to_owned(), b"0".to_vec())];

    // Act
    host.grpc_event(
        id,
        GrpcEvent::Headers(vec![(":status".into(), b"200".to_vec())]),
    )
    .unwrap();
    host.grpc_event(id, GrpcEvent::Message(b"one".to_vec()))
        .unwrap();
    let open = host.pending_grpc();
    host.grpc_event(id, GrpcEvent::Trailers(trailers)).unwrap();

    // Assert
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].token, 6);
    assert!(!open[0].half_closed);
    let body = s.finish().unwrap().body_text();
    assert!(
        body.contains(r#""events":["md:1",[[":status","200"]],"msg:one","tr:1",[["grpc-status","0"]],"close:0:0:via_upstream"]"#),
        "{body}"
    );
    let gone = host.grpc_event(id, GrpcEvent::Reset);
    assert!(matches!(gone, Err(HarnessError::UnknownGrpc(_))));
}

#[test]
fn a_grpc_call_outlives_the_http_stream_that_opened_it() {
    // Arrange
    let (mut host, chain) = start();
    let s = chain
        .request("GET", "/")
        .header("x-grpc-op", "call:grpc/Unary/0")
        .start()
        .unwrap();

    // Act
    s.cancel().unwrap();

    // Assert: the call belongs to the root context; answering it reaches nobody.
    let calls = host.pending_grpc();
    assert_eq!(calls.len(), 1);
    host.grpc_respond(calls[0].id, &GrpcResponse::status(14, "gone"))
        .unwrap();
    assert!(host.pending_grpc().is_empty());
}
