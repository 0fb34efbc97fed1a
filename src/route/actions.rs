//! Route actions compiled to what Envoy understands from a filter:
//! `timeout` and `retries` as the router's `x-envoy-*` request headers
//! (SPEC.md §timeouts and retries 7–8: a filter that *sets* them is obeyed),
//! `headers` as header operations, `rewrite`, `redirect` and
//! `directResponse` (istio/istio pilot/pkg/networking/core/route/route.go,
//! retry/retry.go; istio validation `ValidateHTTPRetry`).

use crate::config::ConfigError;
use crate::config::duration::IstioDuration;
use crate::config::header_format::Formatted;
use crate::config::validation::set;
use crate::config::virtual_service::{
    HeaderOperations, HttpDirectResponse, HttpMatchRequest, HttpRedirect, HttpRetry, HttpRoute,
};
use crate::http::RequestView;
use crate::verdict::HeaderOp;

/// Global timeout of the request, all attempts (`0` = none).
pub const TIMEOUT_MS: &str = "x-envoy-upstream-rq-timeout-ms";
/// Timeout of one attempt.
pub const PER_TRY_TIMEOUT_MS: &str = "x-envoy-upstream-rq-per-try-timeout-ms";
/// Number of retries.
pub const MAX_RETRIES: &str = "x-envoy-max-retries";
/// HTTP retry conditions.
pub const RETRY_ON: &str = "x-envoy-retry-on";
/// gRPC retry conditions.
pub const RETRY_GRPC_ON: &str = "x-envoy-retry-grpc-on";
/// Status codes for `retriable-status-codes`.
pub const RETRIABLE_STATUS_CODES: &str = "x-envoy-retriable-status-codes";

/// Every router header the route filter sets; client-sent copies are removed.
pub const ROUTER_HEADERS: &[&str] = &[
    TIMEOUT_MS,
    PER_TRY_TIMEOUT_MS,
    MAX_RETRIES,
    RETRY_ON,
    RETRY_GRPC_ON,
    RETRIABLE_STATUS_CODES,
];

/// Istio's retry policy when a route has no `retries` (retry.go `DefaultPolicy`).
const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";
const DEFAULT_ATTEMPTS: i64 = 2;

const HTTP_RETRY_ON: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "envoy-ratelimited",
    "http3-post-connect-failure",
];
const GRPC_RETRY_ON: &[&str] = &[
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

/// Whether `token` is a `retryOn` condition Istio accepts: an Envoy HTTP or
/// gRPC retry condition, or an HTTP status code (agent/validation.go
/// `ValidateHTTPRetry`).
pub(crate) fn is_retry_on(token: &str) -> bool {
    HTTP_RETRY_ON.contains(&token)
        || GRPC_RETRY_ON.contains(&token)
        || token.parse::<u16>().is_ok_and(has_status_text)
}

/// Whether Go's `net/http.StatusText` knows `code`: the status codes
/// `ValidateHTTPRetry` takes in `retryOn`.
fn has_status_text(code: u16) -> bool {
    matches!(code,
        100..=103 | 200..=208 | 226 | 300..=305 | 307 | 308 | 400..=418 | 421..=426
        | 428 | 429 | 431 | 451 | 500..=508 | 510 | 511)
}

/// Istio's `ValidateDuration` ([`crate::config::validation::duration`]),
/// in milliseconds.
pub(crate) fn millis(d: IstioDuration, path: &str) -> Result<u128, ConfigError> {
    crate::config::validation::duration(d, path).map(|d| d.as_millis())
}

/// The router headers of a route's `timeout` and `retries`.
pub(crate) fn router_ops(r: &HttpRoute, path: &str) -> Result<Vec<HeaderOp>, ConfigError> {
    let set = |n: &str, v: String| HeaderOp::Set(n.to_owned(), v);
    // No timeout ⇒ Istio sets 0s (disabled), overriding Envoy's 15 s default.
    let timeout = r
        .timeout
        .map(|t| millis(t, &format!("{path}.timeout")))
        .transpose()?
        .unwrap_or(0);
    let mut ops = vec![set(TIMEOUT_MS, timeout.to_string())];
    let default = HttpRetry {
        attempts: DEFAULT_ATTEMPTS,
        ..HttpRetry::default()
    };
    let retry = r.retries.as_ref().unwrap_or(&default);
    let rpath = format!("{path}.retries");
    // Istio's ValidateHTTPRetry (also run when the document is parsed).
    crate::config::validation::http_route::retry(retry, &rpath)?;
    if retry.attempts == 0 {
        ops.push(set(MAX_RETRIES, "0".into()));
        return Ok(ops);
    }
    ops.push(set(MAX_RETRIES, retry.attempts.to_string()));
    let retry_on = retry
        .retry_on
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_RETRY_ON);
    let (mut http, mut grpc, mut codes) = (Vec::new(), Vec::new(), Vec::new());
    for token in retry_on.split(',') {
        if HTTP_RETRY_ON.contains(&token) {
            http.push(token);
        } else if GRPC_RETRY_ON.contains(&token) {
            grpc.push(token);
        } else if is_retry_on(token) {
            codes.push(token);
        }
    }
    if !codes.is_empty() && !http.contains(&"retriable-status-codes") {
        http.push("retriable-status-codes");
    }
    for (name, list) in [
        (RETRY_ON, &http),
        (RETRY_GRPC_ON, &grpc),
        (RETRIABLE_STATUS_CODES, &codes),
    ] {
        if !list.is_empty() {
            ops.push(set(name, list.join(",")));
        }
    }
    if let Some(t) = retry.per_try_timeout {
        ops.push(set(
            PER_TRY_TIMEOUT_MS,
            millis(t, &format!("{rpath}.perTryTimeout"))?.to_string(),
        ));
    }
    Ok(ops)
}

/// A request header change whose value may be computed per request
/// (Envoy's command operators, [`Formatted`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReqOp {
    /// A change known at configure time.
    Static(HeaderOp),
    /// Set a header to a value computed from the request.
    Set(String, Formatted),
    /// Append a value computed from the request.
    Add(String, Formatted),
}

impl ReqOp {
    /// The change for `req`; `None` when the value comes out empty (Envoy
    /// drops a header whose value is empty: `keep_empty_value` is false).
    pub fn expand(&self, req: &(impl RequestView + ?Sized)) -> Option<HeaderOp> {
        let (name, f, set) = match self {
            ReqOp::Static(op) => return Some(op.clone()),
            ReqOp::Set(n, f) => (n, f, true),
            ReqOp::Add(n, f) => (n, f, false),
        };
        let v = f.expand(req);
        match (v.is_empty(), set) {
            (true, _) => None,
            (false, true) => Some(HeaderOp::Set(name.clone(), v)),
            (false, false) => Some(HeaderOp::Add(name.clone(), v)),
        }
    }
}

/// `headers.request|response` → operations: remove, then set, then add
/// (Istio `translateAppendHeaders`); `host`/`:authority` mean `:authority`
/// (Istio's validation refused every other `:`-name). Values are Envoy
/// header formats: `%%` is `%`, operators are evaluated per request on the
/// request side (`request`); on the response side only values known at
/// configure time are taken (the response stage has no request to read).
/// An empty value drops the change, as Envoy does.
pub(crate) fn header_ops(
    h: Option<&HeaderOperations>,
    path: &str,
    hostname: Option<&str>,
    request: bool,
) -> Result<Vec<ReqOp>, ConfigError> {
    let Some(h) = h else { return Ok(Vec::new()) };
    let name = |n: &str, at: &str| -> Result<String, ConfigError> {
        let lower = n.to_ascii_lowercase();
        if lower == "host" || lower == ":authority" {
            return Ok(":authority".into());
        }
        if !crate::http::is_header_name(&lower) {
            return Err(ConfigError::new(
                at,
                format!("{n:?} is not a valid header name"),
            ));
        }
        Ok(lower)
    };
    let mut ops = Vec::new();
    for (i, n) in h.remove.iter().enumerate() {
        ops.push(ReqOp::Static(HeaderOp::Remove(name(
            n,
            &format!("{path}.remove[{i}]"),
        )?)));
    }
    for (verb, map) in [("set", &h.set), ("add", &h.add)] {
        for (n, v) in map {
            let at = format!("{path}.{verb}.{n}");
            let n = name(n, &at)?;
            let f = Formatted::compile(v, hostname)
                .map_err(|why| ConfigError::new(&at, format!("header value {v:?}: {why}")))?;
            let op = match (f, verb) {
                (Formatted::Literal(v), _) if v.is_empty() => continue,
                (Formatted::Literal(v), "set") => ReqOp::Static(HeaderOp::Set(n, v)),
                (Formatted::Literal(v), _) => ReqOp::Static(HeaderOp::Add(n, v)),
                (Formatted::Dynamic(_), _) if !request => {
                    return Err(ConfigError::new(
                        at,
                        format!(
                            "header value {v:?}: command operators that read the request are \
                             not supported in response headers by meshwasm (%% and, with \
                             envoy.hostname, %HOSTNAME% are)"
                        ),
                    ));
                }
                (f, "set") => ReqOp::Set(n, f),
                (f, _) => ReqOp::Add(n, f),
            };
            ops.push(op);
        }
    }
    Ok(ops)
}

/// The response-side changes of [`header_ops`] (`request: false`), which
/// are all static.
pub(crate) fn static_ops(ops: Vec<ReqOp>) -> Vec<HeaderOp> {
    ops.into_iter()
        .filter_map(|op| match op {
            ReqOp::Static(op) => Some(op),
            _ => None,
        })
        .collect()
}

/// The static changes up to the first computed one (borrowed per request)
/// and the rest, in order (evaluated per request).
pub(crate) fn split_dynamic(ops: Vec<ReqOp>) -> (Vec<HeaderOp>, Vec<ReqOp>) {
    let first = ops
        .iter()
        .position(|op| !matches!(op, ReqOp::Static(_)))
        .unwrap_or(ops.len());
    let mut ops = ops;
    let tail = ops.split_off(first);
    (static_ops(ops), tail)
}

/// A compiled `redirect` (istio/istio pkg/config/validation/validation.go
/// `validateHTTPRedirect`; pilot/pkg/networking/core/route/route.go
/// `ApplyRedirect`; Envoy `Http::Utility::newUri`). Empty strings are
/// proto3's "unset": `{uri: t, authority: ""}` keeps the request's host.
#[derive(Debug, Clone)]
pub struct Redirect {
    /// Status (301 unless `redirectCode`).
    pub status: u32,
    uri: Option<String>,
    prefix_rewrite: Option<String>,
    authority: Option<String>,
    scheme: Option<String>,
    port: Option<PortRule>,
}

#[derive(Debug, Clone)]
enum PortRule {
    Fixed(u32),
    FromRequest,
}

/// The 3xx codes Envoy's `RedirectAction.response_code` can send.
const ENVOY_REDIRECT_CODES: &[u32] = &[301, 302, 303, 307, 308];

impl Redirect {
    /// Validates and compiles `r`, the redirect of a rule whose match
    /// entries are `matches`.
    pub(crate) fn compile(
        r: &HttpRedirect,
        matches: &[HttpMatchRequest],
        path: &str,
    ) -> Result<Redirect, ConfigError> {
        // Istio's validateHTTPRedirect (run on every VirtualService when the
        // document is parsed; again here for a caller that did not).
        let status = crate::config::validation::http_route::redirect(r, matches, path)?;
        let (uri, prefix_rewrite) = (set(&r.uri), set(&r.prefix_rewrite));
        let (authority, scheme) = (set(&r.authority), set(&r.scheme));
        if !ENVOY_REDIRECT_CODES.contains(&status) {
            // Istio accepts any 3xx, then drops the route's action
            // (`ApplyRedirect`: "Redirect Code … is not yet supported").
            return Err(ConfigError::new(
                format!("{path}.redirectCode"),
                format!("{status} cannot be sent by Envoy's redirect (301, 302, 303, 307, 308)"),
            ));
        }
        let port = match (r.port, r.derive_port.as_deref()) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(path, "port and derivePort are exclusive"));
            }
            (Some(p), None) => {
                // Istio leaves out the scheme's own port (`ApplyRedirect`);
                // Envoy's `port_redirect: 0` changes nothing.
                let own = match scheme.unwrap_or("http") {
                    "https" => 443,
                    _ => 80,
                };
                (p != 0 && p != own).then_some(PortRule::Fixed(p))
            }
            (None, Some("FROM_REQUEST_PORT")) => Some(PortRule::FromRequest),
            (None, Some("FROM_PROTOCOL_DEFAULT")) | (None, None) => None,
            (None, Some(other)) => {
                return Err(ConfigError::new(
                    format!("{path}.derivePort"),
                    format!("{other:?} is not a derivePort value"),
                ));
            }
        };
        Ok(Redirect {
            status,
            uri: uri.map(str::to_owned),
            prefix_rewrite: prefix_rewrite.map(str::to_owned),
            authority: authority.map(str::to_owned),
            scheme: scheme.map(str::to_owned),
            port,
        })
    }

    /// The `location` of the redirect for a request; `prefix` is what the
    /// matched entry's `uri.prefix` covers (`/` without a uri match), which
    /// `prefixRewrite` replaces.
    pub fn location(
        &self,
        scheme: &[u8],
        authority: &[u8],
        path: &[u8],
        prefix: Option<&str>,
    ) -> String {
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let scheme = self.scheme.clone().unwrap_or_else(|| lossy(scheme));
        let (req_host, req_port) = split_port(authority);
        let host = self.authority.clone().unwrap_or_else(|| lossy(req_host));
        let port = match &self.port {
            Some(PortRule::Fixed(p)) => Some(p.to_string()),
            Some(PortRule::FromRequest) => req_port.map(lossy),
            None if self.authority.is_none() => req_port.map(lossy),
            None => None,
        };
        let (req_path, query) = match path.iter().position(|&b| b == b'?') {
            Some(q) => (
                path.get(..q).unwrap_or(path),
                path.get(q..).unwrap_or_default(),
            ),
            None => (path, &b""[..]),
        };
        let mut new_path = match (&self.uri, &self.prefix_rewrite) {
            (Some(uri), _) if uri.contains('?') => uri.clone(),
            (Some(uri), _) => format!("{uri}{}", lossy(query)),
            (None, Some(to)) => {
                // Envoy replaces the configured prefix (case folded under
                // ignoreUriCase) and keeps the rest, query included.
                let cut = prefix
                    .map(str::len)
                    .filter(|n| path.get(..*n).is_some())
                    .unwrap_or(0);
                format!("{to}{}", lossy(path.get(cut..).unwrap_or_default()))
            }
            (None, None) => format!("{}{}", lossy(req_path), lossy(query)),
        };
        // Envoy's `newUri`: the path always starts with `/`.
        if !new_path.starts_with('/') {
            new_path.insert(0, '/');
        }
        match port {
            Some(p) => format!("{scheme}://{host}:{p}{new_path}"),
            None => format!("{scheme}://{host}{new_path}"),
        }
    }
}

fn split_port(authority: &[u8]) -> (&[u8], Option<&[u8]>) {
    let host = super::hosts::strip_port(authority);
    let port = authority.get(host.len() + 1..).filter(|p| !p.is_empty());
    (host, port)
}

/// A compiled `directResponse`.
#[derive(Debug, Clone)]
pub struct DirectResponse {
    /// Status.
    pub status: u32,
    /// Body.
    pub body: Vec<u8>,
}

impl DirectResponse {
    pub(crate) fn compile(
        d: &HttpDirectResponse,
        path: &str,
    ) -> Result<DirectResponse, ConfigError> {
        if !(200..=599).contains(&d.status) {
            return Err(ConfigError::new(
                format!("{path}.status"),
                "status must be in [200, 599]",
            ));
        }
        let body = match d.body.as_ref().map(|b| (&b.string, &b.bytes)) {
            None | Some((None, None)) => Vec::new(),
            Some((Some(s), None)) => s.clone().into_bytes(),
            Some((None, Some(b))) => {
                crate::config::validation::base64_decode(b).ok_or_else(|| {
                    ConfigError::new(format!("{path}.body.bytes"), "not valid base64")
                })?
            }
            Some((Some(_), Some(_))) => {
                return Err(ConfigError::new(
                    format!("{path}.body"),
                    "string and bytes are exclusive",
                ));
            }
        };
        Ok(DirectResponse {
            status: d.status,
            body,
        })
    }
}

/// Drops a `Remove(h)` that a later `Set(h)` makes redundant (a set
/// replaces every value), saving a host call per owned header per request.
pub(crate) fn without_overwritten_removals(ops: Vec<ReqOp>) -> Vec<ReqOp> {
    let barrier = |op: &ReqOp, name: &str| match op {
        ReqOp::Static(HeaderOp::Add(n, _) | HeaderOp::Remove(n)) => n == name,
        // A computed value may come out empty and change nothing.
        ReqOp::Set(n, _) | ReqOp::Add(n, _) => n == name,
        ReqOp::Static(HeaderOp::Set(..)) => false,
    };
    let redundant = |i: usize, op: &ReqOp| match op {
        ReqOp::Static(HeaderOp::Remove(name)) => ops
            .get(i + 1..)
            .unwrap_or_default()
            .iter()
            .take_while(|later| !barrier(later, name))
            .any(|later| matches!(later, ReqOp::Static(HeaderOp::Set(n, _)) if n == name)),
        _ => false,
    };
    let keep: Vec<bool> = ops
        .iter()
        .enumerate()
        .map(|(i, op)| !redundant(i, op))
        .collect();
    ops.into_iter()
        .zip(keep)
        .filter_map(|(op, k)| k.then_some(op))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(n: &str) -> ReqOp {
        ReqOp::Static(HeaderOp::Set(n.into(), "v".into()))
    }
    fn remove(n: &str) -> ReqOp {
        ReqOp::Static(HeaderOp::Remove(n.into()))
    }

    #[test]
    fn a_removal_before_a_set_of_the_same_header_is_dropped() {
        let ops = vec![remove("a"), remove("b"), set("a")];
        assert_eq!(
            without_overwritten_removals(ops),
            vec![remove("b"), set("a")]
        );
    }

    #[test]
    fn a_removal_before_an_add_is_kept() {
        let add = ReqOp::Static(HeaderOp::Add("a".into(), "v".into()));
        let ops = vec![remove("a"), add.clone(), set("a")];
        assert_eq!(without_overwritten_removals(ops.clone()), ops);
    }

    #[test]
    fn a_removal_before_a_computed_set_is_kept() {
        let computed = ReqOp::Set("a".into(), Formatted::compile("%REQ(x)%", None).unwrap());
        let ops = vec![remove("a"), computed, set("a")];
        assert_eq!(without_overwritten_removals(ops.clone()), ops);
    }
}
