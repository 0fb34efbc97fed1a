//! Istio's `ValidateDestinationRule` (istio/istio
//! pkg/config/validation/validation.go) with its CRD schema's checks: the
//! host, the subsets, `exportTo`, `workloadSelector` and every traffic
//! policy ([`super::traffic_policy`]) — also the fields meshwasm does not
//! apply yet, so a DestinationRule a cluster would refuse is refused here.

use super::http_route::err;
use super::traffic_policy::{connection_pool, load_balancer, outlier_detection, tls};
use super::virtual_service::subset_name;
use super::{export_to, fqdn, is_ip, labels, port, wildcard_domain};
use crate::config::destination_rule::{DestinationRule, TrafficPolicy, TunnelSettings};
use crate::config::{ConfigError, Resource};

/// Most `portLevelSettings` entries Istio's CRD takes.
const MAX_PORT_LEVEL_SETTINGS: usize = 4096;

/// Validates a DestinationRule in namespace `ns`; warnings name their path.
pub fn validate(
    dr: &Resource<DestinationRule>,
    ns: &str,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let path = dr.spec_path();
    let spec = &dr.spec;
    wildcard_domain(&spec.host).map_err(|why| err(format!("{path}.host"), why))?;
    if let Some(tp) = &spec.traffic_policy {
        traffic_policy(tp, ns, &format!("{path}.trafficPolicy"), warnings)?;
    }
    for (i, s) in spec.subsets.iter().enumerate() {
        let at = format!("{path}.subsets[{i}]");
        if spec.subsets.iter().take(i).any(|o| o.name == s.name) {
            return Err(err(
                format!("{at}.name"),
                format!("duplicate subset names: {}", s.name),
            ));
        }
        subset_name(&s.name, &format!("{at}.name"))?;
        labels(&s.labels, &format!("{at}.labels"))?;
        if let Some(tp) = &s.traffic_policy {
            traffic_policy(tp, ns, &format!("{at}.trafficPolicy"), warnings)?;
        }
    }
    let selector = spec.workload_selector.as_ref();
    export_to(
        ns,
        &spec.export_to,
        selector.is_some(),
        &format!("{path}.exportTo"),
    )?;
    if let Some(sel) = selector {
        let at = format!("{path}.workloadSelector.matchLabels");
        for (k, v) in &sel.match_labels {
            if k.is_empty() {
                return Err(err(
                    &at,
                    format!("empty key is not supported in selector: \"={v}\""),
                ));
            }
            if k.contains('*') || v.contains('*') {
                return Err(err(
                    format!("{at}.{k}"),
                    format!("wildcard is not supported in selector: \"{k}={v}\""),
                ));
            }
            if v.len() > 63 {
                return Err(err(
                    format!("{at}.{k}"),
                    "a label value may have at most 63 characters",
                ));
            }
        }
        if sel.match_labels.is_empty() {
            warnings.push(format!(
                "{path}.workloadSelector: workload selector specified without labels"
            ));
        }
    }
    Ok(())
}

/// `validateTrafficPolicy` (the seed's legacy `circuitBreaker` counts as
/// the `outlierDetection` it stands for).
fn traffic_policy(
    tp: &TrafficPolicy,
    ns: &str,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let any = tp.outlier_detection.is_some()
        || tp.circuit_breaker.is_some()
        || tp.connection_pool.is_some()
        || tp.load_balancer.is_some()
        || tp.tls.is_some()
        || !tp.port_level_settings.is_empty()
        || tp.tunnel.is_some()
        || tp.proxy_protocol.is_some()
        || tp.retry_budget.is_some();
    if !any {
        return Err(err(path, "traffic policy must have at least one field"));
    }
    if tp.tunnel.is_some() && tp.proxy_protocol.is_some() {
        return Err(err(
            path,
            "tunnel and proxyProtocol must not be set together",
        ));
    }
    let od = tp.effective_outlier_detection();
    if let Some(o) = &tp.outlier_detection {
        outlier_detection(o, &format!("{path}.outlierDetection"), warnings)?;
    } else if let Some(o) = &od {
        outlier_detection(o, &format!("{path}.circuitBreaker"), warnings)?;
    }
    if let Some(cp) = &tp.connection_pool {
        connection_pool(cp, &format!("{path}.connectionPool"))?;
    }
    if let Some(lb) = &tp.load_balancer {
        load_balancer(lb, od.is_some(), &format!("{path}.loadBalancer"), warnings)?;
    }
    if let Some(t) = &tp.tls {
        tls(t, ns, &format!("{path}.tls"))?;
    }
    let pls = &tp.port_level_settings;
    if pls.len() > MAX_PORT_LEVEL_SETTINGS {
        return Err(err(
            format!("{path}.portLevelSettings"),
            format!("at most {MAX_PORT_LEVEL_SETTINGS} entries are allowed"),
        ));
    }
    for (i, p) in pls.iter().enumerate() {
        let at = format!("{path}.portLevelSettings[{i}]");
        if p.port.is_none() {
            return Err(err(
                format!("{at}.port"),
                "portTrafficPolicy must have valid port",
            ));
        }
        if p.outlier_detection.is_none()
            && p.connection_pool.is_none()
            && p.load_balancer.is_none()
            && p.tls.is_none()
        {
            return Err(err(at, "port traffic policy must have at least one field"));
        }
        if let Some(o) = &p.outlier_detection {
            outlier_detection(o, &format!("{at}.outlierDetection"), warnings)?;
        }
        if let Some(cp) = &p.connection_pool {
            connection_pool(cp, &format!("{at}.connectionPool"))?;
        }
        if let Some(lb) = &p.load_balancer {
            let has_od = p.outlier_detection.is_some();
            load_balancer(lb, has_od, &format!("{at}.loadBalancer"), warnings)?;
        }
        if let Some(t) = &p.tls {
            tls(t, ns, &format!("{at}.tls"))?;
        }
    }
    if let Some(t) = &tp.tunnel {
        tunnel(t, &format!("{path}.tunnel"))?;
    }
    if let Some(rb) = &tp.retry_budget
        && let Some(p) = rb.percent
        && !(0.0..=100.0).contains(&p)
    {
        return Err(err(
            format!("{path}.retryBudget.percent"),
            format!("percent {p} is not in range 0..100"),
        ));
    }
    Ok(())
}

/// `validateTunnelSettings`.
fn tunnel(t: &TunnelSettings, path: &str) -> Result<(), ConfigError> {
    if !matches!(t.protocol.as_deref(), None | Some("" | "CONNECT" | "POST")) {
        return Err(err(
            format!("{path}.protocol"),
            "tunnel protocol must be \"CONNECT\" or \"POST\"",
        ));
    }
    if let Err(why) = fqdn(&t.target_host)
        && !is_ip(&t.target_host)
    {
        return Err(err(
            format!("{path}.targetHost"),
            format!("tunnel target host must be valid FQDN or IP address: {why}"),
        ));
    }
    port(i64::from(t.target_port), &format!("{path}.targetPort"))
}
