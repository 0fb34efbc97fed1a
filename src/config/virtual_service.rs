//! Strict serde mirror of Istio's `VirtualService` spec
//! (istio/api networking/v1alpha3/virtual_service.proto, identical in v1beta1
//! and v1). Every field Istio defines is accepted; any other is refused with
//! its path. Behaviour lives in [`crate::route`]; this module only reads.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::duration::IstioDuration;

/// `VirtualService.spec`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VirtualService {
    /// Destination hosts the rules apply to.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Gateways and sidecars (`mesh`) the rules apply to.
    #[serde(default)]
    pub gateways: Vec<String>,
    /// HTTP routes, first match wins.
    #[serde(default)]
    pub http: Vec<HttpRoute>,
    /// TLS routes (validated, not used by the HTTP filters).
    #[serde(default)]
    pub tls: Vec<TlsRoute>,
    /// TCP routes (validated, not used by the HTTP filters).
    #[serde(default)]
    pub tcp: Vec<TcpRoute>,
    /// Namespaces the resource is visible in.
    #[serde(default)]
    pub export_to: Vec<String>,
}

/// `HTTPRoute`: match conditions and actions of one rule.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRoute {
    /// Route name (stats, logs).
    #[serde(default)]
    pub name: Option<String>,
    /// Conditions, OR-ed; none ⇒ matches every request.
    #[serde(default, rename = "match")]
    pub matches: Vec<HttpMatchRequest>,
    /// Weighted destinations.
    #[serde(default)]
    pub route: Vec<HttpRouteDestination>,
    /// Redirect instead of forwarding.
    #[serde(default)]
    pub redirect: Option<HttpRedirect>,
    /// Fixed local response instead of forwarding.
    #[serde(default)]
    pub direct_response: Option<HttpDirectResponse>,
    /// Delegate to another VirtualService.
    #[serde(default)]
    pub delegate: Option<Delegate>,
    /// URI / authority rewrite before forwarding.
    #[serde(default)]
    pub rewrite: Option<HttpRewrite>,
    /// Global timeout of the request (all attempts).
    #[serde(default)]
    pub timeout: Option<IstioDuration>,
    /// Retry policy.
    #[serde(default)]
    pub retries: Option<HttpRetry>,
    /// Fault injection.
    #[serde(default)]
    pub fault: Option<HttpFaultInjection>,
    /// Mirror destination.
    #[serde(default)]
    pub mirror: Option<Destination>,
    /// Share of traffic mirrored.
    #[serde(default)]
    pub mirror_percentage: Option<Percent>,
    /// Deprecated integer mirror percentage (Istio's CRD also takes
    /// `mirror_percent`).
    #[serde(default, alias = "mirror_percent")]
    pub mirror_percent: Option<u32>,
    /// Several mirrors.
    #[serde(default)]
    pub mirrors: Vec<HttpMirrorPolicy>,
    /// CORS policy.
    #[serde(default)]
    pub cors_policy: Option<CorsPolicy>,
    /// Header manipulation.
    #[serde(default)]
    pub headers: Option<Headers>,
}

/// `HTTPMatchRequest`: fields AND-ed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpMatchRequest {
    /// Name of the match, prefixed to the route name.
    #[serde(default)]
    pub name: Option<String>,
    /// Match on `:path`.
    #[serde(default)]
    pub uri: Option<StringMatch>,
    /// Match on `:scheme`.
    #[serde(default)]
    pub scheme: Option<StringMatch>,
    /// Match on `:method`.
    #[serde(default)]
    pub method: Option<StringMatch>,
    /// Match on `:authority`.
    #[serde(default)]
    pub authority: Option<StringMatch>,
    /// Request headers that must match (names case-insensitive).
    #[serde(default)]
    pub headers: BTreeMap<String, StringMatch>,
    /// Port the request arrived on.
    #[serde(default)]
    pub port: Option<u32>,
    /// Labels of the calling workload (a selector).
    #[serde(default)]
    pub source_labels: BTreeMap<String, String>,
    /// Gateways the match applies to (a selector).
    #[serde(default)]
    pub gateways: Vec<String>,
    /// Query parameters that must match.
    #[serde(default)]
    pub query_params: BTreeMap<String, StringMatch>,
    /// Case-insensitive `uri` exact/prefix match.
    #[serde(default)]
    pub ignore_uri_case: bool,
    /// Headers that must NOT match.
    #[serde(default)]
    pub without_headers: BTreeMap<String, StringMatch>,
    /// Namespace of the calling workload (a selector).
    #[serde(default)]
    pub source_namespace: Option<String>,
    /// Stats prefix of the route.
    #[serde(default)]
    pub stat_prefix: Option<String>,
}

/// `StringMatch`: at most one of `exact`, `prefix`, `regex` (RE2, full
/// match). An empty object is allowed where Istio treats it as presence.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StringMatch {
    /// Exact value.
    #[serde(default)]
    pub exact: Option<String>,
    /// Prefix.
    #[serde(default)]
    pub prefix: Option<String>,
    /// RE2 regular expression, matched against the whole value.
    #[serde(default)]
    pub regex: Option<String>,
}

/// `HTTPRouteDestination`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRouteDestination {
    /// Where to send the request.
    pub destination: Destination,
    /// Relative share of traffic.
    #[serde(default)]
    pub weight: Option<i64>,
    /// Header manipulation for this destination.
    #[serde(default)]
    pub headers: Option<Headers>,
}

/// `Destination`: a service host, optional subset and port.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Destination {
    /// Service host (short name, FQDN or ServiceEntry host).
    pub host: String,
    /// Subset named by a DestinationRule.
    #[serde(default)]
    pub subset: Option<String>,
    /// Service port.
    #[serde(default)]
    pub port: Option<PortSelector>,
}

/// `PortSelector`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PortSelector {
    /// Port number.
    #[serde(default)]
    pub number: u32,
}

/// `Headers`: request and response manipulation.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Headers {
    /// Applied to the request.
    #[serde(default)]
    pub request: Option<HeaderOperations>,
    /// Applied to the response.
    #[serde(default)]
    pub response: Option<HeaderOperations>,
}

/// `HeaderOperations`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HeaderOperations {
    /// Overwrite or add.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Append.
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    /// Remove.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// `HTTPRewrite`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRewrite {
    /// Replaces the matched prefix (or the whole path).
    #[serde(default)]
    pub uri: Option<String>,
    /// Replaces the authority.
    #[serde(default)]
    pub authority: Option<String>,
    /// Regex rewrite of the path.
    #[serde(default)]
    pub uri_regex_rewrite: Option<RegexRewrite>,
}

/// `RegexRewrite`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegexRewrite {
    /// RE2 pattern.
    #[serde(default, rename = "match")]
    pub pattern: String,
    /// Replacement with `\1` groups.
    #[serde(default)]
    pub rewrite: String,
}

/// `HTTPRetry`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRetry {
    /// Number of retries.
    #[serde(default)]
    pub attempts: i64,
    /// Timeout per attempt.
    #[serde(default)]
    pub per_try_timeout: Option<IstioDuration>,
    /// Comma-separated retry conditions.
    #[serde(default)]
    pub retry_on: Option<String>,
    /// Retry in other localities.
    #[serde(default)]
    pub retry_remote_localities: Option<bool>,
    /// Avoid previously tried hosts (default true).
    #[serde(default)]
    pub retry_ignore_previous_hosts: Option<bool>,
    /// Base back-off interval.
    #[serde(default)]
    pub backoff: Option<IstioDuration>,
}

/// `HTTPFaultInjection`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpFaultInjection {
    /// Delay before forwarding.
    #[serde(default)]
    pub delay: Option<FaultDelay>,
    /// Abort with a status.
    #[serde(default)]
    pub abort: Option<FaultAbort>,
}

/// `HTTPFaultInjection.Delay`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FaultDelay {
    /// Fixed delay.
    #[serde(default)]
    pub fixed_delay: Option<IstioDuration>,
    /// Exponential delay (refused by Istio's validation).
    #[serde(default)]
    pub exponential_delay: Option<IstioDuration>,
    /// Share of requests delayed.
    #[serde(default)]
    pub percentage: Option<Percent>,
    /// Deprecated integer percentage.
    #[serde(default)]
    pub percent: Option<i64>,
}

/// `HTTPFaultInjection.Abort`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FaultAbort {
    /// HTTP status to answer.
    #[serde(default)]
    pub http_status: Option<i64>,
    /// gRPC status name to answer.
    #[serde(default)]
    pub grpc_status: Option<String>,
    /// HTTP/2 error (refused by Istio's validation).
    #[serde(default)]
    pub http2_error: Option<String>,
    /// Share of requests aborted.
    #[serde(default)]
    pub percentage: Option<Percent>,
}

/// `Percent`: a double in [0, 100].
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Percent {
    /// The percentage.
    #[serde(default)]
    pub value: f64,
}

/// `HTTPRedirect`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRedirect {
    /// Replacement path.
    #[serde(default)]
    pub uri: Option<String>,
    /// Replacement authority.
    #[serde(default)]
    pub authority: Option<String>,
    /// Replacement port.
    #[serde(default)]
    pub port: Option<u32>,
    /// `FROM_PROTOCOL_DEFAULT` or `FROM_REQUEST_PORT`.
    #[serde(default)]
    pub derive_port: Option<String>,
    /// Replacement scheme.
    #[serde(default)]
    pub scheme: Option<String>,
    /// Status of the redirect (default 301; proto3 `0` is unset).
    #[serde(default)]
    pub redirect_code: Option<u32>,
    /// Replaces the matched `uri.prefix` of the path (istio/api master,
    /// after 1.30); exclusive with `uri`.
    #[serde(default)]
    pub prefix_rewrite: Option<String>,
}

/// `HTTPDirectResponse`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpDirectResponse {
    /// Status to answer.
    pub status: u32,
    /// Body to answer.
    #[serde(default)]
    pub body: Option<HttpBody>,
}

/// `HTTPBody`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpBody {
    /// Text body.
    #[serde(default)]
    pub string: Option<String>,
    /// Base64 body.
    #[serde(default)]
    pub bytes: Option<String>,
}

/// `Delegate`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Delegate {
    /// Name of the delegate VirtualService.
    #[serde(default)]
    pub name: String,
    /// Its namespace.
    #[serde(default)]
    pub namespace: Option<String>,
}

/// `HTTPMirrorPolicy`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpMirrorPolicy {
    /// Mirror destination.
    pub destination: Destination,
    /// Share mirrored.
    #[serde(default)]
    pub percentage: Option<Percent>,
}

/// `CorsPolicy`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CorsPolicy {
    /// Allowed origins.
    #[serde(default)]
    pub allow_origins: Vec<StringMatch>,
    /// Deprecated exact origins.
    #[serde(default)]
    pub allow_origin: Vec<String>,
    /// Allowed methods.
    #[serde(default)]
    pub allow_methods: Vec<String>,
    /// Allowed headers.
    #[serde(default)]
    pub allow_headers: Vec<String>,
    /// Exposed headers.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Preflight cache duration.
    #[serde(default)]
    pub max_age: Option<IstioDuration>,
    /// Allow credentials.
    #[serde(default)]
    pub allow_credentials: Option<bool>,
    /// `FORWARD` or `IGNORE` unmatched preflights.
    #[serde(default)]
    pub unmatched_preflights: Option<String>,
}

/// `TLSRoute`: SNI-matched passthrough TLS.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsRoute {
    /// Conditions (required, at least one).
    #[serde(default, rename = "match")]
    pub matches: Vec<TlsMatchAttributes>,
    /// Destinations.
    #[serde(default)]
    pub route: Vec<RouteDestination>,
}

/// `TCPRoute`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TcpRoute {
    /// Conditions.
    #[serde(default, rename = "match")]
    pub matches: Vec<L4MatchAttributes>,
    /// Destinations.
    #[serde(default)]
    pub route: Vec<RouteDestination>,
}

/// `TLSMatchAttributes`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsMatchAttributes {
    /// SNI values (required).
    #[serde(default)]
    pub sni_hosts: Vec<String>,
    /// Destination IP subnets.
    #[serde(default)]
    pub destination_subnets: Vec<String>,
    /// Port.
    #[serde(default)]
    pub port: Option<u32>,
    /// Labels of the calling workload.
    #[serde(default)]
    pub source_labels: BTreeMap<String, String>,
    /// Gateways the match applies to.
    #[serde(default)]
    pub gateways: Vec<String>,
    /// Namespace of the calling workload.
    #[serde(default)]
    pub source_namespace: Option<String>,
}

/// `L4MatchAttributes`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct L4MatchAttributes {
    /// Destination IP subnets.
    #[serde(default)]
    pub destination_subnets: Vec<String>,
    /// Port.
    #[serde(default)]
    pub port: Option<u32>,
    /// Source IP subnet (deprecated upstream, still in the CRD).
    #[serde(default)]
    pub source_subnet: Option<String>,
    /// Labels of the calling workload.
    #[serde(default)]
    pub source_labels: BTreeMap<String, String>,
    /// Gateways the match applies to.
    #[serde(default)]
    pub gateways: Vec<String>,
    /// Namespace of the calling workload.
    #[serde(default)]
    pub source_namespace: Option<String>,
}

/// `RouteDestination` of a TCP or TLS route.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteDestination {
    /// Where to send the connection.
    pub destination: Destination,
    /// Relative share.
    #[serde(default)]
    pub weight: Option<i64>,
}
