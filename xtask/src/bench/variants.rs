//! What `cargo xtask bench` measures: the Envoy configurations under test,
//! the load each gets and the pairs it compares directly.

use meshwasm_harness::envoy::{EnvoyRig, WasmFilter, product_cluster, wasm_path};
use serde_json::{Value, json};

use super::jwt::JwtBench;
use super::rbac::RbacBench;

/// What the variants are built from, made once per run.
pub(super) struct Inputs {
    /// The seed configuration document (`envoy.yaml`'s).
    pub seed: String,
    /// The JWT variants' key, policy and tokens.
    pub jwt: JwtBench,
    /// The RBAC variants' policy and its native translation.
    pub rbac: RbacBench,
}

/// The requests wrk sends (all `GET /api/products`, `Host: product-service`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Load {
    /// No other header.
    Plain,
    /// `Authorization: Bearer <token>`, the same valid token every time.
    Token,
    /// `Authorization: Bearer <token>`, a different valid token every time
    /// (a wrk Lua script cycling pre-minted tokens).
    NewTokens,
    /// `x-tenant: acme` ([`super::rbac::TENANT`]): what the bench
    /// AuthorizationPolicy allows.
    Tenant,
}

/// One Envoy configuration under test.
pub(super) struct Variant {
    pub name: &'static str,
    pub what: &'static str,
    /// The wasm filters before the router.
    pub filters: fn(&Inputs) -> Vec<WasmFilter>,
    /// Native Envoy configuration on top of `envoy.yaml` (HTTP filters,
    /// routes); the identity for most variants.
    pub envoy: fn(EnvoyRig, &Inputs) -> EnvoyRig,
    /// The requests.
    pub load: Load,
}

/// Every variant, in run order; later issues append theirs. The first is
/// the baseline every run must include.
pub(super) const VARIANTS: &[Variant] = &[
    Variant {
        name: "none",
        what: "envoy.yaml without wasm filters (router only)",
        filters: |_| Vec::new(),
        envoy: |rig, _| rig,
        load: Load::Plain,
    },
    Variant {
        name: "noop",
        what: "meshwasm_noop.wasm: a wasm filter that reads one header",
        filters: |i| vec![noop(&i.seed)],
        envoy: |rig, _| rig,
        load: Load::Plain,
    },
    Variant {
        name: "route",
        what: "meshwasm_route.wasm on the seed VirtualService + DestinationRule",
        filters: |i| vec![route(&i.seed)],
        envoy: |rig, _| rig,
        load: Load::Plain,
    },
    Variant {
        name: "fault",
        what: "meshwasm_fault.wasm alone on the seed configuration; the requests match no fault",
        filters: |i| vec![fault(&i.seed)],
        envoy: |rig, _| rig,
        load: Load::Plain,
    },
    Variant {
        name: "fault+route",
        what: "meshwasm_fault.wasm then meshwasm_route.wasm (the chain a user runs)",
        filters: |i| vec![fault(&i.seed), route(&i.seed)],
        envoy: |rig, _| rig,
        load: Load::Plain,
    },
    Variant {
        name: "native-fault",
        what: "Envoy's `envoy.filters.http.fault`, per-route faults as Istio writes the seed's \
               fault-injection-{delay,abort}.yaml (`test-scenario` routes to v1, catch-all to v1); \
               the requests match no fault",
        filters: |_| Vec::new(),
        envoy: |rig, _| native_fault(rig),
        load: Load::Plain,
    },
    Variant {
        name: "authn",
        what: "meshwasm_authn.wasm, a RequestAuthentication with inline `jwks` (RS256, 2048-bit key); \
               one valid token repeated (verified once, then from the filter's token cache)",
        filters: |i| vec![authn(&i.jwt)],
        envoy: |rig, _| rig,
        load: Load::Token,
    },
    Variant {
        name: "authn-new-token",
        what: "`authn` with a different valid token on every request (a signature check each)",
        filters: |i| vec![authn(&i.jwt)],
        envoy: |rig, _| rig,
        load: Load::NewTokens,
    },
    Variant {
        name: "native-jwt",
        what: "Envoy's `envoy.filters.http.jwt_authn` as istiod writes it for the same policy \
               (`local_jwks`, `allow_missing`), no `jwt_cache_config`; one valid token repeated",
        filters: |_| Vec::new(),
        envoy: |rig, i| i.jwt.native(rig, false),
        load: Load::Token,
    },
    Variant {
        name: "native-jwt-cache",
        what: "`native-jwt` with `jwt_cache_config: {jwt_cache_size: 100}`; one valid token repeated",
        filters: |_| Vec::new(),
        envoy: |rig, i| i.jwt.native(rig, true),
        load: Load::Token,
    },
    Variant {
        name: "native-jwt-new-token",
        what: "`native-jwt` (no cache) with a different valid token on every request",
        filters: |_| Vec::new(),
        envoy: |rig, i| i.jwt.native(rig, false),
        load: Load::NewTokens,
    },
    Variant {
        name: "rbac",
        what: "meshwasm_rbac.wasm on testdata/istio/bench-authorization-policy.yaml (DENY `/admin*`, \
               `/api/products/internal*`; ALLOW GET/HEAD `/api/products[/*]` on host product-service when `x-tenant` \
               is a known tenant), paths normalised by the filter (`BASE`); requests carry `x-tenant: acme` \
               and are allowed",
        filters: |i| vec![rbac(&i.rbac)],
        envoy: |rig, _| rig,
        load: Load::Tenant,
    },
    Variant {
        name: "native-rbac",
        what: "Envoy's `envoy.filters.http.rbac` as Istio translates the same policy (a DENY filter, \
               then an ALLOW filter; xtask/src/bench/native-rbac.json) with the HCM's \
               `normalize_path: true` (Istio's `BASE`); same requests",
        filters: |_| Vec::new(),
        envoy: |rig, i| i.rbac.native(rig),
        load: Load::Tenant,
    },
];

/// One variant against a reference, reported as one line when a run has
/// both; `aim` is the rps ratio the variant should reach, if any.
pub(super) struct Comparison {
    pub variant: &'static str,
    pub reference: &'static str,
    pub what: &'static str,
    pub aim: Option<f64>,
}

/// The pairs compared directly.
pub(super) const COMPARISONS: &[Comparison] = &[
    Comparison {
        variant: "fault",
        reference: "native-fault",
        what: "the meshwasm fault filter against Envoy's own fault filter, on requests that match no fault",
        aim: None,
    },
    Comparison {
        variant: "fault+route",
        reference: "route",
        what: "what the fault filter adds in front of the route filter",
        aim: None,
    },
    Comparison {
        variant: "authn",
        reference: "native-jwt-cache",
        what: "one repeated token: the authn filter's token cache against jwt_authn's `jwt_cache_config`",
        aim: Some(1.0),
    },
    Comparison {
        variant: "authn-new-token",
        reference: "native-jwt-new-token",
        what: "a new token on every request: a signature check each, in both",
        aim: Some(0.8),
    },
    Comparison {
        variant: "rbac",
        reference: "native-rbac",
        what: "the meshwasm rbac filter against Envoy's RBAC filters as Istio configures them, \
               on requests the policy allows",
        aim: None,
    },
];

fn noop(cfg: &str) -> WasmFilter {
    WasmFilter::new("meshwasm.noop", wasm_path("noop"), cfg)
}

fn route(cfg: &str) -> WasmFilter {
    WasmFilter::new("meshwasm.route", wasm_path("route"), cfg)
}

fn fault(cfg: &str) -> WasmFilter {
    WasmFilter::new("meshwasm.fault", wasm_path("fault"), cfg)
}

fn authn(jwt: &JwtBench) -> WasmFilter {
    WasmFilter::new("meshwasm.authn", wasm_path("authn"), jwt.config.as_str())
}

fn rbac(rbac: &RbacBench) -> WasmFilter {
    WasmFilter::new("meshwasm.rbac", wasm_path("rbac"), rbac.config.as_str())
}

const FAULT_FILTER: &str = "envoy.filters.http.fault";
const FAULT_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault";

/// Envoy's fault filter with an empty top-level config, and the routes
/// Istio generates for the seed's fault-injection-delay.yaml and
/// fault-injection-abort.yaml (istio/istio
/// `pilot/pkg/networking/core/route/route.go` `TranslateFault`: the fault
/// in `typed_per_filter_config["envoy.filters.http.fault"]` of the route,
/// `percentage.value` → `{numerator: value×10000, denominator: MILLION}`).
/// Istio's route timeout and retry policy are left out, as in `none`, so
/// the difference is the fault machinery alone.
pub(super) fn native_fault(rig: EnvoyRig) -> EnvoyRig {
    rig.native_filter(json!({"name": FAULT_FILTER, "typed_config": {"@type": FAULT_TYPE}}))
        .routes(native_fault_routes(&product_cluster("v1")))
}

/// `test-scenario: delay` ⇒ 5 s fixed delay (100 %), `test-scenario: error`
/// ⇒ abort 500 (50 %), each then to `cluster`; everything else to `cluster`.
pub(super) fn native_fault_routes(cluster: &str) -> Vec<Value> {
    let percent = |value: u32| json!({"numerator": value * 10_000, "denominator": "MILLION"});
    let faulty = |scenario: &str, fault: Value| {
        let mut per_route = json!({"@type": FAULT_TYPE});
        if let (Some(obj), Value::Object(fault)) = (per_route.as_object_mut(), fault) {
            obj.extend(fault);
        }
        json!({
            "match": {
                "prefix": "/",
                "headers": [{"name": "test-scenario", "string_match": {"exact": scenario}}],
            },
            "route": {"cluster": cluster},
            "typed_per_filter_config": {FAULT_FILTER: per_route},
        })
    };
    vec![
        faulty(
            "delay",
            json!({"delay": {"fixed_delay": "5s", "percentage": percent(100)}}),
        ),
        faulty(
            "error",
            json!({"abort": {"http_status": 500, "percentage": percent(50)}}),
        ),
        json!({"match": {"prefix": "/"}, "route": {"cluster": cluster}}),
    ]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn native_fault_routes_carry_istio_fractional_percentages() {
        let routes = native_fault_routes("c");
        let fault = |i: usize| &routes[i]["typed_per_filter_config"][FAULT_FILTER];

        assert_eq!(fault(0)["delay"]["percentage"]["numerator"], 1_000_000);
        assert_eq!(fault(0)["delay"]["fixed_delay"], "5s");
        assert_eq!(fault(1)["abort"]["percentage"]["numerator"], 500_000);
        assert_eq!(fault(1)["abort"]["http_status"], 500);
        assert_eq!(fault(1)["@type"], FAULT_TYPE);
        assert!(routes[2].get("typed_per_filter_config").is_none());
    }

    #[test]
    fn variant_names_are_unique_and_comparisons_name_variants() {
        let names: Vec<&str> = VARIANTS.iter().map(|v| v.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
        assert_eq!(names.first(), Some(&"none"));
        for c in COMPARISONS {
            let (a, b) = (c.variant, c.reference);
            assert!(names.contains(&a) && names.contains(&b), "{a} vs {b}");
        }
    }
}
