//! The asynchronous request pipeline every meshwasm filter runs
//! (docs/architecture.md). A filter is a tuple of [`Stage`]s — `(Route,)`,
//! `(Fault,)`, and the `mesh` filter all of them — driven by one [`Flow`]
//! per stream. A stage decides on the request as data
//! ([`Verdict::Continue`] with header changes, [`Verdict::Reply`], or
//! [`Verdict::Pause`] on a [`Wait`]); its per-stream state is an explicit
//! state machine of its own (STYLE.md rule 7). The flow only sequences:
//! it walks the stages in order, hands each stage's header changes to the
//! host and to the in-memory request (so a later stage sees them, as a
//! later Envoy filter would), stops at a reply, and parks at a wait until
//! the glue wakes it with what it waited for ([`Wake`]). Every host effect
//! — timers, callouts, shared data, replies, teardown — is the glue's.
//!
//! Nothing here knows proxy-wasm: the glue implements [`MetricSink`] and
//! the [`HeaderSink`] over hostcalls; core tests use plain values.

mod metrics;
mod shared;

pub use metrics::{MetricId, MetricKind, MetricSink, Metrics, stat_safe};
pub use shared::{CasMismatch, MemShared, NoShared, SharedData};

use crate::http::{HeaderList, RequestView};
use crate::rng::Rng;
use crate::route::RuleMatch;
use crate::verdict::{HeaderOp, LocalReply, Verdict};

/// What a paused stage waits for. The glue owns the effect and wakes the
/// stream with the matching [`Wake`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// A timer of `ms` milliseconds from now (a fault delay).
    Timer {
        /// Milliseconds to wait.
        ms: u64,
    },
    /// The remote key set `source` (see [`KeySource`]): fetched by the
    /// glue — once for every VM, through shared data — for at most
    /// `timeout_ms`.
    Keys {
        /// Index of the remote key set.
        source: usize,
        /// How long the stream may wait.
        timeout_ms: u64,
        /// The held keys lack the token's `kid`: fetch again (the glue
        /// rate-limits these refetches).
        refresh: bool,
    },
}

/// What a waiting stage receives when its wait is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The timer of a [`Wait::Timer`] fired, or a [`Wait::Keys`] timed out.
    Timer,
    /// The key set of a [`Wait::Keys`] arrived or its fetch failed: the
    /// stage asks the [`KeySource`] again.
    Keys,
}

/// What the host holds of a remote key set.
#[derive(Debug, Clone)]
pub enum KeyState {
    /// Fresh keys.
    Ready(std::rc::Rc<crate::authn::jwks::Jwks>),
    /// None yet: a fetch is due or under way.
    Pending,
    /// The last fetch failed and no keys are held.
    Failed,
}

/// Remote key sets as the glue holds them (shared data in the host).
pub trait KeySource {
    /// The state of remote key set `source`.
    fn jwks(&self, source: usize) -> KeyState;
}

/// A host without remote keys (tests, filters that fetch none).
pub struct NoKeys;

impl KeySource for NoKeys {
    fn jwks(&self, _source: usize) -> KeyState {
        KeyState::Pending
    }
}

/// Signature checks the host can do natively: Envoy's `verify_signature`
/// foreign function (SPEC.md §proxy-wasm ABI H; RSA PKCS#1 v1.5 and ECDSA
/// with DER signatures), far cheaper than the same check inside wasm.
pub trait Crypto {
    /// Whether `signature` over `text` verifies with the DER
    /// SubjectPublicKeyInfo `spki` and hash `hash` (`sha256`, …); `None`
    /// when the host cannot tell (no such function).
    fn verify(&self, hash: &str, spki: &[u8], signature: &[u8], text: &[u8]) -> Option<bool>;
}

/// A host without native signature checks.
pub struct NoCrypto;

impl Crypto for NoCrypto {
    fn verify(&self, _hash: &str, _spki: &[u8], _signature: &[u8], _text: &[u8]) -> Option<bool> {
        None
    }
}

fn zero() -> u64 {
    0
}

/// How the flow ended a step: what the glue must do with the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<'c> {
    /// Every stage let the request through: continue (or resume) it.
    Continue,
    /// A stage answered: send this local reply.
    Reply(LocalReply<'c>),
    /// A stage waits: keep the stream paused until the wait is over.
    Wait(Wait),
    /// Nothing to do: the flow already ended (a wake for a finished flow).
    Idle,
}

/// Where request header changes go (the host's request header map).
pub trait HeaderSink {
    /// Applies one change to the request the host forwards.
    fn apply(&mut self, op: &HeaderOp);
}

/// What a stage may use besides the request: randomness and the metrics.
/// Built by the glue for one callback. (No clock yet: no stage reads the
/// time, and reading it costs a hostcall per request; timers are the
/// glue's.)
pub struct Env<'a> {
    /// Seeded from the host's `random_get` once per VM.
    pub rng: &'a mut dyn Rng,
    /// The filter's metrics.
    pub metrics: &'a mut dyn MetricSink,
    /// Wall-clock time in ms since the epoch, read only when a stage asks
    /// (a hostcall in the filters).
    pub now_ms: &'a dyn Fn() -> u64,
    /// Remote key sets.
    pub keys: &'a dyn KeySource,
    /// Native signature checks.
    pub crypto: &'a dyn Crypto,
    /// Data shared by every VM of the proxy.
    pub shared: &'a dyn SharedData,
}

impl<'a> Env<'a> {
    /// An environment with no clock (time 0) and no remote keys.
    pub fn new(rng: &'a mut dyn Rng, metrics: &'a mut dyn MetricSink) -> Self {
        Self {
            rng,
            metrics,
            now_ms: &zero,
            keys: &NoKeys,
            crypto: &NoCrypto,
            shared: &NoShared,
        }
    }
}

impl Env<'_> {
    /// Increments a counter.
    pub fn count(&mut self, id: MetricId) {
        self.metrics.add(id, 1);
    }
}

/// A request header map that the flow can change, so a later stage sees
/// the changes of an earlier one.
pub trait MutableRequest: RequestView {
    /// Applies one change.
    fn apply(&mut self, op: &HeaderOp);
}

impl MutableRequest for HeaderList {
    fn apply(&mut self, op: &HeaderOp) {
        HeaderList::apply(self, op);
    }
}

/// One request as the stages see it: the headers (with the changes of the
/// stages before) and facts computed once and shared by stages — the
/// VirtualService rule that matched, so fault and route agree on it.
#[derive(Debug, Clone)]
pub struct Exchange<R> {
    /// The request.
    pub request: R,
    /// The matched rule, once a stage computed it; cleared when a stage
    /// changes the headers (Envoy re-selects the route then).
    pub rule: Option<RuleMatch>,
    /// Who sent the request, once the authn stage established it (the
    /// glue hands it to the next filter as filter state).
    pub identity: Option<std::rc::Rc<crate::authn::Identity>>,
    /// The destination (a route target id) a stage chose for the matched
    /// rule — the resilience stage, health-aware — for the route stage to
    /// apply; cleared with `rule`.
    pub target: Option<usize>,
}

impl<R> Exchange<R> {
    /// A new exchange over `request`.
    pub fn new(request: R) -> Self {
        Self {
            request,
            rule: None,
            identity: None,
            target: None,
        }
    }
}

/// One step of a filter: a decision on the request, and what to do when
/// its wait is over. Its per-stream memory is [`Stage::State`].
pub trait Stage {
    /// Per-stream state (an explicit state machine).
    type State: Default;

    /// Decides on the request headers.
    fn request<'c, R: RequestView>(
        &'c self,
        ex: &mut Exchange<R>,
        state: &mut Self::State,
        env: &mut Env<'_>,
    ) -> Verdict<'c>;

    /// The stage's wait is over; decides again.
    fn wake<'c, R: RequestView>(
        &'c self,
        _ex: &mut Exchange<R>,
        _state: &mut Self::State,
        _wake: Wake,
        _env: &mut Env<'_>,
    ) -> Verdict<'c> {
        Verdict::Continue(Default::default())
    }

    /// Response header changes, once the upstream answered.
    fn response<'c>(&'c self, _state: &Self::State) -> &'c [HeaderOp] {
        &[]
    }

    /// Whether the stage wants [`Stage::on_response`] (reading the
    /// response costs hostcalls; asked once, at configure time).
    fn watches_response(&self) -> bool {
        false
    }

    /// The response headers arrived (the upstream's, or a local reply of
    /// the router such as a reset or timeout): the stage may record the
    /// outcome.
    fn on_response(&self, _state: &mut Self::State, _response: &Response, _env: &mut Env<'_>) {}

    /// The stream ended (completed, answered locally, or reset by a
    /// client while paused): release what the stream held.
    fn done(&self, _state: &mut Self::State, _env: &mut Env<'_>) {}

    /// Whether the stage reads [`Exchange::identity`] that an earlier
    /// filter handed on (reading it costs a hostcall; asked once, at
    /// configure time).
    fn reads_identity(&self) -> bool {
        false
    }

    /// Whether the identity the stage establishes goes to Envoy filter
    /// state for later filters (the glue writes it; asked once).
    fn hands_on_identity(&self) -> bool {
        false
    }

    /// Remote key sets the stage reads through [`KeySource`], by index
    /// (the glue fetches them).
    fn key_sources(&self) -> Vec<crate::authn::RemoteJwks> {
        Vec::new()
    }

    /// What the filter answers when the host cannot give it the request
    /// (a hostcall failed): `None` lets the request through — right for
    /// routing and faults — while a security stage fails closed with a
    /// reply.
    fn host_failure() -> Option<LocalReply<'static>> {
        None
    }
}

/// What a stage learns of the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    /// `:status`.
    pub status: u16,
    /// Envoy's overflow mark `x-envoy-overloaded` is set (a circuit
    /// breaker answered; not an upstream failure).
    pub overloaded: bool,
}

/// A sequence of stages (a tuple of [`Stage`]s), indexed by position.
pub trait Stages {
    /// The states of every stage.
    type State: Default;
    /// How many stages.
    const LEN: usize;

    /// Stage `i`'s [`Stage::request`].
    fn request<'c, R: RequestView>(
        &'c self,
        i: usize,
        ex: &mut Exchange<R>,
        state: &mut Self::State,
        env: &mut Env<'_>,
    ) -> Verdict<'c>;

    /// Stage `i`'s [`Stage::wake`].
    fn wake<'c, R: RequestView>(
        &'c self,
        i: usize,
        ex: &mut Exchange<R>,
        state: &mut Self::State,
        wake: Wake,
        env: &mut Env<'_>,
    ) -> Verdict<'c>;

    /// Every stage's response header changes, last stage first (Envoy's
    /// encode order).
    fn response(&self, state: &Self::State, sink: &mut dyn FnMut(&HeaderOp));

    /// Whether any stage watches the response.
    fn watches_response(&self) -> bool;

    /// Whether any stage reads an identity handed on by an earlier filter.
    fn reads_identity(&self) -> bool;

    /// Whether a stage's identity goes to Envoy filter state.
    fn hands_on_identity(&self) -> bool;

    /// Every stage's [`Stage::on_response`], last stage first.
    fn on_response(&self, state: &mut Self::State, response: &Response, env: &mut Env<'_>);

    /// Every stage's [`Stage::done`].
    fn done(&self, state: &mut Self::State, env: &mut Env<'_>);

    /// The remote key sets of the stage that reads some (one stage does).
    fn key_sources(&self) -> Vec<crate::authn::RemoteJwks>;

    /// The reply of the first stage that fails closed when the host cannot
    /// give the request ([`Stage::host_failure`]); `None` if none does.
    fn host_failure() -> Option<LocalReply<'static>>;
}

macro_rules! stages_tuple {
    ($len:expr; $($idx:tt $ty:ident),+; $($rev:tt)+) => {
        impl<$($ty: Stage),+> Stages for ($($ty,)+) {
            type State = ($($ty::State,)+);
            const LEN: usize = $len;

            fn request<'c, R: RequestView>(
                &'c self,
                i: usize,
                ex: &mut Exchange<R>,
                state: &mut Self::State,
                env: &mut Env<'_>,
            ) -> Verdict<'c> {
                match i {
                    $($idx => self.$idx.request(ex, &mut state.$idx, env),)+
                    _ => Verdict::Continue(Default::default()),
                }
            }

            fn wake<'c, R: RequestView>(
                &'c self,
                i: usize,
                ex: &mut Exchange<R>,
                state: &mut Self::State,
                wake: Wake,
                env: &mut Env<'_>,
            ) -> Verdict<'c> {
                match i {
                    $($idx => self.$idx.wake(ex, &mut state.$idx, wake, env),)+
                    _ => Verdict::Continue(Default::default()),
                }
            }

            fn response(&self, state: &Self::State, sink: &mut dyn FnMut(&HeaderOp)) {
                $(self.$rev.response(&state.$rev).iter().for_each(&mut *sink);)+
            }

            fn watches_response(&self) -> bool {
                false $(|| self.$idx.watches_response())+
            }

            fn reads_identity(&self) -> bool {
                false $(|| self.$idx.reads_identity())+
            }

            fn hands_on_identity(&self) -> bool {
                false $(|| self.$idx.hands_on_identity())+
            }

            fn on_response(&self, state: &mut Self::State, response: &Response, env: &mut Env<'_>) {
                $(self.$rev.on_response(&mut state.$rev, response, env);)+
            }

            fn done(&self, state: &mut Self::State, env: &mut Env<'_>) {
                $(self.$idx.done(&mut state.$idx, env);)+
            }

            fn key_sources(&self) -> Vec<crate::authn::RemoteJwks> {
                let mut out = Vec::new();
                $(if out.is_empty() { out = self.$idx.key_sources(); })+
                out
            }

            fn host_failure() -> Option<LocalReply<'static>> {
                None$(.or_else($ty::host_failure))+
            }
        }
    };
}

stages_tuple!(1; 0 A; 0);
stages_tuple!(2; 0 A, 1 B; 1 0);
stages_tuple!(3; 0 A, 1 B, 2 C; 2 1 0);
stages_tuple!(4; 0 A, 1 B, 2 C, 3 D; 3 2 1 0);
stages_tuple!(5; 0 A, 1 B, 2 C, 3 D, 4 E; 4 3 2 1 0);

/// Where a flow is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Running stage `at` (or about to).
    Running {
        /// The stage.
        at: usize,
    },
    /// Stage `at` waits.
    Waiting {
        /// The stage.
        at: usize,
        /// For what.
        wait: Wait,
    },
    /// Every stage let the request through.
    Forwarded,
    /// A stage answered locally.
    Replied,
    /// The stream ended; [`Stage::done`] ran.
    Done,
}

/// One stream's way through the stages: the request, every stage's state,
/// and where it is.
#[derive(Debug, Clone)]
pub struct Flow<S: Stages, R> {
    /// The request and the shared facts.
    pub exchange: Exchange<R>,
    state: S::State,
    phase: Phase,
}

impl<S: Stages, R: MutableRequest> Flow<S, R> {
    /// A flow over `request`, before the first stage.
    pub fn new(request: R) -> Self {
        Self {
            exchange: Exchange::new(request),
            state: S::State::default(),
            phase: Phase::Running { at: 0 },
        }
    }

    /// Where the flow is.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Runs the stages on the request headers.
    pub fn start<'c>(
        &mut self,
        stages: &'c S,
        env: &mut Env<'_>,
        host: &mut dyn HeaderSink,
    ) -> Step<'c> {
        match self.phase {
            Phase::Running { at: 0 } => self.run(stages, 0, None, env, host),
            _ => Step::Idle,
        }
    }

    /// The wait is over: wakes the waiting stage and runs the rest.
    pub fn wake<'c>(
        &mut self,
        stages: &'c S,
        wake: Wake,
        env: &mut Env<'_>,
        host: &mut dyn HeaderSink,
    ) -> Step<'c> {
        match self.phase {
            Phase::Waiting { at, .. } => self.run(stages, at, Some(wake), env, host),
            _ => Step::Idle,
        }
    }

    /// Response header changes of every stage, last stage first.
    pub fn response(&self, stages: &S, sink: &mut dyn FnMut(&HeaderOp)) {
        if self.phase == Phase::Forwarded {
            stages.response(&self.state, sink);
        }
    }

    /// The response headers arrived: every stage of a forwarded request
    /// records the outcome, last stage first.
    pub fn on_response(&mut self, stages: &S, response: &Response, env: &mut Env<'_>) {
        if self.phase == Phase::Forwarded {
            stages.on_response(&mut self.state, response, env);
        }
    }

    /// The stream ended: every stage releases what it held, once.
    pub fn done(&mut self, stages: &S, env: &mut Env<'_>) {
        if self.phase != Phase::Done {
            stages.done(&mut self.state, env);
            self.phase = Phase::Done;
        }
    }

    fn run<'c>(
        &mut self,
        stages: &'c S,
        mut at: usize,
        mut wake: Option<Wake>,
        env: &mut Env<'_>,
        host: &mut dyn HeaderSink,
    ) -> Step<'c> {
        while at < S::LEN {
            self.phase = Phase::Running { at };
            let ex = &mut self.exchange;
            let verdict = match wake.take() {
                Some(w) => stages.wake(at, ex, &mut self.state, w, env),
                None => stages.request(at, ex, &mut self.state, env),
            };
            match verdict {
                Verdict::Continue(mutations) => {
                    let later = at + 1 < S::LEN;
                    for op in mutations.iter() {
                        // Every host change is a VM crossing (and, in Envoy,
                        // a route-cache clear): one that would change nothing
                        // is not made.
                        if !changes(&ex.request, op) {
                            continue;
                        }
                        host.apply(op);
                        ex.request.apply(op);
                        if later {
                            // A later stage matches the changed request
                            // again, as Envoy re-selects the route.
                            ex.rule = None;
                            ex.target = None;
                        }
                    }
                    at += 1;
                }
                Verdict::Reply(reply) => {
                    self.phase = Phase::Replied;
                    return Step::Reply(reply);
                }
                Verdict::Pause(wait) => {
                    self.phase = Phase::Waiting { at, wait };
                    return Step::Wait(wait);
                }
            }
        }
        self.phase = Phase::Forwarded;
        Step::Continue
    }
}

/// Whether `op` would change `request`: removing a header it lacks, or
/// setting one to the one value it already has, changes nothing.
fn changes(request: &impl RequestView, op: &HeaderOp) -> bool {
    match op {
        HeaderOp::Remove(name) => request.header(name).is_some(),
        HeaderOp::Set(name, value) => request.header(name).as_deref() != Some(value.as_bytes()),
        HeaderOp::Add(..) => true,
    }
}

#[cfg(test)]
pub(crate) mod tests;
