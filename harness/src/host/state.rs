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
    pub next_stream: u64,
    pub workers: usize,
    pub next_worker: usize,
    pub fuel_limit: u64,
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
            next_stream: 1,
            workers: workers.max(1),
            next_worker: 0,
            fuel_limit,
            vms_created: 0,
            traps: Vec::new(),
        })
    }

    /// Creates a stream and runs it until it pauses or completes.
    pub fn start(&mut self, req: NewRequest) -> Result<u64, HarnessError> {
        let chain = self
            .chains
            .get(req.chain)
            .ok_or_else(|| HarnessError::InvalidArgument(format!("no chain {}", req.chain)))?;
        let worker = match req.worker {
            Some(w) if w < self.workers => w,
            Some(w) => {
                return Err(HarnessError::InvalidArgument(format!(
                    "worker {w} out of range (host has {})",
                    self.workers
                )));
            }
            None => {
                let w = self.next_worker % self.workers;
                self.next_worker = self.next_worker.wrapping_add(1);
                w
            }
        };
        let vms = chain.vms.get(worker).cloned().unwrap_or_default();
        let slots = vms
            .iter()
            .zip(&chain.names)
            .map(|(vm, name)| Slot {
                vm: *vm,
                ctx: None,
                fuel: 0,
                name: name.clone(),
            })
            .collect();
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
                result: None,
            },
        );
        self.run_stream(id);
        self.pump();
        self.traps.clear();
        Ok(id)
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
        if let Some(slot) = stream
            .and_then(|s| self.streams.get_mut(&s))
            .and_then(|r| r.slots.iter_mut().find(|s| s.vm == record.vm))
        {
            slot.fuel = slot.fuel.saturating_add(fuel);
        }
        self.pump();
        self.take_trap()
    }

    fn take_trap(&mut self) -> Result<(), HarnessError> {
        let first = self.traps.drain(..).next();
        first.map_or(Ok(()), Err)
    }

    /// The next timed event: `(when, tick of VM, timeout of call token)`, on the
    /// clock since the host was built; a call deadline wins a tie.
    fn next_event(&self) -> Option<(Duration, Option<usize>, Option<u32>)> {
        let next_tick = self
            .vms
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.failed)
            .filter_map(|(i, v)| v.store.data().next_tick.map(|t| (t, i)))
            .min();
        let next_call = self
            .shared
            .borrow()
            .calls
            .iter()
            .filter_map(|(tok, c)| c.deadline.map(|d| (d, *tok)))
            .min();
        match (next_tick, next_call) {
            (Some(t), Some(c)) if c.0 <= t.0 => Some((c.0, None, Some(c.1))),
            (Some(t), _) => Some((t.0, Some(t.1), None)),
            (None, Some(c)) => Some((c.0, None, Some(c.1))),
            (None, None) => None,
        }
    }

    /// Time from now until the next `on_tick` of any live VM or http-call timeout.
    pub fn next_event_in(&self) -> Option<Duration> {
        let now = self.shared.borrow().elapsed;
        self.next_event().map(|(at, _, _)| at.saturating_sub(now))
    }

    /// Moves the virtual clock forward, firing ticks and http-call timeouts in order.
    pub fn advance(&mut self, by: Duration) -> Result<(), HarnessError> {
        let target = self.shared.borrow().elapsed + by;
        while let Some((at, vm, token)) = self.next_event().filter(|d| d.0 <= target) {
            self.shared.borrow_mut().elapsed = at;
            if let Some(vm) = vm {
                if let Some(v) = self.vms.get_mut(vm) {
                    let d = v.store.data_mut();
                    d.next_tick = d.tick_period.map(|p| at + p);
                }
                let root = self.vms.get(vm).map_or(0, |v| v.store.data().root_ctx);
                self.call_root(vm, None, "proxy_on_tick", &[u64::from(root)]);
                self.pump();
            }
            if let Some(token) = token {
                // SPEC §E.1 [V]: a timed-out call answers 504 `upstream request timeout`.
                let body = "upstream request timeout";
                let timeout = UpstreamResponse::new(504)
                    .header("content-length", body.len().to_string())
                    .header("content-type", "text/plain")
                    .body(body);
                self.respond(token, &timeout)?;
            }
            self.take_trap()?;
        }
        self.shared.borrow_mut().elapsed = target;
        Ok(())
    }
}
