//! `cargo xtask package --push` against a real OCI registry on loopback:
//! Debian's `docker-registry` (the CNCF distribution registry) on a free
//! port of 127.0.0.1 with its storage in a temporary directory, and
//! Debian's `skopeo` pulling back — both installed when missing
//! (`meshwasm_harness::envoy::debian_program`). Every shipped filter's
//! pulled image has the manifest `cargo xtask package` wrote (same bytes,
//! same digest, under both tags), the media types Istio's agent reads
//! (istio/istio `pkg/wasm/imagefetcher.go`, `extractOCIArtifactImage`: two
//! layers, one `application/vnd.module.wasm.content.layer.v1+wasm`), and
//! that layer is the built `.wasm` byte for byte. Packaging twice gives the
//! same bytes, and `cargo xtask config --wasmplugin --image` writes the
//! pushed digests as `sha256`. The registry is stopped on every exit.
//!
//! Needs the release filters (`cargo xtask build`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
// reason: a real registry and real processes run in real time
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use meshwasm_harness::client::Client;
use meshwasm_harness::envoy::{debian_program, free_port, target_dir, wasm_path, workspace_root};
use serde_json::Value;

const SHIPPED: [&str; 5] = ["authn", "rbac", "fault", "route", "mesh"];
const WASM_LAYER: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
const WASM_CONFIG: &str = "application/vnd.module.wasm.config.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A `docker-registry serve` child; dropping it kills it and removes its
/// directory.
struct Registry {
    child: Child,
    dir: PathBuf,
    addr: String,
}

impl Registry {
    fn start() -> Registry {
        let bin = debian_program("docker-registry", "docker-registry").unwrap();
        let dir = target_dir()
            .join("tmp")
            .join(format!("registry-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("storage")).unwrap();
        for _attempt in 0..3 {
            let addr = format!("127.0.0.1:{}", free_port().unwrap());
            let config = dir.join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    \
                     rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                    dir.join("storage").display()
                ),
            )
            .unwrap();
            let log = std::fs::File::create(dir.join("registry.log")).unwrap();
            let mut child = Command::new(&bin)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            if ready(&mut child, &addr) {
                return Registry {
                    child,
                    dir: dir.clone(),
                    addr,
                };
            }
            // Port taken meanwhile, or slow: the next attempt gets a new port.
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "docker-registry did not start; its log:\n{}",
            std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
        );
    }
}

/// Whether the registry answers `/v2/` within 20 s (false when it exited).
fn ready(child: &mut Child, addr: &str) -> bool {
    let client = Client::new().unwrap().with_timeout(Duration::from_secs(1));
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if client
            .get(&format!("http://{addr}/v2/"), &[])
            .is_ok_and(|r| r.status == 200)
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("registry files kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn ok(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn git(args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(workspace_root())
        .output()
        .unwrap();
    String::from_utf8(ok(out, "git").stdout)
        .unwrap()
        .trim()
        .to_owned()
}

/// Runs `cargo xtask ARGS`, with the commit and its time read once, so a
/// commit made meanwhile does not change the images between two calls.
fn xtask(args: &[&str]) -> Output {
    use std::sync::OnceLock;
    static COMMIT: OnceLock<(String, String)> = OnceLock::new();
    let (revision, epoch) = COMMIT.get_or_init(|| {
        (
            git(&["rev-parse", "HEAD"]),
            git(&["log", "-1", "--format=%ct"]),
        )
    });
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .arg("xtask")
        .args(args)
        .env("MESHWASM_REVISION", revision)
        .env("SOURCE_DATE_EPOCH", epoch)
        .current_dir(workspace_root())
        .output()
        .unwrap();
    ok(out, &format!("cargo xtask {}", args.join(" ")))
}

/// Every file below `dir`, by relative path.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.insert(path.strip_prefix(dir).unwrap().to_path_buf(), bytes);
            }
        }
    }
    out
}

/// The layout's manifest (digest, bytes) under `tag`.
fn manifest_of(layout: &Path, tag: &str) -> (String, Vec<u8>) {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("{}: no tag {tag}: {index}", layout.display()));
    let digest = entry["digest"].as_str().unwrap().to_owned();
    (digest.clone(), blob(layout, &digest))
}

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").unwrap();
    std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap()
}

#[test]
fn pushed_images_pull_back_as_built_with_the_media_types_istio_reads() {
    for f in SHIPPED {
        assert!(
            wasm_path(f).exists(),
            "{} is missing: run cargo xtask build",
            wasm_path(f).display()
        );
    }
    let skopeo = debian_program("skopeo", "skopeo").unwrap();
    let registry = Registry::start();
    let work = registry.dir.join("work");
    let (pkg1, pkg2) = (work.join("pkg1"), work.join("pkg2"));
    let repo = format!("{}/meshwasm", registry.addr);
    let started = Instant::now();
    xtask(&[
        "package",
        "--no-build",
        "--out",
        pkg1.to_str().unwrap(),
        "--push",
        &repo,
    ]);
    eprintln!("package --push: {:?}", started.elapsed());
    xtask(&["package", "--no-build", "--out", pkg2.to_str().unwrap()]);
    assert!(
        files(&pkg1) == files(&pkg2),
        "packaging twice gave different files"
    );
    let index: Value =
        serde_json::from_slice(&std::fs::read(pkg1.join("oci/route/index.json")).unwrap()).unwrap();
    let tags: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(tags.len(), 2, "{tags:?}");
    let mut digests = BTreeMap::new();
    std::fs::create_dir_all(work.join("pulled")).unwrap();
    for f in SHIPPED {
        let layout = pkg1.join("oci").join(f);
        let (digest, manifest) = manifest_of(&layout, &tags[0]);
        let pulled = work.join("pulled").join(f);
        let src = format!("docker://{repo}/{f}:{}", tags[0]);
        let dest = format!("oci:{}:{}", pulled.display(), tags[0]);
        ok(
            Command::new(&skopeo)
                .args([
                    "--insecure-policy",
                    "copy",
                    "--src-tls-verify=false",
                    &src,
                    &dest,
                ])
                .output()
                .unwrap(),
            "skopeo copy",
        );
        let (pulled_digest, pulled_manifest) = manifest_of(&pulled, &tags[0]);
        assert_eq!(pulled_digest, digest, "{f}");
        assert!(
            pulled_manifest == manifest,
            "{f}: the pulled manifest differs"
        );
        let m: Value = serde_json::from_slice(&pulled_manifest).unwrap();
        assert_eq!(m["mediaType"], OCI_MANIFEST, "{f}");
        assert_eq!(m["config"]["mediaType"], WASM_CONFIG, "{f}");
        let layers = m["layers"].as_array().unwrap();
        assert_eq!(
            layers.len(),
            2,
            "{f}: Istio's OCI variant has exactly two layers"
        );
        let wasm_layer = layers
            .iter()
            .find(|l| l["mediaType"] == WASM_LAYER)
            .unwrap();
        let wasm = blob(&pulled, wasm_layer["digest"].as_str().unwrap());
        assert!(
            wasm == std::fs::read(wasm_path(f)).unwrap(),
            "{f}: the pulled layer is not the built .wasm"
        );
        for tag in &tags {
            let raw = ok(
                Command::new(&skopeo)
                    .args(["inspect", "--raw", "--tls-verify=false"])
                    .arg(format!("docker://{repo}/{f}:{tag}"))
                    .output()
                    .unwrap(),
                "skopeo inspect",
            );
            assert!(
                raw.stdout == manifest,
                "{f}:{tag}: the registry serves another manifest"
            );
        }
        digests.insert(f, digest);
    }
    // The WasmPlugins name what was pushed: url and sha256.
    let out = xtask(&[
        "config",
        "--wasmplugin",
        "chain,mesh",
        "--image",
        &repo,
        "--label",
        "app=product-service",
        "testdata/wasmplugin/mesh.yaml",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    let mut seen = 0;
    for doc in serde_norway::Deserializer::from_str(&text) {
        let m: Value = serde::Deserialize::deserialize(doc).unwrap();
        let name = m["metadata"]["name"].as_str().unwrap();
        let f = name.strip_prefix("meshwasm-").unwrap();
        assert_eq!(m["spec"]["url"], format!("oci://{repo}/{f}:{}", tags[0]));
        let digest = digests.get(f).unwrap();
        assert_eq!(
            Some(m["spec"]["sha256"].as_str().unwrap()),
            digest.strip_prefix("sha256:"),
            "{f}"
        );
        seen += 1;
    }
    assert_eq!(seen, 5);
}
