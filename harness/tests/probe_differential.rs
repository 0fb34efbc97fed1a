//! Differential test of the wasmtime host against real Envoy 1.40, part 1: request
//! headers, the upstream request, local replies, properties and filter state. The
//! probe module runs in both, gets identical requests, and what it observes (its
//! JSON), what the client gets and what the upstream receives must agree (see
//! `probe_differential_common` for the setup and what is normalised).
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

mod probe_differential_common;

use probe_differential_common::{Diff, assert_same};

#[test]
fn request_header_get_set_add_remove_and_pseudo_headers_agree_with_envoy() {
    // Arrange
    let mut diff = Diff::start(&["a"]);
    let ops = "get::authority,get::path,get::method,get::scheme,get:X-Rep,get:x-missing,\
               set:x-new=v,set:x-rep=c,get:x-rep,add:x-multi=1,add:x-multi=2,get:x-multi,\
               remove:x-old,get:x-old,get:x-forwarded-proto";

    // Act
    let (harness, envoy) = diff.send(
        "/api/products?q=1",
        &[
            ("x-old", "1"),
            ("x-rep", "a"),
            ("x-rep", "b"),
            ("x-probe-op", ops),
        ],
    );

    // Assert
    assert_same(&diff, &harness, &envoy);
    assert!(
        envoy.body.contains(r#""get:X-Rep":"a""#),
        "first value: {}",
        envoy.body
    );
    assert!(envoy.body.contains(r#""get::path":"/api/products?q=1""#));
}

#[test]
fn header_pairs_come_back_in_the_same_order_as_in_envoy() {
    // Arrange
    let mut diff = Diff::start(&["a"]);

    // Act
    let (harness, envoy) = diff.send(
        "/api/products",
        &[
            ("x-first", "1"),
            ("x-rep", "a"),
            ("x-rep", "b"),
            ("x-last", "z"),
            (
                "x-probe-op",
                "add:x-added=1,remove:x-first,set:x-last=y,headers",
            ),
        ],
    );

    // Assert
    assert_same(&diff, &harness, &envoy);
    assert!(envoy.body.contains(r#"[":authority","probe.test"],[":path","/api/products"],[":method","GET"],[":scheme","http"]"#), "{}", envoy.body);
}

#[test]
fn the_upstream_receives_the_same_request_after_header_mutations() {
    // Arrange
    let mut diff = Diff::start(&["a"]);
    let ops = "set::path=/api/products?rewritten=1,set:x-new=v,set:x-rep=c,\
               add:x-multi=1,add:x-multi=2,remove:x-old";

    // Act
    let (harness, envoy) = diff.send(
        "/original",
        &[
            ("x-old", "1"),
            ("x-rep", "a"),
            ("x-rep", "b"),
            ("x-probe-reply", "pass"),
            ("x-probe-op", ops),
        ],
    );

    // Assert
    assert_same(&diff, &harness, &envoy);
    let up = envoy.upstream.as_ref().unwrap();
    assert_eq!(
        (up.method.as_str(), up.path.as_str()),
        ("GET", "/api/products?rewritten=1")
    );
    assert_eq!(envoy.upstream_header("x-new"), Some("v"));
    assert_eq!(envoy.upstream_header("x-old"), None);
    assert!(envoy.upstream_header("x-probe-observations").is_some());
}

#[test]
fn a_local_reply_has_the_same_status_body_headers_and_details_as_in_envoy() {
    // Arrange
    let mut diff = Diff::start(&["a"]);

    // Act
    let (harness, envoy) = diff.send(
        "/api/products",
        &[(
            "x-probe-op",
            "status:403,details:denied by probe,get::method",
        )],
    );

    // Assert
    assert_same(&diff, &harness, &envoy);
    assert_eq!(envoy.status, 403);
    assert_eq!(envoy.header_all("content-type"), vec!["text/plain"]);
    assert_eq!(envoy.header_all("x-probe"), vec!["a"]);
    assert_eq!(envoy.upstream, None);
    let access = diff.envoy.access_log();
    assert!(access.contains("denied_by_probe"), "{access}");
    let out = diff
        .chain
        .request("GET", "/api/products")
        .header("x-probe-op", "status:403,details:denied by probe")
        .send()
        .unwrap();
    assert_eq!(out.local_reply().unwrap().details, "denied_by_probe");
}

#[test]
fn request_and_plugin_properties_agree_with_envoy() {
    // Arrange
    let mut diff = Diff::start(&["a"]);
    let props = [
        "request/path",
        "request/url_path",
        "request/method",
        "request/host",
        "request/scheme",
        "request/protocol",
        "request/headers/x-custom",
        "request/headers/x-rep",
        "plugin_name",
        "plugin_root_id",
        "plugin_vm_id",
        "connection/mtls",
        "source/address",
        "source/port",
        "destination/address",
        "destination/port",
        "connection_id",
        "node/id",
        "no/such/property",
    ];
    let ops: Vec<String> = props.iter().map(|p| format!("prop:{p}")).collect();

    // Act
    let (harness, envoy) = diff.send(
        "/props/x?q=1",
        &[
            ("x-custom", "Val"),
            ("x-rep", "a"),
            ("x-rep", "b"),
            ("x-probe-op", &ops.join(",")),
        ],
    );

    // Assert
    assert_same(&diff, &harness, &envoy);
    assert!(envoy.body.contains(r#""prop:request/path":"/props/x?q=1""#));
    assert!(envoy.body.contains(r#""prop:connection/mtls":false"#));
    assert!(envoy.body.contains(r#""prop:source/address":"present""#));
}

#[test]
fn source_and_destination_addresses_have_the_same_ip_port_shape_as_in_envoy() {
    // Arrange
    let mut diff = Diff::start(&["a"]);
    let ops = "shape:source/address,shape:destination/address";

    // Act
    let (harness, envoy) = diff.send("/api/products", &[("x-probe-op", ops)]);

    // Assert
    assert_same(&diff, &harness, &envoy);
    assert!(
        envoy.body.contains(r#""shape:source/address":"N.N.N.N:N""#),
        "{}",
        envoy.body
    );
}

#[test]
fn filter_state_set_by_one_probe_is_read_by_the_next_as_in_envoy() {
    // Arrange
    let mut diff = Diff::start(&["a", "b"]);

    // Act
    let (harness, envoy) = diff.send(
        "/api/products",
        &[
            ("x-probe-reply-a", "pass"),
            ("x-probe-op-a", "setprop:meshwasm.variant=blue,prop:meshwasm.variant"),
            (
                "x-probe-op-b",
                "prop:meshwasm.variant,prop:filter_state/wasm.meshwasm.variant,prop:plugin_name,prop:plugin_root_id,get:x-probe-order,get:x-probe-observations",
            ),
        ],
    );

    // Assert
    assert_same(&diff, &harness, &envoy);
    assert!(
        envoy.body.contains(r#""prop:meshwasm.variant":"blue""#),
        "{}",
        envoy.body
    );
    assert!(envoy.body.contains(r#""prop:plugin_root_id":"root_b""#));
}
