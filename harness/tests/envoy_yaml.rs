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
        warnings
            .iter()
            .all(|w| w.contains("circuitBreaker") || w.contains("not applied by meshwasm")),
        "{warnings:?}"
    );
}

/// The settings of envoy.yaml's product-service clusters are those
/// `cargo xtask clusters` writes from the seed DestinationRule (what Istio
/// would write): load balancer, circuit breakers, connection options.
/// Outlier detection and the panic threshold are deliberately left to
/// meshwasm's resilience stage, which ejects whole subsets
/// (docs/resilience.md): with one endpoint per subset cluster, Envoy's
/// per-endpoint ejection would eject the same thing a second time.
#[test]
fn the_product_service_clusters_follow_the_seed_destination_rule() {
    let files = [testdata().join("istio/destination-rule-example.yaml")];
    let doc = config_document(istio_resources(&files).unwrap(), None, None).to_string();
    let doc = meshwasm::config::Document::parse(
        doc.as_bytes(),
        &[meshwasm::config::Kind::DestinationRule],
    )
    .unwrap();
    let (expected, _) = meshwasm::resilience::clusters::envoy_clusters(&doc);
    let text =
        std::fs::read_to_string(meshwasm_harness::envoy::workspace_root().join("envoy.yaml"))
            .unwrap();
    let envoy: Value = serde_norway::from_str(&text).unwrap();
    let in_yaml = envoy["static_resources"]["clusters"].as_array().unwrap();
    let mut checked = 0;
    for want in &expected {
        let Some(have) = in_yaml.iter().find(|c| c["name"] == want["name"]) else {
            continue;
        };
        for key in [
            "lb_policy",
            "circuit_breakers",
            "typed_extension_protocol_options",
            "transport_socket",
        ] {
            assert_eq!(have.get(key), want.get(key), "{}: {key}", want["name"]);
        }
        assert!(have.get("outlier_detection").is_none());
        checked += 1;
    }
    assert_eq!(checked, 2, "v1 and v2");
}
