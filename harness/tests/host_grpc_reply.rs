//! Local replies on gRPC requests become trailers-only gRPC responses (SPEC §C.3;
//! envoy `source/common/http/utility.cc` `prepareLocalReply`,
//! `source/common/grpc/common.cc` `isGrpcRequestHeaders`,
//! `source/common/grpc/status.cc` `httpToGrpcStatus`).
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

mod common;

use common::probe_named;
use meshwasm_harness::host::{Chain, Host, Outcome};

fn chain(host: &mut Host, names: &[&str]) -> Chain {
    let specs: Vec<_> = names.iter().map(|n| probe_named(n)).collect();
    host.load(&specs).unwrap()
}

fn send(chain: &Chain, content_type: &str, ops: &str) -> Outcome {
    chain
        .request("POST", "/pkg.Svc/Method")
        .header("content-type", content_type)
        .header("x-probe-op", ops)
        .send()
        .unwrap()
}

fn headers(out: &Outcome) -> Vec<(String, String)> {
    out.response_headers()
        .iter()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn a_local_reply_on_a_grpc_request_is_a_trailers_only_200_with_the_mapped_status() {
    // Arrange
    let mut host = Host::builder().build().unwrap();
    let chain = chain(&mut host, &["a"]);
    // Act
    let out = send(&chain, "application/grpc", "status:403");
    // Assert
    assert_eq!(out.status(), 200);
    assert_eq!(
        headers(&out),
        pairs(&[
            (":status", "200"),
            ("x-probe", "a"),
            ("content-type", "application/grpc"),
            ("grpc-status", "7"),
            ("grpc-message", r#"{"probe":"a"}"#),
            ("x-probe-order", "a"),
        ])
    );
    assert!(out.body().is_empty());
    let reply = out.local_reply().unwrap();
    assert_eq!((reply.status, reply.grpc_status), (403, None));
    assert_eq!(reply.body, br#"{"probe":"a"}"#);
}

#[test]
fn the_grpc_status_argument_wins_over_the_http_status() {
    // Arrange
    let mut host = Host::builder().build().unwrap();
    let chain = chain(&mut host, &["a"]);
    // Act
    let out = send(&chain, "application/grpc+proto", "status:503,grpc:5");
    let out_of_range = send(&chain, "application/grpc", "status:503,grpc:17");
    // Assert
    assert_eq!(out.status(), 200);
    assert_eq!(out.response_header("grpc-status"), Some("5"));
    assert_eq!(out_of_range.response_header("grpc-status"), Some("14"));
}

#[test]
fn unmapped_http_statuses_are_grpc_unknown() {
    // Arrange
    let mut host = Host::builder().build().unwrap();
    let chain = chain(&mut host, &["a"]);
    // Act
    let seen: Vec<(u32, String)> = [400, 401, 404, 429, 500, 200]
        .iter()
        .map(|code| {
            let out = send(&chain, "application/grpc", &format!("status:{code}"));
            let grpc = out.response_header("grpc-status").unwrap().to_owned();
            (*code, grpc)
        })
        .collect();
    // Assert
    let want = [
        (400, "13"),
        (401, "16"),
        (404, "12"),
        (429, "14"),
        (500, "2"),
        (200, "2"),
    ];
    let want: Vec<(u32, String)> = want.iter().map(|(c, g)| (*c, (*g).to_owned())).collect();
    assert_eq!(seen, want);
}

#[test]
fn the_grpc_message_is_the_percent_encoded_body() {
    // Arrange
    let mut host = Host::builder().build().unwrap();
    let chain = chain(&mut host, &["a"]);
    // Act
    let out = chain
        .request("POST", "/pkg.Svc/Method")
        .header("content-type", "application/grpc")
        .header("x-h", "50%~é")
        .header("x-probe-op", "status:400,get:x-h")
        .send()
        .unwrap();
    // Assert: the probe's JSON shows `é` as the text `\\xc3\\xa9`.
    assert_eq!(
        out.response_header("grpc-message"),
        Some(r#"{"probe":"a","get:x-h":"50%25%7E\\xc3\\xa9"}"#)
    );
}

#[test]
fn other_content_types_keep_the_http_reply() {
    // Arrange
    let mut host = Host::builder().build().unwrap();
    let chain = chain(&mut host, &["a"]);
    // Act
    let outs: Vec<Outcome> = [
        "application/grpc-web",
        "application/json",
        "application/grpc;x",
    ]
    .iter()
    .map(|ct| send(&chain, ct, "status:403"))
    .collect();
    // Assert
    for out in outs {
        assert_eq!(out.status(), 403);
        assert_eq!(out.response_header("content-type"), Some("text/plain"));
        assert_eq!(out.response_header("grpc-status"), None);
        assert_eq!(out.body(), br#"{"probe":"a"}"#);
    }
}

#[test]
fn a_filter_changing_the_content_type_does_not_change_what_the_request_is() {
    // Arrange
    let mut host = Host::builder().build().unwrap();
    let chain = chain(&mut host, &["a", "b"]);
    // Act: `a` rewrites the content type; `b` replies.
    let out = chain
        .request("POST", "/pkg.Svc/Method")
        .header("content-type", "application/grpc")
        .header("x-probe-op-a", "set:content-type=text/html")
        .header("x-probe-reply-a", "pass")
        .header("x-probe-op-b", "status:401")
        .send()
        .unwrap();
    // Assert: encoded by both filters, converted once.
    assert_eq!(out.status(), 200);
    assert_eq!(out.response_header("grpc-status"), Some("16"));
    let order: Vec<String> = headers(&out)
        .into_iter()
        .filter(|(k, _)| k == "x-probe-order")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(order, ["b", "a"]);
}

#[test]
fn a_failed_vm_answers_a_grpc_request_with_unavailable() {
    // Arrange
    let mut host = Host::builder().build().unwrap();
    let chain = chain(&mut host, &["a"]);
    let _trap = chain
        .request("GET", "/x")
        .header("x-probe-op", "panic")
        .send();
    // Act
    let out = chain
        .request("POST", "/pkg.Svc/Method")
        .header("content-type", "application/grpc")
        .send()
        .unwrap();
    // Assert
    assert_eq!(
        headers(&out),
        pairs(&[
            (":status", "200"),
            ("content-type", "application/grpc"),
            ("grpc-status", "14"),
        ])
    );
    assert_eq!(out.local_reply().unwrap().details, "wasm_fail_stream");
}
