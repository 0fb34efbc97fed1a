//! The host behind the core's narrow traits: the request view, header and
//! metric sinks, the clock, and the few hostcalls the SDK would panic on
//! (SPEC.md §proxy-wasm ABI A.3): resuming a stream, switching the
//! effective context and arming the tick are called through their imports
//! so that an unexpected status is a `Result`, never a trap.

use std::borrow::Cow;
use std::cell::OnceCell;

use meshwasm::http::RequestView;
use meshwasm::pipeline::{
    CasMismatch, HeaderSink, MetricId, MetricKind, MetricSink, MutableRequest, SharedData,
};
use meshwasm::verdict::HeaderOp;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{MapType, Status};

use crate::headers::RawHeaders;

/// The request as the host gives it: the header map, read once (and kept
/// up to date with the pipeline's own changes), and connection facts read
/// from properties only when a decision needs them.
///
/// A lazy request ([`HostRequest::lazy`]) reads `:authority` alone first
/// and the whole map only when a stage asks for another header: a filter
/// whose stages usually decide on the host (the fault filter on a host
/// without faults) then costs one small read. An unreadable map reads as
/// empty there, so only filters whose stages let requests through on a
/// host failure use it.
pub struct HostRequest {
    headers: OnceCell<RawHeaders>,
    authority: OnceCell<Option<Vec<u8>>>,
    port: OnceCell<Option<u32>>,
}

impl HostRequest {
    /// Wraps the request headers read from the host.
    pub fn new(headers: RawHeaders) -> Self {
        Self {
            headers: OnceCell::from(headers),
            authority: OnceCell::new(),
            port: OnceCell::new(),
        }
    }

    /// A request whose headers are read when first needed.
    pub fn lazy() -> Self {
        Self {
            headers: OnceCell::new(),
            authority: OnceCell::new(),
            port: OnceCell::new(),
        }
    }

    fn full(&self) -> &RawHeaders {
        self.headers
            .get_or_init(|| read_headers(MapType::HttpRequestHeaders).unwrap_or_default())
    }
}

/// A header map of the current stream, in the host's serialisation.
pub fn read_headers(map: MapType) -> Result<RawHeaders, Status> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    #[allow(unsafe_code)] // reason: FFI call writing a pointer and a length into live locals
    let status = unsafe { proxy_get_header_map_pairs(map as u32, &raw mut data, &raw mut size) };
    ok(status)?;
    if data.is_null() || size == 0 {
        return Ok(RawHeaders::default());
    }
    // The host allocated `size` bytes with this module's allocator
    // (`proxy_on_memory_allocate`) and hands them over, as the SDK's
    // `get_map_bytes` takes them.
    #[allow(unsafe_code)] // reason: taking ownership of the host's allocation, as the SDK does
    let buf = unsafe { Vec::from_raw_parts(data, size, size) };
    RawHeaders::parse(buf).ok_or(Status::ParseFailure)
}

impl RequestView for HostRequest {
    fn header(&self, name: &str) -> Option<Cow<'_, [u8]>> {
        if name == ":authority" && self.headers.get().is_none() {
            // A pseudo-header has one value: the first is all of it.
            return self
                .authority
                .get_or_init(|| {
                    hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
                        .ok()
                        .flatten()
                })
                .as_deref()
                .map(Cow::Borrowed);
        }
        self.full().header(name)
    }

    fn any_header_value(&self, name: &str, pred: &mut dyn FnMut(&[u8]) -> bool) -> Option<bool> {
        if name == ":authority" && self.headers.get().is_none() {
            return self.header(name).map(|v| pred(&v));
        }
        self.full().any_header_value(name, pred)
    }

    /// A property; a path holding NUL is already split into segments
    /// (`metadata\0filter_metadata\0envoy.filters.a\0k`), any other is
    /// split at its dots (`connection.uri_san_peer_certificate`).
    fn property(&self, path: &str) -> Option<Cow<'_, [u8]>> {
        let separator = if path.contains('\0') { '\0' } else { '.' };
        hostcalls::get_property(path.split(separator).collect())
            .ok()
            .flatten()
            .map(Cow::Owned)
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

impl MutableRequest for HostRequest {
    fn apply(&mut self, op: &HeaderOp) {
        self.full();
        if let Some(headers) = self.headers.get_mut() {
            headers.apply(op);
        }
        self.authority = OnceCell::new();
    }
}

/// Applies one header change to a host header map.
pub fn apply_op(map: MapType, op: &HeaderOp) -> Result<(), Status> {
    match op {
        HeaderOp::Set(name, value) => hostcalls::set_map_value(map, name, Some(value)),
        HeaderOp::Add(name, value) => hostcalls::add_map_value(map, name, value),
        HeaderOp::Remove(name) => hostcalls::remove_map_value(map, name),
    }
}

/// Request header changes go to the host's request header map; failures
/// are collected for the log.
#[derive(Default)]
pub struct HostHeaders {
    /// The first failure, if any.
    pub failed: Option<Status>,
}

impl HeaderSink for HostHeaders {
    fn apply(&mut self, op: &HeaderOp) {
        if let Err(status) = apply_op(MapType::HttpRequestHeaders, op) {
            self.failed.get_or_insert(status);
        }
    }
}

/// The filter's metrics, defined with the host: ids by [`MetricId`].
pub struct HostMetrics {
    ids: Vec<Option<u32>>,
}

impl HostMetrics {
    /// Defines every metric; one that cannot be defined is reported and
    /// then ignored.
    pub fn define(defs: &[(String, MetricKind)], mut failed: impl FnMut(&str, Status)) -> Self {
        let ids = defs
            .iter()
            .map(|(name, kind)| {
                let kind = match kind {
                    MetricKind::Counter => proxy_wasm::types::MetricType::Counter,
                    MetricKind::Gauge => proxy_wasm::types::MetricType::Gauge,
                };
                hostcalls::define_metric(kind, name)
                    .map_err(|s| failed(name, s))
                    .ok()
            })
            .collect();
        Self { ids }
    }

    fn id(&self, id: MetricId) -> Option<u32> {
        self.ids.get(id.0).copied().flatten()
    }
}

impl MetricSink for &HostMetrics {
    fn add(&mut self, id: MetricId, delta: i64) {
        if let Some(id) = self.id(id) {
            let _ = hostcalls::increment_metric(id, delta);
        }
    }

    fn value(&self, id: MetricId) -> Option<i64> {
        let value = hostcalls::get_metric(self.id(id)?).ok()?;
        i64::try_from(value).ok()
    }
}

/// The host's shared data, seen by every VM with the same `vm_id`
/// (Envoy's `SharedData`: each set gives the key a new CAS token; a set
/// with a stale token is `CasMismatch`).
pub struct HostShared;

impl SharedData for HostShared {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(value), cas)) => Some((value, cas.unwrap_or(0))),
            _ => None,
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasMismatch> {
        hostcalls::set_shared_data(key, Some(value), cas).map_err(|_| CasMismatch)
    }
}

#[allow(unsafe_code)] // reason: declaring host imports; the SDK declares them identically
unsafe extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> Status;
    fn proxy_continue_stream(stream_type: u32) -> Status;
    fn proxy_set_effective_context(context_id: u32) -> Status;
    fn proxy_set_tick_period_milliseconds(period: u32) -> Status;
    fn proxy_get_current_time_nanoseconds(nanos: *mut u64) -> Status;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> Status;
}

/// Stores `value` in Envoy filter state under `wasm.<key>` (one path
/// segment; SPEC.md §proxy-wasm ABI D), for the next filter.
pub fn set_filter_state(key: &str, value: &[u8]) -> Result<(), Status> {
    #[allow(unsafe_code)] // reason: FFI call; both pointer/length pairs come from live slices
    ok(unsafe { proxy_set_property(key.as_ptr(), key.len(), value.as_ptr(), value.len()) })
}

fn ok(status: Status) -> Result<(), Status> {
    match status {
        Status::Ok => Ok(()),
        other => Err(other),
    }
}

/// Resumes the current (effective) stream's request.
pub fn resume_request() -> Result<(), Status> {
    #[allow(unsafe_code)] // reason: FFI call without pointers
    ok(unsafe { proxy_continue_stream(0) })
}

/// Makes `context_id` the context later hostcalls act on; `BadArgument`
/// when the stream is gone.
pub fn set_effective_context(context_id: u32) -> Result<(), Status> {
    #[allow(unsafe_code)] // reason: FFI call without pointers
    ok(unsafe { proxy_set_effective_context(context_id) })
}

/// Arms the root context's tick `ms` from now (0 stops it). Envoy restarts
/// the timer on every call (`Wasm::setTimerPeriod`).
pub fn set_tick_period(ms: u32) -> Result<(), Status> {
    #[allow(unsafe_code)] // reason: FFI call without pointers
    ok(unsafe { proxy_set_tick_period_milliseconds(ms) })
}

/// Wall-clock time in milliseconds since the epoch (0 if the host fails).
pub fn now_ms() -> u64 {
    let mut nanos = 0u64;
    #[allow(unsafe_code)] // reason: FFI call writing one u64 into a live local
    let status = unsafe { proxy_get_current_time_nanoseconds(&raw mut nanos) };
    match status {
        Status::Ok => nanos / 1_000_000,
        _ => 0,
    }
}
