//! The authn stage with remote keys (waits, refetch on an unknown `kid`),
//! the host's native signature check, and the token cache.

use std::rc::Rc;

use serde_json::json;

use super::testkeys::{Signer, jwks, mint};
use super::tests::{ISS, Keys, bearer, claims, inline, now, ra, rs256, run, run_with, stage_of};
use super::*;
use crate::pipeline::tests::MapSink;
use crate::pipeline::{Env, Exchange, KeyState, Stage, Wait};
use crate::rng::SplitMix64;
use crate::verdict::Verdict;

#[test]
fn remote_keys_make_the_stream_wait_then_verify_or_fail_closed() {
    let stage = stage_of(vec![ra(
        json!({"issuer": ISS, "jwksUri": "https://auth.example.com/jwks", "timeout": "2s"}),
    )]);
    let token = rs256(json!({}));
    let ready = Keys(KeyState::Ready(Rc::new(
        jwks::Jwks::parse(jwks().to_string().as_bytes()).unwrap(),
    )));
    let pending = Keys(KeyState::Pending);

    let (v, _, _) = run_with(&stage, bearer(&token), &pending, None);
    assert_eq!(
        v,
        Verdict::Pause(Wait::Keys {
            source: 0,
            timeout_ms: 2_000,
            refresh: false
        })
    );

    let (v, id, _) = run_with(&stage, bearer(&token), &pending, Some(&ready));
    assert!(matches!(v, Verdict::Continue(_)));
    assert!(id.unwrap().request_principal.is_some());

    let (v, _, _) = run_with(&stage, bearer(&token), &pending, Some(&pending));
    assert!(
        matches!(v, Verdict::Reply(r) if r.status == 401 && &*r.body == b"Jwks remote fetch is failed")
    );
    let (v, _, _) = run_with(&stage, bearer(&token), &Keys(KeyState::Failed), None);
    assert!(matches!(v, Verdict::Reply(r) if r.status == 401));
}

#[test]
fn an_unknown_kid_with_remote_keys_asks_once_for_fresh_keys() {
    let stage = stage_of(vec![ra(
        json!({"issuer": ISS, "jwksUri": "https://auth.example.com/jwks"}),
    )]);
    let token = mint(
        Signer::P256,
        json!({"alg": "ES256", "kid": "rotated"}),
        claims(json!({})),
    );
    let old = {
        let mut doc = jwks();
        doc["keys"]
            .as_array_mut()
            .unwrap()
            .retain(|k| k["kty"] == "RSA");
        Keys(KeyState::Ready(Rc::new(
            jwks::Jwks::parse(doc.to_string().as_bytes()).unwrap(),
        )))
    };
    let new = {
        let mut doc = jwks();
        doc["keys"][1]["kid"] = json!("rotated");
        Keys(KeyState::Ready(Rc::new(
            jwks::Jwks::parse(doc.to_string().as_bytes()).unwrap(),
        )))
    };
    let (v, _, _) = run_with(&stage, bearer(&token), &old, None);
    assert!(matches!(
        v,
        Verdict::Pause(Wait::Keys { refresh: true, .. })
    ));
    let (v, _, _) = run_with(&stage, bearer(&token), &old, Some(&new));
    assert!(
        matches!(v, Verdict::Continue(_)),
        "the rotated key is accepted after the refetch"
    );
    let (v, _, _) = run_with(&stage, bearer(&token), &old, Some(&old));
    assert!(
        matches!(v, Verdict::Reply(r) if &*r.body == b"Jwks doesn't have key to match kid or alg from Jwt")
    );
}

/// A host check that records its calls and answers `verdict`.
struct FakeCrypto {
    calls: std::cell::Cell<u32>,
    verdict: Option<bool>,
}

impl crate::pipeline::Crypto for FakeCrypto {
    fn verify(&self, hash: &str, spki: &[u8], signature: &[u8], text: &[u8]) -> Option<bool> {
        assert_eq!(hash, "sha256");
        assert!(!spki.is_empty() && !signature.is_empty() && !text.is_empty());
        self.calls.set(self.calls.get() + 1);
        self.verdict
    }
}

fn run_crypto(stage: &AuthnStage, token: &str, crypto: &FakeCrypto) -> u32 {
    let mut ex = Exchange::new(bearer(token));
    let mut state = AuthnState::default();
    let mut rng = SplitMix64::new(1);
    let mut sink = MapSink::default();
    let mut env = Env {
        now_ms: &now,
        crypto,
        ..Env::new(&mut rng, &mut sink)
    };
    match stage.request(&mut ex, &mut state, &mut env) {
        Verdict::Reply(r) => r.status,
        _ => 200,
    }
}

#[test]
fn rsa_and_ec_signatures_go_to_the_host_check_when_it_answers() {
    let stage = stage_of(vec![inline(json!({}))]);
    let forged = format!("{}AAAA", rs256(json!({})).trim_end_matches(|c| c != '.'));
    let yes = FakeCrypto {
        calls: 0.into(),
        verdict: Some(true),
    };
    assert_eq!(
        run_crypto(&stage, &forged, &yes),
        200,
        "the host's verdict counts"
    );
    let es = mint(
        Signer::P256,
        json!({"alg": "ES256", "kid": "p256"}),
        claims(json!({"jti": "x"})),
    );
    let no = FakeCrypto {
        calls: 0.into(),
        verdict: Some(false),
    };
    assert_eq!(run_crypto(&stage, &es, &no), 401);
    assert_eq!(no.calls.get(), 1);
    let absent = FakeCrypto {
        calls: 0.into(),
        verdict: None,
    };
    assert_eq!(
        run_crypto(&stage, &rs256(json!({"jti": "y"})), &absent),
        200,
        "falls back to Rust"
    );
}

#[test]
fn a_reused_token_is_verified_once() {
    let stage = stage_of(vec![inline(json!({}))]);
    let token = rs256(json!({"jti": "reused"}));
    let host = FakeCrypto {
        calls: 0.into(),
        verdict: Some(true),
    };
    for _ in 0..5 {
        assert_eq!(run_crypto(&stage, &token, &host), 200);
    }
    assert_eq!(host.calls.get(), 1);
    let expired = rs256(json!({"jti": "reused", "exp": 1}));
    assert_eq!(
        run_crypto(&stage, &expired, &host),
        401,
        "time is checked before the cache"
    );
}

#[test]
#[ignore = "profiling aid: cargo test -p meshwasm --release --lib authn::tests::profile -- --ignored --nocapture"]
fn profile() {
    let stage = stage_of(vec![inline(json!({"audiences": ["product-service"]}))]);
    let token = rs256(json!({}));
    let n = 20_000;
    #[allow(clippy::disallowed_methods)]
    let t = std::time::Instant::now();
    for _ in 0..n {
        let _ = token::Jwt::parse(&token).unwrap();
    }
    println!("parse: {:?}/op", t.elapsed() / n);
    let host = FakeCrypto {
        calls: 0.into(),
        verdict: Some(true),
    };
    #[allow(clippy::disallowed_methods)]
    let t = std::time::Instant::now();
    for _ in 0..n {
        run_crypto(&stage, &token, &host);
    }
    println!("stage (cached): {:?}/op", t.elapsed() / n);
    let id = run(vec![inline(json!({}))], bearer(&token)).1.unwrap();
    #[allow(clippy::disallowed_methods)]
    let t = std::time::Instant::now();
    for _ in 0..n {
        let _ = id.to_json();
    }
    println!("identity json: {:?}/op", t.elapsed() / n);
}
