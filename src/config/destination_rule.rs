//! Strict serde mirror of Istio's `DestinationRule` spec
//! (istio/api networking/v1alpha3/destination_rule.proto, as istio/istio
//! master's CRD has it: `http2KeepAlive`, `zoneAwareLbSetting`,
//! `backendUtilization`, `outlierDetectionHttpErrorCodes` included). Every
//! message is typed, so a misspelt field anywhere is refused with its path;
//! the rules Istio checks are in [`super::validation::destination_rule`].
//! The seed's legacy
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
    /// Upstream TLS settings.
    #[serde(default)]
    pub tls: Option<ClientTlsSettings>,
    /// Per-port overrides.
    #[serde(default)]
    pub port_level_settings: Vec<PortTrafficPolicy>,
    /// Tunnel settings.
    #[serde(default)]
    pub tunnel: Option<TunnelSettings>,
    /// PROXY protocol settings.
    #[serde(default)]
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Retry budget.
    #[serde(default)]
    pub retry_budget: Option<RetryBudget>,
}

/// `TrafficPolicy.PortTrafficPolicy`: the policy of one port.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PortTrafficPolicy {
    /// The port (required).
    #[serde(default)]
    pub port: Option<crate::config::virtual_service::PortSelector>,
    /// Load balancing.
    #[serde(default)]
    pub load_balancer: Option<LoadBalancerSettings>,
    /// Connection pool limits.
    #[serde(default)]
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// Outlier detection.
    #[serde(default)]
    pub outlier_detection: Option<OutlierDetection>,
    /// Upstream TLS settings.
    #[serde(default)]
    pub tls: Option<ClientTlsSettings>,
}

/// `ClientTLSSettings`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientTlsSettings {
    /// `DISABLE` (default), `SIMPLE`, `MUTUAL`, `ISTIO_MUTUAL`.
    #[serde(default)]
    pub mode: Option<TlsMode>,
    /// Client certificate file (`MUTUAL`).
    #[serde(default)]
    pub client_certificate: Option<String>,
    /// Client key file (`MUTUAL`).
    #[serde(default)]
    pub private_key: Option<String>,
    /// CA bundle file.
    #[serde(default)]
    pub ca_certificates: Option<String>,
    /// Secret holding the certificates.
    #[serde(default)]
    pub credential_name: Option<String>,
    /// Accepted server SANs.
    #[serde(default)]
    pub subject_alt_names: Option<Vec<String>>,
    /// SNI to send.
    #[serde(default)]
    pub sni: Option<String>,
    /// Skip server certificate verification.
    #[serde(default)]
    pub insecure_skip_verify: Option<bool>,
    /// Certificate revocation list file.
    #[serde(default)]
    pub ca_crl: Option<String>,
}

/// `ClientTLSSettings.TLSmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TlsMode {
    /// Plain text.
    Disable,
    /// TLS.
    Simple,
    /// Mutual TLS with given certificates.
    Mutual,
    /// Mutual TLS with Istio's certificates.
    IstioMutual,
}

/// `TrafficPolicy.TunnelSettings`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TunnelSettings {
    /// `CONNECT` (default) or `POST`.
    #[serde(default)]
    pub protocol: Option<String>,
    /// Host the tunnel connects to (required).
    pub target_host: String,
    /// Its port (required).
    pub target_port: u32,
}

/// `TrafficPolicy.ProxyProtocol`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProxyProtocol {
    /// `V1` (default) or `V2`.
    #[serde(default)]
    pub version: Option<ProxyProtocolVersion>,
}

/// `TrafficPolicy.ProxyProtocol.VERSION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ProxyProtocolVersion {
    /// Text header.
    V1,
    /// Binary header.
    V2,
}

/// `TrafficPolicy.RetryBudget`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RetryBudget {
    /// Share of active requests that may be retries (0–100).
    #[serde(default)]
    pub percent: Option<f64>,
    /// Retries always allowed.
    #[serde(default)]
    pub min_retry_concurrency: Option<u32>,
    /// Window of the budget.
    #[serde(default)]
    pub budget_interval: Option<IstioDuration>,
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
    pub consistent_hash: Option<ConsistentHashLb>,
    /// Weights from backend-reported ORCA utilization (istio/istio master CRD).
    #[serde(default)]
    pub backend_utilization: Option<BackendUtilization>,
    /// Locality settings.
    #[serde(default)]
    pub locality_lb_setting: Option<LocalityLbSetting>,
    /// Zone-aware routing (istio/api master, after 1.30).
    #[serde(default)]
    pub zone_aware_lb_setting: Option<ZoneAwareLbSetting>,
    /// Slow start duration.
    #[serde(default)]
    pub warmup_duration_secs: Option<IstioDuration>,
    /// Slow start settings.
    #[serde(default)]
    pub warmup: Option<Warmup>,
}

/// `LoadBalancerSettings.ConsistentHashLB`: one hash key, at most one
/// algorithm.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConsistentHashLb {
    /// Hash on a header.
    #[serde(default)]
    pub http_header_name: Option<String>,
    /// Hash on a cookie.
    #[serde(default)]
    pub http_cookie: Option<HttpCookie>,
    /// Hash on the source IP.
    #[serde(default)]
    pub use_source_ip: Option<bool>,
    /// Hash on a query parameter.
    #[serde(default)]
    pub http_query_parameter_name: Option<String>,
    /// Ring hash.
    #[serde(default)]
    pub ring_hash: Option<RingHash>,
    /// Maglev.
    #[serde(default)]
    pub maglev: Option<MagLev>,
    /// Deprecated ring size.
    #[serde(default)]
    pub minimum_ring_size: Option<u64>,
}

/// `ConsistentHashLB.RingHash`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RingHash {
    /// Minimum ring size.
    #[serde(default)]
    pub minimum_ring_size: Option<u64>,
}

/// `ConsistentHashLB.MagLev`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MagLev {
    /// Table size, a prime below 5000011.
    #[serde(default)]
    pub table_size: Option<u64>,
}

/// `ConsistentHashLB.HTTPCookie`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpCookie {
    /// Cookie name (required).
    #[serde(default)]
    pub name: Option<String>,
    /// Cookie path.
    #[serde(default)]
    pub path: Option<String>,
    /// Lifetime of a generated cookie.
    #[serde(default)]
    pub ttl: Option<IstioDuration>,
    /// Attributes of a generated cookie.
    #[serde(default)]
    pub attributes: Vec<CookieAttribute>,
}

/// `HTTPCookie.Attribute`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CookieAttribute {
    /// Attribute name (required).
    #[serde(default)]
    pub name: Option<String>,
    /// Attribute value.
    #[serde(default)]
    pub value: Option<String>,
}

/// `LoadBalancerSettings.backendUtilization` (istio/istio master's CRD).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackendUtilization {
    /// Penalty for endpoints answering errors, in percent of utilization.
    #[serde(default)]
    pub error_utilization_penalty_percent: Option<u32>,
    /// ORCA metric names.
    #[serde(default)]
    pub metric_names_for_computing_utilization: Vec<String>,
    /// Weight kept after metrics stop.
    #[serde(default)]
    pub weight_expiration_period: Option<IstioDuration>,
    /// Delay before a new weight is trusted.
    #[serde(default)]
    pub weight_stabilization_period: Option<IstioDuration>,
    /// How often weights are recomputed.
    #[serde(default)]
    pub weight_update_period: Option<IstioDuration>,
}

/// `LocalityLoadBalancerSetting`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LocalityLbSetting {
    /// Weighted distribution per source locality.
    #[serde(default)]
    pub distribute: Vec<LocalityDistribute>,
    /// Region failover.
    #[serde(default)]
    pub failover: Vec<LocalityFailover>,
    /// Labels ordering failover priority.
    #[serde(default)]
    pub failover_priority: Vec<String>,
    /// Enabled.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// `LocalityLoadBalancerSetting.Distribute`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LocalityDistribute {
    /// Source locality.
    #[serde(default)]
    pub from: String,
    /// Destination localities and their weights.
    #[serde(default)]
    pub to: BTreeMap<String, u32>,
}

/// `Failover` of locality and zone-aware settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LocalityFailover {
    /// Source region.
    #[serde(default)]
    pub from: String,
    /// Region to fail over to.
    #[serde(default)]
    pub to: String,
}

/// `ZoneAwareLoadBalancerSetting` (istio/api master).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ZoneAwareLbSetting {
    /// Enabled.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Region failover.
    #[serde(default)]
    pub failover: Vec<LocalityFailover>,
    /// Labels ordering failover priority.
    #[serde(default)]
    pub failover_priority: Vec<String>,
    /// Minimum local cluster size for zone-aware routing (≥ 1).
    #[serde(default)]
    pub min_cluster_size: Option<u64>,
}

/// `WarmupConfiguration`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Warmup {
    /// Slow-start window (required).
    #[serde(default)]
    pub duration: Option<IstioDuration>,
    /// Starting share of traffic, 0–100.
    #[serde(default)]
    pub minimum_percent: Option<f64>,
    /// Ramp curve, > 0.
    #[serde(default)]
    pub aggression: Option<f64>,
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
    pub tcp_keepalive: Option<TcpKeepalive>,
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
    /// HTTP/2 PING keepalive (istio/api master, after 1.30).
    #[serde(default)]
    pub http2_keep_alive: Option<ConnectionKeepalive>,
}

/// `TCPSettings.TcpKeepalive`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TcpKeepalive {
    /// Probes before the connection is dead.
    #[serde(default)]
    pub probes: Option<u32>,
    /// Idle time before probing.
    #[serde(default)]
    pub time: Option<IstioDuration>,
    /// Time between probes.
    #[serde(default)]
    pub interval: Option<IstioDuration>,
}

/// `HTTPSettings.ConnectionKeepalive` (HTTP/2 PINGs).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConnectionKeepalive {
    /// Time between PINGs (required).
    #[serde(default)]
    pub interval: Option<IstioDuration>,
    /// Time to wait for a PING answer (required).
    #[serde(default)]
    pub timeout: Option<IstioDuration>,
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
    /// HTTP status codes counted as errors (100–599; istio/api master).
    #[serde(default)]
    pub outlier_detection_http_error_codes: Vec<u32>,
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
