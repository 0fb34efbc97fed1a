//! Strict serde mirror of Istio's `DestinationRule` spec
//! (istio/api networking/v1alpha3/destination_rule.proto). The seed's legacy
//! `trafficPolicy.circuitBreaker` block is accepted as an alias of
//! `outlierDetection` with a warning (SPEC.md §DestinationRule 8).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::duration::IstioDuration;

/// `DestinationRule.spec`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DestinationRule {
    /// Service host the rule applies to.
    pub host: String,
    /// Policy of the whole host.
    #[serde(default)]
    pub traffic_policy: Option<TrafficPolicy>,
    /// Named subsets.
    #[serde(default)]
    pub subsets: Vec<Subset>,
    /// Namespaces the resource is visible in.
    #[serde(default)]
    pub export_to: Vec<String>,
    /// Client workloads the rule applies to.
    #[serde(default)]
    pub workload_selector: Option<WorkloadSelector>,
}

/// `WorkloadSelector`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadSelector {
    /// Labels the workload must carry.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

/// `Subset`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Subset {
    /// Subset name, referenced by routes.
    pub name: String,
    /// Endpoint labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Overrides of the host's policy, per top-level field.
    #[serde(default)]
    pub traffic_policy: Option<TrafficPolicy>,
}

/// `TrafficPolicy`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TrafficPolicy {
    /// Load balancing.
    #[serde(default)]
    pub load_balancer: Option<LoadBalancerSettings>,
    /// Connection pool limits (Envoy circuit breakers).
    #[serde(default)]
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// Outlier detection.
    #[serde(default)]
    pub outlier_detection: Option<OutlierDetection>,
    /// Legacy pre-1.0 `circuitBreaker` (the seed's): an alias of
    /// `outlierDetection`, accepted with a warning.
    #[serde(default)]
    pub circuit_breaker: Option<LegacyCircuitBreaker>,
    /// Upstream TLS settings (`ClientTLSSettings`).
    #[serde(default)]
    pub tls: Option<serde_json::Value>,
    /// Per-port overrides.
    #[serde(default)]
    pub port_level_settings: Vec<serde_json::Value>,
    /// Tunnel settings.
    #[serde(default)]
    pub tunnel: Option<serde_json::Value>,
    /// PROXY protocol settings.
    #[serde(default)]
    pub proxy_protocol: Option<serde_json::Value>,
    /// Retry budget.
    #[serde(default)]
    pub retry_budget: Option<serde_json::Value>,
}

/// `LoadBalancerSettings`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoadBalancerSettings {
    /// `UNSPECIFIED`, `LEAST_CONN`, `RANDOM`, `PASSTHROUGH`, `ROUND_ROBIN`, `LEAST_REQUEST`.
    #[serde(default)]
    pub simple: Option<SimpleLb>,
    /// Consistent hashing.
    #[serde(default)]
    pub consistent_hash: Option<serde_json::Value>,
    /// Locality settings.
    #[serde(default)]
    pub locality_lb_setting: Option<serde_json::Value>,
    /// Slow start duration.
    #[serde(default)]
    pub warmup_duration_secs: Option<IstioDuration>,
    /// Slow start settings.
    #[serde(default)]
    pub warmup: Option<serde_json::Value>,
}

/// `LoadBalancerSettings.SimpleLB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SimpleLb {
    /// Istio's default (`LEAST_REQUEST` in Envoy).
    Unspecified,
    /// Deprecated alias of `LEAST_REQUEST`.
    LeastConn,
    /// Random.
    Random,
    /// Original destination.
    Passthrough,
    /// Round robin.
    RoundRobin,
    /// Least request.
    LeastRequest,
}

/// `ConnectionPoolSettings`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConnectionPoolSettings {
    /// TCP limits.
    #[serde(default)]
    pub tcp: Option<TcpSettings>,
    /// HTTP limits.
    #[serde(default)]
    pub http: Option<HttpSettings>,
}

/// `ConnectionPoolSettings.TCPSettings`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TcpSettings {
    /// Maximum connections.
    #[serde(default)]
    pub max_connections: Option<i64>,
    /// Connect timeout.
    #[serde(default)]
    pub connect_timeout: Option<IstioDuration>,
    /// TCP keepalive.
    #[serde(default)]
    pub tcp_keepalive: Option<serde_json::Value>,
    /// Maximum connection lifetime.
    #[serde(default)]
    pub max_connection_duration: Option<IstioDuration>,
    /// Idle timeout.
    #[serde(default)]
    pub idle_timeout: Option<IstioDuration>,
}

/// `ConnectionPoolSettings.HTTPSettings`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpSettings {
    /// Maximum pending requests.
    #[serde(default)]
    pub http1_max_pending_requests: Option<i64>,
    /// Maximum active requests.
    #[serde(default)]
    pub http2_max_requests: Option<i64>,
    /// Requests per connection.
    #[serde(default)]
    pub max_requests_per_connection: Option<i64>,
    /// Maximum concurrent retries.
    #[serde(default)]
    pub max_retries: Option<i64>,
    /// Idle timeout.
    #[serde(default)]
    pub idle_timeout: Option<IstioDuration>,
    /// `DEFAULT`, `DO_NOT_UPGRADE`, `UPGRADE`.
    #[serde(default)]
    pub h2_upgrade_policy: Option<String>,
    /// Use the client's protocol upstream.
    #[serde(default)]
    pub use_client_protocol: Option<bool>,
    /// Maximum concurrent streams per connection.
    #[serde(default)]
    pub max_concurrent_streams: Option<i64>,
}

/// `OutlierDetection`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OutlierDetection {
    /// Separate local-origin failures.
    #[serde(default)]
    pub split_external_local_origin_errors: Option<bool>,
    /// Local-origin failures before ejection.
    #[serde(default)]
    pub consecutive_local_origin_failures: Option<i64>,
    /// 502/503/504 responses before ejection.
    #[serde(default)]
    pub consecutive_gateway_errors: Option<i64>,
    /// 5xx responses before ejection.
    #[serde(default, rename = "consecutive5xxErrors")]
    pub consecutive_5xx_errors: Option<i64>,
    /// Deprecated: old name of consecutive gateway errors.
    #[serde(default)]
    pub consecutive_errors: Option<i64>,
    /// Sweep interval.
    #[serde(default)]
    pub interval: Option<IstioDuration>,
    /// Minimum ejection time.
    #[serde(default)]
    pub base_ejection_time: Option<IstioDuration>,
    /// Maximum share of hosts ejected.
    #[serde(default)]
    pub max_ejection_percent: Option<i64>,
    /// Panic threshold.
    #[serde(default)]
    pub min_health_percent: Option<i64>,
}

/// The seed's legacy `circuitBreaker` block (pre-1.0 `DestinationPolicy`);
/// means `outlierDetection {consecutiveGatewayErrors, interval,
/// baseEjectionTime, maxEjectionPercent}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LegacyCircuitBreaker {
    /// Consecutive gateway errors before ejection.
    #[serde(default)]
    pub consecutive_errors: Option<i64>,
    /// Sweep interval.
    #[serde(default)]
    pub interval: Option<IstioDuration>,
    /// Minimum ejection time.
    #[serde(default)]
    pub base_ejection_time: Option<IstioDuration>,
    /// Maximum share of hosts ejected.
    #[serde(default)]
    pub max_ejection_percent: Option<i64>,
}

impl TrafficPolicy {
    /// The effective outlier detection: `outlierDetection`, else the legacy
    /// `circuitBreaker` alias translated to it.
    pub fn effective_outlier_detection(&self) -> Option<OutlierDetection> {
        if let Some(od) = &self.outlier_detection {
            return Some(od.clone());
        }
        self.circuit_breaker.as_ref().map(|cb| OutlierDetection {
            consecutive_gateway_errors: cb.consecutive_errors,
            interval: cb.interval,
            base_ejection_time: cb.base_ejection_time,
            max_ejection_percent: cb.max_ejection_percent,
            ..OutlierDetection::default()
        })
    }
}
