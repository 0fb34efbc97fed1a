//! Property tests of authentication parsing: whatever token a client sends
//! and whatever key set a server (or a user) provides, parsing, key
//! selection and verification answer — a status or success — and never
//! panic (a panic traps the VM: SPEC.md §proxy-wasm ABI G).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use meshwasm::authn::jwks::Jwks;
use meshwasm::authn::token::Jwt;
use meshwasm::authn::verify::verify;
use meshwasm::pipeline::NoCrypto;
use proptest::prelude::*;
use serde_json::{Value, json};

/// JSON of the shapes tokens and keys are made of.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[A-Za-z0-9_=+/.-]{0,24}".prop_map(Value::String),
        prop_oneof![
            Just("RS256"),
            Just("PS384"),
            Just("ES256"),
            Just("ES512"),
            Just("EdDSA"),
            Just("HS256"),
            Just("none"),
            Just("RSA"),
            Just("EC"),
            Just("OKP"),
            Just("oct"),
            Just("P-256"),
            Just("P-521"),
            Just("Ed25519"),
            Just("AQAB"),
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("alg".to_owned()),
                    Just("kid".to_owned()),
                    Just("kty".to_owned()),
                    Just("crv".to_owned()),
                    Just("x".to_owned()),
                    Just("y".to_owned()),
                    Just("n".to_owned()),
                    Just("e".to_owned()),
                    Just("k".to_owned()),
                    Just("keys".to_owned()),
                    Just("exp".to_owned()),
                    Just("nbf".to_owned()),
                    Just("aud".to_owned()),
                    Just("iss".to_owned()),
                    Just("crit".to_owned()),
                    "[a-z]{1,6}",
                ],
                inner,
                0..6,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn section() -> impl Strategy<Value = String> {
    prop_oneof![
        any_json().prop_map(|v| B64.encode(serde_json::to_vec(&v).unwrap())),
        "[A-Za-z0-9_=+/-]{0,40}",
        prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| B64.encode(b)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn any_token_is_parsed_or_refused_never_a_panic(raw in "[ -~]{0,200}") {
        let _ = Jwt::parse(&raw);
    }

    #[test]
    fn any_three_sections_verify_or_refuse_against_any_key_set(
        h in section(), p in section(), s in section(), jwks in any_json(), now in any::<u64>(),
    ) {
        let token = format!("{h}.{p}.{s}");
        let keys = Jwks::parse(&serde_json::to_vec(&jwks).unwrap());
        if let Ok(jwt) = Jwt::parse(&token) {
            let _ = jwt.check_time(now);
            let _ = jwt.audience_allowed(&["a".to_owned()]);
            if let Ok(keys) = keys {
                let _ = verify(&jwt, &keys, &NoCrypto);
            }
        }
    }

    #[test]
    fn any_key_set_text_is_parsed_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = Jwks::parse(&bytes);
    }
}
