//! What Envoy 1.40 does to headers between the wire and the filters, checked
//! by `harness/tests/probe_differential_hop_by_hop.rs`:
//! * **Folding.** Envoy's header map keeps some headers in fixed ("inline")
//!   slots; the codec adds a repeated inline header to the first one, joined
//!   with `,` (envoy `source/common/http/header_map_impl.cc` `insertByKey`,
//!   `appendToHeader`): two `user-agent: a` / `user-agent: b` lines reach a
//!   filter as one `user-agent: a,b`. Other repeated headers stay apart. The
//!   inline names are those Envoy 1.40 prints at start-up ("request header
//!   map", "response header map").
//! * **Requests** (envoy `source/common/http/conn_manager_utility.cc`
//!   `mutateRequestHeaders`, before the filters): `keep-alive`,
//!   `proxy-connection`, `transfer-encoding` go; so do `connection`, `upgrade`
//!   and the headers `connection` names, unless the request is an upgrade
//!   (`connection` names `upgrade` and `upgrade` is there); `te` keeps only its
//!   `trailers` token.
//! * **Responses**: the upstream codec drops `keep-alive` before the filters,
//!   which still see `connection`, `proxy-connection`, `upgrade`,
//!   `transfer-encoding`; after them the connection manager
//!   (`mutateResponseHeaders`) removes those too.

use super::headers::HeaderMap;

/// Envoy 1.40's inline request headers (its start-up log).
const REQUEST_INLINE: &[&str] = &[
    "accept",
    "accept-encoding",
    "access-control-request-headers",
    "access-control-request-method",
    "access-control-request-private-network",
    "authentication",
    "authorization",
    "cache-control",
    "cdn-loop",
    "connection",
    "content-encoding",
    "content-length",
    "content-type",
    "expect",
    "grpc-accept-encoding",
    "grpc-timeout",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "keep-alive",
    "origin",
    "pragma",
    "proxy-connection",
    "proxy-status",
    "referer",
    "te",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "via",
    "x-client-trace-id",
    "x-envoy-attempt-count",
    "x-envoy-decorator-operation",
    "x-envoy-downstream-service-cluster",
    "x-envoy-downstream-service-node",
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-external-address",
    "x-envoy-force-trace",
    "x-envoy-hedge-on-per-try-timeout",
    "x-envoy-internal",
    "x-envoy-ip-tags",
    "x-envoy-is-timeout-retry",
    "x-envoy-max-retries",
    "x-envoy-original-host",
    "x-envoy-original-path",
    "x-envoy-original-url",
    "x-envoy-retriable-header-names",
    "x-envoy-retriable-status-codes",
    "x-envoy-retry-grpc-on",
    "x-envoy-retry-on",
    "x-envoy-upstream-alt-stat-name",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-upstream-rq-timeout-alt-response",
    "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-stream-duration-ms",
    "x-forwarded-client-cert",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-proto",
    "x-request-id",
];

/// Envoy 1.40's inline response headers (its start-up log).
const RESPONSE_INLINE: &[&str] = &[
    "access-control-allow-credentials",
    "access-control-allow-headers",
    "access-control-allow-methods",
    "access-control-allow-origin",
    "access-control-allow-private-network",
    "access-control-expose-headers",
    "access-control-max-age",
    "age",
    "cache-control",
    "connection",
    "content-encoding",
    "content-length",
    "content-type",
    "date",
    "etag",
    "expires",
    "grpc-message",
    "grpc-status",
    "keep-alive",
    "last-modified",
    "location",
    "proxy-connection",
    "proxy-status",
    "server",
    "transfer-encoding",
    "upgrade",
    "vary",
    "via",
    "x-envoy-attempt-count",
    "x-envoy-decorator-operation",
    "x-envoy-degraded",
    "x-envoy-immediate-health-check-fail",
    "x-envoy-ratelimited",
    "x-envoy-upstream-canary",
    "x-envoy-upstream-healthchecked-cluster",
    "x-envoy-upstream-service-time",
    "x-request-id",
];

/// Adds header lines as Envoy's codec does, folding repeated inline headers.
fn decode<K: AsRef<[u8]>, V: AsRef<[u8]>>(lines: &[(K, V)], inline: &[&str], map: &mut HeaderMap) {
    for (k, v) in lines {
        let name = super::headers::lower(k.as_ref());
        if inline.contains(&name.as_str()) {
            map.fold(name.as_bytes(), v.as_ref());
        } else {
            map.add(name.as_bytes(), v.as_ref());
        }
    }
}

/// Comma-separated tokens of `name`, trimmed and lower-cased.
fn tokens(map: &HeaderMap, name: &[u8]) -> Vec<String> {
    map.get_joined(name)
        .map(|v| {
            String::from_utf8_lossy(&v)
                .split(',')
                .map(|t| t.trim().to_ascii_lowercase())
                .filter(|t| !t.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// The client's header lines as the filters get them (codec, then
/// `mutateRequestHeaders`), added to `map`.
pub(crate) fn request<K: AsRef<[u8]>, V: AsRef<[u8]>>(lines: &[(K, V)], map: &mut HeaderMap) {
    decode(lines, REQUEST_INLINE, map);
    let connection = tokens(map, b"connection");
    let upgrade = connection.iter().any(|t| t == "upgrade") && map.get(b"upgrade").is_some();
    if !upgrade {
        for named in &connection {
            if !named.starts_with(':') {
                map.remove(named.as_bytes());
            }
        }
        map.remove(b"connection");
        map.remove(b"upgrade");
    }
    for name in ["keep-alive", "proxy-connection", "transfer-encoding"] {
        map.remove(name.as_bytes());
    }
    if map.get(b"te").is_some() {
        if tokens(map, b"te").iter().any(|t| t == "trailers") {
            map.set_in_place(b"te", b"trailers");
        } else {
            map.remove(b"te");
        }
    }
}

/// The upstream's response headers as the filters get them.
pub(crate) fn upstream_response<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    lines: &[(K, V)],
    map: &mut HeaderMap,
) {
    decode(lines, RESPONSE_INLINE, map);
    map.remove(b"keep-alive");
}

/// The response headers after the filters, as the connection manager sends them
/// (`mutateResponseHeaders`; the request was not an upgrade).
pub(crate) fn client_response(map: &mut HeaderMap) {
    for name in [
        "connection",
        "upgrade",
        "transfer-encoding",
        "keep-alive",
        "proxy-connection",
    ] {
        map.remove(name.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_fold_inline_repeats_and_lose_hop_by_hop_headers() {
        let mut map = HeaderMap::new();
        let lines = [
            ("Connection", "keep-alive, X-Named"),
            ("x-named", "1"),
            ("te", "gzip, trailers"),
            ("user-agent", "a"),
            ("x-rep", "1"),
            ("user-agent", "b"),
            ("x-rep", "2"),
        ];
        request(&lines, &mut map);
        let pairs = map.to_string_pairs();
        let names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["te", "user-agent", "x-rep", "x-rep"]);
        assert_eq!(map.get_str("user-agent").as_deref(), Some("a,b"));
        assert_eq!(map.get_str("te").as_deref(), Some("trailers"));
    }

    #[test]
    fn an_upgrade_request_keeps_connection_and_upgrade() {
        let mut map = HeaderMap::new();
        request(
            &[("connection", "Upgrade"), ("upgrade", "websocket")],
            &mut map,
        );
        assert_eq!(map.len(), 2);
    }
}
