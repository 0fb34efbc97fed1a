//! Differential test of the wasmtime host against real Envoy 1.40, part 3: local
//! replies on gRPC requests, and how a stream's filters end when the client resets
//! it while a filter holds it paused (see `probe_differential_common`).
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

mod probe_differential_common;

use std::io::Write as _;
use std::net::TcpStream;
use std::time::Duration;

use meshwasm_harness::envoy::{Envoy, EnvoyRig, WasmFilter, product_cluster, wasm_path};
use meshwasm_harness::host::{FilterSpec, Host};
use meshwasm_harness::upstream::ProductService;
use probe_differential_common::{Diff, Seen, VM_ID, assert_same};

/// Envoy's HTTP/1 codec adds `content-length: 0` to a header-only response
/// (`http1/codec_impl.cc` `encodeHeadersBase`); the harness is not tied to a
/// protocol (an HTTP/2 client gets no such header).
fn without_h1_content_length(mut seen: Seen) -> Seen {
    seen.headers
        .retain(|(k, v)| !(k == "content-length" && v == "0"));
    seen
}

#[test]
fn a_local_reply_on_a_grpc_request_is_converted_as_in_envoy() {
    // Arrange
    let mut diff = Diff::start(&["a"]);
    let cases: [&[(&str, &str)]; 4] = [
        &[
            ("content-type", "application/grpc"),
            ("x-probe-op", "status:403,get::path"),
        ],
        &[
            ("content-type", "application/grpc+proto"),
            ("x-probe-op", "status:503,grpc:5"),
        ],
        &[
            ("content-type", "application/grpc"),
            ("x-h", "50%~"),
            ("x-probe-op", "status:429,get:x-h"),
        ],
        &[
            ("content-type", "application/grpc-web"),
            ("x-probe-op", "status:403"),
        ],
    ];

    for headers in cases {
        // Act
        let (harness, envoy) = diff.send("/pkg.Svc/Method", headers);

        // Assert
        let envoy = without_h1_content_length(envoy);
        assert_same(&diff, &harness, &envoy);
    }
    let (_, envoy) = diff.send(
        "/pkg.Svc/Method",
        &[
            ("content-type", "application/grpc"),
            ("x-probe-op", "status:403"),
        ],
    );
    assert_eq!(envoy.status, 200);
    assert_eq!(envoy.header_all("grpc-status"), vec!["7"]);
    assert_eq!(envoy.header_all("grpc-message"), vec![r#"{"probe":"a"}"#]);
    assert!(envoy.body.is_empty());
}

/// Envoy with the probe as filters `a` and `b` recording their `on_log`/`on_done`.
fn lifecycle_envoy(service: &ProductService) -> Envoy {
    let config = |n: &str| format!(r#"{{"name": "{n}", "lifecycle": true}}"#);
    let filters = ["a", "b"]
        .iter()
        .map(|n| WasmFilter::new(n, wasm_path("probe"), config(n)).vm_id(VM_ID))
        .collect();
    EnvoyRig::builder()
        .filters(filters)
        .cluster(&product_cluster("v1"), service.addr())
        .cluster(&product_cluster("v2"), service.addr())
        .start()
        .unwrap()
}

/// Shared data `probe_lifecycle` as Envoy's probe `a` reads it.
fn envoy_lifecycle(envoy: &Envoy) -> String {
    let r = envoy
        .get(
            "/read",
            &[
                ("host", "probe.test"),
                ("x-probe-filter", "a"),
                ("x-probe-op", "shared-get:probe_lifecycle"),
            ],
        )
        .unwrap();
    let body = String::from_utf8_lossy(&r.body).into_owned();
    let value = body
        .split(r#""shared-get:probe_lifecycle":""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default();
    value.to_owned()
}

#[test]
fn a_client_reset_of_a_paused_stream_ends_the_filters_as_in_envoy() {
    // Arrange
    let service = ProductService::start("v1").unwrap();
    let envoy = lifecycle_envoy(&service);
    let specs: Vec<FilterSpec> = ["a", "b"]
        .iter()
        .map(|n| {
            FilterSpec::new(n, wasm_path("probe"))
                .config(format!(r#"{{"name": "{n}", "lifecycle": true}}"#))
                .vm_id(VM_ID)
        })
        .collect();
    let mut host = Host::builder().build().unwrap();
    let chain = host.load(&specs).unwrap();
    // `a` pauses and nothing resumes it (no tick configured).
    let request = "GET /api/products HTTP/1.1\r\nhost: probe.test\r\n\
                   x-probe-filter: a\r\nx-probe-op: wait-tick\r\n\r\n";

    // Act
    let mut client = TcpStream::connect(("127.0.0.1", envoy.port())).unwrap();
    client.write_all(request.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drop(client);
    let stream = chain
        .request("GET", "/api/products")
        .authority("probe.test")
        .header("x-probe-filter", "a")
        .header("x-probe-op", "wait-tick")
        .start()
        .unwrap();
    let out = stream.cancel().unwrap();

    // Assert
    let harness = host.shared_data(VM_ID, "probe_lifecycle").unwrap().0;
    let harness = String::from_utf8(harness).unwrap();
    // Envoy handles the close on its worker; the read below records after it.
    std::thread::sleep(Duration::from_millis(500));
    let seen = envoy_lifecycle(&envoy);
    assert_eq!(
        seen,
        harness,
        "Envoy (left) and harness (right); Envoy log:\n{}",
        envoy.log()
    );
    assert_eq!(harness, "log:a,log:b,done:a,done:b,");
    assert!(out.was_cancelled());
}
