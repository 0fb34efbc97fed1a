//! Every `when` key of SPEC.md §AuthorizationPolicy 7 with `values` and
//! `notValues` (Verified 1, 2 and 4), and how `from`, `to` and `when`
//! combine.

use serde_json::{Value, json};

use super::tests::{ALLOW, ap, check, check_with, denied, get, jwt, mtls, none, prop, req};
use super::tests_source::{FRONTEND, t1, t2};

fn when(key: &str, values: &[&str], not_values: &[&str]) -> Value {
    let mut c = json!({"key": key});
    if !values.is_empty() {
        c["values"] = json!(values);
    }
    if !not_values.is_empty() {
        c["notValues"] = json!(not_values);
    }
    ap("p", json!({"rules": [{"when": [c]}]}))
}

#[test]
fn header_conditions_test_each_value_of_a_repeated_header() {
    let r = |path: &str, headers: &[(&str, &str)]| {
        headers.iter().fold(get(path), |r, (k, v)| r.with(k, v))
    };
    let rule =
        |path: &str, c: Value| json!({"to": [{"operation": {"paths": [path]}}], "when": [c]});
    let p = ap(
        "h",
        json!({"rules": [
            rule("/v", json!({"key": "request.headers[x-foo]", "values": ["foo"]})),
            rule("/nv", json!({"key": "request.headers[x-foo]", "notValues": ["bar"]})),
            rule("/forms", json!({"key": "request.headers[X-Foo]", "values": ["pre*", "*suf", "exact"]})),
            rule("/presence", json!({"key": "request.headers[x-foo]", "values": ["*"]})),
            rule("/absent", json!({"key": "request.headers[x-foo]", "notValues": ["*"]})),
        ]}),
    );
    check(
        vec![p],
        vec![
            (r("/v", &[("x-foo", "foo")]), ALLOW),
            (r("/v", &[("x-foo", "bar")]), none()),
            (r("/v", &[]), none()),
            (r("/v", &[("x-foo", "FOO")]), none()),
            (r("/v", &[("X-FOO", "foo")]), ALLOW),
            (r("/v", &[("x-foo", "foo"), ("x-foo", "bar")]), ALLOW),
            (r("/v", &[("x-foo", "foo,bar")]), none()),
            (r("/nv", &[("x-foo", "foo")]), ALLOW),
            (r("/nv", &[("x-foo", "bar")]), none()),
            (r("/nv", &[]), ALLOW),
            (r("/nv", &[("x-foo", "foo"), ("x-foo", "bar")]), none()),
            (r("/forms", &[("x-foo", "prefix-x")]), ALLOW),
            (r("/forms", &[("x-foo", "x-suf")]), ALLOW),
            (r("/forms", &[("x-foo", "exact")]), ALLOW),
            (r("/forms", &[("x-foo", "xpre")]), none()),
            (r("/forms", &[("x-foo", "pre1"), ("x-foo", "zzz")]), ALLOW),
            (r("/presence", &[("x-foo", "")]), ALLOW),
            (r("/presence", &[]), none()),
            (r("/absent", &[("x-foo", "")]), none()),
            (r("/absent", &[]), ALLOW),
        ],
    );
    let deny = ap(
        "d",
        json!({"action": "DENY", "rules": [{"when": [{"key": "request.headers[x-user]", "values": ["blocked"]}]}]}),
    );
    check(
        vec![deny],
        vec![(
            get("/").with("x-user", "ok").with("x-user", "blocked"),
            denied("ns[foo]-policy[d]-rule[0]"),
        )],
    );
}

#[test]
fn connection_conditions_read_addresses_ports_and_the_sni() {
    let from_ip = |ip: &str| prop(get("/"), "source.address", format!("{ip}:1").as_bytes());
    check(
        vec![when("source.ip", &["127.0.0.2", "127.0.2.0/24"], &[])],
        vec![
            (from_ip("127.0.0.2"), ALLOW),
            (from_ip("127.0.2.9"), ALLOW),
            (from_ip("127.0.0.1"), none()),
            (get("/").with("x-forwarded-for", "127.0.0.2"), none()),
        ],
    );
    check(
        vec![when("remote.ip", &[], &["10.0.0.0/8"])],
        vec![
            (get("/").with("x-forwarded-for", "10.9.8.7"), none()),
            (get("/"), ALLOW),
            (get("/").with("x-forwarded-for", "10.9.8.7,8.8.8.8"), ALLOW),
        ],
    );
    check(
        vec![when("destination.ip", &["127.0.0.1"], &[])],
        vec![
            (get("/"), ALLOW),
            (
                prop(get("/"), "destination.address", b"10.0.0.1:80"),
                none(),
            ),
        ],
    );
    let mut alt = get("/");
    alt.port = Some(28081);
    check(
        vec![when("destination.port", &[], &["28080"])],
        vec![(get("/"), none()), (alt, ALLOW)],
    );
    let sni = |s: &str| prop(get("/"), "connection.requested_server_name", s.as_bytes());
    check(
        vec![when("connection.sni", &["*.foo.svc.cluster.local"], &[])],
        vec![
            (sni("httpbin.foo.svc.cluster.local"), ALLOW),
            (sni("HTTPBIN.FOO.SVC.CLUSTER.LOCAL"), ALLOW),
            (sni("other.example"), none()),
            (get("/"), none()),
        ],
    );
    check(
        vec![when("connection.sni", &[], &["*.foo.svc.cluster.local"])],
        vec![(get("/"), ALLOW)],
    );
}

#[test]
fn identity_conditions_read_the_peer_certificate() {
    check(
        vec![when("source.namespace", &["foo"], &[])],
        vec![
            (
                mtls(get("/"), "spiffe://cluster.local/ns/foo/sa/sleep"),
                ALLOW,
            ),
            (
                mtls(get("/"), "spiffe://cluster.local/ns/evil/sa/x/ns/foo/y"),
                ALLOW,
            ),
            (get("/"), none()),
        ],
    );
    check(
        vec![when(
            "source.principal",
            &["cluster.local/ns/bar/*"],
            &["cluster.local/ns/bar/sa/x"],
        )],
        vec![
            (
                mtls(get("/"), "spiffe://cluster.local/ns/bar/sa/sleep"),
                ALLOW,
            ),
            (mtls(get("/"), "spiffe://cluster.local/ns/bar/sa/x"), none()),
        ],
    );
    check(
        vec![when(
            "source.serviceAccount",
            &["default/frontend", "sleep"],
            &[],
        )],
        vec![
            (mtls(get("/"), FRONTEND), ALLOW),
            (
                mtls(get("/"), "spiffe://cluster.local/ns/foo/sa/sleep"),
                ALLOW,
            ),
            (
                mtls(get("/"), "spiffe://cluster.local/ns/bar/sa/sleep"),
                none(),
            ),
        ],
    );
    check(
        vec![when("source.trustDomain", &[], &["bad.example.com"])],
        vec![
            (mtls(get("/"), FRONTEND), ALLOW),
            (mtls(get("/"), "spiffe://bad.example.com/ns/a/sa/b"), none()),
            (get("/"), ALLOW),
        ],
    );
}

#[test]
fn token_conditions_read_principal_audiences_presenter_and_claims() {
    let id = |claims: Value| Some(jwt(claims));
    let base = json!({"iss": "test-issuer-1@istio.io", "sub": "sub-1"});
    let with = |extra: Value| {
        let mut c = base.clone();
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        id(c)
    };
    check_with(
        vec![when(
            "request.auth.principal",
            &["test-issuer-1@istio.io/sub-1"],
            &[],
        )],
        json!({}),
        vec![
            (get("/"), t1(), ALLOW),
            (get("/"), t2(), none()),
            (get("/"), None, none()),
        ],
    );
    check_with(
        vec![when("request.auth.audiences", &["foo"], &[])],
        json!({}),
        vec![
            (get("/"), with(json!({"aud": "foo"})), ALLOW),
            (get("/"), with(json!({"aud": ["bar", "foo"]})), ALLOW),
            (get("/"), t1(), none()),
        ],
    );
    check_with(
        vec![when("request.auth.presenter", &["bar"], &[])],
        json!({}),
        vec![
            (get("/"), with(json!({"azp": "bar"})), ALLOW),
            (get("/"), t1(), none()),
        ],
    );
    check_with(
        vec![when(
            "request.auth.claims[nested][nested-2][key1]",
            &["valueA"],
            &[],
        )],
        json!({}),
        vec![
            (
                get("/"),
                with(json!({"nested": {"nested-2": {"key1": ["valueA", "valueB"]}}})),
                ALLOW,
            ),
            (
                get("/"),
                with(json!({"nested": {"nested-2": {"key1": ["valueC"]}}})),
                none(),
            ),
            (get("/"), with(json!({"nested": "valueA"})), none()),
        ],
    );
    check_with(
        vec![when("request.auth.claims[groups]", &[], &["group-1"])],
        json!({}),
        vec![
            (get("/"), t1(), none()),
            (get("/"), t2(), ALLOW),
            (get("/"), None, ALLOW),
        ],
    );
    for (key, claims) in [
        ("request.auth.claims[admin]", json!({"admin": true})),
        ("request.auth.claims[level]", json!({"level": 5})),
        ("request.auth.claims[roles]", json!({"roles": "a b"})),
    ] {
        let v = if key.contains("roles") {
            "a"
        } else if key.contains("admin") {
            "true"
        } else {
            "5"
        };
        check_with(
            vec![when(key, &[v], &[])],
            json!({}),
            vec![(get("/"), with(claims), none())],
        );
    }
}

#[test]
fn space_delimited_claims_are_words_for_scope_permission_and_the_issuers_list() {
    let ra = json!({"apiVersion": "security.istio.io/v1", "kind": "RequestAuthentication",
        "metadata": {"name": "jwt", "namespace": "foo"},
        "spec": {"jwtRules": [{"issuer": "iss-1", "jwks": "{}"},
                               {"issuer": "iss-2", "jwks": "{}", "spaceDelimitedClaims": ["custom_scope"]}]}});
    let rule = |path: &str, claim: &str, values: &[&str]| {
        json!({"to": [{"operation": {"paths": [path]}}],
        "when": [{"key": format!("request.auth.claims[{claim}]"), "values": values}]})
    };
    let p = ap(
        "c",
        json!({"rules": [
            rule("/scope", "scope", &["append", "write"]),
            rule("/permission", "permission", &["write"]),
            rule("/custom", "custom_scope", &["admin"]),
            rule("/whole", "scope", &["append read"]),
        ]}),
    );
    let token = |iss: &str, claims: Value| {
        let mut c = claims;
        c["iss"] = json!(iss);
        c["sub"] = json!("s");
        Some(jwt(c))
    };
    check_with(
        vec![ra, p],
        json!({}),
        vec![
            (
                get("/scope"),
                token("iss-2", json!({"scope": "append read"})),
                ALLOW,
            ),
            (
                get("/whole"),
                token("iss-2", json!({"scope": "append read"})),
                none(),
            ),
            (
                get("/permission"),
                token("iss-1", json!({"permission": "write read"})),
                ALLOW,
            ),
            (
                get("/custom"),
                token("iss-2", json!({"custom_scope": "admin user"})),
                ALLOW,
            ),
            (
                get("/custom"),
                token("iss-1", json!({"custom_scope": "admin user"})),
                none(),
            ),
        ],
    );
}

#[test]
fn envoy_filter_metadata_is_read_as_a_property() {
    let key = "metadata\0filter_metadata\0envoy.filters.a.b\0c";
    check(
        vec![when(
            "experimental.envoy.filters.a.b[c]",
            &["exact", "[pre*]"],
            &[],
        )],
        vec![
            (prop(get("/"), key, b"exact"), ALLOW),
            (prop(get("/"), key, b"prefix"), ALLOW),
            (prop(get("/"), key, b"other"), none()),
            (get("/"), none()),
        ],
    );
}

#[test]
fn from_to_and_when_are_and_ed_and_lists_or_ed() {
    let p = ap(
        "and",
        json!({"rules": [{
        "from": [{"source": {"principals": ["cluster.local/ns/default/sa/frontend"]}},
                 {"source": {"namespaces": ["foo"], "ipBlocks": ["127.0.0.0/8"]}}],
        "to": [{"operation": {"methods": ["GET"], "paths": ["/a"]}},
               {"operation": {"methods": ["POST"], "paths": ["/b"]}}],
        "when": [{"key": "request.headers[x-env]", "values": ["prod"]}]}]}),
    );
    let foo = "spiffe://cluster.local/ns/foo/sa/sleep";
    check(
        vec![p],
        vec![
            (mtls(get("/a"), FRONTEND).with("x-env", "prod"), ALLOW),
            (mtls(req("POST", "/b"), foo).with("x-env", "prod"), ALLOW),
            (mtls(get("/a"), FRONTEND), none()),
            (mtls(get("/b"), FRONTEND).with("x-env", "prod"), none()),
            (
                mtls(get("/a"), "spiffe://cluster.local/ns/bar/sa/x").with("x-env", "prod"),
                none(),
            ),
            (get("/a").with("x-env", "prod"), none()),
        ],
    );
}
