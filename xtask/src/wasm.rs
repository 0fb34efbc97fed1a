//! `cargo xtask build`: the wasm filters.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Context as _;
use meshwasm_harness::envoy::wasm_path;

use crate::util::{banner, cargo, output, run};

/// The wasm target of every filter.
pub const TARGET: &str = "wasm32-wasip1";

/// Filter crates built for Envoy: (package, artifact name).
pub const FILTERS: &[(&str, &str)] = &[
    ("meshwasm-route", "route"),
    ("meshwasm-fault", "fault"),
    ("meshwasm-authn", "authn"),
    ("meshwasm-rbac", "rbac"),
    ("meshwasm-mesh", "mesh"),
    ("meshwasm-noop", "noop"),
    ("meshwasm-probe", "probe"),
    ("meshwasm-probe-grpc", "probe_grpc"),
    ("meshwasm-probe-tcp", "probe_tcp"),
];

/// Installs the wasm target with rustup when it is missing.
pub fn ensure_target() -> anyhow::Result<()> {
    let installed =
        output(Command::new("rustup").args(["target", "list", "--installed"])).unwrap_or_default();
    if installed.lines().any(|l| l.trim() == TARGET) {
        return Ok(());
    }
    banner(&format!("rustup target add {TARGET}"));
    run(Command::new("rustup").args(["target", "add", TARGET]))
}

/// Builds every filter in release; returns the `.wasm` paths.
pub fn build() -> anyhow::Result<Vec<PathBuf>> {
    ensure_target()?;
    banner("build the wasm filters");
    let mut cmd = cargo();
    cmd.args(["build", "--release", "--target", TARGET]);
    for (package, _) in FILTERS {
        cmd.args(["-p", package]);
    }
    run(&mut cmd)?;
    let mut paths = Vec::new();
    for (_, name) in FILTERS {
        let path = wasm_path(name);
        let size = std::fs::metadata(&path)
            .with_context(|| format!("{} was not built", path.display()))?
            .len();
        println!("{:>9} bytes  {}", size, path.display());
        paths.push(path);
    }
    Ok(paths)
}
