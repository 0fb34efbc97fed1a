//! The authn filter's remote key sets in the wasmtime harness, where the
//! test answers the JWKS fetch and moves the clock (filters/glue/src/keys.rs,
//! SPEC.md §RequestAuthentication `jwksUri`, `timeout`; §proxy-wasm ABI E):
//! the seed's `authentication-policy.yaml` with `envoy.jwksClusters` mapping
//! `auth.example.com` to cluster `jwks`. A stream whose token needs keys no
//! VM holds waits; the fetch is dispatched from the root context's tick to
//! the mapped cluster, once for every VM of the proxy (a lease in shared
//! data); an answer resumes the waiters, a failure or the rule's `timeout`
//! (default 5 s) refuses them with 401 `Jwks remote fetch is failed`; keys
//! are used for 5 minutes. Tokens are minted against the harness's virtual
//! clock.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::time::Duration;

use meshwasm_harness::envoy::wasm_path;
use meshwasm_harness::host::{
    Chain, DEFAULT_START_SECS, FilterSpec, Host, LogLevel, Outcome, PendingCall, PendingStream,
    UpstreamResponse, VmRole,
};
use meshwasm_harness::jwt::{self, Alg, Claims, Key};
use meshwasm_harness::scenario::{config_document, istio_resources, testdata};
use meshwasm_harness::tls::FRONTEND_SPIFFE_ID;
use serde_json::json;

const ISSUER: &str = "https://auth.example.com";
const FETCH_FAILED: &str = "Jwks remote fetch is failed";
/// The realm of a refusal of `GET /api/products` on host `product-service`
/// over plaintext (SPEC.md §RequestAuthentication Behaviour 3).
const CHALLENGE: &str =
    r#"Bearer realm="http://product-service/api/products", error="invalid_token""#;
/// How long a tick needs to dispatch the fetch (the glue arms it for 1 ms).
const TICK: Duration = Duration::from_millis(5);
/// How often a VM that did not fetch looks for the keys another VM fetched.
const POLL: Duration = Duration::from_millis(50);

/// The seed's policy as pasted, with cluster `jwks` for its key set.
fn seed_config() -> String {
    let file = testdata().join("istio").join("authentication-policy.yaml");
    let resources = istio_resources(&[file]).unwrap();
    let envoy = json!({"jwksClusters": {"auth.example.com": "jwks"}});
    config_document(resources, None, Some(envoy)).to_string()
}

/// A harness with `workers` workers and cluster `jwks`, every request
/// arriving over mTLS from `frontend` (the seed's PeerAuthentication is
/// STRICT), the seed policy loaded, upstream answering 200.
fn setup(workers: usize) -> (Host, Chain) {
    let wasm = wasm_path("authn");
    assert!(
        wasm.exists(),
        "{} is missing: run `cargo xtask build`",
        wasm.display()
    );
    let mut host = Host::builder()
        .seed(3)
        .workers(workers)
        .cluster("jwks")
        .property("connection.mtls", [1u8])
        .property("connection.uri_san_peer_certificate", FRONTEND_SPIFFE_ID)
        .build()
        .unwrap();
    let chain = host
        .load(&[FilterSpec::new("meshwasm.authn", wasm).config(seed_config())])
        .unwrap();
    chain.set_upstream(|_| UpstreamResponse::new(200));
    (host, chain)
}

/// A key of the identity provider and the JWKS it publishes.
fn provider() -> (Key, String) {
    let key = Key::generate(Alg::RS256).unwrap().with_kid("k1");
    let jwks = key.jwks().to_string();
    (key, jwks)
}

/// Claims for `product-service`, valid for a day of virtual time.
fn claims(sub: &str) -> serde_json::Value {
    let start = i64::try_from(DEFAULT_START_SECS).unwrap();
    Claims::empty()
        .issuer(ISSUER)
        .subject(sub)
        .audience("product-service")
        .claim("iat", start)
        .claim("exp", start + 86_400)
        .to_value()
}

/// An RS256 token of `key` (its `kid` in the header) for `sub`.
fn token(key: &Key, sub: &str) -> String {
    jwt::mint(Alg::RS256, key, &json!({}), &claims(sub)).unwrap()
}

fn start(chain: &Chain, token: &str, worker: usize) -> PendingStream {
    chain
        .request("GET", "/api/products")
        .authority("product-service")
        .header("authorization", format!("Bearer {token}"))
        .worker(worker)
        .start()
        .unwrap()
}

/// [`start`] for a stream that must wait for keys; its outcome if it did not.
fn waiting(chain: &Chain, token: &str, worker: usize) -> PendingStream {
    let s = start(chain, token, worker);
    if !s.is_paused() {
        let out = s.finish().unwrap();
        panic!(
            "the stream did not wait for keys: {} {:?} {:?}",
            out.status(),
            out.body_text(),
            out.local_reply()
        );
    }
    s
}

fn respond_jwks(host: &mut Host, call: &PendingCall, jwks: &str) {
    host.respond(
        call.token,
        &[(":status", "200"), ("content-type", "application/json")],
        jwks.as_bytes(),
        &[],
    )
    .unwrap();
}

/// Runs the tick that dispatches the one pending fetch and answers it with
/// `jwks`.
fn answer_fetch(host: &mut Host, jwks: &str) -> PendingCall {
    host.advance(TICK).unwrap();
    let calls = host.pending_calls();
    assert_eq!(calls.len(), 1, "one fetch: {calls:?}");
    respond_jwks(host, &calls[0], jwks);
    calls[0].clone()
}

fn assert_passed(out: &Outcome) {
    assert_eq!(out.local_reply(), None, "{:?}", out.logs());
    assert_eq!(out.status(), 200);
    assert!(out.upstream_request().is_some());
    assert_eq!(out.upstream_header("authorization"), None, "token removed");
}

fn assert_fetch_failed(out: &Outcome) {
    assert_eq!(out.status(), 401, "{:?}", out.logs());
    assert_eq!(out.body_text(), FETCH_FAILED);
    assert_eq!(out.response_header("www-authenticate"), Some(CHALLENGE));
    assert!(out.upstream_request().is_none());
}

/// Fails when any VM logged a panic or a critical line.
fn assert_no_trap(host: &Host, chain: &Chain, workers: usize) {
    let bad: Vec<_> = host
        .logs()
        .into_iter()
        .filter(|l| l.level == LogLevel::Critical || l.message.contains("panicked"))
        .collect();
    assert!(bad.is_empty(), "{bad:?}");
    for w in 0..workers {
        assert!(!chain.is_failed(0, w), "the VM of worker {w} failed");
    }
}

#[test]
fn a_valid_token_waits_for_one_fetch_from_the_tick_and_resumes_when_it_is_answered() {
    // Arrange
    let (mut host, chain) = setup(1);
    let (key, jwks) = provider();
    let s = waiting(&chain, &token(&key, "alice"), 0);
    let paused = s.is_paused();
    let before_tick = host.pending_calls();

    // Act
    let call = answer_fetch(&mut host, &jwks);

    // Assert
    assert!(paused, "no VM holds keys yet: the stream waits");
    assert!(
        before_tick.is_empty(),
        "fetched from the tick, not the stream"
    );
    assert_eq!(call.cluster, "jwks");
    assert_eq!(call.header(":method"), Some("GET"));
    assert_eq!(call.header(":path"), Some("/.well-known/jwks.json"));
    assert_eq!(call.header(":authority"), Some("auth.example.com"));
    assert_eq!(call.stream, None, "dispatched by the root context");
    assert_eq!(call.vm, VmRole::Worker(0));
    assert_eq!(call.timeout, Some(Duration::from_secs(5)));
    assert!(s.is_done());
    let out = s.finish().unwrap();
    assert_passed(&out);
    assert!(host.pending_calls().is_empty());
    assert_no_trap(&host, &chain, 1);
}

#[test]
fn held_keys_verify_later_tokens_without_waiting_or_fetching() {
    // Arrange
    let (mut host, chain) = setup(1);
    let (key, jwks) = provider();
    let first = waiting(&chain, &token(&key, "alice"), 0);
    answer_fetch(&mut host, &jwks);
    assert_passed(&first.finish().unwrap());

    // Act
    let later: Vec<PendingStream> = ["bob", "carol", "dave"]
        .iter()
        .map(|sub| start(&chain, &token(&key, sub), 0))
        .collect();

    // Assert
    for s in later {
        assert!(s.is_done(), "no wait with keys held");
        assert_passed(&s.finish().unwrap());
    }
    assert!(host.pending_calls().is_empty());
    assert_eq!(host.next_event_in(), None, "nothing waits: no tick");
}

#[test]
fn without_an_answer_within_the_timeout_the_stream_gets_401_jwks_remote_fetch_is_failed() {
    // Arrange
    let (mut host, chain) = setup(1);
    let (key, _) = provider();
    let s = waiting(&chain, &token(&key, "alice"), 0);
    host.advance(TICK).unwrap();
    assert_eq!(host.pending_calls().len(), 1);

    // Act
    host.advance(Duration::from_millis(4_900)).unwrap();
    let paused_before = s.is_paused();
    host.advance(Duration::from_millis(200)).unwrap();

    // Assert
    assert!(paused_before, "the stream waits up to the rule's 5 s");
    assert!(s.is_done());
    assert_fetch_failed(&s.finish().unwrap());
    assert_no_trap(&host, &chain, 1);
}

#[test]
fn a_503_answer_refuses_the_waiting_stream_with_401_and_the_next_token_fetches_again() {
    // Arrange
    let (mut host, chain) = setup(1);
    let (key, jwks) = provider();
    let s = waiting(&chain, &token(&key, "alice"), 0);
    host.advance(TICK).unwrap();
    let call = host.pending_calls()[0].clone();

    // Act
    host.respond(call.token, &[(":status", "503")], b"unavailable", &[])
        .unwrap();

    // Assert
    assert!(s.is_done(), "a failed fetch ends the wait at once");
    assert_fetch_failed(&s.finish().unwrap());
    let retry = waiting(&chain, &token(&key, "alice"), 0);
    host.advance(TICK).unwrap();
    let calls = host.pending_calls();
    assert_eq!(calls.len(), 1, "no failure is cached: {calls:?}");
    respond_jwks(&mut host, &calls[0], &jwks);
    assert_passed(&retry.finish().unwrap());
}

#[test]
fn concurrent_first_requests_on_two_workers_cause_one_fetch_and_both_resume() {
    // Arrange
    let (mut host, chain) = setup(2);
    let (key, jwks) = provider();
    let on_0 = waiting(&chain, &token(&key, "alice"), 0);
    let on_1 = waiting(&chain, &token(&key, "bob"), 1);

    // Act
    host.advance(TICK).unwrap();
    let calls = host.pending_calls();
    host.advance(Duration::from_millis(500)).unwrap();
    let calls_later = host.pending_calls();
    respond_jwks(&mut host, &calls[0], &jwks);
    host.advance(POLL * 2).unwrap();

    // Assert
    assert_eq!(calls.len(), 1, "one fetch for both workers: {calls:?}");
    assert_eq!(calls_later, calls, "the other worker waits for the lease");
    assert!(on_0.is_done() && on_1.is_done());
    let (out_0, out_1) = (on_0.finish().unwrap(), on_1.finish().unwrap());
    assert_passed(&out_0);
    assert_passed(&out_1);
    assert_eq!((out_0.worker(), out_1.worker()), (0, 1));
    assert!(host.pending_calls().is_empty(), "no second fetch");
    assert_no_trap(&host, &chain, 2);
}

#[test]
fn keys_are_used_for_five_minutes_then_fetched_again() {
    // Arrange
    let (mut host, chain) = setup(1);
    let (key, jwks) = provider();
    let first = waiting(&chain, &token(&key, "alice"), 0);
    answer_fetch(&mut host, &jwks);
    assert_passed(&first.finish().unwrap());

    // Act
    host.advance(Duration::from_secs(299)).unwrap();
    let within = start(&chain, &token(&key, "bob"), 0);
    host.advance(Duration::from_secs(2)).unwrap();
    let after = start(&chain, &token(&key, "carol"), 0);
    host.advance(TICK).unwrap();
    let refetch = host.pending_calls();

    // Assert
    assert!(within.is_done(), "keys of 299 s ago are still used");
    assert_passed(&within.finish().unwrap());
    assert!(after.is_paused(), "keys of 301 s ago are not");
    assert_eq!(refetch.len(), 1, "{refetch:?}");
    assert_eq!(refetch[0].header(":path"), Some("/.well-known/jwks.json"));
    respond_jwks(&mut host, &refetch[0], &jwks);
    assert_passed(&after.finish().unwrap());
}

#[test]
fn a_client_reset_while_waiting_for_keys_leaves_no_trap_and_the_other_waiters_resume() {
    // Arrange: three streams wait for the same fetch.
    let (mut host, chain) = setup(1);
    let (key, jwks) = provider();
    let waiting: Vec<PendingStream> = ["alice", "bob", "carol"]
        .iter()
        .map(|sub| waiting(&chain, &token(&key, sub), 0))
        .collect();
    host.advance(TICK).unwrap();
    let calls = host.pending_calls();
    let mut waiting = waiting.into_iter();
    let reset = waiting.next().unwrap();

    // Act
    let reset = reset.cancel().unwrap();
    respond_jwks(&mut host, &calls[0], &jwks);

    // Assert
    assert!(reset.was_cancelled());
    assert_eq!(reset.status(), 0);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        calls[0].stream, None,
        "the fetch belongs to the root: the reset does not cancel it"
    );
    for s in waiting {
        assert!(s.is_done());
        assert_passed(&s.finish().unwrap());
    }
    let next = start(&chain, &token(&key, "dave"), 0);
    assert_passed(&next.finish().unwrap());
    assert_eq!(host.next_event_in(), None, "no tick left armed");
    assert_no_trap(&host, &chain, 1);
}

#[test]
fn under_strict_mtls_a_plaintext_request_gets_403_and_an_mtls_one_hands_on_both_principals() {
    // Arrange: held keys, so the requests decide at once.
    let (mut host, chain) = setup(1);
    let (key, jwks) = provider();
    let first = waiting(&chain, &token(&key, "alice"), 0);
    answer_fetch(&mut host, &jwks);
    assert_passed(&first.finish().unwrap());
    let plaintext = chain
        .request("GET", "/api/products")
        .authority("product-service")
        .header("authorization", format!("Bearer {}", token(&key, "bob")))
        .property("connection.mtls", [0u8]);

    // Act
    let refused = plaintext.send().unwrap();
    let mutual = start(&chain, &token(&key, "bob"), 0).finish().unwrap();

    // Assert
    assert_eq!(refused.status(), 403);
    assert_eq!(refused.body_text(), "RBAC: access denied");
    assert_passed(&mutual);
    let identity: serde_json::Value =
        serde_json::from_slice(mutual.filter_state("wasm.meshwasm.identity").unwrap()).unwrap();
    assert_eq!(identity["requestPrincipal"], format!("{ISSUER}/bob"));
    assert_eq!(
        identity["peerPrincipal"],
        "cluster.local/ns/default/sa/frontend"
    );
}

#[test]
fn a_token_of_a_key_rotated_out_of_the_jwks_is_refused_after_later_refetches() {
    // Arrange: k1 served, then only k2 (a k2 token forces the refetch),
    // then 11 s later an unknown kid forces another refetch of {k2}.
    let (mut host, chain) = setup(1);
    let (k1, jwks1) = provider();
    let k2 = Key::generate(Alg::RS256).unwrap().with_kid("k2");
    let jwks2 = k2.jwks().to_string();
    let old = token(&k1, "alice");
    let s = waiting(&chain, &old, 0);
    answer_fetch(&mut host, &jwks1);
    assert_passed(&s.finish().unwrap());
    host.advance(TICK).unwrap();
    let s = start(&chain, &token(&k2, "bob"), 0);
    answer_fetch(&mut host, &jwks2);
    assert_passed(&s.finish().unwrap());
    host.advance(Duration::from_secs(11)).unwrap();
    let unknown = jwt::mint(Alg::RS256, &k2, &json!({"kid": "k9"}), &claims("carol")).unwrap();
    let s = start(&chain, &unknown, 0);
    answer_fetch(&mut host, &jwks2);
    let refused_unknown = s.finish().unwrap();

    // Act
    let s = start(&chain, &old, 0);
    host.advance(TICK).unwrap();
    let out = s.finish().unwrap();

    // Assert
    assert_eq!(refused_unknown.status(), 401);
    assert_eq!(out.status(), 401, "k1 is no longer served");
    assert_eq!(
        out.body_text(),
        "Jwks doesn't have key to match kid or alg from Jwt"
    );
}

#[test]
fn an_unknown_kid_refetches_the_keys_at_most_every_ten_seconds() {
    // Arrange
    let (mut host, chain) = setup(1);
    let (key, jwks) = provider();
    let s = waiting(&chain, &token(&key, "alice"), 0);
    answer_fetch(&mut host, &jwks);
    assert_passed(&s.finish().unwrap());
    host.advance(TICK).unwrap();
    let unknown = |sub: &str| {
        jwt::mint(Alg::RS256, &key, &json!({"kid": "k-unknown"}), &claims(sub)).unwrap()
    };

    // Act
    let first = start(&chain, &unknown("a"), 0);
    let refetch = answer_fetch(&mut host, &jwks);
    host.advance(Duration::from_secs(9)).unwrap();
    let soon = start(&chain, &unknown("b"), 0);
    host.advance(TICK).unwrap();
    let calls_soon = host.pending_calls();
    host.advance(Duration::from_secs(1)).unwrap();
    let later = start(&chain, &unknown("c"), 0);
    let refetch_later = answer_fetch(&mut host, &jwks);

    // Assert
    assert_eq!(refetch.header(":path"), Some("/.well-known/jwks.json"));
    assert!(
        calls_soon.is_empty(),
        "9 s later: no refetch {calls_soon:?}"
    );
    assert_eq!(refetch_later.cluster, "jwks", "10 s later: a refetch");
    for s in [first, soon, later] {
        let out = s.finish().unwrap();
        assert_eq!(out.status(), 401);
        assert_eq!(
            out.body_text(),
            "Jwks doesn't have key to match kid or alg from Jwt"
        );
    }
    assert_no_trap(&host, &chain, 1);
}
