//! The RBAC stage against SPEC.md §AuthorizationPolicy: configuration,
//! selection, Istio's order of actions, denials, counters and dry-run.
//! Fields and conditions: `tests_fields.rs`; paths: `tests_path.rs`.

use std::rc::Rc;

use serde_json::{Value, json};

use super::*;
use crate::authn::Identity;
use crate::config::{ConfigError, Document, Kind};
use crate::http::{HeaderList, RequestView};
use crate::pipeline::tests::MapSink;
use crate::pipeline::{Env, Exchange, MetricId, Metrics, Stage};
use crate::rng::SplitMix64;
use crate::verdict::{HeaderOp, Verdict};

/// An AuthorizationPolicy `name` in namespace `foo`.
pub(super) fn ap(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
           "metadata": {"name": name, "namespace": "foo"}, "spec": spec})
}

/// A document for workload `foo` / `{app: httpbin, version: v1}`.
pub(super) fn doc(resources: Vec<Value>, envoy: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "workload": {"namespace": "foo", "labels": {"app": "httpbin", "version": "v1"}},
        "resources": resources, "envoy": envoy}))
    .unwrap()
}

pub(super) fn compile_with(resources: Vec<Value>, envoy: Value) -> Result<RbacPolicy, ConfigError> {
    let d = Document::parse(
        &doc(resources, envoy),
        &[Kind::AuthorizationPolicy, Kind::RequestAuthentication],
    )?;
    RbacPolicy::compile(&d)
}

pub(super) fn compile(resources: Vec<Value>) -> Result<RbacPolicy, ConfigError> {
    compile_with(resources, json!({}))
}

/// A request from 127.0.0.1 to 127.0.0.1:28080, plaintext.
pub(super) fn req(method: &str, path: &str) -> HeaderList {
    let mut r = HeaderList::request(method, "httpbin.foo.svc.cluster.local", path);
    r.port = Some(28080);
    prop(
        prop(r, "source.address", b"127.0.0.1:40000"),
        "destination.address",
        b"127.0.0.1:28080",
    )
}

pub(super) fn get(path: &str) -> HeaderList {
    req("GET", path)
}

pub(super) fn prop(mut r: HeaderList, k: &str, v: &[u8]) -> HeaderList {
    r.properties.retain(|(p, _)| p != k);
    r.properties.push((k.to_owned(), v.to_vec()));
    r
}

/// The request over mTLS with a certificate whose only URI SAN is `uri`.
pub(super) fn mtls(r: HeaderList, uri: &str) -> HeaderList {
    super::tests_source::mtls_cert(r, &[uri], &[], "CN=client")
}

/// A verified token's identity with these claims.
pub(super) fn jwt(claims: Value) -> Identity {
    let claims = match claims {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    Identity {
        request_principal: None,
        claims,
        ..Identity::default()
    }
}

/// What the stage did with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Out {
    /// Let through (with the `:path` it wrote back, if any).
    Allowed(Option<String>),
    /// 403 with these details.
    Denied(String),
    /// 400: malformed path.
    Rejected,
}

pub(super) const ALLOW: Out = Out::Allowed(None);

pub(super) fn denied(id: &str) -> Out {
    Out::Denied(format!("rbac_access_denied_matched_policy[{id}]"))
}

pub(super) fn none() -> Out {
    Out::Denied(DENIED_NONE.into())
}

/// Runs `stage` once; the metric sink records counters.
pub(super) fn run_on(
    stage: &RbacStage,
    r: HeaderList,
    identity: Option<Identity>,
    sink: &mut MapSink,
) -> Out {
    let mut ex = Exchange::new(r);
    ex.identity = identity.map(std::rc::Rc::new);
    let mut rng = SplitMix64::new(1);
    let mut env = Env::new(&mut rng, sink);
    let mut state = RbacState::default();
    match stage.request(&mut ex, &mut state, &mut env) {
        Verdict::Continue(m) => {
            assert_eq!(state.phase, RbacPhase::Allowed);
            Out::Allowed(m.iter().find_map(|op| match op {
                HeaderOp::Set(n, v) if n == ":path" => Some(v.clone()),
                _ => None,
            }))
        }
        Verdict::Reply(reply) if reply.status == 403 => {
            assert_eq!(&*reply.body, DENIED_BODY);
            assert_eq!(state.phase, RbacPhase::Denied);
            Out::Denied(reply.details.to_owned())
        }
        Verdict::Reply(reply) => {
            assert_eq!(
                (reply.status, &*reply.body, reply.details),
                (400, &b""[..], PATH_REJECTED)
            );
            assert_eq!(state.phase, RbacPhase::Rejected);
            Out::Rejected
        }
        Verdict::Pause(w) => panic!("the RBAC stage never waits: {w:?}"),
    }
}

pub(super) fn stage(resources: Vec<Value>, envoy: Value) -> (RbacStage, Metrics) {
    let policy = compile_with(resources, envoy).unwrap();
    let mut metrics = Metrics::default();
    let stage = RbacStage::new(Rc::new(policy), &mut metrics);
    (stage, metrics)
}

/// Every request through a stage over `resources`, with its expectation.
pub(super) fn check(resources: Vec<Value>, cases: Vec<(HeaderList, Out)>) {
    check_with(
        resources,
        json!({}),
        cases.into_iter().map(|(r, o)| (r, None, o)).collect(),
    );
}

pub(super) fn check_with(
    resources: Vec<Value>,
    envoy: Value,
    cases: Vec<(HeaderList, Option<Identity>, Out)>,
) {
    let (stage, _) = stage(resources, envoy);
    for (i, (r, identity, want)) in cases.into_iter().enumerate() {
        let what = format!("case {i}: {:?}", r.pairs);
        let got = run_on(&stage, r, identity, &mut MapSink::default());
        assert_eq!(got, want, "{what}");
    }
}

/// Like [`check_with`], comparing decisions only (not the path written
/// back).
pub(super) fn check_decisions(resources: Vec<Value>, envoy: Value, cases: Vec<(HeaderList, Out)>) {
    let (stage, _) = stage(resources, envoy);
    for (r, want) in cases {
        let what = format!(
            "{:?} under {:?}",
            r.header(":path"),
            stage.policy().normalization()
        );
        let decision = |o: Out| match o {
            Out::Allowed(_) => ALLOW,
            o => o,
        };
        let got = run_on(&stage, r, None, &mut MapSink::default());
        assert_eq!(decision(got), decision(want), "{what}");
    }
}

fn counter(metrics: &Metrics, sink: &MapSink, name: &str) -> i64 {
    let id = metrics
        .defs()
        .iter()
        .position(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no metric {name}"));
    sink.0.get(&MetricId(id)).copied().unwrap_or(0)
}

fn path_rule(paths: &[&str]) -> Value {
    json!({"to": [{"operation": {"paths": paths}}]})
}

#[test]
fn an_allow_policy_without_rules_denies_everything() {
    check(
        vec![ap("allow-none", json!({}))],
        vec![
            (get("/"), none()),
            (mtls(req("POST", "/x"), "spiffe://a/b"), none()),
        ],
    );
}

#[test]
fn an_allow_policy_with_one_empty_rule_allows_everything() {
    check(
        vec![ap("allow-all", json!({"rules": [{}]}))],
        vec![(get("/"), ALLOW), (req("DELETE", "/admin"), ALLOW)],
    );
}

#[test]
fn a_deny_policy_without_rules_denies_nothing() {
    check(
        vec![ap("deny-nothing", json!({"action": "DENY"}))],
        vec![(get("/"), ALLOW)],
    );
}

#[test]
fn without_any_policy_everything_is_allowed() {
    check(vec![], vec![(get("/admin"), ALLOW)]);
}

#[test]
fn a_deny_match_wins_over_an_allow_match_and_names_its_rule() {
    let resources = vec![
        ap("allow-all", json!({"rules": [{}]})),
        ap(
            "deny-admin",
            json!({"action": "DENY", "rules": [path_rule(&["/admin*"])]}),
        ),
    ];
    check(
        resources,
        vec![
            (
                get("/admin/x"),
                denied("ns[foo]-policy[deny-admin]-rule[0]"),
            ),
            (get("/x"), ALLOW),
        ],
    );
}

#[test]
fn when_allow_policies_apply_only_a_match_allows() {
    let resources = vec![
        ap("a", json!({"rules": [path_rule(&["/a"])]})),
        ap("b", json!({"rules": [path_rule(&["/b"])]})),
    ];
    check(
        resources,
        vec![(get("/a"), ALLOW), (get("/b"), ALLOW), (get("/c"), none())],
    );
}

#[test]
fn an_empty_allow_policy_and_an_allow_all_policy_allow_everything() {
    check(
        vec![ap("none", json!({})), ap("all", json!({"rules": [{}]}))],
        vec![(get("/"), ALLOW)],
    );
}

#[test]
fn audit_policies_never_decide_but_are_counted() {
    let resources = vec![ap(
        "audit-some",
        json!({"action": "AUDIT", "rules": [path_rule(&["/audited"])]}),
    )];
    let (stage, metrics) = stage(resources, json!({}));
    let mut sink = MapSink::default();
    assert_eq!(run_on(&stage, get("/audited"), None, &mut sink), ALLOW);
    assert_eq!(run_on(&stage, get("/other"), None, &mut sink), ALLOW);
    assert_eq!(
        counter(&metrics, &sink, "meshwasm.rbac.foo.audit-some.audited"),
        1
    );
    assert_eq!(counter(&metrics, &sink, "meshwasm.rbac.allowed"), 2);
}

#[test]
fn the_denying_rule_is_the_first_by_name_as_in_envoys_policy_map() {
    let rules: Vec<Value> = (0..11).map(|_| path_rule(&["/x"])).collect();
    let resources = vec![
        ap(
            "b",
            json!({"action": "DENY", "rules": [path_rule(&["/x"])]}),
        ),
        ap("a", json!({"action": "DENY", "rules": rules})),
    ];
    // rule[0] < rule[10] < rule[1] …; policy a sorts before b.
    check(
        resources,
        vec![(get("/x"), denied("ns[foo]-policy[a]-rule[0]"))],
    );
    let rules = json!([
        path_rule(&["/y"]),
        path_rule(&["/y"]),
        path_rule(&["/y"]),
        path_rule(&["/y"]),
        path_rule(&["/y"]),
        path_rule(&["/y"]),
        path_rule(&["/y"]),
        path_rule(&["/y"]),
        path_rule(&["/y"]),
        path_rule(&["/y"]),
        path_rule(&["/x"])
    ]);
    let resources = vec![ap("a", json!({"action": "DENY", "rules": rules}))];
    check(
        resources,
        vec![(get("/x"), denied("ns[foo]-policy[a]-rule[10]"))],
    );
}

#[test]
fn counters_record_each_policys_decisions() {
    let resources = vec![
        ap(
            "deny-admin",
            json!({"action": "DENY", "rules": [path_rule(&["/admin"])]}),
        ),
        ap("allow-public", json!({"rules": [path_rule(&["/public"])]})),
        ap("allow-x", json!({"rules": [path_rule(&["/x"])]})),
    ];
    let (stage, metrics) = stage(resources, json!({}));
    let mut sink = MapSink::default();
    for p in ["/admin", "/public", "/public", "/other"] {
        run_on(&stage, get(p), None, &mut sink);
    }
    let c = |name: &str| counter(&metrics, &sink, name);
    assert_eq!(c("meshwasm.rbac.foo.deny-admin.denied"), 1);
    assert_eq!(c("meshwasm.rbac.foo.allow-public.allowed"), 2);
    assert_eq!(c("meshwasm.rbac.foo.allow-public.denied"), 1);
    assert_eq!(c("meshwasm.rbac.foo.allow-x.denied"), 1);
    assert_eq!(c("meshwasm.rbac.foo.allow-x.allowed"), 0);
    assert_eq!(c("meshwasm.rbac.allowed"), 2);
    assert_eq!(c("meshwasm.rbac.denied"), 2);
}

#[test]
fn dry_run_policies_are_evaluated_and_counted_but_never_enforced() {
    let dry = |name: &str, spec: Value| {
        let mut p = ap(name, spec);
        p["metadata"]["annotations"] = json!({"istio.io/dry-run": "true"});
        p
    };
    let resources = vec![
        dry(
            "deny-x",
            json!({"action": "DENY", "rules": [path_rule(&["/x"])]}),
        ),
        dry("allow-y", json!({"rules": [path_rule(&["/y"])]})),
    ];
    let (stage, metrics) = stage(resources, json!({}));
    let mut sink = MapSink::default();
    assert_eq!(run_on(&stage, get("/x"), None, &mut sink), ALLOW);
    assert_eq!(run_on(&stage, get("/y"), None, &mut sink), ALLOW);
    let c = |name: &str| counter(&metrics, &sink, name);
    assert_eq!(c("meshwasm.rbac.foo.deny-x.dry_run_denied"), 1);
    assert_eq!(c("meshwasm.rbac.foo.deny-x.dry_run_allowed"), 1);
    assert_eq!(c("meshwasm.rbac.foo.allow-y.dry_run_allowed"), 1);
    assert_eq!(c("meshwasm.rbac.foo.allow-y.dry_run_denied"), 1);
}

#[test]
fn a_dry_run_allow_policy_beside_an_enforced_one_changes_nothing() {
    let mut dry = ap("httpbin-1", json!({"rules": [path_rule(&["/allow"])]}));
    dry["metadata"]["annotations"] = json!({"istio.io/dry-run": "true"});
    let mut enforced = ap("httpbin-2", json!({"rules": [path_rule(&["/another"])]}));
    enforced["metadata"]["annotations"] = json!({"istio.io/dry-run": "false"});
    check(
        vec![dry, enforced],
        vec![
            (get("/another"), ALLOW),
            (get("/allow"), none()),
            (get("/other"), none()),
        ],
    );
}

#[test]
fn dry_run_is_a_go_boolean_and_anything_else_is_enforced_with_a_warning() {
    let with = |v: &str, name: &str| {
        let path = format!("/{name}");
        let mut p = ap(
            &format!("deny-{name}"),
            json!({"action": "DENY", "rules": [path_rule(&[&path])]}),
        );
        p["metadata"]["annotations"] = json!({"istio.io/dry-run": v});
        p
    };
    let resources = vec![with("yes", "yes"), with("1", "one")];
    let policy = compile(resources.clone()).unwrap();
    assert!(
        policy.warnings()[0].contains("istio.io/dry-run"),
        "{:?}",
        policy.warnings()
    );
    check(
        resources,
        vec![
            (get("/yes"), denied("ns[foo]-policy[deny-yes]-rule[0]")),
            (get("/one"), ALLOW),
        ],
    );
}

#[test]
fn a_dry_run_deny_match_is_logged_once() {
    thread_local! { static LINES: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) }; }
    fn log(line: &str) {
        LINES.with(|l| l.borrow_mut().push(line.to_owned()));
    }
    let mut p = ap(
        "deny-x",
        json!({"action": "DENY", "rules": [path_rule(&["/x"])]}),
    );
    p["metadata"]["annotations"] = json!({"istio.io/dry-run": "true"});
    let (stage, _) = stage(vec![p], json!({}));
    let stage = stage.with_log(log);
    run_on(&stage, get("/x"), None, &mut MapSink::default());
    run_on(&stage, get("/y"), None, &mut MapSink::default());
    let lines = LINES.with(|l| l.borrow().clone());
    assert_eq!(
        lines,
        vec!["dry-run: GET would be denied by ns[foo]-policy[deny-x]-rule[0]"]
    );
}
