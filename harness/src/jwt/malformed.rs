//! Malformed and hostile tokens for attack tests (SPEC.md
//! §RequestAuthentication Behaviour 9 and "Verified on Envoy 1.40"): every
//! one must be refused by a JWT filter configured for the honest key.
//!
//! Envoy's answer to several of them is recorded in SPEC.md: `alg: none`
//! with a signature ⇒ `Jwt header [alg] is not supported`; `h.p.` ⇒ the
//! "two dots and 3 sections" form error; `crit` is ignored by Envoy but
//! refused by meshwasm.

use serde_json::{Value, json};

use super::keys::hmac_sign;
use super::{Alg, JwtError, Key, b64, header, mint, sign_parts};

/// A part of a compact JWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The protected header.
    Header,
    /// The claims.
    Payload,
    /// The signature.
    Signature,
}

impl Part {
    fn index(self) -> usize {
        match self {
            Part::Header => 0,
            Part::Payload => 1,
            Part::Signature => 2,
        }
    }
}

/// `{"alg":"none","typ":"JWT"}` over `claims`, unsigned: `h.p.` when
/// `signature` is `None` (empty third part), else `h.p.<b64(signature)>`.
pub fn alg_none(claims: &Value, signature: Option<&[u8]>) -> String {
    let h = b64(json_bytes(&header("none", None, &json!({}))));
    let p = b64(json_bytes(claims));
    format!("{h}.{p}.{}", signature.map(b64).unwrap_or_default())
}

/// `token` without its signature part: `h.p` (one dot).
pub fn two_parts(token: &str) -> String {
    token.splitn(3, '.').take(2).collect::<Vec<_>>().join(".")
}

/// A string that is no JWT at all (no dots, not base64url).
pub fn garbage() -> String {
    "this is not a jwt!".to_owned()
}

/// `token` with part `part` made invalid base64url: a `*` inserted at its
/// start (the other parts, including the signature, unchanged).
pub fn bad_base64(token: &str, part: Part) -> String {
    map_part(token, part, |p| format!("*{p}"))
}

/// `token` with part `part` padded with `=` until its length is a multiple
/// of 4 (one `=` at least): non-canonical base64url, which Envoy accepts for
/// the signature and meshwasm refuses.
pub fn padded(token: &str, part: Part) -> String {
    map_part(token, part, |p| {
        let pad = 4 - p.len() % 4;
        format!("{p}{}", "=".repeat(pad))
    })
}

/// `token` with its payload replaced by `claims` and its signature kept
/// (a forged token: the signature no longer matches).
pub fn tampered(token: &str, claims: &Value) -> String {
    map_part(token, Part::Payload, |_| b64(json_bytes(claims)))
}

/// `token` with the last byte of its signature flipped.
pub fn bad_signature(token: &str) -> String {
    map_part(token, Part::Signature, |p| {
        let mut sig = super::b64_decode(p).unwrap_or_default();
        if let Some(last) = sig.last_mut() {
            *last ^= 0x01;
        }
        b64(sig)
    })
}

/// Which bytes of the RSA public key serve as the HMAC secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicKeyBytes {
    /// The SPKI PEM text (`-----BEGIN PUBLIC KEY-----…`, LF line ends).
    Pem,
    /// The SPKI DER bytes.
    Der,
}

/// HS/RS confusion: an `HS256`/`HS384`/`HS512` token (header `kid` = the
/// RSA key's) whose HMAC secret is the RSA key's *public* key bytes, so a
/// verifier that lets the token's `alg` pick the check over an RSA JWK
/// would accept it.
pub fn hs_with_rsa_public_key(
    alg: Alg,
    rsa_key: &Key,
    form: PublicKeyBytes,
    claims: &Value,
) -> Result<String, JwtError> {
    let secret = match form {
        PublicKeyBytes::Pem => rsa_key.rsa_public_key_pem().map(String::into_bytes),
        PublicKeyBytes::Der => rsa_key.rsa_public_key_der(),
    }
    .ok_or(JwtError::KeyMismatch {
        alg,
        kty: rsa_key.kty(),
    })?;
    let mut extra = json!({});
    if let (Some(kid), Value::Object(map)) = (rsa_key.kid(), &mut extra) {
        map.insert("kid".to_owned(), Value::from(kid));
    }
    let h = b64(json_bytes(&header(alg.name(), None, &extra)));
    let input = format!("{h}.{}", b64(json_bytes(claims)));
    let sig = hmac_sign(alg, &secret, input.as_bytes())?;
    Ok(format!("{input}.{}", b64(sig)))
}

/// A token whose header claims `alg` but that `key` (of another family)
/// signed with `signed_as`: e.g. labelled `RS256`, signed `ES256` with an
/// EC key (SPEC.md "Verified" 2: Envoy picks the check by the JWK's `kty`).
pub fn mislabelled(
    alg: Alg,
    signed_as: Alg,
    key: &Key,
    claims: &Value,
) -> Result<String, JwtError> {
    let h = header(alg.name(), Some(key), &json!({}));
    sign_parts(signed_as, key, &json_bytes(&h), &json_bytes(claims))
}

/// Signed by `key`, with a `crit` header naming an extension nobody
/// understands (RFC 7515 §4.1.11: must be rejected).
pub fn with_crit(alg: Alg, key: &Key, claims: &Value) -> Result<String, JwtError> {
    mint(
        alg,
        key,
        &json!({"crit": ["meshwasm-unknown"], "meshwasm-unknown": true}),
        claims,
    )
}

/// Signed by the attacker's `key`, carrying that key's public JWK in the
/// `jwk` header: a verifier must take keys only from its configured JWKS.
pub fn with_embedded_jwk(alg: Alg, key: &Key, claims: &Value) -> Result<String, JwtError> {
    mint(alg, key, &json!({"jwk": key.public_jwk()}), claims)
}

/// Signed by `key`, with a `jku` header pointing at `url` (an attacker's
/// JWKS): a verifier must not fetch it.
pub fn with_jku(alg: Alg, key: &Key, url: &str, claims: &Value) -> Result<String, JwtError> {
    mint(alg, key, &json!({"jku": url}), claims)
}

/// Signed by `key`, with header `kid` = `kid` (e.g. one the JWKS lacks, or
/// an injection attempt such as `../../dev/null`).
pub fn with_kid(alg: Alg, key: &Key, kid: &str, claims: &Value) -> Result<String, JwtError> {
    mint(alg, key, &json!({"kid": kid}), claims)
}

/// "Psychic signature" (CVE-2022-21449): an `ES*` token whose signature is
/// all zeros (`r = s = 0`), of the right length for `alg`.
pub fn zero_ecdsa_signature(alg: Alg, key: &Key, claims: &Value) -> Result<String, JwtError> {
    let len = match alg {
        Alg::ES256 => 64,
        Alg::ES384 => 96,
        Alg::ES512 => 132,
        _ => return Err(JwtError::KeyMismatch { alg, kty: "EC" }),
    };
    let h = b64(json_bytes(&header(alg.name(), Some(key), &json!({}))));
    Ok(format!(
        "{h}.{}.{}",
        b64(json_bytes(claims)),
        b64(vec![0u8; len])
    ))
}

/// A valid token signed by `key` at least `min_len` bytes long: `claims`
/// plus a `pad` claim of `x`s (Envoy accepts 10 KB; SPEC.md caps at 64 KiB).
pub fn oversize(alg: Alg, key: &Key, claims: &Value, min_len: usize) -> Result<String, JwtError> {
    let mut claims = match claims {
        Value::Object(map) => map.clone(),
        _ => serde_json::Map::new(),
    };
    let token = mint(alg, key, &json!({}), &Value::Object(claims.clone()))?;
    // base64url grows 4/3; a little extra keeps us above min_len.
    let missing = min_len.saturating_sub(token.len());
    claims.insert(
        "pad".to_owned(),
        Value::from("x".repeat(missing.saturating_mul(3) / 4 + 4)),
    );
    mint(alg, key, &json!({}), &Value::Object(claims))
}

fn map_part(token: &str, part: Part, f: impl FnOnce(&str) -> String) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    if let Some(p) = parts.get_mut(part.index()) {
        *p = f(p);
    }
    parts.join(".")
}

fn json_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}
