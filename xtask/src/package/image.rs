//! The OCI image of one filter and its on-disk OCI image layout.
//!
//! The image is the *oci* variant of the Wasm image specification
//! (solo-io/wasm `spec/spec.md`), the one Istio's agent reads without
//! unpacking anything: istio/istio `pkg/wasm/imagefetcher.go`
//! (`PrepareFetch`) tries the Docker and OCI *compat* variants (a
//! `plugin.wasm` in a tar.gz layer) first, then `extractOCIArtifactImage`,
//! which wants exactly two layers, one of media type
//! `application/vnd.module.wasm.content.layer.v1+wasm` whose blob is the
//! module itself. The other layer is the runtime configuration the
//! specification puts beside it (`application/vnd.module.wasm.config.v1+json`,
//! titled `runtime-config.json`), which is also the manifest's config.
//! Istio's checksum for an `oci://` URL is the digest of this manifest
//! (`pkg/wasm/cache.go`, `getOrFetch`: `dChecksum` from `PrepareFetch`).
//!
//! Nothing in an image depends on the time or the machine: the creation
//! time is the commit's, so the same commit and the same `.wasm` give the
//! same digests.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

/// Media type of the image manifest (OCI image manifest v1).
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of the layer holding the raw module.
pub const WASM_LAYER: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
/// Media type of the runtime configuration (manifest config and first layer).
pub const WASM_CONFIG: &str = "application/vnd.module.wasm.config.v1+json";
/// Media type of an OCI image layout's `index.json`.
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Where and when an image was built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// The crate version (`0.1.0`).
    pub version: String,
    /// The full commit id, or `unknown` outside a git checkout.
    pub revision: String,
    /// The commit time, RFC 3339 in UTC.
    pub created: String,
}

/// A content-addressed blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// Its media type.
    pub media_type: &'static str,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// `sha256:<hex>`.
    pub digest: String,
}

impl Blob {
    fn new(media_type: &'static str, bytes: Vec<u8>) -> Blob {
        let digest = format!("sha256:{}", sha256_hex(&bytes));
        Blob {
            media_type,
            bytes,
            digest,
        }
    }

    /// The digest's hex part.
    pub fn hex(&self) -> &str {
        self.digest.strip_prefix("sha256:").unwrap_or(&self.digest)
    }
}

/// The blobs of one filter's image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The runtime configuration.
    pub config: Blob,
    /// The module.
    pub wasm: Blob,
    /// The manifest (its digest is the image's).
    pub manifest: Blob,
}

impl Image {
    /// Every blob, the manifest last (the order a registry needs them in).
    pub fn blobs(&self) -> [&Blob; 3] {
        [&self.config, &self.wasm, &self.manifest]
    }
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor<'a> {
    media_type: &'a str,
    digest: &'a str,
    size: usize,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<&'static str, String>,
}

impl<'a> Descriptor<'a> {
    fn of(blob: &'a Blob, annotations: BTreeMap<&'static str, String>) -> Descriptor<'a> {
        Descriptor {
            media_type: blob.media_type,
            digest: &blob.digest,
            size: blob.bytes.len(),
            annotations,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest<'a> {
    schema_version: u32,
    media_type: &'static str,
    config: Descriptor<'a>,
    layers: Vec<Descriptor<'a>>,
    annotations: BTreeMap<&'static str, String>,
}

/// The runtime configuration of the specification's Envoy flavour: the
/// target runtime, the proxy-wasm ABI the filters export, their root ids.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RuntimeConfig {
    r#type: &'static str,
    abi_versions: [&'static str; 1],
    config: RootIds,
}

#[derive(Serialize)]
struct RootIds {
    root_ids: [&'static str; 1],
}

fn title(value: &str) -> BTreeMap<&'static str, String> {
    BTreeMap::from([("org.opencontainers.image.title", value.to_owned())])
}

/// The image of filter `filter` (`authn`, …) whose module is `wasm`.
pub fn image(filter: &str, wasm: Vec<u8>, at: &Provenance) -> anyhow::Result<Image> {
    let runtime = RuntimeConfig {
        r#type: "envoy_proxy",
        abi_versions: ["proxy_abi_version_0_2_1"],
        config: RootIds { root_ids: [""] },
    };
    let config = Blob::new(WASM_CONFIG, serde_json::to_vec(&runtime)?);
    let wasm = Blob::new(WASM_LAYER, wasm);
    let annotations = BTreeMap::from([
        ("org.opencontainers.image.created", at.created.clone()),
        (
            "org.opencontainers.image.description",
            format!("meshwasm {filter} filter (proxy-wasm, wasm32-wasip1)"),
        ),
        ("org.opencontainers.image.licenses", "Apache-2.0".to_owned()),
        ("org.opencontainers.image.revision", at.revision.clone()),
        (
            "org.opencontainers.image.title",
            format!("meshwasm-{filter}"),
        ),
        ("org.opencontainers.image.version", at.version.clone()),
    ]);
    let manifest = Manifest {
        schema_version: 2,
        media_type: MANIFEST,
        config: Descriptor::of(&config, BTreeMap::new()),
        layers: vec![
            Descriptor::of(&config, title("runtime-config.json")),
            Descriptor::of(&wasm, title(&format!("meshwasm_{filter}.wasm"))),
        ],
        annotations,
    };
    let manifest = Blob::new(MANIFEST, serde_json::to_vec(&manifest)?);
    Ok(Image {
        config,
        wasm,
        manifest,
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Index<'a> {
    schema_version: u32,
    media_type: &'static str,
    manifests: Vec<Descriptor<'a>>,
}

/// Writes `image` as an OCI image layout in `dir` (replacing what was
/// there), with one `index.json` entry per tag
/// (`org.opencontainers.image.ref.name`, what `skopeo copy oci:<dir>:<tag>`
/// looks up).
pub fn write_layout(dir: &Path, image: &Image, tags: &[String]) -> anyhow::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let blobs = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs).with_context(|| format!("creating {}", blobs.display()))?;
    for blob in image.blobs() {
        let path = blobs.join(blob.hex());
        std::fs::write(&path, &blob.bytes)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let index = Index {
        schema_version: 2,
        media_type: INDEX,
        manifests: tags
            .iter()
            .map(|tag| {
                let name = BTreeMap::from([("org.opencontainers.image.ref.name", tag.clone())]);
                Descriptor::of(&image.manifest, name)
            })
            .collect(),
    };
    let write = |name: &str, bytes: Vec<u8>| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
    };
    write("index.json", serde_json::to_vec(&index)?)?;
    write("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use serde_json::Value;

    fn at() -> Provenance {
        Provenance {
            version: "0.1.0".into(),
            revision: "abc".into(),
            created: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn the_manifest_has_the_media_types_istio_reads() {
        let img = image("route", b"\0asm\x01\0\0\0".to_vec(), &at()).unwrap();
        let m: Value = serde_json::from_slice(&img.manifest.bytes).unwrap();
        assert_eq!(m["mediaType"], MANIFEST);
        assert_eq!(m["config"]["mediaType"], WASM_CONFIG);
        let layers = m["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 2, "Istio wants exactly two layers");
        assert_eq!(layers[1]["mediaType"], WASM_LAYER);
        assert_eq!(layers[1]["digest"], img.wasm.digest);
        assert_eq!(layers[1]["size"], 8);
        assert_eq!(img.wasm.bytes, b"\0asm\x01\0\0\0");
    }

    #[test]
    fn the_same_inputs_give_the_same_digest_and_another_module_another() {
        let a = image("route", vec![1, 2, 3], &at()).unwrap();
        let b = image("route", vec![1, 2, 3], &at()).unwrap();
        let c = image("route", vec![1, 2, 4], &at()).unwrap();
        assert_eq!(a.manifest.digest, b.manifest.digest);
        assert_ne!(a.manifest.digest, c.manifest.digest);
    }
}
