//! Envoy's per-stream buffer limit in the wasmtime host and in Envoy 1.40: the
//! probe holds a request body (`x-probe-op: body`) or a response body
//! (`resp-body`) until its end; past the limit Envoy answers `413`
//! (`request_payload_too_large`) or resets the stream after the response
//! headers (`response_payload_too_large`). Bodies reach the harness in 64 KiB
//! chunks, as Envoy's codec delivers them in pieces too.
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

const CHUNK: usize = 64 * 1024;

/// What a client saw: status, `content-length`, body bytes, whether the body
/// was complete.
#[derive(Debug, PartialEq)]
struct Seen {
    status: u32,
    body_len: usize,
    body_head: String,
    complete: bool,
}

struct Rig {
    envoy: Envoy,
    _upstream: BodyUpstream,
    chain: Chain,
    _host: Host,
}

fn start(limit: Option<u32>) -> Rig {
    let wasm = wasm_path("probe");
    assert!(
        wasm.exists(),
        "{} is missing: cargo xtask build",
        wasm.display()
    );
    let upstream = BodyUpstream::start().unwrap();
    let filter = WasmFilter::new("a", &wasm, r#"{"name": "a"}"#).vm_id("probe");
    let mut rig = EnvoyRig::builder()
        .filters(vec![filter])
        .cluster(&product_cluster("v1"), upstream.addr())
        .cluster(&product_cluster("v2"), upstream.addr());
    let mut host = Host::builder();
    if let Some(limit) = limit {
        rig = rig.buffer_limit(limit);
        host = host.buffer_limit(limit as usize);
    }
    let envoy = rig.start().unwrap();
    let mut host = host.build().unwrap();
    let spec = FilterSpec::new("a", &wasm)
        .config(r#"{"name": "a"}"#)
        .vm_id("probe");
    let chain = host.load(&[spec]).unwrap();
    chain.set_upstream(|req| {
        let n: usize = req
            .path()
            .and_then(|p| p.strip_prefix("/bytes/"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let mut r = UpstreamResponse::new(200)
            .header("content-length", n.to_string())
            .header("content-type", "application/octet-stream");
        let mut left = n;
        while left > 0 {
            let k = left.min(CHUNK);
            r = r.body_chunk(vec![b'x'; k]);
            left -= k;
        }
        r
    });
    Rig {
        envoy,
        _upstream: upstream,
        chain,
        _host: host,
    }
}

/// Sends a raw HTTP/1.1 request; reads the response until its end or a close.
fn envoy(rig: &Rig, method: &str, path: &str, headers: &[(&str, &str)], body: usize) -> Seen {
    let mut s = TcpStream::connect(("127.0.0.1", rig.envoy.port())).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nhost: probe.test\r\ncontent-length: {body}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(&vec![b'a'; body]);
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&raw[..end]).to_lowercase();
            let len: usize = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if raw.len() >= end + 4 + len {
                break;
            }
        }
    }
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let text = String::from_utf8_lossy(&raw[..end]).to_lowercase();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body_len = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let body = &raw[end + 4..];
    Seen {
        status,
        body_len,
        body_head: String::from_utf8_lossy(&body[..body.len().min(24)]).into_owned(),
        complete: body.len() == body_len,
    }
}

fn harness(
    rig: &Rig,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: usize,
) -> (Seen, Option<String>) {
    let mut req = rig.chain.request(method, path).authority("probe.test");
    req = req.header("content-length", body.to_string());
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let mut left = body;
    while left > 0 {
        let k = left.min(CHUNK);
        req = req.body(vec![b'a'; k]);
        left -= k;
    }
    let out = req.send().unwrap();
    let body_len = out
        .response_header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let seen = Seen {
        status: out.status(),
        body_len,
        body_head: String::from_utf8_lossy(&out.body()[..out.body().len().min(24)]).into_owned(),
        complete: !out.was_reset() && out.body().len() == body_len,
    };
    (seen, out.details().map(str::to_owned))
}

fn last_details(envoy: &Envoy) -> String {
    let log = envoy.access_log();
    let line = log.lines().last().unwrap_or_default();
    line.split_whitespace()
        .nth(6)
        .unwrap_or_default()
        .to_owned()
}

fn same(
    rig: &Rig,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: usize,
) -> (Seen, String) {
    let (h, details) = harness(rig, method, path, headers, body);
    let e = envoy(rig, method, path, headers, body);
    assert_eq!(
        h,
        e,
        "harness (left) and Envoy (right); Envoy log:\n{}",
        rig.envoy.log()
    );
    let envoy_details = last_details(&rig.envoy);
    if let Some(d) = details.filter(|d| !d.is_empty()) {
        assert_eq!(
            d,
            envoy_details,
            "details; access log:\n{}",
            rig.envoy.access_log()
        );
    }
    (e, envoy_details)
}

#[test]
fn a_held_request_body_over_the_default_1_mib_is_a_413_as_in_envoy() {
    // Arrange
    let rig = start(None);
    let op = [("x-probe-op", "body")];

    // Act
    let (over, details) = same(&rig, "POST", "/api/products", &op, 1024 * 1024 + 1);
    let (at, _) = same(&rig, "POST", "/api/products", &op, 1024 * 1024);

    // Assert
    assert_eq!(over.status, 413);
    assert_eq!(over.body_head, "Payload Too Large");
    assert_eq!(details, "request_payload_too_large");
    assert_eq!(at.status, 200);
}

#[test]
fn with_a_64_kib_limit_requests_and_held_responses_past_it_fail_as_in_envoy() {
    // Arrange
    let rig = start(Some(64 * 1024));
    let pass = [("x-probe-op", "resp-body"), ("x-probe-reply", "pass")];

    // Act
    let (request, _) = same(
        &rig,
        "POST",
        "/api/products",
        &[("x-probe-op", "body")],
        CHUNK + 1,
    );
    let (response, details) = same(&rig, "GET", "/bytes/102400", &pass, 0);
    let (fits, _) = same(&rig, "GET", "/bytes/65536", &pass, 0);

    // Assert
    assert_eq!(request.status, 413);
    assert_eq!((response.status, response.complete), (200, false));
    assert_eq!(details, "response_payload_too_large");
    assert!(fits.complete);
}
