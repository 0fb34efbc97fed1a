//! Istio's `ValidateVirtualService` (istio/istio
//! pkg/config/validation/validation.go), with the checks of Istio's CRD
//! schema (oneofs, required fields, durations of at least 1 ms): every
//! VirtualService is validated, also the ones bound only to gateways and
//! the fields meshwasm does not act on (`tcp`, `tls`, `corsPolicy`,
//! `mirror`), so what a cluster would refuse is never half-applied here.
//! HTTP rules are in [`super::http_route`].

use super::http_route::{self, err};
use super::{export_to, fqdn, hosts_overlap, ip_subnet, is_dns1123_label, is_ip, labels, port};
use super::{host_subset_of, is_jwt_claim_route, wildcard_domain};
use crate::config::virtual_service::{
    Destination, L4MatchAttributes, RouteDestination, TcpRoute, TlsMatchAttributes, TlsRoute,
    VirtualService,
};
use crate::config::{ConfigError, Resource};

/// Validates a VirtualService in namespace `ns`; warnings name their path.
pub fn validate(
    vs: &Resource<VirtualService>,
    ns: &str,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let path = vs.spec_path();
    let spec = &vs.spec;
    let delegate = spec.hosts.is_empty();
    if delegate {
        for (set, field, what) in [
            (!spec.gateways.is_empty(), "gateways", "gateways specified"),
            (!spec.tls.is_empty(), "tls", "tls route specified"),
            (!spec.tcp.is_empty(), "tcp", "tcp route specified"),
        ] {
            if set {
                return Err(err(
                    format!("{path}.{field}"),
                    format!("delegate virtual service must have no {what}"),
                ));
            }
        }
    }
    gateway_names(&spec.gateways, &format!("{path}.gateways"), warnings)?;
    let to_gateway = !spec.gateways.is_empty() && !spec.gateways.iter().any(|g| g == "mesh");
    if !to_gateway {
        jwt_claims_need_a_gateway(spec, &path)?;
    }
    let sni = spec
        .tls
        .iter()
        .any(|t| t.matches.iter().any(|m| !m.sni_hosts.is_empty()));
    for (i, h) in spec.hosts.iter().enumerate() {
        let at = format!("{path}.hosts[{i}]");
        let checked = if to_gateway {
            gateway_domain(sni, h)
        } else {
            wildcard_domain(h)
        };
        match checked {
            Err(why) if !is_ip(h) => return Err(err(at, why)),
            Err(_) => {}
            Ok(()) if !to_gateway && h == "*" => {
                return Err(err(
                    at,
                    "wildcard host * is not allowed for virtual services bound to the mesh",
                ));
            }
            Ok(()) => {}
        }
    }
    // Every host is valid here (Istio checks duplicates only then).
    for (j, b) in spec.hosts.iter().enumerate() {
        if let Some(a) = spec.hosts.iter().take(j).find(|a| hosts_overlap(a, b)) {
            return Err(err(
                format!("{path}.hosts[{j}]"),
                format!("duplicate hosts in virtual service: {a} & {b}"),
            ));
        }
    }
    if spec.http.is_empty() && spec.tcp.is_empty() && spec.tls.is_empty() {
        return Err(err(&path, "at least one of http, tcp or tls is required"));
    }
    for (i, r) in spec.http.iter().enumerate() {
        http_route::validate(r, delegate, &format!("{path}.http[{i}]"), warnings)?;
    }
    for (i, t) in spec.tls.iter().enumerate() {
        tls_route(t, spec, to_gateway, &format!("{path}.tls[{i}]"), warnings)?;
    }
    for (i, t) in spec.tcp.iter().enumerate() {
        tcp_route(t, &format!("{path}.tcp[{i}]"))?;
    }
    export_to(ns, &spec.export_to, false, &format!("{path}.exportTo"))
}

/// `@request.auth.claims.*` header keys are gateway-only (JWT claims
/// reach a route as dynamic metadata from a gateway's authn filter).
fn jwt_claims_need_a_gateway(spec: &VirtualService, path: &str) -> Result<(), ConfigError> {
    for (i, r) in spec.http.iter().enumerate() {
        for (j, m) in r.matches.iter().enumerate() {
            for (field, map) in [
                ("headers", &m.headers),
                ("withoutHeaders", &m.without_headers),
            ] {
                if let Some(key) = map.keys().find(|k| is_jwt_claim_route(k)) {
                    return Err(err(
                        format!("{path}.http[{i}].match[{j}].{field}.{key}"),
                        format!(
                            "JWT claim based routing (key: {key}) is only supported for gateway, \
                             found no gateways: {:?}",
                            spec.gateways
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// `agent.ValidateWildcardDomainForVirtualServiceBoundToGateway`: on a
/// gateway with SNI matches, `outbound_.<port>_._.<host>` (the names
/// AUTO_PASSTHROUGH generates) are hosts too.
fn gateway_domain(sni: bool, domain: &str) -> Result<(), String> {
    if sni && domain.starts_with("outbound_") {
        let parts: Vec<&str> = domain.split('_').collect();
        let bad = |label: &str| format!("domain name {domain:?} invalid (label {label:?} invalid)");
        let (Some(direction), Some(port), Some(host)) = (parts.first(), parts.get(1), parts.get(3))
        else {
            return Err(format!(
                "domain name {domain} invalid, should follow 'outbound_.<port>_._.<hostname>' format"
            ));
        };
        let (port, host) = (port.trim_matches('.'), host.trim_matches('.'));
        if *direction != "outbound" {
            return Err(bad(direction));
        }
        if !port.bytes().any(|b| b.is_ascii_digit()) {
            return Err(bad(port));
        }
        if !host.bytes().any(|b| b.is_ascii_alphabetic()) {
            return Err(bad(host));
        }
        return if domain.len() > 255 {
            Err(format!("domain name {domain:?} too long (max 255)"))
        } else {
            Ok(())
        };
    }
    wildcard_domain(domain)
}

/// `validateGatewayNames`: `<namespace>/<name>` of DNS-1123 labels, or a
/// legacy FQDN (warned about). Like Istio, the first name without a `/`
/// ends the check.
pub(super) fn gateway_names(
    names: &[String],
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    for (i, g) in names.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let Some((ns, name)) = g.split_once('/') else {
            if g.contains('.') {
                let parts: Vec<&str> = g.split('.').collect();
                let (a, b) = (parts.first().unwrap_or(&""), parts.get(1).unwrap_or(&""));
                warnings.push(format!(
                    "{at}: using legacy gatewayName format {g:?}; prefer the <namespace>/<name> \
                     format: \"{b}/{a}\""
                ));
            }
            return fqdn(g).map_err(|why| err(at, why));
        };
        if ns.is_empty() || name.is_empty() {
            return Err(err(at, "config namespace and gateway name cannot be empty"));
        }
        if !is_dns1123_label(ns) {
            return Err(err(at, format!("invalid value for namespace: {ns:?}")));
        }
        if !is_dns1123_label(name) {
            return Err(err(at, format!("invalid value for gateway name: {name:?}")));
        }
    }
    Ok(())
}

/// `validateDestination`: a host that is not `*` but a (wildcard) domain,
/// a DNS-1123 subset name, a port in range.
pub(super) fn destination(d: &Destination, path: &str) -> Result<(), ConfigError> {
    if d.host == "*" {
        return Err(err(
            format!("{path}.host"),
            format!("invalid destination host {}", d.host),
        ));
    }
    wildcard_domain(&d.host).map_err(|why| err(format!("{path}.host"), why))?;
    if let Some(subset) = super::set(&d.subset) {
        subset_name(subset, &format!("{path}.subset"))?;
    }
    if let Some(p) = &d.port {
        port(i64::from(p.number), &format!("{path}.port.number"))?;
    }
    Ok(())
}

/// `validateSubsetName`.
pub(super) fn subset_name(name: &str, path: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(err(path, "subset name cannot be empty"));
    }
    if !is_dns1123_label(name) {
        return Err(err(path, format!("subset name is invalid: {name}")));
    }
    Ok(())
}

/// `validateRouteDestinations` (TCP and TLS): destinations, weights ≥ 0,
/// several weights not summing to 0.
fn route_destinations(route: &[RouteDestination], path: &str) -> Result<(), ConfigError> {
    let mut total: i64 = 0;
    for (k, d) in route.iter().enumerate() {
        let at = format!("{path}[{k}]");
        destination(&d.destination, &format!("{at}.destination"))?;
        let w = d.weight.unwrap_or(0);
        http_route::weight(w, &format!("{at}.weight"))?;
        total += w;
    }
    if route.len() > 1 && total == 0 {
        return Err(err(path, "total destination weight = 0"));
    }
    Ok(())
}

/// `validateTLSRoute` and `validateTLSMatch`.
fn tls_route(
    t: &TlsRoute,
    vs: &VirtualService,
    to_gateway: bool,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    if t.matches.is_empty() {
        return Err(err(
            format!("{path}.match"),
            "TLS route must have at least one match condition",
        ));
    }
    for (j, m) in t.matches.iter().enumerate() {
        tls_match(m, vs, to_gateway, &format!("{path}.match[{j}]"), warnings)?;
    }
    if t.route.is_empty() {
        return Err(err(format!("{path}.route"), "TLS route is required"));
    }
    route_destinations(&t.route, &format!("{path}.route"))
}

fn tls_match(
    m: &TlsMatchAttributes,
    vs: &VirtualService,
    to_gateway: bool,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    if m.sni_hosts.is_empty() {
        return Err(err(
            format!("{path}.sniHosts"),
            "TLS match must have at least one SNI host",
        ));
    }
    for (k, sni) in m.sni_hosts.iter().enumerate() {
        let at = format!("{path}.sniHosts[{k}]");
        let checked = if to_gateway {
            gateway_domain(true, sni)
        } else {
            wildcard_domain(sni)
        };
        if let Err(why) = checked {
            if is_ip(sni) {
                warnings.push(format!(
                    "{at}: using an IP address ({sni:?}) goes against SNI spec and most clients \
                     do not support this"
                ));
                continue;
            }
            return Err(err(at, why));
        }
        if !vs.hosts.iter().any(|h| host_subset_of(sni, h)) {
            return Err(err(
                at,
                format!(
                    "SNI host {sni:?} is not a compatible subset of any of the virtual service \
                     hosts: [{}]",
                    vs.hosts.join(", ")
                ),
            ));
        }
    }
    l4_common(
        &m.destination_subnets,
        m.port,
        &m.source_labels,
        &m.gateways,
        path,
    )
}

/// `validateTCPRoute` and `validateTCPMatch`.
fn tcp_route(t: &TcpRoute, path: &str) -> Result<(), ConfigError> {
    for (j, m) in t.matches.iter().enumerate() {
        let L4MatchAttributes {
            destination_subnets,
            port,
            source_labels,
            gateways,
            ..
        } = m;
        let at = format!("{path}.match[{j}]");
        l4_common(destination_subnets, *port, source_labels, gateways, &at)?;
    }
    if t.route.is_empty() {
        return Err(err(format!("{path}.route"), "TCP route is required"));
    }
    route_destinations(&t.route, &format!("{path}.route"))
}

/// What TLS and TCP matches share: subnets, port, source labels, gateways.
fn l4_common(
    subnets: &[String],
    p: Option<u32>,
    source_labels: &std::collections::BTreeMap<String, String>,
    gateways: &[String],
    path: &str,
) -> Result<(), ConfigError> {
    for (k, s) in subnets.iter().enumerate() {
        ip_subnet(s, &format!("{path}.destinationSubnets[{k}]"))?;
    }
    if let Some(p) = p.filter(|p| *p != 0) {
        port(i64::from(p), &format!("{path}.port"))?;
    }
    labels(source_labels, &format!("{path}.sourceLabels"))?;
    gateway_names(gateways, &format!("{path}.gateways"), &mut Vec::new())
}
