use serde_json::json;

use super::*;
use crate::config::{Document, Kind};
use crate::http::HeaderList;
use crate::rng::SplitMix64;
use crate::testutil::{compile, document, document_of, vs};

const V1: &str = "outbound|80|v1|product-service.default.svc.cluster.local";
const V2: &str = "outbound|80|v2|product-service.default.svc.cluster.local";

fn table(files: &[&str]) -> RouteTable {
    let doc = Document::parse(
        &document(files),
        &[Kind::VirtualService, Kind::DestinationRule],
    )
    .unwrap();
    RouteTable::compile(&doc).unwrap()
}

fn dr() -> serde_json::Value {
    crate::testutil::dr(&["v1", "v2"])
}

/// An Rng that returns 0, 1, 2, … so a run over `bound` draws visits every
/// bucket exactly once.
struct Sweep(u32);
impl Rng for Sweep {
    fn below(&mut self, bound: u32) -> u32 {
        let v = self.0 % bound.max(1);
        self.0 += 1;
        v
    }
}

fn cluster<'t>(t: &'t RouteTable, req: &HeaderList, rng: &mut impl Rng) -> Option<&'t str> {
    match t.decide(req, rng) {
        Decision::Matched {
            target: Some(target),
            ..
        } => Some(target.cluster.as_str()),
        _ => None,
    }
}

fn product(headers: &[(&str, &str)]) -> HeaderList {
    headers.iter().fold(
        HeaderList::request("GET", "product-service", "/api/products"),
        |r, (k, v)| r.with(k, v),
    )
}

#[test]
fn the_seed_premium_match_always_goes_to_v2() {
    let t = table(&[
        "virtual-service-example.yaml",
        "destination-rule-example.yaml",
    ]);
    let mut rng = SplitMix64::new(1);
    for _ in 0..100 {
        assert_eq!(
            cluster(&t, &product(&[("user-type", "premium")]), &mut rng),
            Some(V2)
        );
    }
}

#[test]
fn other_users_split_exactly_90_10_over_every_bucket() {
    let t = table(&[
        "virtual-service-example.yaml",
        "destination-rule-example.yaml",
    ]);
    let mut rng = Sweep(0);
    let to_v2 = (0..100)
        .filter(|_| cluster(&t, &product(&[("user-type", "basic")]), &mut rng) == Some(V2))
        .count();
    assert_eq!(to_v2, 10);
}

#[test]
fn the_canary_header_forces_v2_and_the_rest_split_95_5() {
    let t = table(&[
        "canary-virtual-service.yaml",
        "destination-rule-example.yaml",
    ]);
    let mut rng = Sweep(0);
    assert_eq!(
        cluster(&t, &product(&[("canary", "true")]), &mut rng),
        Some(V2)
    );
    let mut rng = Sweep(0);
    let to_v2 = (0..100)
        .filter(|_| cluster(&t, &product(&[]), &mut rng) == Some(V2))
        .count();
    assert_eq!(to_v2, 5);
}

#[test]
fn header_values_match_case_sensitively_and_names_do_not() {
    let t = table(&[
        "virtual-service-example.yaml",
        "destination-rule-example.yaml",
    ]);
    let mut rng = Sweep(0);
    assert_eq!(
        cluster(&t, &product(&[("User-Type", "premium")]), &mut rng),
        Some(V2)
    );
    let mut rng = Sweep(0); // bucket 0 lies in v1's range
    assert_eq!(
        cluster(&t, &product(&[("user-type", "Premium")]), &mut rng),
        Some(V1)
    );
}

#[test]
fn a_host_without_virtual_service_passes_through_and_the_client_cluster_is_dropped() {
    let t = table(&[
        "virtual-service-example.yaml",
        "destination-rule-example.yaml",
    ]);
    let req = HeaderList::request("GET", "127.0.0.1:10000", "/api/products")
        .with("x-mesh-cluster", "evil");
    let d = t.decide(&req, &mut Sweep(0));
    assert!(matches!(d, Decision::PassThrough));
    let Verdict::Continue(m) = t.verdict(&d, &req) else {
        panic!("a pass-through is not answered")
    };
    assert!(
        m.iter()
            .any(|op| *op == HeaderOp::Remove("x-mesh-cluster".into()))
    );
    assert!(
        m.iter().all(|op| matches!(op, HeaderOp::Remove(_))),
        "only removals: {m:?}"
    );
}

#[test]
fn no_matching_rule_answers_404_route_not_found() {
    let t = compile(vec![dr(), vs(json!({"hosts": ["a"], "http": [
        {"match": [{"uri": {"prefix": "/api"}}], "route": [{"destination": {"host": "a", "subset": "v1"}}]}]}))])
    .unwrap();
    let req = HeaderList::request("GET", "a", "/other");
    let d = t.decide(&req, &mut Sweep(0));
    match t.verdict(&d, &req) {
        Verdict::Reply(r) => assert_eq!(
            (r.status, r.details, r.body.as_ref()),
            (404, ROUTE_NOT_FOUND, &b""[..])
        ),
        v => panic!("{v:?}"),
    }
}

#[test]
fn first_match_wins_and_match_entries_are_ored_and_fields_anded() {
    let t = compile(vec![dr(), vs(json!({"hosts": ["a"], "http": [
        {"match": [{"method": {"exact": "POST"}, "uri": {"prefix": "/w"}}, {"headers": {"x": {"exact": "1"}}}],
         "route": [{"destination": {"host": "a", "subset": "v2"}}]},
        {"route": [{"destination": {"host": "a", "subset": "v1"}}]}]}))])
    .unwrap();
    let v2 = "outbound|80|v2|a.default.svc.cluster.local";
    let v1 = "outbound|80|v1|a.default.svc.cluster.local";
    let r = &mut Sweep(0);
    assert_eq!(
        cluster(&t, &HeaderList::request("POST", "a", "/write"), r),
        Some(v2)
    );
    assert_eq!(
        cluster(&t, &HeaderList::request("GET", "a", "/write"), r),
        Some(v1)
    );
    assert_eq!(
        cluster(&t, &HeaderList::request("GET", "a", "/").with("x", "1"), r),
        Some(v2)
    );
}

#[test]
fn uri_exact_prefix_and_regex_all_ignore_the_query() {
    let t = compile(vec![dr(), vs(json!({"hosts": ["a"], "http": [
        {"match": [{"uri": {"exact": "/e"}}, {"uri": {"regex": "/r/[0-9]+"}}, {"uri": {"prefix": "/p?q"}}],
         "route": [{"destination": {"host": "a", "subset": "v2"}}]}]}))])
    .unwrap();
    let r = &mut Sweep(0);
    for (path, hit) in [
        ("/e?x=1", true),
        ("/r/12?x", true),
        ("/r/1a", false),
        // Envoy 1.40 compares a prefix with the path without its query: a
        // prefix holding `?` never matches (SPEC.md §VirtualService).
        ("/p?q=1", false),
        ("/p", false),
        ("/p%3Fq", false),
    ] {
        assert_eq!(
            cluster(&t, &HeaderList::request("GET", "a", path), r).is_some(),
            hit,
            "{path}"
        );
    }
}

#[test]
fn query_params_and_without_headers_match_as_envoy_does() {
    let t = compile(vec![dr(), vs(json!({"hosts": ["a"], "http": [
        {"match": [{"queryParams": {"id": {"regex": "\\d+"}}, "withoutHeaders": {"debug": {"exact": "1"}}}],
         "route": [{"destination": {"host": "a", "subset": "v2"}}]}]}))])
    .unwrap();
    let r = &mut Sweep(0);
    assert!(cluster(&t, &HeaderList::request("GET", "a", "/?id=123"), r).is_some());
    assert!(cluster(&t, &HeaderList::request("GET", "a", "/?id=a123"), r).is_none());
    assert!(
        cluster(
            &t,
            &HeaderList::request("GET", "a", "/?id=1").with("debug", "1"),
            r
        )
        .is_none()
    );
    assert!(
        cluster(
            &t,
            &HeaderList::request("GET", "a", "/?id=1").with("debug", "0"),
            r
        )
        .is_some()
    );
}

#[test]
fn an_unknown_subset_is_refused_with_its_path() {
    let err = compile(vec![
        dr(),
        vs(json!({"hosts": ["a"], "http": [
        {"route": [{"destination": {"host": "a", "subset": "v3"}}]}]})),
    ])
    .unwrap_err();
    assert_eq!(
        err.path,
        "resources[1].spec.http[0].route[0].destination.subset"
    );
    assert!(err.message.contains("\"v3\""), "{err}");
}

#[test]
fn a_negative_weight_and_an_all_zero_split_are_refused() {
    let two = |w1: i64, w2: i64| {
        vs(json!({"hosts": ["a"], "http": [{"route": [
        {"destination": {"host": "a", "subset": "v1"}, "weight": w1},
        {"destination": {"host": "a", "subset": "v2"}, "weight": w2}]}]}))
    };
    let err = compile(vec![dr(), two(-1, 101)]).unwrap_err();
    assert_eq!(err.path, "resources[1].spec.http[0].route[0].weight");
    let err = compile(vec![dr(), two(0, 0)]).unwrap_err();
    assert_eq!(err.path, "resources[1].spec.http[0].route");
}

#[test]
fn weights_are_relative_shares_and_zero_drops_a_destination() {
    let t = compile(vec![
        dr(),
        vs(json!({"hosts": ["a"], "http": [{"route": [
        {"destination": {"host": "a", "subset": "v1"}, "weight": 60},
        {"destination": {"host": "a", "subset": "v2"}, "weight": 30}]}]})),
    ])
    .unwrap();
    assert!(
        t.warnings().iter().any(|w| w.contains("sum to 90")),
        "{:?}",
        t.warnings()
    );
    let r = &mut Sweep(0);
    let v1 = (0..90)
        .filter(|_| {
            cluster(&t, &HeaderList::request("GET", "a", "/"), r)
                .is_some_and(|c| c.contains("|v1|"))
        })
        .count();
    assert_eq!(v1, 60);
    let t = compile(vec![
        dr(),
        vs(json!({"hosts": ["a"], "http": [{"route": [
        {"destination": {"host": "a", "subset": "v1"}, "weight": 0},
        {"destination": {"host": "a", "subset": "v2"}, "weight": 100}]}]})),
    ])
    .unwrap();
    let r = &mut Sweep(0);
    assert!((0..100).all(|_| {
        cluster(&t, &HeaderList::request("GET", "a", "/"), r).is_some_and(|c| c.contains("|v2|"))
    }));
}

#[test]
fn an_invalid_regex_is_refused_with_its_path() {
    let err = compile(vec![dr(), vs(json!({"hosts": ["a"], "http": [
        {"match": [{"headers": {"x": {"regex": "(a"}}}], "route": [{"destination": {"host": "a"}}]}]}))])
    .unwrap_err();
    assert_eq!(
        err.path,
        "resources[1].spec.http[0].match[0].headers.x.regex"
    );
}

#[test]
fn the_cluster_name_template_names_host_subset_and_port() {
    let mut doc = Document::parse(
        &document_of(vec![dr(), vs(json!({"hosts": ["a"], "http": [
            {"route": [{"destination": {"host": "a", "subset": "v1", "port": {"number": 9080}}}]}]}))]),
        &[Kind::VirtualService, Kind::DestinationRule],
    )
    .unwrap();
    doc.envoy.cluster_name = "{host}-{subset}-{port}".into();
    let t = RouteTable::compile(&doc).unwrap();
    assert_eq!(
        cluster(&t, &HeaderList::request("GET", "a", "/"), &mut Sweep(0)),
        Some("a.default.svc.cluster.local-v1-9080")
    );
    doc.envoy.cluster_name = "{host}".into();
    assert_eq!(
        RouteTable::compile(&doc).unwrap_err().path,
        "envoy.clusterName"
    );
}

#[test]
fn a_mesh_wildcard_host_is_refused() {
    let err = compile(vec![vs(
        json!({"hosts": ["*"], "http": [{"route": [{"destination": {"host": "a"}}]}]}),
    )])
    .unwrap_err();
    assert_eq!(err.path, "resources[0].spec.hosts[0]");
}

#[test]
fn a_host_claimed_twice_stays_with_the_first_virtual_service_and_warns_once() {
    let mut second = vs(
        json!({"hosts": ["a"], "http": [{"route": [{"destination": {"host": "a", "subset": "v2"}}]}]}),
    );
    second["metadata"]["name"] = json!("second");
    let t = compile(vec![
        dr(),
        vs(json!({"hosts": ["a"], "http": [{"route": [{"destination": {"host": "a", "subset": "v1"}}]}]})),
        second,
    ])
    .unwrap();
    let dup: Vec<&String> = t
        .warnings()
        .iter()
        .filter(|w| w.contains("already routed"))
        .collect();
    assert_eq!(dup.len(), 1, "{dup:?}");
    assert!(
        dup[0].starts_with("resources[2].spec.hosts[0]") && dup[0].contains("default/vs"),
        "{}",
        dup[0]
    );
    let c = cluster(
        &t,
        &HeaderList::request("GET", "a.default.svc", "/"),
        &mut Sweep(0),
    );
    assert_eq!(c, Some("outbound|80|v1|a.default.svc.cluster.local"));
}

#[test]
fn an_envoy_route_with_istios_defaults_leaves_only_the_differences_to_write() {
    let spec = json!({"hosts": ["a"], "http": [
        {"match": [{"uri": {"prefix": "/slow"}}], "timeout": "3s",
         "route": [{"destination": {"host": "a", "subset": "v1"}}]},
        {"route": [{"destination": {"host": "a", "subset": "v1"}}]}]});
    let doc = |knob: bool| {
        let mut d: serde_json::Value =
            serde_json::from_slice(&document_of(vec![dr(), vs(spec.clone())])).unwrap();
        d["envoy"] = json!({"routeHasIstioDefaults": knob});
        let doc = Document::parse(
            d.to_string().as_bytes(),
            &[Kind::VirtualService, Kind::DestinationRule],
        )
        .unwrap();
        RouteTable::compile(&doc).unwrap()
    };
    let sets = |t: &RouteTable, path: &str| -> Vec<String> {
        let req = HeaderList::request("GET", "a", path);
        let d = t.decide(&req, &mut SplitMix64::new(1));
        match t.verdict(&d, &req) {
            Verdict::Continue(m) => m
                .iter()
                .filter_map(|op| match op {
                    HeaderOp::Set(n, _) => Some(n.clone()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    };
    let plain = doc(false);
    assert_eq!(
        sets(&plain, "/").len(),
        5,
        "cluster, timeout 0, retries 2, retry-on, retry-grpc-on: {:?}",
        sets(&plain, "/")
    );
    let knob = doc(true);
    assert_eq!(sets(&knob, "/"), ["x-mesh-cluster"]);
    assert_eq!(
        sets(&knob, "/slow"),
        ["x-mesh-cluster", "x-envoy-upstream-rq-timeout-ms"]
    );
}
