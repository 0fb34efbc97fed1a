//! Test infrastructure of the authn filter, checked against itself and real
//! Envoy 1.40: the JWKS server (rotation, failures, stop/restart, Envoy
//! fetching from it), minted tokens verifying against the served JWKS, and
//! the TLS listener of the Envoy rig with what a wasm filter reads in
//! `connection.mtls` and `connection.uri_san_peer_certificate` for
//! plaintext, TLS without a client certificate, and mTLS (SPEC.md §proxy-wasm
//! ABI D, §PeerAuthentication).
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use meshwasm_harness::client::{Client, Response, get};
use meshwasm_harness::envoy::{
    ClientCertificate, Envoy, EnvoyRig, ListenerTls, WasmFilter, product_cluster, wasm_path,
};
use meshwasm_harness::jwt::{self, Alg, Claims, Key, malformed};
use meshwasm_harness::tls::{CertSpec, FRONTEND_SPIFFE_ID, HttpsClient, SERVER_SPIFFE_ID, TestPki};
use meshwasm_harness::upstream::{JWKS_PATH, JwksFault, JwksServer, ProductService};
use serde_json::{Value, json};

const ISSUER: &str = "https://issuer.meshwasm.test";

fn claims() -> Value {
    Claims::new(ISSUER, "alice")
        .audience("product-service")
        .to_value()
}

fn fetch(server: &JwksServer) -> Response {
    get(&server.jwks_uri(), &[]).unwrap()
}

// ---------------------------------------------------------------- JWKS server

#[test]
fn the_jwks_server_serves_its_document_at_its_path_and_counts_hits() {
    let key = Key::generate(Alg::ES256).unwrap().with_kid("k1");
    let server = JwksServer::start(&key.jwks()).unwrap();

    let r = fetch(&server);
    let other = get(&format!("http://{}/other", server.addr()), &[]).unwrap();

    assert_eq!(server.path(), JWKS_PATH);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json().unwrap(), key.jwks());
    assert_eq!(other.status, 404);
    assert_eq!((server.hits(), server.total_hits()), (1, 2));
    assert_eq!(server.last_request().unwrap().path, "/other");
}

#[test]
fn a_rotated_document_is_served_from_the_next_request() {
    let old = Key::generate(Alg::RS256).unwrap().with_kid("old");
    let new = Key::generate(Alg::RS256).unwrap().with_kid("new");
    let server = JwksServer::start(&old.jwks()).unwrap();
    let before = fetch(&server).json().unwrap();

    server.set_document(&jwt::jwks(&[&new]));

    assert_eq!(before["keys"][0]["kid"], "old");
    assert_eq!(fetch(&server).json().unwrap()["keys"][0]["kid"], "new");
}

#[test]
fn a_raw_body_is_served_verbatim() {
    let server = JwksServer::start(&json!({"keys": []})).unwrap();

    server.set_body("{not json");

    assert_eq!(fetch(&server).text(), "{not json");
}

#[test]
fn an_injected_status_applies_to_the_next_requests_only() {
    let server = JwksServer::start(&json!({"keys": []})).unwrap();

    server.fail_next(JwksFault::Status(503), 2);

    let statuses: Vec<u16> = (0..3).map(|_| fetch(&server).status).collect();
    assert_eq!(statuses, [503, 503, 200]);
    assert_eq!(server.hits(), 3);
}

#[test]
fn a_fault_lasts_until_healed() {
    let server = JwksServer::start(&json!({"keys": []})).unwrap();
    server.fail(JwksFault::Status(500));
    let failed: Vec<u16> = (0..3).map(|_| fetch(&server).status).collect();

    server.heal();

    assert_eq!(failed, [500, 500, 500]);
    assert_eq!(fetch(&server).status, 200);
}

#[test]
fn a_closed_connection_gives_the_client_no_response() {
    let server = JwksServer::start(&json!({"keys": []})).unwrap();

    server.fail(JwksFault::Close);

    let err = get(&server.jwks_uri(), &[]).unwrap_err();
    assert!(format!("{err:#}").contains("GET"), "{err:#}");
    assert_eq!(server.hits(), 1);
}

#[test]
fn a_hanging_server_lets_the_client_time_out() {
    let server = JwksServer::start(&json!({"keys": []})).unwrap();
    server.fail(JwksFault::Hang);
    let client = Client::new()
        .unwrap()
        .with_timeout(Duration::from_millis(300));

    let err = client.get(&server.jwks_uri(), &[]).unwrap_err();

    assert!(err.to_string().contains("no response within"), "{err:#}");
    assert_eq!(server.hits(), 1);
}

#[test]
fn a_delayed_answer_arrives_after_the_delay() {
    let server = JwksServer::start(&json!({"keys": []})).unwrap();
    server.fail_next(JwksFault::Delay(Duration::from_millis(300)), 1);
    #[allow(clippy::disallowed_methods)] // reason: the server delays in wall time
    let start = Instant::now();

    let r = fetch(&server);

    assert_eq!(r.status, 200);
    assert!(start.elapsed() >= Duration::from_millis(300));
}

#[test]
fn a_stopped_server_refuses_connections_and_restarts_on_the_same_port() {
    let mut server = JwksServer::start(&json!({"keys": []})).unwrap();
    let addr = server.addr();
    assert_eq!(fetch(&server).status, 200);

    server.stop();
    let while_stopped = get(&server.jwks_uri(), &[]);
    server.restart().unwrap();

    assert!(while_stopped.is_err());
    assert_eq!(server.addr(), addr);
    assert!(server.is_running());
    assert_eq!(fetch(&server).status, 200);
    assert_eq!(server.hits(), 2);
}

#[test]
fn the_jwks_server_speaks_https_with_a_test_pki_certificate() {
    let pki = TestPki::generate().unwrap();
    let key = Key::generate(Alg::EdDSA).unwrap();
    let server = JwksServer::start_tls(&key.jwks(), pki.server()).unwrap();
    let client = HttpsClient::new(pki.ca_pem(), None).unwrap();

    let r = client.get(&server.jwks_uri(), &[]).unwrap();

    assert!(server.jwks_uri().starts_with("https://127.0.0.1:"));
    assert_eq!(r.json().unwrap(), key.jwks());
}

#[test]
fn an_https_client_refuses_a_server_of_another_ca() {
    let (pki, other) = (TestPki::generate().unwrap(), TestPki::generate().unwrap());
    let server = JwksServer::start_tls(&json!({"keys": []}), other.server()).unwrap();
    let client = HttpsClient::new(pki.ca_pem(), None).unwrap();

    let err = client.get(&server.jwks_uri(), &[]).unwrap_err();

    assert!(format!("{err:#}").contains("TLS handshake"), "{err:#}");
    assert_eq!(server.hits(), 0);
}

// ------------------------------------------------------- tokens and the JWKS

#[test]
fn tokens_of_every_algorithm_verify_against_the_served_jwks() {
    let keys: Vec<Key> = Alg::ALL
        .iter()
        .map(|alg| Key::generate(*alg).unwrap().with_kid(alg.name()))
        .collect();
    let server = JwksServer::start(&jwt::jwks(&keys.iter().collect::<Vec<_>>())).unwrap();

    let served = fetch(&server).json().unwrap();

    for (alg, key) in Alg::ALL.iter().zip(&keys) {
        let token = jwt::mint(*alg, key, &json!({}), &claims()).unwrap();
        assert_eq!(jwt::verify(&token, &served).unwrap(), claims(), "{alg}");
    }
}

#[test]
fn after_rotation_old_tokens_fail_and_new_tokens_verify() {
    let old = Key::generate(Alg::PS256).unwrap().with_kid("2024");
    let new = Key::generate(Alg::PS256).unwrap().with_kid("2025");
    let old_token = jwt::mint(Alg::PS256, &old, &json!({}), &claims()).unwrap();
    let server = JwksServer::start(&old.jwks()).unwrap();
    let before = fetch(&server).json().unwrap();

    server.set_document(&new.jwks());

    let after = fetch(&server).json().unwrap();
    let new_token = jwt::mint(Alg::PS256, &new, &json!({}), &claims()).unwrap();
    assert!(jwt::verify(&old_token, &before).is_ok());
    let err = jwt::verify(&old_token, &after).unwrap_err().to_string();
    assert!(
        err.contains("Jwks doesn't have key to match kid or alg from Jwt"),
        "{err}"
    );
    assert!(jwt::verify(&new_token, &after).is_ok());
}

#[test]
fn attack_tokens_fail_against_the_served_jwks() {
    let rsa = Key::generate(Alg::RS256).unwrap().with_kid("rsa");
    let ec = Key::generate(Alg::ES256).unwrap().with_kid("ec");
    let attacker = Key::generate(Alg::ES256).unwrap().with_kid("ec");
    let server = JwksServer::start(&jwt::jwks(&[&rsa, &ec])).unwrap();
    let served = fetch(&server).json().unwrap();
    let good = jwt::mint(Alg::RS256, &rsa, &json!({}), &claims()).unwrap();
    let pem = malformed::PublicKeyBytes::Pem;
    let attacks = [
        malformed::alg_none(&claims(), None),
        malformed::alg_none(&claims(), Some(b"x")),
        malformed::two_parts(&good),
        malformed::garbage(),
        malformed::bad_base64(&good, malformed::Part::Payload),
        malformed::padded(&good, malformed::Part::Signature),
        malformed::bad_signature(&good),
        malformed::tampered(&good, &Claims::new(ISSUER, "admin").to_value()),
        malformed::hs_with_rsa_public_key(Alg::HS256, &rsa, pem, &claims()).unwrap(),
        malformed::mislabelled(Alg::RS256, Alg::ES256, &ec, &claims()).unwrap(),
        malformed::with_crit(Alg::RS256, &rsa, &claims()).unwrap(),
        malformed::with_embedded_jwk(Alg::ES256, &attacker, &claims()).unwrap(),
        malformed::with_jku(Alg::ES256, &attacker, "http://127.0.0.1:1/j", &claims()).unwrap(),
        malformed::with_kid(Alg::RS256, &rsa, "unknown", &claims()).unwrap(),
        malformed::zero_ecdsa_signature(Alg::ES256, &ec, &claims()).unwrap(),
    ];

    for token in attacks {
        assert!(jwt::verify(&token, &served).is_err(), "{token}");
    }
    assert!(jwt::verify(&good, &served).is_ok());
}

#[test]
fn time_and_issuer_claims_are_minted_as_asked() {
    let key = Key::generate(Alg::HS256).unwrap();
    let now = jwt::now();

    let expired = Claims::new(ISSUER, "a").expired_by(120);
    let early = Claims::new(ISSUER, "a").not_yet_valid_by(120);
    let wrong = Claims::new("https://evil.test", "a");
    let tokens: Vec<Value> = [expired, early, wrong]
        .iter()
        .map(|c| {
            let t = jwt::mint(Alg::HS256, &key, &json!({}), &c.to_value()).unwrap();
            jwt::verify_with_key(&t, &key).unwrap()
        })
        .collect();

    assert!(tokens[0]["exp"].as_i64().unwrap() <= now - 119);
    assert!(tokens[1]["nbf"].as_i64().unwrap() >= now + 119);
    assert_eq!(tokens[2]["iss"], "https://evil.test");
}

// ------------------------------------------------------- Envoy and the probe

const PROBE_PROPS: [&str; 8] = [
    "connection/mtls",
    "connection/uri_san_peer_certificate",
    "connection/subject_peer_certificate",
    "connection/dns_san_peer_certificate",
    "connection/uri_san_local_certificate",
    "connection/requested_server_name",
    "connection/tls_version",
    "request/scheme",
];

/// Envoy with the probe (filter `a`) on a listener with `tls`, the product
/// service behind the default route, and cluster `jwks` → `jwks`.
fn probe_envoy(tls: Option<ListenerTls>, jwks: Option<&JwksServer>) -> (Envoy, ProductService) {
    let wasm = wasm_path("probe");
    assert!(
        wasm.exists(),
        "{} is missing: run `cargo xtask build`",
        wasm.display()
    );
    let service = ProductService::start("v1").unwrap();
    let mut rig = EnvoyRig::builder()
        .filters(vec![
            WasmFilter::new("a", &wasm, r#"{"name": "a"}"#).vm_id("probe"),
        ])
        .cluster(&product_cluster("v1"), service.addr())
        .cluster(&product_cluster("v2"), service.addr());
    if let Some(tls) = tls {
        rig = rig.tls(tls);
    }
    if let Some(jwks) = jwks {
        rig = rig.cluster("jwks", jwks.addr());
    }
    (rig.start().unwrap(), service)
}

fn probe_headers() -> String {
    PROBE_PROPS
        .iter()
        .map(|p| format!("prop:{p}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The probe's observations of `props`, keyed by property path.
fn observed(r: &Response) -> Value {
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json().unwrap();
    let mut out = serde_json::Map::new();
    for p in PROBE_PROPS {
        out.insert(p.to_owned(), body[format!("prop:{p}")].clone());
    }
    Value::Object(out)
}

#[test]
fn a_wasm_filter_sees_plaintext_tls_and_mtls_connections_as_envoy_reports_them() {
    // Arrange: one permissive listener (plaintext and TLS on one port,
    // client certificates optional), one filter configuration.
    let pki = TestPki::generate().unwrap();
    let (envoy, _service) = probe_envoy(Some(ListenerTls::new(&pki)), None);
    let ops = probe_headers();
    let headers = [("x-probe-op", ops.as_str())];
    let tls = HttpsClient::new(pki.ca_pem(), None).unwrap();
    let frontend = pki.client(FRONTEND_SPIFFE_ID).unwrap();
    let mtls = HttpsClient::new(pki.ca_pem(), Some(&frontend)).unwrap();
    let url = |base: String| format!("{base}/api/products");

    // Act
    let plain = observed(&envoy.get("/api/products", &headers).unwrap());
    let tls_only = observed(&tls.get(&url(envoy.https_url()), &headers).unwrap());
    let mutual = observed(&mtls.get(&url(envoy.https_url()), &headers).unwrap());

    // Assert
    eprintln!("plaintext: {plain}\nTLS without client certificate: {tls_only}\nmTLS: {mutual}");
    assert_eq!(plain["connection/mtls"], false);
    assert_eq!(plain["connection/uri_san_peer_certificate"], Value::Null);
    assert_eq!(plain["connection/tls_version"], Value::Null);
    assert_eq!(plain["request/scheme"], "http");
    assert_eq!(tls_only["connection/mtls"], false);
    assert_eq!(tls_only["connection/uri_san_peer_certificate"], Value::Null);
    assert_eq!(
        tls_only["connection/uri_san_local_certificate"],
        SERVER_SPIFFE_ID
    );
    assert_eq!(tls_only["request/scheme"], "https");
    assert_eq!(mutual["connection/mtls"], true);
    assert_eq!(
        mutual["connection/uri_san_peer_certificate"],
        FRONTEND_SPIFFE_ID
    );
    assert_eq!(mutual["request/scheme"], "https");
}

#[test]
fn a_wasm_filter_sees_the_first_uri_san_the_subject_the_dns_san_and_the_sni() {
    let pki = TestPki::generate().unwrap();
    let (envoy, _service) = probe_envoy(Some(ListenerTls::new(&pki)), None);
    let second = "spiffe://cluster.local/ns/other/sa/second";
    let identity = pki
        .issue(&CertSpec {
            common_name: Some("frontend".to_owned()),
            uris: vec![FRONTEND_SPIFFE_ID.to_owned(), second.to_owned()],
            dns: vec!["frontend.default.svc".to_owned()],
            client_auth: true,
            ..CertSpec::default()
        })
        .unwrap();
    let client = HttpsClient::new(pki.ca_pem(), Some(&identity))
        .unwrap()
        .with_server_name("localhost")
        .unwrap();
    let ops = probe_headers();

    let r = client
        .get(
            &format!("{}/api/products", envoy.https_url()),
            &[("x-probe-op", ops.as_str())],
        )
        .unwrap();

    let seen = observed(&r);
    eprintln!("two URI SANs, CN, DNS SAN, SNI: {seen}");
    assert_eq!(seen["connection/mtls"], true);
    assert_eq!(
        seen["connection/uri_san_peer_certificate"],
        FRONTEND_SPIFFE_ID
    );
    assert_eq!(seen["connection/subject_peer_certificate"], "CN=frontend");
    assert_eq!(
        seen["connection/dns_san_peer_certificate"],
        "frontend.default.svc"
    );
    assert_eq!(seen["connection/requested_server_name"], "localhost");
}

#[test]
fn a_strict_listener_closes_plaintext_and_certificate_less_connections() {
    let pki = TestPki::generate().unwrap();
    let strict = ListenerTls::new(&pki)
        .client_certificate(ClientCertificate::Required)
        .plaintext(false);
    let (envoy, service) = probe_envoy(Some(strict), None);
    let tls = HttpsClient::new(pki.ca_pem(), None).unwrap();
    let frontend = pki.client(FRONTEND_SPIFFE_ID).unwrap();
    let mtls = HttpsClient::new(pki.ca_pem(), Some(&frontend)).unwrap();
    let url = format!("{}/api/products", envoy.https_url());

    let plain = envoy.get("/api/products", &[]);
    let no_cert = tls.get(&url, &[]);
    let mutual = mtls.get(&url, &[]).unwrap();

    assert!(plain.is_err(), "{plain:?}");
    assert!(no_cert.is_err(), "{no_cert:?}");
    assert_eq!(mutual.status, 200);
    assert_eq!(service.hits(), 1);
}

#[test]
fn a_client_certificate_of_another_ca_is_refused_even_when_optional() {
    let (pki, other) = (TestPki::generate().unwrap(), TestPki::generate().unwrap());
    let (envoy, service) = probe_envoy(Some(ListenerTls::new(&pki)), None);
    let stranger = other.client(FRONTEND_SPIFFE_ID).unwrap();
    let client = HttpsClient::new(pki.ca_pem(), Some(&stranger)).unwrap();

    let r = client.get(&format!("{}/api/products", envoy.https_url()), &[]);

    assert!(r.is_err(), "{r:?}");
    assert_eq!(service.hits(), 0);
}

#[test]
fn without_a_certificate_request_a_client_certificate_is_never_sent() {
    let pki = TestPki::generate().unwrap();
    let tls = ListenerTls::new(&pki).client_certificate(ClientCertificate::NotRequested);
    let (envoy, _service) = probe_envoy(Some(tls), None);
    let frontend = pki.client(FRONTEND_SPIFFE_ID).unwrap();
    let client = HttpsClient::new(pki.ca_pem(), Some(&frontend)).unwrap();
    let ops = probe_headers();

    let r = client
        .get(
            &format!("{}/api/products", envoy.https_url()),
            &[("x-probe-op", ops.as_str())],
        )
        .unwrap();

    let seen = observed(&r);
    assert_eq!(seen["connection/mtls"], false);
    assert_eq!(seen["connection/uri_san_peer_certificate"], Value::Null);
}

#[test]
fn envoy_fetches_the_served_jwks_through_a_cluster_and_reports_its_failures() {
    // The probe's http call asks cluster `jwks` for `/probe`, with a 300 ms
    // timeout.
    let key = Key::generate(Alg::ES256).unwrap().with_kid("k1");
    let mut server = JwksServer::start_at("/probe", &key.jwks()).unwrap();
    let (envoy, _service) = probe_envoy(None, Some(&server));
    let call = [("x-probe-op", "call:jwks"), ("x-probe-timeout-ms", "300")];
    let fetch = || envoy.get("/api/products", &call).unwrap().json().unwrap();

    let served = fetch();
    server.fail_next(JwksFault::Status(503), 1);
    let unavailable = fetch();
    server.fail_next(JwksFault::Hang, 1);
    let hung = fetch();
    server.fail_next(JwksFault::Close, 1);
    let closed = fetch();
    server.stop();
    let stopped = fetch();
    server.restart().unwrap();
    let restarted = fetch();

    eprintln!("503: {unavailable}\nhang: {hung}\nclose: {closed}\nstopped: {stopped}");
    assert_eq!(served["call.status"], "200");
    let body: Value = serde_json::from_str(served["call.body"].as_str().unwrap()).unwrap();
    assert_eq!(body, key.jwks());
    assert_eq!(unavailable["call.status"], "503");
    assert_eq!(unavailable["call.body"], r"injected 503\x0a");
    assert_eq!(hung["call.status"], "504");
    assert_eq!(hung["call.body"], "upstream request timeout");
    assert_eq!(closed["call.status"], "503");
    let reset = "upstream connect error or disconnect/reset before headers. reset reason: ";
    assert_eq!(
        closed["call.body"],
        format!("{reset}connection termination")
    );
    assert_eq!(stopped["call.status"], "503");
    assert_eq!(
        stopped["call.body"],
        format!("{reset}remote connection failure")
    );
    assert_eq!(restarted["call.status"], "200");
    assert_eq!(server.hits(), 5);
}
