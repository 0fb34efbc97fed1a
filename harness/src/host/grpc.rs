//! Local replies on gRPC requests, as Envoy 1.40 sends them (SPEC §C.3, §fault
//! injection 4).
//!
//! * A request is gRPC when, as the client sent it (before any filter ran), it has a
//!   `:path` and its `content-type` is exactly `application/grpc` or starts with
//!   `application/grpc+` (case-sensitive; `application/grpc-web` is not gRPC): envoy
//!   `source/common/http/filter_manager.h` `requestHeadersInitialized` →
//!   `source/common/grpc/common.cc` `isGrpcRequestHeaders`/`hasGrpcContentType`.
//! * Its local replies become trailers-only gRPC responses (envoy
//!   `source/common/http/utility.cc` `prepareLocalReply`, `is_grpc_` branch):
//!   `:status` 200; `content-type: application/grpc` (set: an existing value is
//!   overwritten in place, else appended); `grpc-status` unless the filter added one:
//!   the `grpc_status` argument when 0..=16, else `Grpc::Utility::httpToGrpcStatus` of
//!   the HTTP status the filter passed; `grpc-message` = the percent-encoded body when
//!   the body is not empty; `content-length` removed; no body.

use super::headers::HeaderMap;
use super::outcome::LocalReply;

/// True when the client's request headers make it a gRPC request.
pub(crate) fn is_grpc_request(headers: &HeaderMap) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    if headers.get(b":path").is_none() {
        return false;
    }
    // Envoy keeps `content-type` as one inline header: repeated values are joined.
    let Some(content_type) = headers.get_joined(b"content-type") else {
        return false;
    };
    content_type
        .strip_prefix(GRPC)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(b"+"))
}

/// envoy `source/common/grpc/status.cc` `Utility::httpToGrpcStatus`.
pub(crate) fn http_to_grpc_status(http_status: u32) -> u32 {
    match http_status {
        400 => 13,                   // INTERNAL
        401 => 16,                   // UNAUTHENTICATED
        403 => 7,                    // PERMISSION_DENIED
        404 => 12,                   // UNIMPLEMENTED
        429 | 502 | 503 | 504 => 14, // UNAVAILABLE
        _ => 2,                      // UNKNOWN
    }
}

/// envoy `source/common/http/utility.cc` `PercentEncoding::encode` with its default
/// reserved set `%`: bytes below `' '`, from `'~'` up (`char` is signed, so every
/// byte ≥ 0x80 too) and `%` become `%XX`, upper-case hex.
pub(crate) fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if !(b' '..b'~').contains(&b) || b == b'%' {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(char::from(b));
        }
    }
    out
}

/// Turns the headers of a local reply (`:status`, the filter's headers, maybe
/// `content-length`/`content-type: text/plain`) into those of a trailers-only gRPC
/// response. `headers` are the HTTP reply's, built by `reply.rs`.
pub(crate) fn convert_local_reply(reply: &LocalReply, headers: &mut HeaderMap) {
    headers.set_in_place(b":status", b"200");
    headers.set_in_place(b"content-type", b"application/grpc");
    if headers.get(b"grpc-status").is_none() {
        let code = match reply.grpc_status.and_then(|g| u32::try_from(g).ok()) {
            Some(g) => g,
            None => http_to_grpc_status(reply.status),
        };
        headers.set_in_place(b"grpc-status", code.to_string().as_bytes());
    }
    if !reply.body.is_empty() {
        headers.set_in_place(b"grpc-message", percent_encode(&reply.body).as_bytes());
    }
    headers.remove(b"content-length");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(content_type: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.add(b":path", b"/pkg.Svc/Method");
        for v in content_type {
            h.add(b"content-type", v.as_bytes());
        }
        h
    }

    #[test]
    fn only_application_grpc_and_its_plus_subtypes_are_grpc() {
        assert!(is_grpc_request(&request(&["application/grpc"])));
        assert!(is_grpc_request(&request(&["application/grpc+proto"])));
        assert!(is_grpc_request(&request(&["application/grpc+json"])));
        assert!(!is_grpc_request(&request(&["application/grpc-web"])));
        assert!(!is_grpc_request(&request(&[
            "application/grpc; charset=utf-8"
        ])));
        assert!(!is_grpc_request(&request(&["Application/gRPC"])));
        assert!(!is_grpc_request(&request(&["application/json"])));
        assert!(!is_grpc_request(&request(&[])));
        assert!(!is_grpc_request(&request(&[
            "application/grpc",
            "application/grpc"
        ])));
    }

    #[test]
    fn a_request_without_a_path_is_not_grpc() {
        let mut h = HeaderMap::new();
        h.add(b"content-type", b"application/grpc");
        assert!(!is_grpc_request(&h));
    }

    #[test]
    fn http_statuses_map_as_in_envoy() {
        let pairs = [
            (400, 13),
            (401, 16),
            (403, 7),
            (404, 12),
            (429, 14),
            (502, 14),
            (503, 14),
            (504, 14),
            (500, 2),
            (200, 2),
            (418, 2),
        ];
        for (http, grpc) in pairs {
            assert_eq!(http_to_grpc_status(http), grpc, "{http}");
        }
    }

    #[test]
    fn percent_encoding_escapes_controls_tilde_percent_and_non_ascii() {
        assert_eq!(percent_encode(b"fault filter abort"), "fault filter abort");
        assert_eq!(percent_encode(b"50%~\n\x7f"), "50%25%7E%0A%7F");
        assert_eq!(percent_encode("é".as_bytes()), "%C3%A9");
        assert_eq!(percent_encode(b"{\"a\":[1]}"), "{\"a\":[1]}");
    }
}
