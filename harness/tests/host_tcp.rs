//! Network (TCP) filters in the wasmtime host: the connection API beside the
//! request API; checked against Envoy 1.40 by `probe_differential_tcp.rs`.
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

use meshwasm_harness::envoy::wasm_path;
use meshwasm_harness::host::{Chain, CloseType, FilterSpec, Host};

fn chain(host: &mut Host, config: &str) -> Chain {
    let wasm = wasm_path("probe_tcp");
    assert!(
        wasm.exists(),
        "{} is missing: cargo xtask build",
        wasm.display()
    );
    host.load(&[FilterSpec::new("a", wasm).config(config)])
        .unwrap()
}

fn lines(host: &Host) -> Vec<String> {
    host.logs()
        .into_iter()
        .map(|l| l.message)
        .filter(|m| m.starts_with("tcp "))
        .collect()
}

#[test]
fn bytes_flow_both_ways_and_both_fins_close_the_connection_locally() {
    // Arrange
    let mut host = Host::builder().build().unwrap();
    let chain = chain(&mut host, r#"{"name": "a"}"#);

    // Act
    let conn = chain.connection().open().unwrap();
    conn.send("ping UPPER").unwrap();
    let up = conn.take_upstream();
    conn.upstream_send("pong").unwrap();
    conn.close_client().unwrap();
    conn.close_upstream().unwrap();
    let out = conn.finish().unwrap();

    // Assert
    assert_eq!(up, b"PING UPPER");
    assert_eq!(out.client_received, b"pong");
    assert_eq!(out.closed, Some(CloseType::Local));
    assert!(out.client_got_fin && out.upstream_got_fin);
    assert_eq!(
        lines(&host),
        [
            "tcp a: new connection",
            "tcp a: downstream 10 false ping UPPER",
            "tcp a: upstream 4 false pong",
            "tcp a: downstream 0 true ",
            "tcp a: upstream 0 true ",
            "tcp a: upstream close 0",
            "tcp a: downstream close 1",
            "tcp a: done",
            "tcp a: log",
        ]
    );
}

#[test]
fn held_upstream_bytes_come_again_and_a_client_reset_is_a_remote_close() {
    // Arrange
    let mut host = Host::builder().build().unwrap();
    let chain = chain(&mut host, r#"{"name": "a"}"#);
    let conn = chain.connection().open().unwrap();

    // Act
    conn.upstream_send("STOPUP").unwrap();
    let held = conn.outcome().client_received;
    conn.upstream_send("!").unwrap();
    conn.reset_client().unwrap();
    let out = conn.finish().unwrap();

    // Assert
    assert!(held.is_empty());
    assert_eq!(out.client_received, b"STOPUP!");
    assert_eq!(out.closed, Some(CloseType::Remote));
    assert!(lines(&host).contains(&"tcp a: upstream 7 false STOPUP!".to_owned()));
    assert!(lines(&host).contains(&"tcp a: downstream close 2".to_owned()));
}

#[test]
fn a_filter_picks_the_cluster_before_tcp_proxy_connects() {
    // Arrange
    let mut host = Host::builder().build().unwrap();
    let chain = chain(&mut host, r#"{"name": "a", "cluster": "other"}"#);

    // Act
    let conn = chain.connection().open().unwrap();
    conn.send("CLOSE").unwrap();
    let out = conn.finish().unwrap();

    // Assert
    assert_eq!(out.upstream_cluster.as_deref(), Some("other"));
    assert_eq!(out.chosen_cluster(), Some(&b"other"[..]));
    assert_eq!(out.closed, Some(CloseType::Local));
    assert!(out.upstream_received.is_empty());
}
