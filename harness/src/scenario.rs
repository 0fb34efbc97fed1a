//! Scenarios are data (STYLE.md rule 11): a YAML file under
//! `testdata/scenarios/<feature>/<case>.yaml` names the filters, the
//! configuration (Istio YAML files, as a user would paste them) and requests
//! with expected outcomes. One runner drives every [`Backend`] — the wasmtime
//! host ([`HarnessBackend`]) and real Envoy ([`EnvoyBackend`]) — and checks
//! that each meets the expectations and that both agree, which is how we know
//! the harness is a faithful Envoy stand-in.
//!
//! ```yaml
//! # Istio rule checked, in a comment.
//! filters: [route]
//! config:
//!   resources: [virtual-service-example.yaml, destination-rule-example.yaml]
//!   inline: []                 # more resources, written out (YAML mappings)
//! requests:
//!   - name: premium users reach v2
//!     headers: {user-type: premium}
//!     repeat: 20
//!     expect: {status: 200, upstream: v2}
//!   - name: the rest split 90/10
//!     repeat: 2000
//!     expect: {status: 200, split: {v1: 90, v2: 10}, tolerance: 3}
//! ```
//!
//! Upstream controls and what the upstreams saw:
//!
//! ```yaml
//!   - name: two 503s are retried away
//!     upstream_fail: {v1: {status: 503, count: 2}}   # fail_next(503, 2)
//!     upstream_delay_ms: {v2: 300}                  # set_delay(300 ms)
//!     wait_ms: 1000        # time passes first: virtual in the harness, slept in Envoy
//!     headers: {x-test-delay-ms: "0"}               # per request, as the real service
//!     expect:
//!       status: 200
//!       hits: {v1: 3, v2: 0}            # requests each service got in this step
//!       elapsed_ms: {min: 0, max: 1000} # each request's duration
//!       headers: {x-route: a}           # response headers …
//!       no_headers: [x-internal]        # … and ones that must be absent
//!       upstream_headers: {":path": /api/products, x-debug: null}  # null = absent
//! ```
//!
//! - Before every step each backend resets its product services (hits,
//!   failures, delay) and applies the step's `upstream_fail` /
//!   `upstream_delay_ms`; failures are taken on arrival, so the first
//!   requests (or attempts) of the step get them.
//! - `hits` counts every request a version received during the step, retries
//!   included (the real service's `total_hits`); unlisted versions are not
//!   checked, but on deterministic steps both backends must agree on them.
//! - `elapsed_ms` is simulated time in the harness — the virtual time a
//!   filter held the stream (a fault delay, woken by the tick) plus its
//!   router emulation, [`router`], which adds upstream delays and timeouts,
//!   no retry back-off — and wall time in Envoy (back-off adds up to
//!   ~270 ms over three retries): keep bounds generous and delays short.
//! - `statuses: {500: 50, 200: 50}` checks the share of each response
//!   status, like `split` with the same `tolerance`; such steps are
//!   statistical, so the backends need not agree request by request.
//! - `upstream_headers` reads the request the answering service got (the
//!   last attempt): the harness's upstream request minus the router headers
//!   Envoy consumes, the real service's `last_request()`.
//! - Client-sent `x-envoy-*` headers reach the filters in both backends:
//!   whether Envoy's HCM strips them first depends on its trust settings
//!   (SPEC.md §timeouts and retries 8), so scenarios check the filter
//!   replaces them.
//!
//! Who sends a request ([`client`]): the connection and a bearer token.
//!
//! ```yaml
//!   - name: frontend may list the products
//!     client: {spiffe: spiffe://cluster.local/ns/default/sa/frontend}  # mTLS
//!     expect: {status: 200, upstream: v1, details: via_upstream}
//!   - name: TLS without a client certificate has no identity
//!     client: tls                       # default: plaintext
//!     expect:
//!       status: 403
//!       body: "RBAC: access denied"
//!       details: rbac_access_denied_matched_policy[none]
//!       counters: {meshwasm.rbac.denied: 1}       # this step's increase
//!       logs: ["denied GET: rbac_access_denied"]  # in the filters' log by now
//!   - name: alice's verified token
//!     jwt: {claims: {iss: https://issuer.meshwasm.test, sub: alice}}
//!     expect: {status: 200}
//! ```
//!
//! - `client`: `plaintext` (the default), `tls` (TLS without a client
//!   certificate), or mTLS with a certificate `{spiffe, uris, dns, cn}`:
//!   `spiffe` then `uris` are its URI SANs, `dns` its DNS SANs, `cn` its
//!   subject (none: empty, as Istio's workload certificates). Certificates
//!   are made when the scenario is loaded, signed by a test CA whose server
//!   certificate Envoy's listener presents; Envoy gets a real handshake on
//!   its listener (plaintext on the same port), the harness the connection
//!   properties Envoy 1.40 gives a filter for the same certificate
//!   (`connection.mtls`, `connection.peer_certificate`,
//!   `connection.uri_san_peer_certificate`, …) and `:scheme: https`.
//! - `jwt: {claims, signed_by}`: `authorization: Bearer <ES256 token>`
//!   with `claims`, plus `iat` and `exp` (now, now + 1 h by the backend's
//!   clock) unless given; signed by the key whose JWKS replaces the string
//!   `$SCENARIO_JWKS` anywhere in `config.inline` (e.g. a
//!   RequestAuthentication's `jwks`), or with `signed_by: stranger` by
//!   another key with the same `kid`.
//! - `details` is Envoy's `%RESPONSE_CODE_DETAILS%` (the access log's):
//!   a local reply's details, `via_upstream` when a service answered.
//! - `counters` are the increase of each counter during the step (the
//!   filters' metrics; `wasmcustom.<name>` in Envoy's `/stats`).
//! - `logs` must each be in the filters' log by the end of the step
//!   (Envoy's log at `info`; the whole run so far).
//! - `same_body: true` makes the backends' bodies agree byte for byte, and
//!   `body_contains` lists strings the body must hold (e.g. what the probe
//!   module observed).

mod backends;
pub mod client;
mod document;
mod envoy_backend;
mod expect;
pub mod product;
pub mod router;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use serde::Deserialize;

pub use backends::{HarnessBackend, PRODUCT_VERSIONS};
pub use client::{Client, ClientCert, Credentials, Jwt, Signer};
pub use document::{config_document, istio_resources};
pub use envoy_backend::EnvoyBackend;
pub use expect::{Bounds, Expect};

use crate::upstream::RecordedRequest;

/// One scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// File stem; set by [`Scenario::load`].
    #[serde(skip)]
    pub name: String,
    /// Filters of the chain, in order (`route` ⇒ `meshwasm_route.wasm`).
    pub filters: Vec<String>,
    /// The configuration document every filter gets.
    pub config: ScenarioConfig,
    /// Requests and their expected outcomes, in order.
    #[serde(default)]
    pub requests: Vec<Step>,
    /// The configuration must be refused; each string must be in the log.
    #[serde(default)]
    pub refused: Option<Vec<String>>,
    /// Certificates and keys the steps use; made by [`Scenario::from_yaml`].
    #[serde(skip)]
    pub credentials: Arc<Credentials>,
}

/// The configuration of a scenario.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioConfig {
    /// Istio YAML files under `testdata/istio/`, in order.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Further resources written inline (YAML mapping each).
    #[serde(default)]
    pub inline: Vec<serde_json::Value>,
    /// `workload` of the document (default: `default`/`app: product-service`).
    #[serde(default)]
    pub workload: Option<serde_json::Value>,
    /// `envoy` knobs of the document.
    #[serde(default)]
    pub envoy: Option<serde_json::Value>,
    /// The configuration text verbatim instead (e.g. something not JSON).
    #[serde(default)]
    pub raw: Option<String>,
}

/// One request, sent `repeat` times, and what must come back.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// What the step shows.
    pub name: String,
    /// Method (default `GET`).
    #[serde(default = "default_method")]
    pub method: String,
    /// Path with query (default `/api/products`).
    #[serde(default = "default_path")]
    pub path: String,
    /// `:authority` (default `product-service`).
    #[serde(default = "default_authority")]
    pub authority: String,
    /// Request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// More request headers as `[name, value]` pairs, sent after `headers`
    /// in order: a name may repeat.
    #[serde(default)]
    pub header_list: Vec<(String, String)>,
    /// The connection: `plaintext` (default), `tls` or an mTLS certificate.
    #[serde(default)]
    pub client: Client,
    /// A bearer token to send, signed at test time.
    #[serde(default)]
    pub jwt: Option<Jwt>,
    /// How many times to send it (default 1).
    #[serde(default = "one")]
    pub repeat: u32,
    /// Before the step: the next `count` requests to a version answer
    /// `status` (`ProductService::fail_next`).
    #[serde(default)]
    pub upstream_fail: BTreeMap<String, Fail>,
    /// Before the step: every request to a version takes this long
    /// (`ProductService::set_delay`).
    #[serde(default)]
    pub upstream_delay_ms: BTreeMap<String, u64>,
    /// Time that passes before the step: the harness advances its virtual
    /// clock, Envoy's backend sleeps (keep it short there).
    #[serde(default)]
    pub wait_ms: u64,
    /// Expected outcome of every repetition (or of all, for `split`).
    pub expect: Expect,
}

/// Injected failures of one product service.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fail {
    /// Status of the failed answers.
    pub status: u16,
    /// How many requests fail.
    pub count: u64,
}

impl Step {
    /// Every request header of the step, in the order sent.
    pub fn all_headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers
            .iter()
            .chain(self.header_list.iter().map(|(k, v)| (k, v)))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

fn default_method() -> String {
    "GET".into()
}
fn default_path() -> String {
    "/api/products".into()
}
fn default_authority() -> String {
    "product-service".into()
}
fn one() -> u32 {
    1
}

/// What a client observed for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Status.
    pub status: u16,
    /// `service-version` of the product service that answered, if any.
    pub upstream: Option<String>,
    /// Response headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// Response body.
    pub body: Vec<u8>,
    /// `%RESPONSE_CODE_DETAILS%`, when the step expects `details`.
    pub details: Option<String>,
    /// Duration (harness: simulated; Envoy: wall time), in ms.
    pub elapsed_ms: u64,
    /// The request the answering product service got, if one answered.
    pub upstream_request: Option<RecordedRequest>,
}

impl Observed {
    /// First value of response header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A place scenarios run: the wasmtime host or real Envoy.
pub trait Backend {
    /// `harness` or `envoy`.
    fn name(&self) -> &'static str;
    /// Resets the product services, then applies the step's upstream
    /// controls.
    fn prepare(&mut self, step: &Step) -> anyhow::Result<()>;
    /// Requests each product-service version received so far.
    fn hits(&self) -> anyhow::Result<BTreeMap<String, u64>>;
    /// Sends one request of a step.
    fn send(&mut self, step: &Step) -> anyhow::Result<Observed>;
    /// Lets `ms` milliseconds pass (virtual time in the harness, real time
    /// in Envoy).
    fn wait(&mut self, ms: u64) -> anyhow::Result<()>;
    /// Value of counter `name` of the filters (0 when not defined).
    fn counter(&self, name: &str) -> anyhow::Result<u64>;
    /// The filters' log so far, once it holds each of `needles` (or after a
    /// short wait: a log file may lag).
    fn logs(&self, needles: &[String]) -> String;
}

/// How starting a backend on a scenario's configuration ended.
pub enum Started<B> {
    /// Running, ready for requests.
    Running(B),
    /// The filters refused the configuration; the log says why.
    Refused(String),
}

/// `<workspace>/testdata`.
pub fn testdata() -> PathBuf {
    crate::envoy::workspace_root().join("testdata")
}

impl Scenario {
    /// Reads a scenario file.
    pub fn load(path: &Path) -> anyhow::Result<Scenario> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let name = path
            .strip_prefix(testdata().join("scenarios"))
            .unwrap_or(path)
            .with_extension("")
            .display()
            .to_string();
        Scenario::from_yaml(&name, &text)
            .with_context(|| format!("parsing scenario {}", path.display()))
    }

    /// A scenario from YAML text, named `name`.
    pub fn from_yaml(name: &str, text: &str) -> anyhow::Result<Scenario> {
        let mut s: Scenario = serde_norway::from_str(text)?;
        s.name = name.to_owned();
        let jwt = s.requests.iter().any(|r| r.jwt.is_some())
            || s.config.inline.iter().any(client::wants_jwks);
        s.credentials = Arc::new(Credentials::make(
            s.requests.iter().map(|r| &r.client),
            jwt,
        )?);
        Ok(s)
    }

    /// Every scenario under `testdata/scenarios/`, sorted by name.
    pub fn all() -> anyhow::Result<Vec<Scenario>> {
        let mut files = Vec::new();
        let root = testdata().join("scenarios");
        for dir in
            std::fs::read_dir(&root).with_context(|| format!("reading {}", root.display()))?
        {
            let dir = dir?.path();
            if dir.is_dir() {
                for f in std::fs::read_dir(&dir)? {
                    let f = f?.path();
                    if f.extension().is_some_and(|e| e == "yaml") {
                        files.push(f);
                    }
                }
            }
        }
        files.sort();
        files.iter().map(|f| Scenario::load(f)).collect()
    }

    /// The configuration document the filters get.
    pub fn config_text(&self) -> anyhow::Result<String> {
        if let Some(raw) = &self.config.raw {
            return Ok(raw.clone());
        }
        let files: Vec<PathBuf> = self
            .config
            .resources
            .iter()
            .map(|f| testdata().join("istio").join(f))
            .collect();
        let mut resources = istio_resources(&files)?;
        let mut inline = self.config.inline.clone();
        if let Some(jwks) = self.credentials.jwks() {
            inline.iter_mut().for_each(|r| client::fill_jwks(r, &jwks));
        }
        resources.extend(inline);
        let doc = config_document(
            resources,
            self.config.workload.clone(),
            self.config.envoy.clone(),
        );
        Ok(serde_json::to_string(&doc)?)
    }

    /// Checks a refusal against `refused`.
    pub fn check_refusal(&self, backend: &str, log: &str) -> anyhow::Result<()> {
        let Some(needles) = &self.refused else {
            bail!("{backend}: the configuration was refused:\n{log}");
        };
        for n in needles {
            if !log.contains(n.as_str()) {
                bail!("{backend}: the refusal log lacks {n:?}:\n{log}");
            }
        }
        Ok(())
    }

    /// Runs every step on every backend; checks expectations on each and
    /// that deterministic steps observe the same on all.
    pub fn run(&self, backends: &mut [&mut dyn Backend]) -> anyhow::Result<()> {
        if self.refused.is_some() {
            bail!("the configuration should have been refused but was accepted");
        }
        let mut failures = Vec::new();
        for step in &self.requests {
            let mut per_backend = Vec::new();
            for b in backends.iter_mut() {
                let name = b.name();
                let run = run_step(&mut **b, step)
                    .with_context(|| format!("{name}: step {:?}", step.name))?;
                if let Err(e) = step.expect.check(&run) {
                    failures.push(format!("{name}: step {:?}: {e}", step.name));
                }
                per_backend.push((name, run));
            }
            if !step.expect.is_statistical() {
                failures.extend(disagreements(&step.name, &per_backend));
            }
            if step.expect.same_body {
                failures.extend(body_disagreements(&step.name, &per_backend));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            bail!("{}", failures.join("\n"))
        }
    }
}

/// What one backend saw in one step.
pub(crate) struct StepRun {
    /// What came back, request by request.
    pub seen: Vec<Observed>,
    /// Requests each version received during the step.
    pub hits: BTreeMap<String, u64>,
    /// The increase of each counter the step expects.
    pub counters: BTreeMap<String, u64>,
    /// The filters' log by the end of the step, when it expects lines.
    pub log: String,
}

/// The counters a step expects, as they are now.
fn counters(b: &dyn Backend, step: &Step) -> anyhow::Result<BTreeMap<String, u64>> {
    step.expect
        .counters
        .keys()
        .map(|c| Ok((c.clone(), b.counter(c)?)))
        .collect()
}

/// How much each of `after` grew since `before`.
fn increase(after: BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .into_iter()
        .map(|(k, n)| {
            let was = before.get(&k).copied().unwrap_or(0);
            (k, n.saturating_sub(was))
        })
        .collect()
}

/// Sends a step's requests; returns what came back, the hits the step
/// caused per version and the counters it moved.
fn run_step(b: &mut dyn Backend, step: &Step) -> anyhow::Result<StepRun> {
    if step.wait_ms > 0 {
        b.wait(step.wait_ms)?;
    }
    b.prepare(step)?;
    let hits_before = b.hits()?;
    let counters_before = counters(b, step)?;
    let mut seen = Vec::with_capacity(step.repeat as usize);
    for _ in 0..step.repeat {
        seen.push(b.send(step)?);
    }
    let log = if step.expect.logs.is_empty() {
        String::new()
    } else {
        b.logs(&step.expect.logs)
    };
    Ok(StepRun {
        seen,
        hits: increase(b.hits()?, &hits_before),
        counters: increase(counters(b, step)?, &counters_before),
        log,
    })
}

/// What one backend saw in one step, named.
type NamedRun = (&'static str, StepRun);

/// Where backends returned different bodies (`same_body`).
fn body_disagreements(step: &str, runs: &[NamedRun]) -> Vec<String> {
    let Some(((a, first), rest)) = runs.split_first().map(|(f, r)| ((f.0, &f.1), r)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (b, other) in rest {
        let mut pairs = first.seen.iter().zip(&other.seen).enumerate();
        if let Some((i, (x, y))) = pairs.find(|(_, (x, y))| x.body != y.body) {
            out.push(format!(
                "step {step:?}: {a} and {b} returned different bodies at request {i}:\n{a}: {}\n{b}: {}",
                String::from_utf8_lossy(&x.body),
                String::from_utf8_lossy(&y.body)
            ));
        }
    }
    out
}

/// Where backends saw different (status, upstream) sequences or hit counts
/// for one step.
fn disagreements(step: &str, runs: &[NamedRun]) -> Vec<String> {
    let key = |o: &Observed| (o.status, o.upstream.clone());
    let Some(((a, first_run), rest)) = runs.split_first().map(|(f, r)| ((f.0, &f.1), r)) else {
        return Vec::new();
    };
    let first: Vec<_> = first_run.seen.iter().map(key).collect();
    let first_hits = &first_run.hits;
    let mut out = Vec::new();
    for (b, other_run) in rest {
        let other: Vec<_> = other_run.seen.iter().map(key).collect();
        let hits = &other_run.hits;
        if first != other {
            let at = first
                .iter()
                .zip(&other)
                .position(|(x, y)| x != y)
                .unwrap_or(0);
            out.push(format!(
                "step {step:?}: {a} and {b} disagree at request {at}: {a} saw {:?}, {b} saw {:?}",
                first.get(at),
                other.get(at)
            ));
        }
        if first_hits != hits {
            out.push(format!(
                "step {step:?}: {a} and {b} disagree on upstream hits: {a} {first_hits:?}, {b} {hits:?}"
            ));
        }
    }
    out
}
