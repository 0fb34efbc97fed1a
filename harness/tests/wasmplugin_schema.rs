//! Every `WasmPlugin` manifest of docs/wasmplugin/ is one Istio's API server
//! takes: valid against the `openAPIV3Schema` of Istio's `WasmPlugin` CRD
//! (testdata/istio-crd/, extracted from istio/istio's crd-all.gen.yaml; see
//! its README) with the `jsonschema` crate, checked as the API server checks
//! a custom resource under strict field validation (`kubectl apply`'s
//! default): what the API server adds to a structural schema (`apiVersion`,
//! `kind`, `metadata`; unknown fields refused wherever the schema does not
//! preserve them) is added here, and the schema's CEL rules
//! (`x-kubernetes-validations`) are checked by hand. Their phases and
//! priorities order the chain authn → rbac → fault → route as Istio orders
//! WasmPlugins.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use meshwasm_harness::envoy::workspace_root;
use serde_json::{Value, json};

fn crd_schema() -> Value {
    let path = workspace_root().join("testdata/istio-crd/wasmplugin-v1alpha1.schema.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Refuses unknown fields in every object schema that lists its
/// properties and does not preserve unknown fields.
fn strict(schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    let preserves = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
    if obj.contains_key("properties") && !preserves && !obj.contains_key("additionalProperties") {
        obj.insert("additionalProperties".into(), json!(false));
    }
    for key in ["properties"] {
        if let Some(Value::Object(props)) = obj.get_mut(key) {
            props.values_mut().for_each(strict);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(sub) = obj.get_mut(key) {
            strict(sub);
        }
    }
}

/// The CRD schema as the API server applies it to a whole object.
fn api_server_schema() -> Value {
    let mut schema = crd_schema();
    strict(&mut schema);
    let dns_label = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
    let dns_subdomain = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
    let props = schema["properties"].as_object_mut().unwrap();
    props.insert(
        "apiVersion".into(),
        json!({"enum": ["extensions.istio.io/v1alpha1"]}),
    );
    props.insert("kind".into(), json!({"enum": ["WasmPlugin"]}));
    props.insert(
        "metadata".into(),
        json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": 253, "pattern": dns_subdomain},
                "namespace": {"type": "string", "maxLength": 63, "pattern": dns_label},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            },
            "required": ["name"],
            "additionalProperties": false,
        }),
    );
    let required = schema["required"].as_array_mut().unwrap();
    required.extend([json!("apiVersion"), json!("kind"), json!("metadata")]);
    schema
}

/// What the CRD's `x-kubernetes-validations` rules refuse.
fn cel_errors(manifest: &Value) -> Vec<String> {
    let spec = &manifest["spec"];
    let mut errors = Vec::new();
    let set = ["selector", "targetRef", "targetRefs"]
        .iter()
        .filter(|k| spec.get(**k).is_some())
        .count();
    if set > 1 {
        errors.push("only one of targetRefs or selector can be set".to_owned());
    }
    let url = spec["url"].as_str().unwrap_or("");
    let scheme = url.split_once("://").map_or("", |(s, _)| s);
    if !["", "http", "https", "oci", "file"].contains(&scheme) {
        errors.push("url must have schema one of [http, https, file, oci]".to_owned());
    }
    if let Some(labels) = spec
        .pointer("/selector/matchLabels")
        .and_then(Value::as_object)
    {
        for (k, v) in labels {
            if k.is_empty() || k.contains('*') || v.as_str().unwrap_or("").contains('*') {
                errors.push(format!("selector label {k:?}: wildcard or empty key"));
            }
        }
    }
    for env in spec
        .pointer("/vmConfig/env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if env.get("valueFrom") == Some(&json!("HOST")) && env.get("value").is_some() {
            errors.push("value may only be set when valueFrom is INLINE".to_owned());
        }
    }
    errors
}

fn errors(manifest: &Value) -> Vec<String> {
    let validator = jsonschema::draft4::new(&api_server_schema()).unwrap();
    let mut out: Vec<String> = validator
        .iter_errors(manifest)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    out.extend(cel_errors(manifest));
    out
}

fn manifests() -> Vec<(String, Value)> {
    let dir = workspace_root().join("docs/wasmplugin");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) == Some("yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            out.push((name, serde_norway::from_str(&text).unwrap()));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn every_manifest_is_valid_against_istios_wasmplugin_crd() {
    let all = manifests();
    assert_eq!(all.len(), 5);
    for (name, manifest) in &all {
        let errors = errors(manifest);
        assert!(errors.is_empty(), "{name}: {errors:#?}");
        let spec = &manifest["spec"];
        assert_eq!(spec["failStrategy"], "FAIL_CLOSE", "{name}");
        assert!(
            spec["sha256"].as_str().is_some_and(|s| s.len() == 64),
            "{name}"
        );
        assert!(
            spec["url"].as_str().unwrap().starts_with("oci://"),
            "{name}"
        );
    }
}

#[test]
fn the_check_refuses_what_the_api_server_refuses() {
    let (_, good) = manifests().into_iter().next().unwrap();
    let broken = |f: &dyn Fn(&mut Value)| {
        let mut m = good.clone();
        f(&mut m);
        errors(&m)
    };
    assert!(!broken(&|m| m["spec"]["phse"] = json!("AUTHN")).is_empty());
    assert!(!broken(&|m| m["spec"]["phase"] = json!("FIRST")).is_empty());
    assert!(!broken(&|m| m["spec"]["sha256"] = json!("sha256:ab")).is_empty());
    assert!(!broken(&|m| m["spec"]["priority"] = json!("high")).is_empty());
    assert!(!broken(&|m| m["spec"]["match"][0]["mode"] = json!("INBOUND")).is_empty());
    assert!(!broken(&|m| m["spec"]["url"] = json!("ftp://x/y.wasm")).is_empty());
    assert!(
        !broken(&|m| m["spec"]["targetRef"] = json!({"kind": "Gateway", "name": "g"})).is_empty()
    );
    assert!(!broken(&|m| m["metadata"]["name"] = json!("Meshwasm_Authn")).is_empty());
    let without_url = broken(&|m| {
        m["spec"].as_object_mut().unwrap().remove("url");
    });
    assert!(!without_url.is_empty());
    // pluginConfig preserves unknown fields: anything goes inside.
    assert!(broken(&|m| m["spec"]["pluginConfig"]["anything"] = json!({"x": 1})).is_empty());
}

/// Each manifest was made by `cargo xtask config --wasmplugin` from its
/// input under testdata/wasmplugin/, whose resources it carries unchanged.
#[test]
fn every_manifest_is_made_from_its_input_by_the_command() {
    for (name, manifest) in manifests() {
        let text =
            std::fs::read_to_string(workspace_root().join("docs/wasmplugin").join(&name)).unwrap();
        let input = format!("testdata/wasmplugin/{name}");
        let command = text
            .lines()
            .find_map(|l| l.strip_prefix("#   cargo xtask config --wasmplugin "))
            .unwrap_or_else(|| panic!("{name}: no command line in the header"));
        assert!(command.ends_with(&input), "{name}: {command}");
        let resources =
            meshwasm_harness::scenario::istio_resources(&[workspace_root().join(&input)]).unwrap();
        assert_eq!(
            manifest["spec"]["pluginConfig"]["resources"],
            Value::Array(resources),
            "{name}"
        );
    }
}

/// Istio's order: phase AUTHN, AUTHZ, STATS, then UNSPECIFIED_PHASE (just
/// before the router); inside a phase, higher priority first.
#[test]
fn phases_and_priorities_order_the_chain_authn_rbac_fault_route() {
    let rank = |phase: &str| match phase {
        "AUTHN" => 0,
        "AUTHZ" => 1,
        "STATS" => 2,
        _ => 3,
    };
    let mut chain: Vec<(i64, i64, String)> = manifests()
        .into_iter()
        .filter(|(name, _)| name != "mesh.yaml")
        .map(|(name, m)| {
            let spec = &m["spec"];
            let phase = rank(spec["phase"].as_str().unwrap());
            (phase, -spec["priority"].as_i64().unwrap(), name)
        })
        .collect();
    chain.sort();
    let order: Vec<&str> = chain.iter().map(|(_, _, n)| n.as_str()).collect();
    assert_eq!(
        order,
        ["authn.yaml", "rbac.yaml", "fault.yaml", "route.yaml"]
    );
}
