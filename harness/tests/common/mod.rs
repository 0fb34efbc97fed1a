//! Shared by the wasmtime-host tests (`host_*.rs`): the probe module
//! (`harness/probe`) as a filter. The Envoy differential tests have their own
//! module (`probe_differential_common`).
// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::PathBuf;

use meshwasm_harness::envoy::wasm_path;
use meshwasm_harness::host::FilterSpec;

/// The built probe module; fails the test with how to build it when missing.
pub fn probe_wasm() -> PathBuf {
    let path = wasm_path("probe");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --release --target wasm32-wasip1 -p meshwasm-probe` (or cargo xtask build)",
        path.display()
    );
    path
}

/// The probe as filter `name` with configuration `config`, in VM `probe`.
pub fn probe_with(name: &str, config: &str) -> FilterSpec {
    FilterSpec::new(name, probe_wasm())
        .config(config)
        .vm_id("probe")
}

/// The probe as filter `name`, configured with its name only.
pub fn probe_named(name: &str) -> FilterSpec {
    probe_with(name, &format!(r#"{{"name": "{name}"}}"#))
}
