//! The real-Envoy rig: `envoy.yaml` as the template, test upstreams behind
//! its clusters, refusal of bad configs, cleanup.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::PathBuf;

use meshwasm_harness::envoy::{
    Envoy, EnvoyError, EnvoyRig, WasmFilter, product_cluster, seed_filter_config, wasm_path,
    workspace_root,
};
use meshwasm_harness::upstream::ProductService;

struct Upstreams {
    v1: ProductService,
    v2: ProductService,
}

fn upstreams() -> Upstreams {
    Upstreams {
        v1: ProductService::start("v1").unwrap(),
        v2: ProductService::start("v2").unwrap(),
    }
}

fn rig(u: &Upstreams) -> EnvoyRig {
    EnvoyRig::builder()
        .cluster(&product_cluster("v1"), u.v1.addr())
        .cluster(&product_cluster("v2"), u.v2.addr())
}

/// The route filter's wasm, built by `cargo xtask build`; a missing file
/// fails the test rather than skipping it.
fn built_route_filter() -> PathBuf {
    let path = wasm_path("route");
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask build`",
        path.display()
    );
    path
}

/// The log of an Envoy that refused its config; fails the test on any other
/// result.
fn refusal_log(result: Result<Envoy, EnvoyError>) -> String {
    match result {
        Err(EnvoyError::Refused { log }) => log,
        other => panic!("expected Refused, got {other:?}"),
    }
}

#[test]
fn without_wasm_filters_the_fallback_route_sends_requests_to_v1() {
    let u = upstreams();
    let envoy = rig(&u).filters(vec![]).start().unwrap();

    let r = envoy
        .get("/api/products", &[("host", "product-service")])
        .unwrap();

    assert_eq!(r.status, 200, "{}", envoy.log());
    assert_eq!(r.header("service-version"), Some("v1"));
    assert_eq!(
        r.json().unwrap()["message"],
        "Product service v1 - stable version"
    );
    assert_eq!((u.v1.hits(), u.v2.hits()), (1, 0));
    assert_eq!(envoy.counter("http.main.downstream_rq_2xx"), Some(1));
}

#[test]
fn the_cluster_header_route_sends_requests_to_the_named_cluster() {
    let u = upstreams();
    let envoy = rig(&u).filters(vec![]).start().unwrap();

    let r = envoy
        .get(
            "/api/products",
            &[("x-mesh-cluster", &product_cluster("v2"))],
        )
        .unwrap();

    assert_eq!(r.header("service-version"), Some("v2"));
    assert_eq!((u.v1.hits(), u.v2.hits()), (0, 1));
    assert!(
        envoy.access_log().contains(&product_cluster("v2")),
        "{}",
        envoy.access_log()
    );
}

#[test]
fn an_unknown_cluster_in_the_header_is_a_503() {
    let u = upstreams();
    let envoy = rig(&u).filters(vec![]).start().unwrap();

    let r = envoy
        .get("/api/products", &[("x-mesh-cluster", "nope")])
        .unwrap();

    assert_eq!(r.status, 503);
    assert!(
        envoy.access_log().contains("cluster_not_found"),
        "{}",
        envoy.access_log()
    );
}

#[test]
fn h2c_requests_are_accepted_by_the_listener() {
    let u = upstreams();
    let envoy = rig(&u).filters(vec![]).start().unwrap();
    let client = meshwasm_harness::client::Client::http2().unwrap();

    let r = client
        .get(&format!("{}/api/products", envoy.url()), &[])
        .unwrap();

    assert_eq!(r.header("service-version"), Some("v1"));
}

#[test]
fn a_missing_wasm_file_makes_envoy_refuse_the_config() {
    let u = upstreams();
    let missing = workspace_root().join("target/no-such-filter.wasm");
    let filter = WasmFilter::new("meshwasm.missing", &missing, "{}");

    let result = rig(&u).filters(vec![filter]).start();

    let log = refusal_log(result);
    assert!(log.contains("no-such-filter.wasm"), "{log}");
}

#[test]
fn dropping_the_rig_stops_envoy() {
    let u = upstreams();
    let envoy = rig(&u).filters(vec![]).start().unwrap();
    let pid = envoy.pid();
    let dir = envoy.dir().to_path_buf();

    drop(envoy);

    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(!dir.exists());
}

#[test]
fn the_seed_filter_config_is_the_seed_resources_as_json() {
    let config = seed_filter_config().unwrap();

    let json: serde_json::Value = serde_json::from_str(&config).unwrap();

    assert_eq!(json["resources"][0]["kind"], "VirtualService");
    assert_eq!(json["resources"][1]["kind"], "DestinationRule");
    assert_eq!(json["envoy"]["clusterHeader"], "x-mesh-cluster");
}

/// Runs only once `cargo xtask build` has produced the route filter.
#[test]
fn envoy_yaml_with_the_route_filter_routes_like_the_seed_virtual_service() {
    built_route_filter();
    let u = upstreams();
    let envoy = rig(&u).start().unwrap();

    let premium = envoy
        .get(
            "/api/products",
            &[("host", "product-service"), ("user-type", "premium")],
        )
        .unwrap();
    let other_host = envoy.get("/api/products", &[]).unwrap();

    assert_eq!(
        premium.header("service-version"),
        Some("v2"),
        "{}",
        envoy.log()
    );
    assert_eq!(
        other_host.header("service-version"),
        Some("v1"),
        "{}",
        envoy.log()
    );
}

/// Runs only once `cargo xtask build` has produced the route filter.
#[test]
fn a_config_the_route_filter_rejects_makes_envoy_refuse_with_the_filter_message() {
    let route = built_route_filter();
    let u = upstreams();
    let bad = r#"{"resources":[{"apiVersion":"networking.istio.io/v1alpha3","kind":"VirtualService",
        "metadata":{"name":"x"},"spec":{"hosts":["a"],"http":[{"mtach":[]}]}}]}"#;
    let filter = WasmFilter::new("meshwasm.route", route, bad);

    let result = rig(&u).filters(vec![filter]).concurrency(2).start();

    let log = refusal_log(result);
    assert!(log.contains("mtach"), "{log}");
}
