//! Hostcalls of the HTTP stream: logging, properties, header maps, buffers, local
//! responses, stream control (proxy-wasm-rust-sdk 0.2.5 `src/hostcalls.rs`
//! imports; semantics of proxy-wasm-cpp-host `src/exports.cc` and envoy
//! `source/extensions/common/wasm/context.cc`).

use wasmtime::{Caller, Linker};

use super::abi::{HostResult, Status, code, copy_out_code, read, tri, write_u32};
use super::context::VmData;
use super::headers::{HeaderMap, deserialize_pairs, lower};
use super::outcome::{LocalReply, LogEntry, LogLevel};
use super::properties;
use super::shared::{Dir, StreamAction};
use super::tcp::ConnAction;

type C<'a> = Caller<'a, VmData>;

use super::context::count_call;

/// Records a log line (dropped below the host log level, as Envoy's `info`
/// default does); remembers `panicked at` text for trap reports.
pub(crate) fn log_line(data: &mut VmData, level: LogLevel, message: String) {
    if message.contains("panicked at") {
        data.panic = Some(message.clone());
    }
    let mut shared = data.shared.borrow_mut();
    if (level as u32) < shared.log_level {
        return;
    }
    shared.logs.push(LogEntry {
        level,
        filter: data.plugin.name.clone(),
        worker: data.worker(),
        vm: data.role,
        message,
        stream: data.stream_for_logs,
    });
}

/// Runs `f` on header map `t` of the current context (`BadArgument` when the map is
/// not available now, SPEC §A.3).
fn with_map<R>(
    data: &mut VmData,
    t: u32,
    f: impl FnOnce(&mut HeaderMap) -> R,
) -> Result<R, Status> {
    match t {
        0..=3 => {
            let ctx = data.http_ctx().ok_or(Status::BadArgument)?;
            let a = ctx.access;
            let mut st = ctx.stream.borrow_mut();
            let map = match t {
                0 if a.req_headers => &mut st.req_headers,
                1 if a.req_trailers => &mut st.req_trailers,
                2 if a.resp_headers => &mut st.resp_headers,
                3 if a.resp_trailers => &mut st.resp_trailers,
                _ => return Err(Status::BadArgument),
            };
            Ok(f(map))
        }
        4 => data
            .grpc_receive
            .initial
            .as_mut()
            .map(f)
            .ok_or(Status::BadArgument),
        5 => data
            .grpc_receive
            .trailing
            .as_mut()
            .map(f)
            .ok_or(Status::BadArgument),
        6 => data
            .call_response
            .as_mut()
            .map(|c| f(&mut c.0))
            .ok_or(Status::BadArgument),
        7 => data
            .call_response
            .as_mut()
            .map(|c| f(&mut c.2))
            .ok_or(Status::BadArgument),
        _ => Err(Status::BadArgument),
    }
}

/// Current content of buffer `t`.
fn buffer_get(data: &VmData, t: u32) -> Result<Vec<u8>, Status> {
    match t {
        0 | 1 => {
            let ctx = data.http_ctx().ok_or(Status::NotFound)?;
            let st = ctx.stream.borrow();
            match t {
                0 if ctx.access.req_body => Ok(st.req_body.clone()),
                1 if ctx.access.resp_body => Ok(st.resp_body.clone()),
                _ => Err(Status::NotFound),
            }
        }
        // Envoy answers the network buffers in any context: empty outside a
        // network data callback (`getBuffer` → `buffer_.set(nullptr)`).
        2 | 3 => Ok(data
            .net_ctx()
            .filter(|n| if t == 2 { n.down_access } else { n.up_access })
            .map(|n| {
                let b = n.bufs.borrow();
                if t == 2 {
                    b.downstream.clone()
                } else {
                    b.upstream.clone()
                }
            })
            .unwrap_or_default()),
        4 => data
            .call_response
            .as_ref()
            .map(|c| c.1.clone())
            .ok_or(Status::NotFound),
        5 => data.grpc_receive.buffer.clone().ok_or(Status::NotFound),
        6 if data.phase == super::context::VmPhase::VmStart => Ok(data.plugin.vm_config.clone()),
        7 if matches!(
            data.phase,
            super::context::VmPhase::VmStart | super::context::VmPhase::Configure
        ) =>
        {
            Ok(data.plugin.config.clone())
        }
        _ => Err(Status::NotFound),
    }
}

/// envoy `context.cc` `Buffer::copyFrom`: start 0 drains `len` then prepends,
/// start ≥ size appends, anything else is `BadArgument`.
fn buffer_set(data: &VmData, t: u32, start: u32, len: u32, bytes: &[u8]) -> Result<(), Status> {
    if matches!(t, 2 | 3) {
        let n = data
            .net_ctx()
            .filter(|n| if t == 2 { n.down_access } else { n.up_access })
            .ok_or(Status::BadArgument)?;
        let mut bufs = n.bufs.borrow_mut();
        let buf = if t == 2 {
            &mut bufs.downstream
        } else {
            &mut bufs.upstream
        };
        return copy_from(buf, start, len, bytes);
    }
    if !matches!(t, 0 | 1) {
        return buffer_get(data, t).and(Err(Status::BadArgument));
    }
    let ctx = data.http_ctx().ok_or(Status::NotFound)?;
    let allowed = if t == 0 {
        ctx.access.req_body
    } else {
        ctx.access.resp_body
    };
    if !allowed {
        return Err(Status::NotFound);
    }
    let mut st = ctx.stream.borrow_mut();
    let buf = if t == 0 {
        &mut st.req_body
    } else {
        &mut st.resp_body
    };
    copy_from(buf, start, len, bytes)
}

/// envoy `context.cc` `Buffer::copyFrom` on a live buffer.
fn copy_from(buf: &mut Vec<u8>, start: u32, len: u32, bytes: &[u8]) -> Result<(), Status> {
    let start = usize::try_from(start).map_err(|_| Status::BadArgument)?;
    let len = usize::try_from(len).map_err(|_| Status::BadArgument)?;
    if start == 0 {
        let drain = len.min(buf.len());
        buf.drain(..drain);
        let mut out = bytes.to_vec();
        out.extend_from_slice(buf);
        *buf = out;
        Ok(())
    } else if start >= buf.len() {
        buf.extend_from_slice(bytes);
        Ok(())
    } else {
        Err(Status::BadArgument)
    }
}

fn push_action(data: &VmData, action: StreamAction) -> Result<(), Status> {
    if let Some(ctx) = data.http_ctx() {
        data.shared
            .borrow_mut()
            .actions
            .push((ctx.stream_id, ctx.filter, action));
    }
    Ok(())
}

/// envoy `context.cc` `continueStream` / `closeStream`: resuming the upstream
/// side is `Unimplemented` anywhere; a stream type the context does not have is
/// a no-op.
fn stream_action(data: &VmData, t: u32, close: bool) -> u32 {
    if (t, close) == (3, false) {
        return Status::Unimplemented.code();
    }
    if let Some(n) = data.net_ctx() {
        let action = match (t, close) {
            (2, false) => ConnAction::ResumeDownstream,
            (2 | 3, true) => ConnAction::Close,
            (0 | 1, _) => return Status::Ok.code(),
            _ => return Status::BadArgument.code(),
        };
        data.shared
            .borrow_mut()
            .conn_actions
            .push((n.conn, n.filter, action));
        return Status::Ok.code();
    }
    let action = match (t, close) {
        (0, false) => StreamAction::Resume(Dir::Request),
        (1, false) => StreamAction::Resume(Dir::Response),
        (0 | 1, true) => StreamAction::Close,
        (2 | 3, _) => return Status::Ok.code(),
        _ => return Status::BadArgument.code(),
    };
    code(push_action(data, action))
}

/// Registers the stream hostcalls in module `env`.
pub(crate) fn add(linker: &mut Linker<VmData>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_log",
        |mut c: C<'_>, level: u32, p: u32, s: u32| -> HostResult {
            count_call(&c, "proxy_log");
            let Some(level) = LogLevel::from_u32(level) else {
                return Ok(Status::BadArgument.code());
            };
            let msg = tri!(read(&mut c, p, s));
            log_line(
                c.data_mut(),
                level,
                String::from_utf8_lossy(&msg).into_owned(),
            );
            Ok(0)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_log_level",
        |mut c: C<'_>, p: u32| -> HostResult {
            count_call(&c, "proxy_get_log_level");
            let level = c.data().shared.borrow().log_level;
            Ok(code(write_u32(&mut c, p, level)))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_status",
        |mut c: C<'_>, cp: u32, pp: u32, sp: u32| -> HostResult {
            count_call(&c, "proxy_get_status");
            // The status of the last gRPC close, as every context of the VM
            // reads it (checked against Envoy 1.40).
            let (status, msg) = c.data().status.clone();
            tri!(write_u32(&mut c, cp, status));
            copy_out_code(&mut c, &msg, pp, sp)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_property",
        |mut c: C<'_>, p: u32, s: u32, vpp: u32, vsp: u32| -> HostResult {
            count_call(&c, "proxy_get_property");
            let path = tri!(read(&mut c, p, s));
            let value = tri!(properties::get_property(c.data(), &path));
            copy_out_code(&mut c, &value, vpp, vsp)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_property",
        |mut c: C<'_>, p: u32, s: u32, vp: u32, vs: u32| -> HostResult {
            count_call(&c, "proxy_set_property");
            let path = tri!(read(&mut c, p, s));
            let value = tri!(read(&mut c, vp, vs));
            Ok(code(properties::set_property(c.data(), &path, &value)))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut c: C<'_>,
         status: u32,
         dp: u32,
         ds: u32,
         bp: u32,
         bs: u32,
         hp: u32,
         hs: u32,
         grpc: i32|
         -> HostResult {
            count_call(&c, "proxy_send_local_response");
            let details = tri!(read(&mut c, dp, ds));
            let body = tri!(read(&mut c, bp, bs));
            let pairs = deserialize_pairs(&tri!(read(&mut c, hp, hs)));
            let mut headers: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| (lower(k), String::from_utf8_lossy(v).into_owned()))
                .collect();
            if !body.is_empty() && !headers.iter().any(|(k, _)| k == "content-type") {
                headers.push(("content-type".to_owned(), "text/plain".to_owned()));
            }
            let details: String = String::from_utf8_lossy(&details)
                .chars()
                .map(|ch| if ch.is_whitespace() { '_' } else { ch })
                .collect();
            let reply = LocalReply {
                status,
                body,
                headers,
                details,
                grpc_status: (0..=16).contains(&grpc).then_some(grpc),
                filter: c.data().plugin.name.clone(),
            };
            Ok(code(push_action(c.data(), StreamAction::LocalReply(reply))))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut c: C<'_>, t: u32, kp: u32, ks: u32, vpp: u32, vsp: u32| -> HostResult {
            count_call(&c, "proxy_get_header_map_value");
            let key = tri!(read(&mut c, kp, ks));
            let value = tri!(with_map(c.data_mut(), t, |m| m
                .get(&key)
                .map(<[u8]>::to_vec)));
            match value {
                None => Ok(Status::NotFound.code()),
                Some(v) => copy_out_code(&mut c, &v, vpp, vsp),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_add_header_map_value",
        |mut c: C<'_>, t: u32, kp: u32, ks: u32, vp: u32, vs: u32| -> HostResult {
            count_call(&c, "proxy_add_header_map_value");
            let key = tri!(read(&mut c, kp, ks));
            let value = tri!(read(&mut c, vp, vs));
            Ok(code(with_map(c.data_mut(), t, |m| m.add(&key, &value))))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        |mut c: C<'_>, t: u32, kp: u32, ks: u32, vp: u32, vs: u32| -> HostResult {
            count_call(&c, "proxy_replace_header_map_value");
            let key = tri!(read(&mut c, kp, ks));
            let value = tri!(read(&mut c, vp, vs));
            Ok(code(with_map(c.data_mut(), t, |m| m.replace(&key, &value))))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut c: C<'_>, t: u32, kp: u32, ks: u32| -> HostResult {
            count_call(&c, "proxy_remove_header_map_value");
            let key = tri!(read(&mut c, kp, ks));
            Ok(code(with_map(c.data_mut(), t, |m| m.remove(&key))))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut c: C<'_>, t: u32, pp: u32, sp: u32| -> HostResult {
            count_call(&c, "proxy_get_header_map_pairs");
            let map = tri!(with_map(c.data_mut(), t, |m| m.clone()));
            let bytes = if map.is_empty() {
                Vec::new()
            } else {
                map.serialize()
            };
            copy_out_code(&mut c, &bytes, pp, sp)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut c: C<'_>, t: u32, p: u32, s: u32| -> HostResult {
            count_call(&c, "proxy_set_header_map_pairs");
            let pairs = deserialize_pairs(&tri!(read(&mut c, p, s)));
            Ok(code(with_map(c.data_mut(), t, |m| m.set_pairs(&pairs))))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_size",
        |mut c: C<'_>, t: u32, rp: u32| -> HostResult {
            count_call(&c, "proxy_get_header_map_size");
            let size = tri!(with_map(c.data_mut(), t, |m| {
                m.entries()
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>()
            }));
            Ok(code(write_u32(
                &mut c,
                rp,
                u32::try_from(size).unwrap_or(u32::MAX),
            )))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: C<'_>, t: u32, start: u32, len: u32, pp: u32, sp: u32| -> HostResult {
            count_call(&c, "proxy_get_buffer_bytes");
            let buf = tri!(buffer_get(c.data(), t));
            let start = usize::try_from(start).unwrap_or(usize::MAX);
            if start >= buf.len() || len == 0 {
                return Ok(0);
            }
            let end = start
                .saturating_add(usize::try_from(len).unwrap_or(usize::MAX))
                .min(buf.len());
            let slice = buf.get(start..end).unwrap_or_default().to_vec();
            copy_out_code(&mut c, &slice, pp, sp)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_buffer_status",
        |mut c: C<'_>, t: u32, lp: u32, fp: u32| -> HostResult {
            count_call(&c, "proxy_get_buffer_status");
            let buf = tri!(buffer_get(c.data(), t));
            tri!(write_u32(
                &mut c,
                lp,
                u32::try_from(buf.len()).unwrap_or(u32::MAX)
            ));
            Ok(code(write_u32(&mut c, fp, 0)))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut c: C<'_>, t: u32, start: u32, len: u32, dp: u32, ds: u32| -> HostResult {
            count_call(&c, "proxy_set_buffer_bytes");
            let bytes = tri!(read(&mut c, dp, ds));
            Ok(code(buffer_set(c.data(), t, start, len, &bytes)))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_continue_stream",
        |c: C<'_>, t: u32| -> HostResult {
            count_call(&c, "proxy_continue_stream");
            Ok(stream_action(c.data(), t, false))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_close_stream",
        |c: C<'_>, t: u32| -> HostResult {
            count_call(&c, "proxy_close_stream");
            Ok(stream_action(c.data(), t, true))
        },
    )?;
    // ABI 0.1.0 names Envoy still registers for old modules (proxy-wasm-cpp-host `src/wasm.cc`).
    linker.func_wrap("env", "proxy_continue_request", |c: C<'_>| -> HostResult {
        count_call(&c, "proxy_continue_request");
        Ok(stream_action(c.data(), 0, false))
    })?;
    linker.func_wrap("env", "proxy_continue_response", |c: C<'_>| -> HostResult {
        count_call(&c, "proxy_continue_response");
        Ok(stream_action(c.data(), 1, false))
    })?;
    linker.func_wrap("env", "proxy_clear_route_cache", |c: C<'_>| -> HostResult {
        count_call(&c, "proxy_clear_route_cache");
        Ok(0)
    })?;
    linker.func_wrap(
        "env",
        "proxy_get_configuration",
        |mut c: C<'_>, pp: u32, sp: u32| -> HostResult {
            count_call(&c, "proxy_get_configuration");
            let config = c.data().plugin.config.clone();
            copy_out_code(&mut c, &config, pp, sp)
        },
    )?;
    Ok(())
}
