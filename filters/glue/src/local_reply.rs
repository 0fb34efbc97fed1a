//! `proxy_send_local_response` with response details. The SDK's
//! `send_http_response` passes empty details (SPEC.md §proxy-wasm ABI C.2),
//! so access logs would not say why; this calls the import itself.

use meshwasm::verdict::LocalReply;
use proxy_wasm::types::Status;

#[allow(unsafe_code)] // reason: declaring the host import; the SDK declares it identically
unsafe extern "C" {
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> Status;
}

/// Serializes header pairs as proxy-wasm expects: a count, then each
/// (name length, value length), then each name and value NUL-terminated
/// (proxy-wasm spec, abi-versions/v0.2.1 "header maps").
fn serialize(headers: &[(String, String)]) -> Vec<u8> {
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    let mut out = Vec::new();
    out.extend_from_slice(&len(headers.len()));
    for (name, value) in headers {
        out.extend_from_slice(&len(name.len()));
        out.extend_from_slice(&len(value.len()));
    }
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    }
    out
}

/// Sends `reply` as the local response of the current stream.
pub(crate) fn send(reply: &LocalReply<'_>) -> Result<(), Status> {
    let headers = serialize(&reply.headers);
    #[allow(unsafe_code)] // reason: FFI call; every pointer/length pair comes from a live slice
    let status = unsafe {
        proxy_send_local_response(
            reply.status,
            reply.details.as_ptr(),
            reply.details.len(),
            reply.body.as_ptr(),
            reply.body.len(),
            headers.as_ptr(),
            headers.len(),
            reply
                .grpc_status
                .and_then(|s| i32::try_from(s).ok())
                .unwrap_or(-1),
        )
    };
    match status {
        Status::Ok => Ok(()),
        other => Err(other),
    }
}
