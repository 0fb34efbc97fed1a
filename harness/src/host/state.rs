//! The host's mutable state and its top-level operations: loading chains, starting
//! requests, answering http calls, advancing the virtual clock, and the pump that
//! applies actions requested outside a stream's own callbacks.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use wasmtime::{Config, Engine, Linker, Module};

use super::context::{StreamState, VmData};
use super::error::HarnessError;
use super::headers::HeaderMap;
use super::outcome::{UpstreamRequest, UpstreamResponse};
use super::shared::Shared;
use super::stream::{Chunk, Pos, Slot, Step, StreamRun};
use super::tcp::ConnRun;
use super::vm::{CallFailure, Vm};

/// The upstream responder of a chain.
pub(crate) type Upstream = Rc<dyn Fn(&UpstreamRequest) -> UpstreamResponse>;

/// A loaded chain: filter names and, per worker, the VM of each filter (its
/// main-thread VMs are in `HostState::vms` too, but streams never reach them).
pub(crate) struct ChainState {
    pub names: Vec<String>,
    pub vms: Vec<Vec<usize>>,
    pub upstream: Upstream,
}

/// A request about to enter a chain.
pub(crate) struct NewRequest {
    pub chain: usize,
    pub worker: Option<usize>,
    pub headers: HeaderMap,
    pub body: Vec<Vec<u8>>,
    pub trailers: HeaderMap,
    pub properties: HashMap<String, Vec<u8>>,
}

/// Everything behind a `Host`.
pub(crate) struct HostState {
    pub engine: Engine,
    pub linker: Linker<VmData>,
    pub shared: Rc<RefCell<Shared>>,
    pub vms: Vec<Vm>,
    pub chains: Vec<ChainState>,
    pub streams: BTreeMap<u64, StreamRun>,
    /// Connections through network filters (`tcp.rs`).
    pub conns: BTreeMap<u64, ConnRun>,
    pub next_stream: u64,
    pub workers: usize,
    pub next_worker: usize,
    pub fuel_limit: u64,
    /// Envoy's per-stream buffer limit (`per_connection_buffer_limit_bytes`).
    pub buffer_limit: usize,
    /// VMs created so far, validation VMs included (`lifecycle.rs`).
    pub vms_created: usize,
    /// Traps raised since the last top-level operation.
    pub traps: Vec<HarnessError>,
}

/// Process-wide engine (fuel enabled) and module cache, so that many hosts in one
/// test binary compile each `.wasm` once.
fn engine() -> Result<&'static Engine, HarnessError> {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let mut config = Config::new();
            config.consume_fuel(true);
            #[cfg(feature = "profiling")]
            if std::env::var_os("MESHWASM_PERFMAP").is_some() {
                config.profiler(wasmtime::ProfilingStrategy::PerfMap);
            }
            Engine::new(&config).map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| HarnessError::Engine(e.clone()))
}

pub(crate) fn compile(engine: &Engine, path: &Path) -> Result<Module, HarnessError> {
    type Key = (PathBuf, u64, Option<std::time::SystemTime>);
    static CACHE: OnceLock<Mutex<HashMap<Key, Module>>> = OnceLock::new();
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| HarnessError::Io {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    let key = (path.to_path_buf(), meta.len(), meta.modified().ok());
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(m) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return Ok(m);
    }
    let bytes = std::fs::read(path).map_err(|e| HarnessError::Io {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    let module = Module::new(engine, &bytes).map_err(|e| HarnessError::Compile {
        path: shown,
        message: format!("{e:#}"),
    })?;
    if let Ok(mut c) = cache.lock() {
        c.insert(key, module.clone());
    }
    Ok(module)
}

impl HostState {
    pub fn new(shared: Shared, workers: usize, fuel_limit: u64) -> Result<Self, HarnessError> {
        let engine = engine()?.clone();
        let linker = super::vm::linker(&engine).map_err(|e| HarnessError::Engine(e.to_string()))?;
        Ok(Self {
            engine,
            linker,
            shared: Rc::new(RefCell::new(shared)),
            vms: Vec::new(),
            chains: Vec::new(),
            streams: BTreeMap::new(),
            conns: BTreeMap::new(),
            next_stream: 1,
            workers: workers.max(1),
            next_worker: 0,
            fuel_limit,
            buffer_limit: super::DEFAULT_BUFFER_LIMIT,
            vms_created: 0,
            traps: Vec::new(),
        })
    }

    /// Creates a stream and runs it until it pauses or completes.
    pub fn start(&mut self, req: NewRequest) -> Result<u64, HarnessError> {
        let (worker, slots) = self.new_slots(req.chain, req.worker)?;
        let id = self.next_stream;
        self.next_stream += 1;
        let has_trailers = !req.trailers.is_empty();
        let mut inbox = VecDeque::new();
        let n = req.body.len();
        for (i, data) in req.body.into_iter().enumerate() {
            inbox.push_back(Chunk {
                data,
                eos: i + 1 == n && !has_trailers,
            });
        }
        let grpc = super::grpc::is_grpc_request(&req.headers);
        let state = StreamState {
            connection_id: id,
            req_headers: req.headers,
            req_trailers: req.trailers,
            properties: req.properties,
            ..StreamState::default()
        };
        self.streams.insert(
            id,
            StreamRun {
                chain: req.chain,
                worker,
                state: Rc::new(RefCell::new(state)),
                slots,
                pos: Pos::Decode(0, Step::Headers),
                paused: false,
                inbox,
                outbox: Vec::new(),
                has_trailers,
                enc_order: Vec::new(),
                upstream_request: None,
                local_reply: None,
                final_body: Vec::new(),
                reset: false,
                cancelled: false,
                grpc,
                details: None,
                result: None,
            },
        );
        self.run_stream(id);
        self.pump();
        self.traps.clear();
        Ok(id)
    }

    /// The worker a new stream or connection of `chain` runs on (`pinned`, else
    /// round robin) and one slot per filter with that worker's VM.
    pub(crate) fn new_slots(
        &mut self,
        chain: usize,
        pinned: Option<usize>,
    ) -> Result<(usize, Vec<Slot>), HarnessError> {
        let (vms, names) = {
            let c = self
                .chains
                .get(chain)
                .ok_or_else(|| HarnessError::InvalidArgument(format!("no chain {chain}")))?;
            (c.vms.clone(), c.names.clone())
        };
        let worker = self.pick_worker(pinned)?;
        let slots = vms
            .get(worker)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .zip(names)
            .map(|(vm, name)| Slot {
                vm: *vm,
                ctx: None,
                fuel: 0,
                name,
            })
            .collect();
        Ok((worker, slots))
    }

    /// The worker a new stream or connection runs on: `pinned`, else round robin.
    pub(crate) fn pick_worker(&mut self, pinned: Option<usize>) -> Result<usize, HarnessError> {
        match pinned {
            Some(w) if w < self.workers => Ok(w),
            Some(w) => Err(HarnessError::InvalidArgument(format!(
                "worker {w} out of range (host has {})",
                self.workers
            ))),
            None => {
                let w = self.next_worker % self.workers;
                self.next_worker = self.next_worker.wrapping_add(1);
                Ok(w)
            }
        }
    }

    /// Applies queued stream actions and queue notifications until none are left.
    pub fn pump(&mut self) {
        for _ in 0..10_000 {
            let (actions, ready) = {
                let mut shared = self.shared.borrow_mut();
                (
                    std::mem::take(&mut shared.actions),
                    std::mem::take(&mut shared.queue_ready),
                )
            };
            if actions.is_empty() && ready.is_empty() {
                if !self.shared.borrow().conn_actions.is_empty() {
                    self.conn_pump();
                    continue;
                }
                return;
            }
            for (sid, from, action) in actions {
                self.apply_action(sid, from, action);
                self.run_stream(sid);
            }
            for (vm, root, token) in ready {
                let args = [u64::from(root), u64::from(token)];
                self.call_root(vm, None, "proxy_on_queue_ready", &args);
            }
        }
    }

    /// Calls a root-context export; a trap is recorded in `traps`.
    pub fn call_root(&mut self, vm: usize, stream: Option<u64>, name: &str, args: &[u64]) -> u64 {
        let Some(v) = self.vms.get_mut(vm) else {
            return 0;
        };
        if v.failed {
            return 0;
        }
        let root = v.store.data().root_ctx;
        let filter = v.store.data().plugin.name.clone();
        match v.call(root, stream, name, args) {
            Ok((_, fuel)) => fuel,
            Err(CallFailure {
                callback,
                message,
                panic,
            }) => {
                let err = HarnessError::Trap {
                    filter,
                    callback,
                    message,
                    panic,
                };
                match stream {
                    Some(sid) => self.fail_stream(sid, err),
                    None => self.traps.push(err),
                }
                0
            }
        }
    }

    /// Answers pending http call `token`.
    pub fn respond(&mut self, token: u32, response: &UpstreamResponse) -> Result<(), HarnessError> {
        let record = self
            .shared
            .borrow_mut()
            .calls
            .remove(&token)
            .ok_or(HarnessError::UnknownToken(token))?;
        let headers = response.header_map();
        let trailers = HeaderMap::from_pairs(&response.trailers);
        let args = [
            u64::from(record.root_ctx),
            u64::from(token),
            u64::try_from(headers.len()).unwrap_or(0),
            u64::try_from(response.body.len()).unwrap_or(0),
            u64::try_from(trailers.len()).unwrap_or(0),
        ];
        let stream = record.call.stream.filter(|s| self.streams.contains_key(s));
        if let Some(vm) = self.vms.get_mut(record.vm) {
            vm.store.data_mut().call_response = Some((headers, response.body.clone(), trailers));
        }
        let fuel = self.call_root(record.vm, stream, "proxy_on_http_call_response", &args);
        if let Some(vm) = self.vms.get_mut(record.vm) {
            vm.store.data_mut().call_response = None;
        }
        self.add_fuel(stream, record.vm, fuel);
        self.pump();
        self.take_trap()
    }

    fn take_trap(&mut self) -> Result<(), HarnessError> {
        let first = self.traps.drain(..).next();
        first.map_or(Ok(()), Err)
    }

    /// The next timed event and when it is due, on the clock since the host was
    /// built; on a tie a call deadline wins over a gRPC one, which wins over a
    /// tick.
    fn next_event(&self) -> Option<(Duration, Timed)> {
        let shared = self.shared.borrow();
        let calls = shared
            .calls
            .iter()
            .filter_map(|(tok, c)| c.deadline.map(|d| (d, 0, Timed::Call(*tok))));
        let grpc = shared
            .grpc
            .iter()
            .filter(|(_, g)| !g.remote_closed)
            .filter_map(|(id, g)| g.deadline.map(|d| (d, 1, Timed::Grpc(*id))));
        let ticks = self
            .vms
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.failed)
            .filter_map(|(i, v)| v.store.data().next_tick.map(|t| (t, 2, Timed::Tick(i))));
        calls
            .chain(grpc)
            .chain(ticks)
            .min_by_key(|(at, rank, _)| (*at, *rank))
            .map(|(at, _, event)| (at, event))
    }

    /// Time from now until the next `on_tick` of any live VM or call timeout.
    pub fn next_event_in(&self) -> Option<Duration> {
        let now = self.shared.borrow().elapsed;
        self.next_event().map(|(at, _)| at.saturating_sub(now))
    }

    /// Moves the virtual clock forward, firing ticks and call timeouts in order.
    pub fn advance(&mut self, by: Duration) -> Result<(), HarnessError> {
        let target = self.shared.borrow().elapsed + by;
        while let Some((at, event)) = self.next_event().filter(|d| d.0 <= target) {
            self.shared.borrow_mut().elapsed = at;
            match event {
                Timed::Tick(vm) => {
                    if let Some(v) = self.vms.get_mut(vm) {
                        let d = v.store.data_mut();
                        d.next_tick = d.tick_period.map(|p| at + p);
                    }
                    let root = self.vms.get(vm).map_or(0, |v| v.store.data().root_ctx);
                    self.call_root(vm, None, "proxy_on_tick", &[u64::from(root)]);
                    self.pump();
                }
                Timed::Call(token) => {
                    // SPEC §E.1 [V]: a timed-out call answers 504 `upstream request timeout`.
                    let body = "upstream request timeout";
                    let timeout = UpstreamResponse::new(504)
                        .header("content-length", body.len().to_string())
                        .header("content-type", "text/plain")
                        .body(body);
                    self.respond(token, &timeout)?;
                }
                Timed::Grpc(id) => {
                    if let Some(g) = self.shared.borrow_mut().grpc.get_mut(&id) {
                        g.deadline = None;
                    }
                    self.grpc_timeout(id)?;
                }
            }
            self.take_trap()?;
        }
        self.shared.borrow_mut().elapsed = target;
        Ok(())
    }
}

/// A timed event (`HostState::next_event`).
#[derive(Debug, Clone, Copy)]
enum Timed {
    Tick(usize),
    Call(u32),
    Grpc(u64),
}
