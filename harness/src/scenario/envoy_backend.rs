//! The scenario's filters in real Envoy 1.40 on `envoy.yaml`, in front of
//! two real product services. When a step comes over TLS the listener
//! also serves TLS on the same port, with the scenario's test CA (client
//! certificates optional, verified against that CA; plaintext still
//! served), and each such request opens its own TLS connection presenting
//! the step's client certificate, if any.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};

use super::backends::PRODUCT_VERSIONS;
use super::client::Client as ClientKind;
use super::{Backend, Credentials, Observed, Scenario, Started, Step};
use crate::client::{Client, Response};
use crate::envoy::{
    Envoy, EnvoyError, EnvoyRig, ListenerTls, WasmFilter, product_cluster, wasm_path,
};
use crate::jwt;
use crate::tls::HttpsClient;
use crate::upstream::ProductService;

/// How long [`Backend::logs`] waits for lines Envoy has not flushed yet.
const LOG_WAIT: Duration = Duration::from_secs(2);

/// The scenario's filters in real Envoy 1.40 on `envoy.yaml`, in front of
/// two real product services.
pub struct EnvoyBackend {
    envoy: Envoy,
    client: Client,
    /// A TLS client per TLS connection kind the steps use.
    tls_clients: BTreeMap<ClientKind, HttpsClient>,
    credentials: Arc<Credentials>,
    upstreams: Vec<ProductService>,
}

impl EnvoyBackend {
    /// Starts product services v1/v2 and Envoy (one worker) with the
    /// scenario's filters.
    pub fn start(scenario: &Scenario) -> anyhow::Result<Started<EnvoyBackend>> {
        Self::start_with_workers(scenario, 1)
    }

    /// As [`EnvoyBackend::start`], with `workers` Envoy worker threads.
    pub fn start_with_workers(
        scenario: &Scenario,
        workers: u32,
    ) -> anyhow::Result<Started<EnvoyBackend>> {
        let config = scenario.config_text()?;
        let credentials = Arc::clone(&scenario.credentials);
        let tls_clients = tls_clients(scenario, &credentials)?;
        let upstreams = PRODUCT_VERSIONS
            .iter()
            .map(|v| ProductService::start(v))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let filters = scenario
            .filters
            .iter()
            .map(|f| WasmFilter::new(&format!("meshwasm.{f}"), wasm_path(f), config.clone()))
            .collect();
        let mut rig = EnvoyRig::builder().filters(filters).concurrency(workers);
        for u in &upstreams {
            rig = rig.cluster(&product_cluster(u.version()), u.addr());
        }
        if let Some(pki) = credentials.pki() {
            rig = rig.tls(ListenerTls::new(pki));
        }
        let envoy = match rig.start() {
            Ok(envoy) => envoy,
            Err(EnvoyError::Refused { log }) => return Ok(Started::Refused(log)),
            Err(e) => return Err(e.into()),
        };
        Ok(Started::Running(EnvoyBackend {
            envoy,
            client: Client::new()?,
            tls_clients,
            credentials,
            upstreams,
        }))
    }

    /// Envoy's address.
    pub fn addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(format!("127.0.0.1:{}", self.envoy.port()).parse()?)
    }

    /// The running Envoy (admin, stats, logs).
    pub fn envoy(&self) -> &Envoy {
        &self.envoy
    }

    /// The product service of `version`.
    pub fn upstream(&self, version: &str) -> Option<&ProductService> {
        self.upstreams.iter().find(|u| u.version() == version)
    }

    fn upstream_or_err(&self, version: &str) -> anyhow::Result<&ProductService> {
        match self.upstream(version) {
            Some(u) => Ok(u),
            None => bail!("no product service {version:?}"),
        }
    }

    /// Sends `step`'s request over its connection kind.
    fn exchange(&self, step: &Step, headers: &[(&str, &str)]) -> anyhow::Result<Response> {
        if !step.client.is_tls() {
            let url = format!("{}{}", self.envoy.url(), step.path);
            return self.client.request(&step.method, &url, headers, Vec::new());
        }
        let client = self
            .tls_clients
            .get(&step.client)
            .ok_or_else(|| anyhow!("no TLS client for {:?}", step.client))?;
        let url = format!("{}{}", self.envoy.https_url(), step.path);
        client.request(&step.method, &url, headers, Vec::new())
    }

    /// `%RESPONSE_CODE_DETAILS%` of the last request, from the access log.
    fn last_details(&self) -> Option<String> {
        let log = self.envoy.access_log();
        let line = log.lines().last()?;
        // `[start] "METHOD PATH PROTOCOL" CODE FLAGS DETAILS CLUSTER …`
        let (_, after_request) = line.split_once("\" ")?;
        after_request.split_whitespace().nth(2).map(str::to_owned)
    }
}

/// One TLS client per distinct TLS connection kind of the steps: without a
/// certificate, or presenting one made for the scenario.
fn tls_clients(
    scenario: &Scenario,
    credentials: &Credentials,
) -> anyhow::Result<BTreeMap<ClientKind, HttpsClient>> {
    let mut out = BTreeMap::new();
    for step in &scenario.requests {
        if !step.client.is_tls() || out.contains_key(&step.client) {
            continue;
        }
        let pki = credentials
            .pki()
            .ok_or_else(|| anyhow!("no test CA was made for TLS steps"))?;
        let identity = match &step.client {
            ClientKind::Mtls(cert) => Some(credentials.identity(cert)?),
            _ => None,
        };
        out.insert(
            step.client.clone(),
            HttpsClient::new(pki.ca_pem(), identity)?,
        );
    }
    Ok(out)
}

impl Backend for EnvoyBackend {
    fn name(&self) -> &'static str {
        "envoy"
    }

    fn wait(&mut self, ms: u64) -> anyhow::Result<()> {
        std::thread::sleep(std::time::Duration::from_millis(ms));
        Ok(())
    }

    fn prepare(&mut self, step: &Step) -> anyhow::Result<()> {
        self.upstreams.iter().for_each(ProductService::reset);
        for (version, f) in &step.upstream_fail {
            self.upstream_or_err(version)?.fail_next(f.status, f.count);
        }
        for (version, ms) in &step.upstream_delay_ms {
            self.upstream_or_err(version)?
                .set_delay(Duration::from_millis(*ms));
        }
        Ok(())
    }

    fn hits(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        Ok(self
            .upstreams
            .iter()
            .map(|u| (u.version().to_owned(), u.total_hits()))
            .collect())
    }

    fn send(&mut self, step: &Step) -> anyhow::Result<Observed> {
        let bearer = match &step.jwt {
            Some(jwt) => Some(self.credentials.bearer(jwt, jwt::now())?),
            None => None,
        };
        let mut headers: Vec<(&str, &str)> = vec![("host", step.authority.as_str())];
        headers.extend(step.all_headers());
        if let Some(bearer) = &bearer {
            headers.push(("authorization", bearer.as_str()));
        }
        #[allow(clippy::disallowed_methods)]
        // reason: a request through real Envoy takes wall time; scenarios bound it
        let started = std::time::Instant::now();
        let r = self.exchange(step, &headers)?;
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let upstream = r.header("service-version").map(str::to_owned);
        let upstream_request = upstream
            .as_deref()
            .and_then(|v| self.upstream(v))
            .and_then(ProductService::last_request);
        let details = match step.expect.details {
            Some(_) => self.last_details(),
            None => None,
        };
        Ok(Observed {
            status: r.status,
            upstream,
            headers: r.headers,
            body: r.body,
            details,
            elapsed_ms,
            upstream_request,
        })
    }

    fn counter(&self, name: &str) -> anyhow::Result<u64> {
        Ok(self
            .envoy
            .counter(&format!("wasmcustom.{name}"))
            .unwrap_or(0))
    }

    fn logs(&self, needles: &[String]) -> String {
        #[allow(clippy::disallowed_methods)]
        // reason: Envoy flushes its log file on its own clock
        let started = std::time::Instant::now();
        loop {
            let log = self.envoy.log();
            if needles.iter().all(|n| log.contains(n.as_str())) || started.elapsed() > LOG_WAIT {
                return log;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
