//! The configuration examples in docs/ are valid: what a user copies works.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use meshwasm::config::validate_all;
use serde_json::Value;

fn yaml(rel: &str) -> Value {
    let text = std::fs::read_to_string(format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    serde_norway::from_str(&text).unwrap()
}

#[test]
fn every_wasmplugin_manifest_carries_a_valid_plugin_config() {
    let dir = format!("{}/docs/wasmplugin", env!("CARGO_MANIFEST_DIR"));
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let manifest = yaml(&format!(
                "docs/wasmplugin/{}",
                path.file_name().unwrap().to_str().unwrap()
            ));
            assert_eq!(manifest["kind"], "WasmPlugin", "{}", path.display());
            let config = serde_json::to_vec(&manifest["spec"]["pluginConfig"]).unwrap();
            let result = validate_all(&config);
            assert!(result.is_ok(), "{}: {result:?}", path.display());
            seen += 1;
        }
    }
    assert!(seen >= 1);
}
