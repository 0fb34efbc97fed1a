//! Resilience per subset (docs/resilience.md): outlier detection with
//! failover to the route's other subsets, and a limit of concurrent
//! requests per subset, from each DestinationRule's `trafficPolicy`
//! (`outlierDetection` — or the seed's legacy `circuitBreaker` — and
//! `connectionPool.http`/`tcp`), a subset's own policy replacing the
//! host's field by field (SPEC.md §DestinationRule 2, 4–8).
//!
//! Istio does this per endpoint inside one Envoy cluster; meshwasm does it
//! per **subset**, because the route filter is what picks the subset. The
//! state every VM shares (a subset's [`health::Health`]) lives in shared
//! data, changed by compare-and-swap; concurrent requests are a gauge every
//! VM adds to. [`Resilience::compile`] resolves everything at configure
//! time; [`stage::ResilienceStage`] decides per request.

pub mod clusters;
pub mod health;
pub mod stage;

use crate::config::destination_rule::{ConnectionPoolSettings, OutlierDetection, TrafficPolicy};
use crate::config::{ConfigError, Document};
use crate::route::RouteTable;
use crate::route::hosts;

/// Probe requests let through once a subset's ejection time is over; that
/// many successes readmit it (the seed breaker's half-open `MaxRequests`).
pub const PROBES: u32 = 3;

/// Envoy's `max_ejection_time` default (SPEC.md §DestinationRule 6).
const MAX_EJECTION_MS: u64 = 300_000;

/// Outlier detection of one subset, with Istio's and Envoy's defaults
/// applied (SPEC.md §DestinationRule 6: `consecutive5xxErrors` unset ⇒
/// Envoy's 5, 0 ⇒ off; `consecutiveGatewayErrors` off unless > 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outlier {
    /// Consecutive 5xx that eject (0: off).
    pub consecutive_5xx: u32,
    /// Consecutive gateway errors that eject (0: off).
    pub consecutive_gateway: u32,
    /// `interval`: the ejection count decays by one per interval healthy.
    pub interval_ms: u64,
    /// `baseEjectionTime`.
    pub base_ejection_ms: u64,
    /// Envoy's `max_ejection_time`.
    pub max_ejection_ms: u64,
    /// `maxEjectionPercent` of the host's subsets (at least one may be).
    pub max_ejection_percent: u32,
    /// `minHealthPercent`: below that share of healthy subsets, a route
    /// ignores ejections (Envoy's panic threshold).
    pub min_health_percent: u32,
}

impl Outlier {
    fn from_istio(od: &OutlierDetection) -> Outlier {
        let non_negative = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok());
        let ms = |d: Option<crate::config::duration::IstioDuration>, default: u64| {
            d.map_or(default, |d| {
                u64::try_from(d.0.as_millis()).unwrap_or(u64::MAX)
            })
        };
        Outlier {
            consecutive_5xx: od
                .consecutive_5xx_errors
                .map_or(5, |v| u32::try_from(v).unwrap_or(0)),
            consecutive_gateway: non_negative(od.consecutive_gateway_errors).unwrap_or(0),
            interval_ms: ms(od.interval, 10_000),
            base_ejection_ms: ms(od.base_ejection_time, 30_000),
            max_ejection_ms: MAX_EJECTION_MS,
            max_ejection_percent: non_negative(od.max_ejection_percent)
                .filter(|p| *p > 0)
                .unwrap_or(10),
            min_health_percent: non_negative(od.min_health_percent).unwrap_or(0),
        }
    }
}

/// The policy of one subset (one Envoy cluster).
#[derive(Debug, Clone)]
pub struct SubsetPolicy {
    /// The Envoy cluster name (what the route writes).
    pub cluster: String,
    /// The destination host's FQDN.
    pub host: String,
    /// Where the health lives in shared data.
    pub key: String,
    /// Outlier detection, if any.
    pub outlier: Option<Outlier>,
    /// The limit of concurrent requests, if any.
    pub limit: Option<u32>,
}

/// Every subset with a policy, and which route target goes to which.
#[derive(Debug, Clone, Default)]
pub struct Resilience {
    /// Subsets with a policy.
    pub subsets: Vec<SubsetPolicy>,
    /// Route target id → index into `subsets`.
    by_target: Vec<Option<usize>>,
}

impl Resilience {
    /// The policies of every destination `routes` can send to, from the
    /// DestinationRules of `doc`.
    pub fn compile(doc: &Document, routes: &RouteTable) -> Result<Self, ConfigError> {
        let mut out = Resilience::default();
        for id in 0..routes.target_count() {
            let Some(target) = routes.target(id) else {
                out.by_target.push(None);
                continue;
            };
            let policy = effective_policy(doc, &target.host, &target.subset);
            let outlier = policy.outlier.as_ref().map(Outlier::from_istio);
            // Envoy's own circuit breakers hold the limit when the clusters
            // carry the connectionPool (`envoy.clustersHaveConnectionPool`).
            let limit = if doc.envoy.clusters_have_connection_pool {
                None
            } else {
                policy.pool.as_ref().and_then(concurrency_limit)
            };
            if outlier.is_none() && limit.is_none() {
                out.by_target.push(None);
                continue;
            }
            let index = match out.subsets.iter().position(|s| s.cluster == target.cluster) {
                Some(i) => i,
                None => {
                    out.subsets.push(SubsetPolicy {
                        key: format!("meshwasm.health.{}", target.cluster),
                        cluster: target.cluster.clone(),
                        host: target.host.clone(),
                        outlier,
                        limit,
                    });
                    out.subsets.len() - 1
                }
            };
            out.by_target.push(Some(index));
        }
        Ok(out)
    }

    /// Whether no destination has a policy (the stage then does nothing).
    pub fn is_empty(&self) -> bool {
        self.subsets.is_empty()
    }

    /// The subset policy of route target `id`.
    pub fn of_target(&self, id: usize) -> Option<usize> {
        self.by_target.get(id).copied().flatten()
    }

    /// The subsets of the same host as subset `i` that have outlier
    /// detection (`maxEjectionPercent` counts among them).
    pub fn siblings(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        let host = self.subsets.get(i).map(|s| s.host.as_str());
        self.subsets
            .iter()
            .enumerate()
            .filter(move |(_, s)| Some(s.host.as_str()) == host && s.outlier.is_some())
            .map(|(j, _)| j)
    }
}

/// The two fields meshwasm applies, after a subset's policy replaced the
/// host's field by field (Istio `MergeTrafficPolicy`).
struct Effective {
    outlier: Option<OutlierDetection>,
    pool: Option<ConnectionPoolSettings>,
}

fn effective_policy(doc: &Document, host: &str, subset: &str) -> Effective {
    let mut top: Option<&TrafficPolicy> = None;
    let mut own: Option<&TrafficPolicy> = None;
    for dr in &doc.destination_rules {
        let fqdn = hosts::fqdn(
            &dr.spec.host,
            doc.namespace_of(dr),
            &doc.envoy.domain_suffix,
        );
        if fqdn != host {
            continue;
        }
        // Istio merges a host's DestinationRules: the first keeps a field.
        top = top.or(dr.spec.traffic_policy.as_ref());
        if !subset.is_empty() && own.is_none() {
            own = dr
                .spec
                .subsets
                .iter()
                .find(|s| s.name == subset)
                .and_then(|s| s.traffic_policy.as_ref());
        }
    }
    let pick = |f: &dyn Fn(&TrafficPolicy) -> bool| own.filter(|p| f(p)).or(top);
    Effective {
        outlier: pick(&|p| p.outlier_detection.is_some() || p.circuit_breaker.is_some())
            .and_then(TrafficPolicy::effective_outlier_detection),
        pool: pick(&|p| p.connection_pool.is_some()).and_then(|p| p.connection_pool.clone()),
    }
}

/// Concurrent requests a subset takes before Envoy's circuit breaker would
/// overflow: `http2MaxRequests` (Envoy `max_requests`, every protocol),
/// and over HTTP/1 `tcp.maxConnections + http1MaxPendingRequests` when
/// both are set (one request per connection, the rest queued); the
/// smaller wins. Values ≤ 0 keep Istio's default, unlimited (SPEC.md
/// §DestinationRule 4).
fn concurrency_limit(pool: &ConnectionPoolSettings) -> Option<u32> {
    let positive = |v: Option<i64>| v.filter(|v| *v > 0).and_then(|v| u32::try_from(v).ok());
    let http = pool.http.as_ref();
    let requests = positive(http.and_then(|h| h.http2_max_requests));
    let pending = positive(http.and_then(|h| h.http1_max_pending_requests));
    let connections = positive(pool.tcp.as_ref().and_then(|t| t.max_connections));
    let http1 = match (connections, pending) {
        (Some(c), Some(p)) => Some(c.saturating_add(p)),
        _ => None,
    };
    match (requests, http1) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests;
