//! A proxy-wasm host on wasmtime that runs `.wasm` filters as Envoy 1.40 does
//! (ABI 0.2.1 as proxy-wasm-rust-sdk 0.2.5 imports it; SPEC §"proxy-wasm ABI in Envoy").
//!
//! The API is a stateful fake host in the style of proxy-wasm-go-sdk `proxytest`
//! (STYLE.md rule 10): build a [`Host`], [`Host::load`] a chain of filters, send
//! requests through the [`Chain`], inspect the [`Outcome`].
//!
//! ```no_run
//! # use std::time::Duration;
//! # use meshwasm_harness::host::{Host, FilterSpec, HarnessError, UpstreamResponse};
//! # fn main() -> Result<(), HarnessError> {
//! let mut host = Host::builder().seed(7).workers(2).cluster("jwks").build()?;
//! let chain = host.load(&[FilterSpec::new("route", "route.wasm").config(br#"{}"#)])?;
//! chain.set_upstream(|_req| UpstreamResponse::new(200).header("service-version", "v1"));
//! let out = chain.request("GET", "/api/products").header("user-type", "premium").send()?;
//! assert_eq!(out.status(), 200);
//! let s = chain.request("GET", "/slow").start()?;      // pauses on an http call
//! let call = host.pending_calls()[0].token;
//! host.respond(call, &[(":status", "200")], b"{}", &[])?;
//! host.advance(Duration::from_millis(5))?;              // ticks, call timeouts
//! let out = s.finish()?;
//! # Ok(()) }
//! ```
//!
//! **Ownership.** `Host`, every `Chain` and every `PendingStream` share one
//! `Rc<RefCell<HostState>>`: chains and streams are cheap handles that outlive no
//! borrow, so a test can keep several and still call `host.advance(..)`. The host is
//! single-threaded (`!Send`); workers are simulated, requests assigned round robin
//! or pinned with `.worker(i)`. Host methods must not be called from inside an
//! upstream closure (they return `HarnessError::Reentrant`).
//!
//! **VMs.** As Envoy 1.40 (SPEC §A.5, `lifecycle.rs`), each filter gets a base VM
//! (initialised, never started), a validation VM (started and configured, then
//! dropped), a lasting main-thread VM (no streams; it ticks) and one VM per
//! worker: `on_vm_start` and `on_configure` run `workers + 2` times per filter.
//! [`Host::vm_count`] is Envoy's `wasm.wasm_vm_count`; [`LogEntry::vm`] tells
//! which VM logged a line ([`VmRole`]).
//!
//! **Differences from Envoy** are listed, exactly, in `docs/harness.md` ("What
//! still differs from Envoy"): VMs are never shared between filters; there is
//! no router (the upstream is the test's responder) and no protocol codec;
//! callbacks of different filters interleave per filter, not per event;
//! `on_queue_ready` runs right after the enqueuing callback; http-call tokens
//! are host-wide; FAIL_OPEN/FAIL_RELOAD and some foreign functions are not
//! modelled.
//!
//! **Modelled.** Headers as the codec and connection manager leave them
//! (`hop.rs`); the per-stream buffer limit ([`HostBuilder::buffer_limit`]).
//! Network filters on a connection through `tcp_proxy`
//! ([`Chain::connection`], `tcp.rs`) and `set_envoy_filter_state`
//! (`filter_state.rs`). gRPC calls and streams answered by the test
//! ([`Host::pending_grpc`], [`Host::grpc_respond`], `grpc_call.rs`,
//! `grpc_host.rs`). The foreign function `verify_signature` (`foreign.rs`), and
//! `clear_route_cache` as a no-op. Local replies on gRPC requests become trailers-only gRPC
//! responses (`grpc.rs`); a client reset of a paused stream
//! ([`PendingStream::cancel`]) ends it as Envoy does; [`Host::next_event_in`]
//! lets a driver run the clock to the tick a paused stream waits for.

mod abi;
mod context;
mod error;
mod filter_state;
mod foreign;
mod grpc;
mod grpc_call;
mod grpc_host;
mod grpc_types;
mod headers;
mod hop;
mod imports;
mod imports_misc;
mod lifecycle;
mod memory;
mod outcome;
mod properties;
mod reply;
mod request;
mod shared;
mod state;
mod stream;
mod tcp;
mod tcp_api;
mod vm;
mod wasi;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use abi::Status;
pub use error::HarnessError;
pub use grpc_types::{GrpcEvent, GrpcKind, GrpcResponse, PendingGrpc};
pub use headers::HeaderMap;
pub use lifecycle::VmRole;
pub use outcome::{
    LocalReply, LogEntry, LogLevel, Outcome, PendingCall, UpstreamRequest, UpstreamResponse,
};
pub use properties::{DEFAULT_DESTINATION_ADDRESS, DEFAULT_SOURCE_ADDRESS};
pub use request::{PendingStream, RequestBuilder};
pub use shared::{ForeignFunction, MetricKind};
pub use tcp::CloseType;
pub use tcp_api::{Connection, ConnectionBuilder, ConnectionOutcome};

use shared::Shared;
use state::HostState;

/// Default virtual start time: 2023-11-14T22:13:20Z.
pub const DEFAULT_START_SECS: u64 = 1_700_000_000;
/// Envoy's default per-connection (and so per-stream) buffer limit:
/// `per_connection_buffer_limit_bytes`, 1 MiB.
pub const DEFAULT_BUFFER_LIMIT: usize = 1024 * 1024;
/// Default fuel budget of one callback (a runaway loop traps instead of hanging).
pub const DEFAULT_FUEL_LIMIT: u64 = 10_000_000_000;

/// One filter of a chain: a `.wasm` file plus its plugin configuration.
#[derive(Debug, Clone)]
pub struct FilterSpec {
    pub(crate) name: String,
    pub(crate) path: PathBuf,
    pub(crate) config: Vec<u8>,
    pub(crate) vm_config: Vec<u8>,
    pub(crate) root_id: String,
    pub(crate) vm_id: String,
}

impl FilterSpec {
    /// Filter `name` (Envoy plugin `name`, the `plugin_name` property) from `path`.
    pub fn new(name: &str, path: impl Into<PathBuf>) -> Self {
        Self {
            name: name.to_owned(),
            path: path.into(),
            config: Vec::new(),
            vm_config: Vec::new(),
            root_id: String::new(),
            vm_id: String::new(),
        }
    }

    /// Plugin configuration bytes (`on_configure`).
    pub fn config(mut self, config: impl AsRef<[u8]>) -> Self {
        self.config = config.as_ref().to_vec();
        self
    }

    /// VM configuration bytes (`on_vm_start`).
    pub fn vm_config(mut self, config: impl AsRef<[u8]>) -> Self {
        self.vm_config = config.as_ref().to_vec();
        self
    }

    /// Root id (`plugin_root_id`).
    pub fn root_id(mut self, root_id: &str) -> Self {
        self.root_id = root_id.to_owned();
        self
    }

    /// VM id (`plugin_vm_id`; the shared-data and queue namespace).
    pub fn vm_id(mut self, vm_id: &str) -> Self {
        self.vm_id = vm_id.to_owned();
        self
    }
}

/// Builds a [`Host`].
#[derive(Debug, Clone)]
pub struct HostBuilder {
    seed: u64,
    workers: usize,
    start_time: SystemTime,
    fuel_limit: u64,
    buffer_limit: usize,
    clusters: Vec<String>,
    env: Vec<(String, String)>,
    properties: HashMap<String, Vec<u8>>,
    log_level: LogLevel,
    hostcall_names: bool,
}

impl HostBuilder {
    /// Seed of `random_get`.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Number of workers (one VM per worker per filter). Default 1.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// Virtual wall-clock time at start.
    pub fn start_time(mut self, t: SystemTime) -> Self {
        self.start_time = t;
        self
    }

    /// Fuel budget of one callback.
    pub fn fuel_limit(mut self, fuel: u64) -> Self {
        self.fuel_limit = fuel;
        self
    }

    /// Envoy's per-stream buffer limit, as the listener's
    /// `per_connection_buffer_limit_bytes` sets it (default
    /// [`DEFAULT_BUFFER_LIMIT`]): a filter that pauses on a body that grows past
    /// it gets `413` (request) or the stream reset after the response headers
    /// (response), as Envoy does.
    pub fn buffer_limit(mut self, bytes: usize) -> Self {
        self.buffer_limit = bytes;
        self
    }

    /// Declares a cluster http calls may target.
    pub fn cluster(mut self, name: &str) -> Self {
        self.clusters.push(name.to_owned());
        self
    }

    /// Adds a WASI environment variable (Envoy `VmConfig.environment_variables`).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Host-wide property override, e.g. `xds.node.id` (dotted path).
    pub fn property(mut self, path: &str, value: impl AsRef<[u8]>) -> Self {
        self.properties
            .insert(path.to_owned(), value.as_ref().to_vec());
        self
    }

    /// Lowest level captured and reported by `proxy_get_log_level`. Default `Info`
    /// (Envoy's default log level).
    pub fn log_level(mut self, level: LogLevel) -> Self {
        self.log_level = level;
        self
    }

    /// Counts the calls into the host by import name
    /// ([`Host::hostcalls_by_name`]): each call then
    /// updates a map (for profiling; behaviour is the same).
    pub fn count_hostcalls_by_name(mut self) -> Self {
        self.hostcall_names = true;
        self
    }

    /// Creates the host.
    pub fn build(self) -> Result<Host, HarnessError> {
        let mut shared = Shared::new(self.seed, self.start_time);
        shared.clusters = self.clusters;
        shared.env = self.env;
        shared.properties = self.properties;
        shared.log_level = self.log_level as u32;
        shared.hostcall_names = self.hostcall_names.then(Default::default);
        let mut state = HostState::new(shared, self.workers, self.fuel_limit)?;
        state.buffer_limit = self.buffer_limit;
        Ok(Host {
            inner: Rc::new(RefCell::new(state)),
        })
    }
}

/// The fake proxy: VMs, virtual clock, shared data, metrics, pending http calls.
pub struct Host {
    inner: Rc<RefCell<HostState>>,
}

fn borrow(
    inner: &Rc<RefCell<HostState>>,
) -> Result<std::cell::RefMut<'_, HostState>, HarnessError> {
    inner.try_borrow_mut().map_err(|_| HarnessError::Reentrant)
}

impl Host {
    /// A builder with seed 0, one worker, start time [`DEFAULT_START_SECS`].
    pub fn builder() -> HostBuilder {
        HostBuilder {
            seed: 0,
            workers: 1,
            start_time: UNIX_EPOCH + Duration::from_secs(DEFAULT_START_SECS),
            fuel_limit: DEFAULT_FUEL_LIMIT,
            buffer_limit: DEFAULT_BUFFER_LIMIT,
            clusters: Vec::new(),
            env: Vec::new(),
            properties: HashMap::new(),
            log_level: LogLevel::Info,
            hostcall_names: false,
        }
    }

    /// Loads a chain of filters (decode order = slice order). Per filter, as
    /// Envoy: a base VM (`_initialize` only), a validation VM (`on_vm_start`,
    /// `on_configure`, then dropped), a main-thread VM and one VM per worker
    /// (both started and configured). A configuration refused by any of them is
    /// `ConfigureRefused`, and then no VM of the chain stays.
    pub fn load(&mut self, filters: &[FilterSpec]) -> Result<Chain, HarnessError> {
        let id = borrow(&self.inner)?.load(filters)?;
        Ok(Chain {
            inner: Rc::clone(&self.inner),
            id,
        })
    }

    /// Http calls dispatched and not answered yet, by token.
    pub fn pending_calls(&self) -> Vec<PendingCall> {
        self.inner
            .borrow()
            .shared
            .borrow()
            .calls
            .values()
            .map(|c| c.call.clone())
            .collect()
    }

    /// Answers http call `token`: `headers` must include `:status`.
    pub fn respond(
        &mut self,
        token: u32,
        headers: &[(&str, &str)],
        body: &[u8],
        trailers: &[(&str, &str)],
    ) -> Result<(), HarnessError> {
        let mut response = UpstreamResponse::new(0).body(body);
        for (k, v) in headers {
            if *k == ":status" {
                response.status = v.parse().unwrap_or(0);
            } else {
                response = response.header(k, v);
            }
        }
        for (k, v) in trailers {
            response = response.trailer(k, v);
        }
        self.respond_with(token, &response)
    }

    /// Answers http call `token` with a built response.
    pub fn respond_with(
        &mut self,
        token: u32,
        response: &UpstreamResponse,
    ) -> Result<(), HarnessError> {
        borrow(&self.inner)?.respond(token, response)
    }

    /// gRPC calls and streams filters opened that are still in flight, by id.
    pub fn pending_grpc(&self) -> Vec<PendingGrpc> {
        self.inner
            .borrow()
            .shared
            .borrow()
            .grpc
            .values()
            .filter(|g| !g.remote_closed)
            .map(|g| g.pending.clone())
            .collect()
    }

    /// Answers gRPC call or stream `id` ([`PendingGrpc::id`]) with a whole
    /// response: a call gets `proxy_on_grpc_receive` (status 0 and a message) or
    /// `proxy_on_grpc_close`; a stream gets its initial metadata, each message,
    /// its trailing metadata and its close, as Envoy's gRPC client delivers them
    /// (`grpc_host.rs`).
    pub fn grpc_respond(&mut self, id: u64, response: &GrpcResponse) -> Result<(), HarnessError> {
        borrow(&self.inner)?.grpc_respond(id, response)
    }

    /// Sends one upstream event to gRPC call or stream `id`: response headers,
    /// one message, trailers (the end) or a reset — to drive a stream step by
    /// step.
    pub fn grpc_event(&mut self, id: u64, event: GrpcEvent) -> Result<(), HarnessError> {
        borrow(&self.inner)?.grpc_event(id, event)
    }

    /// Moves the virtual clock forward: fires `on_tick` per root context per VM and
    /// http- and gRPC-call timeouts, in time order.
    pub fn advance(&mut self, by: Duration) -> Result<(), HarnessError> {
        borrow(&self.inner)?.advance(by)
    }

    /// Time from now until the next timed event — an `on_tick` of any VM or an
    /// http- or gRPC-call timeout — or `None` when nothing is scheduled. `advance` by it to
    /// run exactly the next event (e.g. the tick a paused stream waits for).
    pub fn next_event_in(&self) -> Option<Duration> {
        self.inner.borrow().next_event_in()
    }

    /// Current virtual time.
    pub fn now(&self) -> SystemTime {
        let st = self.inner.borrow();
        let shared = st.shared.borrow();
        shared.start + shared.elapsed
    }

    /// Value of a counter or gauge, by `wasmcustom.<name>` or bare `<name>`.
    pub fn metric(&self, name: &str) -> Option<u64> {
        let st = self.inner.borrow();
        let shared = st.shared.borrow();
        shared
            .metric_by_name(name)
            .filter(|m| m.kind != MetricKind::Histogram)
            .map(|m| m.value)
    }

    /// Samples recorded in a histogram.
    pub fn histogram(&self, name: &str) -> Option<Vec<u64>> {
        let st = self.inner.borrow();
        let shared = st.shared.borrow();
        shared
            .metric_by_name(name)
            .filter(|m| m.kind == MetricKind::Histogram)
            .map(|m| m.samples.clone())
    }

    /// Every log line captured so far.
    pub fn logs(&self) -> Vec<LogEntry> {
        self.inner.borrow().shared.borrow().logs.clone()
    }

    /// Shared data `(value, cas)` of `key` in `vm_id`'s key space.
    pub fn shared_data(&self, vm_id: &str, key: &str) -> Option<(Vec<u8>, u32)> {
        let st = self.inner.borrow();
        let shared = st.shared.borrow();
        shared.get_shared(vm_id.as_bytes(), key.as_bytes())
    }

    /// Sets shared data as a filter would (`cas` 0 = unconditional).
    pub fn set_shared_data(&mut self, vm_id: &str, key: &str, value: &[u8], cas: u32) -> Status {
        let st = self.inner.borrow();
        let mut shared = st.shared.borrow_mut();
        shared.set_shared(vm_id.as_bytes(), key.as_bytes(), value, cas)
    }

    /// Declares a cluster after build.
    pub fn add_cluster(&mut self, name: &str) {
        let st = self.inner.borrow();
        st.shared.borrow_mut().clusters.push(name.to_owned());
    }

    /// VMs alive: per filter its base VM, main-thread VM and one VM per worker —
    /// Envoy's gauge `wasm.wasm_vm_count` (`wasm.envoy.wasm.runtime.v8.active`)
    /// when no two filters share a `vm_id`.
    pub fn vm_count(&self) -> usize {
        self.inner.borrow().vms.len()
    }

    /// Calls from the guests into the host (hostcalls and WASI functions)
    /// by the VMs alive, since they started: a request's host crossings are
    /// the difference around it.
    pub fn hostcalls(&self) -> u64 {
        self.inner
            .borrow()
            .vms
            .iter()
            .map(|vm| vm.store.data().hostcalls)
            .sum()
    }

    /// Calls into the host so far by import name (`proxy_get_property`,
    /// `wasi.clock_time_get`, …), when the builder asked for them; empty
    /// otherwise. Every `proxy_*` import is named, and the WASI functions a
    /// filter calls after start-up; the rest count in
    /// [`Host::hostcalls`] only.
    pub fn hostcalls_by_name(&self) -> Vec<(String, u64)> {
        let st = self.inner.borrow();
        let shared = st.shared.borrow();
        shared
            .hostcall_names
            .iter()
            .flatten()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect()
    }

    /// VMs created so far, the dropped validation VMs included — Envoy's counter
    /// `wasm.envoy.wasm.runtime.v8.created` when no two filters share a `vm_id`.
    pub fn vms_created(&self) -> usize {
        self.inner.borrow().vms_created
    }

    /// Registers (or replaces) a foreign function for `proxy_call_foreign_function`
    /// (`verify_signature` and `clear_route_cache` are there from the start).
    pub fn register_foreign_function(
        &mut self,
        name: &str,
        f: impl Fn(&[u8]) -> Result<Vec<u8>, u32> + 'static,
    ) {
        let st = self.inner.borrow();
        st.shared
            .borrow_mut()
            .foreign
            .insert(name.to_owned(), Rc::new(f));
    }
}

/// A loaded chain of filters; a cheap handle onto its [`Host`].
#[derive(Clone)]
pub struct Chain {
    inner: Rc<RefCell<HostState>>,
    id: usize,
}

impl Chain {
    /// Starts building a request.
    pub fn request(&self, method: &str, path: &str) -> RequestBuilder<'_> {
        RequestBuilder {
            chain: self,
            method: method.to_owned(),
            path: path.to_owned(),
            authority: "example.com".to_owned(),
            scheme: "http".to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
            trailers: Vec::new(),
            properties: HashMap::new(),
            worker: None,
        }
    }

    /// Starts building a downstream connection through the chain's filters as
    /// network filters, followed by Envoy's `tcp_proxy` (`tcp.rs`).
    pub fn connection(&self) -> ConnectionBuilder<'_> {
        ConnectionBuilder {
            chain: self,
            properties: HashMap::new(),
            worker: None,
        }
    }

    /// Sets the upstream responder (default: `200`, empty body).
    pub fn set_upstream(&self, f: impl Fn(&UpstreamRequest) -> UpstreamResponse + 'static) {
        if let Some(c) = self.inner.borrow_mut().chains.get_mut(self.id) {
            c.upstream = Rc::new(f);
        }
    }

    /// True when filter `filter`'s VM on `worker` has failed (trapped).
    pub fn is_failed(&self, filter: usize, worker: usize) -> bool {
        let st = self.inner.borrow();
        let vm = st
            .chains
            .get(self.id)
            .and_then(|c| c.vms.get(worker))
            .and_then(|row| row.get(filter))
            .copied();
        vm.and_then(|i| st.vms.get(i)).is_some_and(|v| v.failed)
    }
}
