//! Serde mirrors of the `security.istio.io` specs meshwasm reads:
//! `RequestAuthentication` and `PeerAuthentication` (istio/api
//! `security/v1beta1/request_authentication.proto`,
//! `peer_authentication.proto`). Unknown fields are refused with their JSON
//! path, as for every Istio kind.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::duration::IstioDuration;

/// `WorkloadSelector`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadSelector {
    /// Labels a workload must carry (all of them).
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

/// `PolicyTargetReference` (Gateway API attachment).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyTargetReference {
    /// API group.
    #[serde(default)]
    pub group: String,
    /// Kind.
    #[serde(default)]
    pub kind: String,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Namespace (must be empty).
    #[serde(default)]
    pub namespace: String,
}

/// `RequestAuthentication`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RequestAuthentication {
    /// Workloads the policy applies to; none ⇒ the whole namespace.
    #[serde(default)]
    pub selector: Option<WorkloadSelector>,
    /// Gateway API attachment.
    #[serde(default)]
    pub target_ref: Option<PolicyTargetReference>,
    /// Gateway API attachments.
    #[serde(default)]
    pub target_refs: Vec<PolicyTargetReference>,
    /// JWT rules.
    #[serde(default)]
    pub jwt_rules: Vec<JwtRule>,
}

/// `JWTRule`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JwtRule {
    /// Expected `iss`.
    #[serde(default)]
    pub issuer: String,
    /// Accepted `aud` values; empty ⇒ no audience check.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// URL of the JWKS.
    #[serde(default)]
    pub jwks_uri: String,
    /// Inline JWKS (JSON text).
    #[serde(default)]
    pub jwks: String,
    /// Headers carrying the token.
    #[serde(default)]
    pub from_headers: Vec<JwtHeader>,
    /// Query parameters carrying the token.
    #[serde(default)]
    pub from_params: Vec<String>,
    /// Cookies carrying the token.
    #[serde(default)]
    pub from_cookies: Vec<String>,
    /// Header receiving the base64url payload.
    #[serde(default)]
    pub output_payload_to_header: String,
    /// Keep the token in the request.
    #[serde(default)]
    pub forward_original_token: bool,
    /// Claims copied to headers.
    #[serde(default)]
    pub output_claim_to_headers: Vec<ClaimToHeader>,
    /// JWKS fetch timeout (default 5 s).
    #[serde(default)]
    pub timeout: Option<IstioDuration>,
    /// Claims whose string value is split on spaces for matching.
    #[serde(default)]
    pub space_delimited_claims: Vec<String>,
}

/// `JWTHeader`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JwtHeader {
    /// Header name.
    #[serde(default)]
    pub name: String,
    /// Prefix before the token (`Bearer `).
    #[serde(default)]
    pub prefix: String,
}

/// `ClaimToHeader`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClaimToHeader {
    /// Header name.
    #[serde(default)]
    pub header: String,
    /// Claim name (`a.b` for nested).
    #[serde(default)]
    pub claim: String,
}

/// `PeerAuthentication`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PeerAuthentication {
    /// Workloads the policy applies to; none ⇒ namespace (or mesh, in the
    /// root namespace).
    #[serde(default)]
    pub selector: Option<WorkloadSelector>,
    /// Mode for the workload.
    #[serde(default)]
    pub mtls: Option<MutualTls>,
    /// Modes per workload port.
    #[serde(default)]
    pub port_level_mtls: BTreeMap<String, MutualTls>,
}

/// `PeerAuthentication.MutualTLS`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MutualTls {
    /// `UNSET`, `DISABLE`, `PERMISSIVE` or `STRICT`.
    #[serde(default)]
    pub mode: Option<String>,
}
