//! A configuration document's VirtualServices as **native** Envoy routes,
//! translated the way Istio's pilot builds a sidecar's outbound
//! `RouteConfiguration` — the reference the route filter is held to by the
//! differential test (`harness/tests/route_differential.rs`, issue 11).
//! Written from istio/istio master as stored for this work —
//! pilot/pkg/networking/core/route/route.go at 0098d99,
//! pilot/pkg/networking/core/httproute.go at fcac6cf,
//! pilot/pkg/networking/util/util.go, pilot/pkg/features
//! (`PILOT_ENABLE_ABSOLUTE_FQDN_VHOST_DOMAIN`, default on) — and cited per
//! function; no Istio code is copied.
//!
//! - Route configuration (httproute.go `buildSidecarOutboundHTTPRouteConfig`):
//!   the virtual hosts sorted by name, then the catch-all `allow_any` virtual
//!   host (`buildCatchAllVirtualHost`, `ALLOW_ANY` outbound policy),
//!   `ignore_port_in_host_matching: true` (so Envoy cuts the port at the
//!   last `:` before choosing a virtual host) and `validate_clusters: false`.
//! - Virtual hosts (httproute.go `BuildSidecarOutboundVirtualHosts`,
//!   route.go `BuildSidecarVirtualHostWrapper`,
//!   `buildSidecarVirtualHostsForVirtualService`,
//!   `separateVSHostsAndServices`, `buildSidecarVirtualHostForService`): a
//!   VirtualService that yields no route (every match selected away) gets no
//!   virtual host, and its services keep their default route; a host that is
//!   not a registry service gets a virtual host with that one domain, on
//!   listener port 80 only; duplicate names and domains: the first keeps them
//!   (`dedupeDomains`).
//! - Domains of a service (httproute.go `generateVirtualHostDomains`,
//!   `GenerateAltVirtualHosts`, `generateAltVirtualHostsForKubernetesService`,
//!   `SidecarIgnorePort`): the FQDN, the absolute FQDN with a trailing dot
//!   (`PILOT_ENABLE_ABSOLUTE_FQDN_VHOST_DOMAIN`, on by default), then
//!   `name`, `name.ns.svc`, `name.ns` from the workload's namespace or
//!   `name.ns`, `name.ns.svc` from another; no `:port` forms, since a sidecar
//!   ignores the port in host matching.
//! - Routes: [`matches`] (route.go `BuildHTTPRoutesForVirtualService`,
//!   `translateRoute`, `sourceMatchHTTP`, `TranslateRouteMatch`, …).
//!
//! Modelling choices, as meshwasm has no control plane and no registry:
//! - The service registry holds one Kubernetes Service, on port
//!   `envoy.defaultPort`, for every VirtualService host that names one (a
//!   short name, or a name ending in `.svc.<domainSuffix>`); other names
//!   (`api.example.com`, wildcards) are not services (no ServiceEntry).
//! - The proxy is a Kubernetes sidecar of the document's `workload`
//!   (DNS domain `<namespace>.svc.<domainSuffix>`), with no service VIPs.
//! - VirtualServices are taken in document order (Istio: by creation time).
//! - Not modelled, refused with a [`TranslateError`]: a wildcard host that
//!   covers a registry service (Istio's most-specific-wildcard index), and
//!   any `HTTPRoute` field but `name`, `match`, `route` and `headers`.
//!   `exportTo` is not read (every VirtualService is visible).

mod matches;
pub mod requests;
#[cfg(test)]
mod tests;
pub mod wire;

use std::collections::BTreeSet;

use meshwasm::config::virtual_service::VirtualService;
use meshwasm::config::{Document, Resource};
use serde_json::{Map, Value, json};

/// Request header naming the rule a request matched, `<VirtualService>/<i>`.
pub const RULE_HEADER: &str = "x-rule";
/// [`RULE_HEADER`] value of a request no VirtualService serves.
pub const PASSTHROUGH: &str = "passthrough";
/// Destination host of every rule of an [`instrument`]ed document.
pub const UPSTREAM_HOST: &str = "echo.diff.svc.cluster.local";

/// Why a document cannot be translated: a form Istio refuses, or one this
/// translator does not model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct TranslateError {
    /// JSON path of the field, e.g. `resources[0].spec.http[1].redirect`.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl TranslateError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> TranslateError {
        TranslateError {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// What the translation of one document depends on.
struct Ctx<'a> {
    doc: &'a Document,
    /// Port of the outbound listener the route configuration is for.
    listener_port: u32,
    /// Registry services on that port (FQDNs).
    services: Vec<String>,
}

/// A virtual host in the making (route.go `VirtualHostWrapper`).
struct Wrapper {
    port: u32,
    services: Vec<String>,
    vs_hosts: Vec<String>,
    routes: Vec<Value>,
}

/// The Envoy `RouteConfiguration` (JSON) of the sidecar outbound listener
/// on `listener_port` for the document's VirtualServices (parsed with
/// [`meshwasm::config::Kind::VirtualService`]). Requests for a host no
/// VirtualService serves — the `allow_any` catch-all and the default route
/// of a service whose VirtualService yields no route — go to
/// `passthrough_cluster` with [`RULE_HEADER`]` = `[`PASSTHROUGH`].
pub fn route_configuration(
    doc: &Document,
    listener_port: u32,
    passthrough_cluster: &str,
) -> Result<Value, TranslateError> {
    let sidecar: Vec<&Resource<VirtualService>> = doc
        .virtual_services
        .iter()
        .filter(|vs| binds_mesh(&vs.spec))
        .collect();
    let service_port = doc.envoy.default_port;
    let ctx = Ctx {
        doc,
        listener_port,
        services: if listener_port == service_port {
            registry(doc, &sidecar)
        } else {
            Vec::new()
        },
    };
    let mut wrappers = Vec::new();
    let mut routed: BTreeSet<String> = BTreeSet::new();
    for vs in sidecar {
        // httproute.go `BuildSidecarOutboundVirtualHosts`: off port 80,
        // only VirtualServices naming a service (`selectVirtualServices`).
        if listener_port != 80 && !names_a_service(&ctx, vs) {
            continue;
        }
        let routes = matches::http_routes(&ctx, vs)?;
        if routes.is_empty() {
            continue;
        }
        let (vs_hosts, services) = separate_hosts(&ctx, vs)?;
        let port = if !services.is_empty() {
            service_port
        } else if listener_port == 80 {
            80
        } else {
            continue;
        };
        routed.extend(services.iter().cloned());
        wrappers.push(Wrapper {
            port,
            services,
            vs_hosts,
            routes,
        });
    }
    for svc in ctx.services.iter().filter(|s| !routed.contains(*s)) {
        wrappers.push(Wrapper {
            port: service_port,
            services: vec![svc.clone()],
            vs_hosts: Vec::new(),
            routes: vec![passthrough_route("default", passthrough_cluster)],
        });
    }
    let mut vhosts = virtual_hosts(&ctx, &wrappers);
    vhosts.sort_by(|a, b| name_of(a).cmp(name_of(b)));
    vhosts.push(json!({
        "name": "allow_any",
        "domains": ["*"],
        "routes": [passthrough_route("allow_any", passthrough_cluster)],
        "include_request_attempt_count": true,
    }));
    Ok(json!({
        "name": listener_port.to_string(),
        "virtual_hosts": vhosts,
        "validate_clusters": false,
        "ignore_port_in_host_matching": true,
    }))
}

/// A route forwarding everything to `cluster`, marked [`PASSTHROUGH`].
fn passthrough_route(name: &str, cluster: &str) -> Value {
    json!({
        "name": name,
        "match": {"prefix": "/"},
        "route": {"cluster": cluster, "timeout": "0s"},
        "request_headers_to_add": [{
            "header": {"key": RULE_HEADER, "value": PASSTHROUGH},
            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
        }],
    })
}

fn name_of(vhost: &Value) -> &str {
    vhost
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// A VirtualService applies to sidecars when it names no gateway or names
/// `mesh` (Istio's default gateway list is `[mesh]`).
fn binds_mesh(spec: &VirtualService) -> bool {
    spec.gateways.is_empty() || spec.gateways.iter().any(|g| g == "mesh")
}

/// Istio `ResolveShortnameToFQDN`: a dotless name is qualified with the
/// resource's namespace; `*` and anything with a dot stay as written.
pub(crate) fn resolve(host: &str, ns: &str, domain_suffix: &str) -> String {
    let host = host.to_ascii_lowercase();
    if host == "*" || host.contains('.') {
        host
    } else {
        format!("{host}.{ns}.svc.{domain_suffix}")
    }
}

fn is_wildcard(host: &str) -> bool {
    host.starts_with('*')
}

/// Istio `host.Name.Matches` for a wildcard `pattern` and a plain name.
fn wildcard_covers(pattern: &str, name: &str) -> bool {
    pattern == "*" || pattern.strip_prefix('*').is_some_and(|s| name.ends_with(s))
}

/// The modelled registry: a Kubernetes Service per VirtualService host
/// naming one, in document order.
fn registry(doc: &Document, vss: &[&Resource<VirtualService>]) -> Vec<String> {
    let kube = format!(".svc.{}", doc.envoy.domain_suffix);
    let mut out: Vec<String> = Vec::new();
    for vs in vss {
        let ns = doc.namespace_of(vs);
        for host in vs.spec.hosts.iter().filter(|h| !is_wildcard(h)) {
            let fqdn = resolve(host, ns, &doc.envoy.domain_suffix);
            if fqdn.ends_with(&kube) && !out.contains(&fqdn) {
                out.push(fqdn);
            }
        }
    }
    out
}

fn names_a_service(ctx: &Ctx<'_>, vs: &Resource<VirtualService>) -> bool {
    let ns = ctx.doc.namespace_of(vs);
    vs.spec.hosts.iter().any(|h| {
        let h = resolve(h, ns, &ctx.doc.envoy.domain_suffix);
        ctx.services
            .iter()
            .any(|s| *s == h || (is_wildcard(&h) && wildcard_covers(&h, s)))
    })
}

/// route.go `separateVSHostsAndServices`: the hosts that are registry
/// services, and the others (kept as virtual-host domains of their own).
fn separate_hosts(
    ctx: &Ctx<'_>,
    vs: &Resource<VirtualService>,
) -> Result<(Vec<String>, Vec<String>), TranslateError> {
    let ns = ctx.doc.namespace_of(vs);
    let (mut others, mut services) = (Vec::new(), Vec::new());
    for (i, host) in vs.spec.hosts.iter().enumerate() {
        let h = resolve(host, ns, &ctx.doc.envoy.domain_suffix);
        if is_wildcard(&h) {
            if let Some(svc) = ctx.services.iter().find(|s| wildcard_covers(&h, s)) {
                return Err(TranslateError::new(
                    format!("{}.hosts[{i}]", vs.spec_path()),
                    format!(
                        "wildcard {host:?} covers service {svc}: Istio's most-specific-wildcard \
                         index is not modelled"
                    ),
                ));
            }
            others.push(h);
        } else if ctx.services.contains(&h) {
            services.push(h);
        } else {
            others.push(h);
        }
    }
    Ok((others, services))
}

/// httproute.go `BuildSidecarOutboundVirtualHosts` (its `buildVirtualHost`
/// closure and `dedupeDomains`): the virtual hosts of the wrappers on the
/// listener's port.
fn virtual_hosts(ctx: &Ctx<'_>, wrappers: &[Wrapper]) -> Vec<Value> {
    let mut known_fqdn: BTreeSet<String> = BTreeSet::new();
    for w in wrappers {
        for svc in &w.services {
            known_fqdn.insert(format!("{svc}:{}", w.port));
            known_fqdn.insert(svc.clone());
        }
    }
    let mut names: BTreeSet<String> = BTreeSet::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    for w in wrappers {
        let hosts = w.vs_hosts.iter().map(|h| (h, false));
        for (hostname, is_service) in hosts.chain(w.services.iter().map(|s| (s, true))) {
            if !names.insert(format!("{hostname}:{}", w.port)) {
                continue;
            }
            let (domains, alt) = if is_service {
                service_domains(ctx, hostname)
            } else {
                (vec![hostname.clone()], Vec::new())
            };
            let domains: Vec<String> = domains
                .into_iter()
                .filter(|d| !(alt.contains(d) && known_fqdn.contains(d)))
                .filter(|d| seen.insert(d.to_ascii_lowercase()))
                .collect();
            if domains.is_empty() || w.port != ctx.listener_port {
                continue;
            }
            out.push(json!({
                "name": format!("{hostname}:{}", w.port),
                "domains": domains,
                "routes": w.routes,
                "include_request_attempt_count": true,
            }));
        }
    }
    out
}

/// httproute.go `generateVirtualHostDomains` for a sidecar (port ignored):
/// the service's domains and, of those, the alternate forms.
fn service_domains(ctx: &Ctx<'_>, fqdn: &str) -> (Vec<String>, Vec<String>) {
    let proxy_domain = format!(
        "{}.svc.{}",
        ctx.doc.workload.namespace, ctx.doc.envoy.domain_suffix
    );
    let alt = alt_hosts(fqdn, &proxy_domain);
    let mut domains = vec![fqdn.to_owned()];
    domains.extend(alt.iter().cloned());
    (domains, alt)
}

/// httproute.go `GenerateAltVirtualHosts` with no port suffix, for a proxy
/// whose DNS domain is `<ns>.svc.<suffix>` (always the case here).
fn alt_hosts(fqdn: &str, proxy_domain: &str) -> Vec<String> {
    let mut out = Vec::new();
    if fqdn.parse::<std::net::IpAddr>().is_err() {
        out.push(format!("{fqdn}."));
    }
    let cluster_suffix = proxy_domain
        .find(".svc.")
        .and_then(|i| proxy_domain.get(i..))
        .unwrap_or(proxy_domain);
    if fqdn.ends_with(cluster_suffix) {
        out.extend(kube_alt_hosts(fqdn, proxy_domain));
    }
    out
}

/// httproute.go `generateAltVirtualHostsForKubernetesService` with no port:
/// `name`, `name.ns.svc`, `name.ns` from the same namespace, else
/// `name.ns`, `name.ns.svc`.
fn kube_alt_hosts(fqdn: &str, proxy_domain: &str) -> Vec<String> {
    let (Some(svc_at), Some(proxy_svc_at)) = (fqdn.find(".svc."), proxy_domain.find(".svc."))
    else {
        return Vec::new();
    };
    let Some(dot) = fqdn.find('.') else {
        return Vec::new();
    };
    if dot + 1 >= fqdn.len() || dot + 1 > svc_at {
        return Vec::new();
    }
    let (Some(name), Some(name_ns), Some(ns), Some(proxy_ns)) = (
        fqdn.get(..dot),
        fqdn.get(..svc_at),
        fqdn.get(dot + 1..svc_at),
        proxy_domain.get(..proxy_svc_at),
    ) else {
        return Vec::new();
    };
    if ns == proxy_ns {
        vec![
            name.to_owned(),
            format!("{name_ns}.svc"),
            name_ns.to_owned(),
        ]
    } else {
        vec![name_ns.to_owned(), format!("{name_ns}.svc")]
    }
}

/// The document (JSON) with every VirtualService rule's actions replaced by
/// a forward to [`UPSTREAM_HOST`] setting [`RULE_HEADER`] to
/// `<VirtualService name>/<rule index>`; `name` and `match` are kept, other
/// kinds dropped. Both Envoys of the differential test get this document,
/// so the upstream sees which rule each picked.
pub fn instrument(doc: &Value) -> Value {
    let mut out = doc.clone();
    let Some(resources) = out.get_mut("resources").and_then(Value::as_array_mut) else {
        return out;
    };
    resources.retain(|r| r.get("kind").and_then(Value::as_str) == Some("VirtualService"));
    for vs in resources.iter_mut() {
        let name = vs
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let Some(http) = vs.pointer_mut("/spec/http").and_then(Value::as_array_mut) else {
            continue;
        };
        for (i, rule) in http.iter_mut().enumerate() {
            let mut marked = Map::new();
            for key in ["name", "match"] {
                if let Some(v) = rule.get(key) {
                    marked.insert(key.to_owned(), v.clone());
                }
            }
            marked.insert(
                "route".to_owned(),
                json!([{"destination": {"host": UPSTREAM_HOST}}]),
            );
            marked.insert(
                "headers".to_owned(),
                json!({"request": {"set": {RULE_HEADER: format!("{name}/{i}")}}}),
            );
            *rule = Value::Object(marked);
        }
    }
    out
}

/// Rewrites every `match[].port: from` of the document's VirtualServices to
/// `to`: a `port` match means the port the request arrived on, and the
/// route filter reads it from the listener it actually runs on.
pub fn with_match_port(doc: &mut Value, from: u32, to: u32) {
    let Some(resources) = doc.get_mut("resources").and_then(Value::as_array_mut) else {
        return;
    };
    for rule in resources
        .iter_mut()
        .filter_map(|r| r.pointer_mut("/spec/http").and_then(Value::as_array_mut))
        .flatten()
    {
        let Some(entries) = rule.get_mut("match").and_then(Value::as_array_mut) else {
            continue;
        };
        for entry in entries.iter_mut().filter_map(Value::as_object_mut) {
            if entry.get("port").and_then(Value::as_u64) == Some(u64::from(from)) {
                entry.insert("port".to_owned(), json!(to));
            }
        }
    }
}
