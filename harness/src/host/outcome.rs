//! What a test observes: the outcome of one request, local replies, what reached
//! the upstream, logs, pending http calls.

use std::time::Duration;

use super::headers::HeaderMap;
use super::lifecycle::VmRole;

/// proxy-wasm log levels (proxy-wasm-rust-sdk `src/types.rs` `LogLevel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// 0
    Trace,
    /// 1
    Debug,
    /// 2
    Info,
    /// 3
    Warn,
    /// 4
    Error,
    /// 5
    Critical,
}

impl LogLevel {
    /// Level from its ABI number (`None` above 5).
    pub fn from_u32(n: u32) -> Option<Self> {
        Some(match n {
            0 => Self::Trace,
            1 => Self::Debug,
            2 => Self::Info,
            3 => Self::Warn,
            4 => Self::Error,
            5 => Self::Critical,
            _ => return None,
        })
    }
}

/// One line logged by a filter (via `proxy_log` or WASI `fd_write`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Level.
    pub level: LogLevel,
    /// Filter name (`FilterSpec::new` name).
    pub filter: String,
    /// Worker whose VM logged it (0 for a main-thread VM: see `vm`).
    pub worker: usize,
    /// The VM that logged it: a worker's, or one of the main thread's — e.g.
    /// `on_configure` logs once from `Validation`, `Main` and each `Worker`.
    pub vm: VmRole,
    /// Message text (lossy UTF-8).
    pub message: String,
    /// Stream the callback belonged to, if any.
    pub stream: Option<u64>,
}

/// A local reply sent with `proxy_send_local_response`, as the filter sent it (what
/// the client got is in the [`Outcome`]: on a gRPC request a trailers-only gRPC
/// response, see `grpc.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    /// HTTP status.
    pub status: u32,
    /// Body.
    pub body: Vec<u8>,
    /// Headers the filter added (lower-cased), plus `content-type: text/plain`
    /// when the body is non-empty, as Envoy's `Utility::sendLocalReply`.
    pub headers: Vec<(String, String)>,
    /// `%RESPONSE_CODE_DETAILS%` (whitespace replaced by `_`).
    pub details: String,
    /// gRPC status when 0..=16 was passed (the SDK passes -1 = none). On a gRPC
    /// request the client gets it (or one mapped from `status`) in `grpc-status`.
    pub grpc_status: Option<i32>,
    /// Filter that sent it.
    pub filter: String,
}

/// The request as it reached the upstream, after the decode path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpstreamRequest {
    /// Headers including pseudo-headers, in map order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Body (all chunks joined).
    pub body: Vec<u8>,
    /// Trailers.
    pub trailers: Vec<(String, Vec<u8>)>,
}

impl UpstreamRequest {
    /// First value of `name` as UTF-8 (`None` if absent or not UTF-8).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// First value of `name` as bytes.
    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_slice())
    }

    /// `:method`.
    pub fn method(&self) -> Option<&str> {
        self.header(":method")
    }

    /// `:path`.
    pub fn path(&self) -> Option<&str> {
        self.header(":path")
    }
}

/// What the test's upstream (or an http-call answer) responds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamResponse {
    /// Status code.
    pub status: u32,
    /// Headers (without `:status`).
    pub headers: Vec<(String, Vec<u8>)>,
    /// Body.
    pub body: Vec<u8>,
    /// Trailers.
    pub trailers: Vec<(String, Vec<u8>)>,
    /// Sizes of the body chunks (empty: one chunk; see `body_chunk`).
    pub chunks: Vec<usize>,
}

impl UpstreamResponse {
    /// A response with `status`, no headers and an empty body.
    pub fn new(status: u32) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            trailers: Vec::new(),
            chunks: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.as_ref().to_vec()));
        self
    }

    /// Sets the body (one chunk).
    pub fn body(mut self, body: impl AsRef<[u8]>) -> Self {
        self.body = body.as_ref().to_vec();
        self.chunks.clear();
        self
    }

    /// Adds a trailer.
    pub fn trailer(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.trailers
            .push((name.to_ascii_lowercase(), value.as_ref().to_vec()));
        self
    }

    /// Appends a body chunk: the filters get the body in these chunks (by
    /// default it is one chunk).
    pub fn body_chunk(mut self, chunk: impl AsRef<[u8]>) -> Self {
        self.body.extend_from_slice(chunk.as_ref());
        self.chunks.push(chunk.as_ref().len());
        self
    }

    /// Header map with `:status` first.
    pub(crate) fn header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.add(b":status", self.status.to_string().as_bytes());
        for (k, v) in &self.headers {
            map.add(k.as_bytes(), v);
        }
        map
    }
}

impl Default for UpstreamResponse {
    fn default() -> Self {
        Self::new(200)
    }
}

/// An http call a filter dispatched that the test has not answered yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCall {
    /// Token to pass to `Host::respond`.
    pub token: u32,
    /// Cluster (upstream) name.
    pub cluster: String,
    /// Request headers (with pseudo-headers).
    pub headers: Vec<(String, Vec<u8>)>,
    /// Request body.
    pub body: Vec<u8>,
    /// Request trailers.
    pub trailers: Vec<(String, Vec<u8>)>,
    /// Timeout (`None` = 0 = no timeout).
    pub timeout: Option<Duration>,
    /// Filter that dispatched it.
    pub filter: String,
    /// Worker of the dispatching VM (0 for a main-thread VM: see `vm`).
    pub worker: usize,
    /// The dispatching VM (`Main` for a call made from the main thread's
    /// `on_tick`, say).
    pub vm: VmRole,
    /// Stream whose context dispatched it, if any.
    pub stream: Option<u64>,
}

impl PendingCall {
    /// First request header value as UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

/// Everything observable about one finished request.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub(crate) stream: u64,
    pub(crate) worker: usize,
    pub(crate) local_reply: Option<LocalReply>,
    pub(crate) upstream_request: Option<UpstreamRequest>,
    pub(crate) response_headers: HeaderMap,
    pub(crate) response_body: Vec<u8>,
    pub(crate) response_trailers: HeaderMap,
    pub(crate) reset: bool,
    pub(crate) cancelled: bool,
    pub(crate) details: Option<String>,
    pub(crate) logs: Vec<LogEntry>,
    pub(crate) fuel: Vec<(String, u64)>,
    pub(crate) filter_state: Vec<(String, Vec<u8>)>,
}

impl Outcome {
    /// The local reply, if a filter (or a failed VM) sent one.
    pub fn local_reply(&self) -> Option<&LocalReply> {
        self.local_reply.as_ref()
    }

    /// The request as the upstream saw it (`None` if it never got there).
    pub fn upstream_request(&self) -> Option<&UpstreamRequest> {
        self.upstream_request.as_ref()
    }

    /// A header of the upstream request, as UTF-8.
    pub fn upstream_header(&self, name: &str) -> Option<&str> {
        self.upstream_request.as_ref().and_then(|r| r.header(name))
    }

    /// Status the downstream client got (0 when the stream was reset; 200 for a
    /// local reply on a gRPC request, whose status is in `grpc-status`).
    pub fn status(&self) -> u32 {
        self.response_headers
            .get(b":status")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// A header of the response the client got, as UTF-8.
    pub fn response_header(&self, name: &str) -> Option<&str> {
        self.response_headers
            .get(name.as_bytes())
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// All response headers, in order (with `:status`).
    pub fn response_headers(&self) -> &[(String, Vec<u8>)] {
        self.response_headers.entries()
    }

    /// Response trailers.
    pub fn response_trailers(&self) -> &[(String, Vec<u8>)] {
        self.response_trailers.entries()
    }

    /// Response body the client got.
    pub fn body(&self) -> &[u8] {
        &self.response_body
    }

    /// Response body as lossy UTF-8.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.response_body).into_owned()
    }

    /// True when the stream was reset: by a filter (`proxy_close_stream`) or by the
    /// client ([`was_cancelled`](Self::was_cancelled)). The client got no response
    /// (`status()` is 0).
    pub fn was_reset(&self) -> bool {
        self.reset
    }

    /// True when the downstream client reset the stream
    /// ([`PendingStream::cancel`](super::PendingStream::cancel)).
    pub fn was_cancelled(&self) -> bool {
        self.cancelled
    }

    /// Envoy's `%RESPONSE_CODE_DETAILS%` where the harness knows it: a local
    /// reply's details (`request_payload_too_large` for a body over the buffer
    /// limit), or `response_payload_too_large` for a stream reset by it.
    pub fn details(&self) -> Option<&str> {
        self.details.as_deref()
    }

    /// Logs written by callbacks of this request.
    pub fn logs(&self) -> &[LogEntry] {
        &self.logs
    }

    /// True when some log line of this request contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.logs.iter().any(|l| l.message.contains(needle))
    }

    /// Total wasm fuel all filters spent on this request (all callbacks).
    pub fn fuel(&self) -> u64 {
        self.fuel.iter().map(|(_, f)| *f).sum()
    }

    /// Fuel per filter, in chain order.
    pub fn fuel_by_filter(&self) -> &[(String, u64)] {
        &self.fuel
    }

    /// Filter state at the end of the request (`wasm.<key>` → bytes).
    pub fn filter_state(&self, key: &str) -> Option<&[u8]> {
        self.filter_state
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }

    /// Stream id (also the connection id property).
    pub fn stream_id(&self) -> u64 {
        self.stream
    }

    /// Worker that ran the request.
    pub fn worker(&self) -> usize {
        self.worker
    }
}
