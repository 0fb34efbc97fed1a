//! The floor of any proxy-wasm filter, for benchmarks: reads one request
//! header and lets the request through.
//!
//! With the configuration `hostcall=<kind>*<n>` it also makes `n` more
//! calls of one kind per request, so that `cargo xtask bench` can price a
//! crossing of each kind in Envoy against the plain no-op. Any other
//! configuration (the bench gives every filter the policy document) is
//! ignored.
#![allow(missing_docs)] // reason: proxy_wasm::main! generates the undocumented `_initialize` export

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, MapType, MetricType};

/// The kinds of call a configuration can repeat.
#[derive(Clone, Copy)]
enum Kind {
    /// `get_header_map_pairs` of the request, read as the filters read it
    /// (one buffer, `meshwasm_glue::read_headers`).
    Map,
    /// `get_header_map_value` of one request header.
    Value,
    /// `increment_metric` of a counter.
    Metric(u32),
    /// `get_shared_data` of a small value.
    Shared,
    /// `get_property` `connection.mtls`.
    Property,
    /// `replace_header_map_value` of a request header (in Envoy each
    /// clears the route cache).
    Replace,
    /// `get_current_time_nanoseconds`.
    Time,
    /// `set_property` of filter state `wasm.meshwasm.noop` (as authn hands
    /// on its identity).
    SetProperty,
}

/// `hostcall=<kind>*<n>`: a fixed line a benchmark writes, not user input,
/// so a split is all the parsing it needs (no JSON parser in the floor).
fn parse(config: &[u8]) -> Option<(Kind, u32)> {
    let text = std::str::from_utf8(config).ok()?.trim();
    let (kind, n) = text.strip_prefix("hostcall=")?.split_once('*')?;
    let kind = match kind {
        "map" => Kind::Map,
        "value" => Kind::Value,
        "metric" => {
            Kind::Metric(hostcalls::define_metric(MetricType::Counter, "meshwasm.noop.calls").ok()?)
        }
        "shared" => {
            hostcalls::set_shared_data("meshwasm.noop", Some(&[0u8; 38]), None).ok()?;
            Kind::Shared
        }
        "property" => Kind::Property,
        "replace" => Kind::Replace,
        "time" => Kind::Time,
        "setprop" => Kind::SetProperty,
        _ => return None,
    };
    Some((kind, n.parse().ok()?))
}

#[derive(Default)]
struct Root {
    extra: Option<(Kind, u32)>,
}

impl Context for Root {}
impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = hostcalls::get_buffer(
            proxy_wasm::types::BufferType::PluginConfiguration,
            0,
            usize::MAX,
        )
        .ok()
        .flatten()
        .unwrap_or_default();
        self.extra = parse(&config);
        true
    }
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Noop { extra: self.extra }))
    }
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Noop {
    extra: Option<(Kind, u32)>,
}

impl Context for Noop {}
impl HttpContext for Noop {
    fn on_http_request_headers(&mut self, _headers: usize, _eos: bool) -> Action {
        let _ = hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, "user-type");
        if let Some((kind, n)) = self.extra {
            for _ in 0..n {
                call(kind);
            }
        }
        Action::Continue
    }
}

fn call(kind: Kind) {
    let req = MapType::HttpRequestHeaders;
    match kind {
        Kind::Map => drop(meshwasm_glue::read_headers(req)),
        Kind::Value => drop(hostcalls::get_map_value_bytes(req, "x-tenant")),
        Kind::Metric(id) => drop(hostcalls::increment_metric(id, 1)),
        Kind::Shared => drop(hostcalls::get_shared_data("meshwasm.noop")),
        Kind::Property => drop(hostcalls::get_property(vec!["connection", "mtls"])),
        Kind::Replace => drop(hostcalls::set_map_value_bytes(req, "x-noop", Some(b"1"))),
        Kind::Time => drop(hostcalls::get_current_time()),
        Kind::SetProperty => drop(hostcalls::set_property(
            vec!["meshwasm.noop"],
            Some(br#"{"requestPrincipal":"https://bench.example/user"}"#),
        )),
    }
}

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| Box::new(Root::default()));
}}
