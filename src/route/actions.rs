//! Route actions compiled to what Envoy understands from a filter:
//! `timeout` and `retries` as the router's `x-envoy-*` request headers
//! (SPEC.md §timeouts and retries 7–8: a filter that *sets* them is obeyed),
//! `headers` as header operations, `rewrite`, `redirect` and
//! `directResponse` (istio/istio pilot/pkg/networking/core/route/route.go,
//! retry/retry.go; istio validation `ValidateHTTPRetry`).

use std::time::Duration;

use crate::config::ConfigError;
use crate::config::duration::IstioDuration;
use crate::config::virtual_service::{
    HeaderOperations, HttpDirectResponse, HttpRedirect, HttpRetry, HttpRoute,
};
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

/// Istio's `ValidateDuration`: at least 1 ms, millisecond precision.
pub(crate) fn millis(d: IstioDuration, path: &str) -> Result<u128, ConfigError> {
    let d: Duration = d.0;
    if d < Duration::from_millis(1) {
        return Err(ConfigError::new(path, "duration must be at least 1ms"));
    }
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
        return Err(ConfigError::new(
            path,
            "only millisecond precision is supported",
        ));
    }
    Ok(d.as_millis())
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
    if retry.attempts < 0 {
        return Err(ConfigError::new(
            format!("{rpath}.attempts"),
            "attempts must not be negative",
        ));
    }
    if retry.attempts == 0 {
        let others =
            retry.per_try_timeout.is_some() || retry.retry_on.is_some() || retry.backoff.is_some();
        if others {
            return Err(ConfigError::new(
                rpath,
                "http retry policy configured when attempts are set to 0 (disabled)",
            ));
        }
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
        } else if token.parse::<u16>().is_ok_and(|c| (100..=599).contains(&c)) {
            codes.push(token);
        } else {
            return Err(ConfigError::new(
                format!("{rpath}.retryOn"),
                format!("{token:?} is not a valid retryOn policy"),
            ));
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
    if let Some(b) = retry.backoff {
        millis(b, &format!("{rpath}.backoff"))?;
    }
    Ok(ops)
}

/// `headers.request|response` → operations: remove, then set, then add
/// (Istio `translateAppendHeaders`). `:`-names other than `:authority` are
/// dropped, `host` means `:authority`.
pub(crate) fn header_ops(
    h: Option<&HeaderOperations>,
    path: &str,
) -> Result<Vec<HeaderOp>, ConfigError> {
    let Some(h) = h else { return Ok(Vec::new()) };
    let name = |n: &str, at: String| -> Result<Option<String>, ConfigError> {
        let lower = n.to_ascii_lowercase();
        if lower == "host" || lower == ":authority" {
            return Ok(Some(":authority".into()));
        }
        if lower.starts_with(':') {
            return Ok(None);
        }
        if !crate::http::is_header_name(&lower) {
            return Err(ConfigError::new(
                at,
                format!("{n:?} is not a valid header name"),
            ));
        }
        Ok(Some(lower))
    };
    let mut ops = Vec::new();
    for (i, n) in h.remove.iter().enumerate() {
        if let Some(n) = name(n, format!("{path}.remove[{i}]"))? {
            ops.push(HeaderOp::Remove(n));
        }
    }
    for (n, v) in &h.set {
        if let Some(n) = name(n, format!("{path}.set.{n}"))? {
            ops.push(HeaderOp::Set(n, v.clone()));
        }
    }
    for (n, v) in &h.add {
        if let Some(n) = name(n, format!("{path}.add.{n}"))? {
            ops.push(HeaderOp::Add(n, v.clone()));
        }
    }
    Ok(ops)
}

/// A compiled `redirect`.
#[derive(Debug, Clone)]
pub struct Redirect {
    /// Status (301 unless `redirectCode`).
    pub status: u32,
    uri: Option<String>,
    authority: Option<String>,
    scheme: Option<String>,
    port: Option<PortRule>,
}

#[derive(Debug, Clone)]
enum PortRule {
    Fixed(u32),
    FromRequest,
}

impl Redirect {
    pub(crate) fn compile(r: &HttpRedirect, path: &str) -> Result<Redirect, ConfigError> {
        let status = r.redirect_code.unwrap_or(301);
        if !matches!(status, 301 | 302 | 303 | 307 | 308) {
            return Err(ConfigError::new(
                format!("{path}.redirectCode"),
                format!("{status} is not a redirect status"),
            ));
        }
        let port = match (r.port, r.derive_port.as_deref()) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(path, "port and derivePort are exclusive"));
            }
            (Some(p), None) => Some(PortRule::Fixed(p)),
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
            uri: r.uri.clone(),
            authority: r.authority.clone(),
            scheme: r.scheme.clone(),
            port,
        })
    }

    /// The `location` of the redirect for a request.
    pub fn location(&self, scheme: &[u8], authority: &[u8], path: &[u8]) -> String {
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
        let new_path = match &self.uri {
            Some(uri) if uri.contains('?') => uri.clone(),
            Some(uri) => format!("{uri}{}", lossy(query)),
            None => format!("{}{}", lossy(req_path), lossy(query)),
        };
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
            Some((None, Some(b))) => base64_decode(b).ok_or_else(|| {
                ConfigError::new(format!("{path}.body.bytes"), "not valid base64")
            })?,
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

/// Standard base64 (RFC 4648 §4, padding optional) as protobuf JSON encodes
/// `bytes`. Hand-written: eight lines against a dependency for one field.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
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
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(base64_decode("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
        assert_eq!(base64_decode("aGVsbG8").as_deref(), Some(&b"hello"[..]));
        assert_eq!(base64_decode("aGk=").as_deref(), Some(&b"hi"[..]));
        assert_eq!(base64_decode(""), Some(Vec::new()));
        assert_eq!(base64_decode("a"), None);
        assert_eq!(base64_decode("a$=="), None);
    }
}
