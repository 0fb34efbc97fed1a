//! meshwasm mesh filter: every stage in one pass — authn, RBAC, fault,
//! resilience and routing — on one configuration document
//! (docs/mesh.md). One VM crossing per callback and one read of the
//! request headers instead of one per filter; the identity authn
//! establishes reaches RBAC inside the stream (`Exchange::identity`), and
//! fault, resilience and route share one compiled route table and one rule
//! match. Behaviour and stats are those of the chain authn → rbac → fault
//! → route (docs/authn.md, docs/rbac.md, docs/fault.md, docs/route.md,
//! docs/resilience.md).
#![allow(missing_docs)] // reason: proxy_wasm::main! generates the undocumented `_initialize` export

use std::rc::Rc;

use meshwasm::authn::{AuthnPolicy, AuthnStage};
use meshwasm::config::{ConfigError, Document, Kind};
use meshwasm::fault::FaultStage;
use meshwasm::pipeline::Metrics;
use meshwasm::rbac::{RbacPolicy, RbacStage};
use meshwasm::resilience::Resilience;
use meshwasm::resilience::stage::ResilienceStage;
use meshwasm::route::RouteTable;
use meshwasm::route::stage::RouteStage;
use meshwasm_glue::{Filter, KeyStore};
use proxy_wasm::types::LogLevel;

struct Mesh;

/// RBAC denials and dry-run verdicts go to the host log at info.
fn info(message: &str) {
    meshwasm_glue::log::<Mesh>(LogLevel::Info, message);
}

impl Filter for Mesh {
    const NAME: &'static str = "mesh";
    const KINDS: &'static [Kind] = &[
        Kind::VirtualService,
        Kind::DestinationRule,
        Kind::RequestAuthentication,
        Kind::PeerAuthentication,
        Kind::AuthorizationPolicy,
    ];
    type Stages = (
        AuthnStage,
        RbacStage,
        FaultStage,
        ResilienceStage,
        RouteStage,
    );
    type Keys = KeyStore;

    fn build(
        doc: &Document,
        metrics: &mut Metrics,
    ) -> Result<(Self::Stages, Vec<String>), ConfigError> {
        let authn = AuthnPolicy::compile(doc)?;
        let rbac = RbacPolicy::compile(doc)?;
        let routes = Rc::new(RouteTable::compile(doc)?);
        let plan = Rc::new(Resilience::compile(doc, &routes)?);
        let warnings = [authn.warnings(), rbac.warnings(), routes.warnings()].concat();
        let stages = (
            AuthnStage::new(Rc::new(authn), metrics)
                .handing_on(doc.envoy.identity_filter_state.unwrap_or(false)),
            RbacStage::new(Rc::new(rbac), metrics).with_log(info),
            FaultStage::new(Rc::clone(&routes), doc.envoy.max_active_faults, metrics),
            ResilienceStage::new(Rc::clone(&routes), plan, metrics),
            RouteStage::new(routes, metrics),
        );
        Ok((stages, warnings))
    }
}

proxy_wasm::main! {{
    meshwasm_glue::start::<Mesh>();
}}
