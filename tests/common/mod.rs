//! Shared by the core's integration tests: the seed's resources from
//! testdata/istio/.

use serde_json::Value;

/// The non-empty YAML documents of `files` under testdata/istio/, in order.
pub fn seed_resources(files: &[&str]) -> Vec<Value> {
    let mut resources = Vec::new();
    for f in files {
        let path = format!("{}/testdata/istio/{f}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        for d in serde_norway::Deserializer::from_str(&text) {
            let v: Value = serde::Deserialize::deserialize(d).unwrap();
            if !v.is_null() {
                resources.push(v);
            }
        }
    }
    resources
}
