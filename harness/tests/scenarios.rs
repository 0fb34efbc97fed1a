//! Runs every scenario under `testdata/scenarios/` in the wasmtime host and
//! in real Envoy 1.40, one test per file: each backend must meet the
//! expectations, and both must observe the same outcomes. Every scenario
//! of a meshwasm chain (authn, rbac, fault, route) runs a second time as
//! `mesh/<name>` with the one-pass `mesh` filter in the chain's place: it
//! must behave the same (docs/mesh.md).
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

use libtest_mimic::{Arguments, Failed, Trial};
use meshwasm_harness::scenario::{Backend, EnvoyBackend, HarnessBackend, Scenario, Started};

/// Seed of the harness's `random_get`: weighted picks are reproducible.
const SEED: u64 = 0x6d65_7368;

fn run(scenario: &Scenario) -> Result<(), Failed> {
    let harness = HarnessBackend::start(scenario, SEED).map_err(|e| format!("harness: {e:#}"))?;
    let envoy = EnvoyBackend::start(scenario).map_err(|e| format!("envoy: {e:#}"))?;
    match (harness, envoy) {
        (Started::Running(mut h), Started::Running(mut e)) => {
            let mut backends: [&mut dyn Backend; 2] = [&mut h, &mut e];
            scenario.run(&mut backends).map_err(|e| format!("{e:#}"))?;
        }
        (Started::Refused(h), Started::Refused(e)) => {
            scenario
                .check_refusal("harness", &h)
                .map_err(|e| format!("{e:#}"))?;
            scenario
                .check_refusal("envoy", &e)
                .map_err(|e| format!("{e:#}"))?;
        }
        (Started::Refused(log), Started::Running(_)) => {
            return Err(format!("only the harness refused the configuration:\n{log}").into());
        }
        (Started::Running(_), Started::Refused(log)) => {
            return Err(format!("only Envoy refused the configuration:\n{log}").into());
        }
    }
    Ok(())
}

/// The scenario with the `mesh` filter in place of its chain, when the
/// chain is made of the stages the mesh filter runs.
fn as_mesh(s: &Scenario) -> Option<Scenario> {
    const STAGES: [&str; 4] = ["authn", "rbac", "fault", "route"];
    if !s.filters.iter().all(|f| STAGES.contains(&f.as_str())) {
        return None;
    }
    let mut mesh = s.clone();
    mesh.name = format!("mesh/{}", s.name);
    mesh.filters = vec!["mesh".to_owned()];
    // Log lines name the filter that wrote them.
    let renamed = |line: &mut String| {
        for f in STAGES {
            *line = line.replace(&format!("meshwasm.{f}:"), "meshwasm.mesh:");
        }
    };
    mesh.refused.iter_mut().flatten().for_each(renamed);
    for step in &mut mesh.requests {
        step.expect.logs.iter_mut().for_each(renamed);
    }
    Some(mesh)
}

fn main() {
    let args = Arguments::from_args();
    let scenarios = Scenario::all().unwrap();
    assert!(!scenarios.is_empty(), "no scenarios found");
    let mesh: Vec<Scenario> = scenarios.iter().filter_map(as_mesh).collect();
    let trials = scenarios
        .into_iter()
        .chain(mesh)
        .map(|s| Trial::test(s.name.clone(), move || run(&s)))
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
