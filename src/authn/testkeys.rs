//! Test keys, made at test time, and a JWS minter for the core's tests.

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::Mac as _;
use rand::SeedableRng as _;
use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _, Signer as _};
use rsa::traits::PublicKeyParts as _;
use serde_json::{Value, json};
use sha2::Sha256;

/// The keys of one test run.
pub struct Keys {
    pub rsa: rsa::RsaPrivateKey,
    pub evil_rsa: rsa::RsaPrivateKey,
    pub p256: p256::ecdsa::SigningKey,
    pub p384: p384::ecdsa::SigningKey,
    pub ed: ed25519_dalek::SigningKey,
    pub hs: Vec<u8>,
}

/// Made once per test binary (RSA key generation takes a moment).
pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut bytes = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rng, &mut bytes);
        Keys {
            rsa: rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap(),
            evil_rsa: rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap(),
            p256: p256::ecdsa::SigningKey::random(&mut rng),
            p384: p384::ecdsa::SigningKey::random(&mut rng),
            ed: ed25519_dalek::SigningKey::from_bytes(&bytes),
            hs: b"a shared secret of thirty-two by".to_vec(),
        }
    })
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// The public JWKS of the test keys, each with a `kid` named after it.
pub fn jwks() -> Value {
    let k = keys();
    let p256 = k.p256.verifying_key().to_encoded_point(false);
    let p384 = k.p384.verifying_key().to_encoded_point(false);
    json!({"keys": [
        {"kty": "RSA", "kid": "rsa", "n": b64(&k.rsa.n().to_bytes_be()), "e": b64(&k.rsa.e().to_bytes_be())},
        {"kty": "EC", "kid": "p256", "crv": "P-256", "x": b64(p256.x().unwrap()), "y": b64(p256.y().unwrap())},
        {"kty": "EC", "kid": "p384", "crv": "P-384", "x": b64(p384.x().unwrap()), "y": b64(p384.y().unwrap())},
        {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": b64(k.ed.verifying_key().as_bytes())},
        {"kty": "oct", "kid": "hs", "k": b64(&k.hs)},
    ]})
}

/// Which key signs.
#[derive(Clone, Copy)]
pub enum Signer {
    Rsa,
    EvilRsa,
    P256,
    P384,
    Ed,
    Hs,
    /// HS256 keyed with the RSA public key's `n` (HS/RS confusion).
    HsWithRsaPublic,
}

/// A compact JWS with `header` (alg and extras) and `claims`.
pub fn mint(signer: Signer, header: Value, claims: Value) -> String {
    let k = keys();
    let h = b64(&serde_json::to_vec(&header).unwrap());
    let p = b64(&serde_json::to_vec(&claims).unwrap());
    let input = format!("{h}.{p}");
    let alg = header["alg"].as_str().unwrap_or("");
    let msg = input.as_bytes();
    let sig: Vec<u8> = match (signer, alg) {
        (Signer::Rsa | Signer::EvilRsa, a) if a.starts_with("PS") => {
            let key = if matches!(signer, Signer::Rsa) {
                &k.rsa
            } else {
                &k.evil_rsa
            };
            let mut rng = rand::rngs::StdRng::seed_from_u64(1);
            rsa::pss::BlindedSigningKey::<Sha256>::new(key.clone())
                .sign_with_rng(&mut rng, msg)
                .to_vec()
        }
        (Signer::Rsa | Signer::EvilRsa, a) => {
            let key = if matches!(signer, Signer::Rsa) {
                &k.rsa
            } else {
                &k.evil_rsa
            };
            match a {
                "RS384" => rsa::pkcs1v15::SigningKey::<sha2::Sha384>::new(key.clone())
                    .sign(msg)
                    .to_vec(),
                _ => rsa::pkcs1v15::SigningKey::<Sha256>::new(key.clone())
                    .sign(msg)
                    .to_vec(),
            }
        }
        (Signer::P256, _) => {
            let s: p256::ecdsa::Signature = k.p256.sign(msg);
            s.to_bytes().to_vec()
        }
        (Signer::P384, _) => {
            let s: p384::ecdsa::Signature = k.p384.sign(msg);
            s.to_bytes().to_vec()
        }
        (Signer::Ed, _) => {
            use ed25519_dalek::Signer as _;
            k.ed.sign(msg).to_bytes().to_vec()
        }
        (Signer::Hs, _) => hmac::Hmac::<Sha256>::new_from_slice(&k.hs)
            .unwrap()
            .chain_update(msg)
            .finalize()
            .into_bytes()
            .to_vec(),
        (Signer::HsWithRsaPublic, _) => {
            hmac::Hmac::<Sha256>::new_from_slice(&k.rsa.n().to_bytes_be())
                .unwrap()
                .chain_update(msg)
                .finalize()
                .into_bytes()
                .to_vec()
        }
    };
    format!("{input}.{}", b64(&sig))
}
