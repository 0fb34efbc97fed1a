//! The filter-chain driver for one HTTP stream: decode path in chain order, the
//! test's upstream, encode path in reverse order, then `on_log`/`on_done`/`on_delete`.
//!
//! Rules modelled (sources cited where used):
//! * `Pause` from a headers callback stops headers and body until resumed
//!   (`StopAllIterationAndWatermark`, SPEC §A.2); body data that arrived meanwhile is
//!   delivered as one chunk on resume.
//! * `Pause` from a body callback = `StopIterationAndBuffer`: the next body call
//!   sees the whole buffer (envoy `source/extensions/common/wasm/context.cc` `decodeData`).
//! * A local reply takes effect after the callback returns and stops the decode
//!   chain; it is then encoded through every filter whose context was created,
//!   in reverse order (envoy `source/common/http/filter_manager.cc`
//!   `sendLocalReplyViaFilterChain` → `encodeHeaders(nullptr, …)`; wasm filters
//!   without `in_vm_context_created_` skip it, `context.cc` `encodeHeaders`). A
//!   local reply sent while encoding goes straight to the client
//!   (`sendDirectLocalReply`).
//! * A failed VM (FAIL_CLOSED) answers `503`, empty body, details
//!   `wasm_fail_stream` (SPEC §G.3, `context.cc` `failStream`).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use super::context::{Access, HttpCtx, StreamState};
use super::error::HarnessError;
use super::headers::HeaderMap;
use super::outcome::{LocalReply, Outcome, UpstreamRequest};
use super::shared::{Dir, StreamAction};
use super::state::HostState;

/// A body chunk on its way through the chain.
#[derive(Debug, Clone, Default)]
pub(crate) struct Chunk {
    pub data: Vec<u8>,
    pub eos: bool,
}

/// Where a filter is within one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Headers,
    Body,
    BodyFlush,
    Trailers,
    Advance,
}

/// Where the stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pos {
    Decode(usize, Step),
    Upstream,
    Encode(usize, Step),
    Finalize,
    Done,
}

/// One filter of the chain as this stream sees it.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    pub vm: usize,
    pub ctx: Option<u32>,
    pub fuel: u64,
    pub name: String,
}

/// A stream in flight (or finished, waiting for `finish()`).
pub(crate) struct StreamRun {
    pub chain: usize,
    pub worker: usize,
    pub state: Rc<RefCell<StreamState>>,
    pub slots: Vec<Slot>,
    pub pos: Pos,
    pub paused: bool,
    pub inbox: VecDeque<Chunk>,
    pub outbox: Vec<Chunk>,
    pub has_trailers: bool,
    pub enc_order: Vec<usize>,
    pub upstream_request: Option<UpstreamRequest>,
    pub local_reply: Option<LocalReply>,
    pub final_body: Vec<u8>,
    pub reset: bool,
    /// The downstream client reset the stream (`PendingStream::cancel`).
    pub cancelled: bool,
    /// The client's request is gRPC: local replies are converted (`grpc.rs`).
    pub grpc: bool,
    /// `%RESPONSE_CODE_DETAILS%` of an end without a local reply (a buffer
    /// limit reset).
    pub details: Option<String>,
    pub result: Option<Result<Outcome, HarnessError>>,
}

/// What a callback decided, after its deferred actions were applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Continue,
    Pause,
    Stopped,
}

pub(crate) fn dir_of(pos: Pos) -> Option<Dir> {
    match pos {
        Pos::Decode(..) => Some(Dir::Request),
        Pos::Encode(..) => Some(Dir::Response),
        _ => None,
    }
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

pub(crate) fn join(chunks: impl IntoIterator<Item = Chunk>) -> Vec<u8> {
    chunks.into_iter().flat_map(|c| c.data).collect()
}

impl HostState {
    pub(crate) fn run_mut(&mut self, sid: u64) -> Option<&mut StreamRun> {
        self.streams.get_mut(&sid)
    }

    /// Sets the access flags of filter `f`'s context in stream `sid`.
    pub(crate) fn set_access(&mut self, sid: u64, f: usize, edit: impl FnOnce(&mut Access)) {
        let Some(slot) = self.streams.get(&sid).and_then(|r| r.slots.get(f)) else {
            return;
        };
        let (vm, ctx) = (slot.vm, slot.ctx);
        if let (Some(vm), Some(ctx)) = (self.vms.get_mut(vm), ctx)
            && let Some(c) = vm.store.data_mut().contexts.get_mut(&ctx)
        {
            edit(&mut c.access);
        }
    }

    /// Runs stream `sid` until it pauses or completes.
    pub(crate) fn run_stream(&mut self, sid: u64) {
        loop {
            let Some(run) = self.streams.get(&sid) else {
                return;
            };
            if run.paused || run.result.is_some() {
                return;
            }
            match run.pos {
                Pos::Decode(f, step) => self.decode_step(sid, f, step),
                Pos::Upstream => self.upstream_step(sid),
                Pos::Encode(i, step) => self.encode_step(sid, i, step),
                Pos::Finalize => self.finalize(sid),
                Pos::Done => return,
            }
        }
    }

    /// Calls a stream callback of filter `f` and applies its deferred actions.
    pub(crate) fn invoke(
        &mut self,
        sid: u64,
        f: usize,
        dir: Option<Dir>,
        name: &str,
        args: &[u64],
    ) -> Verdict {
        let Some(slot) = self.streams.get(&sid).and_then(|r| r.slots.get(f)).cloned() else {
            return Verdict::Stopped;
        };
        let ctx = slot.ctx.unwrap_or(0);
        let Some(vm) = self.vms.get_mut(slot.vm) else {
            return Verdict::Stopped;
        };
        let called = vm.call(ctx, Some(sid), name, args);
        let (ret, fuel) = match called {
            Ok(r) => r,
            Err(failure) => {
                let err = HarnessError::Trap {
                    filter: slot.name.clone(),
                    callback: failure.callback,
                    message: failure.message,
                    panic: failure.panic,
                };
                self.fail_stream(sid, err);
                return Verdict::Stopped;
            }
        };
        if let Some(s) = self.run_mut(sid).and_then(|r| r.slots.get_mut(f)) {
            s.fuel = s.fuel.saturating_add(fuel);
        }
        let mut verdict = if ret.is_some_and(|r| r != 0) {
            Verdict::Pause
        } else {
            Verdict::Continue
        };
        let mine: Vec<(usize, StreamAction)> = {
            let mut shared = self.shared.borrow_mut();
            let (mine, rest): (Vec<_>, Vec<_>) = shared.actions.drain(..).partition(|a| a.0 == sid);
            shared.actions = rest;
            mine.into_iter().map(|(_, f, a)| (f, a)).collect()
        };
        for (from, action) in mine {
            match action {
                StreamAction::LocalReply(reply) => {
                    self.begin_local_reply(sid, reply);
                    return Verdict::Stopped;
                }
                StreamAction::Close => {
                    self.reset_stream(sid);
                    return Verdict::Stopped;
                }
                StreamAction::Resume(d) => {
                    if Some(d) == dir && from == f && verdict == Verdict::Pause {
                        verdict = Verdict::Continue;
                    }
                }
            }
        }
        verdict
    }

    /// Creates filter `f`'s HTTP context in its VM (`proxy_on_context_create`);
    /// `None` when the stream or the VM is gone or the callback stopped the stream.
    pub(crate) fn create_context(&mut self, sid: u64, f: usize, access: Access) -> Option<u32> {
        let run = self.streams.get(&sid)?;
        let state = Rc::clone(&run.state);
        let vm = run.slots.get(f)?.vm;
        let data = self.vms.get_mut(vm)?.store.data_mut();
        let id = data.next_ctx;
        data.next_ctx = data.next_ctx.wrapping_add(1);
        let root = data.root_ctx;
        let ctx = HttpCtx {
            stream: state,
            stream_id: sid,
            filter: f,
            access,
        };
        data.contexts.insert(id, ctx);
        if let Some(s) = self.run_mut(sid).and_then(|r| r.slots.get_mut(f)) {
            s.ctx = Some(id);
        }
        let create = [u64::from(id), u64::from(root)];
        match self.invoke(sid, f, None, "proxy_on_context_create", &create) {
            Verdict::Stopped => None,
            _ => Some(id),
        }
    }

    fn set_pos(&mut self, sid: u64, pos: Pos, paused: bool) {
        if let Some(run) = self.run_mut(sid) {
            run.pos = pos;
            run.paused = paused;
        }
    }

    fn decode_step(&mut self, sid: u64, f: usize, step: Step) {
        let Some(run) = self.streams.get_mut(&sid) else {
            return;
        };
        let Some(slot) = run.slots.get(f).cloned() else {
            run.pos = Pos::Upstream;
            return;
        };
        let state = Rc::clone(&run.state);
        match step {
            Step::Headers => {
                if self.vms.get(slot.vm).is_none_or(|vm| vm.failed) {
                    let reply = LocalReply {
                        status: 503,
                        body: Vec::new(),
                        headers: Vec::new(),
                        details: "wasm_fail_stream".to_owned(),
                        grpc_status: Some(14),
                        filter: slot.name,
                    };
                    self.begin_local_reply(sid, reply);
                    return;
                }
                let eos = run.inbox.is_empty() && !run.has_trailers;
                let access = Access {
                    req_headers: true,
                    ..Access::default()
                };
                let Some(id) = self.create_context(sid, f, access) else {
                    return;
                };
                let n = count(state.borrow().req_headers.len());
                let args = [u64::from(id), n, u64::from(eos)];
                match self.invoke(
                    sid,
                    f,
                    Some(Dir::Request),
                    "proxy_on_request_headers",
                    &args,
                ) {
                    Verdict::Continue => {
                        self.set_access(sid, f, |a| a.req_headers = false);
                        self.set_pos(sid, Pos::Decode(f, Step::Body), false);
                    }
                    Verdict::Pause => {
                        if let Some(run) = self.run_mut(sid) {
                            let merged: Vec<Chunk> = run.inbox.drain(..).collect();
                            if !merged.is_empty() {
                                let eos = merged.last().is_some_and(|c| c.eos);
                                run.inbox.push_back(Chunk {
                                    data: join(merged),
                                    eos,
                                });
                            }
                        }
                        self.set_pos(sid, Pos::Decode(f, Step::Body), true);
                    }
                    Verdict::Stopped => {}
                }
            }
            step => self.data_step(
                sid,
                f,
                Dir::Request,
                step,
                |s| Pos::Decode(f, s),
                Pos::Decode(f + 1, Step::Headers),
            ),
        }
    }

    fn upstream_step(&mut self, sid: u64) {
        let Some(run) = self.streams.get_mut(&sid) else {
            return;
        };
        let request = {
            let st = run.state.borrow();
            UpstreamRequest {
                headers: st.req_headers.entries().to_vec(),
                body: join(run.inbox.drain(..)),
                trailers: st.req_trailers.entries().to_vec(),
            }
        };
        let upstream = self.chains.get(run.chain).map(|c| Rc::clone(&c.upstream));
        let response = upstream.map(|u| u(&request)).unwrap_or_default();
        run.upstream_request = Some(request);
        {
            let mut st = run.state.borrow_mut();
            let mut map = HeaderMap::new();
            map.add(b":status", response.status.to_string().as_bytes());
            super::hop::upstream_response(&response.headers, &mut map);
            st.resp_headers = map;
            st.resp_trailers = HeaderMap::from_pairs(&response.trailers);
            st.response_started = true;
        }
        run.has_trailers = !response.trailers.is_empty();
        let mut rest = response.body.as_slice();
        let sizes = if response.chunks.is_empty() {
            vec![rest.len()]
        } else {
            response.chunks.clone()
        };
        let n = sizes.len();
        for (i, size) in sizes.into_iter().enumerate() {
            let (data, tail) = rest.split_at(size.min(rest.len()));
            rest = tail;
            if !data.is_empty() || (i + 1 == n && i > 0) {
                run.inbox.push_back(Chunk {
                    data: data.to_vec(),
                    eos: i + 1 == n && !run.has_trailers,
                });
            }
        }
        run.enc_order = (0..run.slots.len())
            .rev()
            .filter(|f| run.slots.get(*f).is_some_and(|s| s.ctx.is_some()))
            .collect();
        run.pos = Pos::Encode(0, Step::Headers);
    }

    fn encode_step(&mut self, sid: u64, i: usize, step: Step) {
        let Some(run) = self.streams.get_mut(&sid) else {
            return;
        };
        let Some(f) = run.enc_order.get(i).copied() else {
            run.final_body = join(run.inbox.drain(..));
            run.pos = Pos::Finalize;
            return;
        };
        let state = Rc::clone(&run.state);
        let ctx = u64::from(run.slots.get(f).and_then(|s| s.ctx).unwrap_or(0));
        let here = |s| Pos::Encode(i, s);
        match step {
            Step::Headers => {
                let eos = run.inbox.is_empty() && !run.has_trailers;
                self.set_access(sid, f, |a| a.resp_headers = true);
                let n = count(state.borrow().resp_headers.len());
                let args = [ctx, n, u64::from(eos)];
                match self.invoke(
                    sid,
                    f,
                    Some(Dir::Response),
                    "proxy_on_response_headers",
                    &args,
                ) {
                    Verdict::Continue => {
                        self.set_access(sid, f, |a| a.resp_headers = false);
                        self.set_pos(sid, here(Step::Body), false);
                    }
                    Verdict::Pause => self.set_pos(sid, here(Step::Body), true),
                    Verdict::Stopped => {}
                }
            }
            step => self.data_step(
                sid,
                f,
                Dir::Response,
                step,
                here,
                Pos::Encode(i + 1, Step::Headers),
            ),
        }
    }

    /// The body, body-flush, trailers and advance steps of filter `f` (slot
    /// index) on the `dir` path, alike on both paths; `at` places a step of
    /// this filter, `next` is where the next filter starts.
    fn data_step(
        &mut self,
        sid: u64,
        f: usize,
        dir: Dir,
        step: Step,
        at: impl Fn(Step) -> Pos,
        next: Pos,
    ) {
        let Some(run) = self.streams.get_mut(&sid) else {
            return;
        };
        let state = Rc::clone(&run.state);
        let ctx = u64::from(run.slots.get(f).and_then(|s| s.ctx).unwrap_or(0));
        let (body_callback, trailers_callback) = match dir {
            Dir::Request => ("proxy_on_request_body", "proxy_on_request_trailers"),
            Dir::Response => ("proxy_on_response_body", "proxy_on_response_trailers"),
        };
        match step {
            // Each path has its own headers step; the callers run it.
            Step::Headers => {}
            Step::Body => {
                let Some(chunk) = run.inbox.pop_front() else {
                    run.pos = at(Step::Trailers);
                    return;
                };
                let more = !run.inbox.is_empty();
                let limit = self.buffer_limit;
                let (len, over) = {
                    let mut st = state.borrow_mut();
                    let body = st.body_mut(dir);
                    // Bytes held here were buffered by this filter's `Pause`: new
                    // data joins them first (envoy `context.cc` `decodeData` →
                    // `addDecodedData`), past the limit the filter is not called.
                    let over = !body.is_empty() && body.len() + chunk.data.len() > limit;
                    body.extend_from_slice(&chunk.data);
                    (count(body.len()), over)
                };
                if over {
                    self.payload_too_large(sid, f, dir);
                    return;
                }
                self.set_access(sid, f, |a| a.set_body(dir, true));
                let args = [ctx, len, u64::from(chunk.eos)];
                match self.invoke(sid, f, Some(dir), body_callback, &args) {
                    Verdict::Continue => {
                        let data = std::mem::take(state.borrow_mut().body_mut(dir));
                        self.set_access(sid, f, |a| a.set_body(dir, false));
                        if let Some(run) = self.run_mut(sid) {
                            run.outbox.push(Chunk {
                                data,
                                eos: chunk.eos,
                            });
                        }
                    }
                    Verdict::Pause if state.borrow_mut().body_mut(dir).len() > limit => {
                        self.payload_too_large(sid, f, dir);
                    }
                    Verdict::Pause if !more => self.set_pos(sid, at(Step::BodyFlush), true),
                    Verdict::Pause | Verdict::Stopped => {}
                }
            }
            Step::BodyFlush => {
                let data = std::mem::take(state.borrow_mut().body_mut(dir));
                let eos = !run.has_trailers;
                run.outbox.push(Chunk { data, eos });
                run.pos = at(Step::Trailers);
                self.set_access(sid, f, |a| a.set_body(dir, false));
            }
            Step::Trailers => {
                if !run.has_trailers {
                    run.pos = at(Step::Advance);
                    return;
                }
                self.set_access(sid, f, |a| a.set_trailers(dir, true));
                let n = count(state.borrow().trailers(dir).len());
                match self.invoke(sid, f, Some(dir), trailers_callback, &[ctx, n]) {
                    Verdict::Continue => {
                        self.set_access(sid, f, |a| a.set_trailers(dir, false));
                        self.set_pos(sid, at(Step::Advance), false);
                    }
                    Verdict::Pause => self.set_pos(sid, at(Step::Advance), true),
                    Verdict::Stopped => {}
                }
            }
            Step::Advance => {
                let chunks: Vec<Chunk> = run.outbox.drain(..).collect();
                run.inbox = chunks
                    .into_iter()
                    .filter(|c| !c.data.is_empty() || c.eos)
                    .collect();
                run.pos = next;
            }
        }
    }
}
