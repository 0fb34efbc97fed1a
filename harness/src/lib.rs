//! meshwasm harness: a proxy-wasm host on wasmtime, the scenario runner, test
//! upstreams and the real-Envoy rig.

pub mod client;
pub mod envoy;
pub mod host;
pub mod jwt;
pub mod native_routes;
pub mod scenario;
pub mod tls;
pub mod upstream;
