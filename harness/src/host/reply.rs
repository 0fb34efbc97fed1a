//! How a stream ends: local replies (who sees them), resets, traps, and the final
//! `on_log`/`on_done`/`on_delete` sequence that produces the `Outcome`.
//! See `stream.rs` for the Envoy sources of these rules.

use super::context::Access;
use super::error::HarnessError;
use super::grpc::convert_local_reply;
use super::headers::HeaderMap;
use super::outcome::{LocalReply, Outcome};
use super::shared::{Dir, StreamAction};

/// `%RESPONSE_CODE_DETAILS%` of Envoy's buffer-limit replies.
const REQUEST_TOO_LARGE: &str = "request_payload_too_large";
const RESPONSE_TOO_LARGE: &str = "response_payload_too_large";
use super::state::HostState;
use super::stream::{Chunk, Pos, Step, Verdict, dir_of};

/// Response headers of a local reply in Envoy's order (`Utility::encodeLocalReply`,
/// checked by `tests/probe_differential.rs`): `:status`, the filter's headers, then
/// for a non-empty body `content-length` and, when the filter set no content type,
/// `content-type: text/plain`. `reply.headers` already ends with that added
/// `content-type` (see `imports.rs`); a filter that itself passed exactly one
/// `content-type: text/plain` as its last header is indistinguishable from it.
/// On a gRPC request the reply is then converted (`grpc.rs`).
fn local_reply_headers(reply: &LocalReply, grpc: bool) -> HeaderMap {
    let mut map = HeaderMap::new();
    map.add(b":status", reply.status.to_string().as_bytes());
    let is_type = |(k, _): &&(String, String)| k == "content-type";
    let added_type = !reply.body.is_empty()
        && reply.headers.iter().filter(is_type).count() == 1
        && reply
            .headers
            .last()
            .is_some_and(|(k, v)| k == "content-type" && v == "text/plain");
    let own = reply.headers.len() - usize::from(added_type);
    for (k, v) in reply.headers.iter().take(own) {
        map.add(k.as_bytes(), v.as_bytes());
    }
    if !reply.body.is_empty() {
        map.add(b"content-length", reply.body.len().to_string().as_bytes());
    }
    if added_type {
        map.add(b"content-type", b"text/plain");
    }
    if grpc {
        convert_local_reply(reply, &mut map);
    }
    map
}

/// The body the client gets with a local reply: none on a gRPC request
/// (trailers-only response, `Utility::encodeLocalReply`).
fn local_reply_body(reply: &LocalReply, grpc: bool) -> Vec<u8> {
    if grpc { Vec::new() } else { reply.body.clone() }
}

impl HostState {
    /// Records a trap as the stream's result and drops its contexts.
    pub(crate) fn fail_stream(&mut self, sid: u64, err: HarnessError) {
        self.traps.push(err.clone());
        self.drop_contexts(sid);
        if let Some(run) = self.run_mut(sid) {
            run.result = Some(Err(err));
            run.pos = Pos::Done;
        }
    }

    /// Destroys the stream's contexts (`Context::~Context`): their ids are gone and
    /// the http calls they dispatched are cancelled, never to be answered.
    pub(crate) fn drop_contexts(&mut self, sid: u64) {
        let slots = self
            .streams
            .get(&sid)
            .map(|r| r.slots.clone())
            .unwrap_or_default();
        for slot in slots {
            if let (Some(vm), Some(ctx)) = (self.vms.get_mut(slot.vm), slot.ctx) {
                vm.store.data_mut().contexts.remove(&ctx);
            }
        }
        self.shared
            .borrow_mut()
            .calls
            .retain(|_, c| c.call.stream != Some(sid));
    }

    /// Applies an action requested from outside the stream's own callback.
    pub(crate) fn apply_action(&mut self, sid: u64, from: usize, action: StreamAction) {
        let Some(run) = self.streams.get_mut(&sid) else {
            return;
        };
        if run.result.is_some() {
            return;
        }
        match action {
            StreamAction::Resume(d) => {
                let at = match run.pos {
                    Pos::Decode(f, _) => Some(f),
                    Pos::Encode(i, _) => run.enc_order.get(i).copied(),
                    _ => None,
                };
                if run.paused && dir_of(run.pos) == Some(d) && at == Some(from) {
                    run.paused = false;
                }
            }
            StreamAction::LocalReply(reply) => self.begin_local_reply(sid, reply),
            StreamAction::Close => self.reset_stream(sid),
        }
    }

    /// Filter `f` buffered more than the stream's buffer limit on the `dir` side
    /// (envoy `source/common/http/filter_manager.cc` `requestDataTooLarge`,
    /// `responseDataTooLarge`, on a buffer the filter stopped with
    /// `StopIterationAndBuffer`): on the request a `413 Payload Too Large` local
    /// reply (details `request_payload_too_large`); on the response a `500`
    /// local reply (details `response_payload_too_large`) if the filter still
    /// holds the response headers, else the client has them and the stream is
    /// reset. Later filters in encode order are assumed to have let the headers
    /// through, as most do.
    pub(crate) fn payload_too_large(&mut self, sid: u64, f: usize, dir: Dir) {
        let Some(run) = self.streams.get_mut(&sid) else {
            return;
        };
        run.state.borrow_mut().body_mut(dir).clear();
        let reply = |status, body: &str, details: &str| LocalReply {
            status,
            body: body.as_bytes().to_vec(),
            headers: vec![("content-type".to_owned(), "text/plain".to_owned())],
            details: details.to_owned(),
            grpc_status: None,
            filter: "envoy".to_owned(),
        };
        if dir == Dir::Request {
            self.begin_local_reply(sid, reply(413, "Payload Too Large", REQUEST_TOO_LARGE));
            return;
        }
        let holds_headers = run
            .slots
            .get(f)
            .and_then(|s| Some((self.vms.get(s.vm)?, s.ctx?)))
            .and_then(|(vm, ctx)| vm.store.data().contexts.get(&ctx).map(|c| c.access))
            .is_some_and(|a| a.resp_headers);
        if holds_headers {
            let r = reply(500, "Internal Server Error", RESPONSE_TOO_LARGE);
            self.begin_local_reply(sid, r);
            return;
        }
        run.reset = true;
        run.details = Some(RESPONSE_TOO_LARGE.to_owned());
        run.final_body = super::stream::join(run.outbox.drain(..));
        run.inbox.clear();
        run.paused = false;
        run.pos = Pos::Finalize;
    }

    pub(crate) fn reset_stream(&mut self, sid: u64) {
        if let Some(run) = self.run_mut(sid) {
            run.reset = true;
            run.paused = false;
            run.pos = Pos::Finalize;
            let mut st = run.state.borrow_mut();
            st.resp_headers = HeaderMap::new();
        }
    }

    /// The downstream client resets stream `sid` (`PendingStream::cancel`): Envoy's
    /// `ActiveStream::onResetStream` → `doDeferredStreamDestroy`, i.e. `finalize`
    /// with nothing sent to the client. A stream that already completed keeps its
    /// outcome.
    pub(crate) fn cancel(&mut self, sid: u64) -> Result<Outcome, HarnessError> {
        let run = self
            .streams
            .get_mut(&sid)
            .ok_or_else(|| HarnessError::InvalidArgument(format!("no stream {sid}")))?;
        if run.result.is_none() {
            run.reset = true;
            run.cancelled = true;
            run.paused = false;
            run.pos = Pos::Finalize;
            run.inbox.clear();
            run.outbox.clear();
            run.final_body.clear();
            {
                let mut st = run.state.borrow_mut();
                st.resp_headers = HeaderMap::new();
                st.resp_trailers = HeaderMap::new();
            }
            self.finalize(sid);
            self.pump();
            self.traps.clear();
        }
        let run = self
            .streams
            .remove(&sid)
            .ok_or(HarnessError::StillPaused(sid))?;
        run.result.unwrap_or(Err(HarnessError::StillPaused(sid)))
    }

    /// Starts sending a local reply (see module docs for which filters see it).
    pub(crate) fn begin_local_reply(&mut self, sid: u64, reply: LocalReply) {
        let Some(run) = self.streams.get_mut(&sid) else {
            return;
        };
        let headers = local_reply_headers(&reply, run.grpc);
        let body = local_reply_body(&reply, run.grpc);
        match run.pos {
            Pos::Decode(..) | Pos::Upstream => {
                {
                    let mut st = run.state.borrow_mut();
                    st.resp_headers = headers;
                    st.resp_trailers = HeaderMap::new();
                    st.resp_body.clear();
                    st.response_started = true;
                }
                run.inbox.clear();
                run.outbox.clear();
                if !body.is_empty() {
                    run.inbox.push_back(Chunk {
                        data: body,
                        eos: true,
                    });
                }
                run.has_trailers = false;
                run.enc_order = (0..run.slots.len())
                    .rev()
                    .filter(|f| run.slots.get(*f).is_some_and(|s| s.ctx.is_some()))
                    .collect();
                run.local_reply = Some(reply);
                run.pos = Pos::Encode(0, Step::Headers);
                run.paused = false;
                let filters: Vec<usize> = (0..run.slots.len()).collect();
                for f in filters {
                    self.set_access(sid, f, |a| *a = Access::default());
                }
            }
            Pos::Encode(..) => {
                run.state.borrow_mut().resp_headers = headers;
                run.final_body = body;
                run.local_reply = Some(reply);
                run.pos = Pos::Finalize;
                run.paused = false;
            }
            Pos::Finalize | Pos::Done => {}
        }
    }

    /// True once stream `sid` has its result (or is gone).
    fn ended(&self, sid: u64) -> bool {
        self.streams.get(&sid).is_none_or(|r| r.result.is_some())
    }

    /// Filter `f`'s context, if its VM is alive: the one the stream created, else
    /// a new one (`Context::log` runs `onCreate` for a filter the stream never
    /// reached, e.g. behind a local reply or a pause).
    fn context_for_log(&mut self, sid: u64, f: usize) -> Option<u32> {
        let slot = self.streams.get(&sid)?.slots.get(f)?.clone();
        if self.vms.get(slot.vm).is_none_or(|v| v.failed) {
            return None;
        }
        slot.ctx
            .or_else(|| self.create_context(sid, f, Access::all()))
    }

    /// How the filters of a stream end, then the outcome. Envoy
    /// (`source/common/http/conn_manager_impl.cc` `doDeferredStreamDestroy`, on
    /// completion and on a downstream reset alike) runs `filter_manager_.log()`,
    /// then `destroyFilters()`, then deletes the stream later:
    /// 1. every wasm filter is an access-log handler (`filters/http/wasm/config.cc`
    ///    `addAccessLogHandler`): in chain order `Context::log` creates the context
    ///    of a filter the stream never reached and calls `proxy_on_log`;
    /// 2. `Context::onDestroy`, chain order: `proxy_on_done`, `proxy_on_delete`;
    /// 3. `Context::~Context` cancels the context's pending http calls: they are
    ///    never answered, and the context ids are gone (`set_effective_context`
    ///    answers `BadArgument`).
    ///
    /// A failed VM gets none of these (`ContextBase::isFailed`).
    pub(crate) fn finalize(&mut self, sid: u64) {
        let Some(n) = self.streams.get(&sid).map(|r| r.slots.len()) else {
            return;
        };
        let mut created = Vec::with_capacity(n);
        for f in 0..n {
            let Some(ctx) = self.context_for_log(sid, f) else {
                if self.ended(sid) {
                    return;
                }
                continue;
            };
            created.push((f, ctx));
            self.set_access(sid, f, |a| *a = Access::all());
            let args = [u64::from(ctx)];
            if self.invoke(sid, f, None, "proxy_on_log", &args) == Verdict::Stopped
                && self.ended(sid)
            {
                return;
            }
        }
        for (f, ctx) in created {
            for callback in ["proxy_on_done", "proxy_on_delete"] {
                let args = [u64::from(ctx)];
                if self.invoke(sid, f, None, callback, &args) == Verdict::Stopped && self.ended(sid)
                {
                    return;
                }
            }
        }
        self.drop_contexts(sid);
        let logs = {
            let shared = self.shared.borrow();
            shared
                .logs
                .iter()
                .filter(|l| l.stream == Some(sid))
                .cloned()
                .collect()
        };
        let Some(run) = self.streams.get_mut(&sid) else {
            return;
        };
        let st = run.state.borrow();
        let mut response_headers = st.resp_headers.clone();
        super::hop::client_response(&mut response_headers);
        let outcome = Outcome {
            stream: sid,
            worker: run.worker,
            local_reply: run.local_reply.clone(),
            upstream_request: run.upstream_request.clone(),
            response_headers,
            response_body: run.final_body.clone(),
            response_trailers: st.resp_trailers.clone(),
            reset: run.reset,
            cancelled: run.cancelled,
            details: run
                .local_reply
                .as_ref()
                .map(|r| r.details.clone())
                .or_else(|| run.details.clone()),
            logs,
            fuel: run.slots.iter().map(|s| (s.name.clone(), s.fuel)).collect(),
            filter_state: st
                .filter_state
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        drop(st);
        run.result = Some(Ok(outcome));
        run.pos = Pos::Done;
    }
}
