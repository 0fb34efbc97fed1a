//! What the gRPC upstream sends back to a filter's call or stream, as Envoy
//! 1.40's gRPC client hands it on (envoy `source/common/grpc/async_client_impl.cc`
//! `AsyncStreamImpl::onHeaders`, `onData`, `onTrailers`, `streamError`,
//! `notifyRemoteClose`, `AsyncRequestImpl::onRemoteClose`; wasm side
//! `source/extensions/common/wasm/context.cc` `onGrpcReceiveWrapper`,
//! `onGrpcCloseWrapper`):
//! * a stream gets `proxy_on_grpc_receive_initial_metadata` with the response
//!   headers — with none for a trailers-only response or a non-200 status —
//!   then `proxy_on_grpc_receive` per message, then
//!   `proxy_on_grpc_receive_trailing_metadata` (the trailers; none after an
//!   error) and `proxy_on_grpc_close` with `grpc-status` (absent: 2 `Unknown`;
//!   a non-200 HTTP status without one: `httpToGrpcStatus`; a reset: 13
//!   `Internal`);
//! * a call gets only the end: `proxy_on_grpc_receive` with its last message
//!   when the status is 0, else `proxy_on_grpc_close` with the status (0
//!   without a message: 13 `Internal`, empty message);
//! * the close message is `grpc-message`, followed by `{<response code
//!   details>}` of Envoy's async stream (`enhancedGrpcMessage`): `via_upstream`
//!   for an upstream answer, so "denied" arrives as `denied{via_upstream}`;
//! * status and message are readable with `proxy_get_status` during
//!   `proxy_on_grpc_close`, from the root context and the HTTP context alike;
//!   the message is cleared after the callback, the code stays;
//! * a call's timeout (virtual clock) is Envoy's router timeout: a local reply
//!   (`upstream request timeout`, 504 → gRPC 14) with details `response_timeout`.

use super::error::HarnessError;
use super::grpc::http_to_grpc_status;
use super::grpc_types::{GrpcEvent, GrpcKind, GrpcResponse};
use super::headers::HeaderMap;
use super::state::HostState;

/// What the wasm side gets, in order.
enum Delivery {
    InitialMetadata(HeaderMap),
    Message(Vec<u8>),
    TrailingMetadata(HeaderMap),
    Close(u32, String),
}

fn status_of(map: &HeaderMap) -> Option<u32> {
    map.get(b"grpc-status")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|s| s.trim().parse().ok())
}

fn message_of(map: &HeaderMap) -> String {
    map.get_str("grpc-message").unwrap_or_default()
}

/// `enhancedGrpcMessage`: the message, then the details in braces.
fn enhanced(message: &str, details: &str) -> String {
    match (message.is_empty(), details.is_empty()) {
        (true, _) => details.to_owned(),
        (false, true) => message.to_owned(),
        (false, false) => format!("{message}{{{details}}}"),
    }
}

const VIA_UPSTREAM: &str = "via_upstream";

/// The end of a stream: trailing metadata, then the close.
fn end(trailers: HeaderMap, status: u32, message: String) -> Vec<Delivery> {
    vec![
        Delivery::TrailingMetadata(trailers),
        Delivery::Close(status, message),
    ]
}

/// `AsyncStreamImpl`'s view of one upstream event.
fn stream_deliveries(event: GrpcEvent) -> Vec<Delivery> {
    match event {
        GrpcEvent::Headers(h) => {
            let h = HeaderMap::from_pairs(&h);
            match h.get_str(":status").as_deref() {
                Some("200") => vec![Delivery::InitialMetadata(h)],
                other => {
                    let http = other.and_then(|s| s.parse().ok()).unwrap_or(0);
                    let mut out = vec![Delivery::InitialMetadata(HeaderMap::new())];
                    out.extend(end(
                        HeaderMap::new(),
                        http_to_grpc_status(http),
                        VIA_UPSTREAM.to_owned(),
                    ));
                    out
                }
            }
        }
        GrpcEvent::Message(m) => vec![Delivery::Message(m)],
        GrpcEvent::Trailers(t) => {
            let t = HeaderMap::from_pairs(&t);
            let (status, message) = (status_of(&t).unwrap_or(2), message_of(&t));
            end(t, status, enhanced(&message, VIA_UPSTREAM))
        }
        GrpcEvent::TrailersOnly(t) => {
            let t = HeaderMap::from_pairs(&t);
            let mut out = vec![Delivery::InitialMetadata(HeaderMap::new())];
            let http = t
                .get_str(":status")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            match status_of(&t) {
                None if http != 200 => out.extend(end(
                    HeaderMap::new(),
                    http_to_grpc_status(http),
                    VIA_UPSTREAM.to_owned(),
                )),
                status => {
                    let message = enhanced(&message_of(&t), VIA_UPSTREAM);
                    out.extend(end(t, status.unwrap_or(2), message));
                }
            }
            out
        }
        GrpcEvent::Reset => end(HeaderMap::new(), 13, String::new()),
    }
}

impl HostState {
    /// Delivers one upstream event to call or stream `id`.
    pub(crate) fn grpc_event(&mut self, id: u64, event: GrpcEvent) -> Result<(), HarnessError> {
        let kind = {
            let shared = self.shared.borrow();
            let r = shared
                .grpc
                .get(&id)
                .filter(|r| !r.remote_closed)
                .ok_or(HarnessError::UnknownGrpc(id))?;
            r.pending.kind
        };
        let deliveries = match kind {
            GrpcKind::Stream => stream_deliveries(event),
            GrpcKind::Call => self.call_deliveries(id, event),
        };
        for d in deliveries {
            self.deliver(id, d);
        }
        self.pump();
        let first = self.traps.drain(..).next();
        first.map_or(Ok(()), Err)
    }

    /// Delivers a whole response.
    pub(crate) fn grpc_respond(
        &mut self,
        id: u64,
        response: &GrpcResponse,
    ) -> Result<(), HarnessError> {
        for event in response.events() {
            if !self.shared.borrow().grpc.contains_key(&id) {
                break;
            }
            self.grpc_event(id, event)?;
        }
        Ok(())
    }

    /// A call's timeout: Envoy's router answers the gRPC request locally.
    pub(crate) fn grpc_timeout(&mut self, id: u64) -> Result<(), HarnessError> {
        let reply = GrpcResponse::status(14, "upstream request timeout");
        let mut all = reply.headers;
        all.extend(reply.trailers);
        let t = HeaderMap::from_pairs(&all);
        let message = enhanced(&message_of(&t), "response_timeout");
        let deliveries = match self.shared.borrow().grpc.get(&id).map(|r| r.pending.kind) {
            Some(GrpcKind::Call) => vec![Delivery::Close(14, message)],
            _ => return Ok(()),
        };
        for d in deliveries {
            self.deliver(id, d);
        }
        self.pump();
        let first = self.traps.drain(..).next();
        first.map_or(Ok(()), Err)
    }

    /// `AsyncRequestImpl`: a call keeps the last message and reports only the end.
    fn call_deliveries(&mut self, id: u64, event: GrpcEvent) -> Vec<Delivery> {
        let end = match event {
            GrpcEvent::Message(m) => {
                if let Some(r) = self.shared.borrow_mut().grpc.get_mut(&id) {
                    r.response = Some(m);
                }
                return Vec::new();
            }
            GrpcEvent::Headers(h) => {
                let h = HeaderMap::from_pairs(&h);
                match h.get_str(":status").as_deref() {
                    Some("200") => return Vec::new(),
                    other => {
                        let http = other.and_then(|s| s.parse().ok()).unwrap_or(0);
                        (http_to_grpc_status(http), VIA_UPSTREAM.to_owned())
                    }
                }
            }
            GrpcEvent::Trailers(t) | GrpcEvent::TrailersOnly(t) => {
                let t = HeaderMap::from_pairs(&t);
                let http = t.get_str(":status").and_then(|s| s.parse().ok());
                match (status_of(&t), http) {
                    (None, Some(http)) if http != 200 => {
                        (http_to_grpc_status(http), VIA_UPSTREAM.to_owned())
                    }
                    (status, _) => (status.unwrap_or(2), enhanced(&message_of(&t), VIA_UPSTREAM)),
                }
            }
            GrpcEvent::Reset => (13, String::new()),
        };
        let response = self
            .shared
            .borrow_mut()
            .grpc
            .get_mut(&id)
            .and_then(|r| r.response.take());
        match (end, response) {
            ((0, _), Some(m)) => vec![Delivery::Message(m)],
            ((0, _), None) => vec![Delivery::Close(13, String::new())],
            ((status, message), _) => vec![Delivery::Close(status, message)],
        }
    }

    /// Calls the VM for one delivery and applies Envoy's clean-up after it.
    fn deliver(&mut self, id: u64, d: Delivery) {
        let Some(r) = self.shared.borrow().grpc.get(&id).cloned() else {
            return;
        };
        let (token, kind) = (r.pending.token, r.pending.kind);
        let stream = r.pending.stream.filter(|s| self.streams.contains_key(s));
        let root = u64::from(r.root_ctx);
        let t = u64::from(token);
        let Some(vm) = self.vms.get_mut(r.vm) else {
            return;
        };
        let g = &mut vm.store.data_mut().grpc_receive;
        let (callback, args, done) = match d {
            Delivery::InitialMetadata(m) => {
                let n = count(m.len());
                g.initial = Some(m);
                (
                    "proxy_on_grpc_receive_initial_metadata",
                    [root, t, n],
                    false,
                )
            }
            Delivery::Message(m) => {
                let n = count(m.len());
                g.buffer = Some(m);
                (
                    "proxy_on_grpc_receive",
                    [root, t, n],
                    kind == GrpcKind::Call,
                )
            }
            Delivery::TrailingMetadata(m) => {
                let n = count(m.len());
                g.trailing = Some(m);
                (
                    "proxy_on_grpc_receive_trailing_metadata",
                    [root, t, n],
                    false,
                )
            }
            Delivery::Close(status, message) => {
                vm.store.data_mut().status = (status, message.into_bytes());
                ("proxy_on_grpc_close", [root, t, u64::from(status)], true)
            }
        };
        let fuel = self.call_root(r.vm, stream, callback, &args);
        if let Some(vm) = self.vms.get_mut(r.vm) {
            let data = vm.store.data_mut();
            data.grpc_receive = Default::default();
            data.status.1.clear();
        }
        self.add_fuel(stream, r.vm, fuel);
        if done {
            let mut shared = self.shared.borrow_mut();
            let remove = match shared.grpc.get_mut(&id) {
                Some(rec) if kind == GrpcKind::Stream && !rec.local_closed => {
                    rec.remote_closed = true;
                    false
                }
                _ => true,
            };
            if remove {
                shared.grpc.remove(&id);
            }
        }
    }

    /// Counts `fuel` spent in `vm` for a callback on behalf of `stream`.
    pub(crate) fn add_fuel(&mut self, stream: Option<u64>, vm: usize, fuel: u64) {
        if let Some(slot) = stream
            .and_then(|s| self.streams.get_mut(&s))
            .and_then(|r| r.slots.iter_mut().find(|s| s.vm == vm))
        {
            slot.fuel = slot.fuel.saturating_add(fuel);
        }
    }
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}
