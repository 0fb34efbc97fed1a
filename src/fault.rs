//! Fault injection (SPEC.md §fault injection): the `fault` block of the
//! VirtualService rule a request matched — the same [`RuleMatch`] the route
//! stage uses — delays and/or aborts a share of requests before they reach
//! the router, as Envoy's fault filter does with the per-route config Istio
//! writes (istio/istio `pilot/pkg/networking/core/route/route.go`
//! `TranslateFault`; envoyproxy/envoy
//! `source/extensions/filters/http/fault/fault_filter.cc`).
//!
//! - Percentages become parts per million (`uint32(value × 10000)`, the
//!   deprecated integer `percent` × 10000); a draw `rng.below(1e6) < ppm`
//!   injects, so 0 never and 100 always. An unset percentage never injects.
//! - The delay is drawn first; after it the abort is drawn
//!   (`postDelayInjection` → `maybeDoAbort`).
//! - An abort answers `status`, body `fault filter abort`, details
//!   `fault_filter_abort`; a gRPC abort answers HTTP 200 with the gRPC
//!   status (Envoy converts it for gRPC requests).
//! - `envoy.maxActiveFaults`: a fault is injected only while the
//!   `active_faults` gauge (shared by every VM, like Envoy's stat) is below
//!   the limit; otherwise `faults_overflow` counts it
//!   (`tryIncActiveFaults`). A stream holds at most one active fault,
//!   released when it ends.

use std::rc::Rc;

use crate::config::ConfigError;
use crate::config::duration::IstioDuration;
use crate::config::virtual_service::{FaultAbort, FaultDelay, HttpFaultInjection, Percent};
use crate::http::RequestView;
use crate::pipeline::{Env, Exchange, MetricId, Metrics, Stage, Wait, Wake};
use crate::rng::Rng;
use crate::route::{RouteTable, RuleMatch};
use crate::verdict::{LocalReply, Verdict};

/// Body of an injected abort (Envoy's fault filter).
pub const ABORT_BODY: &[u8] = b"fault filter abort";
/// Response details of an injected abort.
pub const ABORT_DETAILS: &str = "fault_filter_abort";
/// Parts per million that mean "always".
pub const MILLION: u32 = 1_000_000;

/// A rule's compiled `fault`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The delay, if one can happen.
    pub delay: Option<Delay>,
    /// The abort, if one can happen.
    pub abort: Option<Abort>,
}

/// `fault.delay` with a `fixedDelay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delay {
    /// How long, in milliseconds.
    pub ms: u64,
    /// Share of matched requests delayed, per million.
    pub ppm: u32,
}

/// `fault.abort`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abort {
    /// HTTP status of the reply (200 for a gRPC abort).
    pub status: u32,
    /// gRPC status code, for `grpcStatus`.
    pub grpc: Option<u32>,
    /// Share of matched requests aborted, per million.
    pub ppm: u32,
}

/// gRPC status names Istio accepts (`grpc.SupportedGRPCStatus`), by code.
const GRPC_CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

impl Fault {
    /// Validates a rule's `fault` as Istio's `validateHTTPFaultInjection`
    /// does (istio/istio `pkg/config/validation/validation.go`) and compiles
    /// it; `path` is the JSON path of the block.
    pub fn compile(
        f: &HttpFaultInjection,
        path: &str,
        warnings: &mut Vec<String>,
    ) -> Result<Fault, ConfigError> {
        if f.delay.is_none() && f.abort.is_none() {
            return Err(ConfigError::new(
                path,
                "HTTP fault injection must have an abort and/or a delay",
            ));
        }
        let delay = match &f.delay {
            Some(d) => delay(d, &format!("{path}.delay"), warnings)?,
            None => None,
        };
        let abort = match &f.abort {
            Some(a) => abort(a, &format!("{path}.abort"), warnings)?,
            None => None,
        };
        Ok(Fault { delay, abort })
    }
}

fn delay(
    d: &FaultDelay,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<Delay>, ConfigError> {
    let ppm = match (d.percentage, d.percent) {
        (Some(p), _) => ppm(p, &format!("{path}.percentage"))?,
        (None, Some(n)) if (0..=100).contains(&n) => u32::try_from(n * 10_000).unwrap_or(0),
        (None, Some(n)) => {
            return Err(ConfigError::new(
                format!("{path}.percent"),
                format!("percentage {n} is not in range [0..100]"),
            ));
        }
        (None, None) => 0,
    };
    if let Some(e) = d.exponential_delay {
        millis(e, &format!("{path}.exponentialDelay"))?;
        return Err(ConfigError::new(
            format!("{path}.exponentialDelay"),
            "exponentialDelay not supported yet",
        ));
    }
    let Some(fixed) = d.fixed_delay else {
        warnings.push(format!(
            "{path}: no fixedDelay; Istio sends no delay to Envoy, so none is injected"
        ));
        return Ok(None);
    };
    let ms = millis(fixed, &format!("{path}.fixedDelay"))?;
    Ok(Some(Delay { ms, ppm }))
}

fn abort(
    a: &FaultAbort,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<Abort>, ConfigError> {
    let ppm = match a.percentage {
        Some(p) => ppm(p, &format!("{path}.percentage"))?,
        None => 0,
    };
    let set = [
        a.http_status.is_some(),
        a.grpc_status.is_some(),
        a.http2_error.is_some(),
    ];
    if set.iter().filter(|s| **s).count() > 1 {
        return Err(ConfigError::new(
            path,
            "only one of httpStatus, grpcStatus and http2Error may be set",
        ));
    }
    if a.http2_error.is_some() {
        return Err(ConfigError::new(
            format!("{path}.http2Error"),
            "HTTP/2 abort fault injection not supported yet",
        ));
    }
    if let Some(name) = &a.grpc_status {
        let code = GRPC_CODES
            .iter()
            .position(|c| c == name)
            .and_then(|c| u32::try_from(c).ok())
            .ok_or_else(|| {
                ConfigError::new(
                    format!("{path}.grpcStatus"),
                    format!(
                        "gRPC status {name:?} is not supported; use a name such as UNAVAILABLE \
                         (https://github.com/grpc/grpc/blob/master/doc/statuscodes.md)"
                    ),
                )
            })?;
        return Ok(Some(Abort {
            status: 200,
            grpc: Some(code),
            ppm,
        }));
    }
    let Some(status) = a.http_status else {
        warnings.push(format!(
            "{path}: abort configured, but error type not set; nothing is injected"
        ));
        return Ok(None);
    };
    // Istio's check lets 600 through, but Envoy's fault filter refuses it
    // (`http_status` is `[200, 600)`), so a cluster could never serve it.
    let status = u32::try_from(status)
        .ok()
        .filter(|s| (200..600).contains(s))
        .ok_or_else(|| {
            ConfigError::new(
                format!("{path}.httpStatus"),
                format!("HTTP status {status} is not in range 200-599"),
            )
        })?;
    Ok(Some(Abort {
        status,
        grpc: None,
        ppm,
    }))
}

/// Istio's `validatePercentage`, then `uint32(value × 10000)` per million.
fn ppm(p: Percent, path: &str) -> Result<u32, ConfigError> {
    let v = p.value;
    if !(0.0..=100.0).contains(&v) || (v > 0.0 && v < 0.0001) {
        return Err(ConfigError::new(
            path,
            format!("percentage {v} is neither 0.0, nor in range [0.0001, 100.0]"),
        ));
    }
    // In range, so the product is in [0, 1e6]: the cast only drops the
    // fraction, as Go's uint32() does.
    Ok((v * 10_000.0) as u32)
}

fn millis(d: IstioDuration, path: &str) -> Result<u64, ConfigError> {
    let ms = crate::route::actions::millis(d, path)?;
    u64::try_from(ms).map_err(|_| ConfigError::new(path, "duration too long"))
}

/// Whether a draw of one in a million falls under `ppm`.
fn draw(rng: &mut (impl Rng + ?Sized), ppm: u32) -> bool {
    ppm > 0 && rng.below(MILLION) < ppm
}

/// The fault stage: delays and aborts of the matched rule.
#[derive(Debug, Clone)]
pub struct FaultStage {
    routes: Rc<RouteTable>,
    max_active: Option<u64>,
    delays_injected: MetricId,
    aborts_injected: MetricId,
    faults_overflow: MetricId,
    active_faults: MetricId,
}

/// Where a stream is in the fault stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FaultPhase {
    /// Nothing decided yet.
    #[default]
    Start,
    /// Paused for the delay of the rule `rule`.
    Delaying {
        /// The rule whose fault delays the stream.
        rule: RuleMatch,
    },
    /// Let through (after a delay, or without a fault).
    Passed,
    /// Answered with an abort.
    Aborted,
}

/// Per-stream state of the fault stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultState {
    /// Where the stream is.
    pub phase: FaultPhase,
    /// Whether the stream holds one of the `active_faults`.
    pub active: bool,
}

impl FaultStage {
    /// The stage over a compiled route table; registers the stats
    /// `meshwasm.fault.{delays_injected,aborts_injected,faults_overflow}`
    /// and the gauge `meshwasm.fault.active_faults`.
    pub fn new(routes: Rc<RouteTable>, max_active: Option<u64>, metrics: &mut Metrics) -> Self {
        Self {
            routes,
            max_active,
            delays_injected: metrics.counter("meshwasm.fault.delays_injected"),
            aborts_injected: metrics.counter("meshwasm.fault.aborts_injected"),
            faults_overflow: metrics.counter("meshwasm.fault.faults_overflow"),
            active_faults: metrics.gauge("meshwasm.fault.active_faults"),
        }
    }

    /// Envoy's `tryIncActiveFaults`: one active fault per stream; over the
    /// limit, no fault and `faults_overflow`.
    fn try_activate(&self, state: &mut FaultState, env: &mut Env<'_>) -> bool {
        if state.active {
            return true;
        }
        if let Some(max) = self.max_active {
            let active = env.metrics.value(self.active_faults).unwrap_or(0);
            if u64::try_from(active).unwrap_or(0) >= max {
                env.count(self.faults_overflow);
                return false;
            }
        }
        env.metrics.add(self.active_faults, 1);
        state.active = true;
        true
    }

    fn maybe_abort<'c>(
        &'c self,
        fault: &Fault,
        state: &mut FaultState,
        env: &mut Env<'_>,
    ) -> Verdict<'c> {
        state.phase = FaultPhase::Passed;
        let Some(abort) = fault.abort else {
            return Verdict::Continue(Default::default());
        };
        if !draw(env.rng, abort.ppm) || !self.try_activate(state, env) {
            return Verdict::Continue(Default::default());
        }
        env.count(self.aborts_injected);
        state.phase = FaultPhase::Aborted;
        let mut reply = LocalReply::new(abort.status, ABORT_BODY, ABORT_DETAILS);
        reply.grpc_status = abort.grpc;
        Verdict::Reply(reply)
    }
}

impl Stage for FaultStage {
    type State = FaultState;

    fn request<'c, R: RequestView>(
        &'c self,
        ex: &mut Exchange<R>,
        state: &mut FaultState,
        env: &mut Env<'_>,
    ) -> Verdict<'c> {
        let rule = match ex.rule {
            Some(rule) => rule,
            // A host without any fault decides on `:authority` alone: the
            // rules are not walked (the route stage, if any, walks them).
            None if !self
                .routes
                .vhost_index(&ex.request)
                .and_then(|v| self.routes.vhost(v))
                .is_some_and(|vh| vh.has_fault) =>
            {
                state.phase = FaultPhase::Passed;
                return Verdict::Continue(Default::default());
            }
            None => *ex.rule.insert(self.routes.rule_match(&ex.request)),
        };
        let Some(fault) = self.routes.rule(rule).and_then(|r| r.fault.as_ref()) else {
            state.phase = FaultPhase::Passed;
            return Verdict::Continue(Default::default());
        };
        if let Some(delay) = fault.delay
            && draw(env.rng, delay.ppm)
            && self.try_activate(state, env)
        {
            env.count(self.delays_injected);
            state.phase = FaultPhase::Delaying { rule };
            return Verdict::Pause(Wait::Timer { ms: delay.ms });
        }
        self.maybe_abort(fault, state, env)
    }

    fn wake<'c, R: RequestView>(
        &'c self,
        _ex: &mut Exchange<R>,
        state: &mut FaultState,
        _wake: Wake,
        env: &mut Env<'_>,
    ) -> Verdict<'c> {
        let FaultPhase::Delaying { rule } = state.phase else {
            return Verdict::Continue(Default::default());
        };
        match self.routes.rule(rule).and_then(|r| r.fault.as_ref()) {
            Some(fault) => self.maybe_abort(fault, state, env),
            None => {
                state.phase = FaultPhase::Passed;
                Verdict::Continue(Default::default())
            }
        }
    }

    fn done(&self, state: &mut FaultState, env: &mut Env<'_>) {
        if std::mem::take(&mut state.active) {
            env.metrics.add(self.active_faults, -1);
        }
    }
}

#[cfg(test)]
mod tests;
