//! One VM: a wasmtime `Store` + `Instance` of one filter (on a worker or the main
//! thread, see `lifecycle.rs`), its start-up sequence and fuel-metered calls into
//! its exports.
//!
//! Start-up follows proxy-wasm-cpp-host `src/wasm.cc` (`_initialize` then `main`, or
//! `_start`; `malloc`/`proxy_on_memory_allocate` required) and `src/context.cc`
//! (`proxy_on_context_create(root, 0)`, `proxy_on_vm_start(root, vm_config_size)`,
//! `proxy_on_configure(root, plugin_config_size)`).

use std::cell::RefCell;
use std::rc::Rc;

use wasmtime::{CallHook, Engine, Instance, Linker, Module, Store, Val, ValType};

use super::context::{Plugin, VmData, VmPhase};
use super::error::HarnessError;
use super::lifecycle::VmRole;
use super::shared::Shared;
use super::wasi::ProcExit;

/// A trap (or engine error) raised by a call into the guest.
#[derive(Debug, Clone)]
pub(crate) struct CallFailure {
    pub callback: String,
    pub message: String,
    pub panic: Option<String>,
}

/// One running VM.
pub(crate) struct Vm {
    pub store: Store<VmData>,
    pub instance: Instance,
    pub failed: bool,
    pub fuel_limit: u64,
    /// Length of the host's log when this VM was created (its start-up logs
    /// follow).
    log_mark: usize,
}

/// Builds the linker with every hostcall and WASI function.
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<VmData>> {
    let mut linker = Linker::new(engine);
    super::imports::add(&mut linker)?;
    super::imports_misc::add(&mut linker)?;
    super::grpc_call::add(&mut linker)?;
    super::wasi::add(&mut linker)?;
    Ok(linker)
}

/// What creating a VM needs from the host.
pub(crate) struct Factory<'a> {
    pub engine: &'a Engine,
    pub linker: &'a Linker<VmData>,
    pub shared: &'a Rc<RefCell<Shared>>,
    pub fuel_limit: u64,
}

impl Vm {
    /// Instantiates a VM and initialises it (`_initialize` then `main`, or
    /// `_start`); checks it exports an allocator (cpp-host `WasmBase::initialize`).
    pub fn instantiate(
        factory: &Factory<'_>,
        module: &Module,
        plugin: Rc<Plugin>,
        vm_index: usize,
        role: VmRole,
    ) -> Result<Self, HarnessError> {
        let name = plugin.name.clone();
        let start_err = |message: String| HarnessError::Start {
            filter: name.clone(),
            message,
        };
        let data = VmData::new(Rc::clone(factory.shared), plugin, vm_index, role);
        let mut store = Store::new(factory.engine, data);
        store.call_hook(|mut c, hook| {
            if matches!(hook, CallHook::CallingHost) {
                c.data_mut().hostcalls += 1;
            }
            Ok(())
        });
        store
            .set_fuel(factory.fuel_limit)
            .map_err(|e| start_err(e.to_string()))?;
        let missing: Vec<String> = module
            .imports()
            .filter(|imp| factory.linker.get_by_import(&mut store, imp).is_none())
            .map(|imp| format!("{}.{}", imp.module(), imp.name()))
            .collect();
        if !missing.is_empty() {
            return Err(HarnessError::MissingImports {
                filter: name,
                missing,
            });
        }
        let instance = factory
            .linker
            .instantiate(&mut store, module)
            .map_err(|e| start_err(format!("{e:#}")))?;
        let log_mark = factory.shared.borrow().logs.len();
        let mut vm = Self {
            store,
            instance,
            failed: false,
            fuel_limit: factory.fuel_limit,
            log_mark,
        };
        if vm.has_export("_initialize") {
            vm.call(0, None, "_initialize", &[])
                .map_err(|f| vm.trap(f))?;
            if vm.has_export("main") {
                vm.call(0, None, "main", &[0, 0]).map_err(|f| vm.trap(f))?;
            }
        } else if vm.has_export("_start") {
            vm.call(0, None, "_start", &[]).map_err(|f| vm.trap(f))?;
        }
        if !vm.has_export("malloc") && !vm.has_export("proxy_on_memory_allocate") {
            return Err(start_err(
                "Wasm module is missing malloc function.".to_owned(),
            ));
        }
        Ok(vm)
    }

    /// Starts the root context (`proxy_on_context_create`, `proxy_on_vm_start`)
    /// and configures it (`proxy_on_configure`), as cpp-host `WasmBase::start`
    /// and `configure` do; `false` from either is `ConfigureRefused`.
    pub fn start_root(&mut self) -> Result<(), HarnessError> {
        let plugin = Rc::clone(&self.store.data().plugin);
        let root = self.store.data().root_ctx;
        self.call(0, None, "proxy_on_context_create", &[u64::from(root), 0])
            .map_err(|f| self.trap(f))?;
        let steps = [
            (
                VmPhase::VmStart,
                "proxy_on_vm_start",
                len64(&plugin.vm_config),
            ),
            (
                VmPhase::Configure,
                "proxy_on_configure",
                len64(&plugin.config),
            ),
        ];
        for (phase, callback, size) in steps {
            self.store.data_mut().phase = phase;
            let ok = self
                .call(root, None, callback, &[u64::from(root), size])
                .map_err(|f| self.trap(f))?;
            if ok.0 == Some(0) {
                return Err(HarnessError::ConfigureRefused {
                    filter: plugin.name.clone(),
                    logs: self.logs_since(self.log_mark),
                });
            }
        }
        self.store.data_mut().phase = VmPhase::Running;
        Ok(())
    }

    fn trap(&self, f: CallFailure) -> HarnessError {
        HarnessError::Trap {
            filter: self.store.data().plugin.name.clone(),
            callback: f.callback,
            message: f.message,
            panic: f.panic,
        }
    }

    fn logs_since(&self, mark: usize) -> Vec<String> {
        let d = self.store.data();
        let shared = d.shared.borrow();
        shared
            .logs
            .iter()
            .skip(mark)
            .filter(|l| l.vm == d.role && l.filter == d.plugin.name)
            .map(|l| format!("[{:?}] {}", l.level, l.message))
            .collect()
    }

    /// True when the module exports function `name`.
    pub fn has_export(&mut self, name: &str) -> bool {
        self.instance.get_func(&mut self.store, name).is_some()
    }

    /// Calls export `name` for context `ctx` (attributing logs to `stream`).
    /// Returns the result (`None` when the export does not exist or returns
    /// nothing) and the fuel spent. A trap marks the VM failed.
    pub fn call(
        &mut self,
        ctx: u32,
        stream: Option<u64>,
        name: &str,
        args: &[u64],
    ) -> Result<(Option<u64>, u64), CallFailure> {
        let Some(func) = self.instance.get_func(&mut self.store, name) else {
            return Ok((None, 0));
        };
        let ty = func.ty(&self.store);
        let params: Vec<Val> = ty
            .params()
            .enumerate()
            .map(|(i, t)| {
                let v = args.get(i).copied().unwrap_or(0);
                match t {
                    ValType::I64 => Val::I64(v as i64),
                    _ => Val::I32(v as u32 as i32),
                }
            })
            .collect();
        let mut results: Vec<Val> = ty.results().map(|_| Val::I32(0)).collect();
        {
            let d = self.store.data_mut();
            d.current = ctx;
            d.effective = None;
            d.stream_for_logs = stream;
            d.panic = None;
        }
        let _ = self.store.set_fuel(self.fuel_limit);
        let outcome = func.call(&mut self.store, &params, &mut results);
        let fuel = self
            .fuel_limit
            .saturating_sub(self.store.get_fuel().unwrap_or(0));
        {
            let d = self.store.data_mut();
            d.effective = None;
            d.stream_for_logs = None;
        }
        match outcome {
            Ok(()) => {
                let ret = results.first().and_then(|v| match v {
                    Val::I32(x) => Some(u64::from(*x as u32)),
                    Val::I64(x) => Some(*x as u64),
                    _ => None,
                });
                Ok((ret, fuel))
            }
            Err(e) => {
                self.failed = true;
                let message = match e.downcast_ref::<ProcExit>() {
                    Some(p) => p.to_string(),
                    None => match e.downcast_ref::<wasmtime::Trap>() {
                        // wasmtime's `Trap` already reads `wasm trap: …`.
                        Some(t) => t.to_string(),
                        None => format!("{e:#}"),
                    },
                };
                let panic = self
                    .store
                    .data_mut()
                    .panic
                    .take()
                    .map(|p| p.trim().to_owned());
                Err(CallFailure {
                    callback: name.to_owned(),
                    message,
                    panic,
                })
            }
        }
    }
}

fn len64(b: &[u8]) -> u64 {
    u64::try_from(b.len()).unwrap_or(u64::MAX)
}
