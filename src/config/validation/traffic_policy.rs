//! The parts of a DestinationRule traffic policy, as Istio validates them
//! (istio/istio pkg/config/validation/validation.go
//! `validateOutlierDetection`, `validateConnectionPool`,
//! `validateLoadBalancer`; agent/validation.go `ValidateTLS`,
//! `ValidateLocalityLbSetting`, `ValidateZoneAwareLbSetting`) and as its
//! CRD schema constrains them (int32/uint32 ranges, enums, oneofs,
//! durations of at least 1 ms).

use std::collections::{BTreeMap, BTreeSet};

use super::duration as ms_duration;
use super::http_route::err;
use super::{opt_duration, percent, set};
use crate::config::ConfigError;
use crate::config::destination_rule::{
    ClientTlsSettings, ConnectionPoolSettings, ConsistentHashLb, LoadBalancerSettings,
    LocalityFailover, LocalityLbSetting, OutlierDetection, TlsMode, ZoneAwareLbSetting,
};
use crate::config::duration::IstioDuration;

/// An int32 field that must not be negative.
fn non_negative(v: Option<i64>, what: &str, path: &str) -> Result<(), ConfigError> {
    match v {
        Some(n) if n < 0 => Err(err(path, format!("{what} must be non-negative"))),
        Some(n) if n > i64::from(i32::MAX) => {
            Err(err(path, format!("{n} is out of the int32 range")))
        }
        _ => Ok(()),
    }
}

/// A uint32 field (the CRD's 0..=4294967295).
fn uint32(v: Option<i64>, path: &str) -> Result<(), ConfigError> {
    match v {
        Some(n) if u32::try_from(n).is_err() => {
            Err(err(path, format!("{n} must be in range 0..4294967295")))
        }
        _ => Ok(()),
    }
}

/// The CRD's `duration(self) >= duration('1ms')` (precision not checked).
fn at_least_1ms(d: Option<IstioDuration>, path: &str) -> Result<(), ConfigError> {
    match d {
        Some(d) if d.0 < std::time::Duration::from_millis(1) => {
            Err(err(path, "must be a valid duration greater than 1ms"))
        }
        _ => Ok(()),
    }
}

/// `validateOutlierDetection`.
pub(super) fn outlier_detection(
    o: &OutlierDetection,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    opt_duration(o.base_ejection_time, &format!("{path}.baseEjectionTime"))?;
    if o.consecutive_errors.is_some_and(|n| n != 0) {
        warnings.push(format!(
            "{path}.consecutiveErrors: outlier detection consecutive errors is deprecated, use \
             consecutiveGatewayErrors or consecutive5xxErrors instead"
        ));
    }
    for (v, field) in [
        (
            o.consecutive_local_origin_failures,
            "consecutiveLocalOriginFailures",
        ),
        (o.consecutive_gateway_errors, "consecutiveGatewayErrors"),
        (o.consecutive_5xx_errors, "consecutive5xxErrors"),
    ] {
        uint32(v, &format!("{path}.{field}"))?;
    }
    if o.split_external_local_origin_errors != Some(true)
        && o.consecutive_local_origin_failures.is_some_and(|n| n > 0)
    {
        return Err(err(
            format!("{path}.consecutiveLocalOriginFailures"),
            "outlier detection consecutive local origin failures is specified, but split \
             external local origin errors is set to false",
        ));
    }
    opt_duration(o.interval, &format!("{path}.interval"))?;
    for (v, field) in [
        (o.max_ejection_percent, "maxEjectionPercent"),
        (o.min_health_percent, "minHealthPercent"),
    ] {
        percent(v.unwrap_or(0), &format!("{path}.{field}"))?;
    }
    for (i, code) in o.outlier_detection_http_error_codes.iter().enumerate() {
        if !(100..=599).contains(code) {
            return Err(err(
                format!("{path}.outlierDetectionHttpErrorCodes[{i}]"),
                format!("{code} is not an HTTP status code (100..599)"),
            ));
        }
    }
    Ok(())
}

/// `validateConnectionPool`.
pub(super) fn connection_pool(cp: &ConnectionPoolSettings, path: &str) -> Result<(), ConfigError> {
    if cp.http.is_none() && cp.tcp.is_none() {
        return Err(err(path, "connection pool must have at least one field"));
    }
    if let Some(h) = &cp.http {
        let at = format!("{path}.http");
        for (v, field, what) in [
            (
                h.http1_max_pending_requests,
                "http1MaxPendingRequests",
                "http1 max pending requests",
            ),
            (
                h.http2_max_requests,
                "http2MaxRequests",
                "http2 max requests",
            ),
            (
                h.max_requests_per_connection,
                "maxRequestsPerConnection",
                "max requests per connection",
            ),
            (h.max_retries, "maxRetries", "max retries"),
            (
                h.max_concurrent_streams,
                "maxConcurrentStreams",
                "max concurrent streams",
            ),
        ] {
            non_negative(v, what, &format!("{at}.{field}"))?;
        }
        opt_duration(h.idle_timeout, &format!("{at}.idleTimeout"))?;
        match h.h2_upgrade_policy.as_deref() {
            None | Some("DEFAULT" | "DO_NOT_UPGRADE") => {}
            Some("UPGRADE") if h.use_client_protocol == Some(true) => {
                return Err(err(
                    format!("{at}.useClientProtocol"),
                    "use client protocol must not be true when H2UpgradePolicy is UPGRADE",
                ));
            }
            Some("UPGRADE") => {}
            Some(other) => {
                return Err(err(
                    format!("{at}.h2UpgradePolicy"),
                    format!("{other:?} is not one of DEFAULT, DO_NOT_UPGRADE, UPGRADE"),
                ));
            }
        }
        if let Some(ka) = &h.http2_keep_alive {
            let kpath = format!("{at}.http2KeepAlive");
            for (d, field) in [(ka.interval, "interval"), (ka.timeout, "timeout")] {
                let Some(d) = d else {
                    return Err(err(
                        format!("{kpath}.{field}"),
                        format!("http2 keepalive {field} is required"),
                    ));
                };
                ms_duration(d, &format!("{kpath}.{field}"))?;
            }
        }
    }
    if let Some(t) = &cp.tcp {
        let at = format!("{path}.tcp");
        non_negative(
            t.max_connections,
            "max connections",
            &format!("{at}.maxConnections"),
        )?;
        opt_duration(t.connect_timeout, &format!("{at}.connectTimeout"))?;
        opt_duration(
            t.max_connection_duration,
            &format!("{at}.maxConnectionDuration"),
        )?;
        // `0s` turns the idle timeout off.
        if let Some(d) = t.idle_timeout.filter(|d| d.0.as_millis() != 0) {
            ms_duration(d, &format!("{at}.idleTimeout"))?;
        }
        if let Some(ka) = &t.tcp_keepalive {
            opt_duration(ka.time, &format!("{at}.tcpKeepalive.time"))?;
            opt_duration(ka.interval, &format!("{at}.tcpKeepalive.interval"))?;
        }
    }
    Ok(())
}

/// `validateLoadBalancer`, with the CRD's oneof of `simple`,
/// `consistentHash` and `backendUtilization`.
pub(super) fn load_balancer(
    lb: &LoadBalancerSettings,
    has_outlier_detection: bool,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let policies = [
        lb.simple.is_some(),
        lb.consistent_hash.is_some(),
        lb.backend_utilization.is_some(),
    ];
    if policies.iter().filter(|p| **p).count() > 1 {
        return Err(err(
            path,
            "only one of simple, consistentHash and backendUtilization may be set",
        ));
    }
    if let Some(ch) = &lb.consistent_hash {
        consistent_hash(ch, &format!("{path}.consistentHash"), warnings)?;
    }
    if lb.locality_lb_setting.is_some() && lb.zone_aware_lb_setting.is_some() {
        return Err(err(
            path,
            "only one of localityLbSetting and zoneAwareLbSetting can be set",
        ));
    }
    if let Some(l) = &lb.locality_lb_setting {
        let at = format!("{path}.localityLbSetting");
        locality(l, &at)?;
        if (!l.failover.is_empty() || !l.failover_priority.is_empty()) && !has_outlier_detection {
            warnings.push(format!(
                "{at}: outlier detection policy must be provided for failover"
            ));
        }
    }
    if let Some(z) = &lb.zone_aware_lb_setting {
        let at = format!("{path}.zoneAwareLbSetting");
        zone_aware(z, &at)?;
        if (!z.failover.is_empty() || !z.failover_priority.is_empty()) && !has_outlier_detection {
            warnings.push(format!(
                "{at}: outlier detection policy must be provided for failover"
            ));
        }
    }
    at_least_1ms(
        lb.warmup_duration_secs,
        &format!("{path}.warmupDurationSecs"),
    )?;
    if let Some(w) = &lb.warmup {
        let at = format!("{path}.warmup");
        let Some(d) = w.duration else {
            return Err(err(format!("{at}.duration"), "duration is required"));
        };
        ms_duration(d, &format!("{at}.duration"))?;
        if w.minimum_percent
            .is_some_and(|p| !(0.0..=100.0).contains(&p))
        {
            return Err(err(
                format!("{at}.minimumPercent"),
                "minimumPercent value should be between 0 and 100",
            ));
        }
        if w.aggression.is_some_and(|a| a.is_nan() || a <= 0.0) {
            return Err(err(
                format!("{at}.aggression"),
                "aggression should be greater than 0",
            ));
        }
    }
    Ok(())
}

fn consistent_hash(
    ch: &ConsistentHashLb,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let keys = [
        ch.http_header_name.is_some(),
        ch.http_cookie.is_some(),
        ch.use_source_ip.is_some(),
        ch.http_query_parameter_name.is_some(),
    ];
    if keys.iter().filter(|k| **k).count() > 1 {
        return Err(err(
            path,
            "only one of httpHeaderName, httpCookie, useSourceIp and httpQueryParameterName \
             may be set",
        ));
    }
    if ch.ring_hash.is_some() && ch.maglev.is_some() {
        return Err(err(path, "only one of ringHash and maglev may be set"));
    }
    if let Some(c) = &ch.http_cookie {
        let at = format!("{path}.httpCookie");
        if set(&c.name).is_none() {
            return Err(err(format!("{at}.name"), "name required for HttpCookie"));
        }
        let mut seen = BTreeSet::new();
        for (i, a) in c.attributes.iter().enumerate() {
            let Some(name) = set(&a.name) else {
                return Err(err(
                    format!("{at}.attributes[{i}].name"),
                    "cookie attribute name cannot be empty",
                ));
            };
            if !seen.insert(name) {
                return Err(err(
                    format!("{at}.attributes[{i}].name"),
                    format!("duplicate cookie attribute name: {name}"),
                ));
            }
        }
    }
    let legacy_ring = ch.minimum_ring_size.is_some_and(|n| n != 0);
    if legacy_ring {
        warnings.push(format!(
            "{path}.minimumRingSize: consistent hash MinimumRingSize is deprecated, use \
             ConsistentHashLB's RingHash configuration instead"
        ));
        if ch.ring_hash.is_some() || ch.maglev.is_some() {
            return Err(err(
                path,
                "only one of MinimumRingSize or Maglev/Ringhash can be specified",
            ));
        }
    }
    if let Some(m) = &ch.maglev {
        let at = format!("{path}.maglev.tableSize");
        let size = m.table_size.unwrap_or(0);
        if size == 0 {
            return Err(err(at, "tableSize must be set for maglev"));
        }
        if size >= 5_000_011 {
            return Err(err(at, "tableSize must be less than 5000011 for maglev"));
        }
        if !is_prime(size) {
            return Err(err(at, "tableSize must be a prime number for maglev"));
        }
    }
    Ok(())
}

/// Envoy's `Primes::isPrime` (Istio copies it): 1, 2 and 3 count.
pub(super) fn is_prime(x: u64) -> bool {
    if x != 0 && x < 4 {
        return true;
    }
    if x & 1 == 0 {
        return false;
    }
    let mut f = 3u64;
    while f.saturating_mul(f) <= x {
        if x.is_multiple_of(f) {
            return false;
        }
        f += 2;
    }
    true
}

const TOPOLOGY_LABELS: &[&str] = &[
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "topology.istio.io/subzone",
];

/// `ValidateLocalityLbSetting`.
fn locality(l: &LocalityLbSetting, path: &str) -> Result<(), ConfigError> {
    if !l.distribute.is_empty() && !l.failover.is_empty() {
        return Err(err(
            path,
            "can not simultaneously specify 'distribute' and 'failover'",
        ));
    }
    if !l.failover.is_empty()
        && let Some(t) = l
            .failover_priority
            .iter()
            .find(|p| TOPOLOGY_LABELS.contains(&p.as_str()))
    {
        return Err(err(
            format!("{path}.failoverPriority"),
            format!(
                "can not simultaneously set 'failover' and topology label '{t}' in 'failover_priority'"
            ),
        ));
    }
    for (i, d) in l.distribute.iter().enumerate() {
        let at = format!("{path}.distribute[{i}]");
        if d.to.values().any(|w| *w == 0 || *w > 100) {
            return Err(err(
                format!("{at}.to"),
                "locality weight must be in range [1, 100]",
            ));
        }
        let total: u32 = d.to.values().sum();
        if total != 100 {
            return Err(err(
                format!("{at}.to"),
                format!("total locality weight {total} != 100"),
            ));
        }
        localities(d.to.keys().map(String::as_str), &format!("{at}.to"))?;
    }
    localities(
        l.distribute.iter().map(|d| d.from.as_str()),
        &format!("{path}.distribute"),
    )?;
    failover(
        &l.failover,
        "locality lb failover",
        &format!("{path}.failover"),
    )
}

/// `ValidateZoneAwareLbSetting`.
fn zone_aware(z: &ZoneAwareLbSetting, path: &str) -> Result<(), ConfigError> {
    if let Some(t) = z
        .failover_priority
        .iter()
        .find(|p| TOPOLOGY_LABELS.contains(&p.as_str()))
    {
        return Err(err(
            format!("{path}.failoverPriority"),
            format!(
                "'failover_priority' for zone aware lb must not use topology label '{t}'; \
                 region- and zone-level routing are handled automatically"
            ),
        ));
    }
    if z.min_cluster_size == Some(0) {
        return Err(err(
            format!("{path}.minClusterSize"),
            "minClusterSize must be at least 1",
        ));
    }
    failover(
        &z.failover,
        "zone aware lb failover",
        &format!("{path}.failover"),
    )
}

fn failover(list: &[LocalityFailover], what: &str, path: &str) -> Result<(), ConfigError> {
    for (i, f) in list.iter().enumerate() {
        let at = format!("{path}[{i}]");
        if f.from == f.to {
            return Err(err(
                at,
                format!("{what} settings must specify different regions"),
            ));
        }
        if f.from.contains('/') || f.to.contains('/') {
            return Err(err(at, format!("{what} only specifies region")));
        }
        if f.from.contains('*') || f.to.contains('*') {
            return Err(err(
                at,
                format!("{what} region should not contain '*' wildcard"),
            ));
        }
    }
    Ok(())
}

/// `validateLocalities`: `region[/zone[/subzone]]`, a `*` only last, no
/// locality covered by another.
pub(super) fn localities<'a>(
    list: impl Iterator<Item = &'a str>,
    path: &str,
) -> Result<(), ConfigError> {
    type Zones = BTreeMap<String, BTreeSet<String>>;
    let mut map: BTreeMap<String, Zones> = BTreeMap::new();
    let star = || BTreeSet::from(["*".to_owned()]);
    for loc in list {
        let overlap = || {
            err(
                path,
                format!("locality {loc} overlap with previous specified ones"),
            )
        };
        let stars = loc.matches('*').count();
        if stars > 1 || (stars == 1 && !loc.ends_with('*')) {
            return Err(err(
                path,
                format!(
                    "locality {loc} wildcard '*' number can not exceed 1 and must be in the end"
                ),
            ));
        }
        if map.contains_key("*") {
            return Err(overlap());
        }
        let items: Vec<&str> = loc.splitn(3, '/').collect();
        if items.iter().any(|i| i.is_empty()) {
            return Err(err(
                path,
                format!("locality {loc} must not contain empty region/zone/subzone info"),
            ));
        }
        match items.as_slice() {
            [region] => {
                if map.contains_key(*region) {
                    return Err(overlap());
                }
                map.insert(
                    (*region).to_owned(),
                    Zones::from([("*".to_owned(), star())]),
                );
            }
            [region, zone] => match map.get_mut(*region) {
                Some(zones) if zones.contains_key("*") || zones.contains_key(*zone) => {
                    return Err(overlap());
                }
                Some(zones) => {
                    zones.insert((*zone).to_owned(), star());
                }
                None => {
                    map.insert(
                        (*region).to_owned(),
                        Zones::from([((*zone).to_owned(), star())]),
                    );
                }
            },
            [region, zone, sub] => {
                let zones = map.entry((*region).to_owned()).or_default();
                if zones.contains_key("*") {
                    return Err(overlap());
                }
                let subs = zones.entry((*zone).to_owned()).or_default();
                if subs.contains("*") || !subs.insert((*sub).to_owned()) {
                    return Err(overlap());
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// `agent.ValidateTLS`.
pub(super) fn tls(t: &ClientTlsSettings, ns: &str, path: &str) -> Result<(), ConfigError> {
    let credential = set(&t.credential_name);
    if let Some(c) = credential
        && let Some(rest) = c.strip_prefix("configmap://")
    {
        let c_ns = rest.split_once('/').map_or(ns, |(n, _)| n);
        if c_ns != ns || ns.is_empty() {
            return Err(err(
                format!("{path}.credentialName"),
                format!(
                    "invalid configmap:// credentialName: namespace must match the configuration \
                     namespace {ns:?}"
                ),
            ));
        }
    }
    let mode = t.mode.unwrap_or(TlsMode::Disable);
    let sans = t.subject_alt_names.as_ref().is_some_and(|s| !s.is_empty());
    let ca = set(&t.ca_certificates).is_some();
    if t.insecure_skip_verify == Some(true) {
        if mode == TlsMode::Simple && (ca || credential.is_some() || sans) {
            return Err(err(
                path,
                "cannot specify CaCertificates or CredentialName or SubjectAltNames when \
                 InsecureSkipVerify is set true",
            ));
        }
        if mode == TlsMode::Mutual && (ca || sans) {
            return Err(err(
                path,
                "cannot specify CaCertificates or SubjectAltNames when InsecureSkipVerify is set \
                 true",
            ));
        }
    }
    let client_cert = set(&t.client_certificate).is_some();
    let key = set(&t.private_key).is_some();
    if matches!(mode, TlsMode::Simple | TlsMode::Mutual) && credential.is_some() {
        if client_cert || ca || key || set(&t.ca_crl).is_some() {
            return Err(err(
                path,
                "cannot specify client certificates or CA certificate or CA CRL If \
                 credentialName is set",
            ));
        }
        return Ok(());
    }
    if mode == TlsMode::Mutual && !client_cert {
        return Err(err(path, "client certificate required for mutual tls"));
    }
    if mode == TlsMode::Mutual && !key {
        return Err(err(path, "private key required for mutual tls"));
    }
    Ok(())
}
