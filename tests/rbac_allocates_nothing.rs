//! An authorization decision allocates nothing beyond reading the headers
//! and host properties (issue "RBAC filter", Performance; STYLE.md rule 6):
//! counted with a global allocator around the RBAC stage, on the seed
//! policy and on a policy that reads every kind of fact.
#![allow(clippy::unwrap_used, clippy::expect_used, unsafe_code, missing_docs)]

use std::rc::Rc;

mod common;
#[path = "common/counting.rs"]
mod counting;

use meshwasm::authn::Identity;
use meshwasm::config::{Document, Kind};
use meshwasm::http::HeaderList;
use meshwasm::pipeline::{Env, Exchange, MetricId, MetricSink, Metrics, Stage};
use meshwasm::rbac::{RbacPolicy, RbacStage, RbacState};
use meshwasm::rng::SplitMix64;
use meshwasm::verdict::Verdict;
use serde_json::json;

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

struct Sink;

impl MetricSink for Sink {
    fn add(&mut self, _id: MetricId, _delta: i64) {}
    fn value(&self, _id: MetricId) -> Option<i64> {
        None
    }
}

fn stage(resources: Vec<serde_json::Value>, namespace: &str, app: &str) -> RbacStage {
    let doc = serde_json::to_vec(&json!({
        "workload": {"namespace": namespace, "labels": {"app": app}}, "resources": resources}))
    .unwrap();
    let doc = Document::parse(&doc, &[Kind::AuthorizationPolicy]).unwrap();
    RbacStage::new(
        Rc::new(RbacPolicy::compile(&doc).unwrap()),
        &mut Metrics::default(),
    )
}

fn mtls(method: &str, path: &str, uri: &str) -> HeaderList {
    let mut r = HeaderList::request(method, "product-service", path).with("x-env", "prod");
    r.port = Some(8080);
    r.properties = vec![
        ("connection.mtls".into(), vec![1]),
        (
            "connection.uri_san_peer_certificate".into(),
            uri.as_bytes().to_vec(),
        ),
        (
            "connection.subject_peer_certificate".into(),
            b"CN=client".to_vec(),
        ),
        ("source.address".into(), b"10.1.2.3:40000".to_vec()),
        ("destination.address".into(), b"10.0.0.1:8080".to_vec()),
    ];
    r
}

/// Allocations of deciding every request `rounds` times (after one round
/// that warms the regex caches up); the number of denials.
fn allocations(
    stage: &RbacStage,
    requests: &[(HeaderList, Option<Identity>)],
    rounds: usize,
) -> (usize, usize) {
    let mut exchanges: Vec<Exchange<HeaderList>> = requests
        .iter()
        .map(|(r, id)| {
            let mut ex = Exchange::new(r.clone());
            ex.identity = id.clone().map(std::rc::Rc::new);
            ex
        })
        .collect();
    let mut rng = SplitMix64::new(1);
    let mut sink = Sink;
    let mut denied = 0;
    let mut run = |exchanges: &mut Vec<Exchange<HeaderList>>, denied: &mut usize| {
        let mut env = Env::new(&mut rng, &mut sink);
        for ex in exchanges.iter_mut() {
            if let Verdict::Reply(_) = stage.request(ex, &mut RbacState::default(), &mut env) {
                *denied += 1;
            }
        }
    };
    run(&mut exchanges, &mut 0);
    let before = counting::allocations();
    for _ in 0..rounds {
        run(&mut exchanges, &mut denied);
    }
    (counting::allocations() - before, denied)
}

#[test]
fn authorizing_on_the_seed_policy_allocates_nothing() {
    let stage = stage(
        common::seed_resources(&["authorization-policy.yaml"]),
        "default",
        "product-service",
    );
    let frontend = "spiffe://cluster.local/ns/default/sa/frontend";
    let admin = "spiffe://cluster.local/ns/default/sa/admin";
    let requests = [
        (mtls("GET", "/api/products?page=2", frontend), None),
        (mtls("POST", "/api/products/1", admin), None),
        (mtls("POST", "/api/products/1", frontend), None),
        (
            HeaderList::request("GET", "product-service", "/api/products"),
            None,
        ),
    ];
    let (n, denied) = allocations(&stage, &requests, 1000);
    assert_eq!(denied, 2000, "two of the four requests are denied");
    assert_eq!(n, 0, "allocations during 4,000 decisions");
}

#[test]
fn authorizing_on_every_kind_of_fact_allocates_nothing() {
    let deny = json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": "deny", "namespace": "foo"},
        "spec": {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin", "/admin/*"]}}]}]}});
    let allow = json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": "allow", "namespace": "foo"},
        "spec": {"rules": [{
            "from": [{"source": {"namespaces": ["default"], "notIpBlocks": ["192.168.0.0/16"],
                                 "requestPrincipals": ["iss/*"]}}],
            "to": [{"operation": {"hosts": ["product-*"], "methods": ["GET"], "paths": ["/api/{*}/items"],
                                  "ports": ["8080"]}}],
            "when": [{"key": "request.headers[x-env]", "values": ["prod"]},
                     {"key": "request.auth.claims[scope]", "values": ["read"]},
                     {"key": "destination.ip", "values": ["10.0.0.0/8"]},
                     {"key": "remote.ip", "notValues": ["1.2.3.4"]}]}]}});
    let stage = stage(vec![deny, allow], "foo", "httpbin");
    let id = Identity {
        claims: json!({"iss": "iss", "sub": "alice", "scope": "write read"})
            .as_object()
            .unwrap()
            .clone(),
        ..Identity::default()
    };
    let peer = "spiffe://cluster.local/ns/default/sa/frontend";
    let requests = [
        (mtls("GET", "/api/x/items", peer), Some(id.clone())),
        (mtls("GET", "/admin/x", peer), Some(id.clone())),
        (mtls("GET", "/api/x/items", peer), None),
    ];
    let (n, denied) = allocations(&stage, &requests, 1000);
    assert_eq!(
        denied, 2000,
        "the DENY and the request without a token are denied"
    );
    assert_eq!(n, 0, "allocations during 3,000 decisions");
}
