//! The Kubernetes envelope of an Istio resource: `apiVersion`, `kind`,
//! `metadata`, `spec`. The envelope is read first and the `spec` kept as a
//! JSON value, so that only the kinds a filter implements are typed (and so
//! refuse unknown fields) — the others are skipped unread.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{ConfigError, from_value_at};

/// Istio resource kinds meshwasm implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `networking.istio.io` VirtualService.
    VirtualService,
    /// `networking.istio.io` DestinationRule.
    DestinationRule,
    /// `security.istio.io` PeerAuthentication.
    PeerAuthentication,
    /// `security.istio.io` RequestAuthentication.
    RequestAuthentication,
    /// `security.istio.io` AuthorizationPolicy.
    AuthorizationPolicy,
}

impl Kind {
    /// Every kind, for tools that validate a whole document.
    pub const ALL: &'static [Kind] = &[
        Kind::VirtualService,
        Kind::DestinationRule,
        Kind::PeerAuthentication,
        Kind::RequestAuthentication,
        Kind::AuthorizationPolicy,
    ];

    fn from_name(name: &str) -> Option<Kind> {
        Some(match name {
            "VirtualService" => Kind::VirtualService,
            "DestinationRule" => Kind::DestinationRule,
            "PeerAuthentication" => Kind::PeerAuthentication,
            "RequestAuthentication" => Kind::RequestAuthentication,
            "AuthorizationPolicy" => Kind::AuthorizationPolicy,
            _ => return None,
        })
    }

    /// API group of the kind.
    pub fn group(self) -> &'static str {
        match self {
            Kind::VirtualService | Kind::DestinationRule => "networking.istio.io",
            _ => "security.istio.io",
        }
    }

    /// API versions of the group that meshwasm accepts.
    pub fn versions(self) -> &'static [&'static str] {
        match self {
            Kind::VirtualService | Kind::DestinationRule => &["v1alpha3", "v1beta1", "v1"],
            _ => &["v1beta1", "v1"],
        }
    }
}

/// Istio kinds meshwasm knows of but does not read: skipped with a
/// warning. Any other kind in an `*.istio.io` group is a typo and refused.
const OTHER_ISTIO_KINDS: &[&str] = &[
    "Gateway",
    "ServiceEntry",
    "Sidecar",
    "WorkloadEntry",
    "WorkloadGroup",
    "EnvoyFilter",
    "ProxyConfig",
    "Telemetry",
    "WasmPlugin",
    "TrafficExtension",
    "IstioOperator",
];

/// Kubernetes object metadata. Tolerant of the fields `kubectl get -o yaml`
/// adds (`uid`, `resourceVersion`, …): they are not Istio's spec.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// Resource name.
    #[serde(default)]
    pub name: String,
    /// Resource namespace; the workload's when absent.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Annotations (meshwasm reads `meshwasm.io/*` and `istio.io/dry-run`).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Creation time, when pasted from a cluster (RFC 3339); orders
    /// conflicting resources as Istio does (oldest first).
    #[serde(default)]
    pub creation_timestamp: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawResource {
    /// Read by [`read`] before the envelope is typed.
    #[serde(rename = "apiVersion")]
    _api_version: String,
    /// Read by [`read`] before the envelope is typed.
    #[serde(rename = "kind")]
    _kind: String,
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    spec: serde_json::Value,
    /// `kubectl get -o yaml` output carries a status; it is not config.
    #[serde(default, rename = "status")]
    _status: Option<serde_json::Value>,
}

/// A resource of one kind with its spec typed.
#[derive(Debug, Clone)]
pub struct Resource<T> {
    /// Position in `resources[]`, for error paths.
    pub index: usize,
    /// `metadata` of the resource.
    pub metadata: Metadata,
    /// The typed spec.
    pub spec: T,
}

impl<T> Resource<T> {
    /// JSON path of the resource's spec (`resources[3].spec`).
    pub fn spec_path(&self) -> String {
        format!("resources[{}].spec", self.index)
    }
}

/// Reads resource `index` of the document: `Some` (kind and strict
/// envelope) for a kind meshwasm implements; `None`, with a warning worded
/// for what it is, for any other object — read by its `apiVersion` and
/// `kind` alone, before anything else of it is parsed, so a Kubernetes
/// `Role` with `rules` or a `ConfigMap` with `data` is skipped, not
/// refused. An unknown kind in an `*.istio.io` group (a typo) and an API
/// version meshwasm does not accept for one of its kinds are errors.
pub(super) fn read(
    value: serde_json::Value,
    index: usize,
    warnings: &mut Vec<String>,
) -> Result<Option<(Kind, RawResource)>, ConfigError> {
    let path = format!("resources[{index}]");
    let text = |k: &str| value.get(k).and_then(serde_json::Value::as_str);
    let (Some(api_version), Some(kind_name)) = (text("apiVersion"), text("kind")) else {
        // Not an object with both: the strict envelope says what is wrong.
        return from_value_at::<RawResource>(&path, value).map(|_| None);
    };
    let name = value
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let Some(kind) = Kind::from_name(kind_name) else {
        let what = if group.ends_with(".istio.io") {
            if !OTHER_ISTIO_KINDS.contains(&kind_name) {
                return Err(ConfigError::new(
                    format!("{path}.kind"),
                    format!("unknown Istio kind {kind_name:?} in {api_version:?}"),
                ));
            }
            "an Istio kind meshwasm does not read"
        } else if group == "gateway.networking.k8s.io" {
            "a Gateway API object, not Istio configuration"
        } else if group.is_empty() || group.ends_with(".k8s.io") || !group.contains('.') {
            "a Kubernetes object, not Istio configuration"
        } else {
            "not Istio configuration"
        };
        warnings.push(format!(
            "{path}: {kind_name} {name:?} ({api_version}) is {what}; skipped"
        ));
        return Ok(None);
    };
    if group != kind.group() || !kind.versions().contains(&version) {
        let accepted: Vec<String> = kind
            .versions()
            .iter()
            .map(|v| format!("{}/{v}", kind.group()))
            .collect();
        return Err(ConfigError::new(
            format!("{path}.apiVersion"),
            format!(
                "{api_version:?} is not an accepted apiVersion for {kind_name}; expected one of {}",
                accepted.join(", ")
            ),
        ));
    }
    let raw: RawResource = from_value_at(&path, value)?;
    Ok(Some((kind, raw)))
}

impl RawResource {
    /// Types the spec as `T`; errors name the path below `resources[i].spec`.
    pub(super) fn typed<T: DeserializeOwned>(
        self,
        index: usize,
    ) -> Result<Resource<T>, ConfigError> {
        let mut spec = if self.spec.is_null() {
            serde_json::Value::Object(serde_json::Map::new())
        } else {
            self.spec
        };
        prune_nulls(&mut spec);
        Ok(Resource {
            index,
            spec: from_value_at(&format!("resources[{index}].spec"), spec)?,
            metadata: self.metadata,
        })
    }
}

/// Drops the fields whose value is `null`, at every depth: Kubernetes
/// prunes them from a structural schema's non-nullable fields before
/// validation, and protojson reads `null` as the default, so `match:` with
/// nothing after it means no match at all. The entries of the StringMatch
/// maps (`headers`, `withoutHeaders`, `queryParams`) are values, not
/// fields: a null one stays, and is refused as Istio refuses it ("header
/// match … cannot be null", virtualservice.go `validateHTTPRouteMatchRequest`).
fn prune_nulls(v: &mut serde_json::Value) {
    prune(v, false);
}

fn prune(v: &mut serde_json::Value, map_values: bool) {
    const STRING_MATCH_MAPS: &[&str] = &["headers", "withoutHeaders", "queryParams"];
    match v {
        serde_json::Value::Object(map) => {
            if !map_values {
                map.retain(|_, f| !f.is_null());
            }
            for (k, f) in map.iter_mut() {
                prune(f, STRING_MATCH_MAPS.contains(&k.as_str()));
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|i| prune(i, false)),
        _ => {}
    }
}
