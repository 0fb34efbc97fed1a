//! `cargo xtask package`: every shipped filter built in release, as
//! `target/dist/meshwasm_<filter>.wasm` with `target/dist/SHA256SUMS`, and as
//! an OCI image layout `target/oci/<filter>/` in the format Istio's agent
//! pulls ([`image`]); `--push <registry>/<repo>` pushes each image as
//! `<registry>/<repo>/<filter>` tagged with the crate version and the git
//! revision ([`push`]).
//!
//! Reproducible: the images carry the commit's time, never the clock's, so
//! building twice from the same commit gives the same digests.

pub mod image;
mod push;
pub mod wasmplugin;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;
use meshwasm_harness::envoy::{target_dir, wasm_path};

use crate::util::{Flags, output, root};

pub use image::Provenance;

/// The filters a user deploys, in chain order (the test-only `noop` and
/// probes are built but not shipped).
pub const SHIPPED: &[&str] = &["authn", "rbac", "fault", "route", "mesh"];

const USAGE: &str = "usage: cargo xtask package [--no-build] [--out DIR] \
                     [--push REGISTRY/REPO [--plain-http]]";

/// Runs the command.
pub fn package(args: &[String]) -> anyhow::Result<()> {
    let mut flags = Flags::new(args);
    let no_build = flags.switch("--no-build");
    let plain_http = flags.switch("--plain-http");
    let out = flags.value("--out")?.map(PathBuf::from);
    let repo = flags.value("--push")?;
    if !flags.positional()?.is_empty() {
        anyhow::bail!("{USAGE}");
    }
    if !no_build {
        crate::wasm::build()?;
    }
    let out = out.unwrap_or_else(target_dir);
    let at = provenance();
    let tags = tags(&at);
    let dist = out.join("dist");
    std::fs::create_dir_all(&dist).with_context(|| format!("creating {}", dist.display()))?;
    let mut sums = String::new();
    let mut images = Vec::new();
    for filter in SHIPPED {
        let img = built_image(filter, &at)?;
        let file = format!("meshwasm_{filter}.wasm");
        write(&dist.join(&file), &img.wasm.bytes)?;
        sums.push_str(&format!("{}  {file}\n", img.wasm.hex()));
        let layout = out.join("oci").join(filter);
        image::write_layout(&layout, &img, &tags)?;
        println!(
            "{filter:<6} module sha256 {}  image {}  {}",
            img.wasm.hex(),
            img.manifest.digest,
            layout.display()
        );
        images.push((filter.to_string(), img));
    }
    write(&dist.join("SHA256SUMS"), sums.as_bytes())?;
    println!(
        "tags {}; modules and SHA256SUMS in {}",
        tags.join(", "),
        dist.display()
    );
    if let Some(repo) = repo {
        push::push_all(&repo, &images, &tags, plain_http)?;
    }
    Ok(())
}

/// Installs (when missing) the Debian packages the shipping tests use:
/// `docker-registry` and `skopeo` (harness/tests/package_registry.rs).
pub fn registry_tools() -> anyhow::Result<()> {
    use meshwasm_harness::envoy::debian_program;
    for (program, package) in [("docker-registry", "docker-registry"), ("skopeo", "skopeo")] {
        let path = debian_program(program, package)?;
        eprintln!("{program}: {}", path.display());
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// The image of `filter` from its built `.wasm`.
pub fn built_image(filter: &str, at: &Provenance) -> anyhow::Result<image::Image> {
    let path = wasm_path(filter);
    let wasm = std::fs::read(&path)
        .with_context(|| format!("reading {} (build it: cargo xtask build)", path.display()))?;
    image::image(filter, wasm, at)
}

/// The crate version, the commit and its time (UTC), from `git` in the
/// repository root; `MESHWASM_REVISION` and `SOURCE_DATE_EPOCH` (seconds,
/// the reproducible-builds convention) override them, e.g. to stamp a
/// build from a source tarball; outside a checkout without them,
/// `unknown` at the epoch.
pub fn provenance() -> Provenance {
    let git = |args: &[&str]| -> Option<String> {
        let text = output(
            Command::new("git")
                .args(args)
                .current_dir(root())
                .env("TZ", "UTC"),
        )
        .ok()?;
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_owned())
    };
    let revision = std::env::var("MESHWASM_REVISION")
        .ok()
        .or_else(|| git(&["rev-parse", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .or_else(|| git(&["log", "-1", "--format=%ct"])?.parse().ok())
        .unwrap_or(0);
    Provenance {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        revision,
        created: rfc3339(epoch),
    }
}

/// `seconds` since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (the civil
/// calendar from days, after Howard Hinnant's `civil_from_days`).
fn rfc3339(seconds: u64) -> String {
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The tags of every image: the version, and the revision's first 12
/// characters (with `-dirty` when tracked files differ from the commit and
/// the revision is git's).
pub fn tags(at: &Provenance) -> Vec<String> {
    let short: String = at.revision.chars().take(12).collect();
    let dirty = std::env::var_os("MESHWASM_REVISION").is_none()
        && output(
            Command::new("git")
                .args(["status", "--porcelain", "--untracked-files=no"])
                .current_dir(root()),
        )
        .is_ok_and(|s| !s.trim().is_empty());
    let revision = if dirty {
        format!("{short}-dirty")
    } else {
        short
    };
    vec![at.version.clone(), revision]
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn epoch_seconds_are_written_as_utc_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_798_761_599), "2026-12-31T23:59:59Z");
    }
}
