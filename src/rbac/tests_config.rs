//! Configuration and selection (SPEC.md §AuthorizationPolicy 3, 7, 11):
//! which policies apply to the workload, what is refused (with its JSON
//! path), CUSTOM, the path normalisation knob, and the seed's policy.

use std::rc::Rc;

use serde_json::json;

use super::tests::{
    ALLOW, Out, ap, check, compile, compile_with, denied, get, mtls, none, prop, req, run_on,
};
use super::*;
use crate::config::{Document, Kind};
use crate::pipeline::tests::MapSink;
use crate::pipeline::{Metrics, Stage};

fn path_rule(paths: &[&str]) -> serde_json::Value {
    json!({"to": [{"operation": {"paths": paths}}]})
}

#[test]
fn policies_of_other_namespaces_do_not_apply() {
    let mut p = ap("deny-all", json!({"action": "DENY", "rules": [{}]}));
    p["metadata"]["namespace"] = json!("bar");
    check(vec![p], vec![(get("/"), ALLOW)]);
}

#[test]
fn root_namespace_policies_apply_mesh_wide_and_may_select() {
    let mut mesh = ap(
        "mesh-deny-admin",
        json!({"action": "DENY", "rules": [path_rule(&["/admin"])]}),
    );
    mesh["metadata"]["namespace"] = json!("istio-system");
    let mut selected = ap(
        "mesh-allow-x",
        json!({"selector": {"matchLabels": {"app": "httpbin"}}, "rules": [path_rule(&["/x"])]}),
    );
    selected["metadata"]["namespace"] = json!("istio-system");
    check(
        vec![mesh, selected],
        vec![
            (
                get("/admin"),
                denied("ns[istio-system]-policy[mesh-deny-admin]-rule[0]"),
            ),
            (get("/x"), ALLOW),
            (get("/y"), none()),
        ],
    );
}

#[test]
fn a_selector_must_match_every_label() {
    let resources = vec![
        ap(
            "deny-other",
            json!({"selector": {"matchLabels": {"app": "other"}}, "action": "DENY", "rules": [{}]}),
        ),
        ap(
            "allow-ok",
            json!({"selector": {"matchLabels": {"version": "v1"}}, "rules": [path_rule(&["/ok"])]}),
        ),
    ];
    check(
        resources,
        vec![(get("/ok"), ALLOW), (get("/other"), none())],
    );
}

#[test]
fn a_policy_without_namespace_is_in_the_workloads() {
    let mut p = ap("deny-all", json!({"action": "DENY", "rules": [{}]}));
    p["metadata"] = json!({"name": "deny-all"});
    check(
        vec![p],
        vec![(get("/"), denied("ns[foo]-policy[deny-all]-rule[0]"))],
    );
}

#[test]
fn target_refs_are_ignored_with_a_warning() {
    let p = ap(
        "deny",
        json!({"targetRefs": [{"kind": "Service", "group": "", "name": "httpbin"}], "action": "DENY", "rules": [{}]}),
    );
    let policy = compile(vec![p.clone()]).unwrap();
    assert!(
        policy.warnings()[0].starts_with("resources[0].spec.targetRefs"),
        "{:?}",
        policy.warnings()
    );
    check(vec![p], vec![(get("/"), ALLOW)]);
}

#[test]
fn custom_policies_that_apply_are_refused_as_not_implemented() {
    let p = ap(
        "ext",
        json!({"action": "CUSTOM", "provider": {"name": "my-authz"}, "rules": [{}]}),
    );
    let e = compile(vec![p.clone()]).unwrap_err();
    assert_eq!(e.path, "resources[0].spec.action");
    assert!(e.message.contains("not implemented by meshwasm"), "{e}");
    let mut elsewhere = p;
    elsewhere["metadata"]["namespace"] = json!("bar");
    assert!(compile(vec![elsewhere]).is_ok());
}

#[test]
fn invalid_policies_are_refused_with_the_path_of_the_field() {
    let cases = [
        (json!({"action": "PERMIT"}), "resources[0].spec.action"),
        (json!({"action": "CUSTOM"}), "resources[0].spec.provider"),
        (
            json!({"provider": {"name": "x"}}),
            "resources[0].spec.provider",
        ),
        (
            json!({"rules": [{"when": [{"key": "request.unknown", "values": ["x"]}]}]}),
            "resources[0].spec.rules[0].when[0].key",
        ),
        (
            json!({"rules": [{"when": [{"key": "", "values": ["x"]}]}]}),
            "resources[0].spec.rules[0].when[0].key",
        ),
        (
            json!({"rules": [{"when": [{"key": "source.ip"}]}]}),
            "resources[0].spec.rules[0].when[0]",
        ),
        (
            json!({"rules": [{"when": [{"key": "source.ip", "values": ["nope"]}]}]}),
            "resources[0].spec.rules[0].when[0].values[0]",
        ),
        (
            json!({"rules": [{"when": [{"key": "destination.port", "notValues": ["80", "65536"]}]}]}),
            "resources[0].spec.rules[0].when[0].notValues[1]",
        ),
        (
            json!({"rules": [{"when": [{"key": "request.headers", "values": ["x"]}]}]}),
            "resources[0].spec.rules[0].when[0].key",
        ),
        (
            json!({"rules": [{"when": [{"key": "request.auth.claims[]", "values": ["x"]}]}]}),
            "resources[0].spec.rules[0].when[0].key",
        ),
        (
            json!({"rules": [{"from": []}]}),
            "resources[0].spec.rules[0].from",
        ),
        (
            json!({"rules": [{"from": [{}]}]}),
            "resources[0].spec.rules[0].from[0].source",
        ),
        (
            json!({"rules": [{"from": [{"source": {}}]}]}),
            "resources[0].spec.rules[0].from[0].source",
        ),
        (
            json!({"rules": [{"to": []}]}),
            "resources[0].spec.rules[0].to",
        ),
        (
            json!({"rules": [{"to": [{"operation": {}}]}]}),
            "resources[0].spec.rules[0].to[0].operation",
        ),
        (
            json!({"rules": [{"from": [{"source": {"notIpBlocks": ["1.2.3.4/33"]}}]}]}),
            "resources[0].spec.rules[0].from[0].source.notIpBlocks[0]",
        ),
        (
            json!({"rules": [{"from": [{"source": {"remoteIpBlocks": ["10.0.0.0/x"]}}]}]}),
            "resources[0].spec.rules[0].from[0].source.remoteIpBlocks[0]",
        ),
        (
            json!({"rules": [{"from": [{"source": {"serviceAccounts": ["ns/*"]}}]}]}),
            "resources[0].spec.rules[0].from[0].source.serviceAccounts[0]",
        ),
        (
            json!({"rules": [{"from": [{"source": {"serviceAccounts": ["sa"], "principals": ["p"]}}]}]}),
            "resources[0].spec.rules[0].from[0].source.serviceAccounts",
        ),
        (
            json!({"rules": [{"to": [{"operation": {"ports": ["http"]}}]}]}),
            "resources[0].spec.rules[0].to[0].operation.ports[0]",
        ),
        (
            json!({"rules": [{"to": [{"operation": {"notPaths": ["/a/{**}/{*}"]}}]}]}),
            "resources[0].spec.rules[0].to[0].operation.notPaths[0]",
        ),
        (
            json!({"rules": [{"to": [{"operation": {"paths": ["/a/{*}.txt"]}}]}]}),
            "resources[0].spec.rules[0].to[0].operation.paths[0]",
        ),
        (
            json!({"rules": [{"to": [{"operation": {"paths": ["/a//{*}"]}}]}]}),
            "resources[0].spec.rules[0].to[0].operation.paths[0]",
        ),
        (
            json!({"rules": [{"to": [{"operation": {"paths": ["/a/{id}"]}}]}]}),
            "resources[0].spec.rules[0].to[0].operation.paths[0]",
        ),
        (
            json!({"rules": [{"to": [{"operation": {"pathz": ["/a"]}}]}]}),
            "resources[0].spec.rules[0].to[0].operation.pathz",
        ),
        (
            json!({"selector": {"matchLabels": {"": "x"}}}),
            "resources[0].spec.selector.matchLabels",
        ),
        (
            json!({"selector": {"matchLabels": {"a": "x"}}, "targetRef": {"kind": "Gateway", "name": "g"}}),
            "resources[0].spec",
        ),
    ];
    for (spec, path) in cases {
        let e = compile(vec![ap("p", spec.clone())]).expect_err(&spec.to_string());
        assert_eq!(e.path, path, "{spec}: {e}");
    }
}

#[test]
fn two_policies_with_one_name_are_refused() {
    let e = compile(vec![ap("p", json!({})), ap("p", json!({"rules": [{}]}))]).unwrap_err();
    assert_eq!(e.path, "resources[1].metadata.name");
}

#[test]
fn the_path_normalization_knob_takes_istios_levels_and_refuses_others() {
    for (v, want) in [
        ("NONE", crate::config::PathNormalization::None),
        ("BASE", crate::config::PathNormalization::Base),
        ("DEFAULT", crate::config::PathNormalization::Default),
        (
            "MERGE_SLASHES",
            crate::config::PathNormalization::MergeSlashes,
        ),
        (
            "DECODE_AND_MERGE_SLASHES",
            crate::config::PathNormalization::DecodeAndMergeSlashes,
        ),
    ] {
        let p = compile_with(vec![], json!({"pathNormalization": v})).unwrap();
        assert_eq!(p.normalization(), want);
    }
    assert_eq!(
        compile(vec![]).unwrap().normalization(),
        crate::config::PathNormalization::Base
    );
    let e = compile_with(vec![], json!({"pathNormalization": "STRICT"})).unwrap_err();
    assert_eq!(e.path, "envoy.pathNormalization");
}

#[test]
fn the_seed_policy_lets_frontend_read_and_admin_write_and_nobody_else() {
    let resources = crate::testutil::resources("authorization-policy.yaml");
    let d = serde_json::to_vec(&json!({
        "workload": {"namespace": "default", "labels": {"app": "product-service"}},
        "resources": resources}))
    .unwrap();
    let policy =
        RbacPolicy::compile(&Document::parse(&d, &[Kind::AuthorizationPolicy]).unwrap()).unwrap();
    let stage = RbacStage::new(Rc::new(policy), &mut Metrics::default());
    let frontend = "spiffe://cluster.local/ns/default/sa/frontend";
    let admin = "spiffe://cluster.local/ns/default/sa/admin";
    let cases = [
        (mtls(req("GET", "/api/products"), frontend), ALLOW),
        (mtls(req("GET", "/api/products?page=2"), frontend), ALLOW),
        (
            mtls(req("GET", "/api/./products"), frontend),
            Out::Allowed(Some("/api/products".into())),
        ),
        (
            mtls(req("GET", "/api/products/../products"), frontend),
            Out::Allowed(Some("/api/products".into())),
        ),
        (mtls(req("GET", "/api/products/../admin"), admin), none()),
        (mtls(req("POST", "/api/products"), frontend), none()),
        (mtls(req("GET", "/api/products/1"), frontend), none()),
        (mtls(req("GET", "/health"), frontend), none()),
        (mtls(req("POST", "/api/products/1"), admin), ALLOW),
        (mtls(req("PUT", "/api/products/1"), admin), ALLOW),
        (mtls(req("DELETE", "/api/products/1"), admin), ALLOW),
        (mtls(req("PATCH", "/api/products/1"), admin), none()),
        (mtls(req("GET", "/api/products"), admin), none()),
        (mtls(req("POST", "/api/products"), admin), none()),
        (
            mtls(
                req("GET", "/api/products"),
                "spiffe://cluster.local/ns/default/sa/other",
            ),
            none(),
        ),
        (prop(get("/api/products"), "connection.mtls", &[0]), none()),
        (
            get("/api/products").with("x-forwarded-client-cert", &format!("URI={frontend}")),
            none(),
        ),
    ];
    for (i, (r, want)) in cases.into_iter().enumerate() {
        assert_eq!(
            run_on(&stage, r, None, &mut MapSink::default()),
            want,
            "case {i}"
        );
    }
}

#[test]
fn a_host_failure_fails_closed() {
    let reply = RbacStage::host_failure().unwrap();
    assert_eq!(reply.status, 500);
}

#[test]
fn the_identity_is_read_only_by_policies_with_request_principals_or_claims() {
    let reads = |rule: serde_json::Value| {
        compile(vec![ap("p", json!({"rules": [rule]}))])
            .unwrap()
            .reads_identity
    };
    assert!(!reads(path_rule(&["/x"])));
    assert!(!reads(json!({"from": [{"source": {"principals": ["a"]}}]})));
    assert!(!reads(
        json!({"when": [{"key": "request.headers[x-tenant]", "values": ["acme"]}]})
    ));
    assert!(reads(
        json!({"from": [{"source": {"requestPrincipals": ["i/s"]}}]})
    ));
    assert!(reads(
        json!({"from": [{"source": {"notRequestPrincipals": ["*"]}}]})
    ));
    assert!(reads(
        json!({"when": [{"key": "request.auth.claims[group]", "values": ["g"]}]})
    ));
    assert!(reads(
        json!({"when": [{"key": "request.auth.audiences", "values": ["a"]}]})
    ));
}
