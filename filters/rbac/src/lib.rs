//! meshwasm rbac filter: Istio `AuthorizationPolicy`, the pipeline's RBAC
//! stage alone (docs/rbac.md). Policies are evaluated as Envoy's RBAC
//! filter evaluates Istio's translation — CUSTOM refused at configure time,
//! DENY, then ALLOW; AUDIT and dry-run policies only counted and logged —
//! and a denial is Envoy's: 403 `RBAC: access denied`, details
//! `rbac_access_denied_matched_policy[…]`. Request principals and claims
//! come from the identity the authn filter handed on in filter state
//! (`wasm.meshwasm.identity`), never from a header. The document's
//! `RequestAuthentication`s are read only for their `spaceDelimitedClaims`.
//! Counters `meshwasm.rbac.{allowed,denied,path_rejected}` and
//! `meshwasm.rbac.<ns>.<policy>.{allowed,denied,audited,dry_run_allowed,dry_run_denied}`.
#![allow(missing_docs)] // reason: proxy_wasm::main! generates the undocumented `_initialize` export

use std::rc::Rc;

use meshwasm::config::{ConfigError, Document, Kind};
use meshwasm::pipeline::Metrics;
use meshwasm::rbac::{RbacPolicy, RbacStage};
use meshwasm_glue::{Filter, NoRemoteKeys};
use proxy_wasm::types::LogLevel;

struct Rbac;

/// Denials and dry-run verdicts go to the host log at info.
fn info(message: &str) {
    meshwasm_glue::log::<Rbac>(LogLevel::Info, message);
}

impl Filter for Rbac {
    const NAME: &'static str = "rbac";
    const KINDS: &'static [Kind] = &[Kind::AuthorizationPolicy, Kind::RequestAuthentication];
    type Stages = (RbacStage,);
    type Keys = NoRemoteKeys;
    const READS_IDENTITY: bool = true;

    fn build(
        doc: &Document,
        metrics: &mut Metrics,
    ) -> Result<(Self::Stages, Vec<String>), ConfigError> {
        let policy = RbacPolicy::compile(doc)?;
        let warnings = policy.warnings().to_vec();
        let stage = RbacStage::new(Rc::new(policy), metrics).with_log(info);
        Ok(((stage,), warnings))
    }
}

proxy_wasm::main! {{
    meshwasm_glue::start::<Rbac>();
}}
