//! The RBAC stage: the path normalised (or refused with 400), then the
//! policies in Istio's order (SPEC.md §AuthorizationPolicy 1): AUDIT and
//! dry-run policies recorded, DENY (any match denies), ALLOW (when one
//! applies, only a match allows). A denial is Envoy's RBAC filter's reply:
//! 403, `RBAC: access denied`, details
//! `rbac_access_denied_matched_policy[<rule>]` or `[none]` (Envoy turns it
//! into `grpc-status: 7` for a gRPC request).

use std::rc::Rc;

use super::compile::{Action, RbacPolicy};
use super::facts::Facts;
use super::path;
use crate::http::RequestView;
use crate::pipeline::{Env, Exchange, MetricId, Metrics, Stage};
use crate::verdict::{HeaderOp, LocalReply, Mutations, Verdict};

/// Body of a denial (Envoy `rbac_filter.cc`).
pub const DENIED_BODY: &[u8] = b"RBAC: access denied";
/// Details of a denial for want of a matching ALLOW rule.
pub const DENIED_NONE: &str = "rbac_access_denied_matched_policy[none]";
/// Details of a path Envoy's HTTP connection manager would refuse.
pub const PATH_REJECTED: &str = "path_normalization_failed";

/// Where a stream is in the RBAC stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RbacPhase {
    /// Nothing decided yet.
    #[default]
    Start,
    /// Allowed.
    Allowed,
    /// Denied (403).
    Denied,
    /// The path is malformed (400).
    Rejected,
}

/// Per-stream state of the RBAC stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RbacState {
    /// Where the stream is.
    pub phase: RbacPhase,
}

/// The counters of one policy, by what it can do.
#[derive(Debug, Clone, Copy)]
enum Counters {
    Allow { allowed: MetricId, denied: MetricId },
    Deny { denied: MetricId },
    Audit { audited: MetricId },
    DryRun { allowed: MetricId, denied: MetricId },
}

/// The RBAC stage.
#[derive(Debug, Clone)]
pub struct RbacStage {
    policy: Rc<RbacPolicy>,
    counters: Vec<Counters>,
    allowed: MetricId,
    denied: MetricId,
    rejected: MetricId,
    log: Option<fn(&str)>,
}

impl RbacStage {
    /// The stage over a compiled policy. Registers
    /// `meshwasm.rbac.{allowed,denied,path_rejected}` and, per policy
    /// `meshwasm.rbac.<ns>.<policy>.`: `allowed` and `denied` (ALLOW),
    /// `denied` (DENY), `audited` (AUDIT), `dry_run_allowed` and
    /// `dry_run_denied` (dry-run).
    pub fn new(policy: Rc<RbacPolicy>, metrics: &mut Metrics) -> Self {
        let counters = policy
            .policies()
            .iter()
            .map(|p| {
                let mut c = |what: &str| {
                    metrics.counter(format!("meshwasm.rbac.{}.{}.{what}", p.namespace, p.name))
                };
                match (p.action, p.dry_run) {
                    (Action::Audit, _) => Counters::Audit {
                        audited: c("audited"),
                    },
                    (_, true) => Counters::DryRun {
                        allowed: c("dry_run_allowed"),
                        denied: c("dry_run_denied"),
                    },
                    (Action::Allow, false) => Counters::Allow {
                        allowed: c("allowed"),
                        denied: c("denied"),
                    },
                    (Action::Deny, false) => Counters::Deny {
                        denied: c("denied"),
                    },
                }
            })
            .collect();
        Self {
            counters,
            allowed: metrics.counter("meshwasm.rbac.allowed"),
            denied: metrics.counter("meshwasm.rbac.denied"),
            rejected: metrics.counter("meshwasm.rbac.path_rejected"),
            policy,
            log: None,
        }
    }

    /// Where the stage logs a denial and a dry-run policy's would-be
    /// denial (once per request, at info; the filter passes the host log).
    #[must_use]
    pub fn with_log(mut self, log: fn(&str)) -> Self {
        self.log = Some(log);
        self
    }

    /// The compiled policy.
    pub fn policy(&self) -> &RbacPolicy {
        &self.policy
    }

    /// AUDIT and dry-run policies: counted, and one log line when a dry-run
    /// policy would deny (Envoy's shadow engines: dry-run DENY policies
    /// deny what one matches; dry-run ALLOW policies deny what none
    /// matches).
    fn record<R: RequestView>(&self, f: &Facts<'_, R>, env: &mut Env<'_>, method: &[u8]) {
        let mut would_deny: Option<&str> = None;
        let (mut dry_allow, mut dry_allowed) = (false, false);
        for (policy, counters) in self.policy.policies().iter().zip(&self.counters) {
            match *counters {
                Counters::Audit { audited } if policy.first_match(f).is_some() => {
                    env.count(audited);
                }
                Counters::DryRun { allowed, denied } => {
                    let hit = policy.first_match(f);
                    let deny = match policy.action {
                        Action::Deny => hit.is_some(),
                        _ => {
                            dry_allow = true;
                            dry_allowed |= hit.is_some();
                            hit.is_none()
                        }
                    };
                    env.count(if deny { denied } else { allowed });
                    if let (Action::Deny, Some(rule)) = (policy.action, hit) {
                        would_deny.get_or_insert(&rule.id);
                    }
                }
                _ => {}
            }
        }
        if dry_allow && !dry_allowed {
            would_deny.get_or_insert("none");
        }
        if let (Some(id), Some(log)) = (would_deny, self.log) {
            log(&format!(
                "dry-run: {} would be denied by {id}",
                String::from_utf8_lossy(method)
            ));
        }
    }

    fn deny<'c>(&self, env: &mut Env<'_>, details: &'c str, method: &[u8]) -> Verdict<'c> {
        env.count(self.denied);
        if let Some(log) = self.log {
            log(&format!(
                "denied {}: {details}",
                String::from_utf8_lossy(method)
            ));
        }
        Verdict::Reply(LocalReply::new(403, DENIED_BODY, details))
    }
}

impl Stage for RbacStage {
    type State = RbacState;

    fn reads_identity(&self) -> bool {
        self.policy.reads_identity
    }

    fn request<'c, R: RequestView>(
        &'c self,
        ex: &mut Exchange<R>,
        state: &mut RbacState,
        env: &mut Env<'_>,
    ) -> Verdict<'c> {
        let p = &*self.policy;
        let raw = ex.request.header(":path");
        let normalized = match raw
            .as_deref()
            .map(|r| path::normalize(p.normalization, r))
            .transpose()
        {
            Ok(n) => n,
            Err(path::Malformed) => {
                env.count(self.rejected);
                state.phase = RbacPhase::Rejected;
                return Verdict::Reply(LocalReply::new(400, b"", PATH_REJECTED));
            }
        };
        let rewrite = match &normalized {
            Some(std::borrow::Cow::Owned(v)) => Some(HeaderOp::Set(
                ":path".into(),
                String::from_utf8_lossy(v).into_owned(),
            )),
            _ => None,
        };
        let matching = normalized
            .as_deref()
            .filter(|_| p.reads_path)
            .map(|n| path::for_matching(n, path::merges(p.normalization)));
        let identity = ex.identity.as_deref();
        let issuer = identity
            .and_then(|i| i.claims.get("iss"))
            .and_then(serde_json::Value::as_str);
        let split = p
            .split_claims
            .iter()
            .find(|(iss, _)| Some(iss.as_str()) == issuer)
            .map_or(&[][..], |(_, c)| c.as_slice());
        let f = Facts::new(&ex.request, matching.as_deref(), identity, split);
        let method = ex.request.header(":method").unwrap_or_default();
        self.record(&f, env, &method);
        let rule_at = |&(pi, ri): &(usize, usize)| {
            p.policies
                .get(pi)
                .and_then(|x| x.rules.get(ri))
                .map(|r| (pi, r))
        };
        if let Some((pi, rule)) = p
            .deny
            .iter()
            .filter_map(rule_at)
            .find(|(_, r)| r.matches(&f, true))
        {
            if let Some(Counters::Deny { denied }) = self.counters.get(pi) {
                env.count(*denied);
            }
            state.phase = RbacPhase::Denied;
            return self.deny(env, &rule.details, &method);
        }
        if p.has_allow {
            match p
                .allow
                .iter()
                .filter_map(rule_at)
                .find(|(_, r)| r.matches(&f, false))
            {
                Some((pi, _)) => {
                    if let Some(Counters::Allow { allowed, .. }) = self.counters.get(pi) {
                        env.count(*allowed);
                    }
                }
                None => {
                    for c in &self.counters {
                        if let Counters::Allow { denied, .. } = c {
                            env.count(*denied);
                        }
                    }
                    state.phase = RbacPhase::Denied;
                    return self.deny(env, DENIED_NONE, &method);
                }
            }
        }
        env.count(self.allowed);
        state.phase = RbacPhase::Allowed;
        Verdict::Continue(Mutations {
            compiled: &[],
            computed: rewrite.into_iter().collect(),
        })
    }

    /// A security stage fails closed when the host cannot give it the
    /// request: nothing could be authorised.
    fn host_failure() -> Option<LocalReply<'static>> {
        Some(LocalReply::new(
            500,
            b"meshwasm: cannot read the request",
            "meshwasm_host_error",
        ))
    }
}
