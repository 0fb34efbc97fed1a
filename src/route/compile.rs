//! VirtualService + DestinationRule → [`RouteTable`], with Istio's
//! validation (istio/istio pkg/config/validation `ValidateVirtualService`,
//! `validateStringMatch`, weights; SPEC.md §VirtualService) and meshwasm's
//! own: a subset no DestinationRule defines is an error, never a 503 later.

use super::actions::{
    self, DirectResponse, ROUTER_HEADERS, Redirect, ReqOp, without_overwritten_removals,
};
use super::checks::{
    SubsetIndex, gateways_knob, gateways_select, subset_index, unbound, validate_hosts,
};
use super::hosts::{self, DomainIndex};
use super::sticky::{Sticky, VARIANT_HEADER};
use super::{Action, Forward, RequestMatcher, Route, RouteTable, Target, VirtualHost};
use crate::config::virtual_service::{
    HttpMatchRequest, HttpRoute, HttpRouteDestination, VirtualService,
};
use crate::config::{ConfigError, Document, Resource};
use crate::http::is_header_name;
use crate::matching::{HeaderMatcher, StrMatcher};
use crate::verdict::HeaderOp;

/// Pseudo-headers a `headers` match may name (Istio
/// `ValidateHTTPHeaderNameOrJwtClaimRoute`).
const MATCHABLE_PSEUDO_HEADERS: &[&str] = &[":method", ":scheme", ":authority", ":path", ":status"];

impl RouteTable {
    /// Validates and compiles the VirtualServices and DestinationRules of
    /// `doc` (which must have been parsed with those kinds).
    pub fn compile(doc: &Document) -> Result<Self, ConfigError> {
        if !doc.envoy.cluster_name.contains("{subset}") {
            let path = "envoy.clusterName";
            return Err(ConfigError::new(
                path,
                "the template must contain {subset}, or every subset would share one cluster",
            ));
        }
        if doc.envoy.cluster_header.is_empty() || !is_header_name(&doc.envoy.cluster_header) {
            return Err(ConfigError::new(
                "envoy.clusterHeader",
                "must be a valid HTTP header name",
            ));
        }
        gateways_knob(&doc.envoy.gateways)?;
        let mut warnings = Vec::new();
        let subsets = subset_index(doc, &mut warnings)?;
        let cluster_header = doc.envoy.cluster_header.to_ascii_lowercase();
        let owned: Vec<HeaderOp> = [cluster_header.as_str(), VARIANT_HEADER]
            .into_iter()
            .chain(ROUTER_HEADERS.iter().copied())
            .map(|h| HeaderOp::Remove(h.to_owned()))
            .collect();
        let mut table = RouteTable {
            pass_through: owned.clone(),
            vhosts: Vec::new(),
            domains: DomainIndex::default(),
            targets: Vec::new(),
            warnings: Vec::new(),
        };
        for vs in &doc.virtual_services {
            let ns = doc.namespace_of(vs);
            let path = vs.spec_path();
            let spec = &vs.spec;
            validate_hosts(spec, &path)?;
            let gws = &doc.envoy.gateways;
            if let Some(why) = unbound(spec, ns, &vs.metadata.name, gws) {
                warnings.push(format!("{path}.gateways: {why}"));
                continue;
            }
            for (field, n) in [("tcp", spec.tcp.len()), ("tls", spec.tls.len())] {
                if n > 0 {
                    warnings.push(format!(
                        "{path}.{field}: validated but not applied: meshwasm's filters route HTTP \
                         requests only"
                    ));
                }
            }
            if spec.http.is_empty() {
                // No HTTP route: Istio builds no HTTP virtual host for it,
                // so its hosts keep their default route.
                continue;
            }
            let res_path = format!("resources[{}]", vs.index);
            let sticky =
                Sticky::from_annotations(&vs.metadata.annotations, &vs.metadata.name, &res_path)?;
            let compiler = RuleCompiler {
                doc,
                ns,
                subsets: &subsets,
                vs,
                owned: &owned,
                cluster_header: &cluster_header,
                sticky: sticky.as_ref(),
            };
            let vhost_id = table.vhosts.len();
            let targets_before = table.targets.len();
            let mut routes = Vec::with_capacity(spec.http.len());
            for (i, r) in spec.http.iter().enumerate() {
                let route = compiler.route(
                    r,
                    &format!("{path}.http[{i}]"),
                    i,
                    &mut table.targets,
                    vhost_id,
                    &mut warnings,
                )?;
                routes.push(route);
            }
            if !routes.is_empty() && routes.iter().all(Route::never_matches) {
                // Istio builds no virtual host for a VirtualService without
                // a route for this proxy: its hosts keep their default route
                // (`BuildHTTPRoutesForVirtualService` finds none).
                warnings.push(format!(
                    "{path}: no rule applies to this workload; the VirtualService is ignored and \
                     its hosts pass through"
                ));
                table.targets.truncate(targets_before);
                continue;
            }
            for (i, host) in spec.hosts.iter().enumerate() {
                let pattern =
                    hosts::pattern(host, ns, &doc.workload.namespace, &doc.envoy.domain_suffix);
                let mut owners: Vec<usize> = Vec::new();
                for (_, owner) in table.domains.insert(pattern, vhost_id) {
                    if !owners.contains(&owner) {
                        owners.push(owner);
                    }
                }
                // One warning per earlier VirtualService, not one per name form.
                for owner in owners {
                    let owner = table.vhosts.get(owner).map_or("?", |v| v.name.as_str());
                    warnings.push(format!(
                        "{path}.hosts[{i}]: {host:?} is already routed by VirtualService {owner}, \
                         which keeps it (the first in the document wins)"
                    ));
                }
            }
            let has_fault = routes.iter().any(|r: &Route| {
                r.fault
                    .as_ref()
                    .is_some_and(|f| f.delay.is_some() || f.abort.is_some())
            });
            let ports = listener_ports(&routes);
            table.vhosts.push(VirtualHost {
                ports,
                has_fault,
                name: format!("{ns}/{}", vs.metadata.name),
                routes,
                sticky,
            });
        }
        table.warnings = warnings;
        Ok(table)
    }
}

struct RuleCompiler<'a> {
    doc: &'a Document,
    ns: &'a str,
    subsets: &'a SubsetIndex,
    vs: &'a Resource<VirtualService>,
    owned: &'a [HeaderOp],
    cluster_header: &'a str,
    sticky: Option<&'a Sticky>,
}

impl RuleCompiler<'_> {
    fn route(
        &self,
        r: &HttpRoute,
        path: &str,
        i: usize,
        ids: &mut Vec<(usize, usize, usize)>,
        vhost_id: usize,
        warnings: &mut Vec<String>,
    ) -> Result<Route, ConfigError> {
        let chosen: Vec<&str> = [
            (!r.route.is_empty(), "route"),
            (r.redirect.is_some(), "redirect"),
            (r.direct_response.is_some(), "directResponse"),
            (r.delegate.is_some(), "delegate"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect();
        match chosen.as_slice() {
            [] => {
                return Err(ConfigError::new(
                    format!("{path}.route"),
                    "one of route, redirect, directResponse or delegate is required",
                ));
            }
            [_] => {}
            [first, second, ..] => {
                return Err(ConfigError::new(
                    path,
                    format!("{first} and {second} are mutually exclusive"),
                ));
            }
        }
        if r.delegate.is_some() {
            return Err(ConfigError::new(
                format!("{path}.delegate"),
                "delegation is not supported by meshwasm",
            ));
        }
        for (set, field) in [
            (r.mirror.is_some() || !r.mirrors.is_empty(), "mirror"),
            (r.cors_policy.is_some(), "corsPolicy"),
        ] {
            if set {
                warnings.push(format!(
                    "{path}.{field}: not implemented by meshwasm; ignored"
                ));
            }
        }
        let matches = r
            .matches
            .iter()
            .enumerate()
            .filter(|(_, m)| self.applies_here(m))
            .map(|(j, m)| request_matcher(m, &format!("{path}.match[{j}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let never = !r.matches.is_empty() && matches.is_empty();
        if never {
            warnings.push(format!(
                "{path}.match: no entry selects this workload; the rule never matches"
            ));
        }
        let action = if let Some(red) = &r.redirect {
            Action::Redirect(Redirect::compile(
                red,
                &r.matches,
                &format!("{path}.redirect"),
            )?)
        } else if let Some(d) = &r.direct_response {
            Action::Direct(DirectResponse::compile(
                d,
                &format!("{path}.directResponse"),
            )?)
        } else {
            Action::Forward(self.forward(r, path, ids, (vhost_id, i), warnings)?)
        };
        let fault = match &r.fault {
            Some(f) => Some(crate::fault::Fault::compile(
                f,
                &format!("{path}.fault"),
                warnings,
            )?),
            None => None,
        };
        Ok(Route {
            name: r.name.clone().unwrap_or_else(|| format!("http[{i}]")),
            fault,
            matches: if never {
                vec![never_matcher()]
            } else {
                matches
            },
            action,
        })
    }

    /// Whether a match entry's selectors (`sourceLabels`, `sourceNamespace`,
    /// `gateways`) select this workload. When the entry lists `gateways`,
    /// the gateway names alone decide (`mesh` for a sidecar, else one of
    /// `envoy.gateways`)
    /// and the source selectors are not checked: Istio's `sourceMatchHTTP`
    /// (pilot/pkg/networking/core/route/route.go), which the API doc does
    /// not say (SPEC.md §VirtualService, HTTPMatchRequest).
    fn applies_here(&self, m: &HttpMatchRequest) -> bool {
        if !m.gateways.is_empty() {
            return gateways_select(&m.gateways, self.ns, &self.doc.envoy.gateways);
        }
        let w = &self.doc.workload;
        let labels_ok = m
            .source_labels
            .iter()
            .all(|(k, v)| w.labels.get(k) == Some(v));
        let ns_ok = m
            .source_namespace
            .as_ref()
            .is_none_or(|ns| *ns == w.namespace);
        labels_ok && ns_ok
    }

    fn forward(
        &self,
        r: &HttpRoute,
        path: &str,
        ids: &mut Vec<(usize, usize, usize)>,
        (vhost_id, route_id): (usize, usize),
        warnings: &mut Vec<String>,
    ) -> Result<Forward, ConfigError> {
        let rpath = format!("{path}.route");
        let mut router = actions::router_ops(r, path)?;
        if self.doc.envoy.route_has_istio_defaults {
            // The Envoy route already does what these say.
            let defaults = actions::router_ops(&HttpRoute::default(), path)?;
            router.retain(|op| !defaults.contains(op));
        }
        let hostname = self.doc.envoy.hostname.as_deref();
        let route_req = actions::header_ops(
            r.headers.as_ref().and_then(|h| h.request.as_ref()),
            &format!("{path}.headers.request"),
            hostname,
            true,
        )?;
        let route_resp = actions::static_ops(actions::header_ops(
            r.headers.as_ref().and_then(|h| h.response.as_ref()),
            &format!("{path}.headers.response"),
            hostname,
            false,
        )?);
        let mut rewrite_uri = None;
        if let Some(rw) = &r.rewrite {
            if rw.uri_regex_rewrite.is_some() {
                return Err(ConfigError::new(
                    format!("{path}.rewrite.uriRegexRewrite"),
                    "not implemented by meshwasm",
                ));
            }
            // proto3: an empty `uri` is unset (Envoy's `prefix_rewrite: ""`).
            rewrite_uri = crate::config::validation::set(&rw.uri).map(str::to_owned);
        }
        let authority_rewrite = r
            .rewrite
            .as_ref()
            .and_then(|rw| crate::config::validation::set(&rw.authority).map(str::to_owned));
        let dests = &r.route;
        let several = dests.len() > 1;
        let mut targets = Vec::new();
        let mut total: u32 = 0;
        for (k, d) in dests.iter().enumerate() {
            let dpath = format!("{rpath}[{k}]");
            let weight = d.weight.unwrap_or(0);
            if weight < 0 {
                return Err(ConfigError::new(
                    format!("{dpath}.weight"),
                    format!("weight {weight} is negative"),
                ));
            }
            let weight = u32::try_from(weight)
                .ok()
                .filter(|w| *w <= 1_000_000)
                .ok_or_else(|| {
                    ConfigError::new(format!("{dpath}.weight"), "weight is too large")
                })?;
            let (cluster, subset, host) = self.cluster(d, &dpath)?;
            if several && weight == 0 {
                continue; // Istio drops a zero-weight destination.
            }
            total += if several { weight } else { 1 };
            let dest_req = actions::header_ops(
                d.headers.as_ref().and_then(|h| h.request.as_ref()),
                &format!("{dpath}.headers.request"),
                hostname,
                true,
            )?;
            let dest_resp = actions::static_ops(actions::header_ops(
                d.headers.as_ref().and_then(|h| h.response.as_ref()),
                &format!("{dpath}.headers.response"),
                hostname,
                false,
            )?);
            let mut ops: Vec<HeaderOp> = self.owned.to_vec();
            ops.push(HeaderOp::Set(
                self.cluster_header.to_owned(),
                cluster.clone(),
            ));
            let mut response_ops = dest_resp;
            if let Some(sticky) = self.sticky {
                ops.push(HeaderOp::Set(VARIANT_HEADER.into(), subset.clone()));
                if let Some(h) = &sticky.response_header {
                    response_ops.push(HeaderOp::Set(h.clone(), subset.clone()));
                }
            }
            ops.extend(router.iter().cloned());
            if let Some(a) = &authority_rewrite {
                ops.push(HeaderOp::Set(":authority".into(), a.clone()));
            }
            let mut request_ops: Vec<ReqOp> = ops.into_iter().map(ReqOp::Static).collect();
            request_ops.extend(dest_req);
            request_ops.extend(route_req.iter().cloned());
            let (request_ops, request_tail) =
                actions::split_dynamic(without_overwritten_removals(request_ops));
            response_ops.extend(route_resp.iter().cloned());
            let id = ids.len();
            ids.push((vhost_id, route_id, targets.len()));
            targets.push(Target {
                id,
                host,
                cluster,
                subset,
                weight,
                cumulative_end: total,
                request_ops,
                request_tail,
                response_ops,
            });
        }
        if several && total == 0 {
            return Err(ConfigError::new(
                rpath,
                "the weights of several destinations sum to 0",
            ));
        }
        if several && total != 100 {
            warnings.push(format!(
                "{rpath}: weights sum to {total}, not 100; they are read as relative shares"
            ));
        }
        Ok(Forward {
            targets,
            total,
            sticky: self.sticky.is_some(),
            rewrite_uri,
        })
    }

    fn cluster(
        &self,
        d: &HttpRouteDestination,
        path: &str,
    ) -> Result<(String, String, String), ConfigError> {
        let dest = &d.destination;
        if dest.host.is_empty() {
            return Err(ConfigError::new(
                format!("{path}.destination.host"),
                "host is required",
            ));
        }
        let fqdn = hosts::fqdn(&dest.host, self.ns, &self.doc.envoy.domain_suffix);
        let subset = dest.subset.clone().unwrap_or_default();
        if !subset.is_empty() && !self.subsets.get(&fqdn).is_some_and(|s| s.contains(&subset)) {
            return Err(ConfigError::new(
                format!("{path}.destination.subset"),
                format!(
                    "subset {subset:?} is not defined by any DestinationRule for host {:?} ({fqdn}); \
                     VirtualService {:?}",
                    dest.host, self.vs.metadata.name
                ),
            ));
        }
        let port = dest
            .port
            .as_ref()
            .map(|p| p.number)
            .filter(|n| *n != 0)
            .unwrap_or(self.doc.envoy.default_port);
        let cluster = self
            .doc
            .envoy
            .cluster_name
            .replace("{host}", &fqdn)
            .replace("{subset}", &subset)
            .replace("{port}", &port.to_string());
        Ok((cluster, subset, fqdn))
    }
}

/// The ports on which a VirtualService has some rule (Istio builds each
/// listener's routes separately and drops a rule whose every match names
/// another `port`): `None` when some rule applies on every port.
fn listener_ports(routes: &[Route]) -> Option<Vec<u32>> {
    let mut ports = Vec::new();
    for route in routes {
        if route.matches.is_empty() {
            return None;
        }
        for m in &route.matches {
            match m.port {
                None => return None,
                Some(0) => {} // never_matcher: selected away
                Some(p) if !ports.contains(&p) => ports.push(p),
                Some(_) => {}
            }
        }
    }
    Some(ports)
}

fn never_matcher() -> RequestMatcher {
    RequestMatcher {
        port: Some(0),
        ..RequestMatcher::default()
    }
}

fn request_matcher(m: &HttpMatchRequest, path: &str) -> Result<RequestMatcher, ConfigError> {
    let mut out = RequestMatcher {
        // proto3: `port: 0` is unset.
        port: m.port.filter(|p| *p != 0),
        ..RequestMatcher::default()
    };
    if let Some(uri) = &m.uri {
        let upath = format!("{path}.uri");
        let empty_prefix =
            uri.prefix.as_deref() == Some("") && uri.exact.is_none() && uri.regex.is_none();
        // `uri: {prefix: ""}` is valid (Istio virtualservice.go: Envoy's
        // route prefix may be empty) and, like `uri: {}`, matches every path.
        let matcher = if empty_prefix {
            StrMatcher::Present
        } else {
            StrMatcher::compile(uri, &upath, m.ignore_uri_case, true)?
        };
        out.prefix = match &matcher {
            StrMatcher::Present if !empty_prefix => Some("/".to_owned()),
            _ => uri.prefix.clone(),
        };
        out.uri = (!matches!(matcher, StrMatcher::Present)).then_some(matcher);
    } else {
        out.prefix = Some("/".to_owned());
    }
    for (field, name, sm) in [
        ("method", ":method", &m.method),
        ("scheme", ":scheme", &m.scheme),
        ("authority", ":authority", &m.authority),
    ] {
        if let Some(sm) = sm {
            // `{}` is a presence match (Istio emits `present_match`).
            let matcher = StrMatcher::compile(sm, &format!("{path}.{field}"), false, true)?;
            out.headers.push(HeaderMatcher {
                name: name.to_owned(),
                matcher,
                invert: false,
            });
        }
    }
    for (field, map, invert) in [
        ("headers", &m.headers, false),
        ("withoutHeaders", &m.without_headers, true),
    ] {
        for (name, sm) in map {
            // Keys `uri`, `method`, … are header names like any other
            // (Istio's `TranslateRouteMatch` at head; its API doc says they
            // are ignored, the code that sidecars run does not).
            let lower = name.to_ascii_lowercase();
            if crate::config::validation::is_jwt_claim_route(name) {
                // Valid on a gateway (Istio routes on the claims its authn
                // filter puts in dynamic metadata); not implemented here.
                return Err(ConfigError::new(
                    format!("{path}.{field}.{name}"),
                    "JWT claim based routing is not implemented by meshwasm",
                ));
            }
            if !is_header_name(&lower) && !MATCHABLE_PSEUDO_HEADERS.contains(&lower.as_str()) {
                return Err(ConfigError::new(
                    format!("{path}.{field}.{name}"),
                    format!("{name:?} is not a valid header name"),
                ));
            }
            // `withoutHeaders: {x: {regex: "*"}}` is not a regex: Istio
            // validates it as none and emits `present_match`, inverted
            // (virtualservice.go `validateHTTPRouteMatchRequest`, route.go
            // `canBeConvertedToPresentMatch`): "x is absent". Under
            // `headers` it is a regex and does not compile.
            let star = invert
                && sm.regex.as_deref() == Some("*")
                && sm.exact.is_none()
                && sm.prefix.is_none();
            let matcher = if star {
                StrMatcher::Present
            } else {
                StrMatcher::compile(sm, &format!("{path}.{field}.{name}"), false, true)?
            };
            out.headers.push(HeaderMatcher {
                name: lower,
                matcher,
                invert,
            });
        }
    }
    for (name, sm) in &m.query_params {
        let matcher = StrMatcher::compile(sm, &format!("{path}.queryParams.{name}"), false, true)?;
        out.query.push((name.clone(), matcher));
    }
    Ok(out)
}
