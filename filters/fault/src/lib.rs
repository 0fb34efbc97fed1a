//! meshwasm fault filter: Istio `VirtualService` `fault` (delay, abort),
//! the pipeline's fault stage alone. The rule is chosen exactly as the
//! route filter chooses it (one compiled [`RouteTable`]); a delayed stream
//! is paused and resumed from the root context's tick, an abort is Envoy's
//! `fault filter abort` reply (docs/fault.md). Stats
//! `meshwasm.fault.{delays_injected,aborts_injected,faults_overflow}`,
//! gauge `meshwasm.fault.active_faults`.
#![allow(missing_docs)] // reason: proxy_wasm::main! generates the undocumented `_initialize` export

use std::rc::Rc;

use meshwasm::config::{ConfigError, Document, Kind};
use meshwasm::fault::FaultStage;
use meshwasm::pipeline::Metrics;
use meshwasm::route::RouteTable;
use meshwasm_glue::{Filter, NoRemoteKeys};

struct Fault;

impl Filter for Fault {
    const NAME: &'static str = "fault";
    const KINDS: &'static [Kind] = &[Kind::VirtualService, Kind::DestinationRule];
    type Stages = (FaultStage,);
    type Keys = NoRemoteKeys;
    // The fault stage decides on `:authority` alone for hosts without faults.
    const LAZY_HEADERS: bool = true;

    fn build(
        doc: &Document,
        metrics: &mut Metrics,
    ) -> Result<(Self::Stages, Vec<String>), ConfigError> {
        let routes = RouteTable::compile(doc)?;
        let warnings = routes.warnings().to_vec();
        let max_active = doc.envoy.max_active_faults;
        Ok((
            (FaultStage::new(Rc::new(routes), max_active, metrics),),
            warnings,
        ))
    }
}

proxy_wasm::main! {{
    meshwasm_glue::start::<Fault>();
}}
