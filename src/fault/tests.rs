//! Fault injection: the seed's delay and abort rules, exact percentages,
//! delay-then-abort, active-fault limits, and Istio's validation.

use serde_json::json;

use super::*;
use crate::config::{Document, Kind};
use crate::http::HeaderList;
use crate::pipeline::tests::MapSink;
use crate::pipeline::{Flow, HeaderSink, Phase, Step};
use crate::rng::SplitMix64;
use crate::route::stage::RouteStage;
use crate::testutil::{compile, document, dr, vs};
use crate::verdict::HeaderOp;

/// An Rng that returns 0, 1, 2, … so `n` draws below `n` visit every
/// bucket exactly once.
struct Sweep(u32);
impl Rng for Sweep {
    fn below(&mut self, bound: u32) -> u32 {
        let v = self.0 % bound.max(1);
        self.0 = self.0.wrapping_add(1);
        v
    }
}

struct NoHost;
impl HeaderSink for NoHost {
    fn apply(&mut self, _op: &HeaderOp) {}
}

fn seed(file: &str) -> Rc<RouteTable> {
    let doc = Document::parse(
        &document(&[file, "destination-rule-example.yaml"]),
        &[Kind::VirtualService, Kind::DestinationRule],
    )
    .unwrap();
    Rc::new(RouteTable::compile(&doc).unwrap())
}

fn stage(routes: Rc<RouteTable>, max_active: Option<u64>) -> (FaultStage, Metrics) {
    let mut metrics = Metrics::default();
    let stage = FaultStage::new(routes, max_active, &mut metrics);
    (stage, metrics)
}

fn metric(metrics: &Metrics, sink: &MapSink, name: &str) -> i64 {
    let id = metrics
        .defs()
        .iter()
        .position(|(n, _)| n == &format!("meshwasm.fault.{name}"))
        .unwrap();
    sink.0.get(&MetricId(id)).copied().unwrap_or(0)
}

fn scenario(value: &str) -> HeaderList {
    HeaderList::request("GET", "product-service", "/api/products").with("test-scenario", value)
}

/// Runs the fault stage alone on one request: the step, then (after a
/// wait) the step after the wake.
fn once(
    stage: &(FaultStage,),
    req: HeaderList,
    rng: &mut dyn Rng,
    sink: &mut MapSink,
) -> (Step<'static>, Option<Step<'static>>) {
    let mut flow: Flow<(FaultStage,), HeaderList> = Flow::new(req);
    let own = |s: Step<'_>| match s {
        Step::Reply(r) => {
            let mut out = LocalReply::new(r.status, ABORT_BODY, ABORT_DETAILS);
            assert_eq!((&*r.body, r.details), (ABORT_BODY, ABORT_DETAILS));
            out.grpc_status = r.grpc_status;
            Step::Reply(out)
        }
        Step::Continue => Step::Continue,
        Step::Wait(w) => Step::Wait(w),
        Step::Idle => Step::Idle,
    };
    let mut env = Env::new(rng, sink);
    let first = own(flow.start(stage, &mut env, &mut NoHost));
    let second = matches!(first, Step::Wait(_))
        .then(|| own(flow.wake(stage, Wake::Timer, &mut env, &mut NoHost)));
    flow.done(stage, &mut env);
    (first, second)
}

#[test]
fn the_seed_delay_rule_holds_test_scenario_delay_for_five_seconds_then_lets_it_through() {
    let (s, metrics) = stage(seed("fault-injection-delay.yaml"), None);
    let stages = (s,);
    let mut sink = MapSink::default();

    let (first, after) = once(
        &stages,
        scenario("delay"),
        &mut SplitMix64::new(3),
        &mut sink,
    );

    assert_eq!(first, Step::Wait(Wait::Timer { ms: 5000 }));
    assert_eq!(after, Some(Step::Continue));
    assert_eq!(metric(&metrics, &sink, "delays_injected"), 1);
    assert_eq!(
        metric(&metrics, &sink, "active_faults"),
        0,
        "released at the end"
    );
}

#[test]
fn requests_without_the_scenario_header_are_never_delayed() {
    let (s, metrics) = stage(seed("fault-injection-delay.yaml"), None);
    let stages = (s,);
    let mut sink = MapSink::default();
    let mut rng = SplitMix64::new(3);
    for value in ["", "Delay", "error", "delay "] {
        let (first, _) = once(&stages, scenario(value), &mut rng, &mut sink);
        assert_eq!(first, Step::Continue, "test-scenario: {value:?}");
    }
    let plain = HeaderList::request("GET", "product-service", "/api/products");
    assert_eq!(once(&stages, plain, &mut rng, &mut sink).0, Step::Continue);
    assert_eq!(metric(&metrics, &sink, "delays_injected"), 0);
}

#[test]
fn the_seed_abort_rule_aborts_exactly_half_of_the_error_requests() {
    // Arrange: a sweep visits each of the million buckets once.
    let (s, metrics) = stage(seed("fault-injection-abort.yaml"), None);
    let stages = (s,);
    let mut sink = MapSink::default();
    let mut rng = Sweep(0);
    // Act
    let mut aborted = 0;
    for _ in 0..MILLION {
        match once(&stages, scenario("error"), &mut rng, &mut sink).0 {
            Step::Reply(r) => {
                assert_eq!((r.status, r.grpc_status), (500, None));
                aborted += 1;
            }
            other => assert_eq!(other, Step::Continue),
        }
    }
    // Assert: 50 % = 500000 per million, exactly.
    assert_eq!(aborted, 500_000);
    assert_eq!(metric(&metrics, &sink, "aborts_injected"), 500_000);
    assert_eq!(metric(&metrics, &sink, "active_faults"), 0);
}

fn one_rule(fault: serde_json::Value) -> Rc<RouteTable> {
    Rc::new(
        compile(vec![
            vs(json!({"hosts": ["a"], "http": [{
                "fault": fault,
                "route": [{"destination": {"host": "a", "subset": "v1"}}]}]})),
            dr(&["v1"]),
        ])
        .unwrap(),
    )
}

fn injected(fault: serde_json::Value, draws: u32) -> (u32, u32) {
    let (s, _) = stage(one_rule(fault), None);
    let stages = (s,);
    let mut sink = MapSink::default();
    let mut rng = Sweep(0);
    let (mut delays, mut aborts) = (0, 0);
    for _ in 0..draws {
        let req = HeaderList::request("GET", "a", "/");
        let (first, after) = once(&stages, req, &mut rng, &mut sink);
        delays += u32::from(matches!(first, Step::Wait(_)));
        aborts += u32::from(matches!(after.unwrap_or(first), Step::Reply(_)));
    }
    (delays, aborts)
}

#[test]
fn percentages_are_parts_per_million_and_0_and_100_are_exact() {
    let delay = |p: serde_json::Value| json!({"delay": {"fixedDelay": "1s", "percentage": p}});
    assert_eq!(injected(delay(json!({"value": 0})), MILLION).0, 0);
    assert_eq!(injected(delay(json!({"value": 100})), MILLION).0, MILLION);
    assert_eq!(injected(delay(json!({"value": 0.0001})), MILLION).0, 1);
    assert_eq!(injected(delay(json!({"value": 12.5})), MILLION).0, 125_000);
}

#[test]
fn an_unset_percentage_never_injects() {
    let (delays, aborts) = injected(
        json!({"delay": {"fixedDelay": "1s"}, "abort": {"httpStatus": 503}}),
        10_000,
    );
    assert_eq!((delays, aborts), (0, 0));
}

#[test]
fn the_deprecated_integer_percent_is_a_percentage() {
    let (delays, _) = injected(
        json!({"delay": {"fixedDelay": "1s", "percent": 30}}),
        MILLION,
    );
    assert_eq!(delays, 300_000);
}

#[test]
fn a_delay_comes_first_and_the_abort_is_drawn_after_it() {
    let (s, metrics) = stage(
        one_rule(json!({
            "delay": {"fixedDelay": "20ms", "percentage": {"value": 100}},
            "abort": {"httpStatus": 503, "percentage": {"value": 100}}})),
        None,
    );
    let stages = (s,);
    let mut sink = MapSink::default();
    let (first, after) = once(
        &stages,
        HeaderList::request("GET", "a", "/"),
        &mut SplitMix64::new(1),
        &mut sink,
    );
    assert_eq!(first, Step::Wait(Wait::Timer { ms: 20 }));
    assert!(matches!(after, Some(Step::Reply(r)) if r.status == 503));
    assert_eq!(metric(&metrics, &sink, "delays_injected"), 1);
    assert_eq!(metric(&metrics, &sink, "aborts_injected"), 1);
    assert_eq!(metric(&metrics, &sink, "active_faults"), 0);
}

#[test]
fn a_grpc_abort_answers_200_with_the_grpc_status_code() {
    let (s, _) = stage(
        one_rule(json!({"abort": {"grpcStatus": "UNAVAILABLE", "percentage": {"value": 100}}})),
        None,
    );
    let (first, _) = once(
        &(s,),
        HeaderList::request("POST", "a", "/pkg.Svc/M"),
        &mut SplitMix64::new(1),
        &mut MapSink::default(),
    );
    assert!(matches!(first, Step::Reply(r) if r.status == 200 && r.grpc_status == Some(14)));
}

#[test]
fn over_max_active_faults_no_fault_is_injected_and_the_overflow_is_counted() {
    // Arrange: one fault already active somewhere in the proxy.
    let (s, metrics) = stage(
        one_rule(json!({"abort": {"httpStatus": 500, "percentage": {"value": 100}}})),
        Some(1),
    );
    let stages = (s,);
    let mut sink = MapSink::default();
    let active = MetricId(3);
    assert_eq!(metrics.defs()[3].0, "meshwasm.fault.active_faults");
    sink.0.insert(active, 1);
    // Act
    let (first, _) = once(
        &stages,
        HeaderList::request("GET", "a", "/"),
        &mut SplitMix64::new(1),
        &mut sink,
    );
    // Assert
    assert_eq!(first, Step::Continue);
    assert_eq!(metric(&metrics, &sink, "faults_overflow"), 1);
    assert_eq!(metric(&metrics, &sink, "aborts_injected"), 0);
    assert_eq!(
        sink.0.get(&active),
        Some(&1),
        "the other fault stays counted"
    );
}

#[test]
fn a_stream_reset_while_delayed_releases_its_active_fault() {
    let (s, metrics) = stage(seed("fault-injection-delay.yaml"), None);
    let stages = (s,);
    let mut sink = MapSink::default();
    let mut rng = SplitMix64::new(1);
    let mut flow: Flow<(FaultStage,), HeaderList> = Flow::new(scenario("delay"));
    let mut env = Env::new(&mut rng, &mut sink);
    assert!(matches!(
        flow.start(&stages, &mut env, &mut NoHost),
        Step::Wait(_)
    ));
    // The client hangs up: teardown without a wake.
    flow.done(&stages, &mut env);
    assert_eq!(flow.phase(), Phase::Done);
    assert_eq!(metric(&metrics, &sink, "active_faults"), 0);
}

#[test]
fn fault_and_route_stages_share_one_rule_decision() {
    // Arrange: one table, two stages, the seed's delay rule.
    let routes = seed("fault-injection-delay.yaml");
    let mut metrics = Metrics::default();
    let stages = (
        FaultStage::new(Rc::clone(&routes), None, &mut metrics),
        RouteStage::new(routes, &mut metrics),
    );
    let mut sink = MapSink::default();
    let mut rng = SplitMix64::new(1);
    let mut env = Env::new(&mut rng, &mut sink);
    let mut flow: Flow<_, HeaderList> = Flow::new(scenario("delay"));
    let mut host = Vec::new();
    struct Rec<'a>(&'a mut Vec<HeaderOp>);
    impl HeaderSink for Rec<'_> {
        fn apply(&mut self, op: &HeaderOp) {
            self.0.push(op.clone());
        }
    }
    // Act
    let first = flow.start(&stages, &mut env, &mut Rec(&mut host));
    let routed_before_wake = host.len();
    let after = flow.wake(&stages, Wake::Timer, &mut env, &mut Rec(&mut host));
    // Assert: routed only after the delay, to the rule's v1.
    assert_eq!(first, Step::Wait(Wait::Timer { ms: 5000 }));
    assert_eq!(routed_before_wake, 0);
    assert_eq!(after, Step::Continue);
    assert!(host.contains(&HeaderOp::Set(
        "x-mesh-cluster".into(),
        "outbound|80|v1|product-service.default.svc.cluster.local".into()
    )));
    assert!(matches!(
        flow.exchange.rule,
        Some(RuleMatch::Matched { route: 0, .. })
    ));
}

fn refused(fault: serde_json::Value) -> crate::config::ConfigError {
    compile(vec![
        vs(json!({"hosts": ["a"], "http": [{
            "fault": fault,
            "route": [{"destination": {"host": "a", "subset": "v1"}}]}]})),
        dr(&["v1"]),
    ])
    .unwrap_err()
}

#[test]
fn invalid_faults_are_refused_with_their_json_path() {
    let at = "resources[0].spec.http[0].fault";
    let cases = [
        (json!({}), at.to_owned(), "abort and/or a delay"),
        (
            json!({"delay": {"fixedDelay": "1s", "percentage": {"value": -1}}}),
            format!("{at}.delay.percentage"),
            "neither 0.0",
        ),
        (
            json!({"abort": {"httpStatus": 500, "percentage": {"value": 100.5}}}),
            format!("{at}.abort.percentage"),
            "neither 0.0",
        ),
        (
            json!({"abort": {"httpStatus": 500, "percentage": {"value": 0.00001}}}),
            format!("{at}.abort.percentage"),
            "[0.0001, 100.0]",
        ),
        (
            json!({"delay": {"fixedDelay": "5", "percentage": {"value": 1}}}),
            format!("{at}.delay.fixedDelay"),
            "not a duration",
        ),
        (
            json!({"delay": {"fixedDelay": "0.5ms"}}),
            format!("{at}.delay.fixedDelay"),
            "at least 1ms",
        ),
        (
            json!({"delay": {"exponentialDelay": "1s"}}),
            format!("{at}.delay.exponentialDelay"),
            "not supported",
        ),
        (
            json!({"abort": {"httpStatus": 199}}),
            format!("{at}.abort.httpStatus"),
            "200-599",
        ),
        (
            json!({"abort": {"httpStatus": 600}}),
            format!("{at}.abort.httpStatus"),
            "200-599",
        ),
        (
            json!({"abort": {"grpcStatus": "14"}}),
            format!("{at}.abort.grpcStatus"),
            "not supported",
        ),
        (
            json!({"abort": {"http2Error": "x"}}),
            format!("{at}.abort.http2Error"),
            "HTTP/2",
        ),
        (
            json!({"abort": {"httpStatus": 500, "grpcStatus": "INTERNAL"}}),
            format!("{at}.abort"),
            "only one of",
        ),
        (
            json!({"delay": {"fixedDelay": "1s", "percent": 101}}),
            format!("{at}.delay.percent"),
            "[0..100]",
        ),
    ];
    for (fault, path, needle) in cases {
        let e = refused(fault.clone());
        assert_eq!(e.path, path, "{fault}: {e}");
        assert!(e.message.contains(needle), "{fault}: {e}");
    }
}

#[test]
fn a_delay_without_fixed_delay_and_an_abort_without_a_type_are_warnings() {
    let t = compile(vec![
        vs(json!({"hosts": ["a"], "http": [{
            "fault": {"delay": {"percentage": {"value": 100}}, "abort": {"percentage": {"value": 100}}},
            "route": [{"destination": {"host": "a", "subset": "v1"}}]}]})),
        dr(&["v1"]),
    ])
    .unwrap();
    let warned: Vec<&String> = t
        .warnings()
        .iter()
        .filter(|w| w.contains("fault"))
        .collect();
    assert_eq!(warned.len(), 2, "{:?}", t.warnings());
    let rule = t.rule(RuleMatch::Matched {
        vhost: 0,
        route: 0,
        entry: None,
    });
    assert_eq!(
        rule.and_then(|r| r.fault.clone()),
        Some(Fault {
            delay: None,
            abort: None
        })
    );
}
