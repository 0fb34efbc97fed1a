//! `cargo xtask test`: every check CI runs, in order, stopping at the first
//! failure.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, bail};

use crate::util::{Flags, banner, cargo, output, root, run};
use crate::wasm::{self, TARGET};

/// Most lines a filter crate (other than `filters/glue`) may have in `src/`.
const FILTER_CRATE_LINES: usize = 150;
/// Most lines any `.rs` file may have.
const FILE_LINES: usize = 600;

/// Runs the whole suite (`--skip a,b` leaves out steps by key);
/// `--envoy <version>` runs only the Envoy suites against that release.
pub fn test(args: &[String]) -> anyhow::Result<()> {
    let mut flags = Flags::new(args);
    let skip: Vec<String> = flags
        .values("--skip")?
        .iter()
        .flat_map(|s| s.split(',').map(|k| k.trim().to_owned()))
        .collect();
    let envoy = flags.value("--envoy")?;
    flags.positional()?;
    if let Some(version) = envoy {
        // Only the Envoy suites, against another release (compat.rs).
        return crate::compat::envoy_suites(&version, &skip);
    }
    let unknown: Vec<&String> = skip
        .iter()
        .filter(|k| !STEPS.contains(&k.as_str()))
        .collect();
    if !unknown.is_empty() {
        bail!(
            "--skip: unknown step(s) {unknown:?}; steps: {}",
            STEPS.join(",")
        );
    }
    #[allow(clippy::disallowed_methods)] // reason: xtask reports wall-clock time of the suite
    let started = Instant::now();
    let result = steps(&skip);
    let took = started.elapsed().as_secs_f64();
    match &result {
        Ok(()) => eprintln!("\nxtask test: all steps passed in {took:.0} s"),
        Err(_) => eprintln!("\nxtask test: FAILED after {took:.0} s"),
    }
    result
}

/// Step keys, in order.
const STEPS: &[&str] = &[
    "fmt",
    "clippy",
    "clippy-wasm",
    "layering",
    "sizes",
    "core-wasm",
    "core-tests",
    "unit-tests",
    "istio-config",
    "build",
    "envoy",
    "harness",
    "conformance",
    "envoy-oldest",
];

fn steps(skip: &[String]) -> anyhow::Result<()> {
    let step = |key: &str, name: &str, f: &dyn Fn() -> anyhow::Result<()>| -> anyhow::Result<()> {
        if skip.iter().any(|k| k == key) {
            banner(&format!("{name} [{key}]: skipped"));
            return Ok(());
        }
        banner(&format!("{name} [{key}]"));
        f().with_context(|| format!("step `{name}` failed"))
    };
    step("fmt", "cargo fmt --check", &|| {
        run(cargo().args(["fmt", "--all", "--", "--check"]))
    })?;
    step("clippy", "clippy (native: default members)", &|| {
        run(cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]))
    })?;
    step(
        "clippy-wasm",
        "clippy (wasm32-wasip1: filters, glue, core, probe)",
        &|| {
            wasm::ensure_target()?;
            let mut cmd = cargo();
            cmd.args(["clippy", "--target", TARGET]);
            for (package, _) in wasm::FILTERS {
                cmd.args(["-p", package]);
            }
            run(cmd.args([
                "-p",
                "meshwasm-glue",
                "-p",
                "meshwasm",
                "--",
                "-D",
                "warnings",
            ]))
        },
    )?;
    step(
        "layering",
        "the core has no proxy-wasm dependency",
        &core_is_host_free,
    )?;
    step("sizes", "file and filter-crate sizes", &sizes)?;
    step("core-wasm", "the core builds for wasm32-wasip1", &|| {
        wasm::ensure_target()?;
        run(cargo().args(["build", "--target", TARGET, "-p", "meshwasm"]))
    })?;
    step("core-tests", "core unit tests", &|| {
        run(cargo().args(["test", "-p", "meshwasm"]))
    })?;
    step("unit-tests", "unit tests of the glue and xtask", &|| {
        run(cargo().args(["test", "-p", "meshwasm-glue", "-p", "xtask"]))
    })?;
    step(
        "istio-config",
        "Istio's validation tests and documentation configs vs `xtask config` (../shared)",
        &crate::conformance::istio::run,
    )?;
    step("build", "build the wasm filters", &|| {
        wasm::build().map(|_| ())
    })?;
    step("envoy", "install Envoy (and the registry tools)", &|| {
        let bin = meshwasm_harness::envoy::envoy_binary()?;
        eprintln!("envoy: {}", bin.display());
        crate::package::registry_tools()
    })?;
    step(
        "harness",
        "harness and Envoy tests (≤2 test threads)",
        &|| run(cargo().args(["test", "-p", "meshwasm-harness", "--", "--test-threads=2"])),
    )?;
    step(
        "conformance",
        "conformance suites of ../shared (JWT, AuthorizationPolicy vs Envoy 1.40)",
        &crate::conformance::run,
    )?;
    step(
        "envoy-oldest",
        "the Envoy suites against the oldest release, as testdata/envoy-compat.yaml says",
        // Its own process: this one already runs the pinned Envoy. Through
        // cargo, as this binary may have been rebuilt (replaced) meanwhile.
        &|| {
            run(cargo()
                .args(["xtask", "test", "--envoy", crate::compat::OLDEST])
                .args(["--skip", "build"])
                .current_dir(root()))
        },
    )
}

fn core_is_host_free() -> anyhow::Result<()> {
    let tree = output(cargo().args(["tree", "-p", "meshwasm", "-e", "normal"]))?;
    if tree.contains("proxy-wasm") {
        bail!("`cargo tree -p meshwasm -e normal` mentions proxy-wasm:\n{tree}");
    }
    eprintln!("ok: meshwasm does not depend on proxy-wasm");
    Ok(())
}

fn sizes() -> anyhow::Result<()> {
    let root = root();
    let mut problems = Vec::new();
    for dir in ["src", "filters", "harness", "xtask"] {
        for file in rust_files(&root.join(dir))? {
            let lines = count_lines(&file)?;
            if lines > FILE_LINES {
                problems.push(format!(
                    "{}: {lines} lines > {FILE_LINES}",
                    rel(&root, &file)
                ));
            }
        }
    }
    let filters = std::fs::read_dir(root.join("filters")).context("reading filters/")?;
    for entry in filters {
        let dir = entry?.path();
        if !dir.is_dir() || dir.file_name().is_some_and(|n| n == "glue") {
            continue;
        }
        let mut total = 0;
        for file in rust_files(&dir.join("src"))? {
            total += count_lines(&file)?;
        }
        if total > FILTER_CRATE_LINES {
            problems.push(format!(
                "{}/src: {total} lines > {FILTER_CRATE_LINES} (move logic to the core or filters/glue)",
                rel(&root, &dir)
            ));
        }
        eprintln!("{}/src: {total} lines", rel(&root, &dir));
    }
    if !problems.is_empty() {
        bail!("size limits exceeded:\n  {}", problems.join("\n  "));
    }
    eprintln!("ok: every .rs ≤ {FILE_LINES} lines, every filter crate ≤ {FILTER_CRATE_LINES}");
    Ok(())
}

/// `.rs` files below `dir`, skipping `target` directories.
fn rust_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "target") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn count_lines(file: &Path) -> anyhow::Result<usize> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    Ok(text.lines().count())
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}
