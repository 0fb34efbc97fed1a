//! State shared by every VM of a host: virtual clock, seeded RNG, logs, metrics,
//! shared data, shared queues, http calls, foreign functions, deferred actions.
//!
//! Shared data has one key space per `vm_id` and a process-wide CAS counter
//! (proxy-wasm-cpp-host `src/shared_data.cc`, SPEC §E.4); queues are keyed
//! `(vm_id, name)` and notify the last registrant (`src/shared_queue.cc`);
//! metrics are `wasmcustom.<name>` stats shared by all VMs (SPEC §F).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use rand::RngCore;
use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::abi::Status;
use super::grpc_call::GrpcRecord;
use super::outcome::{LocalReply, LogEntry, PendingCall};
use super::tcp::ConnAction;

/// A host-side function callable with `proxy_call_foreign_function`: argument bytes
/// in, result bytes or a proxy-wasm status out.
pub type ForeignFunction = Rc<dyn Fn(&[u8]) -> Result<Vec<u8>, u32>>;

/// Metric kinds (proxy-wasm-rust-sdk `src/types.rs` `MetricType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// 0
    Counter,
    /// 1
    Gauge,
    /// 2
    Histogram,
}

/// One metric and its value.
#[derive(Debug, Clone)]
pub(crate) struct Metric {
    pub name: String,
    pub kind: MetricKind,
    pub value: u64,
    pub samples: Vec<u64>,
}

/// Which side of the stream an action applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    Request,
    Response,
}

/// A stream action a hostcall requested; applied after the VM call returns
/// (Envoy `addAfterVmCallAction`).
#[derive(Debug, Clone)]
pub(crate) enum StreamAction {
    Resume(Dir),
    LocalReply(LocalReply),
    Close,
}

/// One `vm_id`'s shared data: key → (value, cas).
pub(crate) type KeySpace = HashMap<Vec<u8>, (Vec<u8>, u32)>;

/// A pending http call.
#[derive(Debug, Clone)]
pub(crate) struct CallRecord {
    pub call: PendingCall,
    pub vm: usize,
    pub root_ctx: u32,
    pub deadline: Option<Duration>,
}

/// A shared queue.
#[derive(Debug, Clone)]
pub(crate) struct Queue {
    pub vm_id: Vec<u8>,
    pub name: Vec<u8>,
    pub items: VecDeque<Vec<u8>>,
    pub registrant: (usize, u32),
}

/// Everything all VMs of one host share.
pub(crate) struct Shared {
    pub start: SystemTime,
    pub elapsed: Duration,
    pub rng: SmallRng,
    pub logs: Vec<LogEntry>,
    pub metrics: Vec<Metric>,
    pub shared_data: HashMap<Vec<u8>, KeySpace>,
    next_cas: u32,
    pub queues: Vec<Queue>,
    pub clusters: Vec<String>,
    pub calls: BTreeMap<u32, CallRecord>,
    next_token: u32,
    /// gRPC calls and streams in flight, by host-wide id.
    pub grpc: BTreeMap<u64, GrpcRecord>,
    next_grpc: u64,
    /// (stream id, filter index, action)
    pub actions: Vec<(u64, usize, StreamAction)>,
    /// (connection id, filter index, action)
    pub conn_actions: Vec<(u64, usize, ConnAction)>,
    /// (vm index, root context id, queue token)
    pub queue_ready: Vec<(usize, u32, u32)>,
    pub foreign: HashMap<String, ForeignFunction>,
    pub env: Vec<(String, String)>,
    pub properties: HashMap<String, Vec<u8>>,
    pub log_level: u32,
    /// Calls into the host by import name, when counted
    /// ([`crate::host::HostBuilder::count_hostcalls_by_name`]).
    pub hostcall_names: Option<std::collections::BTreeMap<&'static str, u64>>,
}

impl Shared {
    pub fn new(seed: u64, start: SystemTime) -> Self {
        let mut foreign: HashMap<String, ForeignFunction> = HashMap::new();
        // Envoy `source/extensions/common/wasm/foreign.cc`: the route cache is not
        // modelled, so clearing it is a no-op.
        foreign.insert(
            "clear_route_cache".to_owned(),
            Rc::new(|_: &[u8]| Ok(Vec::new())),
        );
        foreign.insert(
            "verify_signature".to_owned(),
            Rc::new(super::foreign::verify_signature),
        );
        Self {
            start,
            elapsed: Duration::ZERO,
            rng: SmallRng::seed_from_u64(seed),
            logs: Vec::new(),
            metrics: Vec::new(),
            shared_data: HashMap::new(),
            next_cas: 1,
            queues: Vec::new(),
            clusters: Vec::new(),
            calls: BTreeMap::new(),
            next_token: 1,
            grpc: BTreeMap::new(),
            next_grpc: 1,
            actions: Vec::new(),
            conn_actions: Vec::new(),
            queue_ready: Vec::new(),
            foreign,
            env: Vec::new(),
            properties: HashMap::new(),
            log_level: 0,
            hostcall_names: None,
        }
    }

    /// Virtual wall clock, nanoseconds since the Unix epoch.
    pub fn now_nanos(&self) -> u64 {
        let now = self.start + self.elapsed;
        now.duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }

    /// Virtual monotonic clock, nanoseconds since the host was built.
    pub fn monotonic_nanos(&self) -> u64 {
        u64::try_from(self.elapsed.as_nanos()).unwrap_or(u64::MAX)
    }

    pub fn random_bytes(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        self.rng.fill_bytes(&mut buf);
        buf
    }

    pub fn next_token(&mut self) -> u32 {
        let t = self.next_token;
        self.next_token = self.next_token.wrapping_add(1).max(1);
        t
    }

    pub fn next_grpc_id(&mut self) -> u64 {
        let id = self.next_grpc;
        self.next_grpc = self.next_grpc.wrapping_add(1);
        id
    }

    // ---- metrics (envoy `source/extensions/common/wasm/context.cc` defineMetric…)

    pub fn define_metric(&mut self, kind: u32, name: &[u8]) -> Result<u32, Status> {
        let kind = match kind {
            0 => MetricKind::Counter,
            1 => MetricKind::Gauge,
            2 => MetricKind::Histogram,
            _ => return Err(Status::BadArgument),
        };
        let full = format!("wasmcustom.{}", String::from_utf8_lossy(name));
        let idx = match self
            .metrics
            .iter()
            .position(|m| m.name == full && m.kind == kind)
        {
            Some(i) => i,
            None => {
                self.metrics.push(Metric {
                    name: full,
                    kind,
                    value: 0,
                    samples: Vec::new(),
                });
                self.metrics.len() - 1
            }
        };
        u32::try_from(idx).map_err(|_| Status::InternalFailure)
    }

    fn metric_mut(&mut self, id: u32) -> Result<&mut Metric, Status> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.metrics.get_mut(i))
            .ok_or(Status::NotFound)
    }

    /// Counter offset ≤ 0 → BadArgument; gauges add or subtract; histograms refuse.
    pub fn increment_metric(&mut self, id: u32, offset: i64) -> Status {
        match self.metric_mut(id) {
            Err(s) => s,
            Ok(m) => match m.kind {
                MetricKind::Counter if offset > 0 => {
                    m.value = m.value.wrapping_add(offset.unsigned_abs());
                    Status::Ok
                }
                MetricKind::Gauge => {
                    if offset >= 0 {
                        m.value = m.value.wrapping_add(offset.unsigned_abs());
                    } else {
                        m.value = m.value.wrapping_sub(offset.unsigned_abs());
                    }
                    Status::Ok
                }
                _ => Status::BadArgument,
            },
        }
    }

    /// Counter: add; gauge: set; histogram: record a sample.
    pub fn record_metric(&mut self, id: u32, value: u64) -> Status {
        match self.metric_mut(id) {
            Err(s) => s,
            Ok(m) => {
                match m.kind {
                    MetricKind::Counter => m.value = m.value.wrapping_add(value),
                    MetricKind::Gauge => m.value = value,
                    MetricKind::Histogram => m.samples.push(value),
                }
                Status::Ok
            }
        }
    }

    pub fn get_metric(&mut self, id: u32) -> Result<u64, Status> {
        let m = self.metric_mut(id)?;
        match m.kind {
            MetricKind::Histogram => Err(Status::BadArgument),
            _ => Ok(m.value),
        }
    }

    pub fn metric_by_name(&self, name: &str) -> Option<&Metric> {
        let full = format!("wasmcustom.{name}");
        self.metrics
            .iter()
            .find(|m| m.name == name)
            .or_else(|| self.metrics.iter().find(|m| m.name == full))
    }

    // ---- shared data (proxy-wasm-cpp-host `src/shared_data.cc`)

    pub fn get_shared(&self, vm_id: &[u8], key: &[u8]) -> Option<(Vec<u8>, u32)> {
        self.shared_data.get(vm_id)?.get(key).cloned()
    }

    /// `cas == 0` sets unconditionally; a stale cas on an existing key → CasMismatch.
    pub fn set_shared(&mut self, vm_id: &[u8], key: &[u8], value: &[u8], cas: u32) -> Status {
        let cas_next = self.next_cas;
        let map = self.shared_data.entry(vm_id.to_vec()).or_default();
        if let Some(entry) = map.get_mut(key) {
            if cas != 0 && cas != entry.1 {
                return Status::CasMismatch;
            }
            *entry = (value.to_vec(), cas_next);
        } else {
            map.insert(key.to_vec(), (value.to_vec(), cas_next));
        }
        self.next_cas = self.next_cas.wrapping_add(1).max(1);
        Status::Ok
    }

    // ---- shared queues (proxy-wasm-cpp-host `src/shared_queue.cc`)

    pub fn register_queue(&mut self, vm_id: &[u8], name: &[u8], vm: usize, root: u32) -> u32 {
        if let Some(i) = self
            .queues
            .iter()
            .position(|q| q.vm_id == vm_id && q.name == name)
        {
            if let Some(q) = self.queues.get_mut(i) {
                q.registrant = (vm, root);
            }
            return token_of(i);
        }
        self.queues.push(Queue {
            vm_id: vm_id.to_vec(),
            name: name.to_vec(),
            items: VecDeque::new(),
            registrant: (vm, root),
        });
        token_of(self.queues.len() - 1)
    }

    pub fn resolve_queue(&self, vm_id: &[u8], name: &[u8]) -> Option<u32> {
        self.queues
            .iter()
            .position(|q| q.vm_id == vm_id && q.name == name)
            .map(token_of)
    }

    fn queue_mut(&mut self, token: u32) -> Option<&mut Queue> {
        let i = usize::try_from(token.checked_sub(1)?).ok()?;
        self.queues.get_mut(i)
    }

    pub fn dequeue(&mut self, token: u32) -> Result<Vec<u8>, Status> {
        let q = self.queue_mut(token).ok_or(Status::NotFound)?;
        q.items.pop_front().ok_or(Status::Empty)
    }

    pub fn enqueue(&mut self, token: u32, data: &[u8]) -> Status {
        let Some(q) = self.queue_mut(token) else {
            return Status::NotFound;
        };
        q.items.push_back(data.to_vec());
        let (vm, root) = q.registrant;
        self.queue_ready.push((vm, root, token));
        Status::Ok
    }
}

fn token_of(index: usize) -> u32 {
    u32::try_from(index).map_or(u32::MAX, |i| i.saturating_add(1))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_stale_cas_is_a_mismatch_and_cas_zero_always_sets() {
        let mut s = Shared::new(1, SystemTime::UNIX_EPOCH);
        assert_eq!(s.set_shared(b"vm", b"k", b"1", 0), Status::Ok);
        let (_, cas) = s.get_shared(b"vm", b"k").unwrap();
        assert_eq!(s.set_shared(b"vm", b"k", b"2", cas), Status::Ok);
        assert_eq!(s.set_shared(b"vm", b"k", b"3", cas), Status::CasMismatch);
        assert_eq!(s.set_shared(b"vm", b"k", b"4", 0), Status::Ok);
        assert!(s.get_shared(b"other", b"k").is_none());
    }

    #[test]
    fn a_counter_refuses_a_non_positive_increment() {
        let mut s = Shared::new(1, SystemTime::UNIX_EPOCH);
        let id = s.define_metric(0, b"c").unwrap();
        assert_eq!(s.increment_metric(id, 0), Status::BadArgument);
        assert_eq!(s.increment_metric(id, 2), Status::Ok);
        assert_eq!(s.metric_by_name("c").map(|m| m.value), Some(2));
    }
}
