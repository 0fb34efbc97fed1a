//! The full seed policy: the one configuration document every meshwasm
//! variant reads — the seed's VirtualService and DestinationRule
//! (`testdata/istio/virtual-service-example.yaml`,
//! `destination-rule-example.yaml`), the bench RequestAuthentication (an
//! inline JWKS with an RS256 and an ES256 key, `jwt.rs`) and the bench
//! AuthorizationPolicies (`rbac.rs`) — and the same policy in Envoy's native
//! configuration as Istio writes it:
//!
//! - HTTP filters `jwt_authn` (`jwt.rs`), the two RBAC filters (`rbac.rs`,
//!   with the HCM's `normalize_path: true`), `fault` (Istio puts it in every
//!   sidecar HCM; the seed has no fault rule, so it finds no per-route
//!   fault), then the router;
//! - routes: the VirtualService translated by `harness/src/native_routes.rs`
//!   (Istio's `BuildSidecarOutboundVirtualHosts`: the `user-type: premium`
//!   header route to v2, the weighted 90/10 route), each with Istio's
//!   default timeout (`0s`) and retry policy (istio/istio
//!   `pilot/pkg/networking/core/route/retry/retry.go` `DefaultPolicy`);
//! - clusters: the DestinationRule as Istio's cluster builder writes it
//!   (`meshwasm::resilience::clusters`, `cargo xtask clusters`):
//!   `envoy.yaml`'s subset clusters already carry the load balancer,
//!   circuit breakers and requests per connection for every variant (so
//!   the document sets `envoy.clustersHaveConnectionPool`); the
//!   native chain adds Istio's per-endpoint `outlier_detection` (the legacy
//!   `circuitBreaker` read as meshwasm reads it) and panic threshold — the
//!   work meshwasm's resilience stage does per subset.
//!
//! With Istio's route defaults (the default, `--no-route-defaults` turns
//! it off), `envoy.yaml`'s route that follows `x-mesh-cluster` carries the
//! same timeout and retry policy and the document sets
//! `envoy.routeHasIstioDefaults`, so the route filter writes router
//! headers only for rules that differ (docs/route.md); without, the route
//! carries neither and the filter writes every router header.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use meshwasm::config::{Document, Kind};
use meshwasm::resilience::clusters::envoy_clusters;
use meshwasm_harness::envoy::{EnvoyRig, product_cluster};
use meshwasm_harness::native_routes::route_configuration;
use meshwasm_harness::scenario::{config_document, istio_resources};
use serde_json::{Value, json};

use super::jwt::JwtBench;
use super::rbac::{self, RbacBench};
use super::variants::{FAULT_FILTER, FAULT_TYPE};
use crate::util::root;

/// The seed's routing resources, under the workspace.
const SEED: [&str; 2] = [
    "testdata/istio/virtual-service-example.yaml",
    "testdata/istio/destination-rule-example.yaml",
];

/// The full seed policy, made once per run.
pub(super) struct SeedPolicy {
    /// The configuration document of every meshwasm filter.
    pub document: String,
    /// Whether `envoy.yaml`'s routes carry Istio's defaults.
    pub route_defaults: bool,
    /// Istio's route configuration for its VirtualService.
    routes: Value,
    /// `envoy.yaml` with path normalisation and the DestinationRule's clusters.
    template: PathBuf,
}

impl SeedPolicy {
    /// The document, its native routes and the native template (under `dir`).
    pub(super) fn prepare(
        jwt: &JwtBench,
        rbac: &RbacBench,
        route_defaults: bool,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        let files: Vec<PathBuf> = SEED.iter().map(|f| root().join(f)).collect();
        let mut resources = istio_resources(&files)?;
        resources.push(jwt.request_authentication());
        resources.extend(rbac.resources.iter().cloned());
        // The subset clusters carry the connectionPool as circuit breakers
        // in every variant: the filters leave the limits to them.
        let mut envoy = json!({"clustersHaveConnectionPool": true});
        if route_defaults {
            envoy["routeHasIstioDefaults"] = json!(true);
        }
        let document = config_document(resources, None, Some(envoy)).to_string();
        let doc = Document::parse(
            document.as_bytes(),
            &[Kind::VirtualService, Kind::DestinationRule],
        )
        .map_err(|e| anyhow::anyhow!("the full seed policy: {e}"))?;
        let mut routes = route_configuration(&doc, 80, &product_cluster("v1"))
            .map_err(|e| anyhow::anyhow!("translating the seed VirtualService: {e}"))?;
        with_default_retries(&mut routes);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let template = dir.join("envoy-native-chain.json");
        let mut cfg = rbac::normalizing()?;
        with_clusters(&mut cfg, &envoy_clusters(&doc).0)?;
        std::fs::write(&template, serde_json::to_string_pretty(&cfg)?)
            .with_context(|| format!("writing {}", template.display()))?;
        Ok(SeedPolicy {
            document,
            route_defaults,
            routes,
            template,
        })
    }

    /// The rig with the whole policy in Envoy's native filters, routes and
    /// clusters; `jwt_cache_config` when `cache`.
    pub(super) fn native(
        &self,
        rig: EnvoyRig,
        jwt: &JwtBench,
        rbac: &RbacBench,
        cache: bool,
    ) -> EnvoyRig {
        let rig = jwt.native(rig.template(&self.template), cache);
        rbac.native_filters(rig)
            .native_filter(json!({"name": FAULT_FILTER, "typed_config": {"@type": FAULT_TYPE}}))
            .route_config(self.routes.clone())
    }

    /// The rig with `envoy.yaml`'s two routes (to the cluster the filter
    /// names in `x-mesh-cluster`, else to v1) carrying Istio's default
    /// timeout and retry policy, when the run uses Istio's route defaults.
    pub(super) fn mesh_routes(&self, rig: EnvoyRig) -> EnvoyRig {
        if !self.route_defaults {
            return rig;
        }
        let defaults = |mut action: Value| {
            if let Some(obj) = action.as_object_mut() {
                obj.insert("timeout".to_owned(), json!("0s"));
                obj.insert("retry_policy".to_owned(), istio_retry_policy());
            }
            action
        };
        rig.routes(vec![
            json!({
                "match": {
                    "prefix": "/",
                    "headers": [{"name": "x-mesh-cluster", "present_match": true}],
                },
                "route": defaults(json!({"cluster_header": "x-mesh-cluster"})),
            }),
            json!({
                "match": {"prefix": "/"},
                "route": defaults(json!({"cluster": product_cluster("v1")})),
            }),
        ])
    }
}

/// Istio's retry policy for a route without `retries` (retry.go
/// `DefaultPolicy`).
fn istio_retry_policy() -> Value {
    json!({
        "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
        "num_retries": 2,
        "retry_host_predicate": [{
            "name": "envoy.retry_host_predicates.previous_hosts",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate",
            },
        }],
        "host_selection_retry_max_attempts": 5,
        "retriable_status_codes": [503],
    })
}

/// Istio's retry policy on every route of a VirtualService's virtual hosts
/// (not on the `allow_any` passthrough).
fn with_default_retries(routes: &mut Value) {
    let policy = istio_retry_policy();
    let Some(vhosts) = routes
        .get_mut("virtual_hosts")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for vhost in vhosts
        .iter_mut()
        .filter(|v| v.get("name").and_then(Value::as_str) != Some("allow_any"))
    {
        let Some(list) = vhost.get_mut("routes").and_then(Value::as_array_mut) else {
            continue;
        };
        for action in list
            .iter_mut()
            .filter_map(|r| r.get_mut("route").and_then(Value::as_object_mut))
        {
            action.insert("retry_policy".to_owned(), policy.clone());
        }
    }
}

/// The template's clusters replaced by `istio`'s of the same name (Istio's
/// settings for the DestinationRule), keeping their type and endpoints.
fn with_clusters(cfg: &mut Value, istio: &[Value]) -> anyhow::Result<()> {
    let clusters = cfg
        .pointer_mut("/static_resources/clusters")
        .and_then(Value::as_array_mut)
        .context("envoy.yaml: no static_resources.clusters")?;
    let mut replaced = 0;
    for c in clusters.iter_mut() {
        let name = c.get("name").and_then(Value::as_str);
        let Some(mut new) = istio
            .iter()
            .find(|i| i.get("name").and_then(Value::as_str) == name)
            .cloned()
        else {
            continue;
        };
        if let (Some(obj), Some(old)) = (new.as_object_mut(), c.as_object()) {
            for key in ["type", "load_assignment"] {
                if let Some(v) = old.get(key) {
                    obj.insert(key.to_owned(), v.clone());
                }
            }
        }
        *c = new;
        replaced += 1;
    }
    if replaced < 2 {
        anyhow::bail!("envoy.yaml: the DestinationRule's subset clusters were not found");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn every_virtual_service_route_gets_istio_default_retries() {
        let mut routes = json!({"virtual_hosts": [
            {"name": "product-service.default.svc.cluster.local:80", "routes": [
                {"match": {"prefix": "/"}, "route": {"cluster": "a"}},
                {"match": {"prefix": "/"}, "route": {"weighted_clusters": {"clusters": []}}},
            ]},
            {"name": "allow_any", "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "p"}}]},
        ]});

        with_default_retries(&mut routes);

        let vh = &routes["virtual_hosts"];
        assert_eq!(
            vh[0]["routes"][0]["route"]["retry_policy"]["num_retries"],
            2
        );
        assert_eq!(
            vh[0]["routes"][1]["route"]["retry_policy"]["retriable_status_codes"],
            json!([503])
        );
        assert!(vh[1]["routes"][0]["route"].get("retry_policy").is_none());
    }

    #[test]
    fn the_subset_clusters_carry_istio_settings_and_keep_their_endpoints() {
        let mut cfg = rbac::normalizing().unwrap();
        let istio = vec![
            json!({"name": product_cluster("v1"), "type": "EDS", "lb_policy": "LEAST_REQUEST",
                   "outlier_detection": {"consecutive_gateway_failure": 3}}),
            json!({"name": product_cluster("v2"), "lb_policy": "ROUND_ROBIN"}),
            json!({"name": "outbound|80||product-service.default.svc.cluster.local"}),
        ];

        with_clusters(&mut cfg, &istio).unwrap();

        let clusters = cfg["static_resources"]["clusters"].as_array().unwrap();
        let find = |s: &str| {
            clusters
                .iter()
                .find(|c| c["name"] == product_cluster(s).as_str())
                .unwrap()
        };
        assert_eq!(find("v1")["type"], "STATIC");
        assert_eq!(
            find("v1")["outlier_detection"]["consecutive_gateway_failure"],
            3
        );
        assert_eq!(find("v2")["lb_policy"], "ROUND_ROBIN");
        assert!(find("v2")["load_assignment"].is_object());
        assert_eq!(clusters.len(), 3);
    }
}
