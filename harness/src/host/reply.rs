//! How a stream ends: local replies (who sees them), resets, traps, and the final
//! `on_log`/`on_done`/`on_delete` sequence that produces the `Outcome`.
//! See `stream.rs` for the Envoy sources of these rules.

use super::context::Access;
use super::error::HarnessError;
use super::headers::HeaderMap;
use super::outcome::{LocalReply, Outcome};
use super::shared::StreamAction;
use super::state::HostState;
use super::stream::{Chunk, Pos, Step, Verdict, dir_of};

/// Response headers of a local reply in Envoy's order (`Utility::encodeLocalReply`,
/// checked by `tests/probe_differential.rs`): `:status`, the filter's headers, then
/// for a non-empty body `content-length` and, when the filter set no content type,
/// `content-type: text/plain`. `reply.headers` already ends with that added
/// `content-type` (see `imports.rs`); a filter that itself passed exactly one
/// `content-type: text/plain` as its last header is indistinguishable from it.
fn local_reply_headers(reply: &LocalReply) -> HeaderMap {
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
    map
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

    pub(crate) fn reset_stream(&mut self, sid: u64) {
        if let Some(run) = self.run_mut(sid) {
            run.reset = true;
            run.paused = false;
            run.pos = Pos::Finalize;
            let mut st = run.state.borrow_mut();
            st.resp_headers = HeaderMap::new();
        }
    }

    /// Starts sending a local reply (see module docs for which filters see it).
    pub(crate) fn begin_local_reply(&mut self, sid: u64, reply: LocalReply) {
        let Some(run) = self.streams.get_mut(&sid) else {
            return;
        };
        let headers = local_reply_headers(&reply);
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
                if !reply.body.is_empty() {
                    run.inbox.push_back(Chunk {
                        data: reply.body.clone(),
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
                run.final_body = reply.body.clone();
                run.local_reply = Some(reply);
                run.pos = Pos::Finalize;
                run.paused = false;
            }
            Pos::Finalize | Pos::Done => {}
        }
    }

    /// `on_log`, `on_done`, `on_delete` on every created context, then the outcome.
    pub(crate) fn finalize(&mut self, sid: u64) {
        let Some(run) = self.streams.get(&sid) else {
            return;
        };
        let created: Vec<(usize, u32)> = run
            .slots
            .iter()
            .enumerate()
            .filter_map(|(f, s)| s.ctx.map(|c| (f, c)))
            .collect();
        for (f, ctx) in &created {
            self.set_access(sid, *f, |a| *a = Access::all());
            for callback in ["proxy_on_log", "proxy_on_done", "proxy_on_delete"] {
                if self.invoke(sid, *f, None, callback, &[u64::from(*ctx)]) == Verdict::Stopped
                    && self.streams.get(&sid).is_some_and(|r| r.result.is_some())
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
        let outcome = Outcome {
            stream: sid,
            worker: run.worker,
            local_reply: run.local_reply.clone(),
            upstream_request: run.upstream_request.clone(),
            response_headers: st.resp_headers.clone(),
            response_body: run.final_body.clone(),
            response_trailers: st.resp_trailers.clone(),
            reset: run.reset,
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
