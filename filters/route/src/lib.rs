//! meshwasm route filter: Istio `VirtualService` + `DestinationRule`
//! routing — the pipeline's resilience stage then its route stage. The
//! core picks the rule and the weighted (or sticky) destination
//! ([`meshwasm::route`]), made health-aware per subset by the
//! DestinationRules' `outlierDetection` and `connectionPool`
//! ([`meshwasm::resilience`], docs/resilience.md); the filter writes the
//! Envoy cluster into `clusterHeader`,
//! which Envoy's `route: {cluster_header: …}` then follows, plus the
//! router's timeout/retry headers and the route's header changes
//! (docs/route.md). Counters: `meshwasm.route.rq.<ns>.<vs>.<route>.<subset>`,
//! `meshwasm.route.no_route`, `meshwasm.route.pass_through`,
//! `meshwasm.route.direct_response`, and per subset with a policy
//! `meshwasm.resilience.<cluster>.*`.
#![allow(missing_docs)] // reason: proxy_wasm::main! generates the undocumented `_initialize` export

use std::rc::Rc;

use meshwasm::config::{ConfigError, Document, Kind};
use meshwasm::pipeline::Metrics;
use meshwasm::resilience::Resilience;
use meshwasm::resilience::stage::ResilienceStage;
use meshwasm::route::RouteTable;
use meshwasm::route::stage::RouteStage;
use meshwasm_glue::{Filter, NoRemoteKeys};

struct Route;

impl Filter for Route {
    const NAME: &'static str = "route";
    const KINDS: &'static [Kind] = &[Kind::VirtualService, Kind::DestinationRule];
    type Stages = (ResilienceStage, RouteStage);
    type Keys = NoRemoteKeys;

    fn build(
        doc: &Document,
        metrics: &mut Metrics,
    ) -> Result<(Self::Stages, Vec<String>), ConfigError> {
        let routes = Rc::new(RouteTable::compile(doc)?);
        let plan = Rc::new(Resilience::compile(doc, &routes)?);
        let warnings = routes.warnings().to_vec();
        let resilience = ResilienceStage::new(Rc::clone(&routes), plan, metrics);
        Ok(((resilience, RouteStage::new(routes, metrics)), warnings))
    }
}

proxy_wasm::main! {{
    meshwasm_glue::start::<Route>();
}}
