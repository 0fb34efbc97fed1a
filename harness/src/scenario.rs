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
//! requests:
//!   - name: premium users reach v2
//!     headers: {user-type: premium}
//!     repeat: 20
//!     expect: {status: 200, upstream: v2}
//!   - name: the rest split 90/10
//!     repeat: 2000
//!     expect: {status: 200, split: {v1: 90, v2: 10}, tolerance: 3}
//! ```

mod backends;
mod document;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::Deserialize;

pub use backends::{EnvoyBackend, HarnessBackend, PRODUCT_VERSIONS};
pub use document::{config_document, istio_resources};

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
    /// How many times to send it (default 1).
    #[serde(default = "one")]
    pub repeat: u32,
    /// Expected outcome of every repetition (or of all, for `split`).
    pub expect: Expect,
}

/// Expected outcome of a step.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Status the client gets.
    #[serde(default)]
    pub status: Option<u16>,
    /// Product-service version that answered (`service-version`), or `none`
    /// when no upstream answered.
    #[serde(default)]
    pub upstream: Option<String>,
    /// Share of requests per version, in percent.
    #[serde(default)]
    pub split: BTreeMap<String, f64>,
    /// Allowed deviation of each share, in percentage points (default 3).
    #[serde(default)]
    pub tolerance: Option<f64>,
    /// Response headers that must have these values.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Exact response body.
    #[serde(default)]
    pub body: Option<String>,
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
}

impl Observed {
    fn header(&self, name: &str) -> Option<&str> {
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
    /// Sends one request of a step.
    fn send(&mut self, step: &Step) -> anyhow::Result<Observed>;
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
        let mut s: Scenario = serde_norway::from_str(&text)
            .with_context(|| format!("parsing scenario {}", path.display()))?;
        s.name = path
            .strip_prefix(testdata().join("scenarios"))
            .unwrap_or(path)
            .with_extension("")
            .display()
            .to_string();
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
        resources.extend(self.config.inline.iter().cloned());
        config_document(
            resources,
            self.config.workload.clone(),
            self.config.envoy.clone(),
        )
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
            let mut per_backend: Vec<(&'static str, Vec<Observed>)> = Vec::new();
            for b in backends.iter_mut() {
                let mut seen = Vec::with_capacity(step.repeat as usize);
                for _ in 0..step.repeat {
                    seen.push(
                        b.send(step)
                            .with_context(|| format!("{}: step {:?}", b.name(), step.name))?,
                    );
                }
                if let Err(e) = step.expect.check(&seen) {
                    failures.push(format!("{}: step {:?}: {e}", b.name(), step.name));
                }
                per_backend.push((b.name(), seen));
            }
            if step.expect.split.is_empty() {
                failures.extend(disagreements(&step.name, &per_backend));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            bail!("{}", failures.join("\n"))
        }
    }
}

/// Where backends saw different (status, upstream) sequences for one step.
fn disagreements(step: &str, seen: &[(&'static str, Vec<Observed>)]) -> Vec<String> {
    let key = |o: &Observed| (o.status, o.upstream.clone());
    let Some(((a, first), rest)) = seen.split_first().map(|(f, r)| ((f.0, &f.1), r)) else {
        return Vec::new();
    };
    let first: Vec<_> = first.iter().map(key).collect();
    rest.iter()
        .filter_map(|(b, other)| {
            let other: Vec<_> = other.iter().map(key).collect();
            (first != other).then(|| {
                let at = first.iter().zip(&other).position(|(x, y)| x != y).unwrap_or(0);
                format!(
                    "step {step:?}: {a} and {b} disagree at request {at}: {a} saw {:?}, {b} saw {:?}",
                    first.get(at),
                    other.get(at)
                )
            })
        })
        .collect()
}

impl Expect {
    fn check(&self, seen: &[Observed]) -> anyhow::Result<()> {
        for (i, o) in seen.iter().enumerate() {
            if let Some(status) = self.status
                && o.status != status
            {
                bail!(
                    "request {i}: status {} (expected {status}); body {:?}",
                    o.status,
                    String::from_utf8_lossy(&o.body)
                );
            }
            if let Some(up) = &self.upstream {
                let got = o.upstream.as_deref().unwrap_or("none");
                if got != up {
                    bail!("request {i}: answered by {got} (expected {up})");
                }
            }
            for (name, value) in &self.headers {
                if o.header(name) != Some(value.as_str()) {
                    bail!(
                        "request {i}: header {name} is {:?} (expected {value:?})",
                        o.header(name)
                    );
                }
            }
            if let Some(body) = &self.body
                && o.body != body.as_bytes()
            {
                bail!(
                    "request {i}: body {:?} (expected {body:?})",
                    String::from_utf8_lossy(&o.body)
                );
            }
        }
        if !self.split.is_empty() {
            let tolerance = self.tolerance.unwrap_or(3.0);
            let total = seen.len().max(1) as f64;
            let mut report = Vec::new();
            let mut bad = false;
            for (version, want) in &self.split {
                let n = seen
                    .iter()
                    .filter(|o| o.upstream.as_deref() == Some(version.as_str()))
                    .count();
                let got = 100.0 * n as f64 / total;
                report.push(format!(
                    "{version}: {got:.1}% (expected {want}% ± {tolerance})"
                ));
                bad |= (got - want).abs() > tolerance;
            }
            if bad {
                bail!("split off: {}", report.join(", "));
            }
        }
        Ok(())
    }
}
