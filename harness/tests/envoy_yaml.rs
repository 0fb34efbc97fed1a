//! envoy.yaml carries exactly the configuration `cargo xtask config` makes
//! from the files its comment names, so the demo and the tests that load
//! it never drift from testdata/istio/.
#![allow(clippy::unwrap_used, missing_docs)]

use meshwasm_harness::envoy::seed_filter_config;
use meshwasm_harness::scenario::{config_document, istio_resources, testdata};
use serde_json::{Value, json};

#[test]
fn the_embedded_configuration_is_the_one_built_from_testdata() {
    let files: Vec<_> = [
        "virtual-service-example.yaml",
        "destination-rule-example.yaml",
        "demo-extras.yaml",
        "demo-authn.yaml",
    ]
    .iter()
    .map(|f| testdata().join("istio").join(f))
    .collect();
    let envoy = json!({"clusterHeader": "x-mesh-cluster", "clusterName": "outbound|{port}|{subset}|{host}",
                       "jwksClusters": {"jwks.demo": "jwks"}});
    let expected = config_document(istio_resources(&files).unwrap(), None, Some(envoy));
    let embedded: Value = serde_json::from_str(&seed_filter_config().unwrap()).unwrap();
    assert_eq!(embedded, expected);
}

#[test]
fn the_embedded_configuration_is_valid() {
    let warnings =
        meshwasm::config::validate_all(seed_filter_config().unwrap().as_bytes()).unwrap();
    assert!(
        warnings.iter().all(|w| w.contains("circuitBreaker")),
        "{warnings:?}"
    );
}
