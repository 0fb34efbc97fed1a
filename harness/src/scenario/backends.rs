//! The two places a scenario runs. Both put the same route table behind the
//! filters — the one in `envoy.yaml`: the cluster named in the cluster header
//! if there is one (an unknown one is Envoy's `503 cluster_not_found`), else
//! product-service v1 — and the seed's product service v1/v2 behind it.

use std::net::SocketAddr;

use anyhow::Context as _;
use serde_json::Value;

use super::{Backend, Observed, Scenario, Started, Step};
use crate::client::Client;
use crate::envoy::{Envoy, EnvoyError, EnvoyRig, WasmFilter, product_cluster, wasm_path};
use crate::host::{Chain, FilterSpec, HarnessError, Host, UpstreamRequest, UpstreamResponse};
use crate::upstream::ProductService;

/// Versions of the product service behind both backends.
pub const PRODUCT_VERSIONS: &[&str] = &["v1", "v2"];

/// The header the route filter writes: the scenario's `envoy.clusterHeader`,
/// else meshwasm's default.
fn cluster_header(scenario: &Scenario) -> String {
    scenario
        .config
        .envoy
        .as_ref()
        .and_then(|e| e.get("clusterHeader"))
        .and_then(Value::as_str)
        .unwrap_or(meshwasm::config::DEFAULT_CLUSTER_HEADER)
        .to_ascii_lowercase()
}

/// The scenario's filters on the wasmtime host, with `envoy.yaml`'s route
/// table and the product service emulated behind them.
pub struct HarnessBackend {
    // Declared before `host`: the chain is dropped first.
    chain: Chain,
    _host: Host,
}

impl HarnessBackend {
    /// Loads the scenario's filters with its configuration (seeded RNG).
    pub fn start(scenario: &Scenario, seed: u64) -> anyhow::Result<Started<HarnessBackend>> {
        let config = scenario.config_text()?;
        let mut host = Host::builder().seed(seed).build()?;
        let specs: Vec<FilterSpec> = scenario
            .filters
            .iter()
            .map(|f| {
                FilterSpec::new(&format!("meshwasm.{f}"), wasm_path(f))
                    .config(config.as_bytes())
                    .vm_id("meshwasm")
            })
            .collect();
        let chain = match host.load(&specs) {
            Ok(chain) => chain,
            Err(HarnessError::ConfigureRefused { logs, .. }) => {
                let log = logs.join("\n");
                return Ok(Started::Refused(log));
            }
            Err(e) => return Err(e.into()),
        };
        let header = cluster_header(scenario);
        chain.set_upstream(move |req: &UpstreamRequest| route_and_answer(&header, req));
        Ok(Started::Running(HarnessBackend { chain, _host: host }))
    }
}

/// `envoy.yaml`'s route table and the product service, emulated.
fn route_and_answer(cluster_header: &str, req: &UpstreamRequest) -> UpstreamResponse {
    let version = match req.header(cluster_header) {
        None => Some("v1"),
        Some(cluster) => PRODUCT_VERSIONS
            .iter()
            .copied()
            .find(|v| product_cluster(v) == cluster),
    };
    let Some(version) = version else {
        return UpstreamResponse::new(503); // Envoy: cluster_not_found, flag NC
    };
    let path = req.path().unwrap_or("/");
    let path = path.split(['?', '#']).next().unwrap_or(path);
    match (req.method().unwrap_or("GET"), path) {
        ("GET", "/api/products") => UpstreamResponse::new(200)
            .header("content-type", "application/json")
            .header("service-version", version)
            .body(format!("{{\"version\":\"{version}\"}}\n")),
        ("GET", "/health") => UpstreamResponse::new(200)
            .header("service-version", version)
            .body("OK"),
        (_, "/api/products" | "/health") => {
            UpstreamResponse::new(405).header("service-version", version)
        }
        _ => UpstreamResponse::new(404)
            .header("service-version", version)
            .body("404 page not found\n"),
    }
}

impl Backend for HarnessBackend {
    fn name(&self) -> &'static str {
        "harness"
    }

    fn send(&mut self, step: &Step) -> anyhow::Result<Observed> {
        let mut req = self
            .chain
            .request(&step.method, &step.path)
            .authority(&step.authority);
        for (k, v) in &step.headers {
            req = req.header(k, v);
        }
        let out = req.send()?;
        let headers: Vec<(String, String)> = out
            .response_headers()
            .iter()
            .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        let upstream = out
            .response_header("service-version")
            .filter(|_| out.local_reply().is_none())
            .map(str::to_owned);
        Ok(Observed {
            status: u16::try_from(out.status()).context("status out of range")?,
            upstream,
            headers,
            body: out.body().to_vec(),
        })
    }
}

/// The scenario's filters in real Envoy 1.40 on `envoy.yaml`, in front of
/// two real product services.
pub struct EnvoyBackend {
    envoy: Envoy,
    client: Client,
    _upstreams: Vec<ProductService>,
}

impl EnvoyBackend {
    /// Starts product services v1/v2 and Envoy with the scenario's filters.
    pub fn start(scenario: &Scenario) -> anyhow::Result<Started<EnvoyBackend>> {
        let config = scenario.config_text()?;
        let upstreams = PRODUCT_VERSIONS
            .iter()
            .map(|v| ProductService::start(v))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let filters = scenario
            .filters
            .iter()
            .map(|f| WasmFilter::new(&format!("meshwasm.{f}"), wasm_path(f), config.clone()))
            .collect();
        let mut rig = EnvoyRig::builder().filters(filters);
        for u in &upstreams {
            rig = rig.cluster(&product_cluster(u.version()), u.addr());
        }
        let envoy = match rig.start() {
            Ok(envoy) => envoy,
            Err(EnvoyError::Refused { log }) => return Ok(Started::Refused(log)),
            Err(e) => return Err(e.into()),
        };
        Ok(Started::Running(EnvoyBackend {
            envoy,
            client: Client::new()?,
            _upstreams: upstreams,
        }))
    }

    /// Envoy's address.
    pub fn addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(format!("127.0.0.1:{}", self.envoy.port()).parse()?)
    }
}

impl Backend for EnvoyBackend {
    fn name(&self) -> &'static str {
        "envoy"
    }

    fn send(&mut self, step: &Step) -> anyhow::Result<Observed> {
        let mut headers: Vec<(&str, &str)> = vec![("host", step.authority.as_str())];
        headers.extend(step.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let url = format!("{}{}", self.envoy.url(), step.path);
        let r = self
            .client
            .request(&step.method, &url, &headers, Vec::new())?;
        let upstream = r.header("service-version").map(str::to_owned);
        Ok(Observed {
            status: r.status,
            upstream,
            headers: r.headers,
            body: r.body,
        })
    }
}
