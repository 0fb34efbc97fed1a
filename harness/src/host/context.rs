//! Per-VM store data (`VmData`), HTTP contexts and per-stream state shared by the
//! filters of one chain.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

use super::headers::HeaderMap;
use super::lifecycle::VmRole;
use super::shared::{Dir, Shared};
use super::tcp::NetCtx;

/// Static facts about a loaded filter (what `plugin_*` properties report).
#[derive(Debug, Clone)]
pub(crate) struct Plugin {
    pub name: String,
    pub root_id: String,
    pub vm_id: String,
    pub config: Vec<u8>,
    pub vm_config: Vec<u8>,
}

/// Which maps and buffers an HTTP context may touch right now. Envoy keeps a
/// pointer per map and clears it when a callback returns `Continue`
/// (envoy `source/extensions/common/wasm/context.cc` `decodeHeaders` etc.);
/// a cleared map answers `BadArgument` (SPEC §A.3).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Access {
    pub req_headers: bool,
    pub req_trailers: bool,
    pub req_body: bool,
    pub resp_headers: bool,
    pub resp_trailers: bool,
    pub resp_body: bool,
}

impl Access {
    pub fn all() -> Self {
        Self {
            req_headers: true,
            req_trailers: true,
            req_body: true,
            resp_headers: true,
            resp_trailers: true,
            resp_body: true,
        }
    }

    /// Grants (`on`) or revokes access to the body of the `dir` side.
    pub fn set_body(&mut self, dir: Dir, on: bool) {
        match dir {
            Dir::Request => self.req_body = on,
            Dir::Response => self.resp_body = on,
        }
    }

    /// Grants (`on`) or revokes access to the trailers of the `dir` side.
    pub fn set_trailers(&mut self, dir: Dir, on: bool) {
        match dir {
            Dir::Request => self.req_trailers = on,
            Dir::Response => self.resp_trailers = on,
        }
    }
}

/// One HTTP context of a VM.
#[derive(Debug, Clone)]
pub(crate) struct HttpCtx {
    pub stream: Rc<RefCell<StreamState>>,
    pub stream_id: u64,
    pub filter: usize,
    pub access: Access,
}

/// Request/response data of one stream, shared by every filter of the chain.
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    pub connection_id: u64,
    pub req_headers: HeaderMap,
    pub req_trailers: HeaderMap,
    /// Body buffered at the filter currently decoding.
    pub req_body: Vec<u8>,
    pub resp_headers: HeaderMap,
    pub resp_trailers: HeaderMap,
    /// Body buffered at the filter currently encoding.
    pub resp_body: Vec<u8>,
    pub response_started: bool,
    /// Per-request property overrides (`a.b.c` → bytes).
    pub properties: HashMap<String, Vec<u8>>,
    /// Filter state (`wasm.<key>` → bytes).
    pub filter_state: BTreeMap<String, Vec<u8>>,
}

impl StreamState {
    /// The body buffered on the `dir` side.
    pub fn body_mut(&mut self, dir: Dir) -> &mut Vec<u8> {
        match dir {
            Dir::Request => &mut self.req_body,
            Dir::Response => &mut self.resp_body,
        }
    }

    /// The trailers of the `dir` side.
    pub fn trailers(&self, dir: Dir) -> &HeaderMap {
        match dir {
            Dir::Request => &self.req_trailers,
            Dir::Response => &self.resp_trailers,
        }
    }
}

/// What the VM is doing, for buffers only readable at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VmPhase {
    Init,
    VmStart,
    Configure,
    Running,
}

/// The data of one wasmtime `Store`: one VM of one filter.
pub(crate) struct VmData {
    pub shared: Rc<RefCell<Shared>>,
    pub plugin: Rc<Plugin>,
    pub vm_index: usize,
    pub role: VmRole,
    pub root_ctx: u32,
    pub next_ctx: u32,
    pub contexts: HashMap<u32, HttpCtx>,
    /// Network contexts (`tcp.rs`).
    pub net: HashMap<u32, NetCtx>,
    pub current: u32,
    pub effective: Option<u32>,
    pub phase: VmPhase,
    pub call_response: Option<(HeaderMap, Vec<u8>, HeaderMap)>,
    pub tick_period: Option<Duration>,
    pub next_tick: Option<Duration>,
    pub panic: Option<String>,
    pub stream_for_logs: Option<u64>,
    pub status: (u32, Vec<u8>),
    /// Last gRPC call and stream tokens handed out (`wasm.h` `nextGrpcCallId`).
    pub grpc_next: (u32, u32),
    /// What a gRPC callback may read (maps 4 and 5, buffer 5).
    pub grpc_receive: GrpcReceive,
    /// Calls from the guest into the host (hostcalls and WASI) so far.
    pub hostcalls: u64,
}

/// The gRPC data readable during a gRPC callback (envoy `context.cc`: the root
/// context's `grpc_receive_initial_metadata_`, `grpc_receive_trailing_metadata_`,
/// `grpc_receive_buffer_`).
#[derive(Debug, Default)]
pub(crate) struct GrpcReceive {
    pub initial: Option<HeaderMap>,
    pub trailing: Option<HeaderMap>,
    pub buffer: Option<Vec<u8>>,
}

impl VmData {
    pub fn new(
        shared: Rc<RefCell<Shared>>,
        plugin: Rc<Plugin>,
        vm_index: usize,
        role: VmRole,
    ) -> Self {
        Self {
            shared,
            plugin,
            vm_index,
            role,
            root_ctx: 1,
            next_ctx: 2,
            contexts: HashMap::new(),
            net: HashMap::new(),
            current: 0,
            effective: None,
            phase: VmPhase::Init,
            call_response: None,
            tick_period: None,
            next_tick: None,
            panic: None,
            stream_for_logs: None,
            status: (0, Vec::new()),
            grpc_next: (1, 2),
            grpc_receive: GrpcReceive::default(),
            hostcalls: 0,
        }
    }

    /// The worker of a worker VM; 0 for the main-thread VMs (whose `role` says so).
    pub fn worker(&self) -> usize {
        self.role.worker().unwrap_or(0)
    }

    /// The context hostcalls act on: the effective context if one was set with
    /// `proxy_set_effective_context`, else the one being called
    /// (proxy-wasm-cpp-host `src/exports.cc` `ContextOrEffectiveContext`).
    pub fn ctx_id(&self) -> u32 {
        self.effective.unwrap_or(self.current)
    }

    /// The HTTP context hostcalls act on, `None` in a root/VM context.
    pub fn http_ctx(&self) -> Option<&HttpCtx> {
        self.contexts.get(&self.ctx_id())
    }

    /// The network context hostcalls act on, if it is one.
    pub fn net_ctx(&self) -> Option<&NetCtx> {
        self.net.get(&self.ctx_id())
    }

    /// The stream (or connection) state of the current context: properties
    /// and filter state.
    pub fn stream_state(&self) -> Option<&Rc<RefCell<StreamState>>> {
        self.http_ctx()
            .map(|c| &c.stream)
            .or_else(|| self.net_ctx().map(|c| &c.state))
    }

    /// The state of the context whose callback runs (not the effective one).
    pub fn current_state(&self) -> Option<&Rc<RefCell<StreamState>>> {
        self.contexts
            .get(&self.current)
            .map(|c| &c.stream)
            .or_else(|| self.net.get(&self.current).map(|c| &c.state))
    }

    /// True when `id` is this VM's root context or one of its live contexts.
    pub fn has_context(&self, id: u32) -> bool {
        id == self.root_ctx || self.contexts.contains_key(&id) || self.net.contains_key(&id)
    }
}

/// Counts a call into the host by its import name when the host counts
/// them ([`crate::host::HostBuilder::count_hostcalls_by_name`]).
pub(crate) fn count_call(c: &wasmtime::Caller<'_, VmData>, name: &'static str) {
    if let Ok(mut shared) = c.data().shared.try_borrow_mut()
        && let Some(names) = shared.hostcall_names.as_mut()
    {
        *names.entry(name).or_default() += 1;
    }
}
