//! `cargo xtask clusters FILES…`: the Envoy cluster settings Istio would
//! write from the DestinationRules in the files (load balancer, circuit
//! breakers, connection options, per-endpoint outlier detection, upstream
//! TLS), for the clusters behind the route filter — what only Envoy's
//! cluster can do (docs/resilience.md). Core:
//! `meshwasm::resilience::clusters`.

use std::path::PathBuf;

use anyhow::bail;
use meshwasm::config::{Document, Kind};
use meshwasm_harness::scenario::{config_document, istio_resources};
use serde_json::{Value, json};

use crate::util::Flags;

/// Runs the command: prints `{"clusters": [...]}` (Envoy accepts JSON
/// where it takes YAML); warnings go to stderr.
pub fn clusters(args: &[String]) -> anyhow::Result<()> {
    let mut flags = Flags::new(args);
    let namespace = flags
        .value("--namespace")?
        .unwrap_or_else(|| "default".to_owned());
    let envoy = flags.value("--envoy-json")?;
    let files = flags.positional()?;
    if files.is_empty() {
        bail!("usage: cargo xtask clusters [--namespace NS] [--envoy-json JSON] FILE..");
    }
    let files: Vec<PathBuf> = files.iter().map(PathBuf::from).collect();
    let envoy: Value = match envoy {
        Some(text) => serde_json::from_str(&text)?,
        None => json!({}),
    };
    let doc = config_document(
        istio_resources(&files)?,
        Some(json!({"namespace": namespace, "labels": {}})),
        Some(envoy),
    );
    let doc = match Document::parse(
        doc.to_string().as_bytes(),
        &[Kind::VirtualService, Kind::DestinationRule],
    ) {
        Ok(doc) => doc,
        Err(e) => bail!("{e}"),
    };
    let (clusters, warnings) = meshwasm::resilience::clusters::envoy_clusters(&doc);
    for w in warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({ "clusters": clusters }))?
    );
    Ok(())
}
