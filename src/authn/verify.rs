//! Signature verification against a key set, with jwt_verify_lib's key
//! selection (`src/verify.cc`; SPEC.md §RequestAuthentication Behaviour
//! 5–6, 9): a token with a `kid` skips keys with another `kid` (keys
//! without one are still tried), a key's `alg`, when set, must equal the
//! token's, and — stricter than Envoy, which picks the check by the key's
//! `kty` (Verified 2) — a key is tried only when its type fits the token's
//! algorithm family (RSA ↔ RS*/PS*, EC ↔ ES*, OKP ↔ EdDSA, oct ↔ HS*), so
//! neither HS/RS nor ES/RS confusion can pass. A token with `crit` never
//! verifies (RFC 7515 §4.1.11: meshwasm understands no extension).

use hmac::Mac as _;
use rsa::signature::Verifier as _;

use super::jwks::{Jwk, Jwks, Key};
use super::status::JwtStatus;
use super::token::{Alg, Hash, Jwt};
use crate::pipeline::Crypto;

/// Verifies `jwt`'s signature with the first fitting key that accepts it;
/// RS* and ES256/ES384 through the host's native check when it has one.
/// `Ok(true)` when the host's check accepted it.
pub fn verify(jwt: &Jwt<'_>, jwks: &Jwks, crypto: &dyn Crypto) -> Result<bool, JwtStatus> {
    if jwks.keys.is_empty() {
        return Err(JwtStatus::JwksNoValidKeys);
    }
    if !jwt.signature_canonical {
        return Err(JwtStatus::SignatureBadBase64);
    }
    let signature = jwt.signature.as_slice();
    let mut matched = false;
    let mut ed25519_length = false;
    for k in &jwks.keys {
        if !jwt.kid.is_empty() && !k.kid.is_empty() && k.kid != jwt.kid {
            continue;
        }
        if !k.alg.is_empty() && k.alg != jwt.alg_name {
            continue;
        }
        // Past the `kid` and `alg` filters the key counts as matched, as in
        // jwt_verify_lib, so a family mismatch is a failed verification.
        matched = true;
        let msg = jwt.signed.as_bytes();
        let host = native(jwt.alg, k, msg, signature, crypto);
        let by_host = host.is_some();
        let Some(ok) = host.or_else(|| check(jwt.alg, &k.key, msg, signature)) else {
            continue;
        };
        match ok {
            Check::Valid if !jwt.crit => return Ok(by_host),
            Check::Ed25519WrongLength => ed25519_length = true,
            _ => {}
        }
    }
    match (matched, ed25519_length) {
        (false, _) => Err(JwtStatus::KidAlgNotMatched),
        (true, true) => Err(JwtStatus::Ed25519WrongLength),
        (true, false) => Err(JwtStatus::VerificationFails),
    }
}

/// The host's check of RS* (PKCS#1 v1.5) and ES256/ES384 (DER signature),
/// when the key fits and the host answers.
fn native(alg: Alg, k: &Jwk, msg: &[u8], sig: &[u8], crypto: &dyn Crypto) -> Option<Check> {
    let spki = k.spki.as_deref()?;
    let hash = |h: Hash| match h {
        Hash::Sha256 => "sha256",
        Hash::Sha384 => "sha384",
        Hash::Sha512 => "sha512",
    };
    let (name, der) = match (alg, &k.key) {
        (Alg::Rs(h), Key::Rsa(_)) => (hash(h), sig.to_vec()),
        (Alg::Es256, Key::P256(_)) => match p256::ecdsa::Signature::from_slice(sig) {
            Ok(s) => ("sha256", s.to_der().as_bytes().to_vec()),
            Err(_) => return Some(Check::Invalid),
        },
        (Alg::Es384, Key::P384(_)) => match p384::ecdsa::Signature::from_slice(sig) {
            Ok(s) => ("sha384", s.to_der().as_bytes().to_vec()),
            Err(_) => return Some(Check::Invalid),
        },
        _ => return None,
    };
    crypto.verify(name, spki, &der, msg).map(of)
}

enum Check {
    Valid,
    Invalid,
    Ed25519WrongLength,
}

fn of(ok: bool) -> Check {
    if ok { Check::Valid } else { Check::Invalid }
}

/// `None` when the key does not fit the algorithm.
fn check(alg: Alg, key: &Key, msg: &[u8], sig: &[u8]) -> Option<Check> {
    use sha2::{Sha256, Sha384, Sha512};
    Some(match (alg, key) {
        (Alg::Rs(h), Key::Rsa(k)) => {
            let Ok(sig) = rsa::pkcs1v15::Signature::try_from(sig) else {
                return Some(Check::Invalid);
            };
            of(match h {
                Hash::Sha256 => rsa::pkcs1v15::VerifyingKey::<Sha256>::new(k.clone())
                    .verify(msg, &sig)
                    .is_ok(),
                Hash::Sha384 => rsa::pkcs1v15::VerifyingKey::<Sha384>::new(k.clone())
                    .verify(msg, &sig)
                    .is_ok(),
                Hash::Sha512 => rsa::pkcs1v15::VerifyingKey::<Sha512>::new(k.clone())
                    .verify(msg, &sig)
                    .is_ok(),
            })
        }
        (Alg::Ps(h), Key::Rsa(k)) => {
            let Ok(sig) = rsa::pss::Signature::try_from(sig) else {
                return Some(Check::Invalid);
            };
            of(match h {
                Hash::Sha256 => rsa::pss::VerifyingKey::<Sha256>::new(k.clone())
                    .verify(msg, &sig)
                    .is_ok(),
                Hash::Sha384 => rsa::pss::VerifyingKey::<Sha384>::new(k.clone())
                    .verify(msg, &sig)
                    .is_ok(),
                Hash::Sha512 => rsa::pss::VerifyingKey::<Sha512>::new(k.clone())
                    .verify(msg, &sig)
                    .is_ok(),
            })
        }
        // JWS ECDSA signatures are r‖s of fixed size; `from_slice` refuses
        // other lengths and zero scalars (the "psychic signature").
        (Alg::Es256, Key::P256(k)) => {
            of(p256::ecdsa::Signature::from_slice(sig).is_ok_and(|s| k.verify(msg, &s).is_ok()))
        }
        (Alg::Es384, Key::P384(k)) => {
            of(p384::ecdsa::Signature::from_slice(sig).is_ok_and(|s| k.verify(msg, &s).is_ok()))
        }
        (Alg::Es512, Key::P521(k)) => {
            of(p521::ecdsa::Signature::from_slice(sig).is_ok_and(|s| k.verify(msg, &s).is_ok()))
        }
        (Alg::EdDsa, Key::Ed25519(x)) => match ed25519_dalek::Signature::from_slice(sig) {
            Ok(s) => of(ed25519_dalek::VerifyingKey::from_bytes(x)
                .is_ok_and(|k| k.verify_strict(msg, &s).is_ok())),
            Err(_) => Check::Ed25519WrongLength,
        },
        (Alg::Hs(h), Key::Oct(secret)) => of(match h {
            Hash::Sha256 => hmac::Hmac::<Sha256>::new_from_slice(secret)
                .is_ok_and(|m| m.chain_update(msg).verify_slice(sig).is_ok()),
            Hash::Sha384 => hmac::Hmac::<Sha384>::new_from_slice(secret)
                .is_ok_and(|m| m.chain_update(msg).verify_slice(sig).is_ok()),
            Hash::Sha512 => hmac::Hmac::<Sha512>::new_from_slice(secret)
                .is_ok_and(|m| m.chain_update(msg).verify_slice(sig).is_ok()),
        }),
        _ => return None,
    })
}
