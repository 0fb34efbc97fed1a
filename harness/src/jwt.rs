//! JWT minting for tests: keys generated at test time for every algorithm
//! Envoy's `jwt_authn` implements (SPEC.md §RequestAuthentication
//! Behaviour 5: `HS256/384/512`, `RS256/384/512`, `PS256/384/512`,
//! `ES256/384/512`, `EdDSA` on Ed25519), their public JWKs and JWKS
//! documents, compact JWS tokens with any header and claims, malformed and
//! hostile tokens for attack tests ([`malformed`]), claim sets relative to
//! now ([`Claims`]) and a strict reference verifier ([`verify`]).
//!
//! Built on the RustCrypto crates (`rsa`, `p256`, `p384`, `p521`,
//! `ed25519-dalek`, `hmac`, `sha2`); randomness from the OS (`getrandom`).
//! Nothing here is copied key material: every key is new per call.
//!
//! ```
//! use meshwasm_harness::jwt::{self, Alg, Claims, Key};
//! # fn main() -> Result<(), jwt::JwtError> {
//! let key = Key::generate(Alg::ES256)?.with_kid("k1");
//! let claims = Claims::new("https://issuer.test", "alice").audience("product-service").expires_in(600);
//! let token = jwt::mint(Alg::ES256, &key, &serde_json::json!({}), &claims.to_value())?;
//! let verified = jwt::verify(&token, &jwt::jwks(&[&key]))?;
//! assert_eq!(verified["sub"], "alice");
//! # Ok(()) }
//! ```

mod claims;
mod keys;
pub mod malformed;
mod verify;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

pub use claims::{Claims, now};
pub use keys::Key;
pub use verify::{verify, verify_with_key};

/// A JWS `alg` (RFC 7518 §3.1) that Envoy's `jwt_authn` implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(clippy::upper_case_acronyms)] // reason: the names are the JWS `alg` values
pub enum Alg {
    /// HMAC with SHA-256 (`oct` key).
    HS256,
    /// HMAC with SHA-384 (`oct` key).
    HS384,
    /// HMAC with SHA-512 (`oct` key).
    HS512,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (`RSA` key).
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384 (`RSA` key).
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512 (`RSA` key).
    RS512,
    /// RSASSA-PSS with SHA-256, salt 32 bytes (`RSA` key).
    PS256,
    /// RSASSA-PSS with SHA-384, salt 48 bytes (`RSA` key).
    PS384,
    /// RSASSA-PSS with SHA-512, salt 64 bytes (`RSA` key).
    PS512,
    /// ECDSA on P-256 with SHA-256 (`EC` key, signature `r‖s`, 64 bytes).
    ES256,
    /// ECDSA on P-384 with SHA-384 (`EC` key, 96 bytes).
    ES384,
    /// ECDSA on P-521 with SHA-512 (`EC` key, 132 bytes).
    ES512,
    /// Ed25519 (`OKP` key, 64 bytes).
    EdDSA,
}

impl Alg {
    /// Every algorithm, HMAC first.
    pub const ALL: [Alg; 13] = [
        Alg::HS256,
        Alg::HS384,
        Alg::HS512,
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::ES512,
        Alg::EdDSA,
    ];

    /// The header value, e.g. `RS256`.
    pub fn name(self) -> &'static str {
        match self {
            Alg::HS256 => "HS256",
            Alg::HS384 => "HS384",
            Alg::HS512 => "HS512",
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::ES512 => "ES512",
            Alg::EdDSA => "EdDSA",
        }
    }

    /// The algorithm named `name` (exact, case-sensitive).
    pub fn from_name(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The JWK `kty` of its keys: `oct`, `RSA`, `EC` or `OKP`.
    pub fn kty(self) -> &'static str {
        match self {
            Alg::HS256 | Alg::HS384 | Alg::HS512 => "oct",
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => "RSA",
            Alg::ES256 | Alg::ES384 | Alg::ES512 => "EC",
            Alg::EdDSA => "OKP",
        }
    }
}

impl std::fmt::Display for Alg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a key could not be made, a token minted or verified.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// The key's type does not fit the algorithm (e.g. `RS256` with an `EC`
    /// key); [`malformed`] has the deliberate confusions.
    #[error("{alg} cannot sign with a {kty} key")]
    KeyMismatch {
        /// The algorithm asked for.
        alg: Alg,
        /// The key's `kty`.
        kty: &'static str,
    },
    /// The cryptographic library failed (key generation, signing, encoding).
    #[error("crypto: {0}")]
    Crypto(String),
    /// The token or JWKS did not verify; the message says why.
    #[error("verification: {0}")]
    Invalid(String),
}

impl JwtError {
    pub(crate) fn crypto(e: impl std::fmt::Display) -> JwtError {
        JwtError::Crypto(e.to_string())
    }

    pub(crate) fn invalid(message: impl Into<String>) -> JwtError {
        JwtError::Invalid(message.into())
    }
}

/// base64url without padding (RFC 7515 §2), as JWS parts are encoded.
pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding; `None` if it is not that.
pub fn b64_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// A JWKS document `{"keys": [...]}` of the public JWKs of `keys`, in order.
pub fn jwks(keys: &[&Key]) -> Value {
    serde_json::json!({"keys": keys.iter().map(|k| k.public_jwk()).collect::<Vec<_>>()})
}

/// The protected header [`mint`] writes: `alg`, `typ: JWT`, the key's `kid`
/// if it has one, then `header_extra` merged over it (a `null` value removes
/// that member, e.g. `{"typ": null}`).
pub fn header(alg: &str, key: Option<&Key>, header_extra: &Value) -> Value {
    let mut h = Map::new();
    h.insert("alg".to_owned(), Value::from(alg));
    h.insert("typ".to_owned(), Value::from("JWT"));
    if let Some(kid) = key.and_then(Key::kid) {
        h.insert("kid".to_owned(), Value::from(kid));
    }
    if let Value::Object(extra) = header_extra {
        for (k, v) in extra {
            if v.is_null() {
                h.remove(k);
            } else {
                h.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(h)
}

/// A compact JWS `b64(header).b64(claims).b64(signature)` signed by `key`
/// with `alg`; see [`header`] for the header. `claims` may be any JSON value
/// (attack tests use arrays and strings too).
pub fn mint(alg: Alg, key: &Key, header_extra: &Value, claims: &Value) -> Result<String, JwtError> {
    let header = header(alg.name(), Some(key), header_extra);
    sign_parts(alg, key, &json_bytes(&header), &json_bytes(claims))
}

/// Signs raw header and payload bytes (not necessarily JSON): the token
/// `b64(header).b64(payload).b64(sig)`.
pub fn sign_parts(alg: Alg, key: &Key, header: &[u8], payload: &[u8]) -> Result<String, JwtError> {
    let input = format!("{}.{}", b64(header), b64(payload));
    let sig = key.sign(alg, input.as_bytes())?;
    Ok(format!("{input}.{}", b64(sig)))
}

fn json_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests;
