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

#[test]
fn null_fields_are_absent_as_kubernetes_prunes_them() {
    let doc = document_of(vec![vs(json!({"hosts": ["a"], "gateways": null,
        "http": [{"match": null, "route": [{"destination": {"host": "a", "port": null}}]}]}))]);
    let doc = Document::parse(&doc, Kind::ALL).unwrap();
    let http = &doc.virtual_services[0].spec.http[0];
    assert!(http.matches.is_empty() && doc.virtual_services[0].spec.gateways.is_empty());
    assert!(http.route[0].destination.port.is_none());
}

#[test]
fn a_null_header_match_is_refused_not_pruned() {
    // virtualservice.go validateHTTPRouteMatchRequest: "header match … cannot be null".
    let doc = document_of(vec![vs(json!({"hosts": ["a"],
        "http": [{"match": [{"headers": {"x": null}}], "route": [{"destination": {"host": "a"}}]}]}))]);
    let e = Document::parse(&doc, Kind::ALL).unwrap_err();
    assert_eq!(e.path, "resources[0].spec.http[0].match[0].headers.x");
}

fn dr(spec: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
           "metadata": {"name": "dr"}, "spec": spec})
}

#[test]
fn the_newest_destination_rule_fields_are_read_and_every_message_is_strict() {
    // istio/istio master's CRD: http2KeepAlive, zoneAwareLbSetting,
    // backendUtilization, outlierDetectionHttpErrorCodes.
    let policy = json!({
        "connectionPool": {"http": {"http2KeepAlive": {"interval": "15s", "timeout": "5s"}},
                           "tcp": {"tcpKeepalive": {"probes": 3, "time": "10s"}}},
        "loadBalancer": {"simple": "ROUND_ROBIN", "zoneAwareLbSetting": {"enabled": true, "minClusterSize": 2}},
        "outlierDetection": {"outlierDetectionHttpErrorCodes": [500, 503]},
        "tls": {"mode": "SIMPLE", "sni": "a.example"},
        "portLevelSettings": [{"port": {"number": 80}, "loadBalancer": {"backendUtilization": {"errorUtilizationPenaltyPercent": 10}}}],
        "retryBudget": {"percent": 20.0, "minRetryConcurrency": 3}});
    let doc = document_of(vec![dr(json!({"host": "a", "trafficPolicy": policy}))]);
    let doc = Document::parse(&doc, Kind::ALL).unwrap();
    let tp = doc.destination_rules[0]
        .spec
        .traffic_policy
        .as_ref()
        .unwrap();
    let lb = tp.load_balancer.as_ref().unwrap();
    assert_eq!(
        lb.zone_aware_lb_setting.as_ref().unwrap().min_cluster_size,
        Some(2)
    );
    assert_eq!(tp.port_level_settings[0].port.as_ref().unwrap().number, 80);
    let e = Document::parse(
        &document_of(vec![dr(
            json!({"host": "a", "trafficPolicy": {"tls": {"mod": "SIMPLE"}}}),
        )]),
        Kind::ALL,
    )
    .unwrap_err();
    assert_eq!(e.path, "resources[0].spec.trafficPolicy.tls.mod");
    let e = Document::parse(
        &document_of(vec![vs(
            json!({"hosts": ["a"], "tcp": [{"route": [{"destination": {"hots": "a"}}]}]}),
        )]),
        Kind::ALL,
    )
    .unwrap_err();
    assert_eq!(e.path, "resources[0].spec.tcp[0].route[0].destination.hots");
}

#[test]
fn kubernetes_objects_are_skipped_by_kind_before_anything_else_is_read() {
    // Pasted beside Istio resources (the egress TLS origination task):
    // their top-level fields are not `spec`, and they are not refused.
    let objects = vec![
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "r"},
               "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "rb"},
               "roleRef": {"kind": "Role", "name": "r"}, "subjects": []}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "b"}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "type": "Opaque"}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa"},
               "automountServiceAccountToken": false}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "h"}, "spec": {}}),
        json!({"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "g"}, "spec": {}}),
        json!({"apiVersion": "install.istio.io/v1alpha1", "kind": "IstioOperator", "metadata": {"name": "io"}}),
        json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "cert"}}),
    ];
    let doc = Document::parse(&document_of(objects), Kind::ALL).unwrap();
    let w = |i: usize| doc.warnings.get(i).cloned().unwrap_or_default();
    assert_eq!(
        w(0),
        "resources[0]: Role \"r\" (rbac.authorization.k8s.io/v1) is a Kubernetes object, not Istio configuration; skipped"
    );
    assert!(
        w(3).contains("Secret \"s\" (v1) is a Kubernetes object"),
        "{}",
        w(3)
    );
    assert!(w(5).contains("is a Gateway API object"), "{}", w(5));
    assert!(
        w(6).contains("is an Istio kind meshwasm does not read"),
        "{}",
        w(6)
    );
    assert!(
        w(7).contains("is an Istio kind meshwasm does not read"),
        "{}",
        w(7)
    );
    assert!(w(8).contains("is not Istio configuration"), "{}", w(8));
    // The kinds meshwasm reads keep their strict envelope.
    let mut r = vs(json!({"hosts": ["a"], "http": [{"route": [{"destination": {"host": "a"}}]}]}));
    r["rules"] = json!([]);
    let err = Document::parse(&document_of(vec![r]), Kind::ALL).unwrap_err();
    assert_eq!(err.path, "resources[0].rules");
}
