//! A `match.port` rule applies to requests that arrived on that port: the
//! filter reads `destination.port` (int64 LE) only when a rule needs it.
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

use meshwasm_harness::envoy::wasm_path;
use meshwasm_harness::host::{FilterSpec, Host};
use serde_json::json;

fn config() -> String {
    json!({"resources": [
        {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "dr"},
         "spec": {"host": "a", "subsets": [{"name": "v1"}, {"name": "v2"}]}},
        {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "vs"},
         "spec": {"hosts": ["a"], "http": [
            {"match": [{"port": 8080}], "route": [{"destination": {"host": "a", "subset": "v2"}}]},
            {"route": [{"destination": {"host": "a", "subset": "v1"}}]}]}}]})
    .to_string()
}

#[test]
fn a_port_match_selects_requests_by_destination_port() {
    let mut host = Host::builder().build().unwrap();
    let chain = host
        .load(&[FilterSpec::new("meshwasm.route", wasm_path("route")).config(config())])
        .unwrap();
    let send = |port: i64| {
        chain
            .request("GET", "/")
            .authority("a")
            .property("destination.port", port.to_le_bytes())
            .send()
            .unwrap()
            .upstream_header("x-mesh-cluster")
            .map(str::to_owned)
    };
    assert_eq!(
        send(8080).as_deref(),
        Some("outbound|80|v2|a.default.svc.cluster.local")
    );
    assert_eq!(
        send(9090).as_deref(),
        Some("outbound|80|v1|a.default.svc.cluster.local")
    );
}
