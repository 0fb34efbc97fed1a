//! The gRPC hostcalls: `proxy_grpc_call`, `proxy_grpc_stream`, `proxy_grpc_send`,
//! `proxy_grpc_close`, `proxy_grpc_cancel`.
//!
//! As Envoy 1.40 (proxy-wasm-cpp-host `src/exports.cc` `grpc_call`…, which act on
//! the **root** context; envoy `source/extensions/common/wasm/context.cc`
//! `grpcCall`, `grpcStream`, `grpcSend`, `grpcClose`, `grpcCancel`):
//! * the service argument is a serialized `envoy.config.core.v3.GrpcService`; bytes
//!   that do not parse as one are a cluster name, and an unknown cluster is then
//!   `ParseFailure`. A `GrpcService` naming an unknown cluster fails inside
//!   Envoy's gRPC client (`AsyncStreamImpl::initialize`: "Cluster not
//!   available"), so the call returns `InternalFailure`;
//! * tokens are numbered per VM (proxy-wasm-cpp-host `include/proxy-wasm/wasm.h`
//!   `nextGrpcCallId`, `nextGrpcStreamId`): calls 5, 9, 13…, streams 6, 10, 14…
//!   (`token & 3` is 1 for a call, 2 for a stream);
//! * `grpc_send` on a token that is not a stream's is `BadArgument`, on an unknown
//!   stream `NotFound`; `grpc_close` of a call cancels it, of a stream half-closes
//!   it (the stream stays until the upstream ends it); `grpc_cancel` resets either
//!   and no callback follows; a token of neither kind is `BadArgument`.
//!
//! A call or stream belongs to the root context: it outlives the HTTP stream
//! whose callback opened it (the SDK then drops its callbacks).

use std::time::Duration;

use wasmtime::{Caller, Linker};

use super::abi::{HostResult, Status, read, tri, write_u32};
use super::context::VmData;
use super::grpc_types::{GrpcKind, PendingGrpc};
use super::headers::{HeaderMap, deserialize_pairs};

type C<'a> = Caller<'a, VmData>;

use super::context::count_call;

/// A call or stream in flight.
#[derive(Debug, Clone)]
pub(crate) struct GrpcRecord {
    pub pending: PendingGrpc,
    pub vm: usize,
    pub root_ctx: u32,
    pub deadline: Option<Duration>,
    /// The filter closed a stream (`grpc_close`; Envoy `local_closed_`).
    pub local_closed: bool,
    /// The upstream ended the stream; it stays known until the filter closes it.
    pub remote_closed: bool,
    /// A call's last response message (Envoy `AsyncRequestImpl::response_`).
    pub response: Option<Vec<u8>>,
}

/// `token & 3` of a call and of a stream (`wasm.h` `CalloutType`).
const CALL: u32 = 1;
const STREAM: u32 = 2;

/// One protobuf wire-format field: its number and, for a length-delimited
/// field, its bytes.
pub(crate) type Field<'a> = (u64, Option<&'a [u8]>);

/// The top-level fields of a message; `None` when it is not valid wire format.
pub(crate) fn fields(mut bytes: &[u8]) -> Option<Vec<Field<'_>>> {
    fn varint(b: &mut &[u8]) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = b.split_first()?;
            *b = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    fn skip<'a>(b: &mut &'a [u8], n: u64) -> Option<&'a [u8]> {
        let n = usize::try_from(n).ok()?;
        let (head, rest) = (b.get(..n)?, b.get(n..)?);
        *b = rest;
        Some(head)
    }
    let mut out = Vec::new();
    let mut groups: Vec<u64> = Vec::new();
    while !bytes.is_empty() {
        let tag = varint(&mut bytes)?;
        let (field, wire) = (tag >> 3, tag & 7);
        if field == 0 || field > (1 << 29) - 1 {
            return None;
        }
        let value = match wire {
            0 => varint(&mut bytes).map(|_| None)?,
            1 => skip(&mut bytes, 8).map(|_| None)?,
            2 => {
                let n = varint(&mut bytes)?;
                Some(skip(&mut bytes, n)?)
            }
            3 => {
                groups.push(field);
                None
            }
            4 => {
                if groups.pop() != Some(field) {
                    return None;
                }
                None
            }
            5 => skip(&mut bytes, 4).map(|_| None)?,
            _ => return None,
        };
        if groups.is_empty() && wire != 4 {
            out.push((field, value));
        }
    }
    groups.is_empty().then_some(out)
}

/// `GrpcService::ParseFromString`: `Some(envoy_grpc.cluster_name)` when `bytes`
/// parse as an `envoy.config.core.v3.GrpcService` (any bytes of valid wire format
/// whose known fields have their types: `envoy_grpc` 1, `google_grpc` 2,
/// `timeout` 3, `initial_metadata` 5, `retry_policy` 6 are messages; strings
/// are UTF-8), else `None`.
pub(crate) fn grpc_service_cluster(bytes: &[u8]) -> Option<String> {
    let mut cluster = String::new();
    for (field, value) in fields(bytes)? {
        match (field, value) {
            (1, Some(envoy_grpc)) => {
                for (f, v) in fields(envoy_grpc)? {
                    match (f, v) {
                        (1, Some(name)) => cluster = String::from_utf8(name.to_vec()).ok()?,
                        (2, Some(authority)) => {
                            std::str::from_utf8(authority).ok()?;
                        }
                        (1 | 2, None) => return None,
                        _ => {}
                    }
                }
            }
            (1 | 2 | 3 | 5 | 6, None) => return None,
            _ => {}
        }
    }
    Some(cluster)
}

/// The cluster a call goes to (see the module docs for the errors).
fn target(service: &[u8], clusters: &[String]) -> Result<String, Status> {
    match grpc_service_cluster(service) {
        Some(cluster) if clusters.contains(&cluster) => Ok(cluster),
        Some(_) => Err(Status::InternalFailure),
        None => {
            let name = String::from_utf8_lossy(service).into_owned();
            if clusters.contains(&name) {
                Ok(name)
            } else {
                Err(Status::ParseFailure)
            }
        }
    }
}

/// What `proxy_grpc_call` / `proxy_grpc_stream` were given.
struct Open {
    service: Vec<u8>,
    service_name: Vec<u8>,
    method: Vec<u8>,
    metadata: Vec<u8>,
    /// `Some(request)` for a call.
    request: Option<Vec<u8>>,
    timeout_ms: u32,
}

fn open(data: &mut VmData, o: Open) -> Result<u32, Status> {
    let cluster = target(&o.service, &data.shared.borrow().clusters)?;
    let kind = if o.request.is_some() {
        GrpcKind::Call
    } else {
        GrpcKind::Stream
    };
    let slot = match kind {
        GrpcKind::Call => &mut data.grpc_next.0,
        GrpcKind::Stream => &mut data.grpc_next.1,
    };
    *slot = slot.wrapping_add(4);
    let token = *slot;
    let timeout = (kind == GrpcKind::Call && o.timeout_ms > 0)
        .then(|| Duration::from_millis(u64::from(o.timeout_ms)));
    let metadata = HeaderMap::from_pairs(&deserialize_pairs(&o.metadata));
    let mut shared = data.shared.borrow_mut();
    let id = shared.next_grpc_id();
    let deadline = timeout.map(|t| shared.elapsed + t);
    let pending = PendingGrpc {
        id,
        token,
        kind,
        cluster,
        service: String::from_utf8_lossy(&o.service_name).into_owned(),
        method: String::from_utf8_lossy(&o.method).into_owned(),
        initial_metadata: metadata.entries().to_vec(),
        messages: o.request.into_iter().collect(),
        half_closed: kind == GrpcKind::Call,
        timeout,
        filter: data.plugin.name.clone(),
        worker: data.worker(),
        vm: data.role,
        stream: data.http_ctx().map(|c| c.stream_id),
    };
    shared.grpc.insert(
        id,
        GrpcRecord {
            pending,
            vm: data.vm_index,
            root_ctx: data.root_ctx,
            deadline,
            local_closed: false,
            remote_closed: false,
            response: None,
        },
    );
    Ok(token)
}

/// The record of this VM's `token`.
fn find(data: &VmData, token: u32) -> Option<u64> {
    let shared = data.shared.borrow();
    shared
        .grpc
        .iter()
        .find(|(_, r)| r.vm == data.vm_index && r.pending.token == token)
        .map(|(id, _)| *id)
}

fn send(data: &VmData, token: u32, message: &[u8], end_stream: bool) -> Status {
    if token & 3 != STREAM {
        return Status::BadArgument;
    }
    let Some(id) = find(data, token) else {
        return Status::NotFound;
    };
    if let Some(r) = data.shared.borrow_mut().grpc.get_mut(&id) {
        r.pending.messages.push(message.to_vec());
        r.pending.half_closed |= end_stream;
    }
    Status::Ok
}

fn close_or_cancel(data: &VmData, token: u32, cancel: bool) -> Status {
    if !matches!(token & 3, CALL | STREAM) {
        return Status::BadArgument;
    }
    let Some(id) = find(data, token) else {
        return Status::NotFound;
    };
    let mut shared = data.shared.borrow_mut();
    let remove = match shared.grpc.get_mut(&id) {
        Some(r) if token & 3 == STREAM && !cancel => {
            r.pending.half_closed = true;
            r.local_closed = true;
            r.remote_closed
        }
        _ => true,
    };
    if remove {
        shared.grpc.remove(&id);
    }
    Status::Ok
}

/// Registers the gRPC hostcalls in module `env`.
pub(crate) fn add(linker: &mut Linker<VmData>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_grpc_call",
        |mut c: C<'_>,
         up: u32,
         us: u32,
         sp: u32,
         ss: u32,
         mp: u32,
         ms: u32,
         hp: u32,
         hs: u32,
         rp: u32,
         rs: u32,
         timeout_ms: u32,
         tokp: u32|
         -> HostResult {
            count_call(&c, "proxy_grpc_call");
            let o = Open {
                service: tri!(read(&mut c, up, us)),
                service_name: tri!(read(&mut c, sp, ss)),
                method: tri!(read(&mut c, mp, ms)),
                metadata: tri!(read(&mut c, hp, hs)),
                request: Some(tri!(read(&mut c, rp, rs))),
                timeout_ms,
            };
            let token = tri!(open(c.data_mut(), o));
            Ok(super::abi::code(write_u32(&mut c, tokp, token)))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_stream",
        |mut c: C<'_>,
         up: u32,
         us: u32,
         sp: u32,
         ss: u32,
         mp: u32,
         ms: u32,
         hp: u32,
         hs: u32,
         tokp: u32|
         -> HostResult {
            count_call(&c, "proxy_grpc_stream");
            let o = Open {
                service: tri!(read(&mut c, up, us)),
                service_name: tri!(read(&mut c, sp, ss)),
                method: tri!(read(&mut c, mp, ms)),
                metadata: tri!(read(&mut c, hp, hs)),
                request: None,
                timeout_ms: 0,
            };
            let token = tri!(open(c.data_mut(), o));
            Ok(super::abi::code(write_u32(&mut c, tokp, token)))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_send",
        |mut c: C<'_>, token: u32, p: u32, s: u32, end: u32| -> HostResult {
            count_call(&c, "proxy_grpc_send");
            let message = tri!(read(&mut c, p, s));
            Ok(send(c.data(), token, &message, end != 0).code())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_close",
        |c: C<'_>, token: u32| -> HostResult {
            count_call(&c, "proxy_grpc_close");
            Ok(close_or_cancel(c.data(), token, false).code())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_cancel",
        |c: C<'_>, token: u32| -> HostResult {
            count_call(&c, "proxy_grpc_cancel");
            Ok(close_or_cancel(c.data(), token, true).code())
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_cluster_names_usually_do_not_parse_as_a_grpc_service() {
        assert_eq!(grpc_service_cluster(b"grpc_upstream"), None);
        assert_eq!(grpc_service_cluster(b"no_such_cluster"), None);
        // 'a' is field 12, fixed64: eight more bytes make a valid message.
        assert_eq!(grpc_service_cluster(b"abcdefgh"), None);
        assert_eq!(grpc_service_cluster(b"abcdefghi"), Some(String::new()));
    }

    #[test]
    fn a_serialized_grpc_service_names_its_cluster_and_empty_bytes_parse() {
        // envoy_grpc { cluster_name: "grpc" }
        let bytes = [0x0a, 0x06, 0x0a, 0x04, b'g', b'r', b'p', b'c'];
        assert_eq!(grpc_service_cluster(&bytes), Some("grpc".to_owned()));
        assert_eq!(grpc_service_cluster(b""), Some(String::new()));
        // envoy_grpc as a varint: a type mismatch.
        assert_eq!(grpc_service_cluster(&[0x08, 0x01]), None);
    }
}
