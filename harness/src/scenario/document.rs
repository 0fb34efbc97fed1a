//! Istio YAML (multi-document, as `kubectl` takes it) → the configuration
//! document every filter reads. Shared by the scenario runner and
//! `cargo xtask config`, so tests and users build documents the same way.
//! Maps keep the documents' key order (serde_json `preserve_order`), so the
//! JSON reads like the YAML it came from.

use std::path::PathBuf;

use anyhow::Context as _;
use serde_json::{Value, json};

/// The resources of Istio YAML files, in order; empty documents skipped.
pub fn istio_resources(files: &[PathBuf]) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    for file in files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        for (i, doc) in serde_norway::Deserializer::from_str(&text).enumerate() {
            let value = <Value as serde::Deserialize>::deserialize(doc)
                .with_context(|| format!("{}: YAML document {i}", file.display()))?;
            if !value.is_null() {
                out.push(value);
            }
        }
    }
    Ok(out)
}

/// The JSON document `{workload, resources, envoy}`; `workload` defaults to
/// namespace `default` with label `app: product-service` (the seed's).
pub fn config_document(
    resources: Vec<Value>,
    workload: Option<Value>,
    envoy: Option<Value>,
) -> Value {
    let workload = workload
        .unwrap_or_else(|| json!({"namespace": "default", "labels": {"app": "product-service"}}));
    let mut doc = json!({"workload": workload, "resources": resources});
    if let (Some(envoy), Some(obj)) = (envoy, doc.as_object_mut()) {
        obj.insert("envoy".into(), envoy);
    }
    doc
}
