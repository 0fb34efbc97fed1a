//! Resilience in the wasmtime host on the virtual clock, with Envoy's VMs
//! (two workers plus the main-thread VMs, all sharing shared data and
//! stats): the seed's DestinationRule pasted as is — its legacy
//! `circuitBreaker` read as `outlierDetection {consecutiveGatewayErrors: 3,
//! interval: 30s, baseEjectionTime: 30s}` (SPEC.md §DestinationRule 8) —
//! ejects v2 of a 50/50 route after its 3rd consecutive gateway error,
//! whichever worker saw each, sends v2's share to v1, probes v2 after its
//! own 30 s and readmits it (docs/resilience.md).
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use meshwasm_harness::host::{Chain, FilterSpec, Host, UpstreamResponse};
use meshwasm_harness::scenario::{config_document, istio_resources, testdata};
use serde_json::json;

const V1: &str = "outbound|80|v1|product-service.default.svc.cluster.local";
const V2: &str = "outbound|80|v2|product-service.default.svc.cluster.local";
const STAT: &str = "meshwasm.resilience.outbound_80_v2_product-service_default_svc_cluster_local";

/// The seed DestinationRule and a 50/50 VirtualService over its subsets.
fn config() -> String {
    let mut resources =
        istio_resources(&[testdata().join("istio/destination-rule-example.yaml")]).unwrap();
    resources.push(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "split"},
        "spec": {"hosts": ["product-service"], "http": [{"route": [
            {"destination": {"host": "product-service", "subset": "v1"}, "weight": 50},
            {"destination": {"host": "product-service", "subset": "v2"}, "weight": 50}]}]}}));
    config_document(resources, None, None).to_string()
}

/// The route filter on two workers; v2 answers `v2_status` (shared cell),
/// v1 200.
fn setup() -> (Host, Chain, Rc<Cell<u32>>) {
    let mut host = Host::builder().seed(3).workers(2).build().unwrap();
    let wasm = meshwasm_harness::envoy::wasm_path("route");
    let chain = host
        .load(&[FilterSpec::new("meshwasm.route", wasm).config(config())])
        .unwrap();
    let v2_status = Rc::new(Cell::new(200));
    let status = Rc::clone(&v2_status);
    chain.set_upstream(move |req| {
        if req.header("x-mesh-cluster") == Some(V2) {
            UpstreamResponse::new(status.get())
        } else {
            UpstreamResponse::new(200)
        }
    });
    (host, chain, v2_status)
}

/// Sends `n` requests, alternating workers; the clusters they went to and
/// their statuses.
fn send(chain: &Chain, n: usize) -> Vec<(String, u32)> {
    (0..n)
        .map(|i| {
            let out = chain
                .request("GET", "/api/products")
                .authority("product-service")
                .worker(i % 2)
                .send()
                .unwrap();
            let cluster = out
                .upstream_header("x-mesh-cluster")
                .unwrap_or("")
                .to_owned();
            (cluster, out.status())
        })
        .collect()
}

fn count(seen: &[(String, u32)], cluster: &str, status: u32) -> usize {
    seen.iter()
        .filter(|(c, s)| c == cluster && *s == status)
        .count()
}

#[test]
fn the_seed_circuit_breaker_ejects_v2_after_three_gateway_errors_for_thirty_seconds() {
    let (mut host, chain, v2_status) = setup();
    assert!(
        host.vm_count() > 2,
        "Envoy's main-thread VMs as well as the workers'"
    );
    v2_status.set(503);
    let seen = send(&chain, 200);
    assert_eq!(
        count(&seen, V2, 503),
        3,
        "3 consecutive gateway errors across both workers eject v2"
    );
    assert_eq!(count(&seen, V1, 200), 197);
    assert_eq!(host.metric(&format!("{STAT}.ejections_active")), Some(1));
    assert_eq!(host.metric(&format!("{STAT}.ejections_total")), Some(1));

    host.advance(Duration::from_millis(29_900)).unwrap();
    assert!(
        send(&chain, 50).iter().all(|(c, _)| c == V1),
        "still ejected"
    );

    v2_status.set(200);
    host.advance(Duration::from_millis(100)).unwrap();
    let seen = send(&chain, 200);
    let back = count(&seen, V2, 200);
    assert!(
        back > 60,
        "probed and readmitted: v2 takes its half again ({back})"
    );
    assert_eq!(host.metric(&format!("{STAT}.readmissions")), Some(1));
    assert_eq!(host.metric(&format!("{STAT}.ejections_active")), Some(0));
}

#[test]
fn a_failed_probe_ejects_again_for_twice_the_time() {
    let (mut host, chain, v2_status) = setup();
    v2_status.set(502);
    send(&chain, 50);
    host.advance(Duration::from_secs(30)).unwrap();
    let seen = send(&chain, 50);
    assert_eq!(count(&seen, V2, 502), 1, "one probe, failed");
    host.advance(Duration::from_secs(59)).unwrap();
    assert!(send(&chain, 50).iter().all(|(c, _)| c == V1), "2 × 30 s");
    host.advance(Duration::from_secs(1)).unwrap();
    assert_eq!(count(&send(&chain, 50), V2, 502), 1);
    assert_eq!(host.metric(&format!("{STAT}.ejections_total")), Some(3));
}

#[test]
fn plain_5xx_need_envoys_default_five_and_an_overflow_reply_never_counts() {
    let (_host, chain, v2_status) = setup();
    v2_status.set(500);
    let seen = send(&chain, 200);
    assert_eq!(
        count(&seen, V2, 500),
        5,
        "500 is no gateway error: consecutive_5xx's default 5 ejects"
    );

    let (host, chain, _) = setup();
    chain.set_upstream(|req| {
        if req.header("x-mesh-cluster") == Some(V2) {
            UpstreamResponse::new(503).header("x-envoy-overloaded", "true")
        } else {
            UpstreamResponse::new(200)
        }
    });
    let seen = send(&chain, 200);
    assert!(count(&seen, V2, 503) > 60, "overflows are not failures");
    assert_eq!(host.metric(&format!("{STAT}.ejections_total")), Some(0));
}
