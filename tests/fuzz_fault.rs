//! Property tests of fault injection: whatever `fault` block a user writes,
//! compiling it is a refusal with a path or a table, never a panic; and
//! whatever a client sends, the fault and route stages decide, wait, wake
//! and tear down without panicking (a panic traps the VM: SPEC.md
//! §proxy-wasm ABI G).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use std::rc::Rc;

use meshwasm::config::{Document, Kind};
use meshwasm::fault::FaultStage;
use meshwasm::http::HeaderList;
use meshwasm::pipeline::{Env, Flow, HeaderSink, MetricId, MetricSink, Metrics, Step, Wake};
use meshwasm::rng::SplitMix64;
use meshwasm::route::RouteTable;
use meshwasm::route::stage::RouteStage;
use meshwasm::verdict::HeaderOp;
use proptest::prelude::*;
use serde_json::{Value, json};

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        (-1.0f64..101.0).prop_map(|f| json!(f)),
        Just(json!(0.0001)),
        Just(json!(0.00009)),
        "[0-9a-z.]{0,8}".prop_map(Value::String),
    ]
}

fn duration() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[0-9.]{0,6}(ns|us|µs|ms|s|m|h|d|)".prop_map(Value::String),
        any::<i64>().prop_map(|n| json!(n)),
    ]
}

fn maybe<T: std::fmt::Debug + Clone + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> impl Strategy<Value = Option<T>> {
    prop::option::of(s)
}

fn fault() -> impl Strategy<Value = Value> {
    (
        maybe(duration()),
        maybe(duration()),
        maybe(number()),
        maybe(number()),
        maybe(number()),
        maybe("[A-Z_0-9]{0,12}"),
        maybe(number()),
        any::<u8>(),
    )
        .prop_map(|(fixed, exp, dpct, dpercent, status, grpc, apct, which)| {
            let mut delay = serde_json::Map::new();
            if let Some(v) = fixed {
                delay.insert("fixedDelay".into(), v);
            }
            if let Some(v) = exp {
                delay.insert("exponentialDelay".into(), v);
            }
            if let Some(v) = dpct {
                delay.insert("percentage".into(), json!({"value": v}));
            }
            if let Some(v) = dpercent {
                delay.insert("percent".into(), v);
            }
            let mut abort = serde_json::Map::new();
            if let Some(v) = status {
                abort.insert("httpStatus".into(), v);
            }
            if let Some(v) = grpc {
                abort.insert("grpcStatus".into(), json!(v));
            }
            if let Some(v) = apct {
                abort.insert("percentage".into(), json!({"value": v}));
            }
            let mut f = serde_json::Map::new();
            if which & 1 == 1 {
                f.insert("delay".into(), Value::Object(delay));
            }
            if which & 2 == 2 {
                f.insert("abort".into(), Value::Object(abort));
            }
            Value::Object(f)
        })
}

fn document(fault: &Value) -> Vec<u8> {
    let mut resources = common::seed_resources(&["destination-rule-example.yaml"]);
    resources.push(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "f"},
        "spec": {"hosts": ["product-service"], "http": [
            {"match": [{"headers": {"x-f": {"exact": "1"}}}], "fault": fault,
             "route": [{"destination": {"host": "product-service", "subset": "v1"}}]},
            {"route": [{"destination": {"host": "product-service", "subset": "v2"}}]}]}
    }));
    serde_json::to_vec(&json!({"resources": resources})).unwrap()
}

#[derive(Default)]
struct Sink(std::collections::HashMap<MetricId, i64>);
impl MetricSink for Sink {
    fn add(&mut self, id: MetricId, delta: i64) {
        *self.0.entry(id).or_default() += delta;
    }
    fn value(&self, id: MetricId) -> Option<i64> {
        self.0.get(&id).copied()
    }
}
struct NoHost;
impl HeaderSink for NoHost {
    fn apply(&mut self, _op: &HeaderOp) {}
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_fault_block_is_compiled_or_refused_with_its_path(f in fault()) {
        let doc = Document::parse(&document(&f), &[Kind::VirtualService, Kind::DestinationRule]);
        match doc.and_then(|d| RouteTable::compile(&d)) {
            Ok(_) => {}
            Err(e) => prop_assert!(e.path.starts_with("resources[1].spec.http[0].fault"), "{e}"),
        }
    }

    #[test]
    fn any_request_goes_through_fault_and_route_without_panicking(
        f in fault(),
        authority in prop::collection::vec(any::<u8>(), 0..30),
        path in prop::collection::vec(any::<u8>(), 0..60),
        headers in prop::collection::vec(("[a-z:-]{1,10}", prop::collection::vec(any::<u8>(), 0..20)), 0..6),
        seed in any::<u64>(),
        max_active in prop::option::of(0u64..3),
        wake_twice in any::<bool>(),
    ) {
        let Ok(doc) = Document::parse(&document(&f), &[Kind::VirtualService, Kind::DestinationRule]) else {
            return Ok(());
        };
        let Ok(table) = RouteTable::compile(&doc) else { return Ok(()) };
        let routes = Rc::new(table);
        let mut metrics = Metrics::default();
        let stages = (
            FaultStage::new(Rc::clone(&routes), max_active, &mut metrics),
            RouteStage::new(routes, &mut metrics),
        );
        let mut pairs = vec![(":authority".to_owned(), authority), (":path".to_owned(), path), ("x-f".to_owned(), b"1".to_vec())];
        pairs.extend(headers);
        let mut flow: Flow<_, HeaderList> = Flow::new(HeaderList::new(pairs));
        let mut rng = SplitMix64::new(seed);
        let mut sink = Sink::default();
        let mut env = Env::new(&mut rng, &mut sink);
        let first = flow.start(&stages, &mut env, &mut NoHost);
        if matches!(first, Step::Wait(_)) {
            let _ = flow.wake(&stages, Wake::Timer, &mut env, &mut NoHost);
            if wake_twice {
                prop_assert_eq!(flow.wake(&stages, Wake::Timer, &mut env, &mut NoHost), Step::Idle);
            }
        }
        flow.done(&stages, &mut env);
        let active = sink.0.get(&MetricId(3)).copied().unwrap_or(0);
        prop_assert_eq!(active, 0, "every active fault is given back");
    }
}
