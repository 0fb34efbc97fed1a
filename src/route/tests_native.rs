//! Where routing must pick the rule native Envoy 1.40 picks for the same
//! VirtualService as Istio translates it (issue 11; SPEC.md §VirtualService,
//! Verified on Envoy 1.40). One test per cause, each with its minimal request.

use serde_json::{Value, json};

use super::*;
use crate::config::{Document, Kind};
use crate::http::HeaderList;
use crate::testutil::{compile, document_of, dr, vs};

/// Which rule (by `name`) a request matched, or `"404"` / `"pass"`.
fn rule(t: &RouteTable, req: &HeaderList) -> String {
    match t.rule_match(req) {
        RuleMatch::PassThrough => "pass".into(),
        RuleMatch::NoRoute { .. } => "404".into(),
        m @ RuleMatch::Matched { .. } => t.rule(m).map_or("?".into(), |r| r.name.clone()),
    }
}

/// A table of one VirtualService for host `a` whose rules are `(name, match)`,
/// each forwarding to `a` (no subset).
fn rules(rules: &[(&str, Value)]) -> RouteTable {
    let http: Vec<Value> = rules
        .iter()
        .map(|(name, m)| {
            let mut r = json!({"name": name, "route": [{"destination": {"host": "a"}}]});
            if !m.is_null() {
                r["match"] = m.clone();
            }
            r
        })
        .collect();
    compile(vec![dr(&["v1"]), vs(json!({"hosts": ["a"], "http": http}))]).unwrap()
}

fn get(path: &str) -> HeaderList {
    HeaderList::request("GET", "a", path)
}

#[test]
fn a_repeated_header_matches_when_any_one_value_does() {
    let t = rules(&[
        (
            "alice",
            json!([{"headers": {"x-user": {"exact": "alice"}}}]),
        ),
        (
            "joined",
            json!([{"headers": {"x-user": {"exact": "alice,bob"}}}]),
        ),
        ("rest", Value::Null),
    ]);
    let both = get("/").with("x-user", "bob").with("x-user", "alice");
    assert_eq!(rule(&t, &both), "alice");
    let joined = get("/").with("x-user", "alice,bob");
    assert_eq!(
        rule(&t, &joined),
        "joined",
        "one value holding a comma is one value"
    );
    assert_eq!(rule(&t, &get("/").with("x-user", "bob")), "rest");
}

#[test]
fn without_headers_excludes_a_repeated_header_when_any_value_matches() {
    let t = rules(&[
        (
            "not-prod",
            json!([{"withoutHeaders": {"x-env": {"exact": "prod"}}}]),
        ),
        ("rest", Value::Null),
    ]);
    let twice = get("/").with("x-env", "prod").with("x-env", "prod");
    assert_eq!(rule(&t, &twice), "rest");
    let mixed = get("/").with("x-env", "dev").with("x-env", "prod");
    assert_eq!(rule(&t, &mixed), "rest");
    assert_eq!(rule(&t, &get("/").with("x-env", "dev")), "not-prod");
    assert_eq!(
        rule(&t, &get("/")),
        "not-prod",
        "a missing header reads as empty"
    );
}

#[test]
fn the_absolute_fqdn_with_its_trailing_dot_selects_the_host() {
    let doc = document_of(vec![
        dr(&["v1"]),
        vs(
            json!({"hosts": ["a"], "http": [{"name": "r", "route": [{"destination": {"host": "a"}}]}]}),
        ),
    ]);
    let doc = Document::parse(&doc, &[Kind::VirtualService, Kind::DestinationRule]).unwrap();
    let t = RouteTable::compile(&doc).unwrap();
    for host in [
        "a.default.svc.cluster.local.",
        "a.default.svc.cluster.local.:80",
        "A.Default.Svc.Cluster.Local.",
    ] {
        let req = HeaderList::request("GET", host, "/");
        assert_eq!(rule(&t, &req), "r", "{host}");
    }
    // Only the FQDN gets the dotted form (GenerateAltVirtualHosts).
    assert_eq!(rule(&t, &HeaderList::request("GET", "a.", "/")), "pass");
}

#[test]
fn the_port_is_cut_at_the_last_colon_whatever_follows() {
    let t = rules(&[("r", Value::Null)]);
    for host in ["a:abc", "a:", "a:80", "a:8080"] {
        assert_eq!(
            rule(&t, &HeaderList::request("GET", host, "/")),
            "r",
            "{host}"
        );
    }
}

#[test]
fn a_uri_prefix_holding_a_question_mark_never_matches() {
    let t = rules(&[
        ("search", json!([{"uri": {"prefix": "/search?q="}}])),
        ("rest", Value::Null),
    ]);
    assert_eq!(rule(&t, &get("/search?q=shoes")), "rest");
    assert_eq!(rule(&t, &get("/search")), "rest");
}

#[test]
fn header_keys_named_like_match_fields_are_plain_headers() {
    let t = rules(&[
        (
            "reserved",
            json!([{"headers": {"method": {"exact": "GET"}}}]),
        ),
        ("rest", Value::Null),
    ]);
    assert_eq!(
        rule(&t, &get("/reserved")),
        "rest",
        "no header named `method`"
    );
    let named = get("/reserved").with("method", "GET");
    assert_eq!(rule(&t, &named), "reserved");
}

#[test]
fn gateways_switch_the_source_selectors_off() {
    let t = rules(&[
        (
            "mesh-only",
            json!([{"gateways": ["mesh"], "sourceLabels": {"app": "someone-else"},
                    "sourceNamespace": "elsewhere", "uri": {"prefix": "/m"}}]),
        ),
        (
            "labels",
            json!([{"sourceLabels": {"app": "someone-else"}, "uri": {"prefix": "/m"}}]),
        ),
        (
            "gateway-only",
            json!([{"gateways": ["ingress"], "uri": {"prefix": "/"}}]),
        ),
        ("rest", Value::Null),
    ]);
    assert_eq!(rule(&t, &get("/m")), "mesh-only");
    assert_eq!(rule(&t, &get("/x")), "rest");
}

#[test]
fn presence_forms_that_istio_serves_are_accepted_and_match() {
    let t = rules(&[
        ("method", json!([{"method": {}, "uri": {"prefix": "/m"}}])),
        (
            "authority",
            json!([{"authority": {}, "uri": {"prefix": "/a"}}]),
        ),
        ("uri", json!([{"uri": {}, "headers": {"x-u": {}}}])),
        (
            "empty-prefix",
            json!([{"uri": {"prefix": ""}, "headers": {"x-e": {}}}]),
        ),
        (
            "pseudo",
            json!([{"headers": {":path": {"prefix": "/p?"}, ":method": {"exact": "GET"}}}]),
        ),
        ("rest", Value::Null),
    ]);
    assert_eq!(rule(&t, &get("/m")), "method");
    assert_eq!(rule(&t, &get("/a")), "authority");
    assert_eq!(rule(&t, &get("/x").with("x-u", "")), "uri");
    assert_eq!(rule(&t, &get("/x").with("x-e", "1")), "empty-prefix");
    assert_eq!(
        rule(&t, &get("/p?q")),
        "pseudo",
        ":path is the raw path, query included"
    );
    assert_eq!(rule(&t, &get("/p")), "rest");
}

#[test]
fn a_regex_star_is_refused_on_headers_and_query_params() {
    for m in [
        json!([{"headers": {"x": {"regex": "*"}}}]),
        json!([{"queryParams": {"x": {"regex": "*"}}}]),
    ] {
        let e = compile(vec![
            dr(&["v1"]),
            vs(json!({"hosts": ["a"], "http": [{"match": m, "route": [{"destination": {"host": "a"}}]}]})),
        ])
        .unwrap_err();
        assert!(e.path.ends_with(".regex"), "{e}");
        assert!(e.message.contains("does not compile"), "{e}");
    }
}

#[test]
fn an_unknown_pseudo_header_is_still_refused_with_its_path() {
    let e = compile(vec![
        dr(&["v1"]),
        vs(
            json!({"hosts": ["a"], "http": [{"match": [{"headers": {":foo": {"exact": "x"}}}],
                   "route": [{"destination": {"host": "a"}}]}]}),
        ),
    ])
    .unwrap_err();
    assert_eq!(e.path, "resources[1].spec.http[0].match[0].headers.:foo");
}

#[test]
fn rewrite_after_an_empty_prefix_or_a_uri_presence_match() {
    let t = compile(vec![
        dr(&["v1"]),
        vs(json!({"hosts": ["a"], "http": [
            {"match": [{"uri": {"prefix": ""}, "headers": {"x-e": {}}}], "rewrite": {"uri": "/v2"},
             "route": [{"destination": {"host": "a"}}]},
            {"match": [{"uri": {}}], "rewrite": {"uri": "/v3/"},
             "route": [{"destination": {"host": "a"}}]}]})),
    ])
    .unwrap();
    let path_after = |req: &HeaderList| {
        let mut rng = crate::rng::SplitMix64::new(1);
        let d = t.decide(req, &mut rng);
        match t.verdict(&d, req) {
            Verdict::Continue(m) => m
                .computed
                .iter()
                .find_map(|op| match op {
                    HeaderOp::Set(n, v) if n == ":path" => Some(v.clone()),
                    _ => None,
                })
                .unwrap_or_default(),
            _ => String::new(),
        }
    };
    // Envoy's prefix_rewrite replaces the matched prefix: "" then "/".
    assert_eq!(path_after(&get("/x?y").with("x-e", "1")), "/v2/x?y");
    assert_eq!(path_after(&get("/x?y")), "/v3/x?y");
}

#[test]
fn only_kubernetes_service_names_answer_with_a_trailing_dot() {
    let t = compile(vec![
        dr(&["v1"]),
        vs(json!({"hosts": ["api.example.com", "a"],
                  "http": [{"name": "r", "route": [{"destination": {"host": "a"}}]}]})),
    ])
    .unwrap();
    let at = |host: &str| rule(&t, &HeaderList::request("GET", host, "/"));
    assert_eq!(at("api.example.com"), "r");
    assert_eq!(
        at("api.example.com."),
        "pass",
        "no registry service, no dotted form"
    );
    assert_eq!(at("a.default.svc.cluster.local."), "r");
}

#[test]
fn a_virtual_service_with_no_rule_for_this_workload_is_absent() {
    let t = rules(&[
        ("labels", json!([{"sourceLabels": {"app": "nobody"}}])),
        ("gateway", json!([{"gateways": ["public-gateway"]}])),
    ]);
    assert_eq!(rule(&t, &get("/")), "pass", "Istio builds no virtual host");
    assert!(
        t.warnings()
            .iter()
            .any(|w| w.contains("no rule applies to this workload")),
        "{:?}",
        t.warnings()
    );
}

#[test]
fn a_virtual_service_whose_rules_name_other_ports_is_absent_on_this_one() {
    let t = rules(&[
        ("p8080", json!([{"port": 8080, "uri": {"prefix": "/a"}}])),
        ("p9090", json!([{"port": 9090}])),
    ]);
    let on = |port: u32, path: &str| {
        let mut req = get(path);
        req.port = Some(port);
        rule(&t, &req)
    };
    assert_eq!(on(80, "/a"), "pass", "no rule on port 80: no virtual host");
    assert_eq!(on(8080, "/a"), "p8080");
    assert_eq!(on(8080, "/b"), "404", "a rule exists on 8080, none matches");
    assert_eq!(on(9090, "/b"), "p9090");
    let t0 = rules(&[("any", json!([{"port": 0}]))]);
    assert_eq!(rule(&t0, &get("/")), "any", "port 0 is proto3's unset");
}
