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

/// Istio kinds meshwasm knows of but does not implement: skipped with a
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawResource {
    api_version: String,
    kind: String,
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

impl RawResource {
    /// The kind, if meshwasm implements it; `None` (with a warning) for kinds
    /// it skips; an error for unknown Istio kinds and API versions.
    pub(super) fn kind(
        &self,
        path: &str,
        warnings: &mut Vec<String>,
    ) -> Result<Option<Kind>, ConfigError> {
        let (group, version) = self
            .api_version
            .rsplit_once('/')
            .unwrap_or(("", &self.api_version));
        let istio_group = group.ends_with(".istio.io");
        let Some(kind) = Kind::from_name(&self.kind) else {
            if istio_group && !OTHER_ISTIO_KINDS.contains(&self.kind.as_str()) {
                return Err(ConfigError::new(
                    format!("{path}.kind"),
                    format!(
                        "unknown Istio kind {:?} in {:?}",
                        self.kind, self.api_version
                    ),
                ));
            }
            warnings.push(format!(
                "{path}: {} {:?} is not implemented by meshwasm and is ignored",
                self.kind, self.metadata.name
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
                    "{:?} is not an accepted apiVersion for {}; expected one of {}",
                    self.api_version,
                    self.kind,
                    accepted.join(", ")
                ),
            ));
        }
        Ok(Some(kind))
    }

    /// Types the spec as `T`; errors name the path below `resources[i].spec`.
    pub(super) fn typed<T: DeserializeOwned>(
        self,
        index: usize,
    ) -> Result<Resource<T>, ConfigError> {
        let spec = if self.spec.is_null() {
            serde_json::Value::Object(serde_json::Map::new())
        } else {
            self.spec
        };
        Ok(Resource {
            index,
            spec: from_value_at(&format!("resources[{index}].spec"), spec)?,
            metadata: self.metadata,
        })
    }
}
