//! Istio's checks of one `http[]` rule (istio/istio
//! pkg/config/validation/virtualservice.go `validateHTTPRoute`,
//! `validateHTTPRouteConflict`, `validateHTTPRouteMatchRequest`,
//! `validateAuthorityRewrite`; validation.go `validateCORSPolicy`,
//! `validateHTTPRedirect`, `validateHTTPDirectResponse`,
//! `validateHTTPMirrors`, `validateHTTPRewrite`,
//! `validateHTTPRouteDestinations`; agent/validation.go
//! `ValidateHTTPRetry`), plus the CRD's oneofs.

use super::virtual_service::{destination, gateway_names};
use super::{
    duration, header_value, is_dns1123_label, is_istio_header_name, is_jwt_claim_route, labels,
    opt_duration, port, set,
};
use crate::config::ConfigError;
use crate::config::virtual_service::{
    CorsPolicy, Headers, HttpDirectResponse, HttpMatchRequest, HttpRedirect, HttpRetry, HttpRoute,
    HttpRouteDestination, StringMatch,
};

/// A [`ConfigError`] (short for the many checks here).
pub(crate) fn err(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::new(path, message)
}

/// Validates rule `r` at `path`; `delegate`: the VirtualService has no
/// hosts.
pub fn validate(
    r: &HttpRoute,
    delegate: bool,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    conflict(r, delegate, path)?;
    for (j, m) in r.matches.iter().enumerate() {
        match_request(m, &format!("{path}.match[{j}]"))?;
    }
    headers(r.headers.as_ref(), &format!("{path}.headers"))?;
    if let Some(c) = &r.cors_policy {
        cors(c, &format!("{path}.corsPolicy"))?;
    }
    if let Some(f) = &r.fault {
        // The fault filter's compile is Istio's validateHTTPFaultInjection.
        crate::fault::Fault::compile(f, &format!("{path}.fault"), &mut Vec::new())?;
    }
    if let Some(p) = r.mirror_percent {
        if p > 100 {
            return Err(err(
                format!("{path}.mirrorPercent"),
                format!("mirror_percent must have a max value of 100 (it has {p})"),
            ));
        }
        warnings.push(format!(
            "{path}.mirrorPercent: using deprecated setting \"mirrorPercent\", use \
             \"mirrorPercentage\" instead"
        ));
    }
    if let Some(p) = r.mirror_percentage {
        mirror_percentage(p.value, &format!("{path}.mirrorPercentage"))?;
    }
    if let Some(m) = &r.mirror {
        destination(m, &format!("{path}.mirror"))?;
    }
    for (k, m) in r.mirrors.iter().enumerate() {
        let at = format!("{path}.mirrors[{k}]");
        destination(&m.destination, &format!("{at}.destination"))?;
        if let Some(p) = m.percentage {
            mirror_percentage(p.value, &format!("{at}.percentage"))?;
        }
    }
    if let Some(red) = &r.redirect {
        redirect(red, &r.matches, &format!("{path}.redirect"))?;
    }
    if let Some(d) = &r.direct_response {
        direct_response(d, &format!("{path}.directResponse"), warnings)?;
    }
    if let Some(retries) = &r.retries {
        retry(retries, &format!("{path}.retries"))?;
    }
    rewrite(r, path)?;
    let rpath = format!("{path}.route");
    let mut total: i64 = 0;
    for (k, d) in r.route.iter().enumerate() {
        total += route_destination(d, &format!("{rpath}[{k}]"))?;
    }
    if r.route.len() > 1 && total == 0 {
        return Err(err(rpath, "total destination weight = 0"));
    }
    opt_duration(r.timeout, &format!("{path}.timeout"))
}

/// `validateHTTPRouteConflict`: one action; a root rule (with `delegate`)
/// has no `route`/`redirect`; `mirror` and `mirrors` exclusive.
fn conflict(r: &HttpRoute, delegate: bool, path: &str) -> Result<(), ConfigError> {
    let has_route = !r.route.is_empty();
    if r.delegate.is_some() && !delegate {
        for (set, what) in [(r.redirect.is_some(), "redirect"), (has_route, "route")] {
            if set {
                return Err(err(
                    format!("{path}.{what}"),
                    format!("root HTTP route must not specify {what}"),
                ));
            }
        }
        return Ok(());
    }
    if delegate && r.delegate.is_some() {
        return Err(err(
            format!("{path}.delegate"),
            "delegate HTTP route cannot contain delegate",
        ));
    }
    let action = if r.redirect.is_some() {
        "redirect"
    } else if r.direct_response.is_some() {
        "directResponse"
    } else if has_route {
        ""
    } else {
        return Err(err(
            format!("{path}.route"),
            "HTTP route, redirect or direct_response is required",
        ));
    };
    if !action.is_empty() {
        for (set, other) in [
            (has_route, "route"),
            (r.fault.is_some(), "fault"),
            (r.rewrite.is_some(), "rewrite"),
            (
                action == "redirect" && r.direct_response.is_some(),
                "directResponse",
            ),
        ] {
            if set {
                return Err(err(
                    path,
                    format!("HTTP route cannot contain both {action} and {other}"),
                ));
            }
        }
    }
    if r.mirror.is_some() && !r.mirrors.is_empty() {
        return Err(err(
            path,
            "HTTP route cannot contain both mirror and mirrors",
        ));
    }
    Ok(())
}

/// What a StringMatch must hold: at most one kind (the CRD's oneof), and
/// for `full`, no empty `prefix`; a `regex` is never empty and compiles.
pub(super) fn string_match(sm: &StringMatch, path: &str, full: bool) -> Result<(), ConfigError> {
    let kinds = [&sm.exact, &sm.prefix, &sm.regex];
    if kinds.iter().filter(|k| k.is_some()).count() > 1 {
        return Err(err(path, "only one of exact, prefix or regex may be set"));
    }
    if full && sm.prefix.as_deref() == Some("") {
        return Err(err(
            format!("{path}.prefix"),
            "prefix string match should not be empty",
        ));
    }
    match &sm.regex {
        Some(re) => crate::matching::full_match_regex(re, &format!("{path}.regex")).map(|_| ()),
        None => Ok(()),
    }
}

/// `validateHTTPRouteMatchRequest`.
fn match_request(m: &HttpMatchRequest, path: &str) -> Result<(), ConfigError> {
    for (field, map) in [
        ("headers", &m.headers),
        ("withoutHeaders", &m.without_headers),
    ] {
        for (name, sm) in map {
            let at = format!("{path}.{field}.{name}");
            let pseudo = [":method", ":scheme", ":authority", ":path", ":status"];
            if name.is_empty() {
                return Err(err(at, "header name cannot be empty"));
            }
            if !is_jwt_claim_route(name)
                && !pseudo.contains(&name.as_str())
                && !is_istio_header_name(name)
            {
                return Err(err(
                    at,
                    format!("header name {name} is not a valid header name"),
                ));
            }
            // `withoutHeaders` regex "*" is presence, not a regex.
            if field == "headers" || sm.regex.as_deref() != Some("*") {
                string_match(sm, &at, true)?;
            }
        }
    }
    if let Some(uri) = &m.uri {
        string_match(uri, &format!("{path}.uri"), false)?;
    }
    for (field, sm) in [
        ("scheme", &m.scheme),
        ("method", &m.method),
        ("authority", &m.authority),
    ] {
        if let Some(sm) = sm {
            string_match(sm, &format!("{path}.{field}"), true)?;
        }
    }
    for (name, sm) in &m.query_params {
        string_match(sm, &format!("{path}.queryParams.{name}"), true)?;
    }
    if let Some(p) = m.port.filter(|p| *p != 0) {
        port(i64::from(p), &format!("{path}.port"))?;
    }
    labels(&m.source_labels, &format!("{path}.sourceLabels"))?;
    gateway_names(&m.gateways, &format!("{path}.gateways"), &mut Vec::new())?;
    if let Some(ns) = set(&m.source_namespace)
        && !is_dns1123_label(ns)
    {
        return Err(err(
            format!("{path}.sourceNamespace"),
            format!("sourceNamespace match {ns} is invalid"),
        ));
    }
    Ok(())
}

/// The header operations of a rule or destination
/// (`ValidateHTTPHeaderWithAuthorityOperationName`,
/// `ValidateHTTPHeaderOperationName`, `ValidateHTTPHeaderValue`): request
/// `set`/`add` may name `:authority`/`host`, nothing else may name a
/// `:`-header or `host`.
pub(crate) fn headers(h: Option<&Headers>, path: &str) -> Result<(), ConfigError> {
    let Some(h) = h else { return Ok(()) };
    for (side, ops) in [("request", &h.request), ("response", &h.response)] {
        let Some(ops) = ops else { continue };
        let at = format!("{path}.{side}");
        let authority_ok = side == "request";
        for (verb, map) in [("set", &ops.set), ("add", &ops.add)] {
            for (name, value) in map {
                let npath = format!("{at}.{verb}.{name}");
                header_name(name, authority_ok, &npath)?;
                header_value(value, &npath)?;
            }
        }
        for (i, name) in ops.remove.iter().enumerate() {
            header_name(name, false, &format!("{at}.remove[{i}]"))?;
        }
    }
    Ok(())
}

fn header_name(name: &str, authority_ok: bool, path: &str) -> Result<(), ConfigError> {
    let authority = name.eq_ignore_ascii_case(":authority") || name.eq_ignore_ascii_case("host");
    if name.is_empty() {
        return Err(err(path, "header name cannot be empty"));
    }
    if authority && authority_ok {
        return Ok(());
    }
    if name.eq_ignore_ascii_case("host") {
        return Err(err(
            path,
            format!("invalid header {name:?}: cannot set Host header"),
        ));
    }
    if name.starts_with(':') {
        return Err(err(
            path,
            format!("invalid header {name:?}: header cannot have \":\" prefix"),
        ));
    }
    Ok(())
}

/// `validateCORSPolicy` (+ the CRD's `unmatchedPreflights` enum).
fn cors(c: &CorsPolicy, path: &str) -> Result<(), ConfigError> {
    const METHODS: &[&str] = &[
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE", "*",
    ];
    for (i, o) in c.allow_origins.iter().enumerate() {
        let at = format!("{path}.allowOrigins[{i}]");
        let value = o.exact.as_ref().or(o.prefix.as_ref()).or(o.regex.as_ref());
        if value.is_none_or(String::is_empty) {
            return Err(err(
                at,
                "'' is not a valid match type for CORS allow origins",
            ));
        }
        string_match(o, &at, false)?;
    }
    for (i, m) in c.allow_methods.iter().enumerate() {
        if !METHODS.contains(&m.as_str()) {
            return Err(err(
                format!("{path}.allowMethods[{i}]"),
                format!("{m:?} is not a supported HTTP method"),
            ));
        }
    }
    for (field, list) in [
        ("allowHeaders", &c.allow_headers),
        ("exposeHeaders", &c.expose_headers),
    ] {
        for (i, h) in list.iter().enumerate() {
            let at = format!("{path}.{field}[{i}]");
            if h.is_empty() {
                return Err(err(at, "header name cannot be empty"));
            }
            if h != "*" && !is_istio_header_name(h) {
                return Err(err(
                    at,
                    format!("header name {h} is not a valid header name"),
                ));
            }
        }
    }
    if let Some(age) = c.max_age {
        let d = duration(age, &format!("{path}.maxAge"))?;
        if d.subsec_nanos() > 0 {
            return Err(err(
                format!("{path}.maxAge"),
                "max_age duration is accurate only to seconds precision",
            ));
        }
    }
    match c.unmatched_preflights.as_deref() {
        None | Some("UNSPECIFIED" | "FORWARD" | "IGNORE") => Ok(()),
        Some(other) => Err(err(
            format!("{path}.unmatchedPreflights"),
            format!("{other:?} is not one of UNSPECIFIED, FORWARD, IGNORE"),
        )),
    }
}

fn mirror_percentage(v: f64, path: &str) -> Result<(), ConfigError> {
    if v > 100.0 {
        return Err(err(
            path,
            format!("mirror percentage must have a max value of 100 (it has {v})"),
        ));
    }
    if v < 0.0 {
        return Err(err(
            path,
            format!("mirror percentage must have a min value of 0 (it has {v})"),
        ));
    }
    Ok(())
}

/// `validateHTTPRedirect` (proto3: empty strings are unset); returns the
/// status, 301 for `redirectCode` 0 or unset.
pub fn redirect(
    r: &HttpRedirect,
    matches: &[HttpMatchRequest],
    path: &str,
) -> Result<u32, ConfigError> {
    let (uri, prefix_rewrite) = (set(&r.uri), set(&r.prefix_rewrite));
    if uri.is_some() && prefix_rewrite.is_some() {
        return Err(err(
            path,
            "redirect may only specify one of uri or prefixRewrite",
        ));
    }
    let non_prefix = |m: &HttpMatchRequest| {
        m.uri
            .as_ref()
            .is_some_and(|u| u.prefix.is_none() || u.exact.is_some() || u.regex.is_some())
    };
    if prefix_rewrite.is_some() && matches.iter().any(non_prefix) {
        return Err(err(
            format!("{path}.prefixRewrite"),
            "redirect prefixRewrite requires all URI matches to use prefix match type",
        ));
    }
    if r.port.is_some() && r.derive_port.is_some() {
        return Err(err(path, "only one of port and derivePort may be set"));
    }
    // A set oneof `port`/`derivePort` counts even at its zero value.
    let port_set = r.port.is_some() || r.derive_port.is_some();
    let nothing = [uri, prefix_rewrite, set(&r.authority), set(&r.scheme)]
        .iter()
        .all(Option::is_none);
    if nothing && !port_set {
        return Err(err(
            path,
            "redirect must specify uri, prefixRewrite, authority, scheme, port or derivePort",
        ));
    }
    let status = r.redirect_code.filter(|c| *c != 0).unwrap_or(301);
    if !(300..=399).contains(&status) {
        return Err(err(
            format!("{path}.redirectCode"),
            format!("{status} is not a valid redirect code, must be 3xx"),
        ));
    }
    if set(&r.scheme).is_some_and(|s| s != "http" && s != "https") {
        return Err(err(
            format!("{path}.scheme"),
            "invalid redirect scheme, must be \"http\" or \"https\"",
        ));
    }
    if let Some(p) = r.port.filter(|p| *p > 0) {
        port(i64::from(p), &format!("{path}.port"))?;
    }
    match r.derive_port.as_deref() {
        None | Some("FROM_PROTOCOL_DEFAULT" | "FROM_REQUEST_PORT") => Ok(status),
        Some(other) => Err(err(
            format!("{path}.derivePort"),
            format!("{other:?} is not a derivePort value"),
        )),
    }
}

/// `validateHTTPDirectResponse`: Istio's status range (200..=600), a body
/// of at most 1 MiB (warned above 100 KiB), valid base64 `bytes`.
fn direct_response(
    d: &HttpDirectResponse,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let size = match d.body.as_ref().map(|b| (&b.string, &b.bytes)) {
        None | Some((None, None)) => 0,
        Some((Some(s), None)) => s.len(),
        Some((None, Some(b))) => super::base64_decode(b)
            .ok_or_else(|| err(format!("{path}.body.bytes"), "not valid base64"))?
            .len(),
        Some((Some(_), Some(_))) => {
            return Err(err(
                format!("{path}.body"),
                "string and bytes are exclusive",
            ));
        }
    };
    if size > 1024 * 1024 {
        return Err(err(
            format!("{path}.body"),
            "large direct_responses may impact control plane performance, must be less than 1MB",
        ));
    }
    if size > 100 * 1024 {
        warnings.push(format!(
            "{path}.body: large direct_responses may impact control plane performance"
        ));
    }
    if !(200..=600).contains(&d.status) {
        return Err(err(
            format!("{path}.status"),
            format!("HTTP status {} is not in range 200-599", d.status),
        ));
    }
    Ok(())
}

/// `ValidateHTTPRetry`.
pub fn retry(r: &HttpRetry, path: &str) -> Result<(), ConfigError> {
    if r.attempts < 0 {
        return Err(err(
            format!("{path}.attempts"),
            "attempts cannot be negative",
        ));
    }
    let retry_on = set(&r.retry_on);
    if r.attempts == 0
        && (r.per_try_timeout.is_some()
            || retry_on.is_some()
            || r.retry_remote_localities.is_some())
    {
        return Err(err(
            path,
            "http retry policy configured when attempts are set to 0 (disabled)",
        ));
    }
    opt_duration(r.per_try_timeout, &format!("{path}.perTryTimeout"))?;
    for token in retry_on
        .unwrap_or_default()
        .split(',')
        .filter(|_| retry_on.is_some())
    {
        if !crate::route::actions::is_retry_on(token) {
            return Err(err(
                format!("{path}.retryOn"),
                format!("{token:?} is not a valid retryOn policy"),
            ));
        }
    }
    opt_duration(r.backoff, &format!("{path}.backoff"))
}

/// `validateHTTPRewrite` and `validateAuthorityRewrite`: one of `uri`,
/// `uriRegexRewrite`, `authority`; `:authority` set in one place only.
fn rewrite(r: &HttpRoute, path: &str) -> Result<(), ConfigError> {
    let mut authority = None;
    if let Some(rw) = &r.rewrite {
        let at = format!("{path}.rewrite");
        if set(&rw.uri).is_some() && rw.uri_regex_rewrite.is_some() {
            return Err(err(
                at,
                "rewrite may only contain one of URI or UriRegexRewrite",
            ));
        }
        if set(&rw.uri).is_none() && rw.uri_regex_rewrite.is_none() && set(&rw.authority).is_none()
        {
            return Err(err(
                at,
                "rewrite must specify at least one of URI, UriRegexRewrite, or authority",
            ));
        }
        if let Some(re) = &rw.uri_regex_rewrite {
            let rpath = format!("{at}.uriRegexRewrite");
            if re.pattern.is_empty() || re.rewrite.is_empty() {
                return Err(err(
                    rpath,
                    "UriRegexRewrite requires both Rewrite and Match fields to be specified",
                ));
            }
            crate::matching::full_match_regex(&re.pattern, &format!("{rpath}.match"))?;
        }
        authority = set(&rw.authority);
    }
    let request = r.headers.as_ref().and_then(|h| h.request.as_ref());
    for (verb, map) in request
        .iter()
        .flat_map(|o| [("set", &o.set), ("add", &o.add)])
    {
        for (k, v) in map {
            if !k.eq_ignore_ascii_case(":authority") && !k.eq_ignore_ascii_case("host") {
                continue;
            }
            if let Some(have) = authority {
                return Err(err(
                    format!("{path}.headers.request.{verb}.{k}"),
                    format!(
                        "authority header cannot be set multiple times: have {have:?}, \
                         attempting to set {v:?}"
                    ),
                ));
            }
            authority = Some(v.as_str()).filter(|v| !v.is_empty());
        }
    }
    Ok(())
}

/// `validateHTTPRouteDestinations` for one destination; returns its weight.
fn route_destination(d: &HttpRouteDestination, path: &str) -> Result<i64, ConfigError> {
    headers(d.headers.as_ref(), &format!("{path}.headers"))?;
    destination(&d.destination, &format!("{path}.destination"))?;
    let w = d.weight.unwrap_or(0);
    weight(w, &format!("{path}.weight"))?;
    Ok(w)
}

/// `validateWeight` (the CRD's int32 too).
pub(super) fn weight(w: i64, path: &str) -> Result<(), ConfigError> {
    if w < 0 {
        return Err(err(path, format!("weight {w} < 0")));
    }
    if w > i64::from(i32::MAX) {
        return Err(err(path, format!("weight {w} is out of the int32 range")));
    }
    Ok(())
}
