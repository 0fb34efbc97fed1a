//! `http[]` rules → Envoy routes, as istio/istio
//! pilot/pkg/networking/core/route/route.go does for a sidecar:
//! `BuildHTTPRoutesForVirtualService` (one route per `match` entry, none
//! after a catch-all: `IsCatchAllRoute`), `translateRoute` (the `port`
//! selector, then `sourceMatchHTTP`), `TranslateRouteMatch` with
//! `translateHeaderMatch`, `translateQueryParamMatch`,
//! `canBeConvertedToPresentMatch` and util.go `ConvertToEnvoyMatch`, and the
//! destinations (`applyHTTPRouteDestination`, `processDestination`,
//! `processWeightedDestination`, `GetDestinationCluster`) with their header
//! operations (`TranslateHeadersOperations`, `translateAppendHeaders`).

use std::collections::BTreeMap;

use meshwasm::config::Resource;
use meshwasm::config::virtual_service::{
    Headers, HttpMatchRequest, HttpRoute, HttpRouteDestination, StringMatch, VirtualService,
};
use serde_json::{Map, Value, json};

use super::{Ctx, TranslateError, resolve};

/// The routes of one VirtualService for the listener (route.go
/// `BuildHTTPRoutesForVirtualService` with gateway names `{mesh}`).
pub(super) fn http_routes(
    ctx: &Ctx<'_>,
    vs: &Resource<VirtualService>,
) -> Result<Vec<Value>, TranslateError> {
    let mut out = Vec::new();
    for (i, rule) in vs.spec.http.iter().enumerate() {
        let path = format!("{}.http[{i}]", vs.spec_path());
        supported(rule, &path)?;
        if rule.matches.is_empty() {
            out.push(route(ctx, vs, rule, None, &path)?);
            break;
        }
        let mut catch_all = false;
        for (j, m) in rule.matches.iter().enumerate() {
            if !selected(ctx, m) {
                continue;
            }
            let r = route(ctx, vs, rule, Some(m), &format!("{path}.match[{j}]"))?;
            catch_all = is_catch_all(&r);
            out.push(r);
            if catch_all {
                break;
            }
        }
        if catch_all {
            break;
        }
    }
    Ok(out)
}

/// Only `name`, `match`, `route` and `headers` are translated.
fn supported(rule: &HttpRoute, path: &str) -> Result<(), TranslateError> {
    let other = [
        (rule.redirect.is_some(), "redirect"),
        (rule.direct_response.is_some(), "directResponse"),
        (rule.delegate.is_some(), "delegate"),
        (rule.rewrite.is_some(), "rewrite"),
        (rule.timeout.is_some(), "timeout"),
        (rule.retries.is_some(), "retries"),
        (rule.fault.is_some(), "fault"),
        (rule.mirror.is_some() || !rule.mirrors.is_empty(), "mirror"),
        (rule.cors_policy.is_some(), "corsPolicy"),
        (rule.route.is_empty(), "route"),
    ];
    match other.iter().find(|(set, _)| *set) {
        Some((_, "route")) => Err(TranslateError::new(
            format!("{path}.route"),
            "a rule without destinations is not translated",
        )),
        Some((_, field)) => Err(TranslateError::new(
            format!("{path}.{field}"),
            "not translated (only name, match, route and headers are)",
        )),
        None => Ok(()),
    }
}

/// route.go `translateRoute`'s selectors: `port` against the listener, then
/// `sourceMatchHTTP` — with `gateways` set only the gateway names decide
/// (`mesh` for a sidecar); otherwise `sourceLabels` ⊆ the workload's labels
/// and `sourceNamespace` empty or the workload's namespace.
fn selected(ctx: &Ctx<'_>, m: &HttpMatchRequest) -> bool {
    if m.port.is_some_and(|p| p != 0 && p != ctx.listener_port) {
        return false;
    }
    if !m.gateways.is_empty() {
        return m.gateways.iter().any(|g| g == "mesh");
    }
    let w = &ctx.doc.workload;
    m.source_labels
        .iter()
        .all(|(k, v)| w.labels.get(k) == Some(v))
        && m.source_namespace
            .as_deref()
            .is_none_or(|ns| ns.is_empty() || ns == w.namespace)
}

/// route.go `IsCatchAllRoute`: prefix `/` (or regex `.*`) and nothing else.
fn is_catch_all(route: &Value) -> bool {
    let Some(m) = route.get("match") else {
        return false;
    };
    let path_all = m.get("prefix").and_then(Value::as_str) == Some("/")
        || m.pointer("/safe_regex/regex").and_then(Value::as_str) == Some(".*");
    let none = |key: &str| {
        m.get(key)
            .and_then(Value::as_array)
            .is_none_or(|a| a.is_empty())
    };
    path_all && none("headers") && none("query_parameters")
}

/// route.go `translateRoute`: one Envoy route for a rule and one of its
/// match entries (`None`: a rule without `match`).
fn route(
    ctx: &Ctx<'_>,
    vs: &Resource<VirtualService>,
    rule: &HttpRoute,
    m: Option<&HttpMatchRequest>,
    path: &str,
) -> Result<Value, TranslateError> {
    let mut name = rule.name.clone().unwrap_or_default();
    if let Some(match_name) = m.and_then(|m| m.name.as_deref()).filter(|n| !n.is_empty()) {
        name = format!("{name}.{match_name}");
    }
    let mut out = Map::new();
    out.insert("name".to_owned(), json!(name));
    out.insert("match".to_owned(), route_match(m, path)?);
    let ns = ctx.doc.namespace_of(vs);
    let ops = header_ops(rule.headers.as_ref());
    let mut action = Map::new();
    action.insert("timeout".to_owned(), json!("0s"));
    let mut req_add = ops.request_add;
    let mut req_remove = ops.request_remove;
    let mut resp_add = ops.response_add;
    let mut resp_remove = ops.response_remove;
    let mut authority = ops.authority;
    if let [dest] = rule.route.as_slice() {
        action.insert("cluster".to_owned(), json!(cluster(ctx, ns, dest)));
        let d = header_ops(dest.headers.as_ref());
        req_add.extend(d.request_add);
        req_remove.extend(d.request_remove);
        resp_add.extend(d.response_add);
        resp_remove.extend(d.response_remove);
        authority = authority.or(d.authority);
    } else {
        let clusters = weighted(ctx, ns, &rule.route);
        if clusters.is_empty() {
            return Err(TranslateError::new(
                format!("{path}.route"),
                "the weights of several destinations sum to 0 (Istio's validation refuses it)",
            ));
        }
        action.insert(
            "weighted_clusters".to_owned(),
            json!({"clusters": clusters}),
        );
    }
    if let Some(a) = authority {
        action.insert("host_rewrite_literal".to_owned(), json!(a));
    }
    out.insert("route".to_owned(), Value::Object(action));
    for (key, list) in [
        ("request_headers_to_add", req_add),
        ("response_headers_to_add", resp_add),
    ] {
        if !list.is_empty() {
            out.insert(key.to_owned(), Value::Array(list));
        }
    }
    for (key, list) in [
        ("request_headers_to_remove", req_remove),
        ("response_headers_to_remove", resp_remove),
    ] {
        if !list.is_empty() {
            out.insert(key.to_owned(), json!(list));
        }
    }
    Ok(Value::Object(out))
}

/// route.go `processWeightedDestination` for each destination of a
/// weight other than 0.
fn weighted(ctx: &Ctx<'_>, ns: &str, dests: &[HttpRouteDestination]) -> Vec<Value> {
    let mut out = Vec::new();
    for d in dests.iter().filter(|d| d.weight.unwrap_or(0) != 0) {
        let mut c = Map::new();
        c.insert("name".to_owned(), json!(cluster(ctx, ns, d)));
        c.insert("weight".to_owned(), json!(d.weight.unwrap_or(0)));
        let ops = header_ops(d.headers.as_ref());
        for (key, list) in [
            ("request_headers_to_add", ops.request_add),
            ("response_headers_to_add", ops.response_add),
        ] {
            if !list.is_empty() {
                c.insert(key.to_owned(), Value::Array(list));
            }
        }
        for (key, list) in [
            ("request_headers_to_remove", ops.request_remove),
            ("response_headers_to_remove", ops.response_remove),
        ] {
            if !list.is_empty() {
                c.insert(key.to_owned(), json!(list));
            }
        }
        if let Some(a) = ops.authority {
            c.insert("host_rewrite_literal".to_owned(), json!(a));
        }
        out.push(Value::Object(c));
    }
    out
}

/// route.go `GetDestinationCluster` and model `BuildSubsetKey`:
/// `outbound|<port>|<subset>|<FQDN>`; the port is the destination's, else
/// the registry service's (its only port), else the listener's.
fn cluster(ctx: &Ctx<'_>, ns: &str, d: &HttpRouteDestination) -> String {
    let dest = &d.destination;
    let host = resolve(&dest.host, ns, &ctx.doc.envoy.domain_suffix);
    let port = match dest.port.as_ref().map(|p| p.number).filter(|n| *n != 0) {
        Some(n) => n,
        None if ctx.services.contains(&host) => ctx.doc.envoy.default_port,
        None => ctx.listener_port,
    };
    let subset = dest.subset.as_deref().unwrap_or_default();
    format!("outbound|{port}|{subset}|{host}")
}

/// route.go `TranslateHeadersOperations`, for a route or a destination.
#[derive(Default)]
struct HeaderOps {
    request_add: Vec<Value>,
    request_remove: Vec<String>,
    response_add: Vec<Value>,
    response_remove: Vec<String>,
    authority: Option<String>,
}

fn header_ops(headers: Option<&Headers>) -> HeaderOps {
    let Some(h) = headers else {
        return HeaderOps::default();
    };
    let (req, resp) = (h.request.as_ref(), h.response.as_ref());
    let empty = BTreeMap::new();
    let (mut request_add, set_authority) = append_headers(req.map_or(&empty, |o| &o.set), false);
    let (add, add_authority) = append_headers(req.map_or(&empty, |o| &o.add), true);
    request_add.extend(add);
    let (mut response_add, _) = append_headers(resp.map_or(&empty, |o| &o.set), false);
    response_add.extend(append_headers(resp.map_or(&empty, |o| &o.add), true).0);
    let keep = |names: Option<&Vec<String>>| -> Vec<String> {
        names
            .into_iter()
            .flatten()
            .filter(|n| !is_internal(n))
            .cloned()
            .collect()
    };
    HeaderOps {
        request_add,
        request_remove: keep(req.map(|o| &o.remove)),
        response_add,
        response_remove: keep(resp.map(|o| &o.remove)),
        authority: set_authority.or(add_authority),
    }
}

/// route.go `translateAppendHeaders`: sorted by name (a `BTreeMap`),
/// `:`-names and `host` dropped, `:authority`/`host` returned apart.
fn append_headers(
    headers: &BTreeMap<String, String>,
    append: bool,
) -> (Vec<Value>, Option<String>) {
    let mut authority = None;
    let mut out = Vec::new();
    for (key, value) in headers {
        if key.eq_ignore_ascii_case(":authority") || key.eq_ignore_ascii_case("host") {
            authority = Some(value.clone());
        }
        if is_internal(key) {
            continue;
        }
        let action = if append {
            "APPEND_IF_EXISTS_OR_ADD"
        } else {
            "OVERWRITE_IF_EXISTS_OR_ADD"
        };
        out.push(json!({"header": {"key": key, "value": value}, "append_action": action}));
    }
    (out, authority)
}

/// route.go `isInternalHeader`.
fn is_internal(name: &str) -> bool {
    name.starts_with(':') || name.eq_ignore_ascii_case("host")
}

/// route.go `TranslateRouteMatch` for a sidecar (no gateway or ingress
/// semantics): header matchers sorted by name, then `:method`,
/// `:authority`, `:scheme`; the path; `case_sensitive`; query parameters.
fn route_match(m: Option<&HttpMatchRequest>, path: &str) -> Result<Value, TranslateError> {
    let Some(m) = m else {
        return Ok(json!({"prefix": "/"}));
    };
    let mut out = Map::new();
    let mut headers = Vec::new();
    for (field, map, invert) in [
        ("headers", &m.headers, false),
        ("withoutHeaders", &m.without_headers, true),
    ] {
        for (name, sm) in map {
            let hpath = format!("{path}.{field}.{name}");
            if name.starts_with("@request.auth.claims") {
                return Err(TranslateError::new(
                    hpath,
                    "JWT claim routing is for gateways only (Istio's validation)",
                ));
            }
            if sm.regex.as_deref() == Some("*") {
                return Err(TranslateError::new(
                    hpath,
                    "{regex: \"*\"} is refused by Istio's validation (SPEC.md §VirtualService)",
                ));
            }
            let mut h = matcher(name, sm, &hpath)?;
            if invert {
                h.insert("invert_match".to_owned(), json!(true));
                // `treat_missing_header_as_empty` conflicts with `present_match`.
                if !is_presence(sm) {
                    h.insert("treat_missing_header_as_empty".to_owned(), json!(true));
                }
            }
            headers.push(h);
        }
    }
    let name = |h: &Map<String, Value>| h.get("name").and_then(Value::as_str).map(str::to_owned);
    headers.sort_by_key(name);
    match &m.uri {
        Some(uri) => match string_match(uri, &format!("{path}.uri"))? {
            Some((kind, value)) => {
                let key = match kind {
                    "exact" => "path",
                    "prefix" => "prefix",
                    _ => "safe_regex",
                };
                out.insert(key.to_owned(), value);
            }
            None => {
                out.insert("prefix".to_owned(), json!("/"));
            }
        },
        None => {
            out.insert("prefix".to_owned(), json!("/"));
        }
    }
    out.insert("case_sensitive".to_owned(), json!(!m.ignore_uri_case));
    for (name, field, sm) in [
        (":method", "method", &m.method),
        (":authority", "authority", &m.authority),
        (":scheme", "scheme", &m.scheme),
    ] {
        if let Some(sm) = sm {
            headers.push(matcher(name, sm, &format!("{path}.{field}"))?);
        }
    }
    if !headers.is_empty() {
        out.insert(
            "headers".to_owned(),
            Value::Array(headers.into_iter().map(Value::Object).collect()),
        );
    }
    let mut query = Vec::new();
    for (name, sm) in &m.query_params {
        let qpath = format!("{path}.queryParams.{name}");
        if sm.regex.as_deref() == Some("*") {
            return Err(TranslateError::new(
                qpath,
                "{regex: \"*\"} is refused by Istio's validation (SPEC.md §VirtualService)",
            ));
        }
        query.push(Value::Object(matcher(name, sm, &qpath)?));
    }
    if !query.is_empty() {
        out.insert("query_parameters".to_owned(), Value::Array(query));
    }
    Ok(Value::Object(out))
}

/// A header or query-parameter matcher: `present_match` for `{}`, else
/// `string_match` (route.go `translateHeaderMatch`,
/// `translateQueryParamMatch`).
fn matcher(name: &str, sm: &StringMatch, path: &str) -> Result<Map<String, Value>, TranslateError> {
    let mut out = Map::new();
    out.insert("name".to_owned(), json!(name));
    match string_match(sm, path)? {
        Some(_) if is_presence(sm) => {
            out.insert("present_match".to_owned(), json!(true));
        }
        Some((kind, value)) => {
            let mut s = Map::new();
            s.insert(kind.to_owned(), value);
            out.insert("string_match".to_owned(), Value::Object(s));
        }
        None => {
            out.insert("present_match".to_owned(), json!(true));
        }
    }
    Ok(out)
}

/// route.go `canBeConvertedToPresentMatch`: no match kind, or regex `*`.
fn is_presence(sm: &StringMatch) -> bool {
    (sm.exact.is_none() && sm.prefix.is_none() && sm.regex.is_none())
        || sm.regex.as_deref() == Some("*")
}

/// util.go `ConvertToEnvoyMatch`: the kind (`exact`, `prefix`,
/// `safe_regex`) and its Envoy value, or `None` for `{}`.
fn string_match(
    sm: &StringMatch,
    path: &str,
) -> Result<Option<(&'static str, Value)>, TranslateError> {
    let set = [&sm.exact, &sm.prefix, &sm.regex]
        .iter()
        .filter(|k| k.is_some())
        .count();
    if set > 1 {
        return Err(TranslateError::new(
            path,
            "a StringMatch sets one of exact, prefix, regex",
        ));
    }
    Ok(if let Some(v) = &sm.exact {
        Some(("exact", json!(v)))
    } else if let Some(v) = &sm.prefix {
        Some(("prefix", json!(v)))
    } else {
        sm.regex
            .as_ref()
            .map(|v| ("safe_regex", json!({"regex": v})))
    })
}
