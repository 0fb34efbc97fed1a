//! One VM: a wasmtime `Store` + `Instance` of one filter on one worker, its start-up
//! sequence and fuel-metered calls into its exports.
//!
//! Start-up follows proxy-wasm-cpp-host `src/wasm.cc` (`_initialize` then `main`, or
//! `_start`; `malloc`/`proxy_on_memory_allocate` required) and `src/context.cc`
//! (`proxy_on_context_create(root, 0)`, `proxy_on_vm_start(root, vm_config_size)`,
//! `proxy_on_configure(root, plugin_config_size)`).

use std::cell::RefCell;
use std::rc::Rc;

use wasmtime::{Engine, Instance, Linker, Module, Store, Val, ValType};

use super::context::{Plugin, VmData, VmPhase};
use super::error::HarnessError;
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
}

/// Builds the linker with every hostcall and WASI function.
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<VmData>> {
    let mut linker = Linker::new(engine);
    super::imports::add(&mut linker)?;
    super::imports_misc::add(&mut linker)?;
    super::wasi::add(&mut linker)?;
    Ok(linker)
}

impl Vm {
    /// Instantiates and starts a VM, runs `on_vm_start` and `on_configure`.
    #[allow(clippy::too_many_arguments)] // reason: one call site, all distinct inputs
    pub fn start(
        engine: &Engine,
        linker: &Linker<VmData>,
        module: &Module,
        shared: Rc<RefCell<Shared>>,
        plugin: Rc<Plugin>,
        vm_index: usize,
        worker: usize,
        fuel_limit: u64,
    ) -> Result<Self, HarnessError> {
        let name = plugin.name.clone();
        let start_err = |message: String| HarnessError::Start {
            filter: name.clone(),
            message,
        };
        let data = VmData::new(Rc::clone(&shared), Rc::clone(&plugin), vm_index, worker);
        let mut store = Store::new(engine, data);
        store
            .set_fuel(fuel_limit)
            .map_err(|e| start_err(e.to_string()))?;
        let missing: Vec<String> = module
            .imports()
            .filter(|imp| linker.get_by_import(&mut store, imp).is_none())
            .map(|imp| format!("{}.{}", imp.module(), imp.name()))
            .collect();
        if !missing.is_empty() {
            return Err(HarnessError::MissingImports {
                filter: name,
                missing,
            });
        }
        let instance = linker
            .instantiate(&mut store, module)
            .map_err(|e| start_err(format!("{e:#}")))?;
        let mut vm = Self {
            store,
            instance,
            failed: false,
            fuel_limit,
        };
        let log_mark = shared.borrow().logs.len();
        let trap = |f: CallFailure| HarnessError::Trap {
            filter: name.clone(),
            callback: f.callback,
            message: f.message,
            panic: f.panic,
        };
        if vm.has_export("_initialize") {
            vm.call(0, None, "_initialize", &[]).map_err(trap)?;
            if vm.has_export("main") {
                vm.call(0, None, "main", &[0, 0]).map_err(trap)?;
            }
        } else if vm.has_export("_start") {
            vm.call(0, None, "_start", &[]).map_err(trap)?;
        }
        if !vm.has_export("malloc") && !vm.has_export("proxy_on_memory_allocate") {
            return Err(start_err(
                "Wasm module is missing malloc function.".to_owned(),
            ));
        }
        let root = vm.store.data().root_ctx;
        vm.call(0, None, "proxy_on_context_create", &[u64::from(root), 0])
            .map_err(trap)?;
        let refused = |vm: &Vm| HarnessError::ConfigureRefused {
            filter: name.clone(),
            logs: vm.logs_since(log_mark),
        };
        vm.store.data_mut().phase = VmPhase::VmStart;
        let vm_config_len = len64(&plugin.vm_config);
        let ok = vm
            .call(
                root,
                None,
                "proxy_on_vm_start",
                &[u64::from(root), vm_config_len],
            )
            .map_err(trap)?;
        if ok.0 == Some(0) {
            return Err(refused(&vm));
        }
        vm.store.data_mut().phase = VmPhase::Configure;
        let config_len = len64(&plugin.config);
        let ok = vm
            .call(
                root,
                None,
                "proxy_on_configure",
                &[u64::from(root), config_len],
            )
            .map_err(trap)?;
        if ok.0 == Some(0) {
            return Err(refused(&vm));
        }
        vm.store.data_mut().phase = VmPhase::Running;
        Ok(vm)
    }

    fn logs_since(&self, mark: usize) -> Vec<String> {
        let d = self.store.data();
        let shared = d.shared.borrow();
        shared
            .logs
            .iter()
            .skip(mark)
            .filter(|l| l.worker == d.worker && l.filter == d.plugin.name)
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
                        Some(t) => format!("wasm trap: {t}"),
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
