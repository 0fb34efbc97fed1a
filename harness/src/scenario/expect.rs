//! Expectations of a scenario step and their check against what a backend
//! observed.

use std::collections::BTreeMap;

use anyhow::bail;
use serde::Deserialize;

use super::{Observed, StepRun};

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
    /// Share of requests per response status, in percent (same tolerance).
    #[serde(default)]
    pub statuses: BTreeMap<u16, f64>,
    /// Allowed deviation of each share, in percentage points (default 3).
    #[serde(default)]
    pub tolerance: Option<f64>,
    /// Response headers that must have these values.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Response headers that must be absent.
    #[serde(default)]
    pub no_headers: Vec<String>,
    /// Exact response body.
    #[serde(default)]
    pub body: Option<String>,
    /// Strings the response body must contain.
    #[serde(default)]
    pub body_contains: Vec<String>,
    /// The backends' bodies must be equal, request by request.
    #[serde(default)]
    pub same_body: bool,
    /// Envoy's `%RESPONSE_CODE_DETAILS%`: a local reply's details, or
    /// `via_upstream`.
    #[serde(default)]
    pub details: Option<String>,
    /// How much each counter of the filters grew during the step.
    #[serde(default)]
    pub counters: BTreeMap<String, u64>,
    /// Lines the filters' log must contain by the end of the step.
    #[serde(default)]
    pub logs: Vec<String>,
    /// Requests each listed product-service version received during the
    /// step (all repetitions, retries included).
    #[serde(default)]
    pub hits: BTreeMap<String, u64>,
    /// Bounds on each request's duration (harness: virtual time — how long
    /// filters held the request paused, e.g. a fault delay, plus the router
    /// emulation's; Envoy: wall time).
    #[serde(default)]
    pub elapsed_ms: Option<Bounds>,
    /// Headers of the request the answering product service received
    /// (`:path` and `:method` name the request line); `null` = absent.
    #[serde(default)]
    pub upstream_headers: BTreeMap<String, Option<String>>,
}

/// Inclusive bounds in milliseconds.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    /// Lower bound.
    #[serde(default)]
    pub min: Option<u64>,
    /// Upper bound.
    #[serde(default)]
    pub max: Option<u64>,
}

impl Expect {
    /// Checks what one backend saw in one step.
    pub(super) fn check(&self, run: &StepRun) -> anyhow::Result<()> {
        let (seen, hits) = (&run.seen, &run.hits);
        for (i, o) in seen.iter().enumerate() {
            self.check_one(o)
                .map_err(|e| anyhow::anyhow!("request {i}: {e}"))?;
        }
        for (version, want) in &self.hits {
            let got = hits.get(version).copied().unwrap_or(0);
            if got != *want {
                bail!("{version} received {got} requests (expected {want}); all hits {hits:?}");
            }
        }
        for (counter, want) in &self.counters {
            let got = run.counters.get(counter).copied().unwrap_or(0);
            if got != *want {
                bail!("counter {counter} grew by {got} (expected {want})");
            }
        }
        for line in &self.logs {
            if !run.log.contains(line.as_str()) {
                bail!("the filters' log lacks {line:?}:\n{}", run.log);
            }
        }
        if !self.split.is_empty() {
            self.check_split(seen)?;
        }
        if !self.statuses.is_empty() {
            self.check_statuses(seen)?;
        }
        Ok(())
    }

    /// Whether the step is a share over many requests rather than a
    /// sequence both backends must reproduce.
    pub(super) fn is_statistical(&self) -> bool {
        !self.split.is_empty() || !self.statuses.is_empty()
    }

    fn check_statuses(&self, seen: &[Observed]) -> anyhow::Result<()> {
        let tolerance = self.tolerance.unwrap_or(3.0);
        let total = seen.len().max(1) as f64;
        let mut report = Vec::new();
        let mut bad = false;
        for (status, want) in &self.statuses {
            let n = seen.iter().filter(|o| o.status == *status).count();
            let got = 100.0 * n as f64 / total;
            report.push(format!(
                "{status}: {got:.1}% (expected {want}% ± {tolerance})"
            ));
            bad |= (got - want).abs() > tolerance;
        }
        if bad {
            bail!("statuses off: {}", report.join(", "));
        }
        Ok(())
    }

    fn check_one(&self, o: &Observed) -> anyhow::Result<()> {
        if let Some(status) = self.status
            && o.status != status
        {
            bail!(
                "status {} (expected {status}); body {:?}",
                o.status,
                String::from_utf8_lossy(&o.body)
            );
        }
        if let Some(up) = &self.upstream {
            let got = o.upstream.as_deref().unwrap_or("none");
            if got != up {
                bail!("answered by {got} (expected {up})");
            }
        }
        for (name, value) in &self.headers {
            if o.header(name) != Some(value.as_str()) {
                bail!("header {name} is {:?} (expected {value:?})", o.header(name));
            }
        }
        for name in &self.no_headers {
            if let Some(v) = o.header(name) {
                bail!("header {name} is {v:?} (expected none)");
            }
        }
        if let Some(body) = &self.body
            && o.body != body.as_bytes()
        {
            bail!(
                "body {:?} (expected {body:?})",
                String::from_utf8_lossy(&o.body)
            );
        }
        for needle in &self.body_contains {
            if !String::from_utf8_lossy(&o.body).contains(needle.as_str()) {
                bail!(
                    "body {:?} lacks {needle:?}",
                    String::from_utf8_lossy(&o.body)
                );
            }
        }
        if let Some(want) = &self.details
            && o.details.as_deref() != Some(want.as_str())
        {
            bail!("details {:?} (expected {want:?})", o.details);
        }
        if let Some(b) = self.elapsed_ms {
            let ms = o.elapsed_ms;
            if b.min.is_some_and(|min| ms < min) || b.max.is_some_and(|max| ms > max) {
                bail!("took {ms} ms (expected {:?}..={:?})", b.min, b.max);
            }
        }
        if !self.upstream_headers.is_empty() {
            let Some(req) = &o.upstream_request else {
                bail!("no product service answered, so no upstream request to check");
            };
            for (name, want) in &self.upstream_headers {
                let got = match name.as_str() {
                    ":path" => Some(req.path.as_str()),
                    ":method" => Some(req.method.as_str()),
                    _ => req.header(name),
                };
                if got != want.as_deref() {
                    bail!("the upstream got {name}: {got:?} (expected {want:?})");
                }
            }
        }
        Ok(())
    }

    fn check_split(&self, seen: &[Observed]) -> anyhow::Result<()> {
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
        Ok(())
    }
}
