//! Resilience on a fake clock: the health rules, the policies a
//! DestinationRule gives, and the stage in front of the route stage — with
//! two "VMs" (two stage instances over one shared store and one metric
//! sink, as Envoy's VMs share shared data and stats).

use std::cell::Cell;
use std::rc::Rc;

use serde_json::{Value, json};

use super::health::{Admission, Event, Health, Outcome, Phase};
use super::stage::{OVERFLOW_BODY, ResilienceStage};
use super::*;
use crate::config::{Document, Kind};
use crate::http::HeaderList;
use crate::pipeline::tests::MapSink;
use crate::pipeline::{Env, Flow, HeaderSink, MemShared, Metrics, Response, Step};
use crate::rng::SplitMix64;
use crate::route::stage::RouteStage;
use crate::testutil::{document_of, vs};
use crate::verdict::HeaderOp;

const V1: &str = "outbound|80|v1|a.default.svc.cluster.local";
const V2: &str = "outbound|80|v2|a.default.svc.cluster.local";

fn outlier(c5xx: u32) -> Outlier {
    Outlier {
        consecutive_5xx: c5xx,
        consecutive_gateway: 0,
        interval_ms: 10_000,
        base_ejection_ms: 30_000,
        max_ejection_ms: MAX_EJECTION_MS,
        max_ejection_percent: 100,
        min_health_percent: 0,
    }
}

#[test]
fn consecutive_failures_eject_and_a_success_resets_the_count() {
    let p = outlier(3);
    let h = Health::default();
    let (h, e) = h.record(Outcome::ServerError, false, 0, &p, true);
    let h = h.unwrap();
    assert_eq!((h.consecutive_5xx, e), (1, Event::None));
    let (h2, _) = h.record(Outcome::Success, false, 1, &p, true);
    assert_eq!(h2.unwrap().consecutive_5xx, 0);
    let (h, _) = h.record(Outcome::GatewayError, false, 2, &p, true);
    let (h, e) = h.unwrap().record(Outcome::ServerError, false, 3, &p, true);
    assert_eq!(e, Event::Ejected);
    assert_eq!(
        h.unwrap().phase,
        Phase::Ejected { until_ms: 30_003 },
        "3rd consecutive 5xx ejects for baseEjectionTime"
    );
    assert_eq!(
        Health::default().record(Outcome::Success, false, 0, &p, true),
        (None, Event::None),
        "a success on a clean subset writes nothing"
    );
}

#[test]
fn gateway_errors_count_on_their_own_and_as_5xx() {
    let p = Outlier {
        consecutive_gateway: 2,
        ..outlier(0)
    };
    let (h, _) = Health::default().record(Outcome::ServerError, false, 0, &p, true);
    let (h, e) = h.unwrap().record(Outcome::GatewayError, false, 0, &p, true);
    assert_eq!(e, Event::None, "a 500 breaks the gateway-error run");
    let (_, e) = h.unwrap().record(Outcome::GatewayError, false, 0, &p, true);
    assert_eq!(e, Event::Ejected);
    assert_eq!(Outcome::of(503), Outcome::GatewayError);
    assert_eq!(Outcome::of(500), Outcome::ServerError);
    assert_eq!(Outcome::of(404), Outcome::Success);
}

#[test]
fn probes_readmit_after_three_successes_and_a_failed_probe_ejects_for_longer() {
    let p = outlier(1);
    let (h, _) = Health::default().record(Outcome::ServerError, false, 0, &p, true);
    let h = h.unwrap();
    assert_eq!(h.admit(29_999, PROBES).0, Admission::Refuse);
    let mut h = h;
    for i in 0..PROBES {
        let (a, next) = h.admit(30_000, PROBES);
        assert_eq!(a, Admission::Probe, "probe {i}");
        h = next.unwrap();
    }
    assert_eq!(
        h.admit(30_000, PROBES).0,
        Admission::Refuse,
        "only 3 probes"
    );
    let (h1, _) = h.record(Outcome::Success, true, 30_001, &p, true);
    let (h2, _) = h1.unwrap().record(Outcome::Success, true, 30_002, &p, true);
    let (h3, e) = h2.unwrap().record(Outcome::Success, true, 30_003, &p, true);
    assert_eq!((h3.unwrap().phase, e), (Phase::Healthy, Event::Readmitted));
    let (again, e) = h2
        .unwrap()
        .record(Outcome::GatewayError, true, 40_000, &p, true);
    assert_eq!(e, Event::Reejected);
    assert_eq!(
        again.unwrap().phase,
        Phase::Ejected { until_ms: 100_000 },
        "second ejection: 2 × 30 s"
    );
    assert_eq!(
        h.record(Outcome::ServerError, false, 1, &p, true),
        (None, Event::None),
        "an answer to a request sent before the ejection is ignored"
    );
}

#[test]
fn the_ejection_count_decays_per_interval_healthy_and_the_time_is_capped() {
    let p = outlier(1);
    let h = Health {
        ejections: 20,
        since_ms: 0,
        ..Health::default()
    };
    let (e, _) = h.record(Outcome::ServerError, false, 0, &p, true);
    assert_eq!(
        e.unwrap().phase,
        Phase::Ejected { until_ms: 300_000 },
        "capped at max_ejection_time"
    );
    let (e, _) = h.record(Outcome::ServerError, false, 185_000, &p, true);
    let e = e.unwrap();
    assert_eq!(e.ejections, 20 - 18 + 1, "18 intervals healthy");
}

#[test]
fn the_encoding_round_trips_and_junk_reads_as_healthy() {
    for phase in [
        Phase::Healthy,
        Phase::Ejected { until_ms: 1 << 40 },
        Phase::Probing {
            admitted: 2,
            succeeded: 1,
        },
    ] {
        let h = Health {
            phase,
            consecutive_5xx: 7,
            consecutive_gateway: 3,
            ejections: 2,
            since_ms: 123_456,
        };
        assert_eq!(Health::decode(&h.encode()), h);
    }
    assert_eq!(Health::decode(b"junk"), Health::default());
    assert_eq!(Health::decode(&[9; 38]), Health::default());
}

#[test]
fn a_probe_without_an_answer_gives_its_place_back() {
    let h = Health {
        phase: Phase::Probing {
            admitted: 3,
            succeeded: 1,
        },
        ..Health::default()
    };
    let back = h.probe_abandoned().unwrap();
    assert_eq!(back.admit(0, PROBES).0, Admission::Probe);
}

fn dr(policy: Value, v2_policy: Option<Value>) -> Value {
    let mut v2 = json!({"name": "v2"});
    if let Some(p) = v2_policy {
        v2["trafficPolicy"] = p;
    }
    json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
           "metadata": {"name": "dr"},
           "spec": {"host": "a", "trafficPolicy": policy, "subsets": [{"name": "v1"}, v2]}})
}

fn split(w1: u32, w2: u32, annotations: Option<Value>) -> Value {
    let mut v = vs(json!({"hosts": ["a"], "http": [{"route": [
        {"destination": {"host": "a", "subset": "v1"}, "weight": w1},
        {"destination": {"host": "a", "subset": "v2"}, "weight": w2}]}]}));
    if let Some(a) = annotations {
        v["metadata"]["annotations"] = a;
    }
    v
}

fn parse(resources: Vec<Value>) -> Document {
    Document::parse(
        &document_of(resources),
        &[Kind::VirtualService, Kind::DestinationRule],
    )
    .unwrap()
}

#[test]
fn the_seed_destination_rule_reads_as_its_alias_and_pool() {
    let doc = Document::parse(
        &crate::testutil::document(&[
            "virtual-service-example.yaml",
            "destination-rule-example.yaml",
        ]),
        &[Kind::VirtualService, Kind::DestinationRule],
    )
    .unwrap();
    let routes = RouteTable::compile(&doc).unwrap();
    let plan = Resilience::compile(&doc, &routes).unwrap();
    assert_eq!(plan.subsets.len(), 2, "v1 and v2 of product-service");
    for s in &plan.subsets {
        let o = s.outlier.unwrap();
        assert_eq!((o.consecutive_gateway, o.consecutive_5xx), (3, 5));
        assert_eq!((o.interval_ms, o.base_ejection_ms), (30_000, 30_000));
        assert_eq!(s.limit, Some(150), "100 connections + 50 pending");
    }
}

#[test]
fn a_subset_policy_replaces_the_hosts_field_by_field() {
    let doc = parse(vec![
        dr(
            json!({"outlierDetection": {"consecutive5xxErrors": 7},
                   "connectionPool": {"http": {"http2MaxRequests": 9}}}),
            Some(json!({"outlierDetection": {"consecutive5xxErrors": 2}})),
        ),
        split(50, 50, None),
    ]);
    let routes = RouteTable::compile(&doc).unwrap();
    let plan = Resilience::compile(&doc, &routes).unwrap();
    let of = |c: &str| plan.subsets.iter().find(|s| s.cluster == c).unwrap();
    assert_eq!(of(V1).outlier.unwrap().consecutive_5xx, 7);
    assert_eq!(of(V2).outlier.unwrap().consecutive_5xx, 2);
    assert_eq!(of(V2).limit, Some(9), "connectionPool inherited");
}

#[test]
fn clusters_with_the_connection_pool_leave_the_limit_to_envoy() {
    let resources = vec![
        dr(
            json!({"connectionPool": {"http": {"http2MaxRequests": 3}}}),
            Some(json!({"outlierDetection": {"consecutive5xxErrors": 2}})),
        ),
        split(50, 50, None),
    ];
    let mut d: Value = serde_json::from_slice(&document_of(resources)).unwrap();
    d["envoy"] = json!({"clustersHaveConnectionPool": true});
    let kinds = [Kind::VirtualService, Kind::DestinationRule];
    let doc = Document::parse(&serde_json::to_vec(&d).unwrap(), &kinds).unwrap();
    let plan = Resilience::compile(&doc, &RouteTable::compile(&doc).unwrap()).unwrap();
    // v1 had only the limit: nothing left for the filter; v2 keeps its
    // outlier detection.
    assert_eq!(plan.subsets.len(), 1);
    assert_eq!(
        (plan.subsets[0].cluster.as_str(), plan.subsets[0].limit),
        (V2, None)
    );
    assert_eq!(plan.subsets[0].outlier.unwrap().consecutive_5xx, 2);
}

/// One proxy: `vms` stage tuples over one shared store and metric sink,
/// and a fake clock.
struct Proxy {
    vms: Vec<(ResilienceStage, RouteStage)>,
    shared: MemShared,
    sink: MapSink,
    rng: SplitMix64,
    now: Rc<Cell<u64>>,
    metrics: Metrics,
}

#[derive(Default)]
struct Ops(Vec<HeaderOp>);
impl HeaderSink for Ops {
    fn apply(&mut self, op: &HeaderOp) {
        self.0.push(op.clone());
    }
}

type Stream = Flow<(ResilienceStage, RouteStage), HeaderList>;

impl Proxy {
    fn new(resources: Vec<Value>, vms: usize) -> Proxy {
        let doc = parse(resources);
        let mut metrics = Metrics::default();
        let vms = (0..vms)
            .map(|_| {
                let mut m = Metrics::default();
                let routes = Rc::new(RouteTable::compile(&doc).unwrap());
                let plan = Rc::new(Resilience::compile(&doc, &routes).unwrap());
                let r = ResilienceStage::new(Rc::clone(&routes), plan, &mut m);
                let route = RouteStage::new(routes, &mut m);
                metrics = m;
                (r, route)
            })
            .collect();
        Proxy {
            vms,
            shared: MemShared::default(),
            sink: MapSink::default(),
            rng: SplitMix64::new(7),
            now: Rc::new(Cell::new(1_000_000)),
            metrics,
        }
    }

    /// A proxy of `vms` VMs on a 50/50 route over v1 and v2 of host `a`,
    /// whose DestinationRule has `policy`.
    fn fifty_fifty(policy: Value, vms: usize) -> Proxy {
        Proxy::new(vec![dr(policy, None), split(50, 50, None)], vms)
    }

    /// Starts a request on VM `vm`: the cluster it goes to, or the reply.
    fn start(&mut self, vm: usize, req: HeaderList) -> (Stream, Result<String, (u32, Vec<u8>)>) {
        let now = Rc::clone(&self.now);
        let clock = move || now.get();
        let mut env = Env {
            now_ms: &clock,
            shared: &self.shared,
            ..Env::new(&mut self.rng, &mut self.sink)
        };
        let mut flow = Flow::new(req);
        let mut ops = Ops::default();
        let step = flow.start(&self.vms[vm], &mut env, &mut ops);
        let out = match step {
            Step::Continue => Ok(ops
                .0
                .iter()
                .find_map(|op| match op {
                    HeaderOp::Set(n, v) if n == "x-mesh-cluster" => Some(v.clone()),
                    _ => None,
                })
                .unwrap_or_default()),
            Step::Reply(r) => Err((r.status, r.body.to_vec())),
            other => panic!("{other:?}"),
        };
        (flow, out)
    }

    /// Answers `flow` (started on VM `vm`) with `status` and ends it.
    fn finish(&mut self, vm: usize, mut flow: Stream, status: u16) {
        let now = Rc::clone(&self.now);
        let clock = move || now.get();
        let mut env = Env {
            now_ms: &clock,
            shared: &self.shared,
            ..Env::new(&mut self.rng, &mut self.sink)
        };
        let response = Response {
            status,
            overloaded: false,
        };
        flow.on_response(&self.vms[vm], &response, &mut env);
        flow.done(&self.vms[vm], &mut env);
    }

    /// One request on VM `vm` answered by `answer(cluster)`; the cluster.
    fn call(&mut self, vm: usize, answer: impl Fn(&str) -> u16) -> String {
        let (flow, out) = self.start(vm, HeaderList::request("GET", "a", "/"));
        let cluster = out.unwrap();
        self.finish(vm, flow, answer(&cluster));
        cluster
    }

    fn metric_id(&self, name: &str) -> crate::pipeline::MetricId {
        let id = self
            .metrics
            .defs()
            .iter()
            .position(|(n, _)| n == name)
            .unwrap();
        crate::pipeline::MetricId(id)
    }

    fn metric(&self, name: &str) -> i64 {
        self.sink.0.get(&self.metric_id(name)).copied().unwrap_or(0)
    }

    fn advance(&self, ms: u64) {
        self.now.set(self.now.get() + ms);
    }
}

fn v2_fails(c: &str) -> u16 {
    if c == V2 { 503 } else { 200 }
}

#[test]
fn a_failing_subset_is_ejected_its_share_fails_over_and_it_is_probed_back() {
    let mut p = Proxy::fifty_fifty(
        json!({"outlierDetection": {"consecutive5xxErrors": 3, "baseEjectionTime": "10s"}}),
        2,
    );
    let stat = "meshwasm.resilience.outbound_80_v2_a_default_svc_cluster_local";
    let mut failures = 0;
    for i in 0..200 {
        if p.call(i % 2, v2_fails) == V2 {
            failures += 1;
        }
    }
    assert_eq!(failures, 3, "two VMs, one count: ejected after the 3rd 5xx");
    assert_eq!(p.metric(&format!("{stat}.ejections_active")), 1);
    assert!(p.metric(&format!("{stat}.failovers")) > 50);
    p.advance(10_000);
    let mut probes = 0;
    for i in 0..100 {
        if p.call(i % 2, |_| 200) == V2 {
            probes += 1;
        }
    }
    assert!(probes > 30, "readmitted: v2 takes half again ({probes})");
    assert_eq!(p.metric(&format!("{stat}.readmissions")), 1);
    assert_eq!(p.metric(&format!("{stat}.ejections_active")), 0);
    // Failing again: ejected again, for 2 × 10 s.
    let mut failures = 0;
    for i in 0..100 {
        if p.call(i % 2, v2_fails) == V2 {
            failures += 1;
        }
    }
    assert_eq!(failures, 3);
    p.advance(10_000);
    assert!(
        (0..50).all(|i| p.call(i % 2, v2_fails) == V1),
        "still ejected"
    );
    p.advance(10_000);
    let seen: Vec<String> = (0..100).map(|i| p.call(i % 2, v2_fails)).collect();
    assert_eq!(
        seen.iter().filter(|c| *c == V2).count(),
        1,
        "one failing probe ejects it again"
    );
    assert_eq!(p.metric(&format!("{stat}.ejections_total")), 3);
}

#[test]
fn the_ejections_gauge_admits_a_healthy_subset_without_reading_the_shared_value() {
    let mut p = Proxy::fifty_fifty(
        json!({"outlierDetection": {"consecutive5xxErrors": 3, "baseEjectionTime": "10s"}}),
        1,
    );
    let cluster = "outbound|80|v2|a.default.svc.cluster.local";
    let ejected = Health {
        phase: Phase::Ejected {
            until_ms: u64::MAX / 2,
        },
        ..Health::default()
    };
    let key = format!("meshwasm.health.{cluster}");
    crate::pipeline::SharedData::set(&p.shared, &key, &ejected.encode(), None).unwrap();
    let to_v2 = |p: &mut Proxy| (0..40).filter(|_| p.call(0, |_| 200) == V2).count();
    assert!(to_v2(&mut p) > 10, "gauge 0: v2 is taken as healthy");
    let stat = "meshwasm.resilience.outbound_80_v2_a_default_svc_cluster_local.ejections_active";
    let id = p.metric_id(stat);
    p.sink.0.insert(id, 1);
    assert_eq!(to_v2(&mut p), 0, "gauge 1: the shared value decides");
}

#[test]
fn when_every_subset_is_ejected_the_route_ignores_ejections() {
    let mut p = Proxy::fifty_fifty(
        json!({"outlierDetection": {"consecutive5xxErrors": 1, "maxEjectionPercent": 100}}),
        1,
    );
    for _ in 0..20 {
        p.call(0, |_| 500);
    }
    let seen: Vec<String> = (0..100).map(|_| p.call(0, |_| 500)).collect();
    assert!(seen.iter().any(|c| c == V1) && seen.iter().any(|c| c == V2));
}

#[test]
fn max_ejection_percent_keeps_one_of_two_subsets_in() {
    let mut p = Proxy::fifty_fifty(json!({"outlierDetection": {"consecutive5xxErrors": 1}}), 1);
    for _ in 0..50 {
        p.call(0, |_| 500);
    }
    let ejected = [V1, V2]
        .iter()
        .map(|c| {
            p.metric(&format!(
                "meshwasm.resilience.{}.ejections_active",
                crate::pipeline::stat_safe(c)
            ))
        })
        .sum::<i64>();
    assert_eq!(
        ejected, 1,
        "10% of 2 subsets: Envoy still ejects one, not two"
    );
}

#[test]
fn min_health_percent_routes_as_if_nothing_were_ejected() {
    let mut p = Proxy::fifty_fifty(
        json!({"outlierDetection": {"consecutive5xxErrors": 1, "minHealthPercent": 60}}),
        1,
    );
    for _ in 0..10 {
        p.call(0, v2_fails);
    }
    let seen: Vec<String> = (0..100).map(|_| p.call(0, v2_fails)).collect();
    assert!(
        seen.iter().filter(|c| *c == V2).count() > 20,
        "1 of 2 healthy < 60%"
    );
}

#[test]
fn sticky_users_of_an_ejected_subset_fail_over_and_come_back() {
    let annotations = json!({"meshwasm.io/sticky-by": "header:x-user-id"});
    let mut p = Proxy::new(
        vec![
            dr(
                json!({"outlierDetection": {"consecutive5xxErrors": 1, "baseEjectionTime": "1s"}}),
                None,
            ),
            split(50, 50, Some(annotations)),
        ],
        1,
    );
    let users: Vec<String> = (0..40).map(|i| format!("user-{i}")).collect();
    let req = |u: &str| HeaderList::request("GET", "a", "/").with("x-user-id", u);
    let home: Vec<String> = users
        .iter()
        .map(|u| {
            let (f, c) = p.start(0, req(u));
            let c = c.unwrap();
            p.finish(0, f, 200);
            c
        })
        .collect();
    let on_v2 = users
        .iter()
        .zip(&home)
        .find(|(_, c)| *c == V2)
        .unwrap()
        .0
        .clone();
    let (f, _) = p.start(0, req(&on_v2));
    p.finish(0, f, 503);
    for (u, _) in users.iter().zip(&home).filter(|(_, c)| *c == V2) {
        let (f, c) = p.start(0, req(u));
        assert_eq!(c.unwrap(), V1, "{u} fails over");
        p.finish(0, f, 200);
    }
    p.advance(1_000);
    for _ in 0..PROBES {
        let (f, c) = p.start(0, req(&on_v2));
        assert_eq!(c.unwrap(), V2, "probe");
        p.finish(0, f, 200);
    }
    for (u, c) in users.iter().zip(&home) {
        let (f, now) = p.start(0, req(u));
        assert_eq!(&now.unwrap(), c, "{u} is back home");
        p.finish(0, f, 200);
    }
}

#[test]
fn concurrent_requests_beyond_the_limit_overflow_and_places_come_back() {
    let mut p = Proxy::new(
        vec![
            dr(
                json!({"connectionPool": {"http": {"http2MaxRequests": 3}}}),
                None,
            ),
            split(100, 0, None),
        ],
        2,
    );
    let mut open = Vec::new();
    let mut overflowed = 0;
    for i in 0..5 {
        let (f, out) = p.start(i % 2, HeaderList::request("GET", "a", "/"));
        match out {
            Ok(c) => {
                assert_eq!(c, V1);
                open.push((i % 2, f));
            }
            Err((status, body)) => {
                assert_eq!((status, body.as_slice()), (503, OVERFLOW_BODY));
                overflowed += 1;
            }
        }
    }
    assert_eq!((open.len(), overflowed), (3, 2));
    let stat = format!("meshwasm.resilience.{}", crate::pipeline::stat_safe(V1));
    assert_eq!(p.metric(&format!("{stat}.rq_active")), 3);
    assert_eq!(p.metric(&format!("{stat}.overflows")), 2);
    for (vm, f) in open {
        p.finish(vm, f, 200);
    }
    assert_eq!(p.metric(&format!("{stat}.rq_active")), 0);
    assert!(p.start(0, HeaderList::request("GET", "a", "/")).1.is_ok());
}
