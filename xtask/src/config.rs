//! `cargo xtask config FILES…`: Istio YAML → the filters' configuration
//! document (`{"workload", "resources", "envoy"}`, see src/config.rs),
//! validated like the filters validate it.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use meshwasm_harness::scenario::{config_document, istio_resources};
use serde_json::{Map, Value, json};

use crate::util::Flags;

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
    let files: Vec<PathBuf> = files.iter().map(PathBuf::from).collect();
    let resources = istio_resources(&files)?;
    let mut workload_labels = Map::new();
    if labels.is_empty() {
        workload_labels.insert("app".into(), "product-service".into());
    }
    for kv in &labels {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--label {kv}: expected key=value");
        };
        workload_labels.insert(k.into(), v.into());
    }
    let envoy: Value = match envoy {
        Some(text) => serde_json::from_str(&text).context("--envoy-json is not JSON")?,
        None => json!({}),
    };
    let workload = json!({"namespace": namespace, "labels": workload_labels});
    let doc = config_document(resources, Some(workload), Some(envoy));
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
