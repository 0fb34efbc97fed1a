//! JSON Web Key Sets as google/jwt_verify_lib's `Jwks::createFrom` reads
//! them (RFC 7517/7518): `{"keys": [...]}`, each key by `kty` — `RSA`
//! (`n`, `e`), `EC` (`crv` P-256/P-384/P-521, `x`, `y`), `OKP` (`crv` Ed25519,
//! `x`), `oct` (`k`) — with optional `kid` and `alg`. The first bad key
//! makes the whole set invalid, as in jwt_verify_lib; an inline set that
//! does not parse is refused at configure time (SPEC.md Verified 8), a
//! fetched one is a failed fetch.

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Map, Value};

/// Base64url as JWK members are written, padding tolerated.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// One usable public key.
#[derive(Clone)]
pub enum Key {
    /// RSA, for RS* and PS*.
    Rsa(rsa::RsaPublicKey),
    /// EC P-256, for ES256.
    P256(p256::ecdsa::VerifyingKey),
    /// EC P-384, for ES384.
    P384(p384::ecdsa::VerifyingKey),
    /// EC P-521, for ES512.
    P521(Box<p521::ecdsa::VerifyingKey>),
    /// Ed25519, for EdDSA: the 32 bytes as given (BoringSSL imports any 32
    /// bytes; a point that does not decompress verifies nothing).
    Ed25519([u8; 32]),
    /// A shared secret, for HS*.
    Oct(Vec<u8>),
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material (a secret, for `oct`).
        f.write_str(match self {
            Key::Rsa(_) => "Rsa",
            Key::P256(_) => "P256",
            Key::P384(_) => "P384",
            Key::P521(_) => "P521",
            Key::Ed25519(_) => "Ed25519",
            Key::Oct(_) => "Oct",
        })
    }
}

/// A key with its selectors.
#[derive(Debug, Clone)]
pub struct Jwk {
    /// `kid`, empty when absent.
    pub kid: String,
    /// `alg`, empty when absent.
    pub alg: String,
    /// The key.
    pub key: Key,
    /// DER SubjectPublicKeyInfo of an RSA or EC key, for the host's native
    /// check.
    pub spki: Option<Vec<u8>>,
}

/// DER SubjectPublicKeyInfo of a key the host can check natively.
fn spki(key: &Key) -> Option<Vec<u8>> {
    use p256::pkcs8::EncodePublicKey as _;
    let der = match key {
        Key::Rsa(k) => rsa::pkcs8::EncodePublicKey::to_public_key_der(k).ok()?,
        Key::P256(k) => p256::PublicKey::from(k).to_public_key_der().ok()?,
        Key::P384(k) => p384::PublicKey::from(k).to_public_key_der().ok()?,
        Key::P521(_) | Key::Ed25519(_) | Key::Oct(_) => return None,
    };
    Some(der.as_bytes().to_vec())
}

/// A parsed key set.
#[derive(Debug, Clone, Default)]
pub struct Jwks {
    /// Keys in document order.
    pub keys: Vec<Jwk>,
    /// A number no other set parsed by this VM has (caches key on it).
    pub generation: u64,
}

fn next_generation() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn member<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<&'a str, String> {
    match obj.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("[{name}] field is not a string")),
        None => Err(format!("[{name}] field is missing")),
    }
}

fn bytes(obj: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    B64.decode(member(obj, name)?)
        .map_err(|_| format!("[{name}] field is not a valid Base64url encoded string"))
}

impl Jwks {
    /// Parses a JWKS document (also a single JWK object, as jwt_verify_lib
    /// accepts); the error is jwt_verify_lib's reason.
    pub fn parse(text: &[u8]) -> Result<Jwks, String> {
        let Ok(Value::Object(doc)) = serde_json::from_slice::<Value>(text) else {
            return Err("Jwks is an invalid JSON".into());
        };
        let single = [Value::Object(doc.clone())];
        let list: &[Value] = match doc.get("keys") {
            Some(Value::Array(keys)) => keys,
            Some(_) => return Err("[keys] is not an array".into()),
            None if doc.contains_key("kty") => &single,
            None => return Err("[keys] field is missing".into()),
        };
        let mut keys = Vec::with_capacity(list.len());
        for v in list {
            // jwt_verify_lib skips list elements that are not objects.
            let Value::Object(obj) = v else { continue };
            if let Some(key) = jwk(obj)? {
                keys.push(key);
            }
        }
        if keys.is_empty() {
            return Err("Jwks doesn't have any valid public key".into());
        }
        Ok(Jwks {
            keys,
            generation: next_generation(),
        })
    }
}

/// Left-pads a big-endian coordinate to the curve's field size.
fn coordinate(obj: &Map<String, Value>, name: &str, size: usize) -> Result<Vec<u8>, String> {
    let raw = bytes(obj, name)?;
    let digits = raw
        .iter()
        .position(|&b| b != 0)
        .map_or(&[][..], |i| raw.get(i..).unwrap_or_default());
    if digits.len() > size {
        return Err(format!("EC [{name}] is too long for the curve"));
    }
    let mut out = vec![0u8; size - digits.len()];
    out.extend_from_slice(digits);
    Ok(out)
}

/// One key, as jwt_verify_lib's `extractJwk` reads it; `None` for an
/// `OKP` key of a curve other than Ed25519, which it skips.
fn jwk(obj: &Map<String, Value>) -> Result<Option<Jwk>, String> {
    let kty = member(obj, "kty").map_err(|_| "[kty] is missing or not a string in [keys]")?;
    let kid = match obj.get("kid") {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    let alg = match obj.get("alg") {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    let key = match kty {
        "RSA" => {
            if !alg.is_empty() && !alg.starts_with("RS") && !alg.starts_with("PS") {
                return Err("[alg] is not started with [RS] or [PS] for an RSA key".into());
            }
            let n = rsa::BigUint::from_bytes_be(&bytes(obj, "n")?);
            let e = rsa::BigUint::from_bytes_be(&bytes(obj, "e")?);
            if e != rsa::BigUint::from(3u32) && e != rsa::BigUint::from(65_537u32) {
                return Err("RSA public key is invalid: [e] is neither 3 nor 65537".into());
            }
            Key::Rsa(rsa::RsaPublicKey::new(n, e).map_err(|_| "RSA public key is invalid")?)
        }
        "EC" => {
            if !alg.is_empty() && !alg.starts_with("ES") {
                return Err("[alg] is not started with [ES] for an EC key".into());
            }
            let crv = match obj.get("crv") {
                None => "",
                Some(Value::String(c)) => c.as_str(),
                Some(_) => return Err("[crv] field is not a string".into()),
            };
            let compatible = matches!(
                (alg.as_str(), crv),
                ("", _) | (_, "") | ("ES256", "P-256") | ("ES384", "P-384") | ("ES512", "P-521")
            );
            if !compatible {
                return Err("[crv] field specified is not compatible with [alg]".into());
            }
            let curve = match (alg.as_str(), crv) {
                ("ES256", _) | (_, "P-256") | ("", "") => "P-256",
                ("ES384", _) | (_, "P-384") => "P-384",
                ("ES512", _) | (_, "P-521") => "P-521",
                _ => return Err("[alg] or [crv] is not supported for an EC key".into()),
            };
            let size = match curve {
                "P-256" => 32,
                "P-384" => 48,
                _ => 66,
            };
            let mut point = vec![0x04];
            point.extend(coordinate(obj, "x", size)?);
            point.extend(coordinate(obj, "y", size)?);
            let bad = || format!("EC key of curve {curve} is invalid");
            match curve {
                "P-256" => Key::P256(
                    p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).map_err(|_| bad())?,
                ),
                "P-384" => Key::P384(
                    p384::ecdsa::VerifyingKey::from_sec1_bytes(&point).map_err(|_| bad())?,
                ),
                _ => Key::P521(Box::new(
                    p521::ecdsa::VerifyingKey::from_sec1_bytes(&point).map_err(|_| bad())?,
                )),
            }
        }
        "OKP" => {
            if !alg.is_empty() && alg != "EdDSA" {
                return Err("[alg] is not [EdDSA] for an OKP key".into());
            }
            if member(obj, "crv")? != "Ed25519" {
                return Ok(None);
            }
            let x: [u8; 32] = bytes(obj, "x")?
                .try_into()
                .map_err(|_| "Ed25519 [x] is not 32 bytes")?;
            Key::Ed25519(x)
        }
        "oct" => {
            if !alg.is_empty() && !matches!(alg.as_str(), "HS256" | "HS384" | "HS512") {
                return Err("[alg] is not [HS256], [HS384] or [HS512] for an oct key".into());
            }
            let k = bytes(obj, "k")?;
            if k.is_empty() {
                return Err("[k] field is empty".into());
            }
            Key::Oct(k)
        }
        other => return Err(format!("[kty] {other:?} is not supported in [keys]")),
    };
    let spki = spki(&key);
    Ok(Some(Jwk {
        kid,
        alg,
        key,
        spki,
    }))
}
