//! `cargo xtask config --wasmplugin <filter|mesh|chain>[,…] FILES…`: the
//! user's Istio YAML as ready Istio `WasmPlugin` manifests, one per filter.
//!
//! Each manifest carries
//! - `url` and `sha256`: with `--image REGISTRY/REPO`,
//!   `oci://REGISTRY/REPO/<filter>:<version>` (what `cargo xtask package
//!   --push REGISTRY/REPO` pushes) and the digest of that image's manifest,
//!   which is what Istio's agent compares for an `oci://` URL
//!   (istio/istio `pkg/wasm/cache.go`, `getOrFetch`); with `--url URL`
//!   (`{filter}` replaced), the module's own sha256, what the agent
//!   compares for `http(s)://` (Istio passes `file://` to Envoy as a local
//!   file and checks nothing);
//! - `phase` and `priority` so that the chain runs authn → rbac → fault →
//!   route (docs/wasmplugin/README.md), `match.mode` (authn and rbac on the
//!   server side, fault and route on the client side, mesh everywhere;
//!   `--mode` overrides);
//! - `selector.matchLabels` = the workload's labels (`--label`);
//! - `failStrategy: FAIL_CLOSE` (`--fail-open`: `FAIL_OPEN`);
//! - `pluginConfig` = the configuration document with the resources the
//!   filter reads, validated as the filter validates it.
//!
//! The leading comment lines of the input files, the command line and what
//! `sha256` is are written as a comment header.

use anyhow::{Context as _, bail};
use serde_json::{Map, Value, json};

use super::{SHIPPED, provenance};

/// What to generate.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Filters (`chain` = authn, rbac, fault, route).
    pub filters: Vec<String>,
    /// `--image REGISTRY/REPO`.
    pub image: Option<String>,
    /// `--url URL`.
    pub url: Option<String>,
    /// `--mode CLIENT|SERVER|CLIENT_AND_SERVER`.
    pub mode: Option<String>,
    /// `--fail-open`.
    pub fail_open: bool,
    /// The command line, for the header.
    pub command_line: String,
    /// The input files (their leading comments open the header).
    pub files: Vec<String>,
}

/// Where a filter sits: Istio phase, priority inside it, traffic direction.
fn placement(filter: &str) -> (&'static str, i32, Option<&'static str>) {
    match filter {
        "authn" => ("AUTHN", 100, Some("SERVER")),
        "rbac" => ("AUTHZ", 100, Some("SERVER")),
        "fault" => ("STATS", 100, Some("CLIENT")),
        "route" => ("UNSPECIFIED_PHASE", 10, Some("CLIENT")),
        _ => ("AUTHN", 100, None),
    }
}

/// Whether `filter` reads resources of kind `kind` (the filters' `KINDS`).
fn reads(filter: &str, kind: &str) -> bool {
    let kinds: &[&str] = match filter {
        "authn" => &["RequestAuthentication", "PeerAuthentication"],
        "rbac" => &["AuthorizationPolicy", "RequestAuthentication"],
        "fault" | "route" => &["VirtualService", "DestinationRule"],
        _ => &[
            "VirtualService",
            "DestinationRule",
            "RequestAuthentication",
            "PeerAuthentication",
            "AuthorizationPolicy",
        ],
    };
    kinds.contains(&kind)
}

/// The filters named by `list` (`authn,route`, `chain`, `mesh`).
pub fn filters(list: &str) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim) {
        let names: &[&str] = if name == "chain" {
            &["authn", "rbac", "fault", "route"]
        } else if SHIPPED.contains(&name) {
            std::slice::from_ref(&name)
        } else {
            bail!(
                "--wasmplugin {name}: expected one of {} or chain",
                SHIPPED.join(", ")
            );
        };
        out.extend(names.iter().map(|n| (*n).to_owned()));
    }
    Ok(out)
}

/// The manifests as YAML (several separated by `---`).
pub fn render(req: &Request, doc: &Value) -> anyhow::Result<String> {
    let (source, sha_means) = match (&req.image, &req.url) {
        (Some(image), None) => (
            Source::Image(image.trim_end_matches('/')),
            "the digest of the image manifest `cargo xtask package` builds\n\
             # from this build (Istio compares it with the digest of the manifest it pulls)",
        ),
        (None, Some(url)) => (
            Source::Url(url),
            "the sha256 of this build's module (Istio compares it with the\n\
             # module it downloads from an http(s) URL)",
        ),
        _ => bail!(
            "--wasmplugin needs --image REGISTRY/REPO (oci://REGISTRY/REPO/<filter>:<version>) or --url URL"
        ),
    };
    let at = provenance();
    let mut text = header(req, sha_means)?;
    for (i, filter) in req.filters.iter().enumerate() {
        if i > 0 {
            text.push_str("---\n");
        }
        let manifest = manifest(req, doc, filter, &source, &at)?;
        text.push_str(&serde_norway::to_string(&manifest)?);
    }
    Ok(text)
}

enum Source<'a> {
    Image(&'a str),
    Url(&'a str),
}

fn manifest(
    req: &Request,
    doc: &Value,
    filter: &str,
    source: &Source<'_>,
    at: &super::Provenance,
) -> anyhow::Result<Value> {
    let image = super::built_image(filter, at)?;
    let (url, sha256) = match source {
        Source::Image(repo) => (
            format!("oci://{repo}/{filter}:{}", at.version),
            image.manifest.hex().to_owned(),
        ),
        Source::Url(url) if url.starts_with("oci://") => (
            url.replace("{filter}", filter),
            image.manifest.hex().to_owned(),
        ),
        Source::Url(url) => (url.replace("{filter}", filter), image.wasm.hex().to_owned()),
    };
    let config = plugin_config(doc, filter)?;
    let workload = config.get("workload").cloned().unwrap_or(Value::Null);
    let namespace = workload
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let labels = workload.get("labels").cloned().unwrap_or_else(|| json!({}));
    let (phase, priority, mode) = placement(filter);
    let mut spec = Map::new();
    if labels.as_object().is_some_and(|l| !l.is_empty()) {
        spec.insert("selector".into(), json!({"matchLabels": labels}));
    } else {
        eprintln!(
            "warning: no --label: meshwasm-{filter} selects every workload of namespace {namespace}"
        );
    }
    spec.insert("url".into(), json!(url));
    spec.insert("sha256".into(), json!(sha256));
    spec.insert("imagePullPolicy".into(), json!("IfNotPresent"));
    spec.insert("phase".into(), json!(phase));
    spec.insert("priority".into(), json!(priority));
    let strategy = if req.fail_open {
        "FAIL_OPEN"
    } else {
        "FAIL_CLOSE"
    };
    spec.insert("failStrategy".into(), json!(strategy));
    match req.mode.as_deref().or(mode) {
        Some("ALL") | None => {}
        Some(m @ ("CLIENT" | "SERVER" | "CLIENT_AND_SERVER")) => {
            spec.insert("match".into(), json!([{"mode": m}]));
        }
        Some(other) => bail!("--mode {other}: expected CLIENT, SERVER, CLIENT_AND_SERVER or ALL"),
    }
    spec.insert("pluginConfig".into(), config);
    Ok(json!({
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": {"name": format!("meshwasm-{filter}"), "namespace": namespace},
        "spec": spec,
    }))
}

/// `doc` with the resources `filter` reads, validated.
fn plugin_config(doc: &Value, filter: &str) -> anyhow::Result<Value> {
    let mut config = doc.clone();
    if let Some(obj) = config.as_object_mut()
        && obj
            .get("envoy")
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty)
    {
        obj.remove("envoy");
    }
    if let Some(Value::Array(resources)) = config.get_mut("resources") {
        resources.retain(|r| {
            let istio = r
                .get("apiVersion")
                .and_then(Value::as_str)
                .is_some_and(|v| {
                    v.starts_with("networking.istio.io/") || v.starts_with("security.istio.io/")
                });
            istio
                && r.get("kind")
                    .and_then(Value::as_str)
                    .is_some_and(|k| reads(filter, k))
        });
        if resources.is_empty() {
            eprintln!("warning: meshwasm-{filter}: none of the resources is of a kind it reads");
        }
    }
    let text = serde_json::to_string(&config)?;
    meshwasm::config::validate_all(text.as_bytes())
        .map_err(|e| anyhow::anyhow!("meshwasm-{filter}: {e}"))?;
    Ok(config)
}

/// The leading comments of the input files, then how the file was made.
fn header(req: &Request, sha_means: &str) -> anyhow::Result<String> {
    let mut text = String::new();
    for file in &req.files {
        let body = std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?;
        for line in body.lines().take_while(|l| l.starts_with('#')) {
            text.push_str(line);
            text.push('\n');
        }
    }
    if !text.is_empty() {
        text.push_str("#\n");
    }
    text.push_str(&format!(
        "# Made with meshwasm {} by\n#   {}\n# sha256: {sha_means}.\n\
         # failStrategy FAIL_CLOSE: when the module cannot be fetched or fails, requests\n\
         # get an error instead of skipping the filter (--fail-open: FAIL_OPEN).\n",
        env!("CARGO_PKG_VERSION"),
        req.command_line
    ));
    Ok(text)
}
