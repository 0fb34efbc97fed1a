//! The flow: stage order, waits and wakes, replies, teardown.

use std::collections::HashMap;

use super::*;
use crate::http::HeaderList;
use crate::rng::SplitMix64;
use crate::verdict::Mutations;

/// Metrics in a map.
#[derive(Default)]
pub(crate) struct MapSink(pub HashMap<MetricId, i64>);

impl MetricSink for MapSink {
    fn add(&mut self, id: MetricId, delta: i64) {
        *self.0.entry(id).or_default() += delta;
    }
    fn value(&self, id: MetricId) -> Option<i64> {
        Some(self.0.get(&id).copied().unwrap_or(0))
    }
}

/// Header changes the host got.
#[derive(Default)]
struct Recorded(Vec<HeaderOp>);

impl HeaderSink for Recorded {
    fn apply(&mut self, op: &HeaderOp) {
        self.0.push(op.clone());
    }
}

/// Sets `x-tag: <name>` and records the `x-tag` it saw; waits on a timer
/// first when `wait` is set.
struct Tag {
    ops: Vec<HeaderOp>,
    wait: bool,
    reply: bool,
    response: Vec<HeaderOp>,
}

#[derive(Default)]
struct TagState {
    saw: Option<String>,
    woken: bool,
    done: u32,
}

fn tag(name: &'static str) -> Tag {
    Tag {
        ops: vec![HeaderOp::Set("x-tag".into(), name.into())],
        wait: false,
        reply: false,
        response: vec![HeaderOp::Add("x-resp".into(), name.into())],
    }
}

impl Stage for Tag {
    type State = TagState;

    fn request<'c, R: RequestView>(
        &'c self,
        ex: &mut Exchange<R>,
        state: &mut TagState,
        _env: &mut Env<'_>,
    ) -> Verdict<'c> {
        state.saw = ex
            .request
            .header("x-tag")
            .map(|v| String::from_utf8_lossy(&v).into_owned());
        if self.reply {
            return Verdict::Reply(LocalReply::new(418, b"", "tag"));
        }
        if self.wait {
            return Verdict::Pause(Wait::Timer { ms: 7 });
        }
        Verdict::Continue(Mutations {
            compiled: &self.ops,
            computed: Vec::new(),
        })
    }

    fn wake<'c, R: RequestView>(
        &'c self,
        _ex: &mut Exchange<R>,
        state: &mut TagState,
        _wake: Wake,
        _env: &mut Env<'_>,
    ) -> Verdict<'c> {
        state.woken = true;
        Verdict::Continue(Mutations {
            compiled: &self.ops,
            computed: Vec::new(),
        })
    }

    fn response<'c>(&'c self, _state: &TagState) -> &'c [HeaderOp] {
        &self.response
    }

    fn done(&self, state: &mut TagState, _env: &mut Env<'_>) {
        state.done += 1;
    }
}

struct FailsClosed;

impl Stage for FailsClosed {
    type State = ();
    fn request<'c, R: RequestView>(
        &'c self,
        _ex: &mut Exchange<R>,
        _state: &mut (),
        _env: &mut Env<'_>,
    ) -> Verdict<'c> {
        Verdict::Continue(Mutations::default())
    }
    fn host_failure() -> Option<LocalReply<'static>> {
        Some(LocalReply::new(403, b"denied", "closed"))
    }
}

fn run<S: Stages + 'static>(
    stages: &S,
    flow: &mut Flow<S, HeaderList>,
    host: &mut Recorded,
) -> Step<'static> {
    let mut rng = SplitMix64::new(1);
    let mut sink = MapSink::default();
    let mut env = Env::new(&mut rng, &mut sink);
    match flow.start(stages, &mut env, host) {
        Step::Reply(r) => Step::Reply(LocalReply::new(r.status, b"", "reply")),
        Step::Continue => Step::Continue,
        Step::Wait(w) => Step::Wait(w),
        Step::Idle => Step::Idle,
    }
}

fn wake<S: Stages>(stages: &S, flow: &mut Flow<S, HeaderList>, host: &mut Recorded) -> bool {
    let mut rng = SplitMix64::new(1);
    let mut sink = MapSink::default();
    let mut env = Env::new(&mut rng, &mut sink);
    matches!(
        flow.wake(stages, Wake::Timer, &mut env, host),
        Step::Continue
    )
}

fn request() -> HeaderList {
    HeaderList::request("GET", "a", "/")
}

#[test]
fn a_later_stage_sees_the_header_changes_of_an_earlier_one() {
    // Arrange
    let stages = (tag("a"), tag("b"));
    let mut flow = Flow::new(request());
    let mut host = Recorded::default();
    // Act
    let step = run(&stages, &mut flow, &mut host);
    // Assert
    assert_eq!(step, Step::Continue);
    assert_eq!(flow.state.1.saw.as_deref(), Some("a"));
    assert_eq!(
        host.0,
        vec![
            HeaderOp::Set("x-tag".into(), "a".into()),
            HeaderOp::Set("x-tag".into(), "b".into())
        ]
    );
    assert_eq!(flow.phase(), Phase::Forwarded);
}

#[test]
fn a_waiting_stage_is_woken_and_the_stages_after_it_run_then() {
    let mut waiting = tag("a");
    waiting.wait = true;
    let stages = (waiting, tag("b"));
    let mut flow = Flow::new(request());
    let mut host = Recorded::default();

    let step = run(&stages, &mut flow, &mut host);
    assert_eq!(step, Step::Wait(Wait::Timer { ms: 7 }));
    assert_eq!(
        flow.state.1.saw, None,
        "stage b must not run before the wake"
    );
    assert!(matches!(flow.phase(), Phase::Waiting { at: 0, .. }));

    assert!(wake(&stages, &mut flow, &mut host));
    assert!(flow.state.0.woken);
    assert_eq!(flow.state.1.saw.as_deref(), Some("a"));
    assert_eq!(flow.phase(), Phase::Forwarded);
}

#[test]
fn a_reply_stops_the_flow_before_the_later_stages() {
    let mut replying = tag("a");
    replying.reply = true;
    let stages = (replying, tag("b"));
    let mut flow = Flow::new(request());
    let mut host = Recorded::default();

    let step = run(&stages, &mut flow, &mut host);

    assert!(matches!(step, Step::Reply(r) if r.status == 418));
    assert_eq!(flow.state.1.saw, None);
    assert!(host.0.is_empty());
    assert_eq!(flow.phase(), Phase::Replied);
}

#[test]
fn a_wake_for_a_flow_that_does_not_wait_does_nothing() {
    let stages = (tag("a"),);
    let mut flow = Flow::new(request());
    let mut host = Recorded::default();
    run(&stages, &mut flow, &mut host);

    assert!(!wake(&stages, &mut flow, &mut host));
    assert!(!flow.state.0.woken);
    assert_eq!(host.0.len(), 1);
}

#[test]
fn teardown_reaches_every_stage_once_even_while_waiting() {
    let mut waiting = tag("a");
    waiting.wait = true;
    let stages = (waiting, tag("b"));
    let mut flow = Flow::new(request());
    let mut host = Recorded::default();
    run(&stages, &mut flow, &mut host);
    let mut rng = SplitMix64::new(1);
    let mut sink = MapSink::default();
    let mut env = Env::new(&mut rng, &mut sink);

    flow.done(&stages, &mut env);
    flow.done(&stages, &mut env);

    assert_eq!((flow.state.0.done, flow.state.1.done), (1, 1));
    assert_eq!(flow.phase(), Phase::Done);
    assert!(
        !wake(&stages, &mut flow, &mut host),
        "a finished flow never wakes"
    );
}

#[test]
fn response_changes_come_last_stage_first_and_only_for_forwarded_requests() {
    let stages = (tag("a"), tag("b"));
    let mut flow = Flow::new(request());
    let mut seen = Vec::new();
    flow.response(&stages, &mut |op| seen.push(op.clone()));
    assert!(seen.is_empty(), "nothing before the request was forwarded");

    run(&stages, &mut flow, &mut Recorded::default());
    flow.response(&stages, &mut |op| seen.push(op.clone()));

    assert_eq!(
        seen,
        vec![
            HeaderOp::Add("x-resp".into(), "b".into()),
            HeaderOp::Add("x-resp".into(), "a".into())
        ]
    );
}

#[test]
fn a_host_failure_fails_closed_when_any_stage_says_so() {
    assert_eq!(<(Tag, Tag)>::host_failure(), None);
    let reply = <(Tag, FailsClosed)>::host_failure().map(|r| r.status);
    assert_eq!(reply, Some(403));
}

#[test]
fn a_header_change_clears_the_shared_rule_match() {
    let stages = (tag("a"), tag("b"));
    let mut flow = Flow::new(request());
    flow.exchange.rule = Some(RuleMatch::PassThrough);

    run(&stages, &mut flow, &mut Recorded::default());

    assert_eq!(flow.exchange.rule, None);
}

#[test]
fn changes_that_change_nothing_never_reach_the_host() {
    // Arrange: removing an absent header, setting a header to the value it
    // has, then a real change, a removal of it, and an add.
    let set = |n: &str, v: &str| HeaderOp::Set(n.into(), v.into());
    let remove = |n: &str| HeaderOp::Remove(n.into());
    let stage = Tag {
        ops: vec![
            remove("x-absent"),
            set("x-same", "1"),
            set("x-new", "2"),
            set("x-new", "2"),
            remove("x-new"),
            HeaderOp::Add("x-same".into(), "1".into()),
        ],
        ..tag("unused")
    };
    let stages = (stage,);
    let mut flow = Flow::new(request().with("x-same", "1"));
    let mut host = Recorded::default();
    // Act
    run(&stages, &mut flow, &mut host);
    // Assert: one crossing per real change, in order.
    assert_eq!(
        host.0,
        vec![
            set("x-new", "2"),
            remove("x-new"),
            HeaderOp::Add("x-same".into(), "1".into())
        ]
    );
    assert_eq!(
        flow.exchange.request.header("x-same").as_deref(),
        Some(&b"1,1"[..])
    );
}
