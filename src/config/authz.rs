//! Serde mirror of `security.istio.io` `AuthorizationPolicy` (istio/api
//! `security/v1beta1/authorization_policy.proto`). Unknown fields are
//! refused with their JSON path, as for every Istio kind. `from`, `to`,
//! `source` and `operation` keep "absent" apart from "empty": Istio
//! refuses `from: []` and `from: [{}]` while an absent `from` means any
//! source.

use serde::Deserialize;

use super::security::{PolicyTargetReference, WorkloadSelector};

/// `AuthorizationPolicy`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthorizationPolicy {
    /// Workloads the policy applies to; none ⇒ the whole namespace (or
    /// mesh, in the root namespace).
    #[serde(default)]
    pub selector: Option<WorkloadSelector>,
    /// Gateway API attachment.
    #[serde(default)]
    pub target_ref: Option<PolicyTargetReference>,
    /// Gateway API attachments.
    #[serde(default)]
    pub target_refs: Vec<PolicyTargetReference>,
    /// `ALLOW` (default), `DENY`, `AUDIT` or `CUSTOM`.
    #[serde(default)]
    pub action: Option<String>,
    /// The external authorizer of a `CUSTOM` policy.
    #[serde(default)]
    pub provider: Option<ExtensionProvider>,
    /// Rules; none ⇒ the policy matches nothing.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// `AuthorizationPolicy.ExtensionProvider`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExtensionProvider {
    /// Name of a mesh config extension provider.
    #[serde(default)]
    pub name: String,
}

/// `Rule`: matches when one `from`, one `to` and every `when` match.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rule {
    /// Sources (OR-ed); absent ⇒ any source.
    #[serde(default)]
    pub from: Option<Vec<From>>,
    /// Operations (OR-ed); absent ⇒ any operation.
    #[serde(default)]
    pub to: Option<Vec<To>>,
    /// Conditions (AND-ed).
    #[serde(default)]
    pub when: Vec<Condition>,
}

/// `Rule.From`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct From {
    /// The source.
    #[serde(default)]
    pub source: Option<Source>,
}

/// `Rule.To`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct To {
    /// The operation.
    #[serde(default)]
    pub operation: Option<Operation>,
}

/// `Source`: every set field must match (AND); the values of a field are
/// OR-ed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Source {
    /// Peer identities (`<trust-domain>/ns/<ns>/sa/<sa>`), from mTLS.
    #[serde(default)]
    pub principals: Vec<String>,
    /// Negative of `principals`.
    #[serde(default)]
    pub not_principals: Vec<String>,
    /// Request identities (`<iss>/<sub>`), from a verified JWT.
    #[serde(default)]
    pub request_principals: Vec<String>,
    /// Negative of `requestPrincipals`.
    #[serde(default)]
    pub not_request_principals: Vec<String>,
    /// Namespaces of the peer identity.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Negative of `namespaces`.
    #[serde(default)]
    pub not_namespaces: Vec<String>,
    /// Service accounts of the peer (`<ns>/<sa>`, or `<sa>` in the policy's
    /// namespace).
    #[serde(default)]
    pub service_accounts: Vec<String>,
    /// Negative of `serviceAccounts`.
    #[serde(default)]
    pub not_service_accounts: Vec<String>,
    /// Peer IPs or CIDRs (the connection's source address).
    #[serde(default)]
    pub ip_blocks: Vec<String>,
    /// Negative of `ipBlocks`.
    #[serde(default)]
    pub not_ip_blocks: Vec<String>,
    /// Client IPs or CIDRs (`X-Forwarded-For`, else the peer).
    #[serde(default)]
    pub remote_ip_blocks: Vec<String>,
    /// Negative of `remoteIpBlocks`.
    #[serde(default)]
    pub not_remote_ip_blocks: Vec<String>,
    /// Trust domains of the peer identity.
    #[serde(default)]
    pub trust_domains: Vec<String>,
    /// Negative of `trustDomains`.
    #[serde(default)]
    pub not_trust_domains: Vec<String>,
}

/// `Operation`: every set field must match (AND); the values of a field
/// are OR-ed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Operation {
    /// `:authority` values (case-insensitive).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Negative of `hosts`.
    #[serde(default)]
    pub not_hosts: Vec<String>,
    /// Destination ports, as strings.
    #[serde(default)]
    pub ports: Vec<String>,
    /// Negative of `ports`.
    #[serde(default)]
    pub not_ports: Vec<String>,
    /// Methods.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Negative of `methods`.
    #[serde(default)]
    pub not_methods: Vec<String>,
    /// Paths (without the query), or path templates with `{*}` / `{**}`.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Negative of `paths`.
    #[serde(default)]
    pub not_paths: Vec<String>,
}

/// `Condition`: `key` matches one of `values` and none of `notValues`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Condition {
    /// The attribute (`request.headers[x-foo]`, `source.ip`, …).
    #[serde(default)]
    pub key: String,
    /// Values, OR-ed.
    #[serde(default)]
    pub values: Vec<String>,
    /// Values that must not match.
    #[serde(default)]
    pub not_values: Vec<String>,
}

impl Source {
    /// Whether no field is set.
    pub fn is_empty(&self) -> bool {
        [
            &self.principals,
            &self.not_principals,
            &self.request_principals,
            &self.not_request_principals,
            &self.namespaces,
            &self.not_namespaces,
            &self.service_accounts,
            &self.not_service_accounts,
            &self.ip_blocks,
            &self.not_ip_blocks,
            &self.remote_ip_blocks,
            &self.not_remote_ip_blocks,
            &self.trust_domains,
            &self.not_trust_domains,
        ]
        .iter()
        .all(|v| v.is_empty())
    }
}

impl Operation {
    /// Whether no field is set.
    pub fn is_empty(&self) -> bool {
        [
            &self.hosts,
            &self.not_hosts,
            &self.ports,
            &self.not_ports,
            &self.methods,
            &self.not_methods,
            &self.paths,
            &self.not_paths,
        ]
        .iter()
        .all(|v| v.is_empty())
    }
}
