//! The resilience stage: runs before the route stage, picks the
//! destination of the matched rule as routing would (weights, sticky A/B),
//! then makes the pick health-aware — an ejected subset's share goes to the
//! rule's healthy subsets in proportion to their weights, a subset whose
//! ejection time is over gets probe requests — and holds a place in the
//! subset's concurrency limit (503 overflow as Envoy answers it when full).
//! The route stage applies the choice ([`Exchange::target`]). Responses
//! are recorded in the subset's shared health; the place is given back
//! when the stream ends.

use std::rc::Rc;

use super::health::{Admission, Event, Health, Outcome};
use super::{PROBES, Resilience};
use crate::http::RequestView;
use crate::pipeline::{Env, Exchange, MetricId, Metrics, Response, Stage};
use crate::route::{Decision, RouteTable, Target};
use crate::verdict::{LocalReply, Verdict};

/// Body of Envoy's circuit-breaker overflow reply (SPEC.md
/// §DestinationRule 5).
pub const OVERFLOW_BODY: &[u8] =
    b"upstream connect error or disconnect/reset before headers. reset reason: overflow";
/// Response details of that reply.
pub const OVERFLOW_DETAILS: &str = "upstream_reset_before_response_started{overflow}";

/// How often a shared-health update is retried when another VM changed
/// the value in between.
const CAS_ATTEMPTS: usize = 64;

/// Per-subset metrics.
#[derive(Debug, Clone, Copy)]
struct SubsetMetrics {
    ejections_active: MetricId,
    ejections_total: MetricId,
    readmissions: MetricId,
    failovers: MetricId,
    overflows: MetricId,
    rq_active: MetricId,
    /// 1 while the subset's consecutive-error counts are not zero.
    erring: MetricId,
}

/// The resilience stage.
#[derive(Debug, Clone)]
pub struct ResilienceStage {
    routes: Rc<RouteTable>,
    plan: Rc<Resilience>,
    metrics: Vec<SubsetMetrics>,
}

/// What one stream holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResilienceState {
    /// The subset (index into the plan) the request went to, if it has a
    /// policy.
    subset: Option<usize>,
    /// Let through as a probe.
    probe: bool,
    /// Holds a place in the subset's concurrency limit.
    slot: bool,
    /// Its response was recorded.
    recorded: bool,
}

impl ResilienceStage {
    /// The stage over a compiled route table and its policies; registers
    /// `meshwasm.resilience.<cluster>.{ejections_active, ejections_total,
    /// readmissions, failovers, overflows, rq_active, erring}` per subset.
    pub fn new(routes: Rc<RouteTable>, plan: Rc<Resilience>, metrics: &mut Metrics) -> Self {
        let per_subset = plan
            .subsets
            .iter()
            .map(|s| {
                let name = crate::pipeline::stat_safe(&s.cluster);
                let m = |what: &str| format!("meshwasm.resilience.{name}.{what}");
                SubsetMetrics {
                    ejections_active: metrics.gauge(m("ejections_active")),
                    ejections_total: metrics.counter(m("ejections_total")),
                    readmissions: metrics.counter(m("readmissions")),
                    failovers: metrics.counter(m("failovers")),
                    overflows: metrics.counter(m("overflows")),
                    rq_active: metrics.gauge(m("rq_active")),
                    erring: metrics.gauge(m("erring")),
                }
            })
            .collect();
        Self {
            routes,
            plan,
            metrics: per_subset,
        }
    }

    fn health(&self, subset: usize, env: &Env<'_>) -> (Health, Option<u32>) {
        let Some(policy) = self.plan.subsets.get(subset) else {
            return (Health::default(), None);
        };
        match env.shared.get(&policy.key) {
            Some((bytes, cas)) => (Health::decode(&bytes), Some(cas)),
            None => (Health::default(), None),
        }
    }

    /// Changes subset `subset`'s shared health with `change` (given the
    /// current value, the new one or `None` to leave it), retrying while
    /// other VMs change it in between. Returns what `change` returned last.
    ///
    /// The `erring` gauge follows the value: each write that starts or
    /// ends a run of consecutive errors adds or takes one, so the gauge is
    /// the shared value's `consecutive_5xx != 0` once every VM's count has
    /// landed.
    fn update<T: Copy>(
        &self,
        subset: usize,
        env: &mut Env<'_>,
        mut change: impl FnMut(&Health) -> (Option<Health>, T),
    ) -> Option<T> {
        let key = &self.plan.subsets.get(subset)?.key;
        let erring = |h: &Health| i64::from(h.consecutive_5xx != 0);
        for _ in 0..CAS_ATTEMPTS {
            let (current, cas) = self.health(subset, env);
            let (next, out) = change(&current);
            let Some(next) = next else { return Some(out) };
            if env.shared.set(key, &next.encode(), cas).is_ok() {
                let delta = erring(&next) - erring(&current);
                if let Some(m) = self.metrics.get(subset)
                    && delta != 0
                {
                    env.metrics.add(m.erring, delta);
                }
                return Some(out);
            }
        }
        None
    }

    /// Whether the subset's gauges say it is healthy with no run of errors
    /// counting — a success then changes nothing, and the shared value is
    /// not read (two metric reads cost a fraction of one shared-data read).
    /// The gauges trail the value by the instant between a write and its
    /// count: a success in that instant does not reset a run another VM
    /// just started, as if it had come a moment earlier.
    fn quiet(&self, subset: usize, env: &Env<'_>) -> bool {
        self.metrics
            .get(subset)
            .is_some_and(|m| at_zero(env, [m.ejections_active, m.erring]))
    }

    /// Whether the target may take the request: healthy or a probe (which
    /// takes a probe place in the shared health).
    fn admit(&self, subset: usize, env: &mut Env<'_>) -> Admission {
        let Some(policy) = self.plan.subsets.get(subset) else {
            return Admission::Go;
        };
        if policy.outlier.is_none() {
            return Admission::Go;
        }
        // The subset's `ejections_active` gauge (one for all VMs) is
        // nonzero exactly while it is ejected or probing: reading it costs
        // a fraction of reading the shared value (BENCHMARKS.md, host call
        // costs), so a healthy subset is admitted on it alone. It follows
        // the shared value by the instant between an ejection's write and
        // its count — a request then goes where it would have gone a
        // moment earlier.
        if self
            .metrics
            .get(subset)
            .is_some_and(|m| at_zero(env, [m.ejections_active]))
        {
            return Admission::Go;
        }
        let (health, _) = self.health(subset, env);
        if health.is_healthy() {
            return Admission::Go;
        }
        let now = (env.now_ms)();
        self.update(subset, env, |h| {
            let (admission, next) = h.admit(now, PROBES);
            (next, admission)
        })
        .unwrap_or(Admission::Refuse)
    }

    fn healthy(&self, target: &Target, env: &Env<'_>) -> bool {
        match self.plan.of_target(target.id) {
            Some(s) => self.health(s, env).0.is_healthy(),
            None => true,
        }
    }

    /// Where the request goes when `picked` refuses it: the rule's healthy
    /// destinations by weight (the user's bucket for a sticky rule, so a
    /// user stays on one), or `picked` itself when too few are healthy
    /// (`minHealthPercent`) or none is — Envoy's panic routing.
    fn failover<'t>(
        &self,
        picked: &'t Target,
        all: &'t [Target],
        bucket: Option<u32>,
        env: &mut Env<'_>,
    ) -> &'t Target {
        let healthy: Vec<&Target> = all
            .iter()
            .filter(|t| t.id != picked.id && self.healthy(t, env))
            .collect();
        let min_health = self
            .plan
            .of_target(picked.id)
            .and_then(|s| self.plan.subsets.get(s))
            .and_then(|p| p.outlier)
            .map_or(0, |o| o.min_health_percent);
        let total_weight: u32 = healthy.iter().map(|t| t.weight.max(1)).sum();
        let enough = healthy.len() * 100 >= all.len() * min_health as usize;
        if healthy.is_empty() || total_weight == 0 || !enough {
            return picked;
        }
        let draw = match bucket {
            Some(b) => b * total_weight / 100,
            None => env.rng.below(total_weight),
        };
        let mut end = 0;
        for t in &healthy {
            end += t.weight.max(1);
            if draw < end {
                return t;
            }
        }
        picked
    }

    /// Takes a place in the subset's concurrency limit; `false` when full.
    fn take_slot(&self, subset: usize, env: &mut Env<'_>) -> Option<bool> {
        let limit = self.plan.subsets.get(subset)?.limit?;
        let m = self.metrics.get(subset)?;
        env.metrics.add(m.rq_active, 1);
        let active = env.metrics.value(m.rq_active).unwrap_or(0);
        if active > i64::from(limit) {
            env.metrics.add(m.rq_active, -1);
            env.count(m.overflows);
            return Some(false);
        }
        Some(true)
    }

    fn count_event(&self, subset: usize, event: Event, env: &mut Env<'_>) {
        let Some(m) = self.metrics.get(subset) else {
            return;
        };
        match event {
            Event::Ejected => {
                env.count(m.ejections_total);
                env.metrics.add(m.ejections_active, 1);
            }
            Event::Reejected => env.count(m.ejections_total),
            Event::Readmitted => {
                env.count(m.readmissions);
                env.metrics.add(m.ejections_active, -1);
            }
            Event::None => {}
        }
    }

    /// Whether `maxEjectionPercent` lets subset `subset` be ejected now:
    /// at most that share of the host's subsets, but always at least one
    /// (Envoy's rule).
    fn may_eject(&self, subset: usize, env: &Env<'_>) -> bool {
        let Some(max) = self
            .plan
            .subsets
            .get(subset)
            .and_then(|p| p.outlier)
            .map(|o| o.max_ejection_percent)
        else {
            return false;
        };
        let siblings: Vec<usize> = self.plan.siblings(subset).collect();
        let ejected = siblings
            .iter()
            .filter(|&&s| s != subset && !self.health(s, env).0.is_healthy())
            .count();
        ejected == 0 || (ejected + 1) * 100 <= siblings.len() * max as usize
    }
}

impl Stage for ResilienceStage {
    type State = ResilienceState;

    fn request<'c, R: RequestView>(
        &'c self,
        ex: &mut Exchange<R>,
        state: &mut ResilienceState,
        env: &mut Env<'_>,
    ) -> Verdict<'c> {
        if self.plan.is_empty() {
            return Verdict::Continue(Default::default());
        }
        let rule = match ex.rule {
            Some(rule) => rule,
            None => *ex.rule.insert(self.routes.rule_match(&ex.request)),
        };
        let Decision::Matched {
            vhost,
            route,
            target: Some(picked),
            ..
        } = self.routes.decision(rule, &ex.request, &mut *env.rng)
        else {
            return Verdict::Continue(Default::default());
        };
        let mut chosen = picked;
        let mut probe = false;
        if let Some(subset) = self.plan.of_target(picked.id) {
            match self.admit(subset, env) {
                Admission::Go => {}
                Admission::Probe => probe = true,
                Admission::Refuse => {
                    let all = match &route.action {
                        crate::route::Action::Forward(f) => f.targets.as_slice(),
                        _ => std::slice::from_ref(picked),
                    };
                    let bucket = vhost
                        .sticky
                        .as_ref()
                        .filter(|_| all.len() > 1)
                        .map(|s| s.bucket(&ex.request));
                    chosen = self.failover(picked, all, bucket, env);
                    if chosen.id != picked.id
                        && let Some(m) = self.metrics.get(subset)
                    {
                        env.count(m.failovers);
                    }
                }
            }
        }
        ex.target = Some(chosen.id);
        let Some(subset) = self.plan.of_target(chosen.id) else {
            return Verdict::Continue(Default::default());
        };
        *state = ResilienceState {
            subset: Some(subset),
            probe: probe && chosen.id == picked.id,
            slot: false,
            recorded: false,
        };
        match self.take_slot(subset, env) {
            Some(false) => {
                state.subset = None;
                self.release_probe(state, subset, env);
                let mut reply = LocalReply::new(503, OVERFLOW_BODY, OVERFLOW_DETAILS);
                reply
                    .headers
                    .push(("x-envoy-overloaded".into(), "true".into()));
                Verdict::Reply(reply)
            }
            Some(true) => {
                state.slot = true;
                Verdict::Continue(Default::default())
            }
            None => Verdict::Continue(Default::default()),
        }
    }

    fn watches_response(&self) -> bool {
        self.plan.subsets.iter().any(|s| s.outlier.is_some())
    }

    fn on_response(&self, state: &mut ResilienceState, response: &Response, env: &mut Env<'_>) {
        let Some(subset) = state.subset else { return };
        if state.recorded || response.overloaded {
            return;
        }
        state.recorded = true;
        let Some(policy) = self.plan.subsets.get(subset).and_then(|p| p.outlier) else {
            return;
        };
        let outcome = Outcome::of(response.status);
        let probe = state.probe;
        if outcome == Outcome::Success && !probe && self.quiet(subset, env) {
            return; // The common case, decided on two gauges.
        }
        let (health, _) = self.health(subset, env);
        if outcome == Outcome::Success && health.is_healthy() && health.consecutive_5xx == 0 {
            return; // The common case: nothing to write, no clock read.
        }
        let now = (env.now_ms)();
        let may_eject = outcome == Outcome::Success || self.may_eject(subset, env);
        let event = self.update(subset, env, |h| {
            h.record(outcome, probe, now, &policy, may_eject)
        });
        if let Some(event) = event {
            self.count_event(subset, event, env);
        }
    }

    fn done(&self, state: &mut ResilienceState, env: &mut Env<'_>) {
        if let Some(subset) = state.subset {
            if state.slot
                && let Some(m) = self.metrics.get(subset)
            {
                env.metrics.add(m.rq_active, -1);
            }
            if !state.recorded {
                self.release_probe(state, subset, env);
            }
        }
        *state = ResilienceState::default();
    }
}

/// Whether the gauges `ids` all read 0 (`false` when one cannot be read).
fn at_zero(env: &Env<'_>, ids: impl IntoIterator<Item = MetricId>) -> bool {
    ids.into_iter().all(|id| env.metrics.value(id) == Some(0))
}

impl ResilienceStage {
    /// A probe that got no answer gives its place back.
    fn release_probe(&self, state: &ResilienceState, subset: usize, env: &mut Env<'_>) {
        if state.probe {
            self.update(subset, env, |h| (h.probe_abandoned(), ()));
        }
    }
}
