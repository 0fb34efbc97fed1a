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
