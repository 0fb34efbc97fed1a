#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use super::{FRONTEND_SPIFFE_ID, HttpsClient, SERVER_SPIFFE_ID, TestPki};

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn a_client_certificate_carries_its_spiffe_id_as_uri_san() {
    let pki = TestPki::generate().unwrap();

    let client = pki.client(FRONTEND_SPIFFE_ID).unwrap();

    assert!(client.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(client.key_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(contains(client.cert_der(), FRONTEND_SPIFFE_ID));
    assert!(!contains(client.cert_der(), "localhost"));
}

#[test]
fn the_server_certificate_names_localhost_and_its_workload_identity() {
    let pki = TestPki::generate().unwrap();

    let server = pki.server();

    assert!(contains(server.cert_der(), "localhost"));
    assert!(contains(server.cert_der(), SERVER_SPIFFE_ID));
    assert!(contains(pki.ca_der(), "meshwasm test CA"));
}

#[test]
fn two_pkis_have_different_cas() {
    let (a, b) = (TestPki::generate().unwrap(), TestPki::generate().unwrap());

    assert_ne!(a.ca_pem(), b.ca_pem());
}

#[test]
fn an_https_client_refuses_a_ca_that_is_not_pem() {
    let err = HttpsClient::new("not a certificate", None).unwrap_err();

    assert_eq!(err.to_string(), "CA PEM: no certificate");
}

#[test]
fn an_https_client_refuses_plain_http_urls() {
    let pki = TestPki::generate().unwrap();
    let client = HttpsClient::new(pki.ca_pem(), None).unwrap();

    let err = client.get("http://127.0.0.1:1/", &[]).unwrap_err();

    assert!(err.to_string().contains("not an https URL"), "{err}");
}
