//! Test-only proxy-wasm **network** filter: logs every callback it gets, so
//! that the same connection driven through the wasmtime harness and through
//! Envoy 1.40's `tcp_proxy` can be compared line by line
//! (`harness/tests/probe_differential_tcp.rs`).
//!
//! **Config** (plugin configuration, read by key): `"name"` (default `tcp`),
//! `"stop_new": true` (`on_new_connection` returns `Pause`), `"cluster": "<c>"`
//! (`on_new_connection` sets filter state `envoy.tcp_proxy.cluster` through the
//! foreign function `set_envoy_filter_state`), `"state": "<key>=<value>"` (sets
//! another filter-state object the same way).
//!
//! **Log lines** (info): `tcp <name>: new connection`, `… set <key>: <status>`,
//! `… downstream <len> <eos> <data>`, `… upstream <len> <eos> <data>`,
//! `… downstream close <peer>`, `… upstream close <peer>`, `… done`, `… log`.
//!
//! **Client data** drives it: data ending in `HOLD` is held (`Pause`);
//! `UPPER` upper-cases the buffer, `APPEND` appends `+` to it, `CLOSE` closes
//! the downstream connection, `RESUME` resumes reading after a paused new
//! connection, `PROP` logs the `envoy.tcp_proxy.cluster` filter state and
//! whether `connection_id` is there; upstream data ending in `STOPUP` is
//! held.

use proxy_wasm::traits::{Context, RootContext, StreamContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, PeerType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
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

/// Serialized `SetEnvoyFilterStateArguments {path, value}` (lengths < 128).
fn filter_state_args(path: &str, value: &str) -> Vec<u8> {
    let mut out = vec![0x0a, path.len() as u8];
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(&[0x12, value.len() as u8]);
    out.extend_from_slice(value.as_bytes());
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace('\n', "\\n")
}

#[derive(Default, Clone)]
struct Root {
    name: String,
    stop_new: bool,
    cluster: Option<String>,
    state: Option<String>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self
            .get_plugin_configuration()
            .map(|c| String::from_utf8_lossy(&c).into_owned())
            .unwrap_or_default();
        self.name = config_value(&config, "name").unwrap_or_else(|| "tcp".to_owned());
        self.stop_new = config_value(&config, "stop_new").as_deref() == Some("true");
        self.cluster = config_value(&config, "cluster");
        self.state = config_value(&config, "state");
        true
    }

    fn create_stream_context(&self, _id: u32) -> Option<Box<dyn StreamContext>> {
        Some(Box::new(Tcp { cfg: self.clone() }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::StreamContext)
    }
}

struct Tcp {
    cfg: Root,
}

impl Tcp {
    fn log(&self, what: &str) {
        log::info!("tcp {}: {what}", self.cfg.name);
    }

    fn set_state(&self, key: &str, value: &str) {
        let args = filter_state_args(key, value);
        let r = self.call_foreign_function("set_envoy_filter_state", Some(&args));
        let status = match r {
            Ok(_) => "Ok".to_owned(),
            Err(s) => format!("{s:?}"),
        };
        self.log(&format!("set {key}: {status}"));
    }
}

impl Context for Tcp {
    fn on_done(&mut self) -> bool {
        self.log("done");
        true
    }
}

impl StreamContext for Tcp {
    fn on_new_connection(&mut self) -> Action {
        self.log("new connection");
        if let Some(cluster) = self.cfg.cluster.clone() {
            self.set_state("envoy.tcp_proxy.cluster", &cluster);
        }
        if let Some((k, v)) = self
            .cfg
            .state
            .clone()
            .as_deref()
            .and_then(|s| s.split_once('='))
        {
            self.set_state(k, v);
        }
        if self.cfg.stop_new {
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_downstream_data(&mut self, len: usize, eos: bool) -> Action {
        let data = self.get_downstream_data(0, len).unwrap_or_default();
        let t = text(&data);
        self.log(&format!("downstream {len} {eos} {t}"));
        if t.contains("PROP") {
            let cluster = self
                .get_property(vec!["filter_state", "envoy.tcp_proxy.cluster"])
                .map(|v| text(&v));
            let id = self.get_property(vec!["connection_id"]).is_some();
            self.log(&format!("prop cluster={cluster:?} connection_id={id}"));
        }
        if t.contains("UPPER") {
            self.set_downstream_data(0, len, t.to_uppercase().as_bytes());
        }
        if t.contains("APPEND") {
            self.set_downstream_data(len, 0, b"+");
        }
        if t.contains("RESUME") {
            self.resume_downstream();
        }
        if t.contains("CLOSE") {
            self.close_downstream();
        }
        if t.ends_with("HOLD") {
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_downstream_close(&mut self, peer: PeerType) {
        self.log(&format!("downstream close {}", peer as u32));
    }

    fn on_upstream_data(&mut self, len: usize, eos: bool) -> Action {
        let data = self.get_upstream_data(0, len).unwrap_or_default();
        let t = text(&data);
        self.log(&format!("upstream {len} {eos} {t}"));
        if t.ends_with("STOPUP") {
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_upstream_close(&mut self, peer: PeerType) {
        self.log(&format!("upstream close {}", peer as u32));
    }

    fn on_log(&mut self) {
        self.log("log");
    }
}
