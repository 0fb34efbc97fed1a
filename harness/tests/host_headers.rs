//! Header maps, properties, filter state and chain order in the wasmtime host
//! (SPEC §B, §D).
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

mod common;

use common::probe_named;
use meshwasm_harness::host::{FilterSpec, Host, UpstreamResponse};

fn probe(name: &str) -> FilterSpec {
    probe_named(name).root_id(name)
}

/// The values of header `name`, in order.
fn values<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Vec<&'a [u8]> {
    headers
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_slice())
        .collect()
}

fn body(out: &meshwasm_harness::host::Outcome) -> String {
    out.body_text()
}

#[test]
fn header_mutations_reach_the_upstream_lower_cased() {
    // Arrange
    let mut host = Host::builder().build().unwrap();
    let chain = host.load(&[probe("a")]).unwrap();
    // Act
    let out = chain
        .request("GET", "/x")
        .header("X-Old", "1")
        .header("x-rep", "a")
        .header("x-rep", "b")
        .header("x-probe-reply", "pass")
        .header(
            "x-probe-op",
            "set:X-New=v,add:x-multi=1,add:x-multi=2,remove:x-old,set:x-rep=c",
        )
        .send()
        .unwrap();
    // Assert
    let up = out.upstream_request().unwrap();
    assert_eq!(up.header("x-new"), Some("v"));
    assert_eq!(up.header("x-old"), None);
    let multi = values(&up.headers, "x-multi");
    assert_eq!(multi, vec![&b"1"[..], &b"2"[..]]);
    let rep = values(&up.headers, "x-rep");
    assert_eq!(rep, vec![&b"c"[..]]);
    assert_eq!(up.headers[0].0, ":authority");
}

#[test]
fn non_utf8_header_values_are_read_as_bytes_and_get_returns_the_first_value() {
    // Arrange
    let mut host = Host::builder().build().unwrap();
    let chain = host.load(&[probe("a")]).unwrap();
    // Act
    let out = chain
        .request("GET", "/x")
        .header("x-obs", b"caf\xe9")
        .header("x-dup", "first")
        .header("x-dup", "second")
        .header("x-probe-op", "get:X-OBS,get:x-dup,get:x-none")
        .send()
        .unwrap();
    // Assert
    assert_eq!(
        body(&out),
        r#"{"probe":"a","get:X-OBS":"caf\\xe9","get:x-dup":"first","get:x-none":null}"#
    );
}

#[test]
fn the_decode_path_runs_in_chain_order_and_the_encode_path_in_reverse() {
    // Arrange
    let mut host = Host::builder().build().unwrap();
    let chain = host.load(&[probe("a"), probe("b")]).unwrap();
    chain.set_upstream(|_| UpstreamResponse::new(201).header("x-up", "1").body("hello"));
    // Act
    let out = chain.request("GET", "/x").send().unwrap();
    // Assert
    let order = values(&out.upstream_request().unwrap().headers, "x-probe-order");
    assert_eq!(order, vec![&b"a"[..], &b"b"[..]]);
    let resp = values(out.response_headers(), "x-probe-order");
    assert_eq!(resp, vec![&b"b"[..], &b"a"[..]]);
    assert_eq!((out.status(), out.body()), (201, &b"hello"[..]));
}

#[test]
fn a_local_reply_from_the_first_filter_skips_the_second_on_both_paths() {
    // Arrange
    let mut host = Host::builder().build().unwrap();
    let chain = host.load(&[probe("a"), probe("b")]).unwrap();
    // Act
    let out = chain
        .request("GET", "/x")
        .header("x-probe-filter", "a")
        .header("x-probe-op", "status:401")
        .send()
        .unwrap();
    // Assert
    assert_eq!(out.status(), 401);
    assert_eq!(out.local_reply().unwrap().filter, "a");
    let resp = values(out.response_headers(), "x-probe-order");
    assert_eq!(resp, vec![&b"a"[..]]);
}

#[test]
fn a_local_reply_from_the_second_filter_is_encoded_by_both() {
    // Arrange
    let mut host = Host::builder().build().unwrap();
    let chain = host.load(&[probe("a"), probe("b")]).unwrap();
    // Act
    let out = chain
        .request("GET", "/x")
        .header("x-probe-filter", "b")
        .header("x-probe-op", "status:429")
        .send()
        .unwrap();
    // Assert
    let resp = values(out.response_headers(), "x-probe-order");
    assert_eq!(resp, vec![&b"b"[..], &b"a"[..]]);
    assert_eq!(out.status(), 429);
}

#[test]
fn filter_state_set_by_one_filter_is_read_by_the_next() {
    // Arrange
    let mut host = Host::builder().build().unwrap();
    let chain = host.load(&[probe("a"), probe("b")]).unwrap();
    // Act
    let out = chain
        .request("GET", "/x")
        .header("x-probe-op-a", "setprop:meshwasm.variant=v2")
        .header("x-probe-reply-a", "pass")
        .header(
            "x-probe-op-b",
            "prop:meshwasm.variant,prop:filter_state/wasm.meshwasm.variant",
        )
        .send()
        .unwrap();
    // Assert
    assert_eq!(
        body(&out),
        r#"{"probe":"b","prop:meshwasm.variant":"v2","prop:filter_state/wasm.meshwasm.variant":"v2"}"#
    );
    assert_eq!(out.filter_state("wasm.meshwasm.variant"), Some(&b"v2"[..]));
}

#[test]
fn properties_are_computed_from_the_request_and_overridable() {
    // Arrange
    let mut host = Host::builder().build().unwrap();
    let chain = host.load(&[probe("a")]).unwrap();
    let ops = [
        "prop:request/path",
        "prop:request/url_path",
        "prop:request/host",
        "prop:request/method",
        "prop:request/headers/x-m",
        "prop:plugin_name",
        "prop:plugin_root_id",
        "prop:plugin_vm_id",
        "prop:connection/mtls",
        "prop:connection/uri_san_peer_certificate",
        "prop:source/port",
        "prop:node/id",
    ]
    .join(",");
    // Act
    let out = chain
        .request("POST", "/p/x?q=1")
        .authority("svc")
        .header("x-m", "1")
        .header("x-m", "2")
        .header("x-probe-op", ops)
        .property("connection.mtls", [1])
        .property(
            "connection.uri_san_peer_certificate",
            "spiffe://cluster.local/ns/a/sa/b",
        )
        .send()
        .unwrap();
    // Assert
    assert_eq!(
        body(&out),
        concat!(
            r#"{"probe":"a","prop:request/path":"/p/x?q=1","prop:request/url_path":"/p/x","#,
            r#""prop:request/host":"svc","prop:request/method":"POST","prop:request/headers/x-m":"1,2","#,
            r#""prop:plugin_name":"a","prop:plugin_root_id":"a","prop:plugin_vm_id":"probe","#,
            r#""prop:connection/mtls":true,"#,
            r#""prop:connection/uri_san_peer_certificate":"spiffe://cluster.local/ns/a/sa/b","#,
            r#""prop:source/port":"int64","prop:node/id":null}"#
        )
    );
}

#[test]
fn a_chunked_body_paused_until_end_of_stream_is_seen_whole() {
    // Arrange
    let mut host = Host::builder().build().unwrap();
    let chain = host.load(&[probe("a")]).unwrap();
    // Act
    let out = chain
        .request("POST", "/x")
        .header("x-probe-op", "body")
        .body("hello ")
        .body("world")
        .send()
        .unwrap();
    // Assert
    assert_eq!(
        body(&out),
        r#"{"probe":"a","body":"hello world","body.len":11}"#
    );
}
