//! Test-only proxy-wasm module: exercises every host function the meshwasm harness
//! offers and reports what it observed, so the same requests can be sent to the
//! wasmtime harness and to real Envoy and the JSON compared.
//!
//! **Config** (plugin configuration, JSON-ish, read by key): `"name"` (default
//! `probe`), `"refuse": true` (refuse `on_configure`, logging why), `"tick_ms": N`
//! (tick period), `"queue": true` (register queue `probe_q`), `"lifecycle": true`
//! (`on_log`/`on_done` append `log:<name>,`/`done:<name>,` to shared data
//! `probe_lifecycle`; `on_tick` logs a failed `set_effective_context`).
//!
//! **Request headers** drive it:
//! * `x-probe-filter: <name>` — only the probe with that name acts (default all).
//! * `x-probe-op: op1,op2,...` — operations, in order (see `run_op`);
//!   `x-probe-op-<name>` takes precedence for the probe called `<name>`.
//! * op `call-headers:<cluster>` = `call:<cluster>` that also reports the response
//!   header pairs as `call.headers` (`date` reported as `"present"`).
//! * op `shape:<path>` reports property `<path>` with digit runs replaced by `N`.
//! * op `grpc:<n>`: gRPC status of the local reply (default -1); `shared-get:<key>`.
//! * `x-probe-reply: local|pass` — answer with a local reply whose body is the JSON
//!   observations (default), or let the request through with the JSON in request
//!   header `x-probe-observations` (`x-probe-reply-<name>` takes precedence).
//!
//! Every probe appends its name to request header `x-probe-order` and to response
//! header `x-probe-order`, showing the decode and encode order. Values that differ
//! legitimately between hosts (time, ids, ports) are reported as `"present"`.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType, Status};

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_send_local_response(
        status: u32,
        details: *const u8,
        details_size: usize,
        body: *const u8,
        body_size: usize,
        headers: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
}

#[link(wasm_import_module = "wasi_snapshot_preview1")]
unsafe extern "C" {
    fn random_get(buf: *mut u8, len: usize) -> u16;
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
fn json_str(bytes: &[u8]) -> String {
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

fn status_name(s: Status) -> String {
    format!("{s:?}")
}

#[derive(Default)]
struct ProbeRoot {
    name: String,
    config: String,
    lifecycle: bool,
    waiting: Rc<RefCell<Vec<u32>>>,
}

impl Context for ProbeRoot {}

impl RootContext for ProbeRoot {
    fn on_vm_start(&mut self, _size: usize) -> bool {
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
        if config_value(&config, "queue").as_deref() == Some("true") {
            self.register_shared_queue("probe_q");
        }
        log::info!("probe {}: configured", self.name);
        self.config = config;
        true
    }

    fn on_tick(&mut self) {
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
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct ProbeHttp {
    id: u32,
    name: String,
    lifecycle: bool,
    grpc: i32,
    waiting: Rc<RefCell<Vec<u32>>>,
    obs: Vec<(String, String)>,
    active: bool,
    pass: bool,
    status: u32,
    details: String,
    body_op: bool,
    pending: Vec<String>,
    call_headers: bool,
}

/// What an op asks the stream to do next.
enum Next {
    Go,
    Wait,
}

impl ProbeHttp {
    fn note(&mut self, key: &str, json: String) {
        self.obs.push((key.to_owned(), json));
    }

    fn json(&self) -> String {
        let fields: Vec<String> = self
            .obs
            .iter()
            .map(|(k, v)| format!("{}:{}", json_str(k.as_bytes()), v))
            .collect();
        format!(
            "{{\"probe\":{},{}}}",
            json_str(self.name.as_bytes()),
            fields.join(",")
        )
        .replace(",}", "}")
    }

    /// Sends the observations (local reply or request header).
    fn finish(&mut self, resume: bool) {
        let json = self.json();
        if self.pass {
            self.set_http_request_header("x-probe-observations", Some(&json));
            if resume {
                self.resume_http_request();
            }
            return;
        }
        let headers: [(&[u8], &[u8]); 1] = [(b"x-probe", self.name.as_bytes())];
        let mut pairs = Vec::new();
        pairs.extend_from_slice(&1u32.to_le_bytes());
        for (k, v) in headers {
            pairs.extend_from_slice(&(k.len() as u32).to_le_bytes());
            pairs.extend_from_slice(&(v.len() as u32).to_le_bytes());
        }
        for (k, v) in headers {
            pairs.extend_from_slice(k);
            pairs.push(0);
            pairs.extend_from_slice(v);
            pairs.push(0);
        }
        // SAFETY: pointers and sizes describe live local buffers.
        let status = unsafe {
            proxy_send_local_response(
                self.status,
                self.details.as_ptr(),
                self.details.len(),
                json.as_ptr(),
                json.len(),
                pairs.as_ptr(),
                pairs.len(),
                self.grpc,
            )
        };
        if status != 0 {
            log::error!("probe {}: send_local_response -> {status}", self.name);
        }
    }

    fn prop(&mut self, path: &str) {
        let segs: Vec<&str> = path.split('/').collect();
        let value = match self.get_property(segs.clone()) {
            None => "null".to_owned(),
            Some(v) => match segs.last().copied().unwrap_or_default() {
                "connection_id" | "address" | "id" => "\"present\"".to_owned(),
                "port" => format!("\"int{}\"", v.len() * 8),
                "mtls" => (v.first() == Some(&1)).to_string(),
                "code" if v.len() == 8 => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&v);
                    i64::from_le_bytes(b).to_string()
                }
                _ => json_str(&v),
            },
        };
        self.note(&format!("prop:{path}"), value);
    }

    fn run_op(&mut self, op: &str) -> Next {
        let (verb, arg) = op.split_once(':').unwrap_or((op, ""));
        let (k, v) = arg.split_once('=').unwrap_or((arg, ""));
        match verb {
            "get" => {
                let v = self.get_http_request_header_bytes(k);
                self.note(op, v.map_or("null".to_owned(), |v| json_str(&v)));
            }
            "headers" => {
                let pairs: Vec<String> = self
                    .get_http_request_headers_bytes()
                    .into_iter()
                    .map(|(k, v)| {
                        let v = if k == "x-request-id" {
                            b"present".to_vec()
                        } else {
                            v
                        };
                        format!("[{},{}]", json_str(k.as_bytes()), json_str(&v))
                    })
                    .collect();
                self.note(op, format!("[{}]", pairs.join(",")));
            }
            "set" => self.set_http_request_header(k, Some(v)),
            "add" => self.add_http_request_header(k, v),
            "remove" => self.set_http_request_header(k, None),
            "prop" => self.prop(arg),
            "shape" => {
                // The property with every run of digits replaced by `N`
                // (`127.0.0.1:40748` → `N.N.N.N:N`).
                let value = self.get_property(arg.split('/').collect());
                let shape = value.map_or("null".to_owned(), |v| {
                    let mut out = Vec::new();
                    for b in v {
                        if !b.is_ascii_digit() {
                            out.push(b);
                        } else if out.last() != Some(&b'N') {
                            out.push(b'N');
                        }
                    }
                    json_str(&out)
                });
                self.note(op, shape);
            }
            "setprop" => self.set_property(vec![k], Some(v.as_bytes())),
            "metric" => {
                let id = hostcalls::define_metric(MetricType::Counter, k).unwrap_or_default();
                let _ = hostcalls::increment_metric(id, 1);
                let value = hostcalls::get_metric(id).unwrap_or_default();
                self.note(op, value.to_string());
            }
            "metric-zero" => {
                let id = hostcalls::define_metric(MetricType::Counter, k).unwrap_or_default();
                let r = hostcalls::increment_metric(id, 0);
                self.note(op, json_str(format!("{r:?}").as_bytes()));
            }
            "gauge" => {
                let id = hostcalls::define_metric(MetricType::Gauge, k).unwrap_or_default();
                let _ = hostcalls::record_metric(id, v.parse().unwrap_or_default());
                self.note(
                    op,
                    hostcalls::get_metric(id).unwrap_or_default().to_string(),
                );
            }
            "histogram" => {
                let id = hostcalls::define_metric(MetricType::Histogram, k).unwrap_or_default();
                let _ = hostcalls::record_metric(id, v.parse().unwrap_or_default());
            }
            "shared-incr" => loop {
                let (value, cas) = self.get_shared_data(k);
                let n: u64 = value
                    .and_then(|b| String::from_utf8(b).ok())
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let next = (n + 1).to_string();
                match self.set_shared_data(k, Some(next.as_bytes()), cas) {
                    Ok(()) => {
                        self.note(op, next);
                        break;
                    }
                    Err(Status::CasMismatch) => continue,
                    Err(s) => {
                        self.note(op, json_str(status_name(s).as_bytes()));
                        break;
                    }
                }
            },
            "shared-stale" => {
                let _ = self.set_shared_data(k, Some(b"1"), None);
                let (_, cas) = self.get_shared_data(k);
                let _ = self.set_shared_data(k, Some(b"2"), cas);
                let r = self.set_shared_data(k, Some(b"3"), cas);
                self.note(op, json_str(format!("{r:?}").as_bytes()));
            }
            "enqueue" => {
                let vm_id = self
                    .get_property(vec!["plugin_vm_id"])
                    .map(|v| String::from_utf8_lossy(&v).into_owned())
                    .unwrap_or_default();
                let r = match self.resolve_shared_queue(&vm_id, "probe_q") {
                    None => "NotFound".to_owned(),
                    Some(q) => format!("{:?}", self.enqueue_shared_queue(q, Some(arg.as_bytes()))),
                };
                self.note(op, json_str(r.as_bytes()));
            }
            "call" | "call-bad" | "call-headers" => {
                self.call_headers = verb == "call-headers";
                let timeout: u64 = self
                    .get_http_request_header("x-probe-timeout-ms")
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(1000);
                let mut headers = vec![(":method", "GET"), (":path", "/probe")];
                if verb != "call-bad" {
                    headers.push((":authority", k));
                }
                let r = self.dispatch_http_call(
                    k,
                    headers,
                    None,
                    vec![],
                    Duration::from_millis(timeout),
                );
                match r {
                    Ok(_) => return Next::Wait,
                    Err(s) => self.note(op, json_str(status_name(s).as_bytes())),
                }
            }
            "foreign" => {
                let r = self.call_foreign_function(k, Some(v.as_bytes()));
                let text = match r {
                    Ok(v) => format!("Ok({})", v.map_or(0, |b| b.len())),
                    Err(s) => format!("Err({s:?})"),
                };
                self.note(op, json_str(text.as_bytes()));
            }
            "clock" => {
                let t = self.get_current_time();
                let ok = t > std::time::UNIX_EPOCH;
                self.note(op, json_str(if ok { b"present" } else { b"zero" }));
            }
            "random" => {
                let mut buf = [0u8; 8];
                // SAFETY: buf is a live local buffer of the given length.
                let errno = unsafe { random_get(buf.as_mut_ptr(), buf.len()) };
                let hex: String = buf.iter().map(|b| format!("{b:02x}")).collect();
                self.note(
                    op,
                    json_str(if errno == 0 { hex.as_bytes() } else { b"error" }),
                );
            }
            "panic" => panic!("probe {} panics on request", self.name),
            "log" => log::info!("probe {}: {}", self.name, arg),
            "status" => self.status = k.parse().unwrap_or(200),
            "details" => self.details = arg.to_owned(),
            "grpc" => self.grpc = k.parse().unwrap_or(-1),
            "shared-get" => {
                let (value, _) = self.get_shared_data(k);
                self.note(op, value.map_or("null".to_owned(), |v| json_str(&v)));
            }
            "wait-tick" => {
                self.waiting.borrow_mut().push(self.id);
                return Next::Wait;
            }
            "body" => self.body_op = true,
            _ => self.note(op, json_str(b"unknown op")),
        }
        Next::Go
    }

    /// Runs ops until one waits (http call, tick); true when all ran.
    fn run_ops(&mut self, ops: &[String]) -> bool {
        for (i, op) in ops.iter().enumerate() {
            if let Next::Wait = self.run_op(op) {
                self.pending = ops.get(i + 1..).map(<[String]>::to_vec).unwrap_or_default();
                return false;
            }
        }
        true
    }

    /// Continues after an http call answered.
    fn resume_ops(&mut self) {
        let ops = std::mem::take(&mut self.pending);
        if !self.run_ops(&ops) {
            return;
        }
        if self.body_op {
            self.resume_http_request();
        } else {
            self.finish(true);
        }
    }

    fn record(&self, event: &str) {
        if self.lifecycle {
            let (value, cas) = self.get_shared_data("probe_lifecycle");
            let entry = format!("{event}:{},", self.name).into_bytes();
            let value = [value.unwrap_or_default(), entry].concat();
            let _ = self.set_shared_data("probe_lifecycle", Some(&value), cas);
        }
    }

    fn header_text(&self, name: &str) -> Option<String> {
        self.get_http_request_header_bytes(name)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    }
}

impl Context for ProbeHttp {
    fn on_done(&mut self) -> bool {
        self.record("done");
        true
    }

    fn on_http_call_response(
        &mut self,
        _token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let status = self.get_http_call_response_header_bytes(":status");
        self.note(
            "call.status",
            status.map_or("null".to_owned(), |s| json_str(&s)),
        );
        if self.call_headers {
            let pairs: Vec<String> = self
                .get_http_call_response_headers_bytes()
                .into_iter()
                .map(|(k, v)| {
                    let v = if k == "date" { b"present".to_vec() } else { v };
                    format!("[{},{}]", json_str(k.as_bytes()), json_str(&v))
                })
                .collect();
            self.note("call.headers", format!("[{}]", pairs.join(",")));
        }
        let body = self
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default();
        self.note("call.body", json_str(&body));
        self.resume_ops();
    }
}

impl HttpContext for ProbeHttp {
    fn on_http_request_headers(&mut self, _headers: usize, _eos: bool) -> Action {
        let name = self.name.clone();
        self.add_http_request_header("x-probe-order", &name);
        if self
            .header_text("x-probe-filter")
            .is_some_and(|f| f != name)
        {
            return Action::Continue;
        }
        let ops: Vec<String> = self
            .header_text(&format!("x-probe-op-{name}"))
            .or_else(|| self.header_text("x-probe-op"))
            .map(|h| {
                h.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if ops.is_empty() {
            return Action::Continue;
        }
        self.active = true;
        let reply = self
            .header_text(&format!("x-probe-reply-{name}"))
            .or_else(|| self.header_text("x-probe-reply"));
        self.pass = reply.as_deref() == Some("pass");
        if !self.run_ops(&ops) {
            return Action::Pause;
        }
        if self.body_op {
            return Action::Continue;
        }
        self.finish(false);
        if self.pass {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.active || !self.body_op {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        self.note("body", json_str(&body));
        self.note("body.len", body_size.to_string());
        self.body_op = false;
        self.finish(false);
        if self.pass {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    fn on_log(&mut self) {
        self.record("log");
    }

    fn on_http_response_headers(&mut self, _headers: usize, _eos: bool) -> Action {
        let name = self.name.clone();
        self.add_http_response_header("x-probe-order", &name);
        Action::Continue
    }
}
