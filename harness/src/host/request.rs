//! Requests: building one ([`RequestBuilder`]) and following it while it runs
//! ([`PendingStream`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::headers::HeaderMap;
use super::state::NewRequest;
use super::stream::Pos;
use super::{Chain, HarnessError, HostState, Outcome, PendingCall, borrow};

/// A request under construction (see [`Chain::request`]).
pub struct RequestBuilder<'a> {
    pub(super) chain: &'a Chain,
    pub(super) method: String,
    pub(super) path: String,
    pub(super) authority: String,
    pub(super) scheme: String,
    pub(super) headers: Vec<(String, Vec<u8>)>,
    pub(super) body: Vec<Vec<u8>>,
    pub(super) trailers: Vec<(String, Vec<u8>)>,
    pub(super) properties: HashMap<String, Vec<u8>>,
    pub(super) worker: Option<usize>,
}

impl RequestBuilder<'_> {
    /// `:authority` (default `example.com`).
    pub fn authority(mut self, authority: &str) -> Self {
        self.authority = authority.to_owned();
        self
    }

    /// `:scheme` (default `http`).
    pub fn scheme(mut self, scheme: &str) -> Self {
        self.scheme = scheme.to_owned();
        self
    }

    /// Adds a request header (any bytes as value).
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers
            .push((name.to_owned(), value.as_ref().to_vec()));
        self
    }

    /// Adds a body chunk (call several times for a chunked body).
    pub fn body(mut self, chunk: impl AsRef<[u8]>) -> Self {
        self.body.push(chunk.as_ref().to_vec());
        self
    }

    /// Adds a request trailer.
    pub fn trailer(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.trailers
            .push((name.to_owned(), value.as_ref().to_vec()));
        self
    }

    /// Overrides a property for this request (dotted path, e.g. `connection.mtls`).
    pub fn property(mut self, path: &str, value: impl AsRef<[u8]>) -> Self {
        self.properties
            .insert(path.to_owned(), value.as_ref().to_vec());
        self
    }

    /// Runs the request on worker `i` instead of round robin.
    pub fn worker(mut self, i: usize) -> Self {
        self.worker = Some(i);
        self
    }

    /// Sends the request and returns its outcome; a stream still paused (waiting
    /// for an http call or a resume) is `HarnessError::StillPaused` — use `start`.
    pub fn send(self) -> Result<Outcome, HarnessError> {
        self.start()?.finish()
    }

    /// Sends the request and returns the (possibly paused) stream.
    pub fn start(self) -> Result<PendingStream, HarnessError> {
        // The HCM adds `x-forwarded-proto` and `x-request-id` before filters run (SPEC §B.2).
        let mut headers = HeaderMap::new();
        headers.add(b":authority", self.authority.as_bytes());
        headers.add(b":path", self.path.as_bytes());
        headers.add(b":method", self.method.as_bytes());
        headers.add(b":scheme", self.scheme.as_bytes());
        super::hop::request(&self.headers, &mut headers);
        if headers.get(b"x-forwarded-proto").is_none() {
            headers.add(b"x-forwarded-proto", self.scheme.as_bytes());
        }
        let inner = Rc::clone(&self.chain.inner);
        let mut st = borrow(&inner)?;
        if headers.get(b"x-request-id").is_none() {
            let id = format!("00000000-0000-4000-8000-{:012x}", st.next_stream);
            headers.add(b"x-request-id", id.as_bytes());
        }
        let id = st.start(NewRequest {
            chain: self.chain.id,
            worker: self.worker,
            headers,
            body: self.body,
            trailers: HeaderMap::from_pairs(&self.trailers),
            properties: self.properties,
        })?;
        drop(st);
        Ok(PendingStream { inner, id })
    }
}

/// A request in flight; finish it with [`PendingStream::finish`].
pub struct PendingStream {
    inner: Rc<RefCell<HostState>>,
    id: u64,
}

impl PendingStream {
    /// Stream id (also `connection_id`).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// True while a filter holds the stream (paused and not yet resumed).
    pub fn is_paused(&self) -> bool {
        let st = self.inner.borrow();
        st.streams
            .get(&self.id)
            .is_some_and(|r| r.result.is_none() && r.paused)
    }

    /// True once the stream completed (or failed).
    pub fn is_done(&self) -> bool {
        let st = self.inner.borrow();
        st.streams
            .get(&self.id)
            .is_none_or(|r| r.result.is_some() || r.pos == Pos::Done)
    }

    /// Http calls this stream's filters dispatched and that are still pending.
    pub fn pending_calls(&self) -> Vec<PendingCall> {
        let st = self.inner.borrow();
        let shared = st.shared.borrow();
        shared
            .calls
            .values()
            .filter(|c| c.call.stream == Some(self.id))
            .map(|c| c.call.clone())
            .collect()
    }

    /// The downstream client resets the stream (an HTTP/2 `RST_STREAM`, or an
    /// HTTP/1 client closing its connection) while a filter holds it paused — or,
    /// as nothing else runs meanwhile, at any point before it completed. As Envoy
    /// 1.40 (`ActiveStream::onResetStream` → `doDeferredStreamDestroy`): every
    /// filter of the chain gets `proxy_on_log` (a filter the stream never reached
    /// gets its context created first), then `proxy_on_done` and `proxy_on_delete`
    /// in chain order; the http calls the stream's contexts dispatched are
    /// cancelled (never answered, gone from `Host::pending_calls`), and its
    /// context ids are gone (a later `proxy_set_effective_context` to one is
    /// `BadArgument`).
    ///
    /// The outcome has status 0, no response, `was_reset()` and `was_cancelled()`
    /// true; `upstream_request()` is set if the request had reached the upstream.
    /// A stream that already completed keeps (and returns) its outcome. A trap in
    /// one of those callbacks is the error.
    pub fn cancel(self) -> Result<Outcome, HarnessError> {
        borrow(&self.inner)?.cancel(self.id)
    }

    /// The outcome; `StillPaused` if the stream has not completed.
    pub fn finish(self) -> Result<Outcome, HarnessError> {
        let mut st = borrow(&self.inner)?;
        match st.streams.get(&self.id) {
            Some(run) if run.result.is_some() => {}
            _ => return Err(HarnessError::StillPaused(self.id)),
        }
        let run = st
            .streams
            .remove(&self.id)
            .ok_or(HarnessError::StillPaused(self.id))?;
        run.result
            .unwrap_or(Err(HarnessError::StillPaused(self.id)))
    }
}
