//! Plain Envoy loading the shipped filters the way a fleet without Istio
//! does: `vm_config.code.remote` — an `http_uri` to an HTTP server (here
//! one per module on loopback, through a STATIC cluster) and the module's
//! `sha256`. The chain authn → rbac → fault → route, and the mesh filter
//! alone, load that way and serve the seed's VirtualService and
//! DestinationRule (premium users to v2, the rest over v1/v2); a wrong
//! `sha256` makes Envoy refuse the module it fetched — its log says the
//! data is invalid and the plugin failed to load — and the plugin fails
//! closed (503).
//!
//! Needs the release filters (`cargo xtask build`).
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

use std::time::Duration;

use meshwasm_harness::envoy::{Envoy, EnvoyRig, WasmFilter, product_cluster, wasm_path};
use meshwasm_harness::scenario::{config_document, istio_resources, testdata};
use meshwasm_harness::upstream::{JwksServer, ProductService};
use serde_json::json;
use sha2::{Digest as _, Sha256};

/// The seed's VirtualService and DestinationRule as the filters' document.
fn seed_config() -> String {
    let dir = testdata().join("istio");
    let files = [
        dir.join("virtual-service-example.yaml"),
        dir.join("destination-rule-example.yaml"),
    ];
    config_document(istio_resources(&files).unwrap(), None, None).to_string()
}

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An HTTP server serving the built module of `filter`.
struct ModuleServer {
    server: JwksServer,
    filter: String,
    sha256: String,
}

impl ModuleServer {
    fn start(filter: &str) -> ModuleServer {
        let path = wasm_path(filter);
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run cargo xtask build)", path.display()));
        let server = JwksServer::start_at(&format!("/meshwasm_{filter}.wasm"), &json!({})).unwrap();
        server.set_body(bytes.clone());
        ModuleServer {
            server,
            filter: filter.to_owned(),
            sha256: hex(&bytes),
        }
    }

    fn cluster(&self) -> String {
        format!("wasm_{}", self.filter)
    }

    /// The filter, loaded from this server, expecting `sha256`.
    fn filter(&self, sha256: &str) -> WasmFilter {
        let uri = format!(
            "http://{}/meshwasm_{}.wasm",
            self.server.addr(),
            self.filter
        );
        WasmFilter::new(
            &format!("meshwasm.{}", self.filter),
            "not-used.wasm",
            seed_config(),
        )
        .remote_code(&uri, &self.cluster(), sha256)
        // Each remote module needs its own VM id: of four remote modules
        // sharing `vm_id: meshwasm`, Envoy 1.40 starts only the first.
        .vm_id(&format!("meshwasm-{}", self.filter))
    }
}

/// Envoy with `filters`, their module servers and the seed's upstreams.
fn envoy(
    servers: &[ModuleServer],
    filters: Vec<WasmFilter>,
    upstreams: &[ProductService],
) -> Envoy {
    let mut rig = EnvoyRig::builder()
        .filters(filters)
        .arg("--component-log-level")
        .arg("config:debug");
    for s in servers {
        rig = rig.cluster(&s.cluster(), s.server.addr());
    }
    for u in upstreams {
        rig = rig.cluster(&product_cluster(u.version()), u.addr());
    }
    rig.start().unwrap()
}

fn upstreams() -> Vec<ProductService> {
    ["v1", "v2"]
        .iter()
        .map(|v| ProductService::start(v).unwrap())
        .collect()
}

/// Waits until every filter named in `filters` has started (its own stats,
/// `wasmcustom.meshwasm.<filter>.*`, defined when it is configured, are in
/// Envoy's `/stats`), so the assertions below see configured filters.
fn wait_loaded(envoy: &Envoy, filters: &[&str]) {
    for _ in 0..400 {
        let stats = envoy.stats();
        if filters
            .iter()
            .all(|f| stats.contains(&format!("wasmcustom.meshwasm.{f}.")))
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{filters:?} did not start:\n{}", envoy.log());
}

/// Premium users reach v2; the others v1 or v2 (90/10).
fn serves_the_seed(envoy: &Envoy) {
    for _ in 0..5 {
        let r = envoy
            .get(
                "/api/products",
                &[("host", "product-service"), ("user-type", "premium")],
            )
            .unwrap();
        assert_eq!(r.status, 200, "{}", envoy.log());
        assert_eq!(r.header("service-version"), Some("v2"));
    }
    for _ in 0..5 {
        let r = envoy
            .get("/api/products", &[("host", "product-service")])
            .unwrap();
        assert_eq!(r.status, 200);
        assert!(matches!(r.header("service-version"), Some("v1" | "v2")));
    }
}

#[test]
fn the_chain_loads_through_remote_code_with_sha256_and_serves_the_seed() {
    let servers: Vec<ModuleServer> = ["authn", "rbac", "fault", "route"]
        .iter()
        .map(|f| ModuleServer::start(f))
        .collect();
    let filters = servers.iter().map(|s| s.filter(&s.sha256)).collect();
    let upstreams = upstreams();
    let envoy = envoy(&servers, filters, &upstreams);
    for s in &servers {
        assert!(s.server.hits() >= 1, "{} was not fetched", s.filter);
    }
    wait_loaded(&envoy, &["authn", "rbac", "fault", "route"]);
    serves_the_seed(&envoy);
    assert!(!envoy.log().contains("data is invalid"));
}

#[test]
fn the_mesh_filter_loads_through_remote_code_with_sha256_and_serves_the_seed() {
    let servers = [ModuleServer::start("mesh")];
    let filters = vec![servers[0].filter(&servers[0].sha256)];
    let upstreams = upstreams();
    let envoy = envoy(&servers, filters, &upstreams);
    assert!(servers[0].server.hits() >= 1);
    wait_loaded(&envoy, &["authn", "rbac", "fault", "route"]);
    serves_the_seed(&envoy);
}

#[test]
fn a_wrong_sha256_makes_envoy_refuse_the_module() {
    let servers = [ModuleServer::start("route")];
    let wrong = "0".repeat(64);
    let filters = vec![servers[0].filter(&wrong)];
    let upstreams = upstreams();
    let envoy = envoy(&servers, filters, &upstreams);
    let r = envoy
        .get(
            "/api/products",
            &[("host", "product-service"), ("user-type", "premium")],
        )
        .unwrap();
    assert_eq!(r.status, 503, "the plugin fails closed");
    // The server did serve the module: only its digest was refused.
    assert!(servers[0].server.hits() >= 1);
    let mut log = envoy.log();
    for _ in 0..40 {
        if log.contains("Plugin meshwasm.route failed to load") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        log = envoy.log();
    }
    let uri = format!("http://{}/meshwasm_route.wasm", servers[0].server.addr());
    let invalid = format!("fetch remote data [uri = {uri}]: data is invalid");
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&invalid) || l.contains("Plugin meshwasm.route failed to load"))
        .collect();
    eprintln!("{}", lines.join("\n"));
    assert!(log.contains(&invalid), "{log}");
    assert!(
        log.contains("Plugin meshwasm.route failed to load"),
        "{log}"
    );
}
