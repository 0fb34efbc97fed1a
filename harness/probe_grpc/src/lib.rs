//! Test-only proxy-wasm HTTP filter that opens gRPC calls and streams and
//! reports what it saw, so that the same requests can be sent through the
//! wasmtime harness and through real Envoy and the JSON compared
//! (`harness/tests/probe_differential_grpc_calls.rs`).
//!
//! Request header `x-grpc-op: op1,op2,…` drives it; ops run in order:
//! * `call:<cluster>/<method>/<timeout ms>` — a unary call to service
//!   `probe.Echo` with message `x-grpc-msg` (default `hi`) and metadata
//!   `x-probe-md: m`; `callp:…` passes the cluster as a serialized
//!   `GrpcService { envoy_grpc { cluster_name } }` instead of a plain name.
//!   Notes `call: Ok(<token>)` or `Err(<status>)`, then waits for the answer
//!   (`call-nowait:…` goes on at once):
//!   `call.status`, `call.body`, `call.get_status` (as the HTTP context sees it)
//!   and `call.get_status.root` (the root context's).
//! * `stream:<cluster>/<method>` — opens a stream; `send:<msg>`,
//!   `send-end:<msg>` (with end of stream), `close`, `cancel` act on it,
//!   `call-close`, `call-cancel` on the last call, `raw-send:<token>`,
//!   `raw-close:<token>`, `raw-cancel:<token>` on any token; each notes the
//!   status number. `wait` waits until the stream closes.
//!
//! Stream callbacks append to `events`: `md:<n>` (initial metadata, pairs
//! follow), `msg:<text>`, `tr:<n>` (trailing metadata, pairs follow),
//! `close:<status>:<message as the root context reports it>`. The answer is a
//! local reply `200` whose body is the JSON of the notes.

use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_grpc_send(token: u32, ptr: *const u8, len: usize, end_stream: u32) -> u32;
    fn proxy_grpc_close(token: u32) -> u32;
    fn proxy_grpc_cancel(token: u32) -> u32;
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|root| -> Box<dyn RootContext> { Box::new(Root { root }) });
}}

/// JSON string literal of bytes; non-printable bytes appear as `\\xNN` text.
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

fn pairs_json(pairs: &[(String, Vec<u8>)]) -> String {
    let items: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            let v: &[u8] = if k == "date" { b"present" } else { v };
            format!("[{},{}]", json_str(k.as_bytes()), json_str(v))
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// A serialized `GrpcService { envoy_grpc { cluster_name: <cluster> } }`.
fn grpc_service(cluster: &str) -> Vec<u8> {
    let name = cluster.as_bytes();
    let mut inner = vec![0x0a, name.len() as u8];
    inner.extend_from_slice(name);
    let mut out = vec![0x0a, inner.len() as u8];
    out.extend(inner);
    out
}

struct Root {
    root: u32,
}

impl Context for Root {}

impl RootContext for Root {
    fn create_http_context(&self, id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Probe {
            id,
            root: self.root,
            notes: Vec::new(),
            events: Vec::new(),
            ops: Vec::new(),
            call: 0,
            stream: 0,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Probe {
    id: u32,
    root: u32,
    notes: Vec<(String, String)>,
    events: Vec<String>,
    ops: Vec<String>,
    call: u32,
    stream: u32,
}

impl Probe {
    fn note(&mut self, key: &str, json: String) {
        self.notes.push((key.to_owned(), json));
    }

    fn event(&mut self, text: String) {
        self.events.push(json_str(text.as_bytes()));
    }

    /// `proxy_get_status` as the HTTP context, then as the root context.
    fn statuses(&mut self, key: &str) {
        let text = |s: Result<(u32, Option<String>), proxy_wasm::types::Status>| match s {
            Ok((code, msg)) => json_str(format!("{code}:{}", msg.unwrap_or_default()).as_bytes()),
            Err(e) => json_str(format!("{e:?}").as_bytes()),
        };
        let own = text(hostcalls::get_grpc_status());
        self.note(&format!("{key}.get_status"), own);
        let _ = hostcalls::set_effective_context(self.root);
        let root = text(hostcalls::get_grpc_status());
        let _ = hostcalls::set_effective_context(self.id);
        self.note(&format!("{key}.get_status.root"), root);
    }

    /// Runs ops until one waits; true when all ran.
    fn run(&mut self) -> bool {
        while !self.ops.is_empty() {
            let op = self.ops.remove(0);
            if !self.run_op(&op) {
                return false;
            }
        }
        true
    }

    /// One op; false when it waits for a callback.
    fn run_op(&mut self, op: &str) -> bool {
        let (verb, arg) = op.split_once(':').unwrap_or((op, ""));
        let mut parts = arg.split('/');
        let (target, method) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let timeout: u64 = parts.next().and_then(|t| t.parse().ok()).unwrap_or(0);
        let code = |r: u32| r.to_string();
        match verb {
            "call" | "callp" | "call-nowait" => {
                let message = self
                    .get_http_request_header_bytes("x-grpc-msg")
                    .unwrap_or_else(|| b"hi".to_vec());
                let service = if verb == "callp" {
                    grpc_service(target)
                } else {
                    target.as_bytes().to_vec()
                };
                let service = String::from_utf8_lossy(&service).into_owned();
                let r = self.dispatch_grpc_call(
                    &service,
                    "probe.Echo",
                    method,
                    vec![("x-probe-md", b"m")],
                    Some(&message),
                    Duration::from_millis(timeout),
                );
                match r {
                    Ok(token) => {
                        self.call = token;
                        self.note(op, json_str(format!("Ok({token})").as_bytes()));
                        return verb == "call-nowait";
                    }
                    Err(s) => self.note(op, json_str(format!("Err({s:?})").as_bytes())),
                }
            }
            "stream" => {
                let r =
                    self.open_grpc_stream(target, "probe.Echo", method, vec![("x-probe-md", b"s")]);
                let text = match r {
                    Ok(token) => {
                        self.stream = token;
                        format!("Ok({token})")
                    }
                    Err(s) => format!("Err({s:?})"),
                };
                self.note(op, json_str(text.as_bytes()));
            }
            "send" | "send-end" => {
                let end = u32::from(verb == "send-end");
                // SAFETY: pointer and length describe a live local string.
                let r = unsafe { proxy_grpc_send(self.stream, arg.as_ptr(), arg.len(), end) };
                self.note(op, code(r));
            }
            "close" => {
                // SAFETY: plain integer arguments.
                let r = unsafe { proxy_grpc_close(self.stream) };
                self.note(op, code(r));
            }
            "cancel" => {
                // SAFETY: plain integer arguments.
                let r = unsafe { proxy_grpc_cancel(self.stream) };
                self.note(op, code(r));
            }
            "call-close" | "call-cancel" => {
                // SAFETY: plain integer arguments.
                let r = unsafe {
                    if verb == "call-close" {
                        proxy_grpc_close(self.call)
                    } else {
                        proxy_grpc_cancel(self.call)
                    }
                };
                self.note(op, code(r));
            }
            "raw-send" | "raw-close" | "raw-cancel" => {
                let token: u32 = arg.parse().unwrap_or(0);
                // SAFETY: plain integer arguments and a static string.
                let r = unsafe {
                    match verb {
                        "raw-send" => proxy_grpc_send(token, b"x".as_ptr(), 1, 0),
                        "raw-close" => proxy_grpc_close(token),
                        _ => proxy_grpc_cancel(token),
                    }
                };
                self.note(op, code(r));
            }
            "wait" => return false,
            _ => self.note(op, json_str(b"unknown op")),
        }
        true
    }

    fn reply(&mut self) {
        let mut fields: Vec<String> = self
            .notes
            .iter()
            .map(|(k, v)| format!("{}:{}", json_str(k.as_bytes()), v))
            .collect();
        fields.push(format!("\"events\":[{}]", self.events.join(",")));
        let body = format!("{{{}}}", fields.join(","));
        self.send_http_response(200, vec![("x-probe", "grpc")], Some(body.as_bytes()));
    }

    /// After a callback: go on with the ops, answer when they all ran.
    fn resume(&mut self) {
        if self.run() {
            self.reply();
        }
    }
}

impl Context for Probe {
    fn on_grpc_call_response(&mut self, _token: u32, status: u32, size: usize) {
        self.note("call.status", status.to_string());
        let body = self
            .get_grpc_call_response_body(0, size)
            .unwrap_or_default();
        self.note("call.body", json_str(&body));
        self.statuses("call");
        self.resume();
    }

    fn on_grpc_stream_initial_metadata(&mut self, _token: u32, n: u32) {
        let pairs =
            hostcalls::get_map_bytes(proxy_wasm::types::MapType::GrpcReceiveInitialMetadata)
                .unwrap_or_default();
        self.event(format!("md:{n}"));
        self.events.push(pairs_json(&pairs));
    }

    fn on_grpc_stream_message(&mut self, _token: u32, size: usize) {
        let body = self.get_grpc_stream_message(0, size).unwrap_or_default();
        self.event(format!("msg:{}", String::from_utf8_lossy(&body)));
    }

    fn on_grpc_stream_trailing_metadata(&mut self, _token: u32, n: u32) {
        let pairs =
            hostcalls::get_map_bytes(proxy_wasm::types::MapType::GrpcReceiveTrailingMetadata)
                .unwrap_or_default();
        self.event(format!("tr:{n}"));
        self.events.push(pairs_json(&pairs));
    }

    fn on_grpc_stream_close(&mut self, _token: u32, status: u32) {
        let _ = hostcalls::set_effective_context(self.root);
        let (code, message) = hostcalls::get_grpc_status().unwrap_or((0, None));
        let _ = hostcalls::set_effective_context(self.id);
        self.event(format!(
            "close:{status}:{code}:{}",
            message.unwrap_or_default()
        ));
        self.resume();
    }
}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _headers: usize, _eos: bool) -> Action {
        self.ops = self
            .get_http_request_header("x-grpc-op")
            .map(|h| {
                h.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if self.ops.is_empty() {
            return Action::Continue;
        }
        if self.run() {
            self.reply();
        }
        Action::Pause
    }
}
