//! Envoy's `verify_signature` foreign function (SPEC.md §proxy-wasm ABI H)
//! behind the core's [`Crypto`]: RSA and ECDSA signatures checked by
//! BoringSSL instead of inside wasm. A host without the function answers
//! `NotFound` once; the VM then stops asking and the core verifies in Rust.
//!
//! The argument is the protobuf `VerifySignatureArguments {1 hash_function,
//! 2 public_key (DER), 3 signature, 4 text}` and the answer
//! `VerifySignatureResult {1 result: bool, 2 error}`. Hand-written: four
//! length-delimited fields out and one varint back do not justify a
//! protobuf runtime and code generator in every filter.

use std::cell::Cell;

use meshwasm::pipeline::Crypto;
use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;

/// The host's signature check, if it has one.
#[derive(Default)]
pub struct HostCrypto {
    missing: Cell<bool>,
}

fn varint(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = u8::try_from(n & 0x7f).unwrap_or(0);
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn field(number: u8, bytes: &[u8], out: &mut Vec<u8>) {
    out.push(number << 3 | 2);
    varint(bytes.len(), out);
    out.extend_from_slice(bytes);
}

/// What Envoy answers when it cannot use the key or the hash at all (its
/// `EVP_DigestVerifyInit` failed): not a verdict on the signature.
const INIT_FAILED: &[u8] = b"Failed to initialize digest verify.";

/// Field 1 (`result`, a bool varint) of a `VerifySignatureResult`; `None`
/// if the message does not parse, or when the host could not set the check
/// up ([`INIT_FAILED`] in field 2, `error`): the core then verifies itself.
fn result(mut msg: &[u8]) -> Option<bool> {
    let mut verified = false;
    while let Some((&key, rest)) = msg.split_first() {
        msg = rest;
        let read_varint = |msg: &mut &[u8]| -> Option<u64> {
            let mut n = 0u64;
            for shift in (0..64).step_by(7) {
                let (&b, rest) = msg.split_first()?;
                *msg = rest;
                n |= u64::from(b & 0x7f) << shift;
                if b & 0x80 == 0 {
                    return Some(n);
                }
            }
            None
        };
        match key & 7 {
            0 => {
                let v = read_varint(&mut msg)?;
                if key >> 3 == 1 {
                    verified = v != 0;
                }
            }
            2 => {
                let len = usize::try_from(read_varint(&mut msg)?).ok()?;
                let value = msg.get(..len)?;
                if key >> 3 == 2 && value == INIT_FAILED {
                    return None;
                }
                msg = msg.get(len..)?;
            }
            _ => return None,
        }
    }
    Some(verified)
}

impl Crypto for HostCrypto {
    fn verify(&self, hash: &str, spki: &[u8], signature: &[u8], text: &[u8]) -> Option<bool> {
        if self.missing.get() {
            return None;
        }
        let mut args = Vec::with_capacity(spki.len() + signature.len() + text.len() + 16);
        field(1, hash.as_bytes(), &mut args);
        field(2, spki, &mut args);
        field(3, signature, &mut args);
        field(4, text, &mut args);
        match hostcalls::call_foreign_function("verify_signature", Some(&args)) {
            Ok(Some(answer)) => result(&answer),
            Ok(None) => Some(false),
            Err(Status::NotFound) => {
                self.missing.set(true);
                None
            }
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{INIT_FAILED, field, result};

    #[test]
    fn a_verdict_is_read_and_a_check_the_host_could_not_set_up_is_none() {
        assert_eq!(result(&[0x08, 0x01]), Some(true));
        assert_eq!(result(&[]), Some(false));
        let mut refused = Vec::new();
        field(2, b"Failed to verify digest. Error code: 0", &mut refused);
        assert_eq!(result(&refused), Some(false));
        let mut not_set_up = Vec::new();
        field(2, INIT_FAILED, &mut not_set_up);
        assert_eq!(result(&not_set_up), None);
        assert_eq!(result(&[0x12, 0x05, b'a']), None, "truncated");
    }
}
