//! Network (L4) filters: a downstream connection through a chain of wasm
//! network filters and Envoy's `tcp_proxy`, as Envoy 1.40 drives them.
//!
//! Sources: envoy `source/common/network/filter_manager_impl.cc`
//! (`onContinueReading`, `onWrite`), `source/extensions/common/wasm/context.cc`
//! (`onNewConnection`, `onData`, `onWrite`, `onEvent`, `onCloseTCP`,
//! `continueStream`, `closeStream`), proxy-wasm-cpp-host `src/context.cc`
//! (`onNetworkNewConnection`, `onDownstreamData`: 0 is `Continue`, anything else
//! `StopIteration`):
//! * reading starts at the first filter each time bytes (or the client's FIN)
//!   arrive; a filter not yet reached gets its context and
//!   `proxy_on_new_connection` first; each filter gets
//!   `proxy_on_downstream_data(ctx, size, end_of_stream)` with the whole
//!   connection read buffer (bytes a stopping filter left there are delivered
//!   again with the next ones); `StopIteration` ends the pass; past the last
//!   filter `tcp_proxy` connects (once) and takes the buffer upstream;
//!   `proxy_continue_stream(Downstream)` resumes the pass after that filter;
//! * bytes from the upstream go through the filters that have a context in
//!   reverse order (`proxy_on_upstream_data`); a filter that stops keeps them,
//!   and they come again with the next ones; with the upstream's FIN
//!   (end of stream) each filter then gets
//!   `proxy_on_upstream_connection_close(ctx, Unknown)`;
//! * the connection's close reaches every filter with a context, in order:
//!   `proxy_on_downstream_connection_close(ctx, Local|Remote)` then (Envoy
//!   `onCloseTCP`) `proxy_on_done`, `proxy_on_log`, `proxy_on_delete`;
//! * `proxy_close_stream(Downstream|Upstream)` closes the downstream connection
//!   (`Local`), `proxy_continue_stream(Upstream)` is `Unimplemented`; a trap
//!   closes the connection (`failStream(Downstream)`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::context::StreamState;
use super::error::HarnessError;
use super::state::HostState;
use super::stream::Slot;
use super::vm::CallFailure;

/// `tcp_proxy`'s per-connection cluster override (a `set_envoy_filter_state` key).
pub(crate) const TCP_PROXY_CLUSTER: &str = "envoy.tcp_proxy.cluster";

/// Who closed the connection (proxy-wasm `CloseType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseType {
    /// 0
    Unknown,
    /// 1: the proxy closed it (a filter, `tcp_proxy` after the upstream went).
    Local,
    /// 2: the client closed (reset) it.
    Remote,
}

impl CloseType {
    fn code(self) -> u64 {
        match self {
            Self::Unknown => 0,
            Self::Local => 1,
            Self::Remote => 2,
        }
    }
}

/// The read and write buffers of a connection, shared with its contexts.
#[derive(Debug, Default)]
pub(crate) struct NetBufs {
    /// The connection's read buffer (client bytes not yet taken upstream).
    pub downstream: Vec<u8>,
    /// Upstream bytes not yet written to the client.
    pub upstream: Vec<u8>,
}

/// One network context of a VM.
#[derive(Debug, Clone)]
pub(crate) struct NetCtx {
    pub conn: u64,
    pub filter: usize,
    pub state: Rc<RefCell<StreamState>>,
    pub bufs: Rc<RefCell<NetBufs>>,
    /// Buffer 2 / 3 readable now (Envoy keeps the pointer after `StopIteration`).
    pub down_access: bool,
    pub up_access: bool,
}

/// An action a network context asked for, applied after its VM call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnAction {
    ResumeDownstream,
    Close,
}

/// A connection in flight or closed.
pub(crate) struct ConnRun {
    pub worker: usize,
    pub state: Rc<RefCell<StreamState>>,
    pub bufs: Rc<RefCell<NetBufs>>,
    pub slots: Vec<Slot>,
    /// Where the read pass stopped (`Some(f)`: filter `f` returned `StopIteration`).
    pub read_stopped_at: Option<usize>,
    /// Filter `f` stopped in `proxy_on_new_connection`: Envoy reads nothing
    /// more from the client until it resumes; what the client sends waits in
    /// `socket` (and `socket_fin`).
    pub blocked_at: Option<usize>,
    pub socket: Vec<u8>,
    pub socket_fin: bool,
    /// `tcp_proxy` connected upstream, to this cluster (`None`: its own).
    pub connected: Option<Option<String>>,
    pub client_fin: bool,
    pub upstream_got_fin: bool,
    pub client_got_fin: bool,
    pub to_upstream: Vec<u8>,
    pub upstream_taken: usize,
    pub to_client: Vec<u8>,
    pub closed: Option<CloseType>,
    pub error: Option<HarnessError>,
}

fn n64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl HostState {
    /// Calls network callback `name` of filter `f`; `Some(stop)` when it ran.
    fn net_call(&mut self, id: u64, f: usize, name: &str, args: &[u64]) -> Option<bool> {
        let slot = self.conns.get(&id)?.slots.get(f)?.clone();
        let ctx = slot.ctx?;
        let vm = self.vms.get_mut(slot.vm)?;
        if vm.failed {
            return None;
        }
        match vm.call(ctx, Some(id), name, args) {
            Ok((ret, fuel)) => {
                if let Some(s) = self.conns.get_mut(&id).and_then(|c| c.slots.get_mut(f)) {
                    s.fuel = s.fuel.saturating_add(fuel);
                }
                Some(ret.is_some_and(|r| r != 0))
            }
            Err(CallFailure {
                callback,
                message,
                panic,
            }) => {
                let err = HarnessError::Trap {
                    filter: slot.name,
                    callback,
                    message,
                    panic,
                };
                if let Some(c) = self.conns.get_mut(&id) {
                    c.error.get_or_insert(err);
                }
                self.close_conn(id, CloseType::Local);
                None
            }
        }
    }

    fn conn_open(&self, id: u64) -> bool {
        self.conns.get(&id).is_some_and(|c| c.closed.is_none())
    }

    fn net_access(&mut self, id: u64, f: usize, down: Option<bool>, up: Option<bool>) {
        let Some(slot) = self.conns.get(&id).and_then(|c| c.slots.get(f)).cloned() else {
            return;
        };
        if let (Some(vm), Some(ctx)) = (self.vms.get_mut(slot.vm), slot.ctx)
            && let Some(c) = vm.store.data_mut().net.get_mut(&ctx)
        {
            c.down_access = down.unwrap_or(c.down_access);
            c.up_access = up.unwrap_or(c.up_access);
        }
    }

    /// Applies the actions network contexts asked for during callbacks of `id`;
    /// true when the connection closed.
    fn conn_actions(&mut self, id: u64, f: usize, stopped: bool) -> (bool, bool) {
        let mine: Vec<(usize, ConnAction)> = {
            let mut shared = self.shared.borrow_mut();
            let (mine, rest): (Vec<_>, Vec<_>) =
                shared.conn_actions.drain(..).partition(|a| a.0 == id);
            shared.conn_actions = rest;
            mine.into_iter().map(|(_, f, a)| (f, a)).collect()
        };
        let mut resumed = false;
        for (from, action) in mine {
            match action {
                ConnAction::Close => {
                    self.close_conn(id, CloseType::Local);
                    return (true, false);
                }
                ConnAction::ResumeDownstream => resumed |= stopped && from == f,
            }
        }
        (false, resumed)
    }

    /// Creates filter `f`'s context and runs `proxy_on_new_connection`;
    /// `Some(stop)` when it ran.
    fn net_init(&mut self, id: u64, f: usize) -> Option<bool> {
        let (slot, state, bufs) = {
            let c = self.conns.get(&id)?;
            (
                c.slots.get(f)?.clone(),
                Rc::clone(&c.state),
                Rc::clone(&c.bufs),
            )
        };
        let vm = self.vms.get_mut(slot.vm)?;
        if vm.failed {
            return None;
        }
        let data = vm.store.data_mut();
        let ctx = data.next_ctx;
        data.next_ctx = data.next_ctx.wrapping_add(1);
        let root = data.root_ctx;
        data.net.insert(
            ctx,
            NetCtx {
                conn: id,
                filter: f,
                state,
                bufs,
                down_access: false,
                up_access: false,
            },
        );
        if let Some(s) = self.conns.get_mut(&id).and_then(|c| c.slots.get_mut(f)) {
            s.ctx = Some(ctx);
        }
        self.net_call(
            id,
            f,
            "proxy_on_context_create",
            &[u64::from(ctx), u64::from(root)],
        )?;
        self.net_call(id, f, "proxy_on_new_connection", &[u64::from(ctx)])
    }

    /// One read pass from filter `from` (`FilterManagerImpl::onContinueReading`).
    pub(crate) fn conn_read(&mut self, id: u64, from: usize) {
        let n = self.conns.get(&id).map_or(0, |c| c.slots.len());
        if let Some(c) = self.conns.get_mut(&id) {
            c.read_stopped_at = None;
        }
        let mut f = from;
        while f < n {
            if !self.conn_open(id) {
                return;
            }
            let has_ctx = self
                .conns
                .get(&id)
                .and_then(|c| c.slots.get(f))
                .is_some_and(|s| s.ctx.is_some());
            let failed = self
                .conns
                .get(&id)
                .and_then(|c| c.slots.get(f))
                .and_then(|s| self.vms.get(s.vm))
                .is_none_or(|v| v.failed);
            if failed {
                // A failed VM closed the connection when it trapped.
                f += 1;
                continue;
            }
            if !has_ctx {
                let stop = self.net_init(id, f).unwrap_or(false);
                let (closed, resumed) = self.conn_actions(id, f, stop);
                if closed || !self.conn_open(id) {
                    return;
                }
                if stop && !resumed {
                    if let Some(c) = self.conns.get_mut(&id) {
                        c.blocked_at = Some(f);
                    }
                    return;
                }
            }
            let (len, eos) = match self.conns.get(&id) {
                Some(c) => (c.bufs.borrow().downstream.len(), c.client_fin),
                None => return,
            };
            if len > 0 || eos {
                let ctx = self
                    .conns
                    .get(&id)
                    .and_then(|c| c.slots.get(f))
                    .and_then(|s| s.ctx)
                    .unwrap_or(0);
                self.net_access(id, f, Some(true), None);
                let args = [u64::from(ctx), n64(len), u64::from(eos)];
                let stop = self
                    .net_call(id, f, "proxy_on_downstream_data", &args)
                    .unwrap_or(false);
                let (closed, resumed) = self.conn_actions(id, f, stop);
                if closed || !self.conn_open(id) {
                    return;
                }
                if stop && !resumed {
                    self.stop_read(id, f);
                    return;
                }
                self.net_access(id, f, Some(false), None);
            }
            f += 1;
        }
        self.proxy_take(id);
    }

    fn stop_read(&mut self, id: u64, f: usize) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.read_stopped_at = Some(f);
        }
    }

    /// `tcp_proxy` at the end of the read chain: connects once (to the cluster
    /// the filter state names, if any) and takes the read buffer upstream.
    fn proxy_take(&mut self, id: u64) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.connected.is_none() {
            let cluster = c
                .state
                .borrow()
                .filter_state
                .get(TCP_PROXY_CLUSTER)
                .map(|v| String::from_utf8_lossy(v).into_owned());
            c.connected = Some(cluster);
        }
        let bytes = std::mem::take(&mut c.bufs.borrow_mut().downstream);
        c.to_upstream.extend_from_slice(&bytes);
        if c.client_fin {
            c.upstream_got_fin = true;
        }
    }

    /// Upstream bytes (and maybe its FIN) through the write filters.
    pub(crate) fn conn_write(&mut self, id: u64, bytes: &[u8], eos: bool) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        c.bufs.borrow_mut().upstream.extend_from_slice(bytes);
        let n = c.slots.len();
        for f in (0..n).rev() {
            if !self.conn_open(id) {
                return;
            }
            let Some(ctx) = self
                .conns
                .get(&id)
                .and_then(|c| c.slots.get(f))
                .and_then(|s| s.ctx)
            else {
                continue;
            };
            let len = self
                .conns
                .get(&id)
                .map_or(0, |c| c.bufs.borrow().upstream.len());
            self.net_access(id, f, None, Some(true));
            let args = [u64::from(ctx), n64(len), u64::from(eos)];
            let Some(stop) = self.net_call(id, f, "proxy_on_upstream_data", &args) else {
                continue;
            };
            if !stop {
                self.net_access(id, f, None, Some(false));
            }
            let (closed, _) = self.conn_actions(id, f, false);
            if closed {
                return;
            }
            if eos {
                let close = [u64::from(ctx), CloseType::Unknown.code()];
                self.net_call(id, f, "proxy_on_upstream_connection_close", &close);
                if self.conn_actions(id, f, false).0 {
                    return;
                }
            }
            if stop {
                return;
            }
        }
        if let Some(c) = self.conns.get_mut(&id) {
            let bytes = std::mem::take(&mut c.bufs.borrow_mut().upstream);
            c.to_client.extend_from_slice(&bytes);
            c.client_got_fin |= eos;
        }
    }

    /// Both sides sent their FIN through the proxy: `tcp_proxy` closes the
    /// connection.
    pub(crate) fn conn_maybe_done(&mut self, id: u64) {
        let both = self
            .conns
            .get(&id)
            .is_some_and(|c| c.closed.is_none() && c.upstream_got_fin && c.client_got_fin);
        if both {
            self.close_conn(id, CloseType::Local);
        }
    }

    /// Closes the downstream connection: every filter with a context gets the
    /// close, then `on_done`, `on_log`, `on_delete` (Envoy `onCloseTCP`).
    pub(crate) fn close_conn(&mut self, id: u64, how: CloseType) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.closed.is_some() {
            return;
        }
        c.closed = Some(how);
        let n = c.slots.len();
        for f in 0..n {
            let Some(ctx) = self
                .conns
                .get(&id)
                .and_then(|c| c.slots.get(f))
                .and_then(|s| s.ctx)
            else {
                continue;
            };
            let ctx = u64::from(ctx);
            self.net_call(
                id,
                f,
                "proxy_on_downstream_connection_close",
                &[ctx, how.code()],
            );
            for callback in ["proxy_on_done", "proxy_on_log", "proxy_on_delete"] {
                self.net_call(id, f, callback, &[ctx]);
            }
        }
        let slots = self
            .conns
            .get(&id)
            .map(|c| c.slots.clone())
            .unwrap_or_default();
        for slot in slots {
            if let (Some(vm), Some(ctx)) = (self.vms.get_mut(slot.vm), slot.ctx) {
                vm.store.data_mut().net.remove(&ctx);
            }
        }
        self.shared.borrow_mut().conn_actions.retain(|a| a.0 != id);
    }

    /// Applies actions asked for outside the connection's own callbacks (a tick,
    /// a queue, an http call answer).
    pub(crate) fn conn_pump(&mut self) {
        let actions: Vec<(u64, usize, ConnAction)> =
            std::mem::take(&mut self.shared.borrow_mut().conn_actions);
        for (id, f, action) in actions {
            match action {
                ConnAction::Close => self.close_conn(id, CloseType::Local),
                ConnAction::ResumeDownstream => self.conn_resume(id, f),
            }
        }
    }
}

impl HostState {
    /// Filter `f` resumes reading (`continueReading`): the pass goes on after
    /// it; a connection blocked at its new-connection callback reads again.
    fn conn_resume(&mut self, id: u64, f: usize) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.closed.is_some() {
            return;
        }
        if c.blocked_at == Some(f) {
            c.blocked_at = None;
            self.conn_read(id, f + 1);
            self.conn_client_read(id);
        } else if c.read_stopped_at == Some(f) {
            self.conn_read(id, f + 1);
        }
    }

    /// The client sent `bytes` (and maybe its FIN).
    pub(crate) fn conn_client(&mut self, id: u64, bytes: &[u8], fin: bool) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.socket.extend_from_slice(bytes);
            c.socket_fin |= fin;
        }
        self.conn_client_read(id);
    }

    /// Envoy reads what the client sent, unless reading is blocked.
    fn conn_client_read(&mut self, id: u64) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.blocked_at.is_some() || (c.socket.is_empty() && !c.socket_fin) {
            return;
        }
        let bytes = std::mem::take(&mut c.socket);
        c.bufs.borrow_mut().downstream.extend_from_slice(&bytes);
        c.client_fin |= std::mem::take(&mut c.socket_fin);
        self.conn_read(id, 0);
    }
}

/// Properties of a new connection.
pub(crate) struct NewConn {
    pub chain: usize,
    pub worker: Option<usize>,
    pub properties: HashMap<String, Vec<u8>>,
}
