//! Test helpers: configuration documents from the seed's YAML files.

use serde_json::{Value, json};

/// Path of a file under `testdata/`.
pub fn testdata(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(rel)
}

/// The resources of a multi-document YAML file under `testdata/istio/`.
pub fn resources(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(testdata(&format!("istio/{file}"))).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// A configuration document of the given seed files, as JSON bytes.
pub fn document(files: &[&str]) -> Vec<u8> {
    let resources: Vec<Value> = files.iter().flat_map(|f| resources(f)).collect();
    document_of(resources)
}

/// A configuration document of explicit resources, as JSON bytes.
pub fn document_of(resources: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "workload": {"namespace": "default", "labels": {"app": "product-service"}},
        "resources": resources,
    }))
    .unwrap()
}

/// A `VirtualService` named `vs` with `spec`.
pub fn vs(spec: Value) -> Value {
    json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
           "metadata": {"name": "vs"}, "spec": spec})
}

/// A `DestinationRule` for host `a` with the named subsets.
pub fn dr(subsets: &[&str]) -> Value {
    let subsets: Vec<Value> = subsets.iter().map(|s| json!({"name": s})).collect();
    json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "dr"},
           "spec": {"host": "a", "subsets": subsets}})
}

/// Compiles a route table from explicit resources.
pub fn compile(
    resources: Vec<Value>,
) -> Result<crate::route::RouteTable, crate::config::ConfigError> {
    use crate::config::{Document, Kind};
    let doc = Document::parse(
        &document_of(resources),
        &[Kind::VirtualService, Kind::DestinationRule],
    )?;
    crate::route::RouteTable::compile(&doc)
}

/// The seed's `getUserVariant` (ab-testing.go), written out from its Go
/// source, independently of the code under test.
pub fn seed_variant(user: &str) -> &'static str {
    let mut h: u32 = 2_166_136_261;
    for b in format!("{user}checkout-flow").bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(16_777_619);
    }
    if h % 100 < 50 { "A" } else { "B" }
}

/// Asserts that `verdict` (the error as `path: message`, or "accepted")
/// refuses every spec with an error starting with its `path: ` (below
/// `resources[0].spec.`) and containing `why`.
pub fn assert_refusals(verdict: impl Fn(Value) -> String, cases: &[(Value, &str, &str)]) {
    for (spec, path, why) in cases {
        let e = verdict(spec.clone());
        let full = format!("resources[0].spec.{path}: ");
        assert!(
            e.starts_with(&full) && e.contains(why),
            "{spec}\n  got {e}\n  want {full}…{why}"
        );
    }
}

/// Asserts that `verdict` accepts every spec.
pub fn assert_accepted(verdict: impl Fn(Value) -> String, specs: &[Value]) {
    for spec in specs {
        assert_eq!(verdict(spec.clone()), "accepted", "{spec}");
    }
}
