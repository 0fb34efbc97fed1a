use serde_json::json;

use super::*;
use crate::testutil::{document, document_of, resources};

const SEED: &[&str] = &[
    "authentication-policy.yaml",
    "authorization-policy.yaml",
    "canary-virtual-service.yaml",
    "destination-rule-example.yaml",
    "fault-injection-abort.yaml",
    "fault-injection-delay.yaml",
    "timeout-policy.yaml",
    "virtual-service-example.yaml",
];

fn vs(spec: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualService",
           "metadata": {"name": "vs"}, "spec": spec})
}

#[test]
fn every_seed_resource_is_accepted_as_it_is() {
    for file in SEED {
        let doc = document(&[file, "destination-rule-example.yaml"]);
        let result = validate_all(&doc);
        assert!(result.is_ok(), "{file}: {result:?}");
    }
}

#[test]
fn the_seed_circuit_breaker_is_read_as_outlier_detection_with_a_warning() {
    let doc = Document::parse(&document(&["destination-rule-example.yaml"]), Kind::ALL).unwrap();
    let policy = doc.destination_rules[0]
        .spec
        .traffic_policy
        .as_ref()
        .unwrap();
    let od = policy.effective_outlier_detection().unwrap();
    assert_eq!(od.consecutive_gateway_errors, Some(3));
    assert_eq!(od.base_ejection_time.map(|d| d.0.as_secs()), Some(30));
    let warnings = validate_all(&document(&["destination-rule-example.yaml"])).unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("resources[0].spec.trafficPolicy.circuitBreaker")),
        "{warnings:?}"
    );
}

#[test]
fn a_config_that_is_not_json_is_refused() {
    let err = Document::parse(b"hosts: [a]", Kind::ALL).unwrap_err();
    assert!(err.message.contains("not JSON"), "{err}");
    let err = Document::parse(b"{\"resources\": []} trailing", Kind::ALL).unwrap_err();
    assert!(err.message.contains("not JSON"), "{err}");
}

#[test]
fn an_unknown_field_in_a_spec_is_refused_with_its_json_path() {
    let doc = document_of(vec![vs(
        json!({"hosts": ["a"], "http": [{"mtach": [], "route": []}]}),
    )]);
    let err = Document::parse(&doc, &[Kind::VirtualService]).unwrap_err();
    assert_eq!(err.path, "resources[0].spec.http[0].mtach");
    assert!(err.message.contains("unknown field `mtach`"), "{err}");
}

#[test]
fn an_unknown_field_deep_in_a_match_names_the_whole_path() {
    let doc = document_of(vec![vs(json!({"hosts": ["a"], "http": [
        {"match": [{"headers": {"x": {"exakt": "1"}}}], "route": [{"destination": {"host": "a"}}]}]}))]);
    let err = Document::parse(&doc, &[Kind::VirtualService]).unwrap_err();
    assert_eq!(
        err.path,
        "resources[0].spec.http[0].match[0].headers.x.exakt"
    );
}

#[test]
fn unknown_fields_of_the_document_and_the_envoy_knobs_are_refused() {
    let err = Document::parse(br#"{"resources": [], "resourcez": []}"#, Kind::ALL).unwrap_err();
    assert_eq!(err.path, "resourcez");
    let err = Document::parse(br#"{"envoy": {"clusterHeadr": "x"}}"#, Kind::ALL).unwrap_err();
    assert_eq!(err.path, "envoy.clusterHeadr");
}

#[test]
fn kinds_a_filter_does_not_implement_are_skipped_unread() {
    let bad_policy = json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                            "metadata": {"name": "p"}, "spec": {"rulez": []}});
    let doc = Document::parse(&document_of(vec![bad_policy]), &[Kind::VirtualService]);
    assert!(doc.is_ok(), "{doc:?}");
}

#[test]
fn every_documented_api_version_is_accepted_and_others_are_refused() {
    for version in ["v1alpha3", "v1beta1", "v1"] {
        let mut r =
            vs(json!({"hosts": ["a"], "http": [{"route": [{"destination": {"host": "a"}}]}]}));
        r["apiVersion"] = json!(format!("networking.istio.io/{version}"));
        assert!(
            Document::parse(&document_of(vec![r]), Kind::ALL).is_ok(),
            "{version}"
        );
    }
    let mut r = vs(json!({"hosts": ["a"]}));
    r["apiVersion"] = json!("networking.istio.io/v2");
    let err = Document::parse(&document_of(vec![r]), Kind::ALL).unwrap_err();
    assert_eq!(err.path, "resources[0].apiVersion");
}

#[test]
fn a_misspelt_istio_kind_is_refused_but_foreign_kinds_are_skipped() {
    let mut r = vs(json!({}));
    r["kind"] = json!("VirtualServce");
    let err = Document::parse(&document_of(vec![r]), Kind::ALL).unwrap_err();
    assert_eq!(err.path, "resources[0].kind");
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": []}});
    let doc = Document::parse(&document_of(vec![svc]), Kind::ALL).unwrap();
    assert_eq!(doc.warnings.len(), 1, "{:?}", doc.warnings);
}

#[test]
fn a_bad_duration_names_its_field() {
    let doc = document_of(vec![vs(json!({"hosts": ["a"], "http": [
        {"route": [{"destination": {"host": "a"}}], "timeout": "10"}]}))]);
    let err = Document::parse(&doc, &[Kind::VirtualService]).unwrap_err();
    assert_eq!(err.path, "resources[0].spec.http[0].timeout");
}

#[test]
fn seed_yaml_round_trips_through_the_typed_model() {
    let doc = Document::parse(&document(&["timeout-policy.yaml"]), Kind::ALL).unwrap();
    let route = &doc.virtual_services[0].spec.http[0];
    assert_eq!(route.timeout.map(|d| d.0.as_secs()), Some(10));
    let retries = route.retries.as_ref().unwrap();
    assert_eq!(retries.attempts, 3);
    assert_eq!(
        retries.retry_on.as_deref(),
        Some("5xx,reset,connect-failure,refused-stream")
    );
    assert_eq!(resources("authentication-policy.yaml").len(), 2);
}

#[test]
fn an_omitted_workload_is_namespace_default() {
    let doc = Document::parse(br#"{"resources": []}"#, Kind::ALL).unwrap();
    assert_eq!(doc.workload.namespace, "default");
    let doc = Document::parse(br#"{"workload": {}}"#, Kind::ALL).unwrap();
    assert_eq!(doc.workload.namespace, "default");
}
