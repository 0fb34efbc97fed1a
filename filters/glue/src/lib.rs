//! Glue shared by the meshwasm proxy-wasm filters: the only code that knows
//! both the core and proxy-wasm (docs/architecture.md). A filter crate
//! names its stages ([`Filter`]: a name, the kinds it reads, how to build
//! the stage tuple) and calls [`start`]; the glue owns every host effect:
//! reading the plugin configuration and refusing it with the field's JSON
//! path, the request view over hostcalls, the core [`Flow`] per stream,
//! header changes, local replies, paused streams and the tick that wakes
//! them, metrics, teardown, and the panic hook.
//!
//! No request-time path panics: every hostcall result is a `Result` that is
//! logged, never unwrapped (SPEC.md §proxy-wasm ABI A.3, B.4, G).

mod crypto;
mod headers;
mod host;
mod keys;
mod local_reply;
mod timers;

use std::cell::RefCell;
use std::rc::Rc;

use meshwasm::config::{ConfigError, Document, Kind};
use meshwasm::pipeline::{Env, Flow, Metrics, Response, Stages, Step, Wait, Wake};
use meshwasm::rng::SplitMix64;
use meshwasm::verdict::LocalReply;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};

pub use host::{HostRequest, read_headers};
pub use meshwasm::http::RequestView;

use host::{HostHeaders, HostMetrics};
use keys::{Event, POLL_MS};

pub use keys::{KeyHost, KeyStore, NoRemoteKeys};
use timers::{Arm, Timers};

/// Response details of a request that reached a filter without configuration.
pub const NOT_CONFIGURED: &str = "meshwasm_not_configured";
/// Response details when a fail-closed filter cannot read the request.
pub const HOST_ERROR: &str = "meshwasm_host_error";

/// One meshwasm filter: what the glue needs to know of it.
pub trait Filter: 'static {
    /// Short name (`route`); logs say `meshwasm.<name>`.
    const NAME: &'static str;
    /// The resource kinds the filter reads; others are skipped unread.
    const KINDS: &'static [Kind];
    /// The stages, in request order (a tuple of core stages).
    type Stages: Stages + 'static;
    /// Remote key sets: [`KeyStore`] for stages that read them,
    /// [`NoRemoteKeys`] otherwise (the JWKS code is then left out).
    type Keys: KeyHost;
    /// Read the identity an earlier meshwasm filter (authn) handed on in
    /// filter state (`wasm.meshwasm.identity`) before the stages run, when
    /// a stage uses it ([`meshwasm::pipeline::Stage::reads_identity`]).
    const READS_IDENTITY: bool = false;
    /// Read the request headers only when a stage needs them
    /// ([`HostRequest::lazy`]); for filters whose stages all let a request
    /// through when the host fails.
    const LAZY_HEADERS: bool = false;

    /// Validates the configuration document and builds the stages, which
    /// register their metrics; the warnings returned are logged once.
    fn build(
        doc: &Document,
        metrics: &mut Metrics,
    ) -> Result<(Self::Stages, Vec<String>), ConfigError>;
}

/// Registers the filter's root context and the panic hook. Call it from
/// `proxy_wasm::main!`.
pub fn start<F: Filter>() {
    std::panic::set_hook(Box::new(|info| {
        // A panic aborts the VM (panic = "abort"); say why first.
        let _ = hostcalls::log(
            LogLevel::Critical,
            &format!("meshwasm.{}: panicked at {info}", F::NAME),
        );
    }));
    proxy_wasm::set_root_context(|_| Box::new(Root::<F> { vm: None }));
}

/// Logs at `level`, prefixed with the filter name; a failing log is ignored.
pub fn log<F: Filter>(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, &format!("meshwasm.{}: {message}", F::NAME));
}

/// Reads, validates and builds the plugin configuration.
pub fn load_config<F: Filter>(
    metrics: &mut Metrics,
) -> Result<(F::Stages, Vec<String>), ConfigError> {
    let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
        .map_err(|s| ConfigError::new("", format!("cannot read the plugin configuration: {s:?}")))?
        .unwrap_or_default();
    let doc = Document::parse(&bytes, F::KINDS)?;
    let (stages, mut warnings) = F::build(&doc, metrics)?;
    warnings.splice(0..0, doc.warnings);
    Ok((stages, warnings))
}

type SharedFlow<F> = Rc<RefCell<Flow<<F as Filter>::Stages, HostRequest>>>;

/// What every context of one VM shares once configured.
struct Vm<F: Filter> {
    stages: F::Stages,
    metrics: HostMetrics,
    rng: RefCell<SplitMix64>,
    /// Paused streams by deadline (a fault delay, a key wait's timeout).
    timers: RefCell<Timers<SharedFlow<F>>>,
    /// Remote key sets, and which streams wait for which (source, id).
    keys: F::Keys,
    key_waiters: RefCell<Vec<(usize, u32)>>,
    crypto: crypto::HostCrypto,
    /// The last identity read from filter state, by its JSON: requests
    /// with the same token hand on the same bytes, parsed once.
    last_identity: RefCell<Option<(Vec<u8>, Rc<meshwasm::authn::Identity>)>>,
    /// Some stage reads the response status.
    watch_response: bool,
    /// The filter reads the identity handed on, and a stage uses it.
    read_identity: bool,
    /// A stage's identity goes to Envoy filter state.
    hand_on: bool,
}

impl<F: Filter> Vm<F> {
    /// The identity an earlier filter handed on as `bytes` of JSON; the
    /// last one is kept, so a repeated token costs a comparison, not a
    /// parse.
    fn identity_of(&self, bytes: Vec<u8>) -> Option<Rc<meshwasm::authn::Identity>> {
        let mut last = self.last_identity.try_borrow_mut().ok()?;
        if let Some((held, id)) = last.as_ref()
            && *held == bytes
        {
            return Some(Rc::clone(id));
        }
        let id = Rc::new(meshwasm::authn::Identity::from_json(&bytes)?);
        *last = Some((bytes, Rc::clone(&id)));
        Some(id)
    }

    /// Runs `f` with an [`Env`] for one callback.
    fn with_env<T>(&self, f: impl FnOnce(&mut Env<'_>) -> T) -> Option<T> {
        let mut rng = self.rng.try_borrow_mut().ok()?;
        let mut sink = &self.metrics;
        let mut env = Env {
            rng: &mut *rng,
            metrics: &mut sink,
            now_ms: &host::now_ms,
            keys: &self.keys,
            crypto: &self.crypto,
            shared: &host::HostShared,
        };
        Some(f(&mut env))
    }

    /// Carries out a step of stream `id`'s flow: the one place that turns
    /// a core decision into host effects. `resume` is false inside the
    /// stream's own callback (its return value continues it) and true from
    /// the tick (the stream must be resumed explicitly).
    fn carry_out(&self, id: u32, flow: &SharedFlow<F>, step: Step<'_>, resume: bool) -> Action {
        match step {
            Step::Continue => {
                self.hand_on_identity(id, flow);
                if resume && let Err(s) = host::resume_request() {
                    log::<F>(LogLevel::Error, &format!("#{id} cannot resume: {s:?}"));
                }
                Action::Continue
            }
            Step::Idle => Action::Continue,
            Step::Reply(reply) => {
                self.reply(id, &reply);
                Action::Pause
            }
            Step::Wait(wait) => {
                let now = host::now_ms();
                let ms = match wait {
                    Wait::Timer { ms } => ms,
                    Wait::Keys {
                        source,
                        timeout_ms,
                        refresh,
                    } => {
                        self.keys.want(source, refresh);
                        if let Ok(mut w) = self.key_waiters.try_borrow_mut() {
                            w.push((source, id));
                        }
                        timeout_ms
                    }
                };
                if let Ok(mut timers) = self.timers.try_borrow_mut() {
                    timers.add(now.saturating_add(ms), id, Rc::clone(flow));
                    Self::arm(timers.arm(now, false, self.poll_at(now)));
                }
                Action::Pause
            }
        }
    }

    /// When the tick must look at shared data before any deadline: a
    /// stream waits for keys (fetched from the tick, or by another VM).
    fn poll_at(&self, now: u64) -> Option<u64> {
        self.keys.is_wanted().then_some(now.saturating_add(1))
    }

    /// The identity a stage established goes to Envoy filter state, where
    /// the next meshwasm filter reads it; a client cannot write there.
    fn hand_on_identity(&self, id: u32, flow: &SharedFlow<F>) {
        if !self.hand_on {
            return;
        }
        let Ok(f) = flow.try_borrow() else { return };
        if let Some(identity) = &f.exchange.identity
            && let Err(s) =
                host::set_filter_state(meshwasm::authn::IDENTITY_KEY, identity.to_json())
        {
            log::<F>(
                LogLevel::Error,
                &format!("#{id} cannot hand on the identity: {s:?}"),
            );
        }
    }

    /// Wakes stream `id` (it must be the effective context already).
    fn wake(&self, id: u32, flow: &SharedFlow<F>, wake: Wake) {
        let Ok(mut f) = flow.try_borrow_mut() else {
            return;
        };
        let mut headers = HostHeaders::default();
        let step = self
            .with_env(|env| f.wake(&self.stages, wake, env, &mut headers))
            .unwrap_or(Step::Idle);
        drop(f);
        self.carry_out(id, flow, step, true);
    }

    /// Wakes every stream waiting for key set `source`.
    fn keys_settled(&self, source: usize) {
        let ids: Vec<u32> = match self.key_waiters.try_borrow_mut() {
            Ok(mut w) => {
                let (done, rest): (Vec<_>, Vec<_>) = w.drain(..).partition(|(s, _)| *s == source);
                *w = rest;
                done.into_iter().map(|(_, id)| id).collect()
            }
            Err(_) => return,
        };
        for id in ids {
            let flow = self
                .timers
                .try_borrow_mut()
                .ok()
                .and_then(|mut t| t.remove(id));
            if let Some(flow) = flow
                && host::set_effective_context(id).is_ok()
            {
                self.wake(id, &flow, Wake::Keys);
            }
        }
    }

    /// The answer of a key fetch this VM dispatched.
    fn on_http_call_response(&self, token: u32, body_size: usize) {
        let event = self
            .keys
            .on_response(token, body_size, |m| log::<F>(LogLevel::Warn, m));
        if let Some(Event::Settled(source)) = event {
            self.keys_settled(source);
        }
        self.rearm(false);
    }

    fn rearm(&self, force: bool) {
        let now = host::now_ms();
        if let Ok(mut timers) = self.timers.try_borrow_mut() {
            Self::arm(timers.arm(now, force, self.poll_at(now)));
        }
    }

    fn reply(&self, id: u32, reply: &LocalReply<'_>) {
        log::<F>(
            LogLevel::Debug,
            &format!("#{id} local reply {} ({})", reply.status, reply.details),
        );
        if let Err(status) = local_reply::send(reply) {
            log::<F>(
                LogLevel::Error,
                &format!("#{id} cannot send a local reply: {status:?}"),
            );
        }
    }

    fn arm(arm: Arm) {
        let period = match arm {
            Arm::Keep => return,
            Arm::In(ms) => ms,
            Arm::Stop => 0,
        };
        if let Err(s) = host::set_tick_period(period) {
            log::<F>(LogLevel::Error, &format!("cannot set the tick: {s:?}"));
        }
    }

    /// Key sets first (settled ones wake their streams, missing ones are
    /// fetched), then every stream whose deadline is due.
    fn tick(&self) {
        for Event::Settled(source) in self.keys.tick(|m| log::<F>(LogLevel::Warn, m)) {
            self.keys_settled(source);
        }
        let now = host::now_ms();
        loop {
            let due = match self.timers.try_borrow_mut() {
                Ok(mut timers) => timers.pop_due(now),
                Err(_) => None,
            };
            let Some((id, flow)) = due else { break };
            if let Ok(mut w) = self.key_waiters.try_borrow_mut() {
                w.retain(|(_, waiter)| *waiter != id);
            }
            if host::set_effective_context(id).is_err() {
                // The stream is gone; its teardown already released it.
                continue;
            }
            self.wake(id, &flow, Wake::Timer);
        }
        let poll = self.keys.is_wanted().then_some(now.saturating_add(POLL_MS));
        if let Ok(mut timers) = self.timers.try_borrow_mut() {
            Self::arm(timers.arm(now, true, poll));
        }
    }
}

struct Root<F: Filter> {
    vm: Option<Rc<Vm<F>>>,
}

impl<F: Filter> RootContext for Root<F> {
    fn on_configure(&mut self, _size: usize) -> bool {
        let mut metrics = Metrics::default();
        match load_config::<F>(&mut metrics) {
            Ok((stages, warnings)) => {
                for w in warnings {
                    log::<F>(LogLevel::Warn, &w);
                }
                let metrics = HostMetrics::define(metrics.defs(), |name, status| {
                    log::<F>(
                        LogLevel::Warn,
                        &format!("cannot define metric {name}: {status:?}"),
                    );
                });
                let keys = F::Keys::new(stages.key_sources());
                let watch_response = stages.watches_response();
                let read_identity = F::READS_IDENTITY && stages.reads_identity();
                let hand_on = stages.hands_on_identity();
                self.vm = Some(Rc::new(Vm {
                    watch_response,
                    read_identity,
                    hand_on,
                    stages,
                    metrics,
                    rng: RefCell::new(seed()),
                    timers: RefCell::new(Timers::default()),
                    keys,
                    key_waiters: RefCell::new(Vec::new()),
                    crypto: crypto::HostCrypto::default(),
                    last_identity: RefCell::new(None),
                }));
                true
            }
            Err(e) => {
                log::<F>(LogLevel::Error, &format!("invalid configuration: {e}"));
                false
            }
        }
    }

    fn on_tick(&mut self) {
        if let Some(vm) = &self.vm {
            vm.tick();
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Never `None`: the SDK panics on it. Without a configuration (Envoy
        // should not create streams then) the stream fails closed.
        Some(Box::new(Stream::<F> {
            id: context_id,
            vm: self.vm.clone(),
            flow: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl<F: Filter> Context for Root<F> {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body: usize,
        _trailers: usize,
    ) {
        if let Some(vm) = &self.vm {
            vm.on_http_call_response(token, body);
        }
    }
}

fn seed() -> SplitMix64 {
    let mut bytes = [0u8; 8];
    // `random_get` of the host: seeded by the harness, real entropy in Envoy.
    let _ = getrandom::fill(&mut bytes);
    SplitMix64::new(u64::from_le_bytes(bytes))
}

struct Stream<F: Filter> {
    id: u32,
    vm: Option<Rc<Vm<F>>>,
    flow: Option<SharedFlow<F>>,
}

impl<F: Filter> Stream<F> {
    /// Ends the stream's flow once: stages release what they hold, and a
    /// paused stream leaves the timers.
    fn teardown(&mut self) {
        let (Some(vm), Some(flow)) = (&self.vm, self.flow.take()) else {
            return;
        };
        if let Ok(mut w) = vm.key_waiters.try_borrow_mut() {
            w.retain(|(_, waiter)| *waiter != self.id);
        }
        let removed = vm
            .timers
            .try_borrow_mut()
            .is_ok_and(|mut t| t.remove(self.id).is_some());
        if removed {
            vm.rearm(false);
        }
        if let Ok(mut f) = flow.try_borrow_mut() {
            vm.with_env(|env| f.done(&vm.stages, env));
        }
    }
}

impl<F: Filter> Context for Stream<F> {
    fn on_done(&mut self) -> bool {
        self.teardown();
        true
    }
}

impl<F: Filter> Drop for Stream<F> {
    fn drop(&mut self) {
        self.teardown();
    }
}

impl<F: Filter> HttpContext for Stream<F> {
    fn on_http_request_headers(&mut self, _headers: usize, _eos: bool) -> Action {
        let Some(vm) = self.vm.clone() else {
            let reply = LocalReply::new(500, b"meshwasm: filter not configured", NOT_CONFIGURED);
            local_reply::send(&reply).ok();
            return Action::Pause;
        };
        let request = if F::LAZY_HEADERS && F::Stages::host_failure().is_none() {
            HostRequest::lazy()
        } else {
            match host::read_headers(MapType::HttpRequestHeaders) {
                Ok(headers) => HostRequest::new(headers),
                Err(status) => {
                    log::<F>(
                        LogLevel::Error,
                        &format!("#{} cannot read request headers: {status:?}", self.id),
                    );
                    // What a host failure means is the stages' to say.
                    return match F::Stages::host_failure() {
                        None => Action::Continue,
                        Some(reply) => {
                            vm.reply(self.id, &reply);
                            Action::Pause
                        }
                    };
                }
            }
        };
        let mut flow = Flow::new(request);
        if vm.read_identity {
            flow.exchange.identity = hostcalls::get_property(vec![meshwasm::authn::IDENTITY_KEY])
                .ok()
                .flatten()
                .and_then(|bytes| vm.identity_of(bytes));
        }
        let flow = Rc::new(RefCell::new(flow));
        self.flow = Some(Rc::clone(&flow));
        let Ok(mut f) = flow.try_borrow_mut() else {
            return Action::Continue;
        };
        let mut headers = HostHeaders::default();
        let step = vm
            .with_env(|env| f.start(&vm.stages, env, &mut headers))
            .unwrap_or(Step::Idle);
        drop(f);
        if let Some(status) = headers.failed {
            log::<F>(
                LogLevel::Error,
                &format!("#{} cannot change request headers: {status:?}", self.id),
            );
        }
        vm.carry_out(self.id, &flow, step, false)
    }

    fn on_http_response_headers(&mut self, _headers: usize, _eos: bool) -> Action {
        let (Some(vm), Some(flow)) = (&self.vm, &self.flow) else {
            return Action::Continue;
        };
        let Ok(mut f) = flow.try_borrow_mut() else {
            return Action::Continue;
        };
        if vm.watch_response {
            let status = hostcalls::get_map_value(MapType::HttpResponseHeaders, ":status")
                .ok()
                .flatten()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            // Envoy marks its overflow replies, all 503s: one more read
            // only for those.
            let overloaded = status == 503
                && hostcalls::get_map_value(MapType::HttpResponseHeaders, "x-envoy-overloaded")
                    .ok()
                    .flatten()
                    .is_some();
            let response = Response { status, overloaded };
            vm.with_env(|env| f.on_response(&vm.stages, &response, env));
        }
        f.response(&vm.stages, &mut |op| {
            if let Err(status) = host::apply_op(MapType::HttpResponseHeaders, op) {
                log::<F>(
                    LogLevel::Error,
                    &format!("#{} cannot change response headers: {status:?}", self.id),
                );
            }
        });
        Action::Continue
    }
}
