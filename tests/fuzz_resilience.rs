//! Property tests of resilience and header operators: whatever bytes sit in
//! shared data, whatever `trafficPolicy` a user writes and however
//! requests, answers, resets and time interleave on two VMs, nothing
//! panics (a panic traps the VM: SPEC.md §proxy-wasm ABI G), every place in
//! a concurrency limit comes back, and header values with Envoy's `%`
//! operators are refused or expanded, never a panic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;

use meshwasm::config::{Document, Kind};
use meshwasm::http::HeaderList;
use meshwasm::pipeline::{
    Env, Flow, HeaderSink, MemShared, MetricId, MetricSink, Metrics, Response, Step,
};
use meshwasm::resilience::Resilience;
use meshwasm::resilience::health::Health;
use meshwasm::resilience::stage::ResilienceStage;
use meshwasm::rng::SplitMix64;
use meshwasm::route::RouteTable;
use meshwasm::route::stage::RouteStage;
use meshwasm::verdict::HeaderOp;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use serde_json::{Value, json};

proptest! {
    #[test]
    fn any_bytes_in_shared_data_read_as_some_health(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let h = Health::decode(&bytes);
        prop_assert_eq!(Health::decode(&h.encode()), h);
    }
}

fn small() -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => (1i64..6).prop_map(|n| json!(n)),
        2 => Just(json!(0)),
        3 => Just(Value::Null),
        1 => Just(json!(-1)),
    ]
}

fn time() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("1ms")),
        Just(json!("50ms")),
        Just(json!("1s")),
        Just(Value::Null),
    ]
}

fn policy() -> impl Strategy<Value = Value> {
    (
        small(),
        small(),
        time(),
        time(),
        small(),
        small(),
        small(),
        small(),
    )
        .prop_map(
            |(c5, gw, interval, base, max_pct, min_health, h2, pending)| {
                json!({
                    "outlierDetection": {"consecutive5xxErrors": c5, "consecutiveGatewayErrors": gw,
                        "interval": interval, "baseEjectionTime": base,
                        "maxEjectionPercent": max_pct, "minHealthPercent": min_health},
                    "connectionPool": {"tcp": {"maxConnections": h2},
                        "http": {"http2MaxRequests": h2, "http1MaxPendingRequests": pending}}
                })
            },
        )
}

#[derive(Debug, Clone)]
enum Event {
    /// A request on VM `vm`.
    Start(usize),
    /// The oldest open request's answer.
    Answer(u16),
    /// The oldest open request reset by its client.
    Reset,
    /// Time passes.
    Advance(u64),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (0usize..2).prop_map(Event::Start),
        prop_oneof![Just(200u16), Just(500), Just(503), Just(404)].prop_map(Event::Answer),
        Just(Event::Reset),
        (0u64..2_000).prop_map(Event::Advance),
    ]
}

#[test]
fn most_generated_policies_are_valid() {
    // The interleaving property is only worth its cases if they compile.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut valid = 0;
    for _ in 0..200 {
        let p = policy().new_tree(&mut runner).unwrap().current();
        let doc = json!({"workload": {"namespace": "default", "labels": {}}, "resources": [
            {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "a"},
             "spec": {"host": "a", "trafficPolicy": p, "subsets": [{"name": "v1"}]}}]});
        if Document::parse(doc.to_string().as_bytes(), &[Kind::DestinationRule]).is_ok() {
            valid += 1;
        }
    }
    assert!(valid > 60, "{valid} of 200");
}

#[derive(Default)]
struct Sink(HashMap<MetricId, i64>);

impl MetricSink for Sink {
    fn add(&mut self, id: MetricId, delta: i64) {
        *self.0.entry(id).or_default() += delta;
    }
    fn value(&self, id: MetricId) -> Option<i64> {
        Some(self.0.get(&id).copied().unwrap_or(0))
    }
}

struct Discard;
impl HeaderSink for Discard {
    fn apply(&mut self, _op: &HeaderOp) {}
}

type Stages = (ResilienceStage, RouteStage);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_policy_and_any_interleaving_keep_the_books(
        top in policy(),
        own in proptest::option::of(policy()),
        events in proptest::collection::vec(event(), 1..80),
    ) {
        let mut v2 = json!({"name": "v2"});
        if let Some(own) = own {
            v2["trafficPolicy"] = own;
        }
        let doc = json!({"workload": {"namespace": "default", "labels": {}}, "resources": [
            {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "a"},
             "spec": {"host": "a", "trafficPolicy": top, "subsets": [{"name": "v1"}, v2]}},
            {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "a"},
             "spec": {"hosts": ["a"], "http": [{"route": [
                 {"destination": {"host": "a", "subset": "v1"}, "weight": 50},
                 {"destination": {"host": "a", "subset": "v2"}, "weight": 50}]}]}}]});
        let Ok(doc) = Document::parse(doc.to_string().as_bytes(), &[Kind::VirtualService, Kind::DestinationRule]) else {
            return Ok(()); // refused with a path: fine
        };
        let routes = Rc::new(RouteTable::compile(&doc).unwrap());
        let plan = Rc::new(Resilience::compile(&doc, &routes).unwrap());
        // Each VM defines its own metrics, in the same order, so the same
        // name gets the same id in both: one stat shared by every VM, as
        // Envoy's stats store keeps one stat per name.
        let mut metrics = Metrics::default();
        let vms: Vec<Stages> = (0..2)
            .map(|_| {
                metrics = Metrics::default();
                (
                    ResilienceStage::new(Rc::clone(&routes), Rc::clone(&plan), &mut metrics),
                    RouteStage::new(Rc::clone(&routes), &mut metrics),
                )
            })
            .collect();
        let shared = MemShared::default();
        let mut sink = Sink::default();
        let mut rng = SplitMix64::new(9);
        let now = Rc::new(Cell::new(1_000u64));
        let mut open: Vec<(usize, Flow<Stages, HeaderList>)> = Vec::new();
        for e in events {
            let clock = { let now = Rc::clone(&now); move || now.get() };
            let mut env = Env { now_ms: &clock, shared: &shared, ..Env::new(&mut rng, &mut sink) };
            match e {
                Event::Start(vm) => {
                    let mut flow = Flow::new(HeaderList::request("GET", "a", "/"));
                    match flow.start(&vms[vm], &mut env, &mut Discard) {
                        Step::Continue => open.push((vm, flow)),
                        Step::Reply(r) => {
                            prop_assert_eq!(r.status, 503);
                            flow.done(&vms[vm], &mut env);
                        }
                        other => prop_assert!(false, "{other:?}"),
                    }
                }
                Event::Answer(status) if !open.is_empty() => {
                    let (vm, mut flow) = open.remove(0);
                    flow.on_response(&vms[vm], &Response { status, overloaded: false }, &mut env);
                    flow.done(&vms[vm], &mut env);
                }
                Event::Reset if !open.is_empty() => {
                    let (vm, mut flow) = open.remove(0);
                    flow.done(&vms[vm], &mut env);
                }
                Event::Advance(ms) => now.set(now.get() + ms),
                _ => {}
            }
        }
        for (vm, mut flow) in open.drain(..) {
            let clock = || now.get();
            let mut env = Env { now_ms: &clock, shared: &shared, ..Env::new(&mut rng, &mut sink) };
            flow.done(&vms[vm], &mut env);
        }
        let (mut ejected, mut erring) = (0, 0);
        for (i, (name, _)) in metrics.defs().iter().enumerate() {
            let v = sink.0.get(&MetricId(i)).copied().unwrap_or(0);
            if name.ends_with(".rq_active") {
                prop_assert_eq!(v, 0, "{} leaked places", name);
            }
            if name.ends_with(".ejections_active") {
                prop_assert!((0..=1).contains(&v), "{} = {}", name, v);
                ejected += v;
            }
            if name.ends_with(".erring") {
                prop_assert!((0..=1).contains(&v), "{} = {}", name, v);
                erring += v;
            }
        }
        // Once every count has landed, the gauges the request path reads
        // instead of the shared values say what the values say.
        let held: Vec<Health> = shared.values().iter().map(|(_, v)| Health::decode(v)).collect();
        prop_assert_eq!(ejected, held.iter().filter(|h| !h.is_healthy()).count() as i64);
        prop_assert_eq!(erring, held.iter().filter(|h| h.consecutive_5xx != 0).count() as i64);
    }
}

proptest! {
    #[test]
    fn header_values_with_any_percent_signs_are_refused_or_expanded(
        value in "[%A-Za-z_()?:x-]{0,24}",
        header in "[a-z-]{1,8}",
    ) {
        let doc = json!({"workload": {"namespace": "default", "labels": {}}, "resources": [
            {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "a"},
             "spec": {"hosts": ["a"], "http": [{
                 "headers": {"request": {"set": {"x-out": value}}},
                 "route": [{"destination": {"host": "a"}}]}]}}]});
        let Ok(doc) = Document::parse(doc.to_string().as_bytes(), &[Kind::VirtualService, Kind::DestinationRule]) else {
            return Ok(());
        };
        let Ok(routes) = RouteTable::compile(&doc) else { return Ok(()) };
        let req = HeaderList::request("GET", "a", "/").with(&header, "v");
        let d = routes.decide(&req, &mut SplitMix64::new(1));
        let _ = routes.verdict(&d, &req);
    }
}
