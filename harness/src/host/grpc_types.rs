//! What a test sees of the gRPC calls and streams a filter opened
//! ([`PendingGrpc`]) and how it answers them ([`GrpcResponse`], [`GrpcEvent`]).

use std::time::Duration;

use super::lifecycle::VmRole;

/// A unary call (`proxy_grpc_call`) or a stream (`proxy_grpc_stream`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcKind {
    /// `proxy_grpc_call`: one request message, answered once.
    Call,
    /// `proxy_grpc_stream`: messages both ways until one side closes.
    Stream,
}

/// A gRPC call or stream a filter opened that has not ended yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingGrpc {
    /// The host's handle: pass it to `Host::grpc_respond` / `Host::grpc_event`
    /// (unique in the host, unlike `token`).
    pub id: u64,
    /// The token the filter got, numbered per VM as Envoy does (calls 5, 9, 13…,
    /// streams 6, 10, 14…).
    pub token: u32,
    /// Call or stream.
    pub kind: GrpcKind,
    /// The cluster it goes to (`envoy_grpc.cluster_name`, or the plain name
    /// the filter passed).
    pub cluster: String,
    /// Fully qualified service name, e.g. `probe.Echo`.
    pub service: String,
    /// Method name.
    pub method: String,
    /// Initial metadata the filter passed (names lower-cased).
    pub initial_metadata: Vec<(String, Vec<u8>)>,
    /// Messages sent so far, without gRPC framing (a call: its one request).
    pub messages: Vec<Vec<u8>>,
    /// The filter ended its side (a call always; a stream after `grpc_send`
    /// with `end_stream` or `grpc_close`).
    pub half_closed: bool,
    /// Call timeout (`None`: 0, no timeout; streams have none).
    pub timeout: Option<Duration>,
    /// Filter that opened it.
    pub filter: String,
    /// Worker of the VM (0 for a main-thread VM: see `vm`).
    pub worker: usize,
    /// The VM that opened it.
    pub vm: VmRole,
    /// Stream whose context opened it, if any. A gRPC call belongs to the
    /// root context in Envoy: it outlives the stream.
    pub stream: Option<u64>,
}

impl PendingGrpc {
    /// `:path` as the upstream sees it: `/<service>/<method>`.
    pub fn path(&self) -> String {
        format!("/{}/{}", self.service, self.method)
    }
}

/// One thing the gRPC upstream sends on a stream (`Host::grpc_event`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrpcEvent {
    /// Response headers (initial metadata), e.g. `:status: 200`,
    /// `content-type: application/grpc`.
    Headers(Vec<(String, Vec<u8>)>),
    /// One response message (without framing).
    Message(Vec<u8>),
    /// Trailers (`grpc-status`, `grpc-message`, …): the stream ends.
    Trailers(Vec<(String, Vec<u8>)>),
    /// A trailers-only response: one header block that ends the stream
    /// (`:status`, `content-type`, `grpc-status`, …).
    TrailersOnly(Vec<(String, Vec<u8>)>),
    /// The upstream resets the stream.
    Reset,
}

/// A whole gRPC response from the upstream: initial metadata, messages,
/// trailers. Without messages and with `trailers_only`, the status travels in
/// the headers (a trailers-only response).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcResponse {
    /// Response headers (`:status` included).
    pub headers: Vec<(String, Vec<u8>)>,
    /// Messages, in order.
    pub messages: Vec<Vec<u8>>,
    /// Trailers (`grpc-status` included).
    pub trailers: Vec<(String, Vec<u8>)>,
    /// Headers and trailers travel as one header block (no messages).
    pub trailers_only: bool,
}

fn pair(k: &str, v: impl AsRef<[u8]>) -> (String, Vec<u8>) {
    (k.to_ascii_lowercase(), v.as_ref().to_vec())
}

impl GrpcResponse {
    /// `:status: 200`, `content-type: application/grpc`, one message, then
    /// `grpc-status: 0`.
    pub fn ok(message: impl AsRef<[u8]>) -> Self {
        Self {
            headers: vec![
                pair(":status", "200"),
                pair("content-type", "application/grpc"),
            ],
            messages: vec![message.as_ref().to_vec()],
            trailers: vec![pair("grpc-status", "0")],
            trailers_only: false,
        }
    }

    /// A trailers-only response: `:status: 200`, `content-type:
    /// application/grpc`, `grpc-status: <status>` and, if not empty,
    /// `grpc-message`.
    pub fn status(status: u32, message: &str) -> Self {
        let mut trailers = vec![pair("grpc-status", status.to_string())];
        if !message.is_empty() {
            trailers.push(pair("grpc-message", message));
        }
        Self {
            headers: vec![
                pair(":status", "200"),
                pair("content-type", "application/grpc"),
            ],
            messages: Vec::new(),
            trailers,
            trailers_only: true,
        }
    }

    /// Adds a response header (initial metadata).
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers.push(pair(name, value));
        self
    }

    /// Adds a message.
    pub fn message(mut self, message: impl AsRef<[u8]>) -> Self {
        self.messages.push(message.as_ref().to_vec());
        self.trailers_only = false;
        self
    }

    /// Adds a trailer.
    pub fn trailer(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.trailers.push(pair(name, value));
        self
    }

    /// The events the upstream sends, in order.
    pub fn events(&self) -> Vec<GrpcEvent> {
        if self.trailers_only && self.messages.is_empty() {
            let mut all = self.headers.clone();
            all.extend(self.trailers.iter().cloned());
            return vec![GrpcEvent::TrailersOnly(all)];
        }
        let mut events = vec![GrpcEvent::Headers(self.headers.clone())];
        events.extend(self.messages.iter().cloned().map(GrpcEvent::Message));
        events.push(GrpcEvent::Trailers(self.trailers.clone()));
        events
    }
}
