//! `cargo xtask config FILES…`: Istio YAML → the filters' configuration
//! document (`{"workload", "resources", "envoy"}`, see src/config.rs),
//! validated like the filters validate it.

use std::path::Path;

use anyhow::{Context as _, bail};
use serde::Deserialize as _;
use serde_norway::{Mapping, Value};

use crate::util::Flags;

/// Keys of a resource the document keeps, verbatim.
const RESOURCE_KEYS: &[&str] = &["apiVersion", "kind", "metadata", "spec"];

/// Runs the command.
pub fn config(args: &[String]) -> anyhow::Result<()> {
    let mut flags = Flags::new(args);
    let namespace = flags
        .value("--namespace")?
        .unwrap_or_else(|| "default".to_owned());
    let labels = flags.values("--label")?;
    let envoy = flags.value("--envoy-json")?;
    let pretty = flags.switch("--pretty");
    let files = flags.positional()?;
    if files.is_empty() {
        bail!(
            "usage: cargo xtask config [--namespace NS] [--label k=v].. [--envoy-json JSON] [--pretty] FILE.."
        );
    }
    let mut resources = Vec::new();
    for file in &files {
        resources.extend(read_resources(Path::new(file))?);
    }
    let mut workload_labels = Mapping::new();
    if labels.is_empty() {
        workload_labels.insert("app".into(), "product-service".into());
    }
    for kv in &labels {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--label {kv}: expected key=value");
        };
        workload_labels.insert(k.into(), v.into());
    }
    let envoy: serde_json::Value = match envoy {
        Some(text) => serde_json::from_str(&text).context("--envoy-json is not JSON")?,
        None => serde_json::json!({}),
    };
    // Built as an ordered YAML mapping so the JSON keeps the documents' key
    // order (serde_json's own map sorts keys).
    let mut workload = Mapping::new();
    workload.insert("namespace".into(), namespace.into());
    workload.insert("labels".into(), Value::Mapping(workload_labels));
    let mut doc = Mapping::new();
    doc.insert("workload".into(), Value::Mapping(workload));
    doc.insert("resources".into(), Value::Sequence(resources));
    doc.insert("envoy".into(), serde_norway::to_value(&envoy)?);
    let doc = Value::Mapping(doc);
    let text = if pretty {
        serde_json::to_string_pretty(&doc)?
    } else {
        serde_json::to_string(&doc)?
    };
    match meshwasm::config::validate_all(text.as_bytes()) {
        Ok(warnings) => {
            for w in warnings {
                eprintln!("warning: {w}");
            }
            println!("{text}");
            Ok(())
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

/// Every non-empty YAML document of `path` as `{apiVersion, kind, metadata, spec}`.
pub fn read_resources(path: &Path) -> anyhow::Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (index, doc) in serde_norway::Deserializer::from_str(&text).enumerate() {
        let value = Value::deserialize(doc)
            .with_context(|| format!("{}: YAML document {}", path.display(), index + 1))?;
        match value {
            Value::Null => continue,
            Value::Mapping(obj) => out.push(resource(obj, path, index)),
            other => bail!(
                "{}: YAML document {} is not a mapping: {other:?}",
                path.display(),
                index + 1
            ),
        }
    }
    Ok(out)
}

fn resource(mut obj: Mapping, path: &Path, index: usize) -> Value {
    let mut res = Mapping::new();
    for key in RESOURCE_KEYS {
        if let Some(v) = obj.remove(*key) {
            res.insert((*key).into(), v);
        }
    }
    for key in obj
        .keys()
        .filter_map(Value::as_str)
        .filter(|k| *k != "status")
    {
        eprintln!(
            "warning: {}: YAML document {}: top-level key `{key}` dropped",
            path.display(),
            index + 1
        );
    }
    Value::Mapping(res)
}
