//! The routing stage of the pipeline: the decision of [`RouteTable`] on
//! the rule the request matched (computed once per request and shared with
//! the fault stage), its counters, and the chosen destination's response
//! header changes.

use std::rc::Rc;

use super::{Decision, RouteTable};
use crate::http::RequestView;
use crate::pipeline::{Env, Exchange, MetricId, Metrics, Stage};
use crate::verdict::{HeaderOp, Verdict};

/// The route stage.
#[derive(Debug, Clone)]
pub struct RouteStage {
    routes: Rc<RouteTable>,
    per_target: Vec<MetricId>,
    no_route: MetricId,
    pass_through: MetricId,
    direct_response: MetricId,
}

impl RouteStage {
    /// The stage over a compiled table; registers the counters
    /// `meshwasm.route.rq.<ns>.<vs>.<route>.<subset>` (one per destination)
    /// and `meshwasm.route.{no_route,pass_through,direct_response}`.
    pub fn new(routes: Rc<RouteTable>, metrics: &mut Metrics) -> Self {
        let per_target = routes
            .target_names()
            .map(|n| metrics.counter(format!("meshwasm.route.rq.{n}")))
            .collect();
        Self {
            routes,
            per_target,
            no_route: metrics.counter("meshwasm.route.no_route"),
            pass_through: metrics.counter("meshwasm.route.pass_through"),
            direct_response: metrics.counter("meshwasm.route.direct_response"),
        }
    }

    /// The compiled table.
    pub fn routes(&self) -> &RouteTable {
        &self.routes
    }
}

impl Stage for RouteStage {
    /// The chosen destination's id, for the response headers.
    type State = Option<usize>;

    fn request<'c, R: RequestView>(
        &'c self,
        ex: &mut Exchange<R>,
        state: &mut Option<usize>,
        env: &mut Env<'_>,
    ) -> Verdict<'c> {
        let rule = match ex.rule {
            Some(rule) => rule,
            None => *ex.rule.insert(self.routes.rule_match(&ex.request)),
        };
        let decision = match ex.target {
            Some(chosen) => self.routes.decision_to(rule, chosen),
            None => self.routes.decision(rule, &ex.request, &mut *env.rng),
        };
        let counter = match decision {
            Decision::PassThrough => Some(self.pass_through),
            Decision::NoRoute { .. } => Some(self.no_route),
            Decision::Matched { target: None, .. } => Some(self.direct_response),
            Decision::Matched {
                target: Some(target),
                ..
            } => {
                *state = Some(target.id);
                self.per_target.get(target.id).copied()
            }
        };
        if let Some(counter) = counter {
            env.count(counter);
        }
        self.routes.verdict(&decision, &ex.request)
    }

    fn response<'c>(&'c self, state: &Option<usize>) -> &'c [HeaderOp] {
        state
            .and_then(|id| self.routes.target(id))
            .map_or(&[], |target| &target.response_ops)
    }
}
