//! The RBAC variants' inputs: the AuthorizationPolicies of
//! `testdata/istio/bench-authorization-policy.yaml` (a DENY on `/admin*`
//! and `/api/products/internal*`, an ALLOW for GET/HEAD of the products on
//! host product-service when `x-tenant` names a known tenant), part of the
//! full seed policy (`policy.rs`), and Envoy's native RBAC filters as
//! Istio translates the same policies (`native-rbac.json`: a DENY filter
//! then an ALLOW filter) on a copy of `envoy.yaml` whose connection
//! manager sets `normalize_path: true`, as Istio does for its default
//! `BASE` path normalisation — the work the rbac filter does itself.
//! Every bench request carries [`TENANT`], so both allow it.
//!
//! `native-rbac.json` is the output of the port of Istio's translation
//! that the conformance corpus uses; regenerate it after changing the
//! policy with (in `../shared/conformance/authz`):
//!
//! ```sh
//! python3 -c 'import istio_authz as ia, yaml, json, sys
//! res = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
//! wl = {"namespace": "default", "labels": {"app": "product-service"}}
//! print(json.dumps(ia.authz_filters(res, wl), indent=2))' \
//!   PATH/TO/testdata/istio/bench-authorization-policy.yaml
//! ```
//!
//! and put the list under `http_filters`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use meshwasm_harness::envoy::{EnvoyRig, http_connection_manager};
use meshwasm_harness::scenario::istio_resources;
use serde_json::Value;

use crate::util::root;

/// The header every RBAC bench request carries: a tenant the ALLOW
/// policy's `when` names.
pub(super) const TENANT: (&str, &str) = ("x-tenant", "acme");
/// The policy, under the workspace.
const POLICY: &str = "testdata/istio/bench-authorization-policy.yaml";
/// Istio's translation of [`POLICY`].
const NATIVE: &str = include_str!("native-rbac.json");
const RBAC_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";

/// Everything the RBAC variants need, made once per run.
pub(super) struct RbacBench {
    /// The bench AuthorizationPolicies (Istio resources as JSON).
    pub resources: Vec<Value>,
    /// The native RBAC filters, in order.
    native: Vec<Value>,
    /// `envoy.yaml` with `normalize_path: true`.
    template: PathBuf,
}

impl RbacBench {
    /// Reads the policy and the translation; writes the template under `dir`.
    pub(super) fn prepare(dir: &Path) -> anyhow::Result<RbacBench> {
        let resources = istio_resources(&[root().join(POLICY)])?;
        let native = native_filters(NATIVE)?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let template = dir.join("envoy-normalize-path.json");
        std::fs::write(&template, serde_json::to_string_pretty(&normalizing()?)?)
            .with_context(|| format!("writing {}", template.display()))?;
        Ok(RbacBench {
            resources,
            native,
            template,
        })
    }

    /// The rig with Istio's native RBAC filters and path normalisation.
    /// The filters keep Istio's order; each after the first gets its own
    /// name (`envoy.filters.http.rbac.1`), as the rig replaces a filter of
    /// the same name: Envoy picks the factory by the `typed_config` type,
    /// so the name changes nothing else.
    pub(super) fn native(&self, rig: EnvoyRig) -> EnvoyRig {
        self.native_filters(rig.template(&self.template))
    }

    /// The rig with Istio's native RBAC filters appended (the template is
    /// the caller's: it must normalise paths).
    pub(super) fn native_filters(&self, rig: EnvoyRig) -> EnvoyRig {
        self.native
            .iter()
            .enumerate()
            .fold(rig, |rig, (i, f)| rig.native_filter(renamed(f, i)))
    }
}

/// `envoy.yaml` with `normalize_path: true`, as Istio's HCM for `BASE`.
pub(super) fn normalizing() -> anyhow::Result<Value> {
    normalize_path(envoy_yaml()?)
}

/// The RBAC filters of the translation document.
fn native_filters(text: &str) -> anyhow::Result<Vec<Value>> {
    let doc: Value = serde_json::from_str(text).context("parsing native-rbac.json")?;
    let filters = doc
        .get("http_filters")
        .and_then(Value::as_array)
        .context("native-rbac.json has no http_filters list")?;
    if filters.is_empty()
        || filters
            .iter()
            .any(|f| f.pointer("/typedConfig/@type").and_then(Value::as_str) != Some(RBAC_TYPE))
    {
        bail!("native-rbac.json: every http filter must be an RBAC filter");
    }
    Ok(filters.clone())
}

/// `filter`, named `<name>.<i>` unless it is the first.
fn renamed(filter: &Value, i: usize) -> Value {
    let mut f = filter.clone();
    if i > 0
        && let Some(obj) = f.as_object_mut()
    {
        let name = obj.get("name").and_then(Value::as_str).unwrap_or("rbac");
        let name = format!("{name}.{i}");
        obj.insert("name".to_owned(), Value::from(name));
    }
    f
}

/// `envoy.yaml` as JSON (read as the scenario runner reads Istio YAML:
/// one document, anchors resolved).
fn envoy_yaml() -> anyhow::Result<Value> {
    let mut docs = istio_resources(&[root().join("envoy.yaml")])?;
    match (docs.pop(), docs.is_empty()) {
        (Some(cfg), true) => Ok(cfg),
        _ => bail!("envoy.yaml: expected one YAML document"),
    }
}

/// `cfg` (an Envoy bootstrap) with `normalize_path: true` in the
/// connection manager of its first listener's first filter chain.
fn normalize_path(mut cfg: Value) -> anyhow::Result<Value> {
    let hcm = http_connection_manager(&mut cfg)
        .context("envoy.yaml: no http_connection_manager in the first filter chain")?;
    hcm.insert("normalize_path".to_owned(), Value::Bool(true));
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// The rule ids of the native filters, per filter, with their action.
    fn policies(filters: &[Value]) -> Vec<(String, Vec<String>)> {
        filters
            .iter()
            .map(|f| {
                let rules = &f["typedConfig"]["rules"];
                let action = rules["action"].as_str().unwrap_or("ALLOW").to_owned();
                let ids = rules["policies"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .cloned()
                    .collect();
                (action, ids)
            })
            .collect()
    }

    #[test]
    fn the_translation_is_of_the_bench_policy_deny_then_allow() {
        let filters = native_filters(NATIVE).unwrap();
        let resources = istio_resources(&[root().join(POLICY)]).unwrap();
        let names: Vec<&str> = resources
            .iter()
            .map(|r| r["metadata"]["name"].as_str().unwrap())
            .collect();

        assert_eq!(names, ["deny-admin", "tenant-reads"]);
        assert_eq!(
            policies(&filters),
            [
                (
                    "DENY".to_owned(),
                    vec!["ns[default]-policy[deny-admin]-rule[0]".to_owned()]
                ),
                (
                    "ALLOW".to_owned(),
                    vec!["ns[default]-policy[tenant-reads]-rule[0]".to_owned()]
                ),
            ]
        );
        let text = NATIVE;
        for needle in [
            "\"x-tenant\"",
            "\"acme\"",
            "\"/admin\"",
            "\"/api/products/internal\"",
            "\"product-service\"",
        ] {
            assert!(text.contains(needle), "{needle}");
        }
    }

    #[test]
    fn later_filters_are_renamed_and_the_template_normalizes_paths() {
        let filters = native_filters(NATIVE).unwrap();
        let cfg = envoy_yaml().unwrap();

        let normalizing = normalize_path(cfg).unwrap();

        assert_eq!(renamed(&filters[0], 0)["name"], "envoy.filters.http.rbac");
        assert_eq!(renamed(&filters[1], 1)["name"], "envoy.filters.http.rbac.1");
        let hcm = &normalizing["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
            [0]["typed_config"];
        assert_eq!(hcm["normalize_path"], true);
    }
}
