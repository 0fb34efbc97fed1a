#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use serde_json::{Value, json};

use super::malformed::{self, Part, PublicKeyBytes};
use super::{Alg, Claims, Key, b64, b64_decode, jwks, mint, verify, verify_with_key};

fn claims() -> Value {
    Claims::new("https://issuer.test", "alice").to_value()
}

fn decode(part: &str) -> Value {
    serde_json::from_slice(&b64_decode(part).unwrap()).unwrap()
}

#[test]
fn a_token_of_every_algorithm_verifies_against_its_key_jwks() {
    for alg in Alg::ALL {
        let key = Key::generate(alg).unwrap().with_kid(&format!("kid-{alg}"));

        // One set of claims: `iat`/`exp` come from the clock, which may
        // tick between minting and comparing (slow key generation, a
        // loaded CI machine).
        let claims = claims();
        let token = mint(alg, &key, &json!({}), &claims).unwrap();

        assert_eq!(verify(&token, &key.jwks()).unwrap(), claims, "{alg}");
    }
}

#[test]
fn a_token_does_not_verify_against_another_key_of_the_same_algorithm() {
    for alg in Alg::ALL {
        let key = Key::generate(alg).unwrap();
        let other = Key::generate(alg).unwrap();

        let token = mint(alg, &key, &json!({}), &claims()).unwrap();

        let err = verify_with_key(&token, &other).unwrap_err().to_string();
        assert!(err.contains("Jwt verification fails"), "{alg}: {err}");
    }
}

#[test]
fn the_header_has_alg_typ_and_kid_and_extra_members_override_or_remove_them() {
    let key = Key::generate(Alg::HS256).unwrap().with_kid("k1");

    let token = mint(
        Alg::HS256,
        &key,
        &json!({"typ": null, "cty": "x"}),
        &claims(),
    )
    .unwrap();

    let header = decode(token.split('.').next().unwrap());
    assert_eq!(header, json!({"alg": "HS256", "kid": "k1", "cty": "x"}));
}

#[test]
fn public_jwks_carry_the_members_of_their_key_type_and_no_private_parts() {
    let cases = [
        (Alg::RS256, vec!["kty", "n", "e", "kid", "alg"]),
        (Alg::ES256, vec!["kty", "crv", "x", "y", "kid", "alg"]),
        (Alg::ES384, vec!["kty", "crv", "x", "y", "kid", "alg"]),
        (Alg::ES512, vec!["kty", "crv", "x", "y", "kid", "alg"]),
        (Alg::EdDSA, vec!["kty", "crv", "x", "kid", "alg"]),
        (Alg::HS384, vec!["kty", "k", "kid", "alg"]),
    ];
    for (alg, members) in cases {
        let key = Key::generate(alg)
            .unwrap()
            .with_kid("k")
            .with_alg(alg.name());

        let jwk = key.public_jwk();

        let names: Vec<&str> = jwk
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(names, members, "{alg}");
        assert_eq!(jwk["kty"], alg.kty());
    }
}

#[test]
fn ec_coordinates_have_the_curve_field_size() {
    for (alg, len) in [(Alg::ES256, 32), (Alg::ES384, 48), (Alg::ES512, 66)] {
        let jwk = Key::generate(alg).unwrap().public_jwk();

        let x = b64_decode(jwk["x"].as_str().unwrap()).unwrap();
        let y = b64_decode(jwk["y"].as_str().unwrap()).unwrap();
        assert_eq!((x.len(), y.len()), (len, len), "{alg}");
    }
}

#[test]
fn signing_with_a_key_of_another_family_is_refused() {
    let ec = Key::generate(Alg::ES256).unwrap();

    let err = mint(Alg::RS256, &ec, &json!({}), &claims()).unwrap_err();

    assert_eq!(err.to_string(), "RS256 cannot sign with a EC key");
}

#[test]
fn a_token_kid_skips_jwks_of_another_kid_but_not_jwks_without_one() {
    let a = Key::generate(Alg::ES256).unwrap().with_kid("a");
    let token = mint(Alg::ES256, &a, &json!({}), &claims()).unwrap();
    let b = Key::generate(Alg::ES256).unwrap().with_kid("b");
    let a_without_kid = {
        let mut jwk = a.public_jwk();
        jwk.as_object_mut().unwrap().remove("kid");
        json!({"keys": [jwk]})
    };

    let other_kid = verify(&token, &jwks(&[&b]));
    let no_kid = verify(&token, &a_without_kid);

    assert!(
        other_kid
            .unwrap_err()
            .to_string()
            .contains("Jwks doesn't have key to match kid or alg from Jwt")
    );
    assert!(no_kid.is_ok());
}

#[test]
fn a_jwk_alg_other_than_the_token_alg_excludes_the_key() {
    let key = Key::generate(Alg::RS256).unwrap().with_alg("PS256");

    let token = mint(Alg::RS256, &key, &json!({}), &claims()).unwrap();

    assert!(verify_with_key(&token, &key).is_err());
}

#[test]
fn unsigned_and_malformed_tokens_do_not_verify() {
    let key = Key::generate(Alg::RS256).unwrap();
    let good = mint(Alg::RS256, &key, &json!({}), &claims()).unwrap();
    let forged = Claims::new("https://issuer.test", "mallory").to_value();
    let bad = [
        malformed::alg_none(&claims(), None),
        malformed::alg_none(&claims(), Some(b"sig")),
        malformed::two_parts(&good),
        malformed::garbage(),
        malformed::bad_base64(&good, Part::Header),
        malformed::bad_base64(&good, Part::Payload),
        malformed::bad_base64(&good, Part::Signature),
        malformed::padded(&good, Part::Signature),
        malformed::tampered(&good, &forged),
        malformed::bad_signature(&good),
        malformed::with_crit(Alg::RS256, &key, &claims()).unwrap(),
        malformed::with_kid(Alg::RS256, &key.clone().with_kid("a"), "b", &claims()).unwrap(),
    ];

    for token in bad {
        assert!(
            verify_with_key(&token, &key.clone().with_kid("a")).is_err(),
            "{token}"
        );
    }
}

#[test]
fn alg_none_tokens_have_an_empty_or_given_signature_part() {
    let token = malformed::alg_none(&json!({"sub": "x"}), None);

    assert!(token.ends_with('.'), "{token}");
    assert_eq!(decode(token.split('.').next().unwrap())["alg"], "none");
    assert!(malformed::alg_none(&json!({}), Some(b"s")).ends_with(&format!(".{}", b64("s"))));
}

#[test]
fn the_hs_rs_confusion_token_verifies_only_with_the_public_key_as_hmac_secret() {
    let rsa = Key::generate(Alg::RS256).unwrap().with_kid("rsa");
    let pem = rsa.rsa_public_key_pem().unwrap();

    let claims = claims();
    let token =
        malformed::hs_with_rsa_public_key(Alg::HS256, &rsa, PublicKeyBytes::Pem, &claims).unwrap();

    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
    let as_oct = Key::hmac(pem.into_bytes()).with_kid("rsa");
    assert_eq!(verify_with_key(&token, &as_oct).unwrap(), claims);
    assert!(verify_with_key(&token, &rsa).is_err());
    assert_eq!(decode(token.split('.').next().unwrap())["kid"], "rsa");
}

#[test]
fn a_mislabelled_token_carries_one_alg_and_the_signature_of_another() {
    let ec = Key::generate(Alg::ES256).unwrap();

    let token = malformed::mislabelled(Alg::RS256, Alg::ES256, &ec, &claims()).unwrap();

    assert_eq!(decode(token.split('.').next().unwrap())["alg"], "RS256");
    assert_eq!(
        b64_decode(token.rsplit('.').next().unwrap()).unwrap().len(),
        64
    );
    assert!(verify_with_key(&token, &ec).is_err());
}

#[test]
fn an_embedded_jwk_or_jku_does_not_make_the_attacker_key_trusted() {
    let honest = Key::generate(Alg::ES256).unwrap();
    let attacker = Key::generate(Alg::ES256).unwrap();

    let jwk = malformed::with_embedded_jwk(Alg::ES256, &attacker, &claims()).unwrap();
    let jku =
        malformed::with_jku(Alg::ES256, &attacker, "http://evil.test/jwks", &claims()).unwrap();

    assert_eq!(
        decode(jwk.split('.').next().unwrap())["jwk"],
        attacker.public_jwk()
    );
    assert!(verify_with_key(&jwk, &honest).is_err());
    assert!(verify_with_key(&jku, &honest).is_err());
}

#[test]
fn a_zero_ecdsa_signature_has_the_curve_length_and_does_not_verify() {
    let key = Key::generate(Alg::ES384).unwrap();

    let token = malformed::zero_ecdsa_signature(Alg::ES384, &key, &claims()).unwrap();

    let sig = b64_decode(token.rsplit('.').next().unwrap()).unwrap();
    assert_eq!(sig, vec![0u8; 96]);
    assert!(verify_with_key(&token, &key).is_err());
}

#[test]
fn an_oversize_token_is_at_least_as_long_as_asked_and_still_valid() {
    let key = Key::generate(Alg::HS256).unwrap();

    let token = malformed::oversize(Alg::HS256, &key, &claims(), 10 * 1024).unwrap();

    assert!(token.len() >= 10 * 1024, "{}", token.len());
    assert!(token.len() < 10 * 1024 + 64, "{}", token.len());
    assert!(verify_with_key(&token, &key).is_ok());
}

#[test]
fn expired_and_not_yet_valid_claims_are_offset_from_now() {
    let now = super::now();

    let expired = Claims::new("i", "s").expired_by(120).to_value();
    let early = Claims::new("i", "s").not_yet_valid_by(90).to_value();

    let exp = expired["exp"].as_i64().unwrap();
    assert!((now - 121..=now - 119).contains(&exp), "{exp} vs {now}");
    let nbf = early["nbf"].as_i64().unwrap();
    assert!((now + 89..=now + 91).contains(&nbf), "{nbf} vs {now}");
    assert!(early["exp"].as_i64().unwrap() > nbf);
}

#[test]
fn wrong_issuers_and_audience_lists_are_set_by_the_builder() {
    let claims = Claims::new("https://issuer.test", "alice")
        .issuer("https://evil.test")
        .audiences(&["a", "b"])
        .without("iat")
        .to_value();

    assert_eq!(claims["iss"], "https://evil.test");
    assert_eq!(claims["aud"], json!(["a", "b"]));
    assert!(claims.get("iat").is_none());
}
