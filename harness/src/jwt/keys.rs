//! Signing keys of every JWS family, their public JWKs and signing.

use hmac::Hmac;
use rsa::Generate as _;
use rsa::pkcs8::{EncodePublicKey as _, LineEnding};
use rsa::signature::{SignatureEncoding as _, Signer as _};
use rsa::traits::PublicKeyParts as _;
use serde_json::{Map, Value};
use sha2::{Sha256, Sha384, Sha512};

use super::{Alg, JwtError, b64};

/// RSA modulus size of [`Key::generate`], in bits.
pub const RSA_BITS: usize = 2048;

#[derive(Clone)]
enum Material {
    Rsa(Box<rsa::PrivateKey>),
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    P521(p521::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
    Oct(Vec<u8>),
}

/// A private key with an optional `kid` and JWK `alg`, made at test time.
#[derive(Clone)]
pub struct Key {
    material: Material,
    kid: Option<String>,
    jwk_alg: Option<String>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kty", &self.kty())
            .field("crv", &self.crv())
            .field("kid", &self.kid)
            .field("alg", &self.jwk_alg)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// A fresh key that `alg` signs with: RSA 2048 for `RS*`/`PS*`, the
    /// curve of `ES*`, Ed25519, or a random HMAC secret as long as the hash
    /// (32/48/64 bytes). No `kid`, no JWK `alg`.
    pub fn generate(alg: Alg) -> Result<Key, JwtError> {
        match alg {
            Alg::HS256 => Key::random_secret(32),
            Alg::HS384 => Key::random_secret(48),
            Alg::HS512 => Key::random_secret(64),
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => {
                Key::rsa(RSA_BITS)
            }
            Alg::ES256 => Ok(Key::from(Material::P256(
                p256::ecdsa::SigningKey::generate(),
            ))),
            Alg::ES384 => Ok(Key::from(Material::P384(
                p384::ecdsa::SigningKey::generate(),
            ))),
            Alg::ES512 => Ok(Key::from(Material::P521(
                p521::ecdsa::SigningKey::generate(),
            ))),
            Alg::EdDSA => Key::ed25519(),
        }
    }

    /// A fresh RSA key of `bits` bits (exponent 65537).
    pub fn rsa(bits: usize) -> Result<Key, JwtError> {
        let key = rsa::PrivateKey::new(&mut getrandom::SysRng, bits).map_err(JwtError::crypto)?;
        Ok(Key::from(Material::Rsa(Box::new(key))))
    }

    /// A fresh Ed25519 key.
    pub fn ed25519() -> Result<Key, JwtError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(JwtError::crypto)?;
        Ok(Key::from(Material::Ed25519(
            ed25519_dalek::SigningKey::from_bytes(&seed),
        )))
    }

    /// An HMAC key (`kty: oct`) with this secret.
    pub fn hmac(secret: impl Into<Vec<u8>>) -> Key {
        Key::from(Material::Oct(secret.into()))
    }

    fn random_secret(len: usize) -> Result<Key, JwtError> {
        let mut secret = vec![0u8; len];
        getrandom::fill(&mut secret).map_err(JwtError::crypto)?;
        Ok(Key::hmac(secret))
    }

    /// Sets the `kid` (in the JWK and in headers [`super::mint`] writes).
    pub fn with_kid(mut self, kid: &str) -> Key {
        self.kid = Some(kid.to_owned());
        self
    }

    /// Sets the JWK's `alg` member (any string, so tests can label a key
    /// with a wrong algorithm).
    pub fn with_alg(mut self, alg: &str) -> Key {
        self.jwk_alg = Some(alg.to_owned());
        self
    }

    /// The key id, if set.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The JWK `kty`: `RSA`, `EC`, `OKP` or `oct`.
    pub fn kty(&self) -> &'static str {
        match self.material {
            Material::Rsa(_) => "RSA",
            Material::P256(_) | Material::P384(_) | Material::P521(_) => "EC",
            Material::Ed25519(_) => "OKP",
            Material::Oct(_) => "oct",
        }
    }

    /// The JWK `crv` (`P-256`, `P-384`, `P-521`, `Ed25519`), if any.
    pub fn crv(&self) -> Option<&'static str> {
        match self.material {
            Material::P256(_) => Some("P-256"),
            Material::P384(_) => Some("P-384"),
            Material::P521(_) => Some("P-521"),
            Material::Ed25519(_) => Some("Ed25519"),
            Material::Rsa(_) | Material::Oct(_) => None,
        }
    }

    /// Whether `alg` signs with this kind of key (`kty` and curve).
    pub fn fits(&self, alg: Alg) -> bool {
        matches!(
            (&self.material, alg),
            (Material::Oct(_), Alg::HS256 | Alg::HS384 | Alg::HS512)
                | (
                    Material::Rsa(_),
                    Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512
                )
                | (Material::P256(_), Alg::ES256)
                | (Material::P384(_), Alg::ES384)
                | (Material::P521(_), Alg::ES512)
                | (Material::Ed25519(_), Alg::EdDSA)
        )
    }

    /// The public JWK: `kty` and its members (`n`/`e`, `crv`/`x`/`y`,
    /// `crv`/`x`; for `oct` the secret `k`), then `kid` and `alg` if set.
    pub fn public_jwk(&self) -> Value {
        let mut jwk = Map::new();
        jwk.insert("kty".to_owned(), Value::from(self.kty()));
        if let Some(crv) = self.crv() {
            jwk.insert("crv".to_owned(), Value::from(crv));
        }
        match &self.material {
            Material::Rsa(k) => {
                jwk.insert(
                    "n".to_owned(),
                    Value::from(b64(k.n().to_be_bytes_trimmed_vartime())),
                );
                jwk.insert(
                    "e".to_owned(),
                    Value::from(b64(k.e().to_be_bytes_trimmed_vartime())),
                );
            }
            Material::P256(k) => ec_members(&mut jwk, &k.verifying_key().to_sec1_bytes()),
            Material::P384(k) => ec_members(&mut jwk, &k.verifying_key().to_sec1_bytes()),
            Material::P521(k) => ec_members(&mut jwk, &k.verifying_key().to_sec1_bytes()),
            Material::Ed25519(k) => {
                jwk.insert(
                    "x".to_owned(),
                    Value::from(b64(k.verifying_key().to_bytes())),
                );
            }
            Material::Oct(secret) => {
                jwk.insert("k".to_owned(), Value::from(b64(secret)));
            }
        }
        if let Some(kid) = &self.kid {
            jwk.insert("kid".to_owned(), Value::from(kid.as_str()));
        }
        if let Some(alg) = &self.jwk_alg {
            jwk.insert("alg".to_owned(), Value::from(alg.as_str()));
        }
        Value::Object(jwk)
    }

    /// A JWKS document holding only this key's public JWK.
    pub fn jwks(&self) -> Value {
        super::jwks(&[self])
    }

    /// The RSA public key as SPKI PEM (`-----BEGIN PUBLIC KEY-----`, LF line
    /// ends), the classic secret of the HS/RS confusion attack.
    pub fn rsa_public_key_pem(&self) -> Option<String> {
        match &self.material {
            Material::Rsa(k) => k.to_public_key().to_public_key_pem(LineEnding::LF).ok(),
            _ => None,
        }
    }

    /// The RSA public key as SPKI DER.
    pub fn rsa_public_key_der(&self) -> Option<Vec<u8>> {
        match &self.material {
            Material::Rsa(k) => k
                .to_public_key()
                .to_public_key_der()
                .ok()
                .map(|d| d.as_bytes().to_vec()),
            _ => None,
        }
    }

    /// The HMAC secret of an `oct` key.
    pub fn secret(&self) -> Option<&[u8]> {
        match &self.material {
            Material::Oct(s) => Some(s),
            _ => None,
        }
    }

    /// Signs `input` (the JWS signing input) with `alg`; the raw JWS
    /// signature bytes.
    pub fn sign(&self, alg: Alg, input: &[u8]) -> Result<Vec<u8>, JwtError> {
        if !self.fits(alg) {
            return Err(JwtError::KeyMismatch {
                alg,
                kty: self.kty(),
            });
        }
        match (&self.material, alg) {
            (Material::Oct(secret), _) => hmac_sign(alg, secret, input),
            (Material::Rsa(k), _) => rsa_sign(alg, k, input),
            (Material::P256(k), _) => {
                let sig: p256::ecdsa::Signature = k.try_sign(input).map_err(JwtError::crypto)?;
                Ok(sig.to_bytes().to_vec())
            }
            (Material::P384(k), _) => {
                let sig: p384::ecdsa::Signature = k.try_sign(input).map_err(JwtError::crypto)?;
                Ok(sig.to_bytes().to_vec())
            }
            (Material::P521(k), _) => {
                let sig: p521::ecdsa::Signature = k.try_sign(input).map_err(JwtError::crypto)?;
                Ok(sig.to_bytes().to_vec())
            }
            (Material::Ed25519(k), _) => Ok(k.sign(input).to_bytes().to_vec()),
        }
    }
}

impl From<Material> for Key {
    fn from(material: Material) -> Key {
        Key {
            material,
            kid: None,
            jwk_alg: None,
        }
    }
}

/// `x` and `y` of an uncompressed SEC1 point (`04 ‖ x ‖ y`).
fn ec_members(jwk: &mut Map<String, Value>, sec1: &[u8]) {
    let coords = sec1.get(1..).unwrap_or_default();
    let (x, y) = coords.split_at(coords.len() / 2);
    jwk.insert("x".to_owned(), Value::from(b64(x)));
    jwk.insert("y".to_owned(), Value::from(b64(y)));
}

/// HMAC of `input` with `secret` by the hash of `alg` (any secret, even one
/// that is not an `oct` key: [`super::malformed::hs_with_rsa_public_key`]).
pub(crate) fn hmac_sign(alg: Alg, secret: &[u8], input: &[u8]) -> Result<Vec<u8>, JwtError> {
    fn tag<M: hmac::Mac + hmac::KeyInit>(secret: &[u8], input: &[u8]) -> Result<Vec<u8>, JwtError> {
        let mut mac = <M as hmac::KeyInit>::new_from_slice(secret).map_err(JwtError::crypto)?;
        mac.update(input);
        Ok(mac.finalize().into_bytes().to_vec())
    }
    match alg {
        Alg::HS256 => tag::<Hmac<Sha256>>(secret, input),
        Alg::HS384 => tag::<Hmac<Sha384>>(secret, input),
        Alg::HS512 => tag::<Hmac<Sha512>>(secret, input),
        _ => Err(JwtError::KeyMismatch { alg, kty: "oct" }),
    }
}

fn rsa_sign(alg: Alg, key: &rsa::PrivateKey, input: &[u8]) -> Result<Vec<u8>, JwtError> {
    use rsa::{pkcs1v15, pss};
    let key = key.clone();
    let sig = match alg {
        Alg::RS256 => pkcs1v15::SigningKey::<Sha256>::new(key)
            .try_sign(input)
            .map(|s| s.to_vec()),
        Alg::RS384 => pkcs1v15::SigningKey::<Sha384>::new(key)
            .try_sign(input)
            .map(|s| s.to_vec()),
        Alg::RS512 => pkcs1v15::SigningKey::<Sha512>::new(key)
            .try_sign(input)
            .map(|s| s.to_vec()),
        Alg::PS256 => pss::SigningKey::<Sha256>::new(key)
            .try_sign(input)
            .map(|s| s.to_vec()),
        Alg::PS384 => pss::SigningKey::<Sha384>::new(key)
            .try_sign(input)
            .map(|s| s.to_vec()),
        Alg::PS512 => pss::SigningKey::<Sha512>::new(key)
            .try_sign(input)
            .map(|s| s.to_vec()),
        _ => return Err(JwtError::KeyMismatch { alg, kty: "RSA" }),
    };
    sig.map_err(JwtError::crypto)
}
