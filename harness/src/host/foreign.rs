//! Envoy's foreign function `verify_signature` (SPEC §H; envoy
//! `source/extensions/common/wasm/foreign.cc`, `source/common/crypto/utility_impl.cc`),
//! natively, registered on every host as Envoy always registers it.
//!
//! The argument is a serialized `VerifySignatureArguments`; the answer, with status
//! `Ok` even when the signature does not verify, a serialized
//! `VerifySignatureResult {result, error}` (`proto.rs`). In Envoy's order:
//! 1. arguments that do not parse, or not exactly one of `public_key` (DER
//!    `SubjectPublicKeyInfo`) and `public_key_pem` → status `BadArgument`;
//! 2. a hash other than `sha1|sha224|sha256|sha384|sha512` (any case) →
//!    `"<name> is not supported."`;
//! 3. a key BoringSSL cannot import (`EVP_parse_public_key`,
//!    `PEM_read_bio_PUBKEY`) or cannot verify with (`EVP_DigestVerifyInit`:
//!    Ed25519 refuses a digest, X25519 and DSA have no verifier) →
//!    `"Failed to initialize digest verify."`;
//! 4. `EVP_DigestVerify` with its defaults — RSA PKCS#1 v1.5, ECDSA with a DER
//!    signature — failing (any bad or wrong-length signature) →
//!    `"Failed to verify digest. Error code: 0"`; success → `result: true`.
//!
//! Keys: RSA (BoringSSL's `rsa_check_public_key` limits: odd modulus of at most
//! 16384 bits, odd exponent of 2 to 33 bits, `NULL` algorithm parameters) and
//! ECDSA on P-256, P-384 and P-521 (named curves; compressed or uncompressed
//! points). P-224, which BoringSSL also verifies, is not modelled: the answer says
//! so in `error` instead of pretending. As with `EVP_parse_public_key`, bytes
//! after the DER key are ignored.

mod proto;

use base64::Engine as _;
use rsa::Pkcs1v15Sign;
use rsa::pkcs1::der::asn1::UintRef;
use rsa::signature::hazmat::PrehashVerifier as _;
use sha2::Digest as _;
use spki::der::{Decode as _, SliceReader};
use spki::{ObjectIdentifier, SubjectPublicKeyInfoRef};

use super::abi::Status;

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP224R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.33");
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const SECP521R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");

/// `utility_impl.cc` `verifySignature`, when the key is null or refuses the digest.
const INIT_FAILED: &str = "Failed to initialize digest verify.";
/// `utility_impl.cc` `verifySignature`, when `EVP_DigestVerify` returns 0.
const VERIFY_FAILED: &str = "Failed to verify digest. Error code: 0";
/// BoringSSL's `OPENSSL_RSA_MAX_MODULUS_BITS`.
const RSA_MAX_MODULUS_BITS: usize = 16 * 1024;

/// The foreign function: serialized arguments in, serialized result or a
/// proxy-wasm status out.
pub(crate) fn verify_signature(arguments: &[u8]) -> Result<Vec<u8>, u32> {
    let bad = Status::BadArgument.code();
    let args = proto::parse_args(arguments).ok_or(bad)?;
    let key = match (args.public_key.is_empty(), args.public_key_pem.is_empty()) {
        (false, true) => import_der(&args.public_key),
        (true, false) => import_pem(&args.public_key_pem),
        _ => return Err(bad),
    };
    let answer = verify(
        &args.hash_function,
        key.as_ref(),
        &args.signature,
        &args.text,
    );
    Ok(match answer {
        Ok(()) => proto::result_bytes(true, ""),
        Err(error) => proto::result_bytes(false, &error),
    })
}

/// `getHashFunction`: the digests BoringSSL's `EVP_sha*` give.
#[derive(Debug, Clone, Copy)]
enum Hash {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn named(name: &str) -> Option<Hash> {
        Some(match name.to_ascii_lowercase().as_str() {
            "sha1" => Hash::Sha1,
            "sha224" => Hash::Sha224,
            "sha256" => Hash::Sha256,
            "sha384" => Hash::Sha384,
            "sha512" => Hash::Sha512,
            _ => return None,
        })
    }

    fn digest(self, text: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha1 => sha1::Sha1::digest(text).to_vec(),
            Hash::Sha224 => sha2::Sha224::digest(text).to_vec(),
            Hash::Sha256 => sha2::Sha256::digest(text).to_vec(),
            Hash::Sha384 => sha2::Sha384::digest(text).to_vec(),
            Hash::Sha512 => sha2::Sha512::digest(text).to_vec(),
        }
    }

    /// RSA PKCS#1 v1.5 with this hash's `DigestInfo` prefix.
    fn pkcs1v15(self) -> Pkcs1v15Sign {
        match self {
            Hash::Sha1 => Pkcs1v15Sign::new::<sha1::Sha1>(),
            Hash::Sha224 => Pkcs1v15Sign::new::<sha2::Sha224>(),
            Hash::Sha256 => Pkcs1v15Sign::new::<sha2::Sha256>(),
            Hash::Sha384 => Pkcs1v15Sign::new::<sha2::Sha384>(),
            Hash::Sha512 => Pkcs1v15Sign::new::<sha2::Sha512>(),
        }
    }
}

/// A public key BoringSSL would import and verify with.
enum PublicKey {
    Rsa(rsa::PublicKey),
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    P521(p521::ecdsa::VerifyingKey),
    /// A key BoringSSL verifies with and the harness cannot (its curve).
    Unmodelled(&'static str),
}

/// `verifySignature` on an imported key (`None`: BoringSSL's null key).
fn verify(
    hash_name: &str,
    key: Option<&PublicKey>,
    signature: &[u8],
    text: &[u8],
) -> Result<(), String> {
    let hash = Hash::named(hash_name).ok_or_else(|| format!("{hash_name} is not supported."))?;
    let key = key.ok_or_else(|| INIT_FAILED.to_owned())?;
    let digest = hash.digest(text);
    let verified = match key {
        PublicKey::Rsa(k) => k.verify(hash.pkcs1v15(), &digest, signature).is_ok(),
        PublicKey::P256(k) => p256::ecdsa::Signature::from_der(signature)
            .is_ok_and(|s| k.verify_prehash(&digest, &s).is_ok()),
        PublicKey::P384(k) => p384::ecdsa::Signature::from_der(signature)
            .is_ok_and(|s| k.verify_prehash(&digest, &s).is_ok()),
        PublicKey::P521(k) => p521::ecdsa::Signature::from_der(signature)
            .is_ok_and(|s| k.verify_prehash(&digest, &s).is_ok()),
        PublicKey::Unmodelled(curve) => {
            return Err(format!(
                "meshwasm harness: {curve} keys are not modelled (Envoy verifies them)"
            ));
        }
    };
    if verified {
        Ok(())
    } else {
        Err(VERIFY_FAILED.to_owned())
    }
}

/// `PEM_read_bio_PUBKEY`: the first `PUBLIC KEY` block (other blocks and text
/// around it are skipped; RFC 1421 `Name: value` header lines are ignored), its
/// base64 body decoded, then read as DER.
fn import_pem(pem: &str) -> Option<PublicKey> {
    let mut lines = pem.lines().map(str::trim);
    lines.find(|l| *l == "-----BEGIN PUBLIC KEY-----")?;
    let mut body = String::new();
    for line in lines {
        if line == "-----END PUBLIC KEY-----" {
            let der = base64::engine::general_purpose::STANDARD
                .decode(&body)
                .ok()?;
            return import_der(&der);
        }
        if !line.contains(':') {
            body.push_str(line);
        }
    }
    None
}

/// `EVP_parse_public_key`: one DER `SubjectPublicKeyInfo` (what follows it is
/// ignored), RSA or EC on a named curve.
fn import_der(der: &[u8]) -> Option<PublicKey> {
    let mut reader = SliceReader::new(der).ok()?;
    let spki = SubjectPublicKeyInfoRef::decode(&mut reader).ok()?;
    let key = spki.subject_public_key.as_bytes()?;
    let params = spki.algorithm.parameters;
    match spki.algorithm.oid {
        RSA_ENCRYPTION if params.is_some_and(|p| p.is_null()) => import_rsa(key),
        EC_PUBLIC_KEY => {
            let curve: ObjectIdentifier = params?.decode_as().ok()?;
            match curve {
                SECP256R1 => p256::ecdsa::VerifyingKey::from_sec1_bytes(key)
                    .ok()
                    .map(PublicKey::P256),
                SECP384R1 => p384::ecdsa::VerifyingKey::from_sec1_bytes(key)
                    .ok()
                    .map(PublicKey::P384),
                SECP521R1 => p521::ecdsa::VerifyingKey::from_sec1_bytes(key)
                    .ok()
                    .map(PublicKey::P521),
                SECP224R1 => Some(PublicKey::Unmodelled("P-224")),
                _ => None,
            }
        }
        _ => None,
    }
}

/// `RSA_parse_public_key` and `rsa_check_public_key`.
fn import_rsa(der: &[u8]) -> Option<PublicKey> {
    let key = rsa::pkcs1::RsaPublicKey::<UintRef<'_>>::from_der(der).ok()?;
    let (n, e) = (key.modulus.as_bytes(), key.public_exponent.as_bytes());
    let e_bits = bit_len(e);
    let odd = |b: &[u8]| b.last().is_some_and(|l| l & 1 == 1);
    if !odd(n) || !odd(e) || !(2..=33).contains(&e_bits) || bit_len(n) > RSA_MAX_MODULUS_BITS {
        return None;
    }
    let n = rsa::BoxedUint::from_be_slice_vartime(n);
    let e = rsa::BoxedUint::from_be_slice_vartime(e);
    rsa::PublicKey::new_with_size_limits(n, e, 1..=RSA_MAX_MODULUS_BITS)
        .ok()
        .map(PublicKey::Rsa)
}

/// Bits of a big-endian unsigned integer.
fn bit_len(bytes: &[u8]) -> usize {
    let Some(at) = bytes.iter().position(|b| *b != 0) else {
        return 0;
    };
    let lead = bytes.get(at).copied().unwrap_or(0);
    (bytes.len() - at - 1) * 8 + usize::try_from(8 - lead.leading_zeros()).unwrap_or(0)
}
