//! What `cargo xtask bench` measures: the Envoy configurations under test,
//! the load each gets and the pairs it compares directly. Every variant
//! gets the same requests: `GET /api/products`, `Host: product-service`,
//! `x-tenant: acme`, a valid token; every meshwasm filter reads the same
//! document, the full seed policy (`policy.rs`).

use meshwasm_harness::envoy::{EnvoyRig, WasmFilter, product_cluster, wasm_path};
use serde_json::{Value, json};

use super::jwt::{JwtBench, Sig};
use super::policy::SeedPolicy;
use super::rbac::RbacBench;

/// What the variants are built from, made once per run.
pub(super) struct Inputs {
    /// The keys, the RequestAuthentication and the tokens.
    pub jwt: JwtBench,
    /// The AuthorizationPolicies and their native translation.
    pub rbac: RbacBench,
    /// The full seed policy document and its native configuration.
    pub policy: SeedPolicy,
    /// Where the `*-base` variants' modules are (`--baseline DIR`).
    pub baseline: Option<std::path::PathBuf>,
}

/// Whether a request's token repeats or is new every time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tokens {
    /// The same valid token on every request.
    Repeated,
    /// A different valid token on every request (a wrk Lua script cycling
    /// pre-minted tokens).
    New,
}

/// The requests wrk sends: besides the headers every variant sends, which
/// token `Authorization: Bearer` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Load {
    pub sig: Sig,
    pub tokens: Tokens,
}

pub(super) const RS256: Load = Load {
    sig: Sig::Rs256,
    tokens: Tokens::Repeated,
};
const RS256_NEW: Load = Load {
    sig: Sig::Rs256,
    tokens: Tokens::New,
};
const ES256: Load = Load {
    sig: Sig::Es256,
    tokens: Tokens::Repeated,
};
const ES256_NEW: Load = Load {
    sig: Sig::Es256,
    tokens: Tokens::New,
};

/// A part of the policy a variant enforces, checked before it is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Enforced {
    /// The RequestAuthentication: a token with a bad signature gets 401.
    Jwt,
    /// The AuthorizationPolicies: no `x-tenant` or a path under
    /// `/api/products/internal` gets 403.
    Rbac,
    /// The VirtualService: `user-type: premium` goes to v2.
    Routes,
}

use Enforced::{Jwt, Rbac, Routes};

/// One Envoy configuration under test.
pub(super) struct Variant {
    pub name: &'static str,
    pub what: &'static str,
    /// The wasm filters before the router.
    pub filters: fn(&Inputs) -> Vec<WasmFilter>,
    /// Native Envoy configuration on top of `envoy.yaml` (HTTP filters,
    /// routes, clusters); the identity for most variants.
    pub envoy: fn(EnvoyRig, &Inputs) -> EnvoyRig,
    /// The token the requests carry.
    pub load: Load,
    /// What the variant must be seen to enforce before it is measured.
    pub enforces: &'static [Enforced],
}

/// Every variant, in run order. The first is the baseline every run must
/// include.
pub(super) const VARIANTS: &[Variant] = &[
    Variant {
        name: "none",
        what: "envoy.yaml without wasm filters (router only)",
        filters: |_| Vec::new(),
        envoy: |rig, _| rig,
        load: RS256,
        enforces: &[],
    },
    Variant {
        name: "noop",
        what: "meshwasm_noop.wasm: a wasm filter that reads one header",
        filters: |i| vec![wasm("noop", i)],
        envoy: |rig, _| rig,
        load: RS256,
        enforces: &[],
    },
    Variant {
        name: "route",
        what: "meshwasm_route.wasm alone (routes, resilience)",
        filters: |i| vec![wasm("route", i)],
        envoy: |rig, _| rig,
        load: RS256,
        enforces: &[Routes],
    },
    Variant {
        name: "fault",
        what: "meshwasm_fault.wasm alone; the seed has no fault rule, so the requests match none",
        filters: |i| vec![wasm("fault", i)],
        envoy: |rig, _| rig,
        load: RS256,
        enforces: &[],
    },
    Variant {
        name: "authn",
        what: "meshwasm_authn.wasm alone; one RS256 token repeated (verified once, then from the \
               filter's token cache)",
        filters: |i| vec![wasm("authn", i)],
        envoy: |rig, _| rig,
        load: RS256,
        enforces: &[Jwt],
    },
    Variant {
        name: "rbac",
        what: "meshwasm_rbac.wasm alone (paths normalised by the filter, `BASE`)",
        filters: |i| vec![wasm("rbac", i)],
        envoy: |rig, _| rig,
        load: RS256,
        enforces: &[Rbac],
    },
    Variant {
        name: "chain",
        what: "authn → rbac → fault → route: four meshwasm filters; one RS256 token repeated",
        filters: chain,
        envoy: |rig, _| rig,
        load: RS256,
        enforces: &[Jwt, Rbac, Routes],
    },
    Variant {
        name: "mesh",
        what: "meshwasm_mesh.wasm: the same stages in one filter; one RS256 token repeated",
        filters: |i| vec![wasm("mesh", i)],
        envoy: |rig, _| rig,
        load: RS256,
        enforces: &[Jwt, Rbac, Routes],
    },
    Variant {
        name: "native-chain",
        what: "the same policy in Envoy's native `jwt_authn` (no `jwt_cache_config`), `rbac` ×2, \
               `fault`, header/weighted routes with Istio's default retries and the \
               DestinationRule on the clusters, as Istio writes them (bench/policy.rs); one RS256 \
               token repeated",
        filters: |_| Vec::new(),
        envoy: |rig, i| native_chain(rig, i, false),
        load: RS256,
        enforces: &[Jwt, Rbac, Routes],
    },
    Variant {
        name: "native-chain-cache",
        what: "`native-chain` with `jwt_cache_config: {jwt_cache_size: 100}`; one RS256 token repeated",
        filters: |_| Vec::new(),
        envoy: |rig, i| native_chain(rig, i, true),
        load: RS256,
        enforces: &[Jwt, Rbac, Routes],
    },
    Variant {
        name: "authn-new-token",
        what: "`authn` with a new RS256 token on every request (a signature check each)",
        filters: |i| vec![wasm("authn", i)],
        envoy: |rig, _| rig,
        load: RS256_NEW,
        enforces: &[Jwt],
    },
    Variant {
        name: "mesh-new-token",
        what: "`mesh` with a new RS256 token on every request",
        filters: |i| vec![wasm("mesh", i)],
        envoy: |rig, _| rig,
        load: RS256_NEW,
        enforces: &[Jwt, Rbac, Routes],
    },
    Variant {
        name: "native-chain-new-token",
        what: "`native-chain` (no cache) with a new RS256 token on every request",
        filters: |_| Vec::new(),
        envoy: |rig, i| native_chain(rig, i, false),
        load: RS256_NEW,
        enforces: &[Jwt, Rbac, Routes],
    },
    Variant {
        name: "mesh-es256",
        what: "`mesh`; one ES256 (P-256) token repeated",
        filters: |i| vec![wasm("mesh", i)],
        envoy: |rig, _| rig,
        load: ES256,
        enforces: &[Jwt, Rbac, Routes],
    },
    Variant {
        name: "native-chain-cache-es256",
        what: "`native-chain-cache`; one ES256 token repeated",
        filters: |_| Vec::new(),
        envoy: |rig, i| native_chain(rig, i, true),
        load: ES256,
        enforces: &[Jwt, Rbac, Routes],
    },
    Variant {
        name: "mesh-es256-new-token",
        what: "`mesh` with a new ES256 token on every request",
        filters: |i| vec![wasm("mesh", i)],
        envoy: |rig, _| rig,
        load: ES256_NEW,
        enforces: &[Jwt, Rbac, Routes],
    },
    Variant {
        name: "native-chain-es256-new-token",
        what: "`native-chain` (no cache) with a new ES256 token on every request",
        filters: |_| Vec::new(),
        envoy: |rig, i| native_chain(rig, i, false),
        load: ES256_NEW,
        enforces: &[Jwt, Rbac, Routes],
    },
    Variant {
        name: "native-fault",
        what: "Envoy's `envoy.filters.http.fault` alone, per-route faults as Istio writes the seed's \
               fault-injection-{delay,abort}.yaml (`test-scenario` routes to v1, catch-all to v1); \
               the requests match no fault",
        filters: |_| Vec::new(),
        envoy: |rig, _| native_fault(rig),
        load: RS256,
        enforces: &[],
    },
    Variant {
        name: "native-jwt-cache",
        what: "Envoy's `envoy.filters.http.jwt_authn` alone as istiod writes it for the same \
               RequestAuthentication (`local_jwks`, `allow_missing`) with `jwt_cache_config: \
               {jwt_cache_size: 100}`; one RS256 token repeated",
        filters: |_| Vec::new(),
        envoy: |rig, i| i.jwt.native(rig, true),
        load: RS256,
        enforces: &[Jwt],
    },
    Variant {
        name: "native-jwt-new-token",
        what: "`native-jwt-cache` without the cache, a new RS256 token on every request",
        filters: |_| Vec::new(),
        envoy: |rig, i| i.jwt.native(rig, false),
        load: RS256_NEW,
        enforces: &[Jwt],
    },
    Variant {
        name: "native-rbac",
        what: "Envoy's `envoy.filters.http.rbac` alone as Istio translates the same policies (a DENY \
               filter, then an ALLOW filter; xtask/src/bench/native-rbac.json) with the HCM's \
               `normalize_path: true` (Istio's `BASE`)",
        filters: |_| Vec::new(),
        envoy: |rig, i| i.rbac.native(rig),
        load: RS256,
        enforces: &[Rbac],
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
        variant: "mesh",
        reference: "native-chain-cache",
        what: "the whole policy: one meshwasm filter against Envoy's native filters with the token cache",
        aim: Some(1.0),
    },
    Comparison {
        variant: "mesh",
        reference: "noop",
        what: "the whole policy on top of one wasm filter's VM crossing",
        aim: Some(0.95),
    },
    Comparison {
        variant: "mesh",
        reference: "chain",
        what: "one pass against four filters on the same document",
        aim: None,
    },
    Comparison {
        variant: "chain",
        reference: "native-chain-cache",
        what: "four meshwasm filters against Envoy's native filters with the token cache",
        aim: None,
    },
    Comparison {
        variant: "native-chain-cache",
        reference: "native-chain",
        what: "what `jwt_cache_config` buys Envoy on a repeated token",
        aim: None,
    },
    Comparison {
        variant: "mesh-new-token",
        reference: "native-chain-new-token",
        what: "the whole policy, a new RS256 token on every request: a signature check each, in both",
        aim: None,
    },
    Comparison {
        variant: "mesh-es256",
        reference: "native-chain-cache-es256",
        what: "the whole policy, one ES256 token repeated",
        aim: Some(1.0),
    },
    Comparison {
        variant: "mesh-es256-new-token",
        reference: "native-chain-es256-new-token",
        what: "the whole policy, a new ES256 token on every request",
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
        what: "the meshwasm rbac filter against Envoy's RBAC filters as Istio configures them",
        aim: None,
    },
    Comparison {
        variant: "fault",
        reference: "native-fault",
        what: "the meshwasm fault filter against Envoy's own fault filter, on requests that match no fault",
        aim: None,
    },
];

/// The single filters whose added p50 is held against the no-op filter's
/// (issue 15: at most `SINGLE_FILTER_AIM` ×), and the others shown beside them.
pub(super) const SINGLE_FILTERS: &[&str] = &["route", "fault", "authn", "rbac"];
pub(super) const SINGLE_FILTER_AIM: f64 = 1.2;
pub(super) const ALSO_AGAINST_NOOP: &[&str] = &["chain", "mesh"];

/// The meshwasm filter `name` (`meshwasm_<name>.wasm`) on the full seed policy.
fn wasm(name: &str, i: &Inputs) -> WasmFilter {
    WasmFilter::new(
        &format!("meshwasm.{name}"),
        wasm_path(name),
        i.policy.document.as_str(),
    )
}

/// authn → rbac → fault → route.
fn chain(i: &Inputs) -> Vec<WasmFilter> {
    ["authn", "rbac", "fault", "route"]
        .iter()
        .map(|n| wasm(n, i))
        .collect()
}

fn native_chain(rig: EnvoyRig, i: &Inputs, cache: bool) -> EnvoyRig {
    i.policy.native(rig, &i.jwt, &i.rbac, cache)
}

pub(super) const FAULT_FILTER: &str = "envoy.filters.http.fault";
pub(super) const FAULT_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault";

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
        for n in SINGLE_FILTERS.iter().chain(ALSO_AGAINST_NOOP) {
            assert!(names.contains(n), "{n}");
        }
    }
}
