#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use super::ProductService;
use crate::client::{Client, get, request};

#[test]
fn v1_answers_the_seed_products_json() {
    let svc = ProductService::start("v1").unwrap();

    let r = get(&format!("{}/api/products", svc.url()), &[]).unwrap();

    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("service-version"), Some("v1"));
    let body = r.text();
    assert!(body.ends_with("}\n"), "{body:?}");
    assert!(
        body.starts_with(
            r#"{"version":"v1","message":"Product service v1 - stable version","timestamp":""#
        ),
        "{body}"
    );
    assert!(
        body.contains(r#"Z","features":["basic-catalog","search"]}"#),
        "{body}"
    );
    assert_eq!(svc.hits(), 1);
}

#[test]
fn v2_lists_the_canary_features() {
    let svc = ProductService::start("v2").unwrap();

    let r = get(&format!("{}/api/products", svc.url()), &[]).unwrap();

    let json = r.json().unwrap();
    assert_eq!(json["message"], "Product service v2 - canary version");
    assert_eq!(
        json["features"],
        serde_json::json!(["basic-catalog", "search", "recommendations", "reviews"])
    );
}

#[test]
fn an_unknown_version_answers_empty_fields_without_features() {
    let svc = ProductService::start("v3").unwrap();

    let r = get(&format!("{}/api/products", svc.url()), &[]).unwrap();

    assert_eq!(r.header("service-version"), Some("v3"));
    assert!(
        r.text()
            .starts_with(r#"{"version":"","message":"","timestamp":"#),
        "{}",
        r.text()
    );
    assert!(!r.text().contains("features"));
}

#[test]
fn health_wrong_methods_unknown_and_unclean_paths_answer_like_gorilla_mux() {
    let svc = ProductService::start("v1").unwrap();
    let c = Client::new().unwrap();
    let url = svc.url();

    let health = c.get(&format!("{url}/health"), &[]).unwrap();
    let post = c
        .request("POST", &format!("{url}/api/products"), &[], "x")
        .unwrap();
    let missing = c.get(&format!("{url}/nope"), &[]).unwrap();
    let unclean = c.get(&format!("{url}//api/products?a=1"), &[]).unwrap();

    assert_eq!((health.status, health.text().as_str()), (200, "OK"));
    assert_eq!(post.status, 405);
    assert_eq!(
        (missing.status, missing.text().as_str()),
        (404, "404 page not found\n")
    );
    assert_eq!(unclean.status, 301);
    assert_eq!(unclean.header("location"), Some("/api/products?a=1"));
}

#[test]
fn injected_failures_answer_the_next_requests_then_stop() {
    let svc = ProductService::start("v1").unwrap();
    let url = format!("{}/api/products", svc.url());
    let c = Client::new().unwrap();
    svc.fail_next(503, 2);

    let statuses: Vec<u16> = (0..3).map(|_| c.get(&url, &[]).unwrap().status).collect();

    assert_eq!(statuses, vec![503, 503, 200]);
    assert_eq!(svc.hits(), 3);
}

#[test]
fn control_endpoints_set_failures_and_report_hits() {
    let svc = ProductService::start("v1").unwrap();
    let url = svc.url();
    let c = Client::new().unwrap();

    c.request(
        "POST",
        &format!("{url}/__test/fail?status=500&count=1"),
        &[],
        "",
    )
    .unwrap();
    let first = c.get(&format!("{url}/api/products"), &[]).unwrap();
    let second = c
        .get(&format!("{url}/api/products"), &[("x-test-status", "418")])
        .unwrap();
    let hits = c
        .get(&format!("{url}/__test/hits"), &[])
        .unwrap()
        .json()
        .unwrap();
    c.request("POST", &format!("{url}/__test/reset"), &[], "")
        .unwrap();

    assert_eq!(
        (first.status, first.text().as_str()),
        (500, "injected 500 from v1\n")
    );
    assert_eq!(second.status, 418);
    assert_eq!(hits, serde_json::json!({"/api/products": 2}));
    assert_eq!(svc.hits(), 0);
}

#[test]
fn delays_hold_the_answer_back() {
    let svc = ProductService::start("v1").unwrap();
    let c = Client::new()
        .unwrap()
        .with_timeout(Duration::from_millis(150));
    let url = format!("{}/api/products", svc.url());

    let late = c.get(&url, &[("x-test-delay-ms", "1000")]);
    svc.set_delay(Duration::from_millis(1000));
    let late_too = c.get(&url, &[]);
    svc.set_delay(Duration::ZERO);
    let quick = c.get(&url, &[]);

    assert!(late.is_err());
    assert!(late_too.is_err());
    assert_eq!(quick.unwrap().status, 200);
}

#[test]
fn the_last_request_and_echo_show_what_the_upstream_received() {
    let svc = ProductService::start("v1").unwrap();

    let echo = request(
        "PUT",
        &format!("{}/__test/echo?q=1", svc.url()),
        &[("x-a", "b")],
        "hi",
    )
    .unwrap();

    let json = echo.json().unwrap();
    assert_eq!(json["method"], "PUT");
    assert_eq!(json["path"], "/__test/echo?q=1");
    assert_eq!(json["body"], "hi");
    assert_eq!(svc.last_request().unwrap().header("x-a"), Some("b"));
    assert_eq!(svc.hits_for("/__test/echo"), 1);
}

#[test]
fn h2c_clients_are_served() {
    let svc = ProductService::start("v2").unwrap();

    let r = Client::http2()
        .unwrap()
        .get(&format!("{}/api/products", svc.url()), &[])
        .unwrap();

    assert_eq!(r.header("service-version"), Some("v2"));
}

#[test]
fn dropping_the_service_frees_its_port() {
    let svc = ProductService::start("v1").unwrap();
    let addr = svc.addr();

    drop(svc);

    assert!(std::net::TcpListener::bind(addr).is_ok());
}
