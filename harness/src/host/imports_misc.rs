//! Hostcalls outside the stream: shared data, shared queues, metrics, http calls,
//! timers and clock, effective context, foreign functions (gRPC: `grpc_call.rs`).
//! Semantics from proxy-wasm-cpp-host `src/exports.cc`, `src/shared_data.cc`,
//! `src/shared_queue.cc` and envoy `source/extensions/common/wasm/context.cc`.

use std::time::Duration;

use wasmtime::{Caller, Linker};

use super::abi::{HostResult, Status, code, copy_out_code, read, tri, write_u32, write_u64};
use super::context::VmData;
use super::headers::{HeaderMap, deserialize_pairs};
use super::outcome::PendingCall;
use super::shared::CallRecord;

type C<'a> = Caller<'a, VmData>;

use super::context::count_call;

/// envoy `context.cc` `httpCall`: the cluster must be declared, `:method`, `:path`
/// and `:authority` are required (SPEC §E.1).
fn http_call(
    data: &VmData,
    cluster: &[u8],
    headers: &[u8],
    body: &[u8],
    trailers: &[u8],
    timeout_ms: u32,
) -> Result<u32, Status> {
    let cluster = String::from_utf8_lossy(cluster).into_owned();
    let headers = HeaderMap::from_pairs(&deserialize_pairs(headers));
    let trailers = HeaderMap::from_pairs(&deserialize_pairs(trailers));
    let mut shared = data.shared.borrow_mut();
    if !shared.clusters.contains(&cluster) {
        return Err(Status::BadArgument);
    }
    for required in [":method", ":path", ":authority"] {
        if headers.get(required.as_bytes()).is_none() {
            return Err(Status::BadArgument);
        }
    }
    let token = shared.next_token();
    let timeout = (timeout_ms > 0).then(|| Duration::from_millis(u64::from(timeout_ms)));
    let deadline = timeout.map(|t| shared.elapsed + t);
    let call = PendingCall {
        token,
        cluster,
        headers: headers.entries().to_vec(),
        body: body.to_vec(),
        trailers: trailers.entries().to_vec(),
        timeout,
        filter: data.plugin.name.clone(),
        worker: data.worker(),
        vm: data.role,
        stream: data.http_ctx().map(|c| c.stream_id),
    };
    shared.calls.insert(
        token,
        CallRecord {
            call,
            vm: data.vm_index,
            root_ctx: data.root_ctx,
            deadline,
        },
    );
    Ok(token)
}

/// Registers the non-stream hostcalls in module `env`.
pub(crate) fn add(linker: &mut Linker<VmData>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut c: C<'_>, kp: u32, ks: u32, vpp: u32, vsp: u32, casp: u32| -> HostResult {
            count_call(&c, "proxy_get_shared_data");
            let key = tri!(read(&mut c, kp, ks));
            let vm_id = c.data().plugin.vm_id.clone();
            let found = c.data().shared.borrow().get_shared(vm_id.as_bytes(), &key);
            let Some((value, cas)) = found else {
                return Ok(Status::NotFound.code());
            };
            let r = copy_out_code(&mut c, &value, vpp, vsp)?;
            if r != 0 {
                return Ok(r);
            }
            Ok(code(write_u32(&mut c, casp, cas)))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut c: C<'_>, kp: u32, ks: u32, vp: u32, vs: u32, cas: u32| -> HostResult {
            count_call(&c, "proxy_set_shared_data");
            let key = tri!(read(&mut c, kp, ks));
            let value = tri!(read(&mut c, vp, vs));
            let vm_id = c.data().plugin.vm_id.clone();
            let status =
                c.data()
                    .shared
                    .borrow_mut()
                    .set_shared(vm_id.as_bytes(), &key, &value, cas);
            Ok(status.code())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_register_shared_queue",
        |mut c: C<'_>, np: u32, ns: u32, tp: u32| -> HostResult {
            count_call(&c, "proxy_register_shared_queue");
            let name = tri!(read(&mut c, np, ns));
            let d = c.data();
            let token = d.shared.borrow_mut().register_queue(
                d.plugin.vm_id.as_bytes(),
                &name,
                d.vm_index,
                d.root_ctx,
            );
            Ok(code(write_u32(&mut c, tp, token)))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        |mut c: C<'_>, vp: u32, vs: u32, np: u32, ns: u32, tp: u32| -> HostResult {
            count_call(&c, "proxy_resolve_shared_queue");
            let vm_id = tri!(read(&mut c, vp, vs));
            let name = tri!(read(&mut c, np, ns));
            let token = c.data().shared.borrow().resolve_queue(&vm_id, &name);
            match token {
                None => Ok(Status::NotFound.code()),
                Some(t) => Ok(code(write_u32(&mut c, tp, t))),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_dequeue_shared_queue",
        |mut c: C<'_>, token: u32, pp: u32, sp: u32| -> HostResult {
            count_call(&c, "proxy_dequeue_shared_queue");
            let item = tri!(c.data().shared.borrow_mut().dequeue(token));
            copy_out_code(&mut c, &item, pp, sp)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        |mut c: C<'_>, token: u32, dp: u32, ds: u32| -> HostResult {
            count_call(&c, "proxy_enqueue_shared_queue");
            let data = tri!(read(&mut c, dp, ds));
            Ok(c.data().shared.borrow_mut().enqueue(token, &data).code())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut c: C<'_>, kind: u32, np: u32, ns: u32, idp: u32| -> HostResult {
            count_call(&c, "proxy_define_metric");
            let name = tri!(read(&mut c, np, ns));
            let id = tri!(c.data().shared.borrow_mut().define_metric(kind, &name));
            Ok(code(write_u32(&mut c, idp, id)))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_increment_metric",
        |c: C<'_>, id: u32, offset: i64| -> HostResult {
            count_call(&c, "proxy_increment_metric");
            Ok(c.data()
                .shared
                .borrow_mut()
                .increment_metric(id, offset)
                .code())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_record_metric",
        |c: C<'_>, id: u32, value: u64| -> HostResult {
            count_call(&c, "proxy_record_metric");
            Ok(c.data().shared.borrow_mut().record_metric(id, value).code())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_metric",
        |mut c: C<'_>, id: u32, rp: u32| -> HostResult {
            count_call(&c, "proxy_get_metric");
            let value = tri!(c.data().shared.borrow_mut().get_metric(id));
            Ok(code(write_u64(&mut c, rp, value)))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_http_call",
        |mut c: C<'_>,
         up: u32,
         us: u32,
         hp: u32,
         hs: u32,
         bp: u32,
         bs: u32,
         tp: u32,
         ts: u32,
         timeout: u32,
         tokp: u32|
         -> HostResult {
            count_call(&c, "proxy_http_call");
            let cluster = tri!(read(&mut c, up, us));
            let headers = tri!(read(&mut c, hp, hs));
            let body = tri!(read(&mut c, bp, bs));
            let trailers = tri!(read(&mut c, tp, ts));
            tri!(write_u32(&mut c, tokp, 0));
            let token = tri!(http_call(
                c.data(),
                &cluster,
                &headers,
                &body,
                &trailers,
                timeout
            ));
            Ok(code(write_u32(&mut c, tokp, token)))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut c: C<'_>, ms: u32| -> HostResult {
            count_call(&c, "proxy_set_tick_period_milliseconds");
            let elapsed = c.data().shared.borrow().elapsed;
            let d = c.data_mut();
            if ms == 0 {
                d.tick_period = None;
                d.next_tick = None;
            } else {
                let period = Duration::from_millis(u64::from(ms));
                d.tick_period = Some(period);
                d.next_tick = Some(elapsed + period);
            }
            Ok(0)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut c: C<'_>, rp: u32| -> HostResult {
            count_call(&c, "proxy_get_current_time_nanoseconds");
            let now = c.data().shared.borrow().now_nanos();
            Ok(code(write_u64(&mut c, rp, now)))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut c: C<'_>, id: u32| -> HostResult {
            count_call(&c, "proxy_set_effective_context");
            let d = c.data_mut();
            if d.has_context(id) {
                d.effective = Some(id);
                Ok(0)
            } else {
                Ok(Status::BadArgument.code())
            }
        },
    )?;
    linker.func_wrap("env", "proxy_done", |c: C<'_>| -> HostResult {
        count_call(&c, "proxy_done");
        Ok(0)
    })?;
    linker.func_wrap(
        "env",
        "proxy_call_foreign_function",
        |mut c: C<'_>, np: u32, ns: u32, ap: u32, asz: u32, rpp: u32, rsp: u32| -> HostResult {
            count_call(&c, "proxy_call_foreign_function");
            let name = tri!(read(&mut c, np, ns));
            let args = tri!(read(&mut c, ap, asz));
            let f = c
                .data()
                .shared
                .borrow()
                .foreign
                .get(String::from_utf8_lossy(&name).as_ref())
                .cloned();
            let Some(f) = f else {
                if name == b"set_envoy_filter_state" {
                    return Ok(super::filter_state::set_envoy_filter_state(c.data(), &args));
                }
                return Ok(Status::NotFound.code());
            };
            match f(&args) {
                Ok(result) => copy_out_code(&mut c, &result, rpp, rsp),
                Err(status) => Ok(status),
            }
        },
    )?;
    // Emscripten helpers proxy-wasm-cpp-host registers for every module.
    linker.func_wrap("env", "pthread_equal", |c: C<'_>, a: u32, b: u32| -> u32 {
        count_call(&c, "pthread_equal");
        u32::from(a == b)
    })?;
    linker.func_wrap(
        "env",
        "emscripten_notify_memory_growth",
        |_c: C<'_>, _a: u32| {},
    )?;
    Ok(())
}
