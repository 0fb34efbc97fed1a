//! Glue shared by the meshwasm proxy-wasm filters: the only code that knows
//! both the core and proxy-wasm. A filter crate implements [`Filter`] (a
//! name, the kinds it reads, compile, decide) and calls [`start`]; the glue
//! does the rest: reading the plugin configuration and refusing it with the
//! field's JSON path, a [`RequestView`] over the request headers, applying
//! the [`Verdict`], seeding randomness from the host, and the panic hook.
//!
//! No request-time path panics: every hostcall result is a `Result` that is
//! logged, never unwrapped (SPEC.md §proxy-wasm ABI A.3, B.4, G).

mod local_reply;

use std::borrow::Cow;
use std::cell::{OnceCell, RefCell};
use std::rc::Rc;

use meshwasm::config::{ConfigError, Document, Kind};
use meshwasm::http::HeaderList;
use meshwasm::rng::SplitMix64;
use meshwasm::verdict::{HeaderOp, LocalReply, Verdict};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};

pub use meshwasm::http::RequestView;

/// The request as the host gives it: the headers, read once, and connection
/// facts read from properties only when a decision needs them.
pub struct HostRequest {
    headers: HeaderList,
    port: OnceCell<Option<u32>>,
}

impl RequestView for HostRequest {
    fn header(&self, name: &str) -> Option<Cow<'_, [u8]>> {
        self.headers.header(name)
    }

    fn destination_port(&self) -> Option<u32> {
        *self.port.get_or_init(|| {
            // `destination.port` is an int64, 8 bytes little-endian (SPEC.md §ABI D).
            let bytes = hostcalls::get_property(vec!["destination", "port"]).ok()??;
            let raw: [u8; 8] = bytes.as_slice().try_into().ok()?;
            u32::try_from(i64::from_le_bytes(raw)).ok()
        })
    }
}

/// Response details of a request that reached a filter without configuration.
pub const NOT_CONFIGURED: &str = "meshwasm_not_configured";

/// One meshwasm filter: what the glue needs to know of it.
pub trait Filter: 'static {
    /// Short name (`route`); logs say `meshwasm.<name>`.
    const NAME: &'static str;
    /// The resource kinds the filter reads; others are skipped unread.
    const KINDS: &'static [Kind];
    /// The compiled configuration, shared by every stream of a VM.
    type Compiled: 'static;
    /// What a stream remembers between its callbacks.
    type State: Default + 'static;

    /// Validates and compiles the configuration document; the warnings it
    /// returns are logged once.
    fn compile(doc: &Document) -> Result<(Self::Compiled, Vec<String>), ConfigError>;

    /// Names of the counters the filter increments (by index, through
    /// [`Ctx::count`]), defined once per VM at configure time.
    fn counters(_compiled: &Self::Compiled) -> Vec<String> {
        Vec::new()
    }

    /// Decides on request headers.
    fn on_request_headers<'c>(
        compiled: &'c Self::Compiled,
        request: &HostRequest,
        state: &mut Self::State,
        ctx: &mut Ctx<'_>,
    ) -> Verdict<'c>;

    /// Response header changes, once the upstream answered.
    fn on_response_headers<'c>(
        _compiled: &'c Self::Compiled,
        _state: &Self::State,
    ) -> &'c [HeaderOp] {
        &[]
    }
}

/// What a filter may use while deciding: randomness and its counters.
pub struct Ctx<'a> {
    /// Seeded from the host's `random_get` once per VM.
    pub rng: &'a mut SplitMix64,
    counters: &'a [Option<u32>],
}

impl Ctx<'_> {
    /// Increments counter `index` of [`Filter::counters`].
    pub fn count(&self, index: usize) {
        if let Some(Some(id)) = self.counters.get(index) {
            let _ = hostcalls::increment_metric(*id, 1);
        }
    }
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
    proxy_wasm::set_root_context(|_| {
        Box::new(Root::<F> {
            compiled: None,
            counters: Rc::new(Vec::new()),
            rng: Rc::new(RefCell::new(seed())),
        })
    });
}

fn seed() -> SplitMix64 {
    let mut bytes = [0u8; 8];
    // `random_get` of the host: seeded by the harness, real entropy in Envoy.
    let _ = getrandom::fill(&mut bytes);
    SplitMix64::new(u64::from_le_bytes(bytes))
}

/// Logs at `level`, prefixed with the filter name; a failing log is ignored.
pub fn log<F: Filter>(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, &format!("meshwasm.{}: {message}", F::NAME));
}

/// Reads, validates and compiles the plugin configuration.
pub fn load_config<F: Filter>() -> Result<(F::Compiled, Vec<String>), ConfigError> {
    let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
        .map_err(|s| ConfigError::new("", format!("cannot read the plugin configuration: {s:?}")))?
        .unwrap_or_default();
    let doc = Document::parse(&bytes, F::KINDS)?;
    let (compiled, mut warnings) = F::compile(&doc)?;
    warnings.splice(0..0, doc.warnings);
    Ok((compiled, warnings))
}

struct Root<F: Filter> {
    compiled: Option<Rc<F::Compiled>>,
    counters: Rc<Vec<Option<u32>>>,
    rng: Rc<RefCell<SplitMix64>>,
}

impl<F: Filter> Context for Root<F> {}

impl<F: Filter> RootContext for Root<F> {
    fn on_configure(&mut self, _size: usize) -> bool {
        match load_config::<F>() {
            Ok((compiled, warnings)) => {
                for w in warnings {
                    log::<F>(LogLevel::Warn, &w);
                }
                let counters = F::counters(&compiled)
                    .iter()
                    .map(
                        |name| match hostcalls::define_metric(MetricType::Counter, name) {
                            Ok(id) => Some(id),
                            Err(status) => {
                                log::<F>(
                                    LogLevel::Warn,
                                    &format!("cannot define counter {name}: {status:?}"),
                                );
                                None
                            }
                        },
                    )
                    .collect();
                self.counters = Rc::new(counters);
                self.compiled = Some(Rc::new(compiled));
                true
            }
            Err(e) => {
                log::<F>(LogLevel::Error, &format!("invalid configuration: {e}"));
                false
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Never `None`: the SDK panics on it. Without a configuration (Envoy
        // should not create streams then) the stream fails closed.
        Some(Box::new(Stream::<F> {
            context_id,
            compiled: self.compiled.clone(),
            counters: self.counters.clone(),
            rng: self.rng.clone(),
            state: F::State::default(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream<F: Filter> {
    context_id: u32,
    compiled: Option<Rc<F::Compiled>>,
    counters: Rc<Vec<Option<u32>>>,
    rng: Rc<RefCell<SplitMix64>>,
    state: F::State,
}

impl<F: Filter> Context for Stream<F> {}

impl<F: Filter> HttpContext for Stream<F> {
    fn on_http_request_headers(&mut self, _headers: usize, _eos: bool) -> Action {
        let Some(compiled) = self.compiled.as_deref() else {
            let reply = LocalReply {
                status: 500,
                body: b"meshwasm: filter not configured".as_slice().into(),
                details: NOT_CONFIGURED,
                headers: Vec::new(),
            };
            return apply::<F>(self.context_id, &Verdict::Reply(reply));
        };
        let request = match hostcalls::get_map_bytes(MapType::HttpRequestHeaders) {
            Ok(pairs) => HostRequest {
                headers: HeaderList::new(pairs),
                port: OnceCell::new(),
            },
            Err(status) => {
                log::<F>(
                    LogLevel::Error,
                    &format!(
                        "#{} cannot read request headers: {status:?}",
                        self.context_id
                    ),
                );
                return Action::Continue;
            }
        };
        let Ok(mut rng) = self.rng.try_borrow_mut() else {
            return Action::Continue;
        };
        let mut ctx = Ctx {
            rng: &mut rng,
            counters: &self.counters,
        };
        let verdict = F::on_request_headers(compiled, &request, &mut self.state, &mut ctx);
        apply::<F>(self.context_id, &verdict)
    }

    fn on_http_response_headers(&mut self, _headers: usize, _eos: bool) -> Action {
        let Some(compiled) = self.compiled.as_deref() else {
            return Action::Continue;
        };
        for op in F::on_response_headers(compiled, &self.state) {
            if let Err(status) = apply_op(MapType::HttpResponseHeaders, op) {
                log::<F>(
                    LogLevel::Error,
                    &format!(
                        "#{} cannot change response headers: {status:?}",
                        self.context_id
                    ),
                );
            }
        }
        Action::Continue
    }
}

fn apply_op(map: MapType, op: &HeaderOp) -> Result<(), proxy_wasm::types::Status> {
    match op {
        HeaderOp::Set(name, value) => hostcalls::set_map_value(map, name, Some(value)),
        HeaderOp::Add(name, value) => hostcalls::add_map_value(map, name, value),
        HeaderOp::Remove(name) => hostcalls::remove_map_value(map, name),
    }
}

/// Applies a verdict to the current request; the one place that mutates.
pub fn apply<F: Filter>(context_id: u32, verdict: &Verdict<'_>) -> Action {
    match verdict {
        Verdict::Continue(mutations) => {
            for op in mutations.iter() {
                if let Err(status) = apply_op(MapType::HttpRequestHeaders, op) {
                    log::<F>(
                        LogLevel::Error,
                        &format!("#{context_id} cannot change request headers: {status:?}"),
                    );
                }
            }
            Action::Continue
        }
        Verdict::Reply(reply) => {
            log::<F>(
                LogLevel::Debug,
                &format!(
                    "#{context_id} local reply {} ({})",
                    reply.status, reply.details
                ),
            );
            if let Err(status) = local_reply::send(reply) {
                log::<F>(
                    LogLevel::Error,
                    &format!("#{context_id} cannot send a local reply: {status:?}"),
                );
            }
            Action::Pause
        }
    }
}
