//! A strict reference verifier for tests: checks a compact JWS against a
//! JWKS the way meshwasm means to (SPEC.md §RequestAuthentication Behaviour
//! 5, 6, 9): the alg family is bound to the JWK's `kty` (and curve), a
//! token `kid` skips JWKs with another `kid`, a JWK `alg` must equal the
//! token's, `crit` is refused, base64url must be canonical and unpadded.
//! It checks signatures only: no `iss`, `aud`, `exp` or `nbf`.

use hmac::Hmac;
use rsa::signature::Verifier as _;
use serde_json::Value;
use sha2::{Sha256, Sha384, Sha512};

use super::{Alg, JwtError, Key, b64_decode};

/// Verifies `token` against the public keys of `jwks` (`{"keys": [...]}`);
/// the claims on success. Errors carry Envoy's status strings where one
/// fits (`Jwt verification fails`, `Jwks doesn't have key to match kid or
/// alg from Jwt`, …).
pub fn verify(token: &str, jwks: &Value) -> Result<Value, JwtError> {
    let parts: Vec<&str> = token.split('.').collect();
    let [h, p, s] = parts.as_slice() else {
        return Err(JwtError::invalid(
            "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
        ));
    };
    if h.is_empty() || p.is_empty() || s.is_empty() {
        return Err(JwtError::invalid(
            "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
        ));
    }
    let header: Value = b64_decode(h)
        .ok_or_else(|| JwtError::invalid("Jwt header is an invalid Base64url encoded"))
        .and_then(|b| {
            serde_json::from_slice(&b)
                .map_err(|_| JwtError::invalid("Jwt header is an invalid JSON"))
        })?;
    let alg = header.get("alg").and_then(Value::as_str).ok_or_else(|| {
        JwtError::invalid("Jwt header [alg] field is required and must be a string")
    })?;
    let alg = Alg::from_name(alg)
        .ok_or_else(|| JwtError::invalid("Jwt header [alg] is not supported"))?;
    if header.get("crit").is_some() {
        return Err(JwtError::invalid("Jwt verification fails"));
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.as_str()),
        Some(_) => return Err(JwtError::invalid("Jwt header [kid] field is not a string")),
    };
    let claims: Value = b64_decode(p)
        .ok_or_else(|| JwtError::invalid("Jwt payload is an invalid Base64url encoded"))
        .and_then(|b| {
            serde_json::from_slice(&b)
                .map_err(|_| JwtError::invalid("Jwt payload is an invalid JSON"))
        })?;
    let sig = b64_decode(s)
        .ok_or_else(|| JwtError::invalid("Jwt signature is an invalid Base64url encoded"))?;
    let input = format!("{h}.{p}");
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| JwtError::invalid("Jwks doesn't have any valid public key"))?;
    let candidates: Vec<&Value> = keys.iter().filter(|jwk| fits(jwk, alg, kid)).collect();
    if candidates.is_empty() {
        return Err(JwtError::invalid(
            "Jwks doesn't have key to match kid or alg from Jwt",
        ));
    }
    if candidates
        .iter()
        .any(|jwk| check(jwk, alg, input.as_bytes(), &sig))
    {
        Ok(claims)
    } else {
        Err(JwtError::invalid("Jwt verification fails"))
    }
}

/// [`verify`] against `key`'s public JWK alone.
pub fn verify_with_key(token: &str, key: &Key) -> Result<Value, JwtError> {
    verify(token, &key.jwks())
}

/// Whether `jwk` may check a token of `alg` with header `kid`.
fn fits(jwk: &Value, alg: Alg, kid: Option<&str>) -> bool {
    let str_of = |k: &str| jwk.get(k).and_then(Value::as_str);
    if str_of("kty") != Some(alg.kty()) {
        return false;
    }
    let crv_ok = match alg {
        Alg::ES256 => str_of("crv") == Some("P-256"),
        Alg::ES384 => str_of("crv") == Some("P-384"),
        Alg::ES512 => str_of("crv") == Some("P-521"),
        Alg::EdDSA => str_of("crv") == Some("Ed25519"),
        _ => true,
    };
    let kid_ok = match (kid, str_of("kid")) {
        (Some(want), Some(have)) => want == have,
        _ => true,
    };
    let alg_ok = str_of("alg").is_none_or(|a| a == alg.name());
    crv_ok && kid_ok && alg_ok
}

/// Whether `sig` is `alg`'s signature of `input` under `jwk`.
fn check(jwk: &Value, alg: Alg, input: &[u8], sig: &[u8]) -> bool {
    let bytes = |k: &str| jwk.get(k).and_then(Value::as_str).and_then(b64_decode);
    match alg {
        Alg::HS256 | Alg::HS384 | Alg::HS512 => {
            bytes("k").is_some_and(|k| hmac_ok(alg, &k, input, sig))
        }
        Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => {
            match (bytes("n"), bytes("e")) {
                (Some(n), Some(e)) => rsa_ok(alg, &n, &e, input, sig),
                _ => false,
            }
        }
        Alg::ES256 | Alg::ES384 | Alg::ES512 => match (bytes("x"), bytes("y")) {
            (Some(x), Some(y)) => {
                let sec1 = [&[4u8][..], &x, &y].concat();
                ec_ok(alg, &sec1, input, sig)
            }
            _ => false,
        },
        Alg::EdDSA => bytes("x").is_some_and(|x| ed25519_ok(&x, input, sig)),
    }
}

fn hmac_ok(alg: Alg, key: &[u8], input: &[u8], sig: &[u8]) -> bool {
    fn ok<M: hmac::Mac + hmac::KeyInit>(key: &[u8], input: &[u8], sig: &[u8]) -> bool {
        <M as hmac::KeyInit>::new_from_slice(key).is_ok_and(|mut m| {
            m.update(input);
            m.verify_slice(sig).is_ok()
        })
    }
    match alg {
        Alg::HS256 => ok::<Hmac<Sha256>>(key, input, sig),
        Alg::HS384 => ok::<Hmac<Sha384>>(key, input, sig),
        Alg::HS512 => ok::<Hmac<Sha512>>(key, input, sig),
        _ => false,
    }
}

fn rsa_ok(alg: Alg, n: &[u8], e: &[u8], input: &[u8], sig: &[u8]) -> bool {
    use rsa::{BoxedUint, pkcs1v15, pss};
    let Ok(key) = rsa::PublicKey::new(
        BoxedUint::from_be_slice_vartime(n),
        BoxedUint::from_be_slice_vartime(e),
    ) else {
        return false;
    };
    let pkcs1 = pkcs1v15::Signature::try_from(sig);
    let pss = pss::Signature::try_from(sig);
    match (alg, pkcs1, pss) {
        (Alg::RS256, Ok(s), _) => pkcs1v15::VerifyingKey::<Sha256>::new(key)
            .verify(input, &s)
            .is_ok(),
        (Alg::RS384, Ok(s), _) => pkcs1v15::VerifyingKey::<Sha384>::new(key)
            .verify(input, &s)
            .is_ok(),
        (Alg::RS512, Ok(s), _) => pkcs1v15::VerifyingKey::<Sha512>::new(key)
            .verify(input, &s)
            .is_ok(),
        (Alg::PS256, _, Ok(s)) => pss::VerifyingKey::<Sha256>::new(key)
            .verify(input, &s)
            .is_ok(),
        (Alg::PS384, _, Ok(s)) => pss::VerifyingKey::<Sha384>::new(key)
            .verify(input, &s)
            .is_ok(),
        (Alg::PS512, _, Ok(s)) => pss::VerifyingKey::<Sha512>::new(key)
            .verify(input, &s)
            .is_ok(),
        _ => false,
    }
}

fn ec_ok(alg: Alg, sec1: &[u8], input: &[u8], sig: &[u8]) -> bool {
    match alg {
        Alg::ES256 => match (
            p256::ecdsa::VerifyingKey::from_sec1_bytes(sec1),
            p256::ecdsa::Signature::from_slice(sig),
        ) {
            (Ok(k), Ok(s)) => k.verify(input, &s).is_ok(),
            _ => false,
        },
        Alg::ES384 => match (
            p384::ecdsa::VerifyingKey::from_sec1_bytes(sec1),
            p384::ecdsa::Signature::from_slice(sig),
        ) {
            (Ok(k), Ok(s)) => k.verify(input, &s).is_ok(),
            _ => false,
        },
        Alg::ES512 => match (
            p521::ecdsa::VerifyingKey::from_sec1_bytes(sec1),
            p521::ecdsa::Signature::from_slice(sig),
        ) {
            (Ok(k), Ok(s)) => k.verify(input, &s).is_ok(),
            _ => false,
        },
        _ => false,
    }
}

fn ed25519_ok(x: &[u8], input: &[u8], sig: &[u8]) -> bool {
    let Ok(x) = <[u8; 32]>::try_from(x) else {
        return false;
    };
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&x) else {
        return false;
    };
    ed25519_dalek::Signature::from_slice(sig).is_ok_and(|s| key.verify_strict(input, &s).is_ok())
}
