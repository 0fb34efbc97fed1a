//! `cargo xtask config FILES…`: Istio YAML → the filters' configuration
//! document (`{"workload", "resources", "envoy"}`, see src/config.rs),
//! validated like the filters validate it. `--check` validates only, in
//! the style of `istioctl validate`: one line per resource, exit 1 on any
//! error. The workload the rules are judged against (`sourceLabels`,
//! selectors, `exportTo`) comes from `--namespace` and `--label`, and is
//! printed. `--wasmplugin <filter|mesh|chain>` writes Istio `WasmPlugin`
//! manifests carrying the document instead (`package/wasmplugin.rs`).

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use meshwasm_harness::scenario::{config_document, istio_resources};
use serde_json::{Map, Value, json};

use crate::util::Flags;

const USAGE: &str = "usage: cargo xtask config [--check] [--namespace NS] [--label k=v].. \
                     [--gateway NS/NAME].. [--envoy-json JSON] [--pretty] FILE..\n       \
                     cargo xtask config --wasmplugin <filter|mesh|chain>[,..] \
                     (--image REGISTRY/REPO | --url URL) [--mode M] [--fail-open] \
                     [--namespace NS] [--label k=v].. [--gateway NS/NAME].. [--envoy-json JSON] FILE..";

/// Runs the command.
pub fn config(args: &[String]) -> anyhow::Result<()> {
    let mut flags = Flags::new(args);
    let namespace = flags
        .value("--namespace")?
        .unwrap_or_else(|| "default".to_owned());
    let labels = flags.values("--label")?;
    let gateways = flags.values("--gateway")?;
    let envoy = flags.value("--envoy-json")?;
    let pretty = flags.switch("--pretty");
    let check = flags.switch("--check");
    let wasmplugin = match flags.value("--wasmplugin")? {
        Some(list) => Some(crate::package::wasmplugin::Request {
            filters: crate::package::wasmplugin::filters(&list)?,
            image: flags.value("--image")?,
            url: flags.value("--url")?,
            mode: flags.value("--mode")?,
            fail_open: flags.switch("--fail-open"),
            command_line: command_line(args),
            files: Vec::new(),
        }),
        None => None,
    };
    let files = flags.positional()?;
    if files.is_empty() || (check && wasmplugin.is_some()) {
        bail!("{USAGE}");
    }
    let mut resources = Vec::new();
    for file in &files {
        for value in istio_resources(&[PathBuf::from(file)])? {
            resources.push((file.clone(), value));
        }
    }
    let mut workload_labels = Map::new();
    for kv in &labels {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--label {kv}: expected key=value");
        };
        workload_labels.insert(k.into(), v.into());
    }
    let mut envoy: Value = match envoy {
        Some(text) => serde_json::from_str(&text).context("--envoy-json is not JSON")?,
        None => json!({}),
    };
    if !gateways.is_empty()
        && let Some(obj) = envoy.as_object_mut()
    {
        obj.insert("gateways".into(), json!(gateways));
    }
    let workload = json!({"namespace": namespace, "labels": workload_labels});
    let named = format!(
        "workload: namespace {namespace:?}, labels {} (--namespace, --label k=v){}",
        Value::Object(workload_labels.clone()),
        if gateways.is_empty() {
            String::new()
        } else {
            format!("; this Envoy is gateway {}", gateways.join(", "))
        }
    );
    // stdout carries the JSON document, except with --check.
    if check {
        println!("{named}");
    } else {
        eprintln!("{named}");
    }
    if check {
        return check_each(&resources, &workload, &envoy);
    }
    let values = resources.into_iter().map(|(_, v)| v).collect();
    let doc = config_document(values, Some(workload), Some(envoy));
    if let Some(mut request) = wasmplugin {
        request.files = files;
        return wasmplugins(&doc, request);
    }
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

/// `--wasmplugin`: validates the whole document (warnings on stderr), then
/// prints the manifests.
fn wasmplugins(doc: &Value, request: crate::package::wasmplugin::Request) -> anyhow::Result<()> {
    match meshwasm::config::validate_all(serde_json::to_string(doc)?.as_bytes()) {
        Ok(warnings) => {
            for w in warnings {
                eprintln!("warning: {w}");
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
    print!("{}", crate::package::wasmplugin::render(&request, doc)?);
    Ok(())
}

/// `cargo xtask config ARGS…` as typed, quoted for a shell where needed.
fn command_line(args: &[String]) -> String {
    let mut line = "cargo xtask config".to_owned();
    for arg in args {
        let plain = arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=,:@%+".contains(c));
        line.push(' ');
        if plain {
            line.push_str(arg);
        } else {
            line.push_str(&format!("'{}'", arg.replace('\'', r"'\''")));
        }
    }
    line
}

/// The index of the resource a path names (`resources[3].spec…` → 3) and
/// the rest of the path.
fn resource_of(path_and_message: &str) -> Option<(usize, &str)> {
    let rest = path_and_message.strip_prefix("resources[")?;
    let (index, rest) = rest.split_once(']')?;
    let rest = rest.strip_prefix('.').or_else(|| rest.strip_prefix(": "))?;
    Some((index.parse().ok()?, rest))
}

/// `--check`: validates the document, and every time a resource is in
/// error, validates again without it (it is replaced by an object that is
/// skipped, so paths keep their indices), until the rest passes. Prints one
/// line per resource — `ok`, `warning`, `skipped` or `error` — and fails
/// when any is in error.
fn check_each(
    resources: &[(String, Value)],
    workload: &Value,
    envoy: &Value,
) -> anyhow::Result<()> {
    let mut errors: Vec<Option<String>> = vec![None; resources.len()];
    let warnings = loop {
        let values: Vec<Value> = resources
            .iter()
            .zip(&errors)
            .map(|((_, v), e)| match e {
                Some(_) => json!({"apiVersion": "v1", "kind": "Removed"}),
                None => v.clone(),
            })
            .collect();
        let doc = config_document(values, Some(workload.clone()), Some(envoy.clone()));
        match meshwasm::config::validate_all(serde_json::to_string(&doc)?.as_bytes()) {
            Ok(warnings) => break warnings,
            Err(e) => {
                let line = e.to_string();
                match resource_of(&line).and_then(|(i, _)| errors.get_mut(i)) {
                    Some(slot @ None) => *slot = Some(line),
                    _ => {
                        eprintln!("error: {line}");
                        std::process::exit(1);
                    }
                }
            }
        }
    };
    let mut resource_warnings: Vec<Vec<String>> = vec![Vec::new(); resources.len()];
    for w in &warnings {
        match resource_of(w).and_then(|(i, rest)| resource_warnings.get_mut(i).map(|v| (v, rest))) {
            Some((list, rest)) => list.push(rest.to_owned()),
            None => println!("warning  {w}"),
        }
    }
    let mut failed = 0;
    for ((file, value), (error, warns)) in
        resources.iter().zip(errors.iter().zip(&resource_warnings))
    {
        let text = |k: &str| value.get(k).and_then(Value::as_str).unwrap_or("?");
        let meta = |k: &str| {
            value
                .pointer(&format!("/metadata/{k}"))
                .and_then(Value::as_str)
        };
        let ns = meta("namespace").unwrap_or_else(|| {
            workload
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or("default")
        });
        let who = format!(
            "{} {ns}/{} ({file})",
            text("kind"),
            meta("name").unwrap_or("?")
        );
        if let Some(e) = error {
            failed += 1;
            let why = resource_of(e).map_or(e.as_str(), |(_, rest)| rest);
            println!("error    {who}: {why}");
            continue;
        }
        let skipped = warns.iter().find(|w| w.ends_with("; skipped"));
        match (skipped, warns.as_slice()) {
            (Some(w), _) => println!("skipped  {who}: {w}"),
            (None, []) => println!("ok       {who}"),
            (None, list) => {
                for w in list {
                    println!("warning  {who}: {w}");
                }
            }
        }
    }
    println!("{} resource(s): {} in error", resources.len(), failed);
    if failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}
