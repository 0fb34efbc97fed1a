//! Istio's validation rules shared by every kind (istio/istio
//! pkg/config/validation/validation.go, agent/validation.go,
//! pkg/config/labels, pkg/config/host, pkg/config/visibility): proto3
//! emptiness, durations, ports, percentages, DNS names and wildcard hosts,
//! label maps, `exportTo`, IP addresses, header names and values. Each
//! check returns a [`ConfigError`] at the JSON path it is given; the kinds'
//! own rules ([`virtual_service`], [`destination_rule`]) are built on them.
//!
//! Written from Istio's code and tests; the messages keep Istio's wording
//! where a user would search for it.

pub mod destination_rule;
pub mod http_route;
mod traffic_policy;
pub mod virtual_service;

use std::collections::BTreeMap;
use std::time::Duration;

use super::ConfigError;
use super::duration::IstioDuration;

/// proto3 emptiness: `""` is "unset" (protojson never distinguishes an
/// empty string from an absent one), so `Some("")` reads as `None`.
pub fn set(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// `agent.ValidateDuration`: at least 1 ms, in whole milliseconds.
pub fn duration(d: IstioDuration, path: &str) -> Result<Duration, ConfigError> {
    let d = d.0;
    if d < Duration::from_millis(1) {
        return Err(ConfigError::new(path, "duration must be at least 1ms"));
    }
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
        return Err(ConfigError::new(
            path,
            "only millisecond precision is supported",
        ));
    }
    Ok(d)
}

/// [`duration`] of an optional field.
pub fn opt_duration(d: Option<IstioDuration>, path: &str) -> Result<(), ConfigError> {
    d.map_or(Ok(()), |d| duration(d, path).map(|_| ()))
}

/// `agent.ValidatePort`: 1..=65535.
pub fn port(n: i64, path: &str) -> Result<(), ConfigError> {
    if (1..=65_535).contains(&n) {
        return Ok(());
    }
    Err(ConfigError::new(
        path,
        format!("port number {n} must be in the range 1..65535"),
    ))
}

/// `ValidatePercent` of an integer percentage: 0..=100.
pub fn percent(v: i64, path: &str) -> Result<(), ConfigError> {
    if (0..=100).contains(&v) {
        return Ok(());
    }
    Err(ConfigError::new(
        path,
        format!("percentage {v} is not in range 0..100"),
    ))
}

/// `validatePercentage` of a `Percent` value: 0, or in [0.0001, 100].
pub fn percentage(v: f64, path: &str) -> Result<(), ConfigError> {
    if (0.0..=100.0).contains(&v) && !(v > 0.0 && v < 0.0001) {
        return Ok(());
    }
    Err(ConfigError::new(
        path,
        format!("percentage {v} is neither 0.0, nor in range [0.0001, 100.0]"),
    ))
}

/// `labels.IsDNS1123Label`: at most 63 of `[a-zA-Z0-9-]`, alphanumeric at
/// both ends.
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    let inner = |c: &u8| c.is_ascii_alphanumeric() || *c == b'-';
    s.len() <= 63
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter().all(inner)
}

/// `labels.IsWildcardDNS1123Label`: `*`, or a DNS-1123 label, optionally
/// after a leading `*` or `*-` (`*foo`, `*-foo`).
pub fn is_wildcard_dns1123_label(s: &str) -> bool {
    if s.len() > 63 {
        return false;
    }
    s == "*"
        || is_dns1123_label(s)
        || s.strip_prefix("*-")
            .or_else(|| s.strip_prefix('*'))
            .is_some_and(is_dns1123_label)
}

/// `agent.CheckDNS1123Preconditions` + `ValidateDNS1123Labels` (a trailing
/// dot allowed, the top-level label not all digits).
fn dns1123_labels(domain: &str, whole: &str) -> Result<(), String> {
    let tld = domain.rsplit('.').next().unwrap_or_default();
    if !tld.is_empty() && tld.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "domain name {whole:?} invalid (top level domain {tld:?} cannot be all-numeric)"
        ));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    for (i, label) in labels.iter().enumerate() {
        if i + 1 == labels.len() && label.is_empty() && i > 0 {
            return Ok(());
        }
        if !is_dns1123_label(label) {
            return Err(format!(
                "domain name {whole:?} invalid (label {label:?} invalid)"
            ));
        }
    }
    Ok(())
}

fn preconditions(name: &str) -> Result<(), String> {
    if name.len() > 255 {
        return Err(format!("domain name {name:?} too long (max 255)"));
    }
    if name.is_empty() {
        return Err("empty domain name not allowed".into());
    }
    Ok(())
}

/// `agent.ValidateFQDN`.
pub fn fqdn(name: &str) -> Result<(), String> {
    preconditions(name)?;
    dns1123_labels(name, name)
}

/// `agent.ValidateWildcardDomain`: an FQDN whose first label may be a
/// wildcard label (`*`, `*.foo.com`, `*-foo.com`).
pub fn wildcard_domain(name: &str) -> Result<(), String> {
    preconditions(name)?;
    let (first, rest) = match name.split_once('.') {
        Some((first, rest)) => (first, Some(rest)),
        None => (name, None),
    };
    if !is_wildcard_dns1123_label(first) {
        return Err(format!(
            "domain name {name:?} invalid (label {first:?} invalid)"
        ));
    }
    rest.map_or(Ok(()), |rest| dns1123_labels(rest, name))
}

/// Istio's `host.Name.Matches` (pkg/config/host/name.go): either covers
/// the other, a wildcard `*.x` covering every name ending in `.x`; names
/// compare as written.
pub fn hosts_overlap(a: &str, b: &str) -> bool {
    match (a.strip_prefix('*'), b.strip_prefix('*')) {
        (Some(sa), Some(sb)) if sa.len() < sb.len() => sb.ends_with(sa),
        (Some(sa), Some(sb)) => sa.ends_with(sb),
        (Some(sa), None) => b.ends_with(sa),
        (None, Some(sb)) => a.ends_with(sb),
        (None, None) => a == b,
    }
}

/// Istio's `host.Name.SubsetOf`: every name `a` covers, `b` covers.
pub fn host_subset_of(a: &str, b: &str) -> bool {
    match (a.strip_prefix('*'), b.strip_prefix('*')) {
        (Some(sa), Some(sb)) => a.len() >= b.len() && sa.ends_with(sb),
        (Some(_), None) => false,
        (None, Some(sb)) => a.ends_with(sb),
        (None, None) => a == b,
    }
}

/// Kubernetes' qualified name: alphanumeric at both ends, `-_.` inside.
fn is_qualified_name(s: &str) -> bool {
    let b = s.as_bytes();
    b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c))
}

/// `labels.Instance.Validate`: keys `[dns-prefix/]name` (name ≤ 63,
/// prefix ≤ 253), values empty or a qualified name.
pub fn labels(map: &BTreeMap<String, String>, path: &str) -> Result<(), ConfigError> {
    for (k, v) in map {
        let (prefix, name) = match k.split_once('/') {
            Some((p, n)) => (Some(p), n),
            None => (None, k.as_str()),
        };
        let prefix_ok = prefix.is_none_or(|p| p.len() <= 253 && p.split('.').all(is_dns1123_label));
        if !prefix_ok || name.len() > 63 || !is_qualified_name(name) {
            return Err(ConfigError::new(
                format!("{path}.{k}"),
                format!("invalid tag key: {k:?}"),
            ));
        }
        if !v.is_empty() && !is_qualified_name(v) {
            return Err(ConfigError::new(
                format!("{path}.{k}"),
                format!("invalid tag value: {v:?}"),
            ));
        }
    }
    Ok(())
}

/// `validateExportTo` of a VirtualService or DestinationRule in namespace
/// `ns`: `.`, `*` or a namespace, no duplicates (`.` is `ns`), `*` alone,
/// no `~`; a DestinationRule with a `workloadSelector` only to its own
/// namespace.
pub fn export_to(
    ns: &str,
    list: &[String],
    with_selector: bool,
    path: &str,
) -> Result<(), ConfigError> {
    let mut seen: Vec<&str> = Vec::new();
    for (i, e) in list.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let key = if e == "." { ns } else { e.as_str() };
        if seen.contains(&key) {
            let msg = if key == e {
                format!("duplicate entries in exportTo for entry {e}")
            } else {
                format!("duplicate entries in exportTo: . and current namespace {ns}")
            };
            return Err(ConfigError::new(at, msg));
        }
        match key {
            "*" => {}
            "~" => {
                return Err(ConfigError::new(
                    at,
                    "exportTo ~ (none) is not allowed for Istio configuration objects",
                ));
            }
            _ if e == "." || is_dns1123_label(key) => {}
            _ => {
                return Err(ConfigError::new(
                    at,
                    "only .,*, or a valid DNS 1123 label is allowed as exportTo entry",
                ));
            }
        }
        seen.push(key);
    }
    if with_selector && !seen.is_empty() {
        if !seen.contains(&ns) {
            return Err(ConfigError::new(
                path,
                "destination rule with workload selector cannot have exportTo beyond current namespace",
            ));
        }
        if seen.len() > 1 {
            return Err(ConfigError::new(
                path,
                "destination rule with workload selector cannot have multiple entries in exportTo",
            ));
        }
    }
    if seen.contains(&"*") && list.len() > 1 {
        return Err(ConfigError::new(
            path,
            "cannot have both public (*) and non-public exportTo values for a resource",
        ));
    }
    Ok(())
}

/// `agent.ValidateIPAddress`.
pub fn is_ip(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok()
}

/// `agent.ValidateIPSubnet`: an address, or `address/bits` in CIDR notation.
pub fn ip_subnet(s: &str, path: &str) -> Result<(), ConfigError> {
    let ok = match s.split_once('/') {
        Some((addr, bits)) => match addr.parse::<std::net::IpAddr>() {
            Ok(ip) => {
                let max = if ip.is_ipv4() { 32 } else { 128 };
                !bits.is_empty()
                    && bits.bytes().all(|b| b.is_ascii_digit())
                    && (bits.len() == 1 || !bits.starts_with('0'))
                    && bits.parse::<u32>().is_ok_and(|b| b <= max)
            }
            Err(_) => false,
        },
        None => is_ip(s),
    };
    if ok {
        return Ok(());
    }
    Err(ConfigError::new(
        path,
        format!("{s} is not a valid CIDR block or IP address"),
    ))
}

/// Istio's header-name characters (`validHeaderNameRegex`: RFC 7230
/// `tchar`s, where `+-.` in its character class also admits `,`).
pub fn is_istio_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+,-.^_`|~".contains(&b))
}

/// `@request.auth.claims.x` or `@request.auth.claims[x]` (Istio
/// pkg/jwt/routing.go `ToRoutingClaim`): JWT-claim routing, gateway only.
pub fn is_jwt_claim_route(name: &str) -> bool {
    const PREFIX: &str = "@request.auth.claims";
    let Some(head) = name.get(..PREFIX.len()) else {
        return false;
    };
    if !head.eq_ignore_ascii_case(PREFIX) {
        return false;
    }
    let rest = name.get(PREFIX.len()..).unwrap_or_default();
    (rest.starts_with('.') && rest.len() > 1)
        || (rest.starts_with('[') && rest.ends_with(']') && rest.len() > 2)
}

/// `ValidateHTTPHeaderValue`: no control characters (tab allowed), and
/// Envoy's header-value syntax (header_value_validator.go, a port of
/// Envoy's `HeaderParser`): `%` starts a `%VAR%` or `%VAR(args)%`
/// operator, `%%` is a literal `%`.
pub fn header_value(value: &str, path: &str) -> Result<(), ConfigError> {
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(ConfigError::new(
            path,
            format!("header value configuration {value:?} is invalid: control character"),
        ));
    }
    super::header_format::HeaderFormat::parse(value)
        .map(|_| ())
        .map_err(|why| ConfigError::new(path, format!("header value configuration: {why}")))
}

/// Standard base64 (RFC 4648 §4, padding optional) as protobuf JSON encodes
/// `bytes`. Hand-written: eight lines against a dependency for one field.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let digits = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .try_fold(0u32, |acc, &c| Some(acc << 6 | value(c)?))?
            << (6 * (4 - chunk.len()));
        let bytes = n.to_be_bytes();
        out.extend_from_slice(bytes.get(1..chunk.len()).filter(|_| chunk.len() > 1)?);
    }
    Some(out)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_destination_rule;
#[cfg(test)]
mod tests_virtual_service;
