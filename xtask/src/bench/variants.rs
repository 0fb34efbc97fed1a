//! What `cargo xtask bench` measures: the Envoy configurations under test
//! and the pairs it compares directly.

use meshwasm_harness::envoy::{EnvoyRig, WasmFilter, product_cluster, wasm_path};
use serde_json::{Value, json};

/// One Envoy configuration under test.
pub(super) struct Variant {
    pub name: &'static str,
    pub what: &'static str,
    /// The wasm filters before the router, given the seed configuration.
    pub filters: fn(&str) -> Vec<WasmFilter>,
    /// Native Envoy configuration on top of `envoy.yaml` (HTTP filters,
    /// routes); the identity for most variants.
    pub envoy: fn(EnvoyRig) -> EnvoyRig,
}

/// Every variant, in run order; later issues append theirs. The first is
/// the baseline every run must include.
pub(super) const VARIANTS: &[Variant] = &[
    Variant {
        name: "none",
        what: "envoy.yaml without wasm filters (router only)",
        filters: |_| Vec::new(),
        envoy: |rig| rig,
    },
    Variant {
        name: "noop",
        what: "meshwasm_noop.wasm: a wasm filter that reads one header",
        filters: |cfg| vec![noop(cfg)],
        envoy: |rig| rig,
    },
    Variant {
        name: "route",
        what: "meshwasm_route.wasm on the seed VirtualService + DestinationRule",
        filters: |cfg| vec![route(cfg)],
        envoy: |rig| rig,
    },
    Variant {
        name: "fault",
        what: "meshwasm_fault.wasm alone on the seed configuration; the requests match no fault",
        filters: |cfg| vec![fault(cfg)],
        envoy: |rig| rig,
    },
    Variant {
        name: "fault+route",
        what: "meshwasm_fault.wasm then meshwasm_route.wasm (the chain a user runs)",
        filters: |cfg| vec![fault(cfg), route(cfg)],
        envoy: |rig| rig,
    },
    Variant {
        name: "native-fault",
        what: "Envoy's `envoy.filters.http.fault`, per-route faults as Istio writes the seed's \
               fault-injection-{delay,abort}.yaml (`test-scenario` routes to v1, catch-all to v1); \
               the requests match no fault",
        filters: |_| Vec::new(),
        envoy: native_fault,
    },
];

/// `(variant, reference, what the difference shows)`: reported as one line
/// each when a run has both.
pub(super) const COMPARISONS: &[(&str, &str, &str)] = &[
    (
        "fault",
        "native-fault",
        "the meshwasm fault filter against Envoy's own fault filter, on requests that match no fault",
    ),
    (
        "fault+route",
        "route",
        "what the fault filter adds in front of the route filter",
    ),
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
        for (a, b, _) in COMPARISONS {
            assert!(names.contains(a) && names.contains(b), "{a} vs {b}");
        }
    }
}
