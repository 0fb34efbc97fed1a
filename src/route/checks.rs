//! Checks of whole resources before their rules compile, beyond Istio's
//! validation (`config::validation`): a VirtualService without hosts (a
//! delegate), and the subsets DestinationRules define per host
//! (merged across rules as Istio does: the first definition wins; the seed's
//! legacy `circuitBreaker` warned about).

use std::collections::BTreeMap;

use super::hosts;
use crate::config::destination_rule::TrafficPolicy;
use crate::config::virtual_service::VirtualService;
use crate::config::{ConfigError, Document};

/// Subsets defined per host FQDN.
pub(super) type SubsetIndex = BTreeMap<String, Vec<String>>;

/// What meshwasm adds to Istio's checks of a VirtualService's hosts
/// (those run when the document is parsed, `config::validation`): a
/// VirtualService without hosts is a delegate, and delegation is not
/// implemented.
pub(super) fn validate_hosts(spec: &VirtualService, path: &str) -> Result<(), ConfigError> {
    if spec.hosts.is_empty() {
        return Err(ConfigError::new(
            format!("{path}.hosts"),
            "a VirtualService without hosts is a delegate (of another VirtualService's \
             http[].delegate); delegation is not supported by meshwasm",
        ));
    }
    Ok(())
}

/// The subsets every DestinationRule defines, keyed by host FQDN.
pub(super) fn subset_index(
    doc: &Document,
    warnings: &mut Vec<String>,
) -> Result<SubsetIndex, ConfigError> {
    let mut index = SubsetIndex::new();
    for dr in &doc.destination_rules {
        let path = dr.spec_path();
        let spec = &dr.spec;
        if spec.host.is_empty() {
            return Err(ConfigError::new(format!("{path}.host"), "host is required"));
        }
        let policies = spec
            .traffic_policy
            .iter()
            .map(|p| (format!("{path}.trafficPolicy"), p))
            .chain(spec.subsets.iter().enumerate().filter_map(|(i, s)| {
                s.traffic_policy
                    .as_ref()
                    .map(|p| (format!("{path}.subsets[{i}].trafficPolicy"), p))
            }));
        for (policy_path, policy) in policies {
            unapplied(policy, &policy_path, warnings);
            if policy.circuit_breaker.is_some() {
                if policy.outlier_detection.is_some() {
                    return Err(ConfigError::new(
                        format!("{policy_path}.circuitBreaker"),
                        "legacy circuitBreaker and outlierDetection are both set; keep outlierDetection",
                    ));
                }
                warnings.push(format!(
                    "{policy_path}.circuitBreaker: legacy pre-1.0 field, read as outlierDetection \
                     {{consecutiveGatewayErrors, interval, baseEjectionTime}}; please rename it"
                ));
            }
        }
        let fqdn = hosts::fqdn(&spec.host, doc.namespace_of(dr), &doc.envoy.domain_suffix);
        let names = index.entry(fqdn).or_default();
        for (i, subset) in spec.subsets.iter().enumerate() {
            let spath = format!("{path}.subsets[{i}].name");
            if subset.name.is_empty() {
                return Err(ConfigError::new(spath, "subset name is required"));
            }
            if spec
                .subsets
                .get(..i)
                .is_some_and(|s| s.iter().any(|o| o.name == subset.name))
            {
                return Err(ConfigError::new(
                    spath,
                    format!(
                        "duplicate subset {:?} for host {:?}",
                        subset.name, spec.host
                    ),
                ));
            }
            if names.contains(&subset.name) {
                // Istio merges the DestinationRules of a host: the first keeps the subset.
                warnings.push(format!(
                    "{spath}: subset {:?} is already defined for {:?}; the first definition wins",
                    subset.name, spec.host
                ));
                continue;
            }
            names.push(subset.name.clone());
        }
    }
    Ok(index)
}

/// Warns about every traffic-policy field meshwasm reads and validates but
/// does not apply: all but outlier detection (`docs/resilience.md`) and the
/// connection pool's concurrency limits. The others configure Envoy's
/// cluster, which Istio writes from the DestinationRule and meshwasm does
/// not.
fn unapplied(policy: &TrafficPolicy, path: &str, warnings: &mut Vec<String>) {
    let mut fields: Vec<&str> = Vec::new();
    let mut note = |set: bool, field: &'static str| {
        if set {
            fields.push(field);
        }
    };
    note(policy.load_balancer.is_some(), "loadBalancer");
    note(policy.tls.is_some(), "tls");
    note(!policy.port_level_settings.is_empty(), "portLevelSettings");
    note(policy.tunnel.is_some(), "tunnel");
    note(policy.proxy_protocol.is_some(), "proxyProtocol");
    note(policy.retry_budget.is_some(), "retryBudget");
    if let Some(od) = &policy.outlier_detection {
        note(
            od.split_external_local_origin_errors.is_some(),
            "outlierDetection.splitExternalLocalOriginErrors",
        );
        note(
            od.consecutive_local_origin_failures.is_some(),
            "outlierDetection.consecutiveLocalOriginFailures",
        );
        note(
            !od.outlier_detection_http_error_codes.is_empty(),
            "outlierDetection.outlierDetectionHttpErrorCodes",
        );
    }
    if let Some(tcp) = policy.connection_pool.as_ref().and_then(|c| c.tcp.as_ref()) {
        note(
            tcp.connect_timeout.is_some(),
            "connectionPool.tcp.connectTimeout",
        );
        note(
            tcp.tcp_keepalive.is_some(),
            "connectionPool.tcp.tcpKeepalive",
        );
        note(
            tcp.max_connection_duration.is_some(),
            "connectionPool.tcp.maxConnectionDuration",
        );
        note(tcp.idle_timeout.is_some(), "connectionPool.tcp.idleTimeout");
    }
    if let Some(http) = policy
        .connection_pool
        .as_ref()
        .and_then(|c| c.http.as_ref())
    {
        note(
            http.max_requests_per_connection.is_some(),
            "connectionPool.http.maxRequestsPerConnection",
        );
        note(http.max_retries.is_some(), "connectionPool.http.maxRetries");
        note(
            http.idle_timeout.is_some(),
            "connectionPool.http.idleTimeout",
        );
        note(
            http.h2_upgrade_policy.is_some(),
            "connectionPool.http.h2UpgradePolicy",
        );
        note(
            http.use_client_protocol.is_some(),
            "connectionPool.http.useClientProtocol",
        );
        note(
            http.max_concurrent_streams.is_some(),
            "connectionPool.http.maxConcurrentStreams",
        );
        note(
            http.http2_keep_alive.is_some(),
            "connectionPool.http.http2KeepAlive",
        );
    }
    for field in fields {
        warnings.push(format!(
            "{path}.{field}: validated but not applied by meshwasm: it configures Envoy's \
             cluster, which Istio writes from this DestinationRule (without Istio, set it on the \
             cluster in Envoy's configuration)"
        ));
    }
}

/// Istio's `resolveGatewayName` (pilot/pkg/model/config.go): `ns/name` as
/// is (`./name` in the VirtualService's namespace), a short name in the
/// VirtualService's namespace, a legacy FQDN `name.ns.svc…` as `ns/name`.
pub(super) fn resolve_gateway(name: &str, ns: &str) -> String {
    match name.split_once('/') {
        Some((".", gw)) => format!("{ns}/{gw}"),
        Some(_) => name.to_owned(),
        None => match name.split_once('.') {
            None => format!("{ns}/{name}"),
            Some((gw, rest)) => {
                let gw_ns = rest.split('.').next().unwrap_or(rest);
                format!("{gw_ns}/{gw}")
            }
        },
    }
}

/// Whether gateway names `list` (of a VirtualService or a match entry, in
/// namespace `ns`) select this Envoy: `mesh` for a sidecar (no
/// `envoy.gateways`), else one of the gateways it is.
pub(super) fn gateways_select(list: &[String], ns: &str, envoy_gateways: &[String]) -> bool {
    if envoy_gateways.is_empty() {
        return list.iter().any(|g| g == "mesh");
    }
    list.iter()
        .filter(|g| *g != "mesh")
        .any(|g| envoy_gateways.contains(&resolve_gateway(g, ns)))
}

/// Why this Envoy does not serve a VirtualService (`None`: it does), as
/// Istio splits them: no `gateways` means `mesh` (sidecars only).
pub(super) fn unbound(
    spec: &VirtualService,
    ns: &str,
    name: &str,
    envoy_gateways: &[String],
) -> Option<String> {
    let mesh = vec!["mesh".to_owned()];
    let list = if spec.gateways.is_empty() {
        &mesh
    } else {
        &spec.gateways
    };
    if gateways_select(list, ns, envoy_gateways) {
        return None;
    }
    Some(if envoy_gateways.is_empty() {
        format!(
            "{ns}/{name} binds only gateways, not sidecars (\"mesh\"); ignored (set \
             envoy.gateways when this Envoy is one of them)"
        )
    } else {
        format!(
            "{ns}/{name} binds {list:?}, none of the gateways this Envoy is ({envoy_gateways:?}); \
             ignored"
        )
    })
}

/// `envoy.gateways`: each `<namespace>/<name>` of DNS labels.
pub(super) fn gateways_knob(list: &[String]) -> Result<(), ConfigError> {
    use crate::config::validation::is_dns1123_label;
    for (i, g) in list.iter().enumerate() {
        let ok = g
            .split_once('/')
            .is_some_and(|(ns, n)| is_dns1123_label(ns) && is_dns1123_label(n));
        if !ok {
            return Err(ConfigError::new(
                format!("envoy.gateways[{i}]"),
                format!("{g:?} is not a gateway <namespace>/<name>"),
            ));
        }
    }
    Ok(())
}
