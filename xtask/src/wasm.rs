//! `cargo xtask build`: the wasm filters, then binaryen's `wasm-opt` on
//! each (docs/size.md).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use anyhow::{Context as _, bail};
use meshwasm_harness::envoy::wasm_path;

use crate::util::{banner, cargo, output, root, run, show};

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
    let paths: Vec<PathBuf> = FILTERS.iter().map(|(_, name)| wasm_path(name)).collect();
    optimize(&paths)?;
    for path in &paths {
        let size = std::fs::metadata(path)
            .with_context(|| format!("{} was not built", path.display()))?
            .len();
        println!("{:>9} bytes  {}", size, path.display());
    }
    Ok(paths)
}

/// binaryen, pinned: the npm package's tools are binaryen compiled to wasm
/// and run by Node.js, so installing them needs no root, no C++ build and
/// no download outside the npm registry.
const BINARYEN: (&str, &str) = ("binaryen", "132.0.0");

/// `$MESHWASM_WASM_OPT`: a `wasm-opt` to use instead of the pinned one, or
/// `none` to skip the step.
const WASM_OPT_ENV: &str = "MESHWASM_WASM_OPT";

/// Runs `wasm-opt -O3` on every module cargo (re)built since the last run,
/// in place: speed-first, and it still removes a tenth of the bytes
/// (docs/size.md). A module already optimised is recognised by its stamp
/// (`<module>.wasm-opt`: size and mtime after optimisation); cargo
/// rebuilding it changes both.
fn optimize(paths: &[PathBuf]) -> anyhow::Result<()> {
    let mut todo = Vec::new();
    for path in paths {
        let now = stamp(path).with_context(|| format!("{} was not built", path.display()))?;
        if std::fs::read_to_string(stamp_path(path)).ok().as_deref() != Some(now.as_str()) {
            todo.push(path.as_path());
        }
    }
    if todo.is_empty() {
        return Ok(());
    }
    let Some(wasm_opt) = wasm_opt()? else {
        return Ok(());
    };
    let flags = feature_flags()?;
    banner(&format!(
        "wasm-opt -O3 ({} of {} modules are new)",
        todo.len(),
        paths.len()
    ));
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    for chunk in todo.chunks(jobs) {
        let children: Vec<(&Path, PathBuf, Child, String)> = chunk
            .iter()
            .map(|path| {
                let tmp = path.with_extension("wasm-opt.tmp");
                let mut cmd = Command::new(&wasm_opt);
                cmd.arg("-O3").args(&flags).arg(path).arg("-o").arg(&tmp);
                let shown = show(&cmd);
                let child = cmd.spawn().with_context(|| format!("running {shown}"))?;
                Ok((*path, tmp, child, shown))
            })
            .collect::<anyhow::Result<_>>()?;
        let mut done = Vec::new();
        for (path, tmp, mut child, shown) in children {
            // Every child is waited for before a failure is reported.
            done.push((path, tmp, child.wait(), shown));
        }
        for (path, tmp, status, shown) in done {
            let status = status.with_context(|| format!("running {shown}"))?;
            if !status.success() {
                bail!("`{shown}` failed ({status})");
            }
            let before = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            // Written through cargo's hard link into deps/, which cargo links
            // here again on every build, even when nothing changed.
            std::fs::copy(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
            std::fs::remove_file(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
            std::fs::write(stamp_path(path), stamp(path)?)
                .with_context(|| format!("writing {}", stamp_path(path).display()))?;
            let after = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            eprintln!(
                "wasm-opt: {before:>9} → {after:>9} bytes  {}",
                path.display()
            );
        }
    }
    Ok(())
}

fn stamp_path(path: &Path) -> PathBuf {
    path.with_extension("wasm-opt")
}

/// Size and modification time (ns) of a file.
fn stamp(path: &Path) -> anyhow::Result<String> {
    let meta = std::fs::metadata(path)?;
    let mtime = meta
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    Ok(format!("{} {mtime}", meta.len()))
}

/// The `wasm-opt` to run: `$MESHWASM_WASM_OPT`, else the pinned npm
/// package under `.tools/binaryen`, installed on first use. `None` (with
/// a warning) when skipped or when there is no npm to install it with.
fn wasm_opt() -> anyhow::Result<Option<PathBuf>> {
    if let Some(bin) = std::env::var_os(WASM_OPT_ENV) {
        return Ok((bin != "none").then(|| PathBuf::from(bin)));
    }
    let (package, version) = BINARYEN;
    let dir = root().join(".tools").join(package);
    let module = dir.join("node_modules").join(package);
    let bin = module.join("bin").join("wasm-opt");
    let installed = std::fs::read_to_string(module.join("package.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .is_some_and(|v| v["version"] == version);
    if installed && bin.exists() {
        return Ok(Some(bin));
    }
    if Command::new("npm").arg("--version").output().is_err() {
        eprintln!(
            "warning: no npm to install {package}@{version}: the modules are not run through \
             wasm-opt (install Node.js and npm, or set {WASM_OPT_ENV})"
        );
        return Ok(None);
    }
    banner(&format!(
        "npm install {package}@{version} into {}",
        dir.display()
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    run(Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&dir)
        .arg(format!("{package}@{version}")))?;
    Ok(Some(bin))
}

/// `--enable-*` for the wasm features rustc's `wasm32-wasip1` code uses
/// (the stripped modules carry no `target_features` section to read).
fn feature_flags() -> anyhow::Result<Vec<String>> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let cfg = output(Command::new(rustc).args(["--print", "cfg", "--target", TARGET]))?;
    let mut flags = Vec::new();
    for feature in cfg
        .lines()
        .filter_map(|l| l.strip_prefix("target_feature="))
    {
        let name = match feature.trim_matches('"') {
            "crt-static" => continue,
            "nontrapping-fptoint" => "nontrapping-float-to-int",
            "simd128" => "simd",
            "atomics" => "threads",
            other => other,
        };
        flags.push(format!("--enable-{name}"));
    }
    Ok(flags)
}
