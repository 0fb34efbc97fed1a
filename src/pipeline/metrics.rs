//! Metrics a stage defines at configure time and changes per request;
//! the glue defines them with the host (process-wide stats in Envoy).

/// Metric kinds a stage can define.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Monotonic counter.
    Counter,
    /// Up/down gauge.
    Gauge,
}

/// The id of a metric in the filter's [`Metrics`] registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MetricId(pub usize);

/// Every metric of a filter, defined once at configure time in the order
/// the stages asked for them; the glue defines each with the host.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    defs: Vec<(String, MetricKind)>,
}

impl Metrics {
    /// Registers a counter.
    pub fn counter(&mut self, name: impl Into<String>) -> MetricId {
        self.define(name.into(), MetricKind::Counter)
    }

    /// Registers a gauge.
    pub fn gauge(&mut self, name: impl Into<String>) -> MetricId {
        self.define(name.into(), MetricKind::Gauge)
    }

    fn define(&mut self, name: String, kind: MetricKind) -> MetricId {
        self.defs.push((name, kind));
        MetricId(self.defs.len() - 1)
    }

    /// Every definition, by id.
    pub fn defs(&self) -> &[(String, MetricKind)] {
        &self.defs
    }
}

/// A name as one stat name segment: anything but ASCII letters, digits,
/// `-` and `_` becomes `_` (`outbound|80|v2|a.ns` → `outbound_80_v2_a_ns`).
pub fn stat_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Where metric changes go (the host's stats; a map in tests).
pub trait MetricSink {
    /// Adds `delta` to a counter (`delta > 0`) or a gauge.
    fn add(&mut self, id: MetricId, delta: i64);
    /// The current value, shared by every VM of the proxy (Envoy's stats
    /// are process-wide), if the host can tell.
    fn value(&self, id: MetricId) -> Option<i64>;
}
