//! The authn filter's remote key set in real Envoy 1.40 (one worker,
//! loopback): the seed's `jwksUri` fetched through cluster `jwks` from a
//! JWKS server the test controls (filters/glue/src/keys.rs; SPEC.md
//! §RequestAuthentication `jwksUri`, `timeout`). A server down or hanging
//! when the first token arrives ⇒ 401 `Jwks remote fetch is failed` once
//! the fetch fails or the rule's `timeout` (1 s here, on a copy of the seed
//! rule) ends, then 200 once it serves; keys already fetched keep verifying
//! while it is down; a token of a rotated-in key is accepted after one
//! refetch while the old key keeps working; and N requests fetch the key
//! set once — Envoy runs three VMs for one worker, but only the worker's
//! gets requests, and it fetches once for all of them.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::disallowed_methods, // reason: a real Envoy runs in wall time; requests are timed with Instant
    missing_docs
)]

mod authn_e2e_common;

use std::thread;
use std::time::{Duration, Instant};

use authn_e2e_common::{
    FETCH_FAILED, PATH, Rig, Setup, assert_passed, assert_refused, claims, document, mint,
    provider_key, seed_document, seed_resources, seed_rule,
};
use meshwasm_harness::jwt::{self, Alg, Key};
use meshwasm_harness::tls::{FRONTEND_SPIFFE_ID, HttpsClient};
use meshwasm_harness::upstream::{JWKS_PATH, JwksFault, JwksServer};
use serde_json::json;

/// The rule's `timeout` in these tests.
const TIMEOUT: Duration = Duration::from_secs(1);

/// The seed policy with `timeout: 1s` on (a copy of) its rule.
fn short_timeout_document() -> String {
    let mut resources = seed_resources();
    seed_rule(&mut resources).insert("timeout".to_owned(), json!("1s"));
    document(resources)
}

fn rig(config: &str, jwks: &JwksServer) -> Rig {
    Setup::new(config).jwks(jwks.addr()).start()
}

#[test]
fn with_the_jwks_server_down_a_valid_token_gets_401_and_once_it_is_back_200() {
    // Arrange
    let key = provider_key();
    let mut jwks = JwksServer::start(&key.jwks()).unwrap();
    jwks.stop();
    let config = short_timeout_document();
    let rig = rig(&config, &jwks);
    let token = mint(&key, &claims("alice"));

    // Act
    let start = Instant::now();
    let while_down = rig.get_with(&token);
    let waited = start.elapsed();
    jwks.restart().unwrap();
    let once_back = rig.get_with(&token);

    // Assert
    assert_refused(&rig, &while_down, 401, FETCH_FAILED, PATH);
    assert!(
        waited < TIMEOUT,
        "a refused connection fails the fetch at once: {waited:?}"
    );
    assert_passed(&once_back, "the server is back");
    assert_eq!(jwks.hits(), 1);
    assert_eq!(rig.service.hits(), 1);
    rig.assert_no_trap();
}

#[test]
fn with_a_hanging_jwks_server_a_valid_token_waits_the_rule_timeout_then_gets_401() {
    // Arrange
    let key = provider_key();
    let jwks = JwksServer::start(&key.jwks()).unwrap();
    jwks.fail(JwksFault::Hang);
    let config = short_timeout_document();
    let rig = rig(&config, &jwks);
    let token = mint(&key, &claims("alice"));

    // Act
    let start = Instant::now();
    let hung = rig.get_with(&token);
    let waited = start.elapsed();
    jwks.heal();
    // The fetch's own 1 s timeout ends just after the stream's: let it.
    thread::sleep(Duration::from_millis(200));
    let healed = rig.get_with(&token);

    // Assert
    assert_refused(&rig, &hung, 401, FETCH_FAILED, PATH);
    assert!(
        waited >= TIMEOUT - Duration::from_millis(50) && waited < TIMEOUT * 3,
        "waited {waited:?} for a 1 s timeout"
    );
    assert_passed(&healed, "the server answers again");
    assert_eq!(jwks.hits(), 2);
    rig.assert_no_trap();
}

#[test]
fn keys_fetched_before_the_jwks_server_stops_keep_verifying_tokens() {
    // Arrange
    let key = provider_key();
    let mut jwks = JwksServer::start(&key.jwks()).unwrap();
    let config = seed_document();
    let rig = rig(&config, &jwks);
    assert_passed(&rig.get_with(&mint(&key, &claims("alice"))), "first");
    jwks.stop();

    // Act
    let later: Vec<_> = ["bob", "carol", "dave", "erin", "frank"]
        .iter()
        .map(|sub| rig.get_with(&mint(&key, &claims(sub))))
        .collect();

    // Assert
    for r in &later {
        assert_passed(r, "keys held while the server is down");
    }
    assert_eq!(jwks.hits(), 1);
    rig.assert_no_trap();
}

#[test]
fn a_token_of_a_rotated_in_key_passes_after_one_refetch_and_the_old_key_still_works() {
    // Arrange
    let old = provider_key();
    let new = Key::generate(Alg::RS256).unwrap().with_kid("k2");
    let jwks = JwksServer::start(&old.jwks()).unwrap();
    let config = seed_document();
    let rig = rig(&config, &jwks);
    assert_passed(&rig.get_with(&mint(&old, &claims("alice"))), "old key");
    jwks.set_document(&jwt::jwks(&[&old, &new]));

    // Act
    let new_token = rig.get_with(&mint(&new, &claims("bob")));
    let old_token = rig.get_with(&mint(&old, &claims("carol")));
    let new_again = rig.get_with(&mint(&new, &claims("dave")));

    // Assert
    assert_passed(&new_token, "the new key, after a refetch");
    assert_passed(&old_token, "the old key, still served");
    assert_passed(&new_again, "the new key, held");
    assert_eq!(jwks.hits(), 2, "one fetch, one refetch");
    assert_eq!(jwks.last_request().unwrap().path, JWKS_PATH);
    rig.assert_no_trap();
}

#[test]
fn many_requests_fetch_the_jwks_once() {
    // Arrange: 10 clients at once while no keys are held, then 20 more.
    let key = provider_key();
    let jwks = JwksServer::start(&key.jwks()).unwrap();
    jwks.fail_next(JwksFault::Delay(Duration::from_millis(300)), 1);
    let config = seed_document();
    let rig = rig(&config, &jwks);
    let url = format!("{}{PATH}", rig.envoy.https_url());
    let frontend = rig.pki.client(FRONTEND_SPIFFE_ID).unwrap();
    let ca = rig.pki.ca_pem().to_owned();

    // Act
    let first: Vec<u16> = thread::scope(|s| {
        let workers: Vec<_> = (0..10)
            .map(|i| {
                let (url, ca, frontend) = (&url, &ca, &frontend);
                let token = mint(&key, &claims(&format!("user{i}")));
                s.spawn(move || {
                    let client = HttpsClient::new(ca, Some(frontend)).unwrap();
                    let auth = format!("Bearer {token}");
                    client.get(url, &[("authorization", &auth)]).unwrap().status
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let then: Vec<u16> = (0..20)
        .map(|i| {
            rig.get_with(&mint(&key, &claims(&format!("later{i}"))))
                .status
        })
        .collect();

    // Assert
    assert_eq!(first, vec![200; 10], "{}", rig.logs());
    assert_eq!(then, vec![200; 20]);
    assert_eq!(jwks.hits(), 1, "one fetch for 30 requests");
    assert_eq!(rig.authn_counter("jwt_verified"), 30);
    rig.assert_no_trap();
}
