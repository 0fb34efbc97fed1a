//! `cargo xtask test` step `istio-config`: the two corpora of Istio
//! configurations in `../shared/conformance/` run through `xtask config`
//! (the same core validation the filters do on `on_configure`), read from
//! where they are (never copied in). Skipped, saying so, when `../shared`
//! is not next to the repository.
//!
//! - `istio-validation/run.py`: Istio's own validation tests
//!   (pkg/config/validation/*_test.go), one YAML per case with Istio's
//!   verdict. A case passes when meshwasm's verdict is Istio's (`agree`;
//!   `agree*`: both refuse, meshwasm for its own reason).
//! - `istio-docs/run.py`: every VirtualService/DestinationRule of Istio's
//!   documentation and samples. A case passes when a configuration the
//!   docs present as valid is accepted (`ok`) and an invalid one refused
//!   (`agree`); security cases are recorded by the runner, not classed (`-`).
//!
//! Every other case must be in [`super::istio_allow`] with its reason; an
//! allowlisted case that agrees now fails the step too, so the list only
//! shrinks. The runners spawn one `xtask config` per case of the already
//! built binary (this one): both suites take a few seconds.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, bail};

use super::istio_allow::{DOCS, Deliberate, VALIDATION};
use crate::util::{banner, root};

/// One corpus: its directory under `../shared/conformance`, the classes
/// that mean "same verdict as Istio" and the deliberate differences.
struct Suite {
    dir: &'static str,
    agreeing: &'static [&'static str],
    allowed: &'static [Deliberate],
}

const SUITES: &[Suite] = &[
    Suite {
        dir: "istio-validation",
        agreeing: &["agree", "agree*"],
        allowed: VALIDATION,
    },
    Suite {
        dir: "istio-docs",
        agreeing: &["ok", "agree", "-"],
        allowed: DOCS,
    },
];

/// Runs both suites; fails on any disagreement not in the allowlist and on
/// any allowlist entry that no longer differs.
pub fn run() -> anyhow::Result<()> {
    let Some(dir) = super::suites() else {
        eprintln!(
            "istio-config: ../shared/conformance is not present next to the repository; skipped"
        );
        return Ok(());
    };
    #[allow(clippy::disallowed_methods)] // reason: xtask reports how long the step takes
    let started = Instant::now();
    let root = root();
    let exe = std::env::current_exe().context("locating the xtask binary")?;
    let py = python()?;
    let out_dir = root.join("target").join("conformance");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut problems = Vec::new();
    for suite in SUITES {
        let tsv = out_dir.join(format!("{}.tsv", suite.dir));
        let runner = dir.join(suite.dir).join("run.py");
        let out = Command::new(&py)
            .arg(&runner)
            .arg("--repo")
            .arg(&root)
            .arg("--xtask-bin")
            .arg(&exe)
            .arg("--out")
            .arg(&tsv)
            .current_dir(&root)
            .output()
            .with_context(|| format!("running {}", runner.display()))?;
        if !out.status.success() {
            bail!(
                "{} failed ({}):\n{}",
                runner.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        for line in stdout.lines().filter(|l| summary_line(l)) {
            eprintln!("{}: {line}", suite.dir);
        }
        let rows = read_tsv(&tsv)?;
        problems.extend(check(suite, &rows));
        eprintln!("  full results: {}", tsv.display());
    }
    let took = started.elapsed().as_secs_f64();
    if !problems.is_empty() {
        bail!(
            "{} Istio conformance problem(s) ({took:.1} s):\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
    }
    eprintln!(
        "istio-config: every case agrees with Istio or is a listed deliberate difference ({took:.1} s)"
    );
    Ok(())
}

/// The runners' count lines.
fn summary_line(line: &str) -> bool {
    line.starts_with("all: ")
        || line.starts_with("VirtualService/DestinationRule cases:")
        || line.starts_with("accepted without a warning")
}

/// A results row: case id, class, meshwasm's error line.
struct Row {
    id: String,
    class: String,
    error: String,
}

fn read_tsv(path: &Path) -> anyhow::Result<Vec<Row>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .with_context(|| format!("{}: no column {name}", path.display()))
    };
    let (id, class, error) = (col("id")?, col("class")?, col("mesh_error")?);
    Ok(lines
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let get = |i: usize| f.get(i).copied().unwrap_or_default().to_owned();
            Row {
                id: get(id),
                class: get(class),
                error: get(error),
            }
        })
        .collect())
}

/// The problems of one suite's results; prints the deliberate differences
/// as one count per reason.
fn check(suite: &Suite, rows: &[Row]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut used = vec![0usize; suite.allowed.len()];
    for row in rows {
        let agrees = suite.agreeing.contains(&row.class.as_str());
        let listed = suite
            .allowed
            .iter()
            .position(|d| d.cases.contains(&row.id.as_str()));
        match (agrees, listed) {
            (true, None) => {}
            (true, Some(_)) => problems.push(format!(
                "{}: {} agrees with Istio now ({}); remove it from xtask/src/conformance/istio_allow.rs",
                suite.dir, row.id, row.class
            )),
            (false, Some(k)) => {
                if let Some(n) = used.get_mut(k) {
                    *n += 1;
                }
            }
            (false, None) => problems.push(format!(
                "{}: {} differs from Istio (class {}): {}",
                suite.dir,
                row.id,
                row.class,
                if row.error.is_empty() {
                    "accepted"
                } else {
                    row.error.as_str()
                }
            )),
        }
    }
    for d in suite.allowed {
        for case in d.cases {
            if !rows.iter().any(|r| r.id == *case) {
                problems.push(format!(
                    "{}: allowlisted case {case} is not in the corpus",
                    suite.dir
                ));
            }
        }
    }
    for (d, n) in suite.allowed.iter().zip(used) {
        if n > 0 {
            eprintln!("  deliberate difference ×{n}: {}", d.reason);
        }
    }
    problems
}

/// A Python 3 with PyYAML (the docs runner reads the YAML with it): the
/// one on `PATH`, else the project's `.venv`, given PyYAML if it lacks it.
fn python() -> anyhow::Result<PathBuf> {
    let has = |py: &Path| {
        Command::new(py)
            .args(["-c", "import yaml"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let system = PathBuf::from("python3");
    if has(&system) {
        return Ok(system);
    }
    let venv =
        std::env::var_os("MESHWASM_VENV").map_or_else(|| root().join(".venv"), PathBuf::from);
    let py = venv.join("bin").join("python");
    if !has(&py) {
        banner("pip install pyyaml (into .venv, for the Istio docs runner)");
        let status = Command::new(venv.join("bin").join("pip"))
            .args(["install", "--quiet", "pyyaml"])
            .status()
            .context("running pip (is .venv there? `cargo xtask test` makes it in step envoy)")?;
        if !status.success() || !has(&py) {
            bail!(
                "no Python 3 with PyYAML: tried python3 and {}",
                py.display()
            );
        }
    }
    Ok(py)
}
