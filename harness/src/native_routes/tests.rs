#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use meshwasm::config::{Document, Kind};
use serde_json::{Value, json};

use super::requests::{DiffRequest, RequestGenerator, Samples, Vocabulary};
use super::*;
use crate::scenario::{config_document, istio_resources, testdata};

fn parse(doc: &Value) -> Document {
    Document::parse(doc.to_string().as_bytes(), &[Kind::VirtualService]).unwrap()
}

/// A document of VirtualServices given as YAML (a list of resources).
fn doc_of(yaml: &str, workload: Value) -> Document {
    let resources: Vec<Value> = serde_norway::from_str(yaml).unwrap();
    parse(&config_document(resources, Some(workload), None))
}

fn web() -> Value {
    json!({"namespace": "default", "labels": {"app": "web"}})
}

fn translate(doc: &Document) -> Value {
    route_configuration(doc, 80, "pass").unwrap()
}

fn vhost<'a>(rc: &'a Value, name: &str) -> &'a Value {
    rc["virtual_hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no virtual host {name} in {rc:#}"))
}

fn vs(host: &str, http: Value) -> String {
    json!([{"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "vs"}, "spec": {"hosts": [host], "http": http}}])
    .to_string()
}

fn matches_of(http: Value) -> Vec<Value> {
    let rc = translate(&doc_of(&vs("a", http), web()));
    let routes = vhost(&rc, "a.default.svc.cluster.local:80")["routes"].clone();
    routes
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["match"].clone())
        .collect()
}

fn dest() -> Value {
    json!([{"destination": {"host": "a"}}])
}

#[test]
fn the_seed_virtual_service_translates_to_istios_routes() {
    let files = [testdata().join("istio/virtual-service-example.yaml")];
    let doc = parse(&config_document(
        istio_resources(&files).unwrap(),
        None,
        None,
    ));

    let rc = translate(&doc);

    assert_eq!(rc["ignore_port_in_host_matching"], true);
    let v = vhost(&rc, "product-service.default.svc.cluster.local:80");
    assert_eq!(
        v["domains"],
        json!([
            "product-service.default.svc.cluster.local",
            "product-service.default.svc.cluster.local.",
            "product-service",
            "product-service.default.svc",
            "product-service.default"
        ])
    );
    let cluster = |s: &str| format!("outbound|80|{s}|product-service.default.svc.cluster.local");
    assert_eq!(
        v["routes"][0]["match"],
        json!({"prefix": "/", "case_sensitive": true,
               "headers": [{"name": "user-type", "string_match": {"exact": "premium"}}]})
    );
    assert_eq!(v["routes"][0]["route"]["cluster"], cluster("v2"));
    assert_eq!(v["routes"][1]["match"], json!({"prefix": "/"}));
    assert_eq!(
        v["routes"][1]["route"]["weighted_clusters"]["clusters"],
        json!([{"name": cluster("v1"), "weight": 90}, {"name": cluster("v2"), "weight": 10}])
    );
    let last = rc["virtual_hosts"].as_array().unwrap().last().unwrap();
    assert_eq!(last["name"], "allow_any");
    assert_eq!(last["domains"], json!(["*"]));
}

#[test]
fn uri_forms_become_path_prefix_or_full_regex_with_case_sensitivity() {
    let m = matches_of(json!([
        {"match": [{"uri": {"exact": "/a"}, "ignoreUriCase": true}], "route": dest()},
        {"match": [{"uri": {"regex": "/b/[0-9]+"}}], "route": dest()},
        {"match": [{"uri": {"prefix": ""}}, {"uri": {}}], "route": dest()},
    ]));
    assert_eq!(m[0], json!({"path": "/a", "case_sensitive": false}));
    assert_eq!(
        m[1],
        json!({"safe_regex": {"regex": "/b/[0-9]+"}, "case_sensitive": true})
    );
    assert_eq!(m[2], json!({"prefix": "", "case_sensitive": true}));
    assert_eq!(m[3], json!({"prefix": "/", "case_sensitive": true}));
}

#[test]
fn header_matchers_are_sorted_then_method_authority_scheme_follow() {
    let m = matches_of(json!([{"match": [{
        "scheme": {"exact": "https"}, "method": {}, "authority": {"prefix": "a"},
        "headers": {"z-b": {}, "method": {"exact": "GET"}, ":path": {"prefix": "/"}},
        "withoutHeaders": {"x-env": {"exact": "prod"}, "x-block": {}},
        "queryParams": {"id": {}, "page": {"regex": "[0-9]+"}, "flag": {"exact": ""}},
    }], "route": dest()}]));
    let headers = json!([
        {"name": ":path", "string_match": {"prefix": "/"}},
        {"name": "method", "string_match": {"exact": "GET"}},
        {"name": "x-block", "present_match": true, "invert_match": true},
        {"name": "x-env", "string_match": {"exact": "prod"}, "invert_match": true,
         "treat_missing_header_as_empty": true},
        {"name": "z-b", "present_match": true},
        {"name": ":method", "present_match": true},
        {"name": ":authority", "string_match": {"prefix": "a"}},
        {"name": ":scheme", "string_match": {"exact": "https"}},
    ]);
    assert_eq!(m[0]["headers"], headers);
    assert_eq!(
        m[0]["query_parameters"],
        json!([
            {"name": "flag", "string_match": {"exact": ""}},
            {"name": "id", "present_match": true},
            {"name": "page", "string_match": {"safe_regex": {"regex": "[0-9]+"}}},
        ])
    );
}

#[test]
fn selectors_and_ports_decide_which_match_entries_become_routes() {
    let m = matches_of(json!([{"match": [
        {"uri": {"prefix": "/labels-no"}, "sourceLabels": {"app": "other"}},
        {"uri": {"prefix": "/labels-yes"}, "sourceLabels": {"app": "web"}},
        {"uri": {"prefix": "/ns-no"}, "sourceNamespace": "other"},
        {"uri": {"prefix": "/gw-mesh"}, "gateways": ["mesh"], "sourceLabels": {"app": "other"}},
        {"uri": {"prefix": "/gw-other"}, "gateways": ["gw"]},
        {"uri": {"prefix": "/port-80"}, "port": 80},
        {"uri": {"prefix": "/port-8080"}, "port": 8080},
    ], "route": dest()}]));
    let prefixes: Vec<&str> = m.iter().map(|m| m["prefix"].as_str().unwrap()).collect();
    assert_eq!(prefixes, ["/labels-yes", "/gw-mesh", "/port-80"]);
}

#[test]
fn nothing_follows_a_catch_all_route() {
    let m = matches_of(json!([
        {"match": [{"uri": {"prefix": "/a"}}, {"uri": {"prefix": "/"}}, {"uri": {"prefix": "/b"}}],
         "route": dest()},
        {"route": dest()},
    ]));
    assert_eq!(m.len(), 2);
}

#[test]
fn a_virtual_service_without_routes_leaves_its_service_the_default_route() {
    let http = json!([{"match": [{"sourceLabels": {"app": "nobody"}}], "route": dest()}]);
    let rc = translate(&doc_of(&vs("a", http), web()));

    let v = vhost(&rc, "a.default.svc.cluster.local:80");
    assert_eq!(v["routes"][0]["name"], "default");
    assert_eq!(
        v["routes"][0]["request_headers_to_add"][0]["header"]["value"],
        PASSTHROUGH
    );
}

#[test]
fn domains_follow_the_namespace_and_the_registry() {
    let yaml = r#"
- {apiVersion: networking.istio.io/v1, kind: VirtualService, metadata: {name: r, namespace: shop},
   spec: {hosts: [ratings], http: [{route: [{destination: {host: ratings}}]}]}}
- {apiVersion: networking.istio.io/v1, kind: VirtualService, metadata: {name: e},
   spec: {hosts: [api.example.com, "*.example.org"], http: [{route: [{destination: {host: x}}]}]}}
- {apiVersion: networking.istio.io/v1, kind: VirtualService, metadata: {name: g},
   spec: {hosts: [legacy], gateways: [gw], http: [{route: [{destination: {host: x}}]}]}}
"#;
    let rc = translate(&doc_of(yaml, web()));

    assert_eq!(
        vhost(&rc, "ratings.shop.svc.cluster.local:80")["domains"],
        json!([
            "ratings.shop.svc.cluster.local",
            "ratings.shop.svc.cluster.local.",
            "ratings.shop",
            "ratings.shop.svc"
        ])
    );
    assert_eq!(
        vhost(&rc, "api.example.com:80")["domains"],
        json!(["api.example.com"])
    );
    assert_eq!(
        vhost(&rc, "*.example.org:80")["domains"],
        json!(["*.example.org"])
    );
    assert_eq!(rc["virtual_hosts"].as_array().unwrap().len(), 4);
}

#[test]
fn forms_istio_refuses_or_that_are_not_modelled_are_errors() {
    // `regex: "*"` never gets this far: the configuration refuses it, as
    // Istio's validation does.
    for http in [
        json!([{"match": [{"headers": {"x": {"regex": "*"}}}], "route": dest()}]),
        json!([{"match": [{"queryParams": {"x": {"regex": "*"}}}], "route": dest()}]),
    ] {
        let resources: Vec<Value> = serde_norway::from_str(&vs("a", http)).unwrap();
        let doc = config_document(resources, Some(web()), None).to_string();
        assert!(Document::parse(doc.as_bytes(), &[Kind::VirtualService]).is_err());
    }
    for http in [
        json!([{"redirect": {"uri": "/x"}}]),
        json!([{"route": dest(), "timeout": "1s"}]),
    ] {
        let doc = doc_of(&vs("a", http.clone()), web());
        assert!(route_configuration(&doc, 80, "p").is_err(), "{http}");
    }
    let yaml = vs("*.svc.cluster.local", json!([{"route": dest()}]));
    let mut both: Vec<Value> = serde_norway::from_str(&yaml).unwrap();
    both.extend(
        serde_norway::from_str::<Vec<Value>>(&vs("a", json!([{"route": dest()}]))).unwrap(),
    );
    let doc = parse(&config_document(both, Some(web()), None));
    let err = route_configuration(&doc, 80, "p").unwrap_err();
    assert!(err.message.contains("wildcard"), "{err}");
}

#[test]
fn instrumenting_marks_every_rule_and_keeps_its_matches() {
    let raw = json!({"resources": [
        {"kind": "DestinationRule", "apiVersion": "networking.istio.io/v1", "metadata": {"name": "d"}},
        {"kind": "VirtualService", "apiVersion": "networking.istio.io/v1", "metadata": {"name": "v"},
         "spec": {"hosts": ["a"], "http": [
            {"name": "n", "match": [{"port": 80}], "route": [{"destination": {"host": "b"}}], "timeout": "1s"},
            {"redirect": {"uri": "/"}}]}}]});

    let mut out = instrument(&raw);
    with_match_port(&mut out, 80, 1234);

    let resources = out["resources"].as_array().unwrap();
    assert_eq!(resources.len(), 1);
    assert_eq!(
        resources[0]["spec"]["http"],
        json!([
            {"name": "n", "match": [{"port": 1234}],
             "route": [{"destination": {"host": UPSTREAM_HOST}}],
             "headers": {"request": {"set": {RULE_HEADER: "v/0"}}}},
            {"route": [{"destination": {"host": UPSTREAM_HOST}}],
             "headers": {"request": {"set": {RULE_HEADER: "v/1"}}}},
        ])
    );
}

#[test]
fn the_same_seed_gives_the_same_requests() {
    let doc = doc_of(
        &vs(
            "a",
            json!([{"match": [{"headers": {"x-user": {"exact": "alice"}}}], "route": dest()}]),
        ),
        web(),
    );
    let words = || Vocabulary::new(&doc, &Samples::default());
    let take = |seed| {
        let mut g = RequestGenerator::new(seed, words());
        (0..200).map(|_| g.request()).collect::<Vec<_>>()
    };
    assert_eq!(take(7), take(7));
    assert_ne!(take(7), take(8));
    let all = take(7);
    assert!(all.iter().any(|r| r.http2));
    assert!(all.iter().any(|r| {
        r.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("x-user"))
    }));
}

#[test]
fn a_request_simplifies_one_step_at_a_time() {
    let mut r = DiffRequest::get("A.example.com:8080", "/p?a=1&b=2");
    r.headers.push(("x".into(), "1".into()));
    let simpler = r.simpler();
    let targets: Vec<&str> = simpler.iter().map(|s| s.target.as_str()).collect();
    assert!(targets.contains(&"/p"));
    assert!(targets.contains(&"/p?b=2"));
    assert!(simpler.iter().any(|s| s.headers.is_empty()));
    assert!(
        simpler
            .iter()
            .any(|s| s.host.as_deref() == Some("A.example.com"))
    );
    assert_eq!(
        r.http1_bytes(),
        b"GET /p?a=1&b=2 HTTP/1.1\r\nHost: A.example.com:8080\r\nx: 1\r\nconnection: close\r\n\r\n"
    );
}
