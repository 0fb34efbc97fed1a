//! The probe's operations (`x-probe-op`): each reads or changes something
//! through one host function and notes what it saw.

use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{MetricType, Status};

use crate::http::ProbeHttp;
use crate::{hex, json_str, random_get, status_name, unhex};

/// What an op asks the stream to do next.
pub(crate) enum Next {
    Go,
    Wait,
}

impl ProbeHttp {
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

    pub(crate) fn run_op(&mut self, op: &str) -> Next {
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
            "foreign-hex" => {
                // `foreign-hex:<name>=<hex argument>`: a binary argument (e.g. a
                // serialized proto for `verify_signature`), the result as hex.
                let text = match unhex(v) {
                    None => "bad hex".to_owned(),
                    Some(args) => match self.call_foreign_function(k, Some(&args)) {
                        Ok(r) => format!("Ok({})", hex(&r.unwrap_or_default())),
                        Err(s) => format!("Err({s:?})"),
                    },
                };
                self.note(&format!("{verb}:{k}"), json_str(text.as_bytes()));
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
                let text = if errno == 0 {
                    hex(&buf)
                } else {
                    "error".to_owned()
                };
                self.note(op, json_str(text.as_bytes()));
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
            "resp-body" => self.resp_body_op = true,
            "resp-headers" => self.resp_headers_op = true,
            _ => self.note(op, json_str(b"unknown op")),
        }
        Next::Go
    }
}
