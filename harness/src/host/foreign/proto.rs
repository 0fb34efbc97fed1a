//! The two proto3 messages of `verify_signature` (envoy
//! `source/extensions/common/wasm/ext/verify_signature.proto`), read and written
//! by hand.
//!
//! Why not `prost`: the answer must follow Envoy's C++ `ParseFromString` on
//! malformed input, where prost differs — C++ keeps a known field number sent
//! with another wire type as an unknown field (prost fails the message) and
//! skips unknown groups; both fail a proto3 `string` that is not UTF-8 and keep
//! the last value of a repeated scalar field. Five fields and two wire types do
//! not justify a code generator or derive macros, and the rules are visible here.

/// `VerifySignatureArguments`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct VerifyArgs {
    /// 1: `string hash_function`.
    pub hash_function: String,
    /// 2: `bytes public_key` (DER `SubjectPublicKeyInfo`).
    pub public_key: Vec<u8>,
    /// 3: `bytes signature`.
    pub signature: Vec<u8>,
    /// 4: `bytes text`.
    pub text: Vec<u8>,
    /// 5: `string public_key_pem`.
    pub public_key_pem: String,
}

const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LEN: u64 = 2;
const START_GROUP: u64 = 3;
const END_GROUP: u64 = 4;
const FIXED32: u64 = 5;

/// Parses the arguments as C++ `ParseFromString` does: `None` when the bytes
/// are not a well-formed message.
pub(crate) fn parse_args(mut input: &[u8]) -> Option<VerifyArgs> {
    let mut args = VerifyArgs::default();
    while !input.is_empty() {
        let (field, wire) = tag(&mut input)?;
        if wire != LEN || !(1..=5).contains(&field) {
            skip(&mut input, field, wire)?;
            continue;
        }
        let value = length_delimited(&mut input)?;
        match field {
            1 => args.hash_function = String::from_utf8(value.to_vec()).ok()?,
            2 => args.public_key = value.to_vec(),
            3 => args.signature = value.to_vec(),
            4 => args.text = value.to_vec(),
            _ => args.public_key_pem = String::from_utf8(value.to_vec()).ok()?,
        }
    }
    Some(args)
}

/// `VerifySignatureResult {1 result: bool, 2 error: string}` serialized as C++
/// does: fields in number order, default values (false, "") omitted.
pub(crate) fn result_bytes(result: bool, error: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(error.len() + 8);
    if result {
        out.extend_from_slice(&[0x08, 0x01]);
    }
    if !error.is_empty() {
        out.push(0x12);
        put_varint(&mut out, u64::try_from(error.len()).unwrap_or(u64::MAX));
        out.extend_from_slice(error.as_bytes());
    }
    out
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(u8::try_from(v & 0x7f).unwrap_or(0) | 0x80);
        v >>= 7;
    }
    out.push(u8::try_from(v).unwrap_or(0));
}

/// A base-128 varint of at most 10 bytes.
fn varint(input: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..10u32 {
        let (&byte, rest) = input.split_first()?;
        *input = rest;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// A field tag: a 32-bit varint, field number ≥ 1.
fn tag(input: &mut &[u8]) -> Option<(u64, u64)> {
    let tag = varint(input)?;
    let field = tag >> 3;
    if tag > u64::from(u32::MAX) || field == 0 {
        return None;
    }
    Some((field, tag & 7))
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (head, rest) = (input.get(..n)?, input.get(n..)?);
    *input = rest;
    Some(head)
}

fn length_delimited<'a>(input: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = varint(input)?;
    // C++ reads the length as an `int32`.
    let len = usize::try_from(len).ok().filter(|&l| l <= 0x7fff_ffff)?;
    take(input, len)
}

/// Skips an unknown field (a group up to its matching end).
fn skip(input: &mut &[u8], field: u64, wire: u64) -> Option<()> {
    match wire {
        VARINT => varint(input).map(drop),
        FIXED64 => take(input, 8).map(drop),
        LEN => length_delimited(input).map(drop),
        FIXED32 => take(input, 4).map(drop),
        START_GROUP => loop {
            let (inner, inner_wire) = tag(input)?;
            if inner_wire == END_GROUP {
                return (inner == field).then_some(());
            }
            skip(input, inner, inner_wire)?;
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn field(number: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![number << 3 | 2];
        put_varint(&mut out, value.len() as u64);
        out.extend_from_slice(value);
        out
    }

    #[test]
    fn the_five_fields_are_read_in_any_order() {
        // Arrange
        let bytes = [
            field(5, b"pem"),
            field(4, b"text"),
            field(3, b"sig"),
            field(2, b"der"),
            field(1, b"sha256"),
        ]
        .concat();
        // Act
        let args = parse_args(&bytes).unwrap();
        // Assert
        assert_eq!(
            args,
            VerifyArgs {
                hash_function: "sha256".to_owned(),
                public_key: b"der".to_vec(),
                signature: b"sig".to_vec(),
                text: b"text".to_vec(),
                public_key_pem: "pem".to_owned(),
            }
        );
    }

    #[test]
    fn unknown_fields_groups_and_mismatched_wire_types_are_skipped() {
        // Arrange: field 9 varint, field 1 as a varint, a group 7 holding a
        // fixed32, a fixed64 field 8, then the hash function.
        let mut bytes = vec![9 << 3, 0x96, 0x01, 1 << 3, 5];
        bytes.extend_from_slice(&[7 << 3 | 3, 2 << 3 | 5, 1, 2, 3, 4, 7 << 3 | 4]);
        bytes.extend_from_slice(&[8 << 3 | 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        bytes.extend(field(1, b"sha1"));
        // Act
        let args = parse_args(&bytes).unwrap();
        // Assert
        assert_eq!(args.hash_function, "sha1");
    }

    #[test]
    fn truncated_or_malformed_messages_are_refused() {
        let cases: [&[u8]; 6] = [
            &[0x0a, 0x05, b'a'],       // length past the end
            &[0x00, 0x01],             // field number 0
            &[0x0e],                   // wire type 6
            &[0x3c],                   // end group with no start
            &[0x3b, 0x08, 0x01],       // group never ended
            &[0x0a, 0x02, 0xff, 0xfe], // hash_function not UTF-8
        ];
        for bytes in cases {
            assert_eq!(parse_args(bytes), None, "{bytes:02x?}");
        }
    }

    #[test]
    fn the_last_value_of_a_field_wins_and_empty_input_is_an_empty_message() {
        let bytes = [field(3, b"a"), field(3, b"b")].concat();
        assert_eq!(parse_args(&bytes).unwrap().signature, b"b");
        assert_eq!(parse_args(&[]), Some(VerifyArgs::default()));
    }

    #[test]
    fn results_omit_default_values() {
        assert_eq!(result_bytes(true, ""), [0x08, 0x01]);
        assert_eq!(result_bytes(false, "no"), [0x12, 0x02, b'n', b'o']);
        assert_eq!(result_bytes(false, ""), Vec::<u8>::new());
    }
}
