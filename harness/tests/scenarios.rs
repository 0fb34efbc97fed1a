//! Runs every scenario under `testdata/scenarios/` in the wasmtime host and
//! in real Envoy 1.40, one test per file: each backend must meet the
//! expectations, and both must observe the same outcomes.
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

fn main() {
    let args = Arguments::from_args();
    let scenarios = Scenario::all().unwrap();
    assert!(!scenarios.is_empty(), "no scenarios found");
    let trials = scenarios
        .into_iter()
        .map(|s| Trial::test(s.name.clone(), move || run(&s)))
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
