//! Debian packages the shipping tests need — `docker-registry` (the CNCF
//! distribution registry) and `skopeo` — installed with `apt-get` when
//! their program is missing, as the rig installs Envoy: idempotent (a
//! program found on `PATH` or in `/usr/bin`, `/usr/sbin` is used as it
//! is), and safe under concurrent callers (a file lock in the target
//! directory around `apt-get`, which also waits for dpkg's own lock).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context as _, bail};

use super::target_dir;

/// The path of `program`, installing Debian package `package` first when
/// it is missing (needs root, as `apt-get install` does).
pub fn debian_program(program: &str, package: &str) -> anyhow::Result<PathBuf> {
    // One install at a time in this process; the file lock covers others.
    static LOCAL: Mutex<()> = Mutex::new(());
    if let Some(path) = find(program) {
        return Ok(path);
    }
    let _local = LOCAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = target_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let lock_path = dir.join("meshwasm-apt-install.lock");
    let lock = std::fs::File::create(&lock_path)
        .with_context(|| format!("creating {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    if let Some(path) = find(program) {
        return Ok(path);
    }
    eprintln!("meshwasm: installing the Debian package {package} (for {program})");
    if install(package).is_err() {
        // A fresh machine may have no package lists yet.
        apt(&["update", "-qq"])?;
        install(package)?;
    }
    find(program).with_context(|| format!("{package} is installed but {program} is not found"))
}

fn install(package: &str) -> anyhow::Result<()> {
    apt(&["install", "-y", "-qq", "--no-install-recommends", package])
}

fn apt(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("apt-get")
        .args(["-o", "DPkg::Lock::Timeout=300"])
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get (installing Debian packages needs apt-get and root)")?;
    if !status.success() {
        bail!("apt-get {} failed: {status}", args.join(" "));
    }
    Ok(())
}

fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
