//! Checks of whole resources before their rules compile: VirtualService
//! hosts (istio/istio pkg/config/validation `ValidateVirtualService`; SPEC.md
//! §VirtualService Hosts 5) and the subsets DestinationRules define per host
//! (merged across rules as Istio does: the first definition wins; the seed's
//! legacy `circuitBreaker` warned about).

use std::collections::BTreeMap;

use super::hosts;
use crate::config::virtual_service::VirtualService;
use crate::config::{ConfigError, Document};

/// Subsets defined per host FQDN.
pub(super) type SubsetIndex = BTreeMap<String, Vec<String>>;

/// Istio's checks of `hosts` and of having some route at all.
pub(super) fn validate_hosts(spec: &VirtualService, path: &str) -> Result<(), ConfigError> {
    if spec.hosts.is_empty() {
        return Err(ConfigError::new(
            format!("{path}.hosts"),
            "at least one host is required",
        ));
    }
    if spec.http.is_empty() && spec.tcp.is_empty() && spec.tls.is_empty() {
        return Err(ConfigError::new(
            path,
            "at least one of http, tcp or tls is required",
        ));
    }
    for (i, host) in spec.hosts.iter().enumerate() {
        let bound_to_mesh = spec.gateways.is_empty() || spec.gateways.iter().any(|g| g == "mesh");
        if host == "*" && bound_to_mesh {
            return Err(ConfigError::new(
                format!("{path}.hosts[{i}]"),
                "wildcard host * is not allowed for virtual services bound to the mesh",
            ));
        }
        let bad_wildcard = host.get(1..).is_some_and(|rest| rest.contains('*'));
        if host.is_empty()
            || bad_wildcard
            || host.bytes().any(|b| b.is_ascii_whitespace() || b == b'/')
        {
            return Err(ConfigError::new(
                format!("{path}.hosts[{i}]"),
                format!("{host:?} is not a valid host"),
            ));
        }
        if spec
            .hosts
            .get(..i)
            .is_some_and(|before| before.iter().any(|h| h.eq_ignore_ascii_case(host)))
        {
            return Err(ConfigError::new(
                format!("{path}.hosts[{i}]"),
                format!("duplicate host {host:?}"),
            ));
        }
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
