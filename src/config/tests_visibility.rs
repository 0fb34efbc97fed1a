//! Which resources apply to this Envoy: `exportTo` and a DestinationRule's
//! `workloadSelector` against the workload, and `envoy.gateways` (a
//! gateway's Envoy serves the VirtualServices bound to it, not the
//! mesh-bound ones, as Istio splits them).

use serde_json::{Value, json};

use crate::config::{Document, Kind};
use crate::http::HeaderList;
use crate::rng::SplitMix64;
use crate::route::{Decision, RouteTable};

fn document(workload_ns: &str, envoy: Value, resources: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "workload": {"namespace": workload_ns, "labels": {"app": "web"}},
        "envoy": envoy,
        "resources": resources,
    }))
    .unwrap()
}

fn vs(ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
           "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

fn routed_to(t: &RouteTable, host: &str) -> Option<String> {
    let req = HeaderList::request("GET", host, "/");
    match t.decide(&req, &mut SplitMix64::new(1)) {
        Decision::Matched {
            target: Some(t), ..
        } => Some(t.cluster.clone()),
        Decision::Matched { .. } => Some("local reply".into()),
        _ => None,
    }
}

fn table(doc: &[u8]) -> (RouteTable, Vec<String>) {
    let doc = Document::parse(doc, Kind::ALL).unwrap();
    let t = RouteTable::compile(&doc).unwrap();
    let mut w = doc.warnings.clone();
    w.extend(t.warnings().iter().cloned());
    (t, w)
}

/// IST0109's fix: two VirtualServices for one host, each exported to its
/// own namespace — a workload sees only its namespace's.
fn ist0109() -> Vec<Value> {
    let to = |host: &str| json!([{"destination": {"host": host}}]);
    vec![
        vs(
            "team-1",
            "productpage",
            json!({"exportTo": ["."], "hosts": ["productpage.default.svc.cluster.local"],
            "http": [{"route": to("productpage")}]}),
        ),
        vs(
            "team-2",
            "custom",
            json!({"exportTo": ["."], "hosts": ["productpage.default.svc.cluster.local"],
            "http": [{"route": to("productpage.team-2.svc.cluster.local")}]}),
        ),
    ]
}

#[test]
fn export_to_dot_keeps_a_virtual_service_in_its_namespace() {
    let host = "productpage.default.svc.cluster.local";
    let (t, w) = table(&document("team-2", json!({}), ist0109()));
    assert_eq!(
        routed_to(&t, host).as_deref(),
        Some("outbound|80||productpage.team-2.svc.cluster.local")
    );
    assert!(
        w.iter().any(|w| w
            .starts_with("resources[0]: VirtualService team-1/productpage is exported to [\".\"]")),
        "{w:?}"
    );
    assert!(!w.iter().any(|w| w.contains("already routed")), "{w:?}");
    let (t, _) = table(&document("default", json!({}), ist0109()));
    assert_eq!(
        routed_to(&t, host),
        None,
        "exported to neither: the host passes through"
    );
}

#[test]
fn destination_rules_follow_export_to_and_their_workload_selector() {
    let dr = |ns: &str, extra: Value| {
        let mut spec = json!({"host": "a.prod.svc.cluster.local", "subsets": [{"name": "v1"}]});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
               "metadata": {"name": "dr", "namespace": ns}, "spec": spec})
    };
    let route = vs(
        "web",
        "v",
        json!({"hosts": ["a.prod.svc.cluster.local"],
        "http": [{"route": [{"destination": {"host": "a.prod.svc.cluster.local", "subset": "v1"}}]}]}),
    );
    let parse = |r: Value| {
        Document::parse(
            &document("web", json!({}), vec![r, route.clone()]),
            Kind::ALL,
        )
        .unwrap()
    };
    let seen = |d: &Document| d.destination_rules.len();
    assert_eq!(
        seen(&parse(dr("prod", json!({})))),
        1,
        "default: exported everywhere"
    );
    assert_eq!(seen(&parse(dr("prod", json!({"exportTo": ["."]})))), 0);
    assert_eq!(seen(&parse(dr("prod", json!({"exportTo": ["web"]})))), 1);
    let sel = |app: &str| json!({"workloadSelector": {"matchLabels": {"app": app}}});
    assert_eq!(seen(&parse(dr("web", sel("web")))), 1);
    assert_eq!(seen(&parse(dr("web", sel("other")))), 0);
    assert_eq!(
        seen(&parse(dr("prod", sel("web")))),
        0,
        "selectors do not cross namespaces"
    );
    // A subset only an invisible DestinationRule defines is undefined here.
    let doc = parse(dr("prod", json!({"exportTo": ["."]})));
    assert!(
        RouteTable::compile(&doc)
            .unwrap_err()
            .to_string()
            .contains("is not defined by any DestinationRule")
    );
}

fn gateway_world() -> Vec<Value> {
    let to = |host: &str| json!([{"destination": {"host": host}}]);
    vec![
        vs(
            "istio-system",
            "ingress",
            json!({"hosts": ["bookinfo.example"], "gateways": ["bookinfo-gateway"],
            "http": [{"route": to("productpage.default.svc.cluster.local")}]}),
        ),
        vs(
            "default",
            "mesh-only",
            json!({"hosts": ["reviews"], "http": [{"route": to("reviews")}]}),
        ),
        vs(
            "default",
            "both",
            json!({"hosts": ["ratings"], "gateways": ["mesh", "istio-system/bookinfo-gateway"],
            "http": [{"match": [{"gateways": ["mesh"]}], "route": to("ratings-mesh")},
                     {"match": [{"gateways": ["istio-system/bookinfo-gateway"]}], "route": to("ratings-gw")}]}),
        ),
    ]
}

#[test]
fn a_sidecar_serves_mesh_bound_virtual_services_only() {
    let (t, w) = table(&document("default", json!({}), gateway_world()));
    assert_eq!(routed_to(&t, "bookinfo.example"), None);
    assert!(routed_to(&t, "reviews").is_some());
    assert_eq!(
        routed_to(&t, "ratings").as_deref(),
        Some("outbound|80||ratings-mesh.default.svc.cluster.local")
    );
    assert!(
        w.iter()
            .any(|w| w.contains("binds only gateways") && w.contains("envoy.gateways")),
        "{w:?}"
    );
}

#[test]
fn a_gateway_serves_the_virtual_services_bound_to_it_only() {
    // `bookinfo-gateway` in istio-system is the short name resolved in the
    // VirtualService's namespace (Istio's resolveGatewayName).
    let envoy = json!({"gateways": ["istio-system/bookinfo-gateway"]});
    let (t, w) = table(&document("istio-system", envoy, gateway_world()));
    assert_eq!(
        routed_to(&t, "bookinfo.example").as_deref(),
        Some("outbound|80||productpage.default.svc.cluster.local")
    );
    assert_eq!(
        routed_to(&t, "reviews.default.svc.cluster.local"),
        None,
        "mesh-bound: not on a gateway"
    );
    assert_eq!(
        routed_to(&t, "ratings.default.svc.cluster.local").as_deref(),
        Some("outbound|80||ratings-gw.default.svc.cluster.local")
    );
    assert!(
        w.iter()
            .any(|w| w.contains("none of the gateways this Envoy is")),
        "{w:?}"
    );
    let bad = document(
        "istio-system",
        json!({"gateways": ["bookinfo-gateway"]}),
        vec![],
    );
    let e = RouteTable::compile(&Document::parse(&bad, Kind::ALL).unwrap()).unwrap_err();
    assert_eq!(e.path, "envoy.gateways[0]");
}

#[test]
fn hostname_comes_from_the_knob_or_istios_node_name() {
    let spec = |side: &str| {
        json!({"hosts": ["a"], "http": [{"headers": {side: {"set": {"x-host": "on %HOSTNAME%"}}},
            "route": [{"destination": {"host": "a"}}]}]})
    };
    let (t, _) = table(&document(
        "default",
        json!({"hostname": "node-7"}),
        vec![vs("default", "v", spec("response"))],
    ));
    let target = t.target(0).unwrap();
    assert_eq!(
        target.response_ops.last(),
        Some(&crate::verdict::HeaderOp::Set(
            "x-host".into(),
            "on node-7".into()
        ))
    );
    // Without the knob, the request side reads Istio's node metadata NAME.
    let (t, _) = table(&document(
        "default",
        json!({}),
        vec![vs("default", "v", spec("request"))],
    ));
    let mut req = HeaderList::request("GET", "a", "/");
    req.properties = vec![("node.metadata.NAME".into(), b"pod-3".to_vec())];
    let d = t.decide(&req, &mut SplitMix64::new(1));
    let crate::verdict::Verdict::Continue(m) = t.verdict(&d, &req) else {
        panic!("continues")
    };
    assert!(
        m.iter()
            .any(|op| *op == crate::verdict::HeaderOp::Set("x-host".into(), "on pod-3".into()))
    );
    // … which the response side cannot: refused there.
    let doc = document(
        "default",
        json!({}),
        vec![vs("default", "v", spec("response"))],
    );
    assert!(RouteTable::compile(&Document::parse(&doc, Kind::ALL).unwrap()).is_err());
}

#[test]
fn jwt_claim_routing_on_a_gateway_is_refused_as_not_implemented() {
    let spec = json!({"hosts": ["a.example"], "gateways": ["gw"], "http": [{
        "match": [{"headers": {"@request.auth.claims.group": {"exact": "admin"}}}],
        "route": [{"destination": {"host": "a"}}]}]});
    let doc = document(
        "default",
        json!({"gateways": ["default/gw"]}),
        vec![vs("default", "v", spec)],
    );
    let e = RouteTable::compile(&Document::parse(&doc, Kind::ALL).unwrap()).unwrap_err();
    assert!(
        e.message
            .contains("JWT claim based routing is not implemented"),
        "{e}"
    );
}
