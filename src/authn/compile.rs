//! `RequestAuthentication` + `PeerAuthentication` → [`AuthnPolicy`], with
//! Istio's validation (istio/istio `pkg/config/validation/validation.go`
//! `ValidateRequestAuthentication`, `validateJwtRule`) and its selection of
//! the policies that apply to the workload (`pilot/pkg/model/policyattachment`
//! and `authn/policy_applier.go`: every matching RequestAuthentication's
//! rules are merged).

use std::collections::BTreeMap;
use std::rc::Rc;

use super::extract::Location;
use super::jwks::Jwks;
use super::mtls::MtlsPolicy;
use crate::config::security::{JwtRule, RequestAuthentication, WorkloadSelector};
use crate::config::{ConfigError, Document, Resource};
use crate::http::is_header_name;
use crate::verdict::HeaderOp;

/// Default JWKS fetch timeout (Istio's `timeout` default).
const DEFAULT_TIMEOUT_MS: u64 = 5_000;
/// How long fetched keys are used (Istio's remote `cache_duration`).
pub const CACHE_MS: u64 = 300_000;

/// A remote key set (`jwksUri`) and where the glue fetches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    /// The URI as configured.
    pub uri: String,
    /// Envoy cluster serving it.
    pub cluster: String,
    /// `:authority` of the fetch.
    pub authority: String,
    /// `:path` of the fetch.
    pub path: String,
    /// Longest wait of a request for these keys, in ms.
    pub timeout_ms: u64,
    /// How long fetched keys are used, in ms.
    pub cache_ms: u64,
}

/// Where a rule's keys come from.
#[derive(Debug, Clone)]
pub(crate) enum Keys {
    /// Inline `jwks`, parsed at configure time.
    Inline(Rc<Jwks>),
    /// Remote key set by index.
    Remote(usize),
}

/// One compiled `jwtRules[]` entry.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    /// Expected `iss` (empty ⇒ any).
    pub issuer: String,
    pub audiences: Vec<String>,
    pub keys: Keys,
    pub forward: bool,
    pub payload_header: Option<String>,
    /// `(header, claim path)`.
    pub claims: Vec<(String, Vec<String>)>,
}

/// Everything the authn stage needs, compiled once.
#[derive(Debug, Clone, Default)]
pub struct AuthnPolicy {
    pub(crate) rules: Vec<Rule>,
    /// Distinct token locations, each with the rules that read it.
    pub(crate) locations: Vec<(Location, Vec<usize>)>,
    /// Removal of every header a rule writes (client copies never count).
    pub(crate) strip: Vec<HeaderOp>,
    pub(crate) mtls: MtlsPolicy,
    /// Remote key sets, by index.
    pub remotes: Vec<RemoteJwks>,
    warnings: Vec<String>,
}

/// Whether `selector` selects the workload's labels.
pub(crate) fn selects(
    selector: Option<&WorkloadSelector>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.is_none_or(|s| s.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

impl AuthnPolicy {
    /// Compiles the document's authentication policies for its workload.
    pub fn compile(doc: &Document) -> Result<AuthnPolicy, ConfigError> {
        let mut policy = AuthnPolicy {
            mtls: MtlsPolicy::compile(doc)?,
            ..AuthnPolicy::default()
        };
        let mut by_location: BTreeMap<Location, Vec<usize>> = BTreeMap::new();
        let mut outputs = Vec::new();
        for ra in &doc.request_authentications {
            validate(ra)?;
            if !policy.applies(doc, ra) {
                continue;
            }
            for (i, r) in ra.spec.jwt_rules.iter().enumerate() {
                let path = format!("{}.jwtRules[{i}]", ra.spec_path());
                let index = policy.rules.len();
                let rule = policy.rule(doc, r, &path)?;
                for loc in locations(r) {
                    by_location.entry(loc).or_default().push(index);
                }
                outputs.extend(rule.payload_header.iter().cloned());
                outputs.extend(rule.claims.iter().map(|(h, _)| h.clone()));
                policy.rules.push(rule);
            }
        }
        policy.locations = by_location.into_iter().collect();
        outputs.sort();
        outputs.dedup();
        policy.strip = outputs.into_iter().map(HeaderOp::Remove).collect();
        Ok(policy)
    }

    /// Non-fatal findings, each naming a JSON path.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Whether any rule or mTLS mode applies at all.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.mtls.is_permissive()
    }

    fn applies(&mut self, doc: &Document, ra: &Resource<RequestAuthentication>) -> bool {
        if ra.spec.target_ref.is_some() || !ra.spec.target_refs.is_empty() {
            self.warnings.push(format!(
                "{}.targetRef: attaches to a gateway, not to this workload; ignored",
                ra.spec_path()
            ));
            return false;
        }
        let ns = doc.namespace_of(ra);
        let mesh_wide = ns == doc.envoy.root_namespace && ra.spec.selector.is_none();
        (ns == doc.workload.namespace || mesh_wide)
            && selects(ra.spec.selector.as_ref(), &doc.workload.labels)
    }

    fn rule(&mut self, doc: &Document, r: &JwtRule, path: &str) -> Result<Rule, ConfigError> {
        let keys = if r.jwks.is_empty() && r.jwks_uri.is_empty() {
            // Envoy takes an empty inline set and refuses every token with
            // `Jwks doesn't have any valid public key`.
            Keys::Inline(Rc::new(Jwks::default()))
        } else if !r.jwks.is_empty() {
            let jwks = Jwks::parse(r.jwks.as_bytes())
                .map_err(|e| ConfigError::new(format!("{path}.jwks"), e))?;
            Keys::Inline(Rc::new(jwks))
        } else {
            let timeout_ms = match r.timeout {
                Some(t) => u64::try_from(t.0.as_millis()).unwrap_or(u64::MAX).max(1),
                None => DEFAULT_TIMEOUT_MS,
            };
            let remote = remote(doc, &r.jwks_uri, timeout_ms)
                .map_err(|e| ConfigError::new(format!("{path}.jwksUri"), e))?;
            let index = match self.remotes.iter().position(|x| *x == remote) {
                Some(i) => i,
                None => {
                    self.remotes.push(remote);
                    self.remotes.len() - 1
                }
            };
            Keys::Remote(index)
        };
        let claims = r
            .output_claim_to_headers
            .iter()
            .map(|c| {
                (
                    c.header.to_ascii_lowercase(),
                    c.claim.split('.').map(str::to_owned).collect(),
                )
            })
            .collect();
        Ok(Rule {
            issuer: r.issuer.clone(),
            audiences: r.audiences.clone(),
            keys,
            forward: r.forward_original_token,
            payload_header: Some(r.output_payload_to_header.to_ascii_lowercase())
                .filter(|h| !h.is_empty()),
            claims,
        })
    }
}

/// A rule's token locations (the defaults when it names none).
fn locations(r: &JwtRule) -> Vec<Location> {
    let mut out: Vec<Location> = r
        .from_headers
        .iter()
        .map(|h| Location::Header {
            name: h.name.to_ascii_lowercase(),
            prefix: h.prefix.clone(),
        })
        .chain(r.from_params.iter().cloned().map(Location::Param))
        .chain(r.from_cookies.iter().cloned().map(Location::Cookie))
        .collect();
    if out.is_empty() {
        out = Location::defaults();
    }
    out
}

/// Istio's checks of one RequestAuthentication.
fn validate(ra: &Resource<RequestAuthentication>) -> Result<(), ConfigError> {
    let at = ra.spec_path();
    if ra.metadata.annotations.contains_key("istio.io/dry-run") {
        return Err(ConfigError::new(
            format!("resources[{}].metadata.annotations", ra.index),
            "istio.io/dry-run is not supported on RequestAuthentication",
        ));
    }
    if let Some(sel) = &ra.spec.selector
        && sel.match_labels.keys().any(String::is_empty)
    {
        return Err(ConfigError::new(
            format!("{at}.selector.matchLabels"),
            "empty key is not supported in selector",
        ));
    }
    if ra.spec.selector.is_some()
        && (ra.spec.target_ref.is_some() || !ra.spec.target_refs.is_empty())
    {
        return Err(ConfigError::new(
            at.as_str(),
            "only one of targetRefs or workloadSelector can be set",
        ));
    }
    for (i, r) in ra.spec.jwt_rules.iter().enumerate() {
        let p = format!("{at}.jwtRules[{i}]");
        if r.issuer.is_empty() && r.jwks_uri.is_empty() {
            return Err(ConfigError::new(
                format!("{p}.issuer"),
                "issuer must be set (or jwksUri, from which Istio derives it)",
            ));
        }
        if let Some(j) = r.audiences.iter().position(String::is_empty) {
            return Err(ConfigError::new(
                format!("{p}.audiences[{j}]"),
                "audience must be non-empty string",
            ));
        }
        if !r.jwks_uri.is_empty() {
            parse_uri(&r.jwks_uri).map_err(|e| ConfigError::new(format!("{p}.jwksUri"), e))?;
        }
        for (j, h) in r.from_headers.iter().enumerate() {
            if h.name.is_empty() {
                return Err(ConfigError::new(
                    format!("{p}.fromHeaders[{j}].name"),
                    "location header name must be non-empty string",
                ));
            }
        }
        for (field, list) in [
            ("fromParams", &r.from_params),
            ("fromCookies", &r.from_cookies),
        ] {
            if let Some(j) = list.iter().position(String::is_empty) {
                return Err(ConfigError::new(
                    format!("{p}.{field}[{j}]"),
                    "location must be non-empty string",
                ));
            }
        }
        for (j, c) in r.output_claim_to_headers.iter().enumerate() {
            if c.header.is_empty() || !is_header_name(&c.header) {
                return Err(ConfigError::new(
                    format!("{p}.outputClaimToHeaders[{j}].header"),
                    format!("invalid header name {:?}", c.header),
                ));
            }
            if c.claim.is_empty() {
                return Err(ConfigError::new(
                    format!("{p}.outputClaimToHeaders[{j}].claim"),
                    "claim must be non-empty string",
                ));
            }
        }
    }
    Ok(())
}

/// `(scheme, host, port, path)` of an `http(s)://host[:port][/path]` URI.
/// Hand-written: the URIs are plain and a URL crate (with IDNA tables)
/// would triple the filter's size; anything unusual is refused.
fn parse_uri(uri: &str) -> Result<(&str, &str, u16, &str), String> {
    let (scheme, rest) = uri
        .split_once("://")
        .filter(|(s, _)| *s == "http" || *s == "https")
        .ok_or_else(|| format!("{uri:?} is not an http(s) URL"))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (rest.get(..i).unwrap_or(rest), rest.get(i..).unwrap_or("/")),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            let port = p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("invalid port {p:?} in {uri:?}"))?;
            (h, port)
        }
        _ => (authority, if scheme == "https" { 443 } else { 80 }),
    };
    if host.is_empty() || host.contains(['@', ' ']) {
        return Err(format!("invalid host in {uri:?}"));
    }
    let path = if path.starts_with('?') { "/" } else { path };
    Ok((scheme, host, port, path))
}

fn remote(doc: &Document, uri: &str, timeout_ms: u64) -> Result<RemoteJwks, String> {
    let (_, host, port, path) = parse_uri(uri)?;
    let query = uri.find('?').and_then(|i| uri.get(i..)).unwrap_or("");
    let path = if path.contains('?') || query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}{query}")
    };
    let clusters = &doc.envoy.jwks_clusters;
    let cluster = clusters
        .get(&format!("{host}:{port}"))
        .or_else(|| clusters.get(host))
        .cloned()
        .unwrap_or_else(|| format!("outbound|{port}||{host}"));
    Ok(RemoteJwks {
        uri: uri.to_owned(),
        cluster,
        authority: host.to_owned(),
        path,
        timeout_ms,
        cache_ms: CACHE_MS,
    })
}
