//! The configuration document every meshwasm filter takes.
//!
//! One JSON document configures the whole chain, so an Istio user can paste
//! their resources as they are:
//!
//! ```json
//! { "workload":  {"namespace": "default", "labels": {"app": "product-service"}},
//!   "resources": [ {"apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualService",
//!                   "metadata": {"name": "…"}, "spec": { … Istio's spec … }} ],
//!   "envoy":     { … knobs Istio has no field for … } }
//! ```
//!
//! Each filter asks [`Document::parse`] for the kinds it implements; their
//! `spec`s are deserialized into the strict mirrors in [`virtual_service`] and
//! [`destination_rule`], and an unknown field anywhere is a [`ConfigError`]
//! naming its JSON path (`resources[0].spec.http[0].mtach`). Kinds a filter
//! does not implement are skipped unread (STYLE.md rule 5).

pub mod authz;
pub mod destination_rule;
pub mod duration;
pub mod header_format;
mod resource;
pub mod security;
mod tracked;
pub mod validation;
pub mod virtual_service;
pub mod visibility;

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::DeserializeOwned;

pub use resource::{Kind, Metadata, Resource};

/// A configuration error: the JSON path of the offending field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// JSON path of the field, e.g. `resources[0].spec.http[0].mtach`.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    /// An error at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// The workload the filters run in front of: `selector` and
/// `workloadSelector` of the resources apply against it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Workload {
    /// Kubernetes namespace of the workload (default `default`).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Pod labels of the workload.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn default_namespace() -> String {
    "default".to_owned()
}

impl Default for Workload {
    /// Namespace `default`, no labels — also when `workload` is omitted.
    fn default() -> Self {
        Self {
            namespace: default_namespace(),
            labels: BTreeMap::new(),
        }
    }
}

/// Knobs that Istio has no field for. Every knob of every filter is listed
/// here, so a typo in one is refused by all filters alike.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnvoyKnobs {
    /// Request header the route filter writes the chosen Envoy cluster into;
    /// `envoy.yaml` routes on it with `route: {cluster_header: …}`.
    #[serde(default = "default_cluster_header")]
    pub cluster_header: String,
    /// Template naming the Envoy cluster of a destination; placeholders
    /// `{host}` (FQDN), `{subset}` (empty without a subset) and `{port}`.
    #[serde(default = "default_cluster_name")]
    pub cluster_name: String,
    /// `{port}` of a destination that names no `port.number`.
    #[serde(default = "default_port")]
    pub default_port: u32,
    /// DNS suffix that qualifies short service names (`reviews` in `default`
    /// ⇒ `reviews.default.svc.cluster.local`).
    #[serde(default = "default_domain_suffix")]
    pub domain_suffix: String,
    /// Envoy cluster of a `jwksUri` host, by `host` or `host:port`; the
    /// default is Istio's `outbound|<port>||<host>`.
    #[serde(default)]
    pub jwks_clusters: BTreeMap<String, String>,
    /// Istio's root namespace: policies there without a selector apply to
    /// the whole mesh.
    #[serde(default = "default_root_namespace")]
    pub root_namespace: String,
    /// Most faults (delays and aborts) active at once across the proxy,
    /// as Envoy's fault filter `max_active_faults`; unset ⇒ unlimited.
    #[serde(default)]
    pub max_active_faults: Option<u64>,
    /// The value of Envoy's `%HOSTNAME%` in header values (a filter cannot
    /// ask the OS); unset: Istio's node metadata `NAME` (the pod name),
    /// read per request.
    #[serde(default)]
    pub hostname: Option<String>,
    /// The Istio gateways this Envoy is (`<namespace>/<name>`), when a
    /// `WasmPlugin` runs meshwasm in a gateway's Envoy: VirtualServices
    /// bound to one of them apply, mesh-bound ones do not. Empty: a
    /// sidecar (`mesh`).
    #[serde(default)]
    pub gateways: Vec<String>,
    /// How the rbac filter normalises `:path` before matching, as Istio's
    /// mesh `pathNormalization` sets up Envoy's HTTP connection manager
    /// (SPEC.md §AuthorizationPolicy 11); default `BASE`.
    #[serde(default)]
    pub path_normalization: PathNormalization,
    /// The Envoy route that follows `clusterHeader` already carries
    /// Istio's defaults — `timeout: 0s` and the default retry policy (2
    /// retries on `connect-failure,refused-stream,unavailable,cancelled,
    /// retriable-status-codes`, SPEC.md §timeouts and retries 1, 3) — so
    /// the route filter writes `x-envoy-*` router headers only for rules
    /// that differ: fewer header writes per request (docs/route.md).
    #[serde(default)]
    pub route_has_istio_defaults: bool,
    /// The Envoy clusters the route sends to already carry each
    /// DestinationRule's `connectionPool` as circuit breakers, as Istio
    /// writes them (`cargo xtask clusters`): the resilience stage leaves
    /// the concurrency limits to Envoy, three metric calls fewer per
    /// request (docs/resilience.md).
    #[serde(default)]
    pub clusters_have_connection_pool: bool,
    /// Whether the request's identity goes to Envoy filter state
    /// `wasm.meshwasm.identity` for filters after this one. Unset: the
    /// authn filter writes it (the rbac filter after it reads it there),
    /// the mesh filter does not (its RBAC stage reads it in the stream).
    #[serde(default)]
    pub identity_filter_state: Option<bool>,
}

/// Istio's mesh `pathNormalization.normalization` (SPEC.md
/// §AuthorizationPolicy 11): what the rbac filter does to `:path` before
/// matching, and writes back when the path changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PathNormalization {
    /// The path as it came (`normalize_path: false`).
    None,
    /// RFC 3986 dot segments, `\` → `/`, unreserved `%XX` decoded (Envoy's
    /// `normalize_path: true`). Istio's default.
    #[default]
    Base,
    /// Istio's `DEFAULT`: the same as `BASE`.
    Default,
    /// `BASE`, then `//` merged (`merge_slashes: true`).
    MergeSlashes,
    /// `%2F` `%5C` decoded first, then `MERGE_SLASHES`
    /// (`path_with_escaped_slashes_action: UNESCAPE_AND_FORWARD`).
    DecodeAndMergeSlashes,
}

/// Default of [`EnvoyKnobs::cluster_header`].
pub const DEFAULT_CLUSTER_HEADER: &str = "x-mesh-cluster";
/// Default of [`EnvoyKnobs::cluster_name`]: Istio's own subset cluster key.
pub const DEFAULT_CLUSTER_NAME: &str = "outbound|{port}|{subset}|{host}";

fn default_cluster_header() -> String {
    DEFAULT_CLUSTER_HEADER.to_owned()
}
fn default_cluster_name() -> String {
    DEFAULT_CLUSTER_NAME.to_owned()
}
fn default_port() -> u32 {
    80
}
fn default_root_namespace() -> String {
    "istio-system".into()
}

fn default_domain_suffix() -> String {
    "cluster.local".to_owned()
}

impl Default for EnvoyKnobs {
    fn default() -> Self {
        Self {
            cluster_header: default_cluster_header(),
            cluster_name: default_cluster_name(),
            default_port: default_port(),
            domain_suffix: default_domain_suffix(),
            max_active_faults: None,
            jwks_clusters: BTreeMap::new(),
            root_namespace: default_root_namespace(),
            gateways: Vec::new(),
            hostname: None,
            path_normalization: PathNormalization::default(),
            route_has_istio_defaults: false,
            clusters_have_connection_pool: false,
            identity_filter_state: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocument {
    #[serde(default)]
    workload: Workload,
    #[serde(default)]
    resources: Vec<serde_json::Value>,
    #[serde(default)]
    envoy: EnvoyKnobs,
}

/// A parsed configuration document: the workload, the knobs and the
/// resources of the kinds the caller asked for, with their specs typed.
#[derive(Debug, Clone, Default)]
pub struct Document {
    /// The workload the filters run in front of.
    pub workload: Workload,
    /// Knobs Istio has no field for.
    pub envoy: EnvoyKnobs,
    /// `VirtualService`s, in document order (if asked for).
    pub virtual_services: Vec<Resource<virtual_service::VirtualService>>,
    /// `DestinationRule`s, in document order (if asked for).
    pub destination_rules: Vec<Resource<destination_rule::DestinationRule>>,
    /// `RequestAuthentication`s, in document order (if asked for).
    pub request_authentications: Vec<Resource<security::RequestAuthentication>>,
    /// `PeerAuthentication`s, in document order (if asked for).
    pub peer_authentications: Vec<Resource<security::PeerAuthentication>>,
    /// `AuthorizationPolicy`s, in document order (if asked for).
    pub authorization_policies: Vec<Resource<authz::AuthorizationPolicy>>,
    /// Non-fatal findings (deprecated aliases, ignored kinds), each naming a path.
    pub warnings: Vec<String>,
}

impl Document {
    /// Parses `json`, typing the specs of the resources whose kind is in
    /// `kinds`. Fails on anything that is not JSON, on an unknown field in the
    /// document, in a resource envelope or in the spec of a requested kind,
    /// and on an API version meshwasm does not accept for a requested kind.
    pub fn parse(json: &[u8], kinds: &[Kind]) -> Result<Self, ConfigError> {
        let raw: RawDocument = from_slice_at("", json)?;
        let mut doc = Document {
            workload: raw.workload,
            envoy: raw.envoy,
            ..Document::default()
        };
        for (index, value) in raw.resources.into_iter().enumerate() {
            let Some((kind, res)) = resource::read(value, index, &mut doc.warnings)? else {
                continue;
            };
            if !kinds.contains(&kind) {
                continue;
            }
            match kind {
                Kind::VirtualService => {
                    let vs = res.typed(index)?;
                    let ns = doc.namespace_of(&vs).to_owned();
                    validation::virtual_service::validate(&vs, &ns, &mut doc.warnings)?;
                    let name = &vs.metadata.name;
                    let export = &vs.spec.export_to;
                    match visibility::hidden(
                        kind_name(kind),
                        index,
                        &ns,
                        name,
                        export,
                        None,
                        &doc.workload,
                    ) {
                        Some(w) => doc.warnings.push(w),
                        None => doc.virtual_services.push(vs),
                    }
                }
                Kind::DestinationRule => {
                    let dr = res.typed(index)?;
                    let ns = doc.namespace_of(&dr).to_owned();
                    validation::destination_rule::validate(&dr, &ns, &mut doc.warnings)?;
                    let (name, export) = (&dr.metadata.name, &dr.spec.export_to);
                    let selector = dr.spec.workload_selector.as_ref();
                    match visibility::hidden(
                        kind_name(kind),
                        index,
                        &ns,
                        name,
                        export,
                        selector,
                        &doc.workload,
                    ) {
                        Some(w) => doc.warnings.push(w),
                        None => doc.destination_rules.push(dr),
                    }
                }
                Kind::RequestAuthentication => {
                    doc.request_authentications.push(res.typed(index)?);
                }
                Kind::PeerAuthentication => doc.peer_authentications.push(res.typed(index)?),
                Kind::AuthorizationPolicy => doc.authorization_policies.push(res.typed(index)?),
            }
        }
        Ok(doc)
    }

    /// Namespace of a resource: its own, else the workload's.
    pub fn namespace_of<'a, T>(&'a self, res: &'a Resource<T>) -> &'a str {
        res.metadata
            .namespace
            .as_deref()
            .unwrap_or(&self.workload.namespace)
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::VirtualService => "VirtualService",
        Kind::DestinationRule => "DestinationRule",
        Kind::PeerAuthentication => "PeerAuthentication",
        Kind::RequestAuthentication => "RequestAuthentication",
        Kind::AuthorizationPolicy => "AuthorizationPolicy",
    }
}

/// Deserializes `json` into `T`; an error names the JSON path below `prefix`
/// (text that is not JSON: where it stops being JSON, by line and column).
pub fn from_slice_at<T: DeserializeOwned>(prefix: &str, json: &[u8]) -> Result<T, ConfigError> {
    let value: serde_json::Value = serde_json::from_slice(json)
        .map_err(|e| ConfigError::new(prefix, format!("not JSON: {e}")))?;
    from_value_at(prefix, value)
}

/// Deserializes an already parsed JSON value into `T`; an error names the
/// JSON path below `prefix`.
pub fn from_value_at<T: DeserializeOwned>(
    prefix: &str,
    value: serde_json::Value,
) -> Result<T, ConfigError> {
    tracked::deserialize(&value).map_err(|(path, e)| path_error(prefix, path, &e))
}

fn path_error(prefix: &str, inner: String, err: &serde_json::Error) -> ConfigError {
    let path = match (prefix.is_empty(), inner.is_empty()) {
        (_, true) => prefix.to_owned(),
        (true, false) => inner,
        (false, false) if inner.starts_with('[') => format!("{prefix}{inner}"),
        (false, false) => format!("{prefix}.{inner}"),
    };
    // Typing a value: serde_json's message has no line and column to cut.
    ConfigError::new(path, err.to_string())
}

/// Validates a whole configuration document (JSON bytes) with every kind
/// meshwasm implements, as the filters would; returns the warnings.
pub fn validate_all(json: &[u8]) -> Result<Vec<String>, ConfigError> {
    let doc = Document::parse(json, Kind::ALL)?;
    let table = crate::route::RouteTable::compile(&doc)?;
    let authn = crate::authn::AuthnPolicy::compile(&doc)?;
    let rbac = crate::rbac::RbacPolicy::compile(&doc)?;
    let mut warnings = doc.warnings;
    warnings.extend(table.warnings().iter().cloned());
    warnings.extend(authn.warnings().iter().cloned());
    warnings.extend(rbac.warnings().iter().cloned());
    Ok(warnings)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_tracked;
#[cfg(test)]
mod tests_visibility;
