//! Test-only proxy-wasm module: exercises every host function the meshwasm harness
//! offers and reports what it observed, so the same requests can be sent to the
//! wasmtime harness and to real Envoy and the JSON compared.
//!
//! **Config** (plugin configuration, JSON-ish, read by key): `"name"` (default
//! `probe`), `"refuse": true` (refuse `on_configure`, logging why), `"tick_ms": N`
//! (tick period), `"queue": true` (register queue `probe_q`), `"lifecycle": true`
//! (`on_log`/`on_done` append `log:<name>,`/`done:<name>,` to shared data
//! `probe_lifecycle`; `on_tick` logs a failed `set_effective_context`),
//! `"log_ticks": true` (`on_tick` logs `probe <name>: tick (vm <tag>)`).
//!
//! **VM lifecycle logs** (info): `probe vm <tag>: on_vm_start` and
//! `probe <name>: configured (vm <tag>)`, where `<tag>` is 8 hex digits drawn
//! once per VM from `random_get`, so a test can tell the VMs of one host apart.
//!
//! **Request headers** drive it:
//! * `x-probe-filter: <name>` — only the probe with that name acts (default all).
//! * `x-probe-op: op1,op2,...` — operations, in order (see `run_op`);
//!   `x-probe-op-<name>` takes precedence for the probe called `<name>`.
//! * op `call-headers:<cluster>` = `call:<cluster>` that also reports the response
//!   header pairs as `call.headers` (`date` reported as `"present"`).
//! * op `shape:<path>` reports property `<path>` with digit runs replaced by `N`.
//! * op `grpc:<n>`: gRPC status of the local reply (default -1); `shared-get:<key>`.
//! * op `resp-headers` adds response header `x-probe-resp-seen` with the
//!   response headers it got (JSON pairs, `date` left out).
//! * op `resp-body` holds the response body (`Pause`) until its end, then logs
//!   `probe <name>: response body <size>`.
//! * op `foreign-hex:<function>=<hex>` calls a foreign function with binary
//!   arguments and reports `Ok(<hex result>)` or `Err(<status>)` under
//!   `foreign-hex:<function>`.
//! * `x-probe-reply: local|pass` — answer with a local reply whose body is the JSON
//!   observations (default), or let the request through with the JSON in request
//!   header `x-probe-observations` (`x-probe-reply-<name>` takes precedence).
//!
//! Every probe appends its name to request header `x-probe-order` and to response
//! header `x-probe-order`, showing the decode and encode order. Values that differ
//! legitimately between hosts (time, ids, ports) are reported as `"present"`.

mod http;
mod ops;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel, MetricType, Status};

use http::ProbeHttp;

#[link(wasm_import_module = "wasi_snapshot_preview1")]
unsafe extern "C" {
    pub(crate) fn random_get(buf: *mut u8, len: usize) -> u16;
}

/// This VM's tag: 8 hex digits drawn once from `random_get`.
fn vm_tag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        let mut buf = [0u8; 4];
        // SAFETY: buf is a live local buffer of the given length.
        let _ = unsafe { random_get(buf.as_mut_ptr(), buf.len()) };
        hex(&buf)
    })
}

/// Lower-case hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of a hex string (`None` if it is not hex).
pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(s, 16).ok()
        })
        .collect()
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(ProbeRoot::default()) });
}}

/// Extracts the raw JSON token after `"key":` (strings unquoted).
fn config_value(config: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\"");
    let at = config.find(&pat)? + pat.len();
    let rest = config
        .get(at..)?
        .trim_start()
        .strip_prefix(':')?
        .trim_start();
    if let Some(s) = rest.strip_prefix('"') {
        return s.split('"').next().map(str::to_owned);
    }
    let end = rest.find([',', '}', ' ', '\n']).unwrap_or(rest.len());
    rest.get(..end).map(str::to_owned)
}

/// JSON string literal of bytes; non-ASCII bytes appear as `\\xNN` text.
pub(crate) fn json_str(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\\\x{b:02x}")),
        }
    }
    out.push('"');
    out
}

pub(crate) fn status_name(s: Status) -> String {
    format!("{s:?}")
}

#[derive(Default)]
struct ProbeRoot {
    name: String,
    config: String,
    lifecycle: bool,
    log_ticks: bool,
    waiting: Rc<RefCell<Vec<u32>>>,
}

impl Context for ProbeRoot {}

impl RootContext for ProbeRoot {
    fn on_vm_start(&mut self, _size: usize) -> bool {
        log::info!("probe vm {}: on_vm_start", vm_tag());
        true
    }

    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self
            .get_plugin_configuration()
            .map(|c| String::from_utf8_lossy(&c).into_owned())
            .unwrap_or_default();
        self.name = config_value(&config, "name").unwrap_or_else(|| "probe".to_owned());
        if config_value(&config, "refuse").as_deref() == Some("true") {
            log::warn!("probe {}: configuration refused: refuse=true", self.name);
            return false;
        }
        if let Some(ms) = config_value(&config, "tick_ms").and_then(|v| v.parse::<u64>().ok()) {
            self.set_tick_period(Duration::from_millis(ms));
        }
        self.lifecycle = config_value(&config, "lifecycle").as_deref() == Some("true");
        self.log_ticks = config_value(&config, "log_ticks").as_deref() == Some("true");
        if config_value(&config, "queue").as_deref() == Some("true") {
            self.register_shared_queue("probe_q");
        }
        log::info!("probe {}: configured (vm {})", self.name, vm_tag());
        self.config = config;
        true
    }

    fn on_tick(&mut self) {
        if self.log_ticks {
            log::info!("probe {}: tick (vm {})", self.name, vm_tag());
        }
        if let Ok(id) = hostcalls::define_metric(MetricType::Counter, "probe_ticks") {
            let _ = hostcalls::increment_metric(id, 1);
        }
        let waiting: Vec<u32> = self.waiting.borrow_mut().drain(..).collect();
        for ctx in waiting {
            let set = hostcalls::set_effective_context(ctx);
            if set.is_ok() {
                let _ = hostcalls::resume_http_request();
            } else if self.lifecycle {
                log::warn!("probe {}: set_effective_context({ctx}): {set:?}", self.name);
            }
        }
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        while let Ok(Some(item)) = self.dequeue_shared_queue(queue_id) {
            log::info!(
                "probe {}: queue item {}",
                self.name,
                String::from_utf8_lossy(&item)
            );
            let _ = self.set_shared_data("queue_last", Some(&item), None);
            if let Ok(id) = hostcalls::define_metric(MetricType::Counter, "probe_queue_items") {
                let _ = hostcalls::increment_metric(id, 1);
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(ProbeHttp {
            id: context_id,
            name: self.name.clone(),
            lifecycle: self.lifecycle,
            grpc: -1,
            waiting: Rc::clone(&self.waiting),
            obs: Vec::new(),
            active: false,
            pass: false,
            status: 200,
            details: String::new(),
            body_op: false,
            pending: Vec::new(),
            call_headers: false,
            resp_body_op: false,
            resp_headers_op: false,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
