//! meshwasm route filter: Istio `VirtualService` + `DestinationRule`
//! routing. The core ([`meshwasm::route`]) picks the rule and the weighted
//! (or sticky) destination; the filter writes the Envoy cluster into
//! `clusterHeader`, which Envoy's `route: {cluster_header: …}` then follows,
//! plus the router's timeout/retry headers and the route's header changes
//! (docs/route.md). Counters: `meshwasm.route.rq.<ns>.<vs>.<route>.<subset>`,
//! `meshwasm.route.no_route`, `meshwasm.route.pass_through`,
//! `meshwasm.route.direct_response`.
#![allow(missing_docs)] // reason: proxy_wasm::main! generates the undocumented `_initialize` export

use meshwasm::config::{ConfigError, Document, Kind};
use meshwasm::route::{Decision, RouteTable};
use meshwasm::verdict::{HeaderOp, Verdict};
use meshwasm_glue::{Ctx, Filter, HostRequest};

struct Route;

/// Counters after the per-target ones, by offset from `targets`.
const NO_ROUTE: usize = 0;
const PASS_THROUGH: usize = 1;
const DIRECT_RESPONSE: usize = 2;

struct Table {
    routes: RouteTable,
    targets: usize,
}

impl Filter for Route {
    const NAME: &'static str = "route";
    const KINDS: &'static [Kind] = &[Kind::VirtualService, Kind::DestinationRule];
    type Compiled = Table;
    /// The chosen target id, for the response headers.
    type State = Option<usize>;

    fn compile(doc: &Document) -> Result<(Table, Vec<String>), ConfigError> {
        let routes = RouteTable::compile(doc)?;
        let warnings = routes.warnings().to_vec();
        let targets = routes.target_count();
        Ok((Table { routes, targets }, warnings))
    }

    fn counters(t: &Table) -> Vec<String> {
        let per_target = t
            .routes
            .target_names()
            .map(|n| format!("meshwasm.route.rq.{n}"));
        let others =
            ["no_route", "pass_through", "direct_response"].map(|n| format!("meshwasm.route.{n}"));
        per_target.chain(others).collect()
    }

    fn on_request_headers<'c>(
        t: &'c Table,
        req: &HostRequest,
        state: &mut Option<usize>,
        ctx: &mut Ctx<'_>,
    ) -> Verdict<'c> {
        let decision = t.routes.decide(req, ctx.rng);
        match decision {
            Decision::PassThrough => ctx.count(t.targets + PASS_THROUGH),
            Decision::NoRoute { .. } | Decision::Matched { target: None, .. } => {
                let verdict = t.routes.verdict(&decision, req);
                let offset = if matches!(decision, Decision::NoRoute { .. }) {
                    NO_ROUTE
                } else {
                    DIRECT_RESPONSE
                };
                ctx.count(t.targets + offset);
                return verdict;
            }
            Decision::Matched {
                target: Some(target),
                ..
            } => {
                ctx.count(target.id);
                *state = Some(target.id);
            }
        }
        t.routes.verdict(&decision, req)
    }

    fn on_response_headers<'c>(t: &'c Table, state: &Option<usize>) -> &'c [HeaderOp] {
        state
            .and_then(|id| t.routes.target(id))
            .map_or(&[], |target| &target.response_ops)
    }
}

proxy_wasm::main! {{
    meshwasm_glue::start::<Route>();
}}
