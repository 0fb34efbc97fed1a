//! The VMs of a filter, as Envoy 1.40 makes them (SPEC §A.5, verified by
//! `harness/tests/probe_differential_lifecycle.rs`).
//!
//! Envoy's wasm `PluginConfig` (`source/extensions/common/wasm/wasm.cc`) calls
//! `createWasm`, whose proxy-wasm-cpp-host part (`src/wasm.cc` `createWasm`)
//! makes the **base** VM — loaded and initialised (`_initialize`, `main` or
//! `_start`), never started — then `WasmHandleBase::canary`: a clone that is
//! started (`proxy_on_vm_start`) and configured (`proxy_on_configure`) to
//! validate the configuration, then killed. The plugin's thread-local slot is
//! then set on every thread (`getOrCreateThreadLocalPlugin`), the main thread at
//! once and each worker when it starts: one more clone per thread, started and
//! configured. The main thread's clone lasts; it never sees a stream, but it has
//! a dispatcher, so it ticks, gets `on_queue_ready` and makes http calls.
//!
//! With `--concurrency 1` and one filter, Envoy's log shows `on_vm_start` and
//! `on_configure` three times (two on the main thread, one on the worker),
//! ticks from the main thread's VM and the worker's, none from the canary; its
//! stats show `wasm.wasm_vm_count: 3` (base, main, worker) and
//! `wasm.envoy.wasm.runtime.v8.created: 4`.
//!
//! The harness does the same per filter, in Envoy's order: for each filter its
//! base VM, its validation VM (dropped once configured: its pending http calls
//! are cancelled, as `Context::~Context` does) and its main-thread VM; then for
//! each worker, the worker's VM of each filter.

use std::fmt;
use std::rc::Rc;

use wasmtime::Module;

use super::FilterSpec;
use super::context::Plugin;
use super::error::HarnessError;
use super::outcome::UpstreamResponse;
use super::state::{ChainState, HostState};
use super::vm::{Factory, Vm};

/// Which of Envoy's VMs of a filter a VM is (SPEC §A.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VmRole {
    /// The base VM: instantiated and initialised (`_initialize` and `main`, or
    /// `_start`), never started — no root context, no callback.
    Base,
    /// The configuration canary: started and configured on the main thread, then
    /// dropped. A configuration it refuses fails the load.
    Validation,
    /// The lasting main-thread VM: started and configured, never gets a stream;
    /// it ticks, gets `on_queue_ready` and http-call responses.
    Main,
    /// The VM of worker `n` (`0..workers`): the one streams run in.
    Worker(usize),
}

impl VmRole {
    /// The worker index of a worker VM, `None` for the main-thread VMs.
    pub fn worker(self) -> Option<usize> {
        match self {
            Self::Worker(n) => Some(n),
            Self::Base | Self::Validation | Self::Main => None,
        }
    }
}

impl fmt::Display for VmRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Base => f.write_str("base"),
            Self::Validation => f.write_str("validation"),
            Self::Main => f.write_str("main"),
            Self::Worker(n) => write!(f, "worker {n}"),
        }
    }
}

/// The `vm_index` of a validation VM, which is never in `HostState::vms`: what it
/// leaves behind (a queue registration, a queued notification) then finds no VM.
const DROPPED_VM: usize = usize::MAX;

impl HostState {
    /// Loads a chain (see the module docs); on failure no VM of it stays.
    pub fn load(&mut self, specs: &[FilterSpec]) -> Result<usize, HarnessError> {
        let mut modules = Vec::with_capacity(specs.len());
        for spec in specs {
            modules.push(super::state::compile(&self.engine, &spec.path)?);
        }
        let mark = self.vms.len();
        match self.start_vms(specs, &modules) {
            Ok(vms) => {
                self.pump();
                self.chains.push(ChainState {
                    names: specs.iter().map(|s| s.name.clone()).collect(),
                    vms,
                    upstream: Rc::new(|_| UpstreamResponse::default()),
                });
                Ok(self.chains.len() - 1)
            }
            Err(e) => {
                self.vms.truncate(mark);
                self.forget_vms(|vm| vm >= mark);
                Err(e)
            }
        }
    }

    /// Starts every VM of a chain; returns, per worker, the VM of each filter.
    fn start_vms(
        &mut self,
        specs: &[FilterSpec],
        modules: &[Module],
    ) -> Result<Vec<Vec<usize>>, HarnessError> {
        let plugins: Vec<Rc<Plugin>> = specs
            .iter()
            .map(|spec| {
                Rc::new(Plugin {
                    name: spec.name.clone(),
                    root_id: spec.root_id.clone(),
                    vm_id: spec.vm_id.clone(),
                    config: spec.config.clone(),
                    vm_config: spec.vm_config.clone(),
                })
            })
            .collect();
        for (plugin, module) in plugins.iter().zip(modules) {
            self.spawn(module, plugin, VmRole::Base)?;
            let validation = self.spawn(module, plugin, VmRole::Validation);
            self.forget_vms(|vm| vm == DROPPED_VM);
            validation?;
            self.spawn(module, plugin, VmRole::Main)?;
        }
        let mut rows = Vec::with_capacity(self.workers);
        for worker in 0..self.workers {
            let mut row = Vec::with_capacity(specs.len());
            for (plugin, module) in plugins.iter().zip(modules) {
                row.push(self.spawn(module, plugin, VmRole::Worker(worker))?);
            }
            rows.push(row);
        }
        Ok(rows)
    }

    /// Creates one VM (started and configured unless it is a base VM) and keeps
    /// it, except a validation VM, which is dropped. Returns its index.
    fn spawn(
        &mut self,
        module: &Module,
        plugin: &Rc<Plugin>,
        role: VmRole,
    ) -> Result<usize, HarnessError> {
        let index = match role {
            VmRole::Validation => DROPPED_VM,
            _ => self.vms.len(),
        };
        let factory = Factory {
            engine: &self.engine,
            linker: &self.linker,
            shared: &self.shared,
            fuel_limit: self.fuel_limit,
        };
        self.vms_created = self.vms_created.saturating_add(1);
        let mut vm = Vm::instantiate(&factory, module, Rc::clone(plugin), index, role)?;
        if role != VmRole::Base {
            vm.start_root()?;
        }
        if role != VmRole::Validation {
            self.vms.push(vm);
        }
        Ok(index)
    }

    /// Cancels what VMs matching `gone` left pending: their http and gRPC calls
    /// (never answered) and queue notifications.
    fn forget_vms(&mut self, gone: impl Fn(usize) -> bool) {
        let mut shared = self.shared.borrow_mut();
        shared.calls.retain(|_, c| !gone(c.vm));
        shared.grpc.retain(|_, c| !gone(c.vm));
        shared.queue_ready.retain(|(vm, _, _)| !gone(*vm));
    }
}
