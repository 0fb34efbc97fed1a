//! Differential test of the wasmtime host against real Envoy 1.40, part 2: metrics,
//! shared data, http calls, foreign functions and response callbacks (see
//! `probe_differential_common` for the setup and what is normalised).
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

mod probe_differential_common;

use probe_differential_common::{CALL_CLUSTER, Diff, VM_ID, assert_same};

#[test]
fn metrics_define_increment_and_get_agree_with_envoy_and_its_stats() {
    // Arrange
    let mut diff = Diff::start(&["a"]);
    let ops = "metric:probe_diff_total,gauge:probe_diff_gauge=5,metric-zero:probe_diff_total,\
               histogram:probe_diff_hist=7";

    // Act
    let (harness1, envoy1) = diff.send("/api/products", &[("x-probe-op", ops)]);
    let (harness2, envoy2) = diff.send("/api/products", &[("x-probe-op", ops)]);

    // Assert
    assert_same(&diff, &harness1, &envoy1);
    assert_same(&diff, &harness2, &envoy2);
    assert!(
        envoy2.body.contains(r#""metric:probe_diff_total":2"#),
        "{}",
        envoy2.body
    );
    assert!(
        envoy2
            .body
            .contains(r#""metric-zero:probe_diff_total":"Err(BadArgument)""#)
    );
    assert_eq!(diff.envoy.counter("wasmcustom.probe_diff_total"), Some(2));
    assert_eq!(diff.host.metric("probe_diff_total"), Some(2));
    assert_eq!(diff.envoy.counter("wasmcustom.probe_diff_gauge"), Some(5));
    assert_eq!(diff.host.metric("wasmcustom.probe_diff_gauge"), Some(5));
    assert!(diff.envoy.stats().contains("wasmcustom.probe_diff_hist"));
    assert_eq!(diff.host.histogram("probe_diff_hist"), Some(vec![7, 7]));
}

#[test]
fn shared_data_cas_semantics_agree_with_envoy() {
    // Arrange
    let mut diff = Diff::start(&["a", "b"]);

    // Act: `a` and `b` share the vm_id key space.
    let (harness1, envoy1) = diff.send(
        "/api/products",
        &[
            ("x-probe-reply-a", "pass"),
            (
                "x-probe-op-a",
                "shared-incr:count,shared-incr:count,shared-stale:stale",
            ),
            ("x-probe-op-b", "shared-incr:count,get:x-probe-observations"),
        ],
    );
    let (harness2, envoy2) = diff.send("/api/products", &[("x-probe-op-a", "shared-incr:count")]);

    // Assert
    assert_same(&diff, &harness1, &envoy1);
    assert_same(&diff, &harness2, &envoy2);
    assert!(
        envoy1
            .body
            .contains(r#"\"shared-stale:stale\":\"Err(CasMismatch)\""#),
        "{}",
        envoy1.body
    );
    assert!(
        envoy1.body.contains(r#""shared-incr:count":3"#),
        "{}",
        envoy1.body
    );
    assert!(
        envoy2.body.contains(r#""shared-incr:count":4"#),
        "{}",
        envoy2.body
    );
    assert_eq!(diff.host.shared_data(VM_ID, "count").unwrap().0, b"4");
}

#[test]
fn an_http_call_to_a_cluster_observes_the_same_response_as_in_envoy() {
    // Arrange
    let mut diff = Diff::start(&["a"]);

    // Act
    let (harness, envoy) = diff.send(
        "/api/products",
        &[(
            "x-probe-op",
            &format!("call-headers:{CALL_CLUSTER},get::path"),
        )],
    );

    // Assert
    assert_same(&diff, &harness, &envoy);
    assert!(
        envoy.body.contains(r#""call.status":"404""#),
        "{}",
        envoy.body
    );
    assert!(
        envoy
            .body
            .contains(r#""call.body":"404 page not found\\x0a""#)
    );
    assert_eq!(diff.call_service.hits_for("/probe"), 2);
}

#[test]
fn http_calls_to_an_unknown_cluster_or_without_authority_are_bad_arguments_as_in_envoy() {
    // Arrange
    let mut diff = Diff::start(&["a"]);
    let ops = format!("call:no_such_cluster,call-bad:{CALL_CLUSTER}");

    // Act
    let (harness, envoy) = diff.send("/api/products", &[("x-probe-op", &ops)]);

    // Assert
    assert_same(&diff, &harness, &envoy);
    assert!(
        envoy
            .body
            .contains(r#""call:no_such_cluster":"BadArgument""#),
        "{}",
        envoy.body
    );
    assert_eq!(diff.call_service.total_hits(), 0);
}

#[test]
fn foreign_function_clear_route_cache_exists_and_unknown_names_are_not_found_as_in_envoy() {
    // Arrange
    let mut diff = Diff::start(&["a"]);

    // Act
    let (harness, envoy) = diff.send(
        "/api/products",
        &[(
            "x-probe-op",
            "foreign:clear_route_cache,foreign:no_such_function",
        )],
    );

    // Assert
    assert_same(&diff, &harness, &envoy);
    assert!(
        envoy
            .body
            .contains(r#""foreign:no_such_function":"Err(NotFound)""#),
        "{}",
        envoy.body
    );
}

#[test]
fn response_callbacks_run_in_reverse_order_and_set_headers_as_in_envoy() {
    // Arrange
    let mut diff = Diff::start(&["a", "b"]);

    // Act: the upstream answers; then `a` replies locally while `b` never acts.
    let (harness, envoy) = diff.send(
        "/api/products",
        &[
            ("x-probe-reply", "pass"),
            ("x-probe-op", "get:x-probe-order"),
        ],
    );
    let (harness_local, envoy_local) =
        diff.send("/api/products", &[("x-probe-op-a", "status:401")]);

    // Assert
    assert_same(&diff, &harness, &envoy);
    assert_same(&diff, &harness_local, &envoy_local);
    assert_eq!(envoy.header_all("x-probe-order"), vec!["b", "a"]);
    assert_eq!(envoy.upstream_header("x-probe-order"), Some("a"));
    assert_eq!(envoy_local.status, 401);
    // Envoy encodes a local reply only through the filters that saw the request.
    assert_eq!(envoy_local.header_all("x-probe-order"), vec!["a"]);
}
