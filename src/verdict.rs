//! What a filter decided for a request, as data, applied in one place by
//! the glue (STYLE.md rule 3).

use std::borrow::Cow;

/// The decision of a filter on request headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// Let the request through after applying the mutations.
    Continue(Mutations<'a>),
    /// Answer locally; the request goes no further.
    Reply(LocalReply<'a>),
}

/// Header changes to apply, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mutations<'a> {
    /// Changes to the request headers.
    pub request_headers: Vec<HeaderOp<'a>>,
}

/// One header change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderOp<'a> {
    /// Replace all values of the header with one (or add it).
    Set(&'a str, Cow<'a, str>),
    /// Append a value.
    Add(&'a str, Cow<'a, str>),
    /// Remove every value of the header.
    Remove(&'a str),
}

/// A response the proxy sends without asking the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply<'a> {
    /// HTTP status.
    pub status: u32,
    /// Body (Envoy adds `content-type: text/plain` when non-empty).
    pub body: Cow<'a, str>,
    /// `%RESPONSE_CODE_DETAILS%` of the access log, as Envoy names it.
    pub details: &'a str,
    /// Extra response headers.
    pub headers: Vec<(&'a str, Cow<'a, str>)>,
}
