//! A compact JWS parsed as google/jwt_verify_lib's `Jwt::parseFromString`
//! parses it (the library Envoy's jwt_authn uses), with its failure order
//! and strings (SPEC.md §RequestAuthentication Behaviour 4, Verified 1, 5,
//! 11). Where meshwasm answers stricter than Envoy it says so:
//! empty sections (`h.p..s`) are a form error, and the signature must be
//! canonical unpadded base64url.

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use serde_json::{Map, Value};

use super::status::JwtStatus;

/// Longest token accepted (Envoy's header limit keeps longer ones away;
/// SPEC.md Verified 10).
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// Base64url as absl's `WebSafeBase64Unescape` reads header and payload:
/// padding optional.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// JWS algorithms jwt_verify_lib implements (`isImplemented`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256/384/512.
    Rs(Hash),
    /// RSASSA-PSS with SHA-256/384/512.
    Ps(Hash),
    /// ECDSA P-256 / SHA-256.
    Es256,
    /// ECDSA P-384 / SHA-384.
    Es384,
    /// ECDSA P-521 / SHA-512.
    Es512,
    /// HMAC with SHA-256/384/512.
    Hs(Hash),
    /// Ed25519.
    EdDsa,
}

/// A SHA-2 width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl Alg {
    /// The algorithm named `name`, if implemented (`none` is not).
    pub fn from_name(name: &str) -> Option<Alg> {
        use Hash::*;
        Some(match name {
            "RS256" => Alg::Rs(Sha256),
            "RS384" => Alg::Rs(Sha384),
            "RS512" => Alg::Rs(Sha512),
            "PS256" => Alg::Ps(Sha256),
            "PS384" => Alg::Ps(Sha384),
            "PS512" => Alg::Ps(Sha512),
            "ES256" => Alg::Es256,
            "ES384" => Alg::Es384,
            "ES512" => Alg::Es512,
            "HS256" => Alg::Hs(Sha256),
            "HS384" => Alg::Hs(Sha384),
            "HS512" => Alg::Hs(Sha512),
            "EdDSA" => Alg::EdDsa,
            _ => return None,
        })
    }
}

/// A parsed (not yet verified) token.
#[derive(Debug, Clone)]
pub struct Jwt<'t> {
    /// `alg` of the header, as written.
    pub alg_name: String,
    /// The algorithm.
    pub alg: Alg,
    /// `kid`, empty when absent.
    pub kid: String,
    /// Whether the header carries `crit` (refused at verification).
    pub crit: bool,
    /// The payload JSON object.
    pub payload: Map<String, Value>,
    /// The payload section as sent (base64url).
    pub payload_b64: &'t str,
    /// `header.payload`: what the signature covers.
    pub signed: &'t str,
    /// The decoded signature.
    pub signature: Vec<u8>,
    /// Whether the signature is canonical unpadded base64url; checked after
    /// the claims, where Envoy's lenient decoding would let it through.
    pub signature_canonical: bool,
    /// `iss`, empty when absent.
    pub iss: String,
    /// `sub`, empty when absent.
    pub sub: String,
    /// `aud`, as a list.
    pub aud: Vec<String>,
    /// `exp` (0 = none).
    pub exp: u64,
    /// `nbf` (0 = none).
    pub nbf: u64,
}

/// A JSON object; duplicate keys at any depth make it invalid, as
/// protobuf's JSON parser (Envoy's) refuses them — a token must not mean
/// one thing to meshwasm and another to the next reader.
fn object(bytes: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<Strict>(bytes).ok()?.0 {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// A JSON value that refuses duplicate object keys.
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some((k, Strict(v))) = map.next_entry::<String, Strict>()? {
            if out.insert(k, v).is_some() {
                return Err(serde::de::Error::custom("duplicate key"));
            }
        }
        Ok(Value::Object(out))
    }
}

/// An optional string claim: absent ⇒ empty.
fn string(obj: &Map<String, Value>, key: &str, bad: JwtStatus) -> Result<String, JwtStatus> {
    match obj.get(key) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(bad),
    }
}

/// An optional time claim: a JSON number in `[0, 2^64)` (doubles accepted
/// and truncated, as protobuf's `Struct` holds them); absent ⇒ 0. Not a
/// number ⇒ `not_int`, out of range ⇒ `bad`.
fn time(
    obj: &Map<String, Value>,
    key: &str,
    bad: JwtStatus,
    not_int: JwtStatus,
) -> Result<u64, JwtStatus> {
    match obj.get(key) {
        None => Ok(0),
        Some(Value::Number(n)) => {
            if let Some(u) = n.as_u64() {
                return Ok(u);
            }
            match n.as_f64() {
                // u64::MAX as f64 rounds up to 2^64, which is out of range.
                Some(f) if (0.0..18_446_744_073_709_551_615.0).contains(&f) => Ok(f as u64),
                _ => Err(bad),
            }
        }
        Some(_) => Err(not_int),
    }
}

impl<'t> Jwt<'t> {
    /// Parses `token`; the first failure wins.
    pub fn parse(token: &'t str) -> Result<Jwt<'t>, JwtStatus> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtStatus::BadFormat);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtStatus::BadFormat);
        };
        if h.is_empty() || p.is_empty() || s.is_empty() {
            return Err(JwtStatus::BadFormat);
        }
        let header = LENIENT.decode(h).map_err(|_| JwtStatus::HeaderBadBase64)?;
        let header = object(&header).ok_or(JwtStatus::HeaderBadJson)?;
        let alg_name = match header.get("alg") {
            Some(Value::String(a)) => a.clone(),
            _ => return Err(JwtStatus::HeaderBadAlg),
        };
        let alg = Alg::from_name(&alg_name).ok_or(JwtStatus::AlgNotImplemented)?;
        let kid = string(&header, "kid", JwtStatus::HeaderBadKid)?;
        let payload = LENIENT.decode(p).map_err(|_| JwtStatus::PayloadBadBase64)?;
        let payload = object(&payload).ok_or(JwtStatus::PayloadBadJson)?;
        let iss = string(&payload, "iss", JwtStatus::PayloadIssNotString)?;
        let sub = string(&payload, "sub", JwtStatus::PayloadSubNotString)?;
        use JwtStatus::*;
        time(&payload, "iat", PayloadIatNotPositive, PayloadIatNotInteger)?;
        let nbf = time(&payload, "nbf", PayloadNbfNotPositive, PayloadNbfNotInteger)?;
        let exp = time(&payload, "exp", PayloadExpNotPositive, PayloadExpNotInteger)?;
        string(&payload, "jti", JwtStatus::PayloadJtiNotString)?;
        let aud = match payload.get("aud") {
            None => Vec::new(),
            Some(Value::String(a)) => vec![a.clone()],
            Some(Value::Array(list)) => list
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or(JwtStatus::PayloadAudNotString)?,
            Some(_) => return Err(JwtStatus::PayloadAudNotString),
        };
        // One spelling per signature: canonical, unpadded base64url. Other
        // spellings are refused at verification (SPEC.md Verified 11), after
        // the checks Envoy makes first.
        let canonical = general_purpose::URL_SAFE_NO_PAD.decode(s).ok();
        let signature_canonical = canonical.is_some();
        let signature = match canonical {
            Some(sig) => sig,
            None => LENIENT
                .decode(s)
                .map_err(|_| JwtStatus::SignatureBadBase64)?,
        };
        let signed = token.get(..h.len() + 1 + p.len()).unwrap_or_default();
        Ok(Jwt {
            alg_name,
            alg,
            kid,
            crit: header.contains_key("crit"),
            payload,
            payload_b64: p,
            signed,
            signature,
            signature_canonical,
            iss,
            sub,
            aud,
            exp,
            nbf,
        })
    }

    /// jwt_verify_lib's `verifyTimeConstraint` with Envoy's 60 s skew.
    pub fn check_time(&self, now_secs: u64) -> Result<(), JwtStatus> {
        const SKEW: u64 = 60;
        if now_secs.saturating_add(SKEW) < self.nbf {
            return Err(JwtStatus::NotYetValid);
        }
        if self.exp != 0 && now_secs > self.exp.saturating_add(SKEW) {
            return Err(JwtStatus::Expired);
        }
        Ok(())
    }

    /// Whether one of the token's audiences is allowed (empty `allowed` ⇒
    /// no check). Envoy ignores a leading `http://`/`https://` and one
    /// trailing `/` on both sides (SPEC.md Verified 6).
    pub fn audience_allowed(&self, allowed: &[String]) -> bool {
        allowed.is_empty()
            || self
                .aud
                .iter()
                .any(|a| allowed.iter().any(|b| normalise(a) == normalise(b)))
    }
}

fn normalise(aud: &str) -> &str {
    let a = aud
        .strip_prefix("https://")
        .or_else(|| aud.strip_prefix("http://"))
        .unwrap_or(aud);
    a.strip_suffix('/').unwrap_or(a)
}
