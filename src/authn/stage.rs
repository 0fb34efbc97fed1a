//! The authn stage: mTLS mode, then every token found, verified in order
//! (SPEC.md §RequestAuthentication Behaviour 2: parse → issuer → time →
//! audience → keys → signature), then the request's identity and header
//! changes. A token whose rule reads remote keys that no VM holds yet waits
//! ([`Wait::Keys`]) for the glue's fetch, for at most the rule's `timeout`.

use std::rc::Rc;

use base64::Engine as _;
use serde_json::Value;

use super::cache::TokenCache;
use super::compile::{AuthnPolicy, Keys, Rule};
use super::extract::without_param;
use super::jwks::Jwks;
use super::status::JwtStatus;
use super::token::Jwt;
use super::verify::verify;
use super::{Identity, extract::Location};
use crate::http::RequestView;
use crate::pipeline::{Env, Exchange, KeyState, MetricId, Metrics, Stage, Wait, Wake};
use crate::verdict::{HeaderOp, LocalReply, Mutations, Verdict};

/// Body of a refusal for want of mutual TLS (SPEC.md §PeerAuthentication 4).
pub const MTLS_BODY: &[u8] = b"RBAC: access denied";
/// Details of that refusal.
pub const MTLS_DETAILS: &str = "meshwasm_mtls_required";

/// Where a stream is in the authn stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AuthnPhase {
    /// Nothing decided yet.
    #[default]
    Start,
    /// Paused until remote key set `source` is there.
    WaitingKeys {
        /// The remote key set.
        source: usize,
    },
    /// Authenticated (or no token): let through.
    Passed,
    /// Refused.
    Refused,
}

/// Per-stream state of the authn stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthnState {
    /// Where the stream is.
    pub phase: AuthnPhase,
}

/// The authn stage.
#[derive(Debug, Clone)]
pub struct AuthnStage {
    policy: Rc<AuthnPolicy>,
    verified: MetricId,
    denied: MetricId,
    no_token: MetricId,
    mtls_denied: MetricId,
    by_host: MetricId,
    in_wasm: MetricId,
    cache: std::cell::RefCell<TokenCache<Cached>>,
    /// The identity of a request without token or peer certificate.
    anonymous: Rc<Identity>,
    /// The identity goes to Envoy filter state (its peer principal too).
    hands_on: bool,
}

/// Tokens that verified, with what verifying them produced
/// ([`TokenCache`]): a client reusing its token is neither parsed nor
/// verified again (parsing is most of a token's cost inside wasm). An entry
/// holds for the rule and the key set (by generation) that verified it — a
/// refetch misses — and the token's `nbf`/`exp` are checked on every hit,
/// so it never outlives `exp`.
#[derive(Debug, Clone)]
struct Cached {
    rule: usize,
    set: u64,
    nbf: u64,
    exp: u64,
    identity: Rc<Identity>,
    /// Payload and claim headers.
    outputs: Vec<HeaderOp>,
}

/// Most tokens cached per VM.
const TOKEN_CACHE_SIZE: usize = 256;

/// What checking one token found.
enum Outcome {
    Valid(Rc<Identity>, Vec<HeaderOp>),
    Refused(JwtStatus),
    NeedKeys(usize, u64, bool),
}

impl AuthnStage {
    /// The stage over a compiled policy; registers the counters
    /// `meshwasm.authn.{jwt_verified,jwt_denied,no_token,mtls_denied}` and
    /// `signatures_verified_by_host` / `signatures_verified_in_wasm` (token
    /// cache misses, by where the signature was checked).
    pub fn new(policy: Rc<AuthnPolicy>, metrics: &mut Metrics) -> Self {
        Self {
            policy,
            verified: metrics.counter("meshwasm.authn.jwt_verified"),
            denied: metrics.counter("meshwasm.authn.jwt_denied"),
            no_token: metrics.counter("meshwasm.authn.no_token"),
            mtls_denied: metrics.counter("meshwasm.authn.mtls_denied"),
            by_host: metrics.counter("meshwasm.authn.signatures_verified_by_host"),
            in_wasm: metrics.counter("meshwasm.authn.signatures_verified_in_wasm"),
            cache: std::cell::RefCell::new(TokenCache::new(TOKEN_CACHE_SIZE)),
            anonymous: Rc::new(Identity::default()),
            hands_on: true,
        }
    }

    /// Whether the identity goes to Envoy filter state for later filters
    /// (default: it does). When it does not and no PeerAuthentication can
    /// refuse plaintext, the connection's mTLS is not asked for: nothing
    /// in the stream reads the peer principal (RBAC reads the
    /// certificate's identities itself), and a host property read costs
    /// about as much as reading the whole header map.
    #[must_use]
    pub fn handing_on(mut self, hands_on: bool) -> Self {
        self.hands_on = hands_on;
        self
    }

    /// A hit of the token cache for `token` read at a location of `rules`:
    /// still in time, and its keys are the ones held now.
    fn cached(
        &self,
        token: &str,
        rules: &[usize],
        env: &Env<'_>,
    ) -> Option<Result<Cached, JwtStatus>> {
        let cache = self.cache.try_borrow().ok()?;
        let hit = cache.get(token)?;
        if !rules.contains(&hit.rule) {
            return None;
        }
        let rule = self.policy.rules.get(hit.rule)?;
        let set = match &rule.keys {
            Keys::Inline(j) => j.generation,
            Keys::Remote(source) => match env.keys.jwks(*source) {
                KeyState::Ready(j) => j.generation,
                _ => return None,
            },
        };
        if set != hit.set {
            return None;
        }
        let now = (env.now_ms)() / 1000;
        if now.saturating_add(60) < hit.nbf {
            return Some(Err(JwtStatus::NotYetValid));
        }
        if hit.exp != 0 && now > hit.exp.saturating_add(60) {
            return Some(Err(JwtStatus::Expired));
        }
        Some(Ok(hit.clone()))
    }

    fn remember(&self, token: &str, entry: Cached) {
        if let Ok(mut cache) = self.cache.try_borrow_mut() {
            cache.insert(token, entry);
        }
    }

    /// The compiled policy.
    pub fn policy(&self) -> &AuthnPolicy {
        &self.policy
    }

    fn run<'c, R: RequestView>(
        &'c self,
        ex: &mut Exchange<R>,
        state: &mut AuthnState,
        env: &mut Env<'_>,
        after_wait: bool,
    ) -> Verdict<'c> {
        let req = &ex.request;
        let mtls = (self.hands_on || !self.policy.mtls.is_permissive())
            && req
                .property("connection.mtls")
                .is_some_and(|v| v.first() == Some(&1));
        if !mtls
            && self
                .policy
                .mtls
                .refuses_plaintext(|| req.destination_port())
        {
            env.count(self.mtls_denied);
            state.phase = AuthnPhase::Refused;
            return Verdict::Reply(LocalReply::new(403, MTLS_BODY, MTLS_DETAILS));
        }
        let peer = mtls
            .then(|| req.property("connection.uri_san_peer_certificate"))
            .flatten()
            .map(|san| {
                let san = String::from_utf8_lossy(&san).into_owned();
                san.strip_prefix("spiffe://")
                    .map(str::to_owned)
                    .unwrap_or(san)
            });
        // `bypass_cors_preflight: true` (Istio sets it on every rule): a
        // CORS preflight carries no token and is not authenticated.
        let preflight = req.header(":method").as_deref() == Some(b"OPTIONS")
            && req.header("origin").is_some()
            && req
                .header("access-control-request-method")
                .is_some_and(|m| !m.is_empty());
        if preflight {
            state.phase = AuthnPhase::Passed;
            return Verdict::Continue(Mutations {
                compiled: &self.policy.strip,
                computed: Vec::new(),
            });
        }
        let mut identity: Option<Rc<Identity>> = None;
        let mut computed = Vec::new();
        let mut any = false;
        for (location, rules) in &self.policy.locations {
            let Some(token) = location.find(req) else {
                continue;
            };
            any = true;
            match self.check(&token, location, rules, req, env, after_wait) {
                Outcome::Valid(id, ops) => {
                    computed.extend(ops);
                    identity.get_or_insert(id);
                }
                Outcome::Refused(status) => {
                    env.count(self.denied);
                    state.phase = AuthnPhase::Refused;
                    return Verdict::Reply(refusal(status, req));
                }
                Outcome::NeedKeys(source, timeout_ms, refresh) => {
                    state.phase = AuthnPhase::WaitingKeys { source };
                    return Verdict::Pause(Wait::Keys {
                        source,
                        timeout_ms,
                        refresh,
                    });
                }
            }
        }
        if any {
            env.count(self.verified);
        } else {
            env.count(self.no_token);
        }
        // A cached token's identity is shared, not copied, unless the
        // peer's principal must be added to it.
        ex.identity = Some(match (identity, peer) {
            (Some(id), None) => id,
            (Some(id), Some(peer)) => Rc::new(Identity {
                peer_principal: Some(peer),
                ..(*id).clone()
            }),
            (None, None) => Rc::clone(&self.anonymous),
            (None, Some(peer)) => Rc::new(Identity {
                peer_principal: Some(peer),
                ..Identity::default()
            }),
        });
        state.phase = AuthnPhase::Passed;
        Verdict::Continue(Mutations {
            compiled: &self.policy.strip,
            computed,
        })
    }

    fn check(
        &self,
        token: &str,
        location: &Location,
        rules: &[usize],
        req: &impl RequestView,
        env: &mut Env<'_>,
        after_wait: bool,
    ) -> Outcome {
        match self.cached(token, rules, env) {
            Some(Ok(hit)) => {
                let mut ops = removal(hit.rule, &self.policy, location, req);
                ops.extend(hit.outputs.iter().cloned());
                return Outcome::Valid(hit.identity, ops);
            }
            Some(Err(status)) => return Outcome::Refused(status),
            None => {}
        }
        let jwt = match Jwt::parse(token) {
            Ok(jwt) => jwt,
            Err(s) => return Outcome::Refused(s),
        };
        let Some((index, rule)) = rules
            .iter()
            .filter_map(|&i| self.policy.rules.get(i).map(|r| (i, r)))
            .find(|(_, r)| r.issuer.is_empty() || r.issuer == jwt.iss)
        else {
            return Outcome::Refused(JwtStatus::UnknownIssuer);
        };
        if let Err(s) = jwt.check_time((env.now_ms)() / 1000) {
            return Outcome::Refused(s);
        }
        if !jwt.audience_allowed(&rule.audiences) {
            return Outcome::Refused(JwtStatus::AudienceNotAllowed);
        }
        let timeout = |source: usize| {
            self.policy
                .remotes
                .get(source)
                .map_or(5_000, |r| r.timeout_ms)
        };
        let jwks: Rc<Jwks> = match &rule.keys {
            Keys::Inline(j) => Rc::clone(j),
            Keys::Remote(source) => match env.keys.jwks(*source) {
                KeyState::Ready(j) => j,
                KeyState::Failed => return Outcome::Refused(JwtStatus::JwksFetchFailed),
                KeyState::Pending if after_wait => {
                    return Outcome::Refused(JwtStatus::JwksFetchFailed);
                }
                KeyState::Pending => return Outcome::NeedKeys(*source, timeout(*source), false),
            },
        };
        match (verify(&jwt, &jwks, env.crypto), &rule.keys) {
            (Ok(by_host), _) => env.count(if by_host { self.by_host } else { self.in_wasm }),
            // Keys may have rotated: fetch again once, then decide.
            (Err(JwtStatus::KidAlgNotMatched), Keys::Remote(source)) if !after_wait => {
                return Outcome::NeedKeys(*source, timeout(*source), true);
            }
            (Err(s), _) => return Outcome::Refused(s),
        }
        let identity = Rc::new(identity(&jwt));
        let outputs = outputs(&jwt, rule);
        let mut ops = removal(index, &self.policy, location, req);
        ops.extend(outputs.iter().cloned());
        self.remember(
            token,
            Cached {
                rule: index,
                set: jwks.generation,
                nbf: jwt.nbf,
                exp: jwt.exp,
                identity: Rc::clone(&identity),
                outputs,
            },
        );
        Outcome::Valid(identity, ops)
    }
}

fn identity(jwt: &Jwt<'_>) -> Identity {
    Identity {
        peer_principal: None,
        request_principal: Some(format!("{}/{}", jwt.iss, jwt.sub)),
        issuer: Some(jwt.iss.clone()),
        subject: Some(jwt.sub.clone()),
        audiences: jwt.aud.clone(),
        presenter: jwt
            .payload
            .get("azp")
            .and_then(Value::as_str)
            .map(str::to_owned),
        claims: jwt.payload.clone(),
        ..Identity::default()
    }
}

/// The token's removal after it verified (unless forwarded; cookies stay,
/// as in Envoy).
fn removal(
    rule: usize,
    policy: &AuthnPolicy,
    location: &Location,
    req: &impl RequestView,
) -> Vec<HeaderOp> {
    let forward = policy.rules.get(rule).is_some_and(|r| r.forward);
    match location {
        _ if forward => Vec::new(),
        Location::Header { name, .. } => vec![HeaderOp::Remove(name.clone())],
        Location::Param(name) => req
            .header(":path")
            .and_then(|p| without_param(&p, name))
            .map(|path| vec![HeaderOp::Set(":path".into(), path)])
            .unwrap_or_default(),
        Location::Cookie(_) => Vec::new(),
    }
}

/// The payload header and the claim headers of a verified token.
fn outputs(jwt: &Jwt<'_>, rule: &Rule) -> Vec<HeaderOp> {
    let mut ops = Vec::new();
    if let Some(h) = &rule.payload_header {
        ops.push(HeaderOp::Set(h.clone(), jwt.payload_b64.to_owned()));
    }
    for (header, path) in &rule.claims {
        if let Some(v) = claim(&jwt.payload, path).and_then(claim_text) {
            ops.push(HeaderOp::Set(header.clone(), v));
        }
    }
    ops
}

fn claim<'v>(payload: &'v serde_json::Map<String, Value>, path: &[String]) -> Option<&'v Value> {
    let (first, rest) = path.split_first()?;
    let mut v = payload.get(first)?;
    for key in rest {
        v = v.as_object()?.get(key)?;
    }
    Some(v)
}

/// A claim as Envoy writes it to a header (SPEC.md Verified 7): strings as
/// they are, integers in decimal, doubles as `%f`, booleans, and lists or
/// objects as standard padded base64 of their JSON.
fn claim_text(v: &Value) -> Option<String> {
    Some(match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) => format!("{f:.6}"),
            _ => return None,
        },
        Value::Array(_) | Value::Object(_) => {
            base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(v).ok()?)
        }
        Value::Null => return None,
    })
}

/// Envoy's jwt_authn refusal (`filter.cc` `onComplete`; SPEC.md Behaviour 3).
fn refusal(status: JwtStatus, req: &impl RequestView) -> LocalReply<'static> {
    let text = |name: &str| -> String {
        req.header(name)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default()
    };
    let scheme = match req.header("x-forwarded-proto") {
        Some(p) => String::from_utf8_lossy(&p).into_owned(),
        None => text(":scheme"),
    };
    let path: String = text(":path").chars().take(256).collect();
    let realm = format!(
        "Bearer realm=\"{scheme}://{}{path}\", error=\"invalid_token\"",
        text(":authority")
    );
    let mut reply = LocalReply::new(
        status.http_status(),
        status.message().as_bytes(),
        status.details(),
    );
    reply.headers.push(("www-authenticate".into(), realm));
    reply
}

impl Stage for AuthnStage {
    type State = AuthnState;

    fn request<'c, R: RequestView>(
        &'c self,
        ex: &mut Exchange<R>,
        state: &mut AuthnState,
        env: &mut Env<'_>,
    ) -> Verdict<'c> {
        self.run(ex, state, env, false)
    }

    fn wake<'c, R: RequestView>(
        &'c self,
        ex: &mut Exchange<R>,
        state: &mut AuthnState,
        _wake: Wake,
        env: &mut Env<'_>,
    ) -> Verdict<'c> {
        match state.phase {
            // After a timeout, or a fetch that ended without keys, a rule
            // still without keys fails closed: `Jwks remote fetch is failed`.
            AuthnPhase::WaitingKeys { .. } => self.run(ex, state, env, true),
            _ => Verdict::Continue(Mutations::default()),
        }
    }

    fn hands_on_identity(&self) -> bool {
        self.hands_on
    }

    fn key_sources(&self) -> Vec<super::RemoteJwks> {
        self.policy.remotes.clone()
    }

    /// A security stage fails closed when the host cannot give it the
    /// request: nothing could be authenticated.
    fn host_failure() -> Option<LocalReply<'static>> {
        Some(LocalReply::new(
            500,
            b"meshwasm: cannot read the request",
            "meshwasm_host_error",
        ))
    }
}
