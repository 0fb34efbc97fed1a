//! The probe's HTTP context: runs the request's ops, then answers with the
//! observations (local reply) or passes them on in a request header.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use crate::json_str;
use crate::ops::Next;

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

pub(crate) struct ProbeHttp {
    pub(crate) id: u32,
    pub(crate) name: String,
    pub(crate) lifecycle: bool,
    pub(crate) grpc: i32,
    pub(crate) waiting: Rc<RefCell<Vec<u32>>>,
    pub(crate) obs: Vec<(String, String)>,
    pub(crate) active: bool,
    pub(crate) pass: bool,
    pub(crate) status: u32,
    pub(crate) details: String,
    pub(crate) body_op: bool,
    pub(crate) pending: Vec<String>,
    pub(crate) call_headers: bool,
    pub(crate) resp_body_op: bool,
    pub(crate) resp_headers_op: bool,
}

impl ProbeHttp {
    pub(crate) fn note(&mut self, key: &str, json: String) {
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

    /// Runs ops until one waits (http call, tick); true when all ran.
    pub(crate) fn run_ops(&mut self, ops: &[String]) -> bool {
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
        if self.resp_headers_op {
            let pairs: Vec<String> = self
                .get_http_response_headers_bytes()
                .into_iter()
                .filter(|(k, _)| k != "date")
                .map(|(k, v)| format!("[{},{}]", json_str(k.as_bytes()), json_str(&v)))
                .collect();
            self.add_http_response_header("x-probe-resp-seen", &format!("[{}]", pairs.join(",")));
        }
        self.add_http_response_header("x-probe-order", &name);
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.resp_body_op {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        log::info!("probe {}: response body {body_size}", self.name);
        Action::Continue
    }
}
