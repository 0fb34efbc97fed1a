//! What a filter decided for a request, as data, applied in one place by
//! the glue (STYLE.md rule 3). Header changes that depend only on the
//! configuration are compiled once and borrowed, so a decision allocates
//! nothing unless it must compute a value from the request (a URI rewrite,
//! a redirect location).

use std::borrow::Cow;

use crate::pipeline::Wait;

/// The decision of a filter on request headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// Let the request through after applying the mutations.
    Continue(Mutations<'a>),
    /// Answer locally; the request goes no further.
    Reply(LocalReply<'a>),
    /// Hold the request until what the stage waits for happens
    /// (`crate::pipeline`); the stage then decides again.
    Pause(Wait),
}

/// Header changes to apply to the request, in order: the compiled ones,
/// then the computed ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mutations<'a> {
    /// Changes compiled from the configuration.
    pub compiled: &'a [HeaderOp],
    /// Changes computed from the request (empty ⇒ no allocation).
    pub computed: Vec<HeaderOp>,
}

impl Mutations<'_> {
    /// No change at all.
    pub fn is_empty(&self) -> bool {
        self.compiled.is_empty() && self.computed.is_empty()
    }

    /// Every change, in the order they apply.
    pub fn iter(&self) -> impl Iterator<Item = &HeaderOp> {
        self.compiled.iter().chain(self.computed.iter())
    }
}

/// One header change. Names are lower-case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderOp {
    /// Replace all values of the header with one (or add it).
    Set(String, String),
    /// Append a value.
    Add(String, String),
    /// Remove every value of the header.
    Remove(String),
}

impl HeaderOp {
    /// The header the change is about.
    pub fn name(&self) -> &str {
        match self {
            HeaderOp::Set(n, _) | HeaderOp::Add(n, _) | HeaderOp::Remove(n) => n,
        }
    }
}

/// A response the proxy sends without asking the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply<'a> {
    /// HTTP status.
    pub status: u32,
    /// Body (Envoy adds `content-type: text/plain` when non-empty).
    pub body: Cow<'a, [u8]>,
    /// `%RESPONSE_CODE_DETAILS%` of the access log, as Envoy names it.
    pub details: &'a str,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
    /// gRPC status of the reply (0–16); Envoy turns a local reply to a gRPC
    /// request into a trailers-only gRPC response, mapping the HTTP status
    /// when this is `None` (SPEC.md §proxy-wasm ABI C.3).
    pub grpc_status: Option<u32>,
}

impl<'a> LocalReply<'a> {
    /// A reply with `status`, `body` and `details`, no extra headers.
    pub fn new(status: u32, body: &'a [u8], details: &'a str) -> Self {
        Self {
            status,
            body: Cow::Borrowed(body),
            details,
            headers: Vec::new(),
            grpc_status: None,
        }
    }
}
