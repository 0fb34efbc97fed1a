//! meshwasm route filter: Istio `VirtualService` + `DestinationRule`
//! routing. Picks the rule and the weighted destination in the core
//! ([`meshwasm::route`]) and writes the Envoy cluster into `clusterHeader`,
//! which Envoy's `route: {cluster_header: …}` then follows
//! (docs/route.md).
#![allow(missing_docs)] // reason: proxy_wasm::main! generates the undocumented `_initialize` export

use meshwasm::config::{ConfigError, Document, Kind};
use meshwasm::http::HeaderList;
use meshwasm::rng::SplitMix64;
use meshwasm::route::RouteTable;
use meshwasm::verdict::Verdict;
use meshwasm_glue::Filter;

struct Route;

impl Filter for Route {
    const NAME: &'static str = "route";
    const KINDS: &'static [Kind] = &[Kind::VirtualService, Kind::DestinationRule];
    type Compiled = RouteTable;

    fn compile(doc: &Document) -> Result<(RouteTable, Vec<String>), ConfigError> {
        let table = RouteTable::compile(doc)?;
        let warnings = table.warnings().to_vec();
        Ok((table, warnings))
    }

    fn on_request_headers<'c>(
        table: &'c RouteTable,
        request: &HeaderList,
        rng: &mut SplitMix64,
    ) -> Verdict<'c> {
        let decision = table.decide(request, rng);
        table.verdict(&decision)
    }
}

proxy_wasm::main! {{
    meshwasm_glue::start::<Route>();
}}
