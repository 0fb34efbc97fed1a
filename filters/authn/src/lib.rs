//! meshwasm authn filter: Istio `RequestAuthentication` (JWT) and
//! `PeerAuthentication` (mTLS mode), the pipeline's authn stage alone
//! (docs/authn.md). Tokens are verified as Envoy's jwt_authn verifies them,
//! with its failure replies; remote key sets are fetched once for every VM
//! through shared data; the request's identity goes to the next meshwasm
//! filter as Envoy filter state (`wasm.meshwasm.identity`). Counters
//! `meshwasm.authn.{jwt_verified,jwt_denied,no_token,mtls_denied}`.
#![allow(missing_docs)] // reason: proxy_wasm::main! generates the undocumented `_initialize` export

use std::rc::Rc;

use meshwasm::authn::{AuthnPolicy, AuthnStage};
use meshwasm::config::{ConfigError, Document, Kind};
use meshwasm::pipeline::Metrics;
use meshwasm_glue::{Filter, KeyStore};

struct Authn;

impl Filter for Authn {
    const NAME: &'static str = "authn";
    const KINDS: &'static [Kind] = &[Kind::RequestAuthentication, Kind::PeerAuthentication];
    type Stages = (AuthnStage,);
    type Keys = KeyStore;

    fn build(
        doc: &Document,
        metrics: &mut Metrics,
    ) -> Result<(Self::Stages, Vec<String>), ConfigError> {
        let policy = AuthnPolicy::compile(doc)?;
        let warnings = policy.warnings().to_vec();
        let stage = AuthnStage::new(Rc::new(policy), metrics)
            .handing_on(doc.envoy.identity_filter_state.unwrap_or(true));
        Ok(((stage,), warnings))
    }
}

proxy_wasm::main! {{
    meshwasm_glue::start::<Authn>();
}}
