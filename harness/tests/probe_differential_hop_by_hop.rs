//! What Envoy 1.40's HTTP/1 codec and connection manager do to headers before
//! and after the filters, in the wasmtime host and in Envoy: hop-by-hop headers
//! (`connection`, `keep-alive`, `proxy-connection`, `transfer-encoding`,
//! `upgrade`, `te`) are gone, and a repeated *inline* header (one Envoy keeps in
//! a fixed slot, e.g. `user-agent`, `accept`, `via`) arrives folded into one
//! `a,b` value while other repeated headers stay apart. Requests go over raw
//! HTTP/1.1 so the test controls every header line.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use meshwasm_harness::envoy::{
    BodyUpstream, Envoy, EnvoyRig, WasmFilter, product_cluster, wasm_path,
};
use meshwasm_harness::host::{Chain, FilterSpec, Host, UpstreamResponse};

/// Header lines of the request (repeated names on purpose).
const REQUEST: &[(&str, &str)] = &[
    ("connection", "keep-alive, x-named"),
    ("keep-alive", "timeout=5"),
    ("proxy-connection", "keep-alive"),
    ("upgrade", "foo"),
    ("te", "gzip, trailers"),
    ("x-named", "1"),
    ("user-agent", "a"),
    ("user-agent", "b"),
    ("accept", "x/y"),
    ("accept", "z/w"),
    ("x-rep", "1"),
    ("x-rep", "2"),
];

struct Rig {
    envoy: Envoy,
    _upstream: BodyUpstream,
    chain: Chain,
    _host: Host,
}

fn start() -> Rig {
    let wasm = wasm_path("probe");
    assert!(
        wasm.exists(),
        "{} is missing: cargo xtask build",
        wasm.display()
    );
    let upstream = BodyUpstream::start().unwrap();
    let envoy = EnvoyRig::builder()
        .filters(vec![
            WasmFilter::new("a", &wasm, r#"{"name": "a"}"#).vm_id("probe"),
        ])
        .cluster(&product_cluster("v1"), upstream.addr())
        .cluster(&product_cluster("v2"), upstream.addr())
        .start()
        .unwrap();
    let mut host = Host::builder().build().unwrap();
    let spec = FilterSpec::new("a", &wasm)
        .config(r#"{"name": "a"}"#)
        .vm_id("probe");
    let chain = host.load(&[spec]).unwrap();
    // What `BodyUpstream` answers to `/hop` (HOP_RESPONSE).
    chain.set_upstream(|_| {
        UpstreamResponse::new(200)
            .header("connection", "keep-alive")
            .header("keep-alive", "timeout=5")
            .header("proxy-connection", "keep-alive")
            .header("upgrade", "foo")
            .header("via", "a")
            .header("via", "b")
            .header("x-rep", "1")
            .header("x-rep", "2")
            .header("transfer-encoding", "chunked")
            .body("ok")
    });
    Rig {
        envoy,
        _upstream: upstream,
        chain,
        _host: host,
    }
}

/// Status, headers (lower-case, without volatile ones) and body of a raw
/// HTTP/1.1 exchange.
fn envoy(rig: &Rig, path: &str, extra: &[(&str, &str)]) -> (u32, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect(("127.0.0.1", rig.envoy.port())).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = format!("GET {path} HTTP/1.1\r\nhost: probe.test\r\n");
    for (k, v) in REQUEST.iter().chain(extra) {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw);
        if let Some((h, b)) = text.split_once("\r\n\r\n") {
            let len: Option<usize> = h.to_lowercase().lines().find_map(|l| {
                l.strip_prefix("content-length: ")
                    .map(|v| v.parse().unwrap())
            });
            let done = match len {
                Some(len) => b.len() >= len,
                None => b.ends_with("0\r\n\r\n"),
            };
            if done {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (h, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = h.lines();
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_lowercase(), v.to_owned()))
        .filter(|(k, _)| !["date", "server", "x-envoy-upstream-service-time"].contains(&k.as_str()))
        .collect();
    (status, headers, body.to_owned())
}

fn harness(rig: &Rig, path: &str, extra: &[(&str, &str)]) -> (u32, Vec<(String, String)>, String) {
    let mut req = rig.chain.request("GET", path).authority("probe.test");
    for (k, v) in REQUEST.iter().chain(extra) {
        req = req.header(k, v);
    }
    let out = req.send().unwrap();
    let headers = out
        .response_headers()
        .iter()
        .filter(|(k, _)| !k.starts_with(':') && k != "date")
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
        .collect();
    (out.status(), headers, out.body_text())
}

#[test]
fn request_hop_by_hop_headers_are_gone_and_inline_repeats_folded_as_in_envoy() {
    // Arrange
    let rig = start();
    let op = [("x-probe-op", "headers")];

    // Act
    let h = harness(&rig, "/api/products", &op);
    let e = envoy(&rig, "/api/products", &op);

    // Assert
    assert_eq!(
        h,
        e,
        "harness (left) and Envoy (right); Envoy log:\n{}",
        rig.envoy.log()
    );
    assert!(e.2.contains(r#"["user-agent","a,b"]"#), "{}", e.2);
    assert!(e.2.contains(r#"["x-rep","1"],["x-rep","2"]"#), "{}", e.2);
    assert!(!e.2.contains("keep-alive"), "{}", e.2);
}

#[test]
fn response_hop_by_hop_headers_and_folding_match_envoy_at_the_filter_and_the_client() {
    // Arrange
    let rig = start();
    let op = [("x-probe-op", "resp-headers"), ("x-probe-reply", "pass")];

    // Act
    let h = harness(&rig, "/hop", &op);
    let mut e = envoy(&rig, "/hop", &op);
    // Not the connection manager's doing: Envoy's router adds its timing to the
    // response the filter sees, its HTTP/1 codec frames the body as chunked.
    e.1.retain(|(k, _)| k != "transfer-encoding");
    for (k, v) in &mut e.1 {
        if k == "x-probe-resp-seen"
            && let Some(at) = v.find(r#",["x-envoy-upstream-service-time""#)
        {
            let end = at + v[at..].find(']').unwrap() + 1;
            v.replace_range(at..end, "");
        }
    }

    // Assert
    assert_eq!(h.0, e.0);
    assert_eq!(
        h.1,
        e.1,
        "harness (left) and Envoy (right); Envoy log:\n{}",
        rig.envoy.log()
    );
}
