//! The two places a scenario runs. Both put the same route table behind the
//! filters — the one in `envoy.yaml`: the cluster named in the cluster header
//! if there is one (an unknown one is Envoy's `503 cluster_not_found`), else
//! product-service v1 — and the seed's product service v1/v2 behind it. The
//! harness emulates Envoy's router ([`super::router`]: timeouts and retries
//! from the `x-envoy-*` headers) and the product services
//! ([`super::product`]) on simulated time; Envoy runs the real ones
//! ([`super::envoy_backend`]). The harness gives the filters the
//! connection properties of each step's client
//! ([`super::Credentials::properties`]).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use serde_json::Value;

use super::product::Products;
use super::router::{CONSUMED_HEADERS, RouterPolicy, TIMEOUT_BODY, forward};
use super::{Backend, Credentials, Observed, Scenario, Started, Step};
use crate::envoy::{product_cluster, wasm_path};
use crate::host::{
    Chain, FilterSpec, HarnessError, Host, PendingStream, UpstreamRequest, UpstreamResponse,
};
use crate::upstream::RecordedRequest;

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
/// table, Envoy's router and the product services emulated behind them.
pub struct HarnessBackend {
    // Declared before `host`: the chain is dropped first.
    chain: Chain,
    host: Host,
    sim: Rc<RefCell<Sim>>,
    credentials: Arc<Credentials>,
}

/// What the upstream closure shares with the backend.
struct Sim {
    products: Products,
    /// Simulated duration of the last request that reached the router.
    elapsed_ms: u64,
    /// Envoy's response details of the router's answer to it.
    details: &'static str,
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
        let sim = Rc::new(RefCell::new(Sim {
            products: Products::new(PRODUCT_VERSIONS),
            elapsed_ms: 0,
            details: "",
        }));
        let header = cluster_header(scenario);
        let shared = Rc::clone(&sim);
        chain.set_upstream(move |req: &UpstreamRequest| {
            let Ok(mut sim) = shared.try_borrow_mut() else {
                return UpstreamResponse::new(500).body("harness: upstream state busy");
            };
            let (response, elapsed, details) = route_and_answer(&header, req, &mut sim.products);
            sim.elapsed_ms = elapsed;
            sim.details = details;
            response
        });
        Ok(Started::Running(HarnessBackend {
            chain,
            host,
            sim,
            credentials: Arc::clone(&scenario.credentials),
        }))
    }

    /// Value of a counter or gauge of the filters (`wasmcustom.<name>` or
    /// `<name>`).
    pub fn metric(&self, name: &str) -> Option<u64> {
        self.host.metric(name)
    }
}

/// `envoy.yaml`'s route table, Envoy's router and the product service,
/// emulated; returns the response, the simulated duration and Envoy's
/// response details.
fn route_and_answer(
    cluster_header: &str,
    req: &UpstreamRequest,
    products: &mut Products,
) -> (UpstreamResponse, u64, &'static str) {
    let version = match req.header(cluster_header) {
        None => Some("v1"),
        Some(cluster) => PRODUCT_VERSIONS
            .iter()
            .copied()
            .find(|v| product_cluster(v) == cluster),
    };
    let Some(version) = version else {
        return (UpstreamResponse::new(503), 0, "cluster_not_found"); // flag NC
    };
    let policy = RouterPolicy::from_request(req);
    let out = forward(&policy, || products.serve(version, req));
    // The router's own 504 (no service answered in time) or a service's answer.
    let timed_out = out.response.status == 504
        && out.response.body == TIMEOUT_BODY.as_bytes()
        && !out
            .response
            .headers
            .iter()
            .any(|(k, _)| k == "service-version");
    let details = if timed_out {
        "upstream_response_timeout"
    } else {
        "via_upstream"
    };
    (out.response, out.elapsed_ms, details)
}

/// The longest a filter may hold a scenario request paused, in virtual time.
const MAX_PAUSE: Duration = Duration::from_secs(600);

/// While a filter holds `stream` paused (e.g. a fault delay waiting for its
/// `on_tick`), moves the virtual clock to the next tick or http-call timeout,
/// until the stream completes; returns the virtual time that took, which is
/// wall time in Envoy. A stream paused with nothing scheduled, or for longer
/// than [`MAX_PAUSE`], is an error.
fn run_clock_until_done(host: &mut Host, stream: &PendingStream) -> anyhow::Result<Duration> {
    let mut waited = Duration::ZERO;
    while !stream.is_done() {
        let Some(next) = host.next_event_in() else {
            bail!("a filter holds the request paused and no tick or call timeout is due");
        };
        // A zero step still runs the due event; the clock moves on the next one.
        waited += next;
        if waited > MAX_PAUSE {
            bail!("a filter held the request paused for more than {MAX_PAUSE:?} of virtual time");
        }
        host.advance(next)?;
    }
    Ok(waited)
}

/// The request as the upstream got it: the router consumed its headers.
fn as_recorded(req: &UpstreamRequest) -> RecordedRequest {
    let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
    RecordedRequest {
        method: req.method().unwrap_or_default().to_owned(),
        path: req.path().unwrap_or_default().to_owned(),
        headers: req
            .headers
            .iter()
            .filter(|(k, _)| !k.starts_with(':') && !CONSUMED_HEADERS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), text(v)))
            .collect(),
    }
}

impl Backend for HarnessBackend {
    fn name(&self) -> &'static str {
        "harness"
    }

    fn prepare(&mut self, step: &Step) -> anyhow::Result<()> {
        let products = &mut self.sim.borrow_mut().products;
        products.reset();
        for (version, f) in &step.upstream_fail {
            products.fail_next(version, f.status, f.count)?;
        }
        for (version, ms) in &step.upstream_delay_ms {
            products.set_delay(version, *ms)?;
        }
        Ok(())
    }

    fn hits(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        Ok(self.sim.borrow().products.hits())
    }

    fn wait(&mut self, ms: u64) -> anyhow::Result<()> {
        self.host.advance(Duration::from_millis(ms))?;
        Ok(())
    }

    fn send(&mut self, step: &Step) -> anyhow::Result<Observed> {
        {
            let mut sim = self.sim.borrow_mut();
            sim.elapsed_ms = 0;
            sim.details = "";
        }
        let mut req = self
            .chain
            .request(&step.method, &step.path)
            .authority(&step.authority);
        if step.client.is_tls() {
            req = req.scheme("https");
        }
        for (k, v) in self.credentials.properties(&step.client)? {
            req = req.property(k, v);
        }
        for (k, v) in step.all_headers() {
            req = req.header(k, v);
        }
        if let Some(jwt) = &step.jwt {
            let now = self.host.now().duration_since(UNIX_EPOCH)?.as_secs();
            let bearer = self.credentials.bearer(jwt, i64::try_from(now)?)?;
            req = req.header("authorization", bearer);
        }
        let stream = req.start()?;
        let paused = run_clock_until_done(&mut self.host, &stream)?;
        let out = stream.finish()?;
        let routed_ms = self.sim.borrow().elapsed_ms;
        self.host.advance(Duration::from_millis(routed_ms))?;
        let paused_ms = u64::try_from(paused.as_millis()).unwrap_or(u64::MAX);
        let elapsed_ms = paused_ms.saturating_add(routed_ms);
        let headers: Vec<(String, String)> = out
            .response_headers()
            .iter()
            .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        let upstream = out
            .response_header("service-version")
            .filter(|_| out.local_reply().is_none())
            .map(str::to_owned);
        let upstream_request = out
            .upstream_request()
            .filter(|_| upstream.is_some())
            .map(as_recorded);
        let details = match out.local_reply() {
            Some(reply) => Some(reply.details.clone()),
            None => Some(self.sim.borrow().details)
                .filter(|d| !d.is_empty())
                .map(str::to_owned),
        };
        Ok(Observed {
            status: u16::try_from(out.status()).context("status out of range")?,
            upstream,
            headers,
            body: out.body().to_vec(),
            details,
            elapsed_ms,
            upstream_request,
        })
    }

    fn counter(&self, name: &str) -> anyhow::Result<u64> {
        Ok(self.host.metric(name).unwrap_or(0))
    }

    fn logs(&self, _needles: &[String]) -> String {
        self.host
            .logs()
            .iter()
            .map(|l| l.message.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}
