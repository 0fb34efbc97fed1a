//! The foreign function `verify_signature` (SPEC §H), called by the probe with
//! `foreign-hex:verify_signature=<hex of VerifySignatureArguments>`, in the
//! harness and in real Envoy 1.40: the answers must be equal, and equal to what
//! envoy `source/extensions/common/wasm/foreign.cc` and
//! `source/common/crypto/utility_impl.cc` say. Keys are generated per run.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;
mod probe_differential_common;

use meshwasm_harness::host::Host;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::signature::hazmat::PrehashSigner as _;
use p256::pkcs8::EncodePublicKey as _;
use p256::pkcs8::LineEnding;
use probe_differential_common::{Diff, assert_same};
use rsa::Generate as _;
use rsa::signature::SignatureEncoding as _;
use sha2::Digest as _;

const TEXT: &[u8] = b"meshwasm signs this";
const VERIFY_FAILED: &str = "Failed to verify digest. Error code: 0";
const INIT_FAILED: &str = "Failed to initialize digest verify.";

// ---- the argument message, written as the proto's wire format says

fn varint(out: &mut Vec<u8>, mut v: usize) {
    while v >= 0x80 {
        out.push((v & 0x7f) as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field(out: &mut Vec<u8>, number: u8, value: &[u8]) {
    out.push(number << 3 | 2);
    varint(out, value.len());
    out.extend_from_slice(value);
}

/// `VerifySignatureArguments {1 hash_function, 2 public_key, 3 signature,
/// 4 text, 5 public_key_pem}`; empty values are left out, as proto3 does.
#[derive(Default, Clone)]
struct Args {
    hash: Vec<u8>,
    der: Vec<u8>,
    sig: Vec<u8>,
    text: Vec<u8>,
    pem: Vec<u8>,
}

impl Args {
    fn der(hash: &str, der: &[u8], sig: &[u8]) -> Args {
        Args {
            hash: hash.as_bytes().to_vec(),
            der: der.to_vec(),
            sig: sig.to_vec(),
            text: TEXT.to_vec(),
            ..Args::default()
        }
    }

    fn pem(hash: &str, pem: &str, sig: &[u8]) -> Args {
        Args {
            hash: hash.as_bytes().to_vec(),
            pem: pem.as_bytes().to_vec(),
            sig: sig.to_vec(),
            text: TEXT.to_vec(),
            ..Args::default()
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, v) in [
            (1, &self.hash),
            (2, &self.der),
            (3, &self.sig),
            (4, &self.text),
            (5, &self.pem),
        ] {
            if !v.is_empty() {
                field(&mut out, n, v);
            }
        }
        out
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn op(args: &[u8]) -> String {
    format!("foreign-hex:verify_signature={}", hex(args))
}

/// What the probe reports for `VerifySignatureResult {result: true}`.
fn verified() -> String {
    "Ok(0801)".to_owned()
}

/// What the probe reports for `VerifySignatureResult {result: false, error}`.
fn refused(error: &str) -> String {
    let mut out = vec![0x12];
    varint(&mut out, error.len());
    out.extend_from_slice(error.as_bytes());
    format!("Ok({})", hex(&out))
}

fn body(answer: &str) -> String {
    format!(r#"{{"probe":"a","foreign-hex:verify_signature":"{answer}"}}"#)
}

// ---- keys made for this run

struct Keys {
    rsa: rsa::pkcs1v15::SigningKey<sha2::Sha256>,
    rsa512: rsa::pkcs1v15::SigningKey<sha2::Sha512>,
    rsa_der: Vec<u8>,
    rsa_pem: String,
    p256: p256::ecdsa::SigningKey,
    p256_der: Vec<u8>,
    p384: p384::ecdsa::SigningKey,
    p384_der: Vec<u8>,
    p521: p521::ecdsa::SigningKey,
    p521_der: Vec<u8>,
}

impl Keys {
    fn generate() -> Keys {
        let rsa_key = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).unwrap();
        let public = rsa_key.to_public_key();
        let p256 = p256::ecdsa::SigningKey::generate();
        let p384 = p384::ecdsa::SigningKey::generate();
        let p521 = p521::ecdsa::SigningKey::generate();
        Keys {
            rsa_der: public.to_public_key_der().unwrap().as_bytes().to_vec(),
            rsa_pem: public.to_public_key_pem(LineEnding::LF).unwrap(),
            rsa: rsa::pkcs1v15::SigningKey::new(rsa_key.clone()),
            rsa512: rsa::pkcs1v15::SigningKey::new(rsa_key),
            p256_der: p256
                .verifying_key()
                .to_public_key_der()
                .unwrap()
                .as_bytes()
                .to_vec(),
            p384_der: p384
                .verifying_key()
                .to_public_key_der()
                .unwrap()
                .as_bytes()
                .to_vec(),
            p521_der: p521
                .verifying_key()
                .to_public_key_der()
                .unwrap()
                .as_bytes()
                .to_vec(),
            p256,
            p384,
            p521,
        }
    }

    fn rsa_sig(&self) -> Vec<u8> {
        self.rsa.sign(TEXT).to_vec()
    }

    fn p256_sig(&self) -> p256::ecdsa::Signature {
        self.p256.sign(TEXT)
    }
}

/// Runs each `(case, arguments, expected answer)` in the harness and in Envoy.
fn agree_with_envoy(cases: &[(&str, Vec<u8>, String)]) {
    let mut diff = Diff::start(&["a"]);
    for (case, args, expected) in cases {
        let (harness, envoy) = diff.send("/verify", &[("x-probe-op", &op(args))]);
        assert_same(&diff, &harness, &envoy);
        assert_eq!(envoy.body, body(expected), "{case}");
    }
}

#[test]
fn rsa_pkcs1v15_and_ecdsa_der_signatures_verify_as_in_envoy() {
    // Arrange
    let k = Keys::generate();
    let rsa_sig = k.rsa_sig();
    let p256_sig = k.p256_sig();
    let p384_sha1 = {
        let digest = sha1::Sha1::digest(TEXT);
        let sig: p384::ecdsa::Signature = k.p384.sign_prehash(&digest).unwrap();
        sig.to_der().to_vec()
    };
    let p521_sig: p521::ecdsa::Signature = k.p521.sign(TEXT);
    let mut tampered = Args::der("sha256", &k.rsa_der, &rsa_sig);
    tampered.text = b"meshwasm signs that".to_vec();
    let cases = [
        (
            "RSA SHA-256, DER key",
            Args::der("sha256", &k.rsa_der, &rsa_sig).bytes(),
            verified(),
        ),
        ("RSA, other text", tampered.bytes(), refused(VERIFY_FAILED)),
        (
            "RSA, signature one byte short",
            Args::der("sha256", &k.rsa_der, &rsa_sig[1..]).bytes(),
            refused(VERIFY_FAILED),
        ),
        (
            "RSA, signed with SHA-256, checked with SHA-384",
            Args::der("sha384", &k.rsa_der, &rsa_sig).bytes(),
            refused(VERIFY_FAILED),
        ),
        (
            "RSA SHA-512, PEM key",
            Args::pem("sha512", &k.rsa_pem, &k.rsa512.sign(TEXT).to_vec()).bytes(),
            verified(),
        ),
        (
            "ECDSA P-256 SHA-256, DER signature, hash name in capitals",
            Args::der("SHA256", &k.p256_der, p256_sig.to_der().as_bytes()).bytes(),
            verified(),
        ),
        (
            "ECDSA P-256, JWS r||s signature",
            Args::der("sha256", &k.p256_der, &p256_sig.to_bytes()).bytes(),
            refused(VERIFY_FAILED),
        ),
        (
            "ECDSA P-384 over a SHA-1 digest",
            Args::der("sha1", &k.p384_der, &p384_sha1).bytes(),
            verified(),
        ),
        (
            "ECDSA P-521 SHA-512",
            Args::der("sha512", &k.p521_der, p521_sig.to_der().as_bytes()).bytes(),
            verified(),
        ),
    ];

    // Act + Assert
    agree_with_envoy(&cases);
}

#[test]
fn bad_hashes_keys_and_arguments_are_answered_as_in_envoy() {
    // Arrange
    let k = Keys::generate();
    let sig = k.rsa_sig();
    // An Ed25519 SubjectPublicKeyInfo (RFC 8410): BoringSSL imports it, and
    // `EVP_DigestVerifyInit` refuses a digest for it.
    let mut ed25519 = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    ed25519.extend_from_slice(&sha2::Sha256::digest(b"any 32 bytes"));
    let mut both = Args::der("sha256", &k.rsa_der, &sig);
    both.pem = k.rsa_pem.clone().into_bytes();
    let none = Args::der("sha256", &[], &sig);
    let mut trailing = k.rsa_der.clone();
    trailing.extend_from_slice(b"trailing bytes");
    let mut not_utf8 = Args::der("sha256", &k.rsa_der, &sig);
    not_utf8.hash = vec![0xff, 0xfe];
    let mut extra_fields = Args::der("sha256", &k.rsa_der, &sig).bytes();
    extra_fields.extend_from_slice(&[9 << 3, 0x2a, 1 << 3, 0x01]);
    let cases = [
        (
            "unsupported hash",
            Args::der("md5", &k.rsa_der, &sig).bytes(),
            refused("md5 is not supported."),
        ),
        (
            "unsupported hash and a key that does not import: the hash is checked first",
            Args::der("sha3-256", b"not a key", &sig).bytes(),
            refused("sha3-256 is not supported."),
        ),
        (
            "a DER key that does not import",
            Args::der("sha256", b"not a key", &sig).bytes(),
            refused(INIT_FAILED),
        ),
        (
            "a PEM key that does not import",
            Args::pem(
                "sha256",
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                &sig,
            )
            .bytes(),
            refused(INIT_FAILED),
        ),
        (
            "an Ed25519 key",
            Args::der("sha256", &ed25519, &sig).bytes(),
            refused(INIT_FAILED),
        ),
        (
            "bytes after the DER key are ignored",
            Args::der("sha256", &trailing, &sig).bytes(),
            verified(),
        ),
        (
            "unknown fields and a known field with another wire type are skipped",
            extra_fields,
            verified(),
        ),
        ("both keys", both.bytes(), "Err(BadArgument)".to_owned()),
        ("no key", none.bytes(), "Err(BadArgument)".to_owned()),
        (
            "a hash name that is not UTF-8",
            not_utf8.bytes(),
            "Err(BadArgument)".to_owned(),
        ),
        (
            "not a message",
            vec![0x0a, 0x7f, 0x01],
            "Err(BadArgument)".to_owned(),
        ),
    ];

    // Act + Assert
    agree_with_envoy(&cases);
}

#[test]
fn verify_signature_is_there_on_every_host_without_registering_it() {
    // Arrange
    let k = Keys::generate();
    let mut host = Host::builder().build().unwrap();
    let chain = host.load(&[common::probe_named("a")]).unwrap();
    let args = Args::der("sha256", &k.rsa_der, &k.rsa_sig()).bytes();

    // Act
    let out = chain
        .request("GET", "/")
        .header("x-probe-op", op(&args))
        .send()
        .unwrap();

    // Assert
    assert_eq!(out.body_text(), body(&verified()));
}

#[test]
fn a_p224_key_is_reported_as_not_modelled_instead_of_failing_silently() {
    // Arrange: a P-224 SubjectPublicKeyInfo (RFC 5480) — its point is never read.
    let mut spki = vec![
        0x30, 0x4e, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05,
        0x2b, 0x81, 0x04, 0x00, 0x21, 0x03, 0x3a, 0x00, 0x04,
    ];
    spki.extend_from_slice(&[0x11; 56]);
    let mut host = Host::builder().build().unwrap();
    let chain = host.load(&[common::probe_named("a")]).unwrap();
    let args = Args::der("sha256", &spki, b"sig").bytes();

    // Act
    let out = chain
        .request("GET", "/")
        .header("x-probe-op", op(&args))
        .send()
        .unwrap();

    // Assert
    let expected = "meshwasm harness: P-224 keys are not modelled (Envoy verifies them)";
    assert_eq!(out.body_text(), body(&refused(expected)));
}
