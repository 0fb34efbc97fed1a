//! Request authentication (SPEC.md §RequestAuthentication,
//! §PeerAuthentication): the `RequestAuthentication`s and
//! `PeerAuthentication`s that select the workload, compiled into one
//! [`AuthnStage`] that answers as Envoy's jwt_authn (as Istio configures
//! it: `requires_any{provider…, allow_missing}`) and refuses plaintext under
//! STRICT mTLS.
//!
//! - No token ⇒ the request goes on unauthenticated (authorization decides).
//! - Every token found (all locations of all rules) must verify: the rule
//!   is the one whose `issuer` is the token's `iss` among the rules reading
//!   that location; then time (60 s skew), audience, keys, signature.
//! - A failure is Envoy's reply: 401 (403 for audiences), body the status
//!   string, `www-authenticate: Bearer realm="<url>", error="invalid_token"`,
//!   details `jwt_authn_access_denied{…}`.
//! - Success: the token is removed unless `forwardOriginalToken`, the
//!   payload and claims are written to their headers (client copies of those
//!   headers are always removed first), and the [`Identity`] goes to the
//!   next stage — or, between filters, to Envoy filter state: never to a
//!   header a client could forge.

mod cache;
mod compile;
pub mod extract;
pub mod jwks;
pub mod mtls;
mod stage;
pub mod status;
pub mod token;
pub mod verify;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use compile::{AuthnPolicy, RemoteJwks};
pub use stage::{AuthnPhase, AuthnStage, AuthnState};

/// Filter-state key (`wasm.<key>` in Envoy) carrying the [`Identity`]
/// from the authn filter to the next meshwasm filter, as JSON.
pub const IDENTITY_KEY: &str = "meshwasm.identity";

/// Who sent a request, as authentication established it: the contract
/// between authn and RBAC.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// Peer principal from the client certificate's SPIFFE URI SAN without
    /// `spiffe://` (`cluster.local/ns/default/sa/frontend`), under mTLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_principal: Option<String>,
    /// `<iss>/<sub>` of the verified token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_principal: Option<String>,
    /// `iss` of the verified token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// `sub` of the verified token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// `aud` of the verified token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// `azp` of the verified token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presenter: Option<String>,
    /// Every claim of the verified token.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub claims: Map<String, Value>,
    /// The JSON form, made once: a cached token's identity is shared by
    /// every request that carries the token.
    #[serde(skip)]
    pub json: JsonCache,
}

/// An [`Identity`]'s JSON, computed on first use. A clone starts empty, so
/// an identity changed after cloning is serialised anew; it never counts
/// in comparisons.
#[derive(Debug, Default)]
pub struct JsonCache(std::cell::OnceCell<Vec<u8>>);

impl Clone for JsonCache {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for JsonCache {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl Identity {
    /// The identity as JSON, for filter state (serialised once).
    pub fn to_json(&self) -> &[u8] {
        self.json
            .0
            .get_or_init(|| serde_json::to_vec(self).unwrap_or_default())
    }

    /// An identity read back from filter state.
    pub fn from_json(bytes: &[u8]) -> Option<Identity> {
        serde_json::from_slice(bytes).ok()
    }
}

#[cfg(test)]
mod testkeys;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_keys;
#[cfg(test)]
mod tests_peer;
