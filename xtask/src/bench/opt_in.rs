//! Variants a run measures only when `--variants` names them: the
//! `cost-*` variants price one kind of host call each (the no-op filter
//! repeating it), and the `*-base` variants run the modules of another
//! build (`--baseline DIR`, e.g. `target/wasm32-wasip1/release` of an
//! older commit) beside this one's, so a change is measured against what
//! it changed in the same interleaved run.

use std::path::{Path, PathBuf};

use meshwasm_harness::envoy::{WasmFilter, wasm_path};

use super::variants::{Comparison, Enforced, Inputs, RS256, Variant};

use Enforced::{Jwt, Rbac, Routes};

/// Every opt-in variant.
pub(super) const OPT_IN: &[Variant] = &[
    Variant {
        name: "cost-map",
        what: "the no-op plus 10 × `get_header_map_pairs` (the whole request map) per request (opt-in: `--variants`)",
        filters: |_| vec![cost("map")],
        envoy: |rig, _| rig,
        load: RS256,
        enforces: &[],
    },
    Variant {
        name: "cost-value",
        what: "the no-op plus 10 × `get_header_map_value` (one request header) per request (opt-in: `--variants`)",
        filters: |_| vec![cost("value")],
        envoy: |rig, _| rig,
        load: RS256,
        enforces: &[],
    },
    Variant {
        name: "cost-metric",
        what: "the no-op plus 10 × `increment_metric` (a counter) per request (opt-in: `--variants`)",
        filters: |_| vec![cost("metric")],
        envoy: |rig, _| rig,
        load: RS256,
        enforces: &[],
    },
    Variant {
        name: "cost-shared",
        what: "the no-op plus 10 × `get_shared_data` (a 38-byte value) per request (opt-in: `--variants`)",
        filters: |_| vec![cost("shared")],
        envoy: |rig, _| rig,
        load: RS256,
        enforces: &[],
    },
    Variant {
        name: "cost-property",
        what: "the no-op plus 10 × `get_property` (`connection.mtls`) per request (opt-in: `--variants`)",
        filters: |_| vec![cost("property")],
        envoy: |rig, _| rig,
        load: RS256,
        enforces: &[],
    },
    Variant {
        name: "cost-replace",
        what: "the no-op plus 10 × `replace_header_map_value` (a request header; each clears the route cache) per request (opt-in: `--variants`)",
        filters: |_| vec![cost("replace")],
        envoy: |rig, _| rig,
        load: RS256,
        enforces: &[],
    },
    Variant {
        name: "cost-setprop",
        what: "the no-op plus 10 × `set_property` (filter state, as authn hands on its identity) per request (opt-in: `--variants`)",
        filters: |_| vec![cost("setprop")],
        envoy: |rig, _| rig,
        load: RS256,
        enforces: &[],
    },
    Variant {
        name: "cost-time",
        what: "the no-op plus 10 × `get_current_time_nanoseconds` per request (opt-in: `--variants`)",
        filters: |_| vec![cost("time")],
        envoy: |rig, _| rig,
        load: RS256,
        enforces: &[],
    },
    Variant {
        name: "route-base",
        what: "`route` with the baseline's meshwasm_route.wasm (`--baseline DIR`)",
        filters: |i| vec![baseline("route", i)],
        envoy: |rig, _| rig,
        load: RS256,
        enforces: &[Routes],
    },
    Variant {
        name: "authn-base",
        what: "`authn` with the baseline's meshwasm_authn.wasm (`--baseline DIR`)",
        filters: |i| vec![baseline("authn", i)],
        envoy: |rig, _| rig,
        load: RS256,
        enforces: &[Jwt],
    },
    Variant {
        name: "rbac-base",
        what: "`rbac` with the baseline's meshwasm_rbac.wasm (`--baseline DIR`)",
        filters: |i| vec![baseline("rbac", i)],
        envoy: |rig, _| rig,
        load: RS256,
        enforces: &[Rbac],
    },
    Variant {
        name: "mesh-base",
        what: "`mesh` with the baseline's meshwasm_mesh.wasm (`--baseline DIR`)",
        filters: |i| vec![baseline("mesh", i)],
        envoy: |rig, _| rig,
        load: RS256,
        enforces: &[Jwt, Rbac, Routes],
    },
];

/// Calls of one kind a `cost-*` variant adds to the no-op's per request.
pub(super) const COST_CALLS: f64 = 10.0;

/// Whether `v` is a `cost-*` variant.
pub(super) fn is_cost(v: &Variant) -> bool {
    v.name.starts_with("cost-")
}

/// The no-op filter making [`COST_CALLS`] more calls of `kind` per request.
fn cost(kind: &str) -> WasmFilter {
    WasmFilter::new(
        "meshwasm.noop",
        wasm_path("noop"),
        format!("hostcall={kind}*{}", COST_CALLS as u32),
    )
}

/// The baseline's module of filter `name` on the full seed policy (the
/// bench refuses `*-base` variants without `--baseline`).
fn baseline(name: &str, i: &Inputs) -> WasmFilter {
    let dir = i.baseline.clone().unwrap_or_default();
    WasmFilter::new(
        &format!("meshwasm.{name}"),
        baseline_module(&dir, name),
        i.policy.document.as_str(),
    )
}

/// The module of filter `name` in baseline directory `dir`.
pub(super) fn baseline_module(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("meshwasm_{name}.wasm"))
}

/// This build against the baseline's, when both are measured.
pub(super) const BASE_COMPARISONS: &[Comparison] = &[
    Comparison {
        variant: "mesh",
        reference: "mesh-base",
        what: "this build's mesh filter against the baseline's, in the same run",
        aim: None,
    },
    Comparison {
        variant: "route",
        reference: "route-base",
        what: "this build's route filter against the baseline's",
        aim: None,
    },
    Comparison {
        variant: "authn",
        reference: "authn-base",
        what: "this build's authn filter against the baseline's",
        aim: None,
    },
    Comparison {
        variant: "rbac",
        reference: "rbac-base",
        what: "this build's rbac filter against the baseline's",
        aim: None,
    },
];
