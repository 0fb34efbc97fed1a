//! `cargo xtask test` step `conformance`: the suites of `../shared/conformance/`
//! run from where they are (never copied in). Skipped, saying so, when
//! `../shared` is not next to the repository.
//!
//! - `jwt/run_meshwasm.py`: 350 RequestAuthentication cases whose answers
//!   were recorded from Envoy 1.40's native jwt_authn, replayed through
//!   `meshwasm_authn.wasm` in Envoy. Every case must pass except the ones
//!   listed in [`JWT_DIFFERENCES`], where SPEC.md says meshwasm answers
//!   stricter than Envoy and the corpus has no `meshwasm_expected` yet.
//! - `authz/run_meshwasm.py`: 89 AuthorizationPolicy cases (728 requests)
//!   recorded from Envoy 1.40's native RBAC as Istio configures it,
//!   replayed through `meshwasm_rbac.wasm` (and `meshwasm_authn.wasm` for
//!   the JWT cases). CUSTOM and informational cases are skipped by the
//!   runner; every other request must pass except [`AUTHZ_DIFFERENCES`].
//!
//! [`istio`] is the separate, Envoy-free step `istio-config`: Istio's
//! validation tests and documentation configurations through `xtask config`.

pub mod istio;
mod istio_allow;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::util::{banner, root};

/// Cases where meshwasm deliberately differs from the recorded native
/// answer, with the rule that says so.
pub const JWT_DIFFERENCES: &[(&str, &str)] = &[
    (
        "own-truncated-signature",
        "SPEC.md §RequestAuthentication Verified 11: a non-canonical base64url signature is \
         refused as `Jwt signature is an invalid Base64url encoded` (Envoy: `Jwt verification fails`)",
    ),
    (
        "own-trailing-garbage-after-token",
        "SPEC.md Verified 11, as above: the signature section is not canonical base64url",
    ),
    (
        "jvl-x509-NoKidToken-as-jwk",
        "SPEC.md Verified 11: a padded signature (`…==`) is refused (Envoy accepts it); the corpus \
         marks own-signature-padded so but not this jwt_verify_lib vector",
    ),
];

/// AuthorizationPolicy requests where meshwasm deliberately differs.
const PATH_PARAMETERS: &str = "SPEC.md §AuthorizationPolicy Verified 9: meshwasm strips `;` path \
     parameters from each segment before matching (Envoy's ignore_path_parameters_in_path_matching), \
     so `/admin;x=y` is `/admin` to a policy; Istio's native configuration does not";

/// Request ids (`case/request`) of [`PATH_PARAMETERS`].
pub const AUTHZ_DIFFERENCES: &[&str] = &[
    "op/not-paths/admin-param",
    "norm/deny-negative/NONE/param",
    "norm/deny-negative/NONE/param-segment",
    "norm/deny-negative/BASE/param",
    "norm/deny-negative/BASE/param-segment",
    "norm/deny-negative/MERGE_SLASHES/param",
    "norm/deny-negative/MERGE_SLASHES/param-segment",
    "norm/deny-negative/DECODE_AND_MERGE_SLASHES/param",
    "norm/deny-negative/DECODE_AND_MERGE_SLASHES/param-segment",
];

/// `../shared/conformance`, if present.
fn suites() -> Option<PathBuf> {
    let dir = root().parent()?.join("shared").join("conformance");
    dir.is_dir().then_some(dir)
}

/// A Python with `cryptography` (the runners mint tokens with it): the
/// project's `.venv` (made by the Envoy install), given it if missing.
fn python(root: &Path) -> anyhow::Result<PathBuf> {
    let venv = std::env::var_os("MESHWASM_VENV").map_or_else(|| root.join(".venv"), PathBuf::from);
    let py = venv.join("bin").join("python");
    let has = |py: &Path| {
        Command::new(py)
            .args(["-c", "import cryptography"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !has(&py) {
        banner("pip install cryptography (into .venv, for the JWT conformance runner)");
        let status = Command::new(venv.join("bin").join("pip"))
            .args(["install", "--quiet", "cryptography"])
            .status()
            .context("running pip")?;
        if !status.success() || !has(&py) {
            bail!(
                "cannot install the Python package `cryptography` into {}",
                venv.display()
            );
        }
    }
    Ok(py)
}

/// Runs the suites; fails on any unexpected answer.
pub fn run() -> anyhow::Result<()> {
    let Some(dir) = suites() else {
        eprintln!(
            "conformance: ../shared/conformance is not present next to the repository; skipped"
        );
        return Ok(());
    };
    let root = root();
    let envoy = meshwasm_harness::envoy::envoy_binary()?;
    let wasm = meshwasm_harness::envoy::wasm_path("authn");
    let py = python(&root)?;
    let out = Command::new(&py)
        .arg(dir.join("jwt").join("run_meshwasm.py"))
        .arg("--project")
        .arg(&root)
        .arg("--envoy")
        .arg(&envoy)
        .arg("--wasm")
        .arg(&wasm)
        .current_dir(dir.join("jwt"))
        .output()
        .context("running jwt/run_meshwasm.py")?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let summary = text
        .lines()
        .find(|l| l.contains(" passed, ") && l.contains(" failed"))
        .with_context(|| format!("jwt/run_meshwasm.py printed no summary:\n{text}"))?;
    eprintln!("jwt conformance: {summary}");
    let mut unexpected = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("FAIL ")) {
        let id = line
            .trim_start_matches("FAIL ")
            .split(':')
            .next()
            .unwrap_or_default();
        match JWT_DIFFERENCES.iter().find(|(case, _)| *case == id) {
            Some((_, why)) => eprintln!("  deliberate difference {id}: {why}"),
            None => unexpected.push(line.to_owned()),
        }
    }
    if !unexpected.is_empty() {
        bail!(
            "{} JWT conformance case(s) failed:\n  {}",
            unexpected.len(),
            unexpected.join("\n  ")
        );
    }
    authz(&dir, &root, &py, &envoy)
}

/// The AuthorizationPolicy suite (filters already built by the `build` step).
fn authz(dir: &Path, root: &Path, py: &Path, envoy: &Path) -> anyhow::Result<()> {
    let out = Command::new(py)
        .arg(dir.join("authz").join("run_meshwasm.py"))
        .arg("--project")
        .arg(root)
        .arg("--envoy")
        .arg(envoy)
        .arg("--skip-build")
        .current_dir(dir.join("authz"))
        .output()
        .context("running authz/run_meshwasm.py")?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let summary = text
        .lines()
        .find(|l| l.contains(" passed, ") && l.contains(" failed"))
        .with_context(|| format!("authz/run_meshwasm.py printed no summary:\n{text}"))?;
    eprintln!("authz conformance: {summary}");
    let mut unexpected = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("FAILED ")) {
        let id = line
            .trim_start_matches("FAILED ")
            .split(": ")
            .next()
            .unwrap_or_default();
        if AUTHZ_DIFFERENCES.contains(&id) {
            eprintln!("  deliberate difference {id}: {PATH_PARAMETERS}");
        } else {
            unexpected.push(line.to_owned());
        }
    }
    if !unexpected.is_empty() {
        bail!(
            "{} AuthorizationPolicy conformance request(s) failed:\n  {}",
            unexpected.len(),
            unexpected.join("\n  ")
        );
    }
    Ok(())
}
