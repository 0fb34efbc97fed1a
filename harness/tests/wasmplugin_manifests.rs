//! The `WasmPlugin` manifests in docs/wasmplugin/ carry configurations the
//! filters accept: each manifest's `pluginConfig`, as Istio hands it to the
//! filter (JSON text, SPEC.md §proxy-wasm ABI A.4), loads in the harness
//! without a refusal, and the filter answers a request.
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

use meshwasm_harness::envoy::{wasm_path, workspace_root};
use meshwasm_harness::host::{FilterSpec, Host, UpstreamResponse};
use serde_json::Value;

#[test]
fn every_manifest_configures_its_filter() {
    let dir = workspace_root().join("docs/wasmplugin");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let manifest: Value = serde_norway::from_str(&text).unwrap();
        assert_eq!(manifest["kind"], "WasmPlugin", "{}", path.display());
        let name = manifest["metadata"]["name"].as_str().unwrap();
        let filter = name.strip_prefix("meshwasm-").unwrap();
        let config = manifest["spec"]["pluginConfig"].to_string();
        let mut host = Host::builder().build().unwrap();
        let chain = host
            .load(&[
                FilterSpec::new(&format!("meshwasm.{filter}"), wasm_path(filter)).config(config),
            ])
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        chain.set_upstream(|_| UpstreamResponse::new(200));
        let out = chain
            .request("GET", "/api/products")
            .authority("product-service")
            .send()
            .unwrap();
        assert!(out.status() > 0, "{}", path.display());
        seen.push(filter.to_owned());
    }
    seen.sort();
    assert_eq!(seen, ["authn", "fault", "mesh", "rbac", "route"]);
}
