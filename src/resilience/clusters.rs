//! What only Envoy's cluster can do with a DestinationRule — load
//! balancing, connection pools, per-endpoint outlier detection, upstream
//! TLS — written as the Envoy cluster settings Istio generates
//! (istio/istio pilot/pkg/networking/core/cluster_traffic_policy.go
//! `applyTrafficPolicy`, `applyLoadBalancer`, `applyConnectionPool`,
//! `applyOutlierDetection`, `getDefaultCircuitBreakerThresholds`; SPEC.md
//! §DestinationRule 2–7), for `cargo xtask clusters`. The filters never
//! read this: it is what the `envoy.yaml` clusters behind the route filter
//! should say (a test keeps `envoy.yaml` consistent with it).

use serde_json::{Map, Value, json};

use crate::config::destination_rule::{
    ClientTlsSettings, ConnectionPoolSettings, DestinationRule, LoadBalancerSettings,
    OutlierDetection, SimpleLb, TlsMode, TrafficPolicy,
};
use crate::config::duration::IstioDuration;
use crate::config::{Document, Resource};
use crate::route::hosts;

/// Istio's circuit-breaker default for every threshold (`math.MaxUint32`).
const UNLIMITED: u64 = u32::MAX as u64;
/// Istio's mesh default `connectTimeout`.
const CONNECT_TIMEOUT: &str = "10s";

/// The four fields a port or a subset replaces wholesale.
#[derive(Default, Clone)]
struct Four<'a> {
    lb: Option<&'a LoadBalancerSettings>,
    pool: Option<&'a ConnectionPoolSettings>,
    outlier: Option<OutlierDetection>,
    tls: Option<&'a ClientTlsSettings>,
}

impl<'a> Four<'a> {
    /// A policy's four fields on `port`: a matching `portLevelSettings`
    /// entry gives all four (Istio `MergeTrafficPolicy`).
    fn of(policy: &'a TrafficPolicy, port: u32) -> Four<'a> {
        let at_port = policy
            .port_level_settings
            .iter()
            .find(|p| p.port.as_ref().is_some_and(|s| s.number == port));
        match at_port {
            Some(p) => Four {
                lb: p.load_balancer.as_ref(),
                pool: p.connection_pool.as_ref(),
                outlier: p.outlier_detection.clone(),
                tls: p.tls.as_ref(),
            },
            None => Four {
                lb: policy.load_balancer.as_ref(),
                pool: policy.connection_pool.as_ref(),
                outlier: policy.effective_outlier_detection(),
                tls: policy.tls.as_ref(),
            },
        }
    }

    /// `self` with every field `over` sets replacing it.
    fn overridden(self, over: Four<'a>) -> Four<'a> {
        Four {
            lb: over.lb.or(self.lb),
            pool: over.pool.or(self.pool),
            outlier: over.outlier.or(self.outlier),
            tls: over.tls.or(self.tls),
        }
    }
}

/// The Envoy clusters of every DestinationRule of `doc` — the host's and
/// one per subset, named by `envoy.clusterName` on `envoy.defaultPort` —
/// and warnings for what cannot be written without Istio (its own mTLS).
pub fn envoy_clusters(doc: &Document) -> (Vec<Value>, Vec<String>) {
    let mut clusters = Vec::new();
    let mut warnings = Vec::new();
    let port = doc.envoy.default_port;
    for dr in &doc.destination_rules {
        let top = dr
            .spec
            .traffic_policy
            .as_ref()
            .map(|p| Four::of(p, port))
            .unwrap_or_default();
        let subsets = std::iter::once(("", None)).chain(
            dr.spec
                .subsets
                .iter()
                .map(|s| (s.name.as_str(), s.traffic_policy.as_ref())),
        );
        for (subset, own) in subsets {
            let four = match own {
                Some(p) => top.clone().overridden(Four::of(p, port)),
                None => top.clone(),
            };
            let name = cluster_name(doc, dr, subset, port);
            clusters.push(cluster(&name, &four, &mut warnings));
        }
    }
    (clusters, warnings)
}

fn cluster_name(doc: &Document, dr: &Resource<DestinationRule>, subset: &str, port: u32) -> String {
    let fqdn = hosts::fqdn(
        &dr.spec.host,
        doc.namespace_of(dr),
        &doc.envoy.domain_suffix,
    );
    doc.envoy
        .cluster_name
        .replace("{host}", &fqdn)
        .replace("{subset}", subset)
        .replace("{port}", &port.to_string())
}

fn cluster(name: &str, four: &Four<'_>, warnings: &mut Vec<String>) -> Value {
    let mut c = Map::new();
    c.insert("name".into(), name.into());
    let simple = four.lb.and_then(|lb| lb.simple);
    let lb_policy = match simple {
        Some(SimpleLb::RoundRobin) => "ROUND_ROBIN",
        Some(SimpleLb::Random) => "RANDOM",
        Some(SimpleLb::Passthrough) => {
            c.insert("type".into(), "ORIGINAL_DST".into());
            "CLUSTER_PROVIDED"
        }
        // LEAST_CONN is LEAST_REQUEST's deprecated name; unset is Istio's
        // default, LEAST_REQUEST.
        _ => "LEAST_REQUEST",
    };
    c.insert("lb_policy".into(), lb_policy.into());
    if four.lb.is_some_and(|lb| lb.consistent_hash.is_some()) {
        warnings.push(format!(
            "{name}: consistentHash needs hash policies on Envoy's routes; not written"
        ));
    }
    let pool = four.pool;
    let tcp = pool.and_then(|p| p.tcp.as_ref());
    let http = pool.and_then(|p| p.http.as_ref());
    let positive = |v: Option<i64>| v.filter(|v| *v > 0).and_then(|v| u64::try_from(v).ok());
    c.insert(
        "connect_timeout".into(),
        tcp.and_then(|t| t.connect_timeout)
            .map_or(CONNECT_TIMEOUT.into(), duration)
            .into(),
    );
    c.insert(
        "circuit_breakers".into(),
        json!({"thresholds": [{
            "max_connections": positive(tcp.and_then(|t| t.max_connections)).unwrap_or(UNLIMITED),
            "max_pending_requests":
                positive(http.and_then(|h| h.http1_max_pending_requests)).unwrap_or(UNLIMITED),
            "max_requests": positive(http.and_then(|h| h.http2_max_requests)).unwrap_or(UNLIMITED),
            "max_retries": positive(http.and_then(|h| h.max_retries)).unwrap_or(UNLIMITED),
            "track_remaining": true,
        }]}),
    );
    let mut common = Map::new();
    if let Some(n) = positive(http.and_then(|h| h.max_requests_per_connection)) {
        common.insert("max_requests_per_connection".into(), n.into());
    }
    if let Some(t) = http.and_then(|h| h.idle_timeout) {
        common.insert("idle_timeout".into(), duration(t).into());
    }
    if !common.is_empty() {
        c.insert(
            "typed_extension_protocol_options".into(),
            json!({"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "common_http_protocol_options": common,
                "explicit_http_config": {"http_protocol_options": {}},
            }}),
        );
    }
    if let Some(od) = &four.outlier {
        c.insert("outlier_detection".into(), outlier_detection(od));
        let panic = od.min_health_percent.unwrap_or(0).max(0);
        c.insert(
            "common_lb_config".into(),
            json!({"healthy_panic_threshold": {"value": panic}}),
        );
    }
    if let Some(tls) = four.tls
        && let Some(socket) = transport_socket(name, tls, warnings)
    {
        c.insert("transport_socket".into(), socket);
    }
    Value::Object(c)
}

/// Istio's `applyOutlierDetection`: a count set to 0 turns its check off
/// (enforcing 0), success-rate ejection is off, times and percentages
/// copied when set.
fn outlier_detection(od: &OutlierDetection) -> Value {
    let mut o = Map::new();
    let mut count = |value: Option<i64>, field: &str, enforcing: &str| {
        if let Some(v) = value.and_then(|v| u64::try_from(v).ok()) {
            o.insert(field.into(), v.into());
            o.insert(enforcing.into(), (if v > 0 { 100 } else { 0 }).into());
        }
    };
    count(
        od.consecutive_5xx_errors,
        "consecutive_5xx",
        "enforcing_consecutive_5xx",
    );
    count(
        od.consecutive_gateway_errors,
        "consecutive_gateway_failure",
        "enforcing_consecutive_gateway_failure",
    );
    count(
        od.consecutive_local_origin_failures,
        "consecutive_local_origin_failure",
        "enforcing_consecutive_local_origin_failure",
    );
    o.insert("enforcing_success_rate".into(), 0.into());
    if let Some(split) = od.split_external_local_origin_errors {
        o.insert("split_external_local_origin_errors".into(), split.into());
    }
    if let Some(t) = od.interval {
        o.insert("interval".into(), duration(t).into());
    }
    if let Some(t) = od.base_ejection_time {
        o.insert("base_ejection_time".into(), duration(t).into());
    }
    if let Some(p) = od.max_ejection_percent.filter(|p| *p > 0) {
        o.insert("max_ejection_percent".into(), p.into());
    }
    Value::Object(o)
}

/// `SIMPLE` / `MUTUAL` with file paths as Envoy's UpstreamTlsContext;
/// `ISTIO_MUTUAL` and `credentialName` need Istio's certificates (SDS).
fn transport_socket(
    name: &str,
    tls: &ClientTlsSettings,
    warnings: &mut Vec<String>,
) -> Option<Value> {
    match tls.mode {
        None | Some(TlsMode::Disable) => None,
        Some(TlsMode::IstioMutual) => {
            warnings.push(format!(
                "{name}: tls ISTIO_MUTUAL uses Istio's own certificates (SDS); not written"
            ));
            None
        }
        Some(mode @ (TlsMode::Simple | TlsMode::Mutual)) => {
            if tls.credential_name.is_some() {
                warnings.push(format!(
                    "{name}: tls.credentialName needs Istio's secret discovery; give file paths instead"
                ));
            }
            let mut common = Map::new();
            if let Some(ca) = &tls.ca_certificates {
                let mut validation = json!({"trusted_ca": {"filename": ca}});
                if let Some(sans) = &tls.subject_alt_names
                    && let Some(v) = validation.as_object_mut()
                {
                    let matchers: Vec<Value> = sans
                        .iter()
                        .map(|s| json!({"san_type": "DNS", "matcher": {"exact": s}}))
                        .collect();
                    v.insert("match_typed_subject_alt_names".into(), matchers.into());
                }
                common.insert("validation_context".into(), validation);
            }
            if mode == TlsMode::Mutual {
                common.insert(
                    "tls_certificates".into(),
                    json!([{
                        "certificate_chain": {"filename": tls.client_certificate},
                        "private_key": {"filename": tls.private_key},
                    }]),
                );
            }
            let mut context = Map::new();
            context.insert(
                "@type".into(),
                "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
                    .into(),
            );
            context.insert("common_tls_context".into(), Value::Object(common));
            if let Some(sni) = &tls.sni {
                context.insert("sni".into(), sni.clone().into());
            }
            Some(json!({"name": "envoy.transport_sockets.tls", "typed_config": context}))
        }
    }
}

/// An Istio duration as an Envoy JSON duration (`30s`, `0.250s`).
fn duration(d: IstioDuration) -> String {
    let ms = d.0.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{}.{:03}s", ms / 1000, ms % 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Kind;

    fn clusters(files: &[&str]) -> Vec<Value> {
        let doc = Document::parse(
            &crate::testutil::document(files),
            &[Kind::VirtualService, Kind::DestinationRule],
        )
        .unwrap();
        envoy_clusters(&doc).0
    }

    #[test]
    fn the_seed_destination_rule_as_istio_writes_its_clusters() {
        let all = clusters(&["destination-rule-example.yaml"]);
        let names: Vec<&str> = all.iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "outbound|80||product-service.default.svc.cluster.local",
                "outbound|80|v1|product-service.default.svc.cluster.local",
                "outbound|80|v2|product-service.default.svc.cluster.local",
            ]
        );
        let v1 = &all[1];
        assert_eq!(v1["lb_policy"], "LEAST_REQUEST", "LEAST_CONN's Envoy name");
        assert_eq!(all[2]["lb_policy"], "ROUND_ROBIN", "v2's own loadBalancer");
        let t = &v1["circuit_breakers"]["thresholds"][0];
        assert_eq!(
            (
                &t["max_connections"],
                &t["max_pending_requests"],
                &t["max_requests"]
            ),
            (&json!(100), &json!(50), &json!(UNLIMITED))
        );
        let common = &v1["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
            ["common_http_protocol_options"];
        assert_eq!(common["max_requests_per_connection"], 10);
        let od = &v1["outlier_detection"];
        assert_eq!(
            od["consecutive_gateway_failure"], 3,
            "the legacy circuitBreaker"
        );
        assert_eq!(od["enforcing_consecutive_gateway_failure"], 100);
        assert_eq!(
            (&od["interval"], &od["base_ejection_time"]),
            (&json!("30s"), &json!("30s"))
        );
        assert!(
            od.get("consecutive_5xx").is_none(),
            "unset: Envoy's default"
        );
        assert_eq!(
            v1["common_lb_config"]["healthy_panic_threshold"]["value"],
            0
        );
    }

    #[test]
    fn subsets_and_ports_replace_whole_fields_and_tls_is_written_from_files() {
        let dr = serde_json::json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "a"}, "spec": {"host": "a",
            "trafficPolicy": {
                "connectionPool": {"http": {"http2MaxRequests": 7}},
                "tls": {"mode": "SIMPLE", "caCertificates": "/ca.pem", "sni": "a.example"},
                "portLevelSettings": [{"port": {"number": 80},
                    "loadBalancer": {"simple": "RANDOM"}}]},
            "subsets": [{"name": "s", "trafficPolicy": {
                "tls": {"mode": "ISTIO_MUTUAL"}}}]}});
        let doc = Document::parse(
            &crate::testutil::document_of(vec![dr]),
            &[Kind::VirtualService, Kind::DestinationRule],
        )
        .unwrap();
        let (all, warnings) = envoy_clusters(&doc);
        let host = &all[0];
        assert_eq!(host["lb_policy"], "RANDOM", "port 80's settings");
        assert_eq!(
            host["circuit_breakers"]["thresholds"][0]["max_requests"], UNLIMITED,
            "the port entry gives all four fields: no connection pool"
        );
        assert!(host.get("transport_socket").is_none());
        let subset = &all[1];
        assert!(subset.get("transport_socket").is_none(), "ISTIO_MUTUAL");
        assert!(
            warnings.iter().any(|w| w.contains("ISTIO_MUTUAL")),
            "{warnings:?}"
        );

        let plain = serde_json::json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "b"}, "spec": {"host": "b", "trafficPolicy": {
                "tls": {"mode": "MUTUAL", "caCertificates": "/ca.pem", "clientCertificate": "/c.pem",
                        "privateKey": "/k.pem", "sni": "b.example"}}}});
        let doc = Document::parse(
            &crate::testutil::document_of(vec![plain]),
            &[Kind::VirtualService, Kind::DestinationRule],
        )
        .unwrap();
        let tls = &envoy_clusters(&doc).0[0]["transport_socket"]["typed_config"];
        assert_eq!(tls["sni"], "b.example");
        assert_eq!(
            tls["common_tls_context"]["validation_context"]["trusted_ca"]["filename"],
            "/ca.pem"
        );
        assert_eq!(
            tls["common_tls_context"]["tls_certificates"][0]["private_key"]["filename"],
            "/k.pem"
        );
    }

    #[test]
    fn durations_keep_their_milliseconds() {
        let d = |ms| duration(IstioDuration(std::time::Duration::from_millis(ms)));
        assert_eq!(
            (d(30_000), d(250), d(1_500)),
            ("30s".into(), "0.250s".into(), "1.500s".into())
        );
    }
}
