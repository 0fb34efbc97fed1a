//! `AuthorizationPolicy` → [`RbacPolicy`]: Istio's validation
//! (`pkg/config/validation` `ValidateAuthorizationPolicy`), its selection
//! of the policies that apply to the workload
//! (`pilot/pkg/model/policyattachment.go`; SPEC.md §AuthorizationPolicy 3)
//! and its translation into Envoy RBAC policies
//! (`pilot/pkg/security/authz/builder/builder.go`, `model/model.go`): one
//! named policy per rule, `ns[<ns>]-policy[<name>]-rule[<i>]`, in Envoy's
//! order (by name); a policy without rules matches nothing.
//!
//! meshwasm is stricter than Istio's translation, which skips a rule (ALLOW)
//! or a value (DENY, AUDIT) it cannot translate and logs it: anything
//! Istio's validation or translation would refuse refuses the
//! configuration here, with its path. `CUSTOM` is refused too: meshwasm
//! has no external authorizer yet.

use std::collections::BTreeMap;

use super::generator::{Attr, attr_of_key, is_permission, leaf};
use super::matchers::{Clause, Cond, RuleMatcher};
use crate::config::authz::{AuthorizationPolicy, Condition, Operation, Rule, Source};
use crate::config::security::RequestAuthentication;
use crate::config::{ConfigError, Document, PathNormalization, Resource};

/// A policy's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Allow what matches (when any ALLOW policy applies, nothing else).
    Allow,
    /// Deny what matches.
    Deny,
    /// Record what matches; never decide.
    Audit,
}

/// One `AuthorizationPolicy` that applies to the workload, compiled.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its action.
    pub action: Action,
    /// `istio.io/dry-run`: evaluated and recorded, never enforced.
    pub dry_run: bool,
    pub(crate) rules: Vec<RuleMatcher>,
}

impl CompiledPolicy {
    /// The first rule (in Envoy's order) the request matches; a rule that
    /// depends on a fact the host does not give matches a DENY policy only.
    pub(crate) fn first_match<R: crate::http::RequestView>(
        &self,
        f: &super::facts::Facts<'_, R>,
    ) -> Option<&RuleMatcher> {
        let unknown = self.action == Action::Deny;
        self.rules.iter().find(|r| r.matches(f, unknown))
    }
}

/// Every AuthorizationPolicy that applies to the workload, compiled once.
#[derive(Debug, Clone, Default)]
pub struct RbacPolicy {
    pub(crate) policies: Vec<CompiledPolicy>,
    /// Enforced DENY rules as `(policy, rule)`, in Envoy's order (by name).
    pub(crate) deny: Vec<(usize, usize)>,
    /// Enforced ALLOW rules, in Envoy's order.
    pub(crate) allow: Vec<(usize, usize)>,
    /// Whether an enforced ALLOW policy applies (even one without rules).
    pub(crate) has_allow: bool,
    pub(crate) normalization: PathNormalization,
    /// Extra space-delimited claims by issuer (RequestAuthentication
    /// `spaceDelimitedClaims`).
    pub(crate) split_claims: Vec<(String, Vec<String>)>,
    /// Whether any rule reads the path.
    pub(crate) reads_path: bool,
    /// Whether any rule reads the request's identity (request principals,
    /// `request.auth.*` claims): only then is it read from the host.
    pub(crate) reads_identity: bool,
    warnings: Vec<String>,
}

/// Whether `selector` selects the workload's labels (none selects all).
fn selects(
    selector: Option<&crate::config::security::WorkloadSelector>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.is_none_or(|s| s.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// Go's `strconv.ParseBool`, which Istio uses for `istio.io/dry-run`.
fn go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

const DRY_RUN: &str = "istio.io/dry-run";

impl RbacPolicy {
    /// Validates every AuthorizationPolicy of the document and compiles
    /// those that apply to its workload.
    pub fn compile(doc: &Document) -> Result<RbacPolicy, ConfigError> {
        let mut out = RbacPolicy {
            normalization: doc.envoy.path_normalization,
            split_claims: split_claims(doc),
            ..RbacPolicy::default()
        };
        let mut seen: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for ap in &doc.authorization_policies {
            let action = validate(ap)?;
            let ns = doc.namespace_of(ap);
            if let Some(first) = seen.insert((ns, ap.metadata.name.as_str()), ap.index) {
                return Err(ConfigError::new(
                    format!("resources[{}].metadata.name", ap.index),
                    format!(
                        "AuthorizationPolicy {ns}/{} is also resources[{first}]",
                        ap.metadata.name
                    ),
                ));
            }
            if !out.applies(doc, ap) {
                continue;
            }
            let Some(action) = action else {
                return Err(ConfigError::new(
                    format!("{}.action", ap.spec_path()),
                    format!(
                        "CUSTOM (external authorization) is not implemented by meshwasm; \
                         AuthorizationPolicy {ns}/{} applies to this workload and cannot be enforced",
                        ap.metadata.name
                    ),
                ));
            };
            let dry_run = out.dry_run(ap);
            out.policies.push(compile_policy(ap, ns, action, dry_run)?);
        }
        out.order();
        let reads = |wanted: fn(&super::matchers::Leaf) -> bool| {
            out.policies
                .iter()
                .flat_map(|p| &p.rules)
                .any(|r| r.conds().any(|c| c.leaves().iter().any(wanted)))
        };
        use super::matchers::Leaf;
        out.reads_path = reads(|l| matches!(l, Leaf::Path(_) | Leaf::PathTemplate(_)));
        out.reads_identity = reads(|l| matches!(l, Leaf::RequestPrincipal(..) | Leaf::Claim(..)));
        Ok(out)
    }

    /// Non-fatal findings, each naming a JSON path.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The policies that apply, in document order.
    pub fn policies(&self) -> &[CompiledPolicy] {
        &self.policies
    }

    /// The path normalisation level.
    pub fn normalization(&self) -> PathNormalization {
        self.normalization
    }

    /// Envoy's order: each action's rules sorted by name, as the RBAC
    /// filter's policy map iterates them.
    fn order(&mut self) {
        let mut deny = Vec::new();
        let mut allow = Vec::new();
        for (p, policy) in self.policies.iter().enumerate() {
            if policy.dry_run {
                continue;
            }
            let list = match policy.action {
                Action::Deny => &mut deny,
                Action::Allow => {
                    self.has_allow = true;
                    &mut allow
                }
                Action::Audit => continue,
            };
            list.extend((0..policy.rules.len()).map(|r| (p, r)));
        }
        let id = |&(p, r): &(usize, usize)| {
            self.policies
                .get(p)
                .and_then(|p| p.rules.get(r))
                .map(|r| r.id.clone())
        };
        deny.sort_by_key(id);
        allow.sort_by_key(id);
        self.deny = deny;
        self.allow = allow;
    }

    /// Whether the policy applies to the workload (its namespace or the
    /// root namespace, its selector); `targetRef(s)` attach to gateways and
    /// waypoints: ignored with a warning.
    fn applies(&mut self, doc: &Document, ap: &Resource<AuthorizationPolicy>) -> bool {
        let ns = doc.namespace_of(ap);
        if ns != doc.workload.namespace && ns != doc.envoy.root_namespace {
            return false;
        }
        if ap.spec.target_ref.is_some() || !ap.spec.target_refs.is_empty() {
            self.warnings.push(format!(
                "{}.targetRefs: attaches to a gateway or waypoint, not to this workload; ignored",
                ap.spec_path()
            ));
            return false;
        }
        selects(ap.spec.selector.as_ref(), &doc.workload.labels)
    }

    /// `istio.io/dry-run` as Istio reads it (a Go bool; anything else is
    /// enforced, with a warning).
    fn dry_run(&mut self, ap: &Resource<AuthorizationPolicy>) -> bool {
        let Some(v) = ap.metadata.annotations.get(DRY_RUN) else {
            return false;
        };
        go_bool(v).unwrap_or_else(|| {
            self.warnings.push(format!(
                "resources[{}].metadata.annotations.{DRY_RUN}: {v:?} is not a boolean; the policy is enforced",
                ap.index
            ));
            false
        })
    }
}

/// `spaceDelimitedClaims` of the RequestAuthentications that apply, by
/// issuer (SPEC.md §AuthorizationPolicy 7: a claim listed there is
/// matched word by word, as Envoy's jwt_authn writes it to metadata).
fn split_claims(doc: &Document) -> Vec<(String, Vec<String>)> {
    let applies = |ra: &&Resource<RequestAuthentication>| {
        let ns = doc.namespace_of(ra);
        (ns == doc.workload.namespace || ns == doc.envoy.root_namespace)
            && ra.spec.target_ref.is_none()
            && ra.spec.target_refs.is_empty()
            && selects(ra.spec.selector.as_ref(), &doc.workload.labels)
    };
    doc.request_authentications
        .iter()
        .filter(applies)
        .flat_map(|ra| &ra.spec.jwt_rules)
        .filter(|r| !r.space_delimited_claims.is_empty())
        .map(|r| (r.issuer.clone(), r.space_delimited_claims.clone()))
        .collect()
}

/// Istio's checks of one AuthorizationPolicy; its action (`None` for
/// CUSTOM).
fn validate(ap: &Resource<AuthorizationPolicy>) -> Result<Option<Action>, ConfigError> {
    let at = ap.spec_path();
    let spec = &ap.spec;
    let action = match spec.action.as_deref() {
        None | Some("ALLOW") => Some(Action::Allow),
        Some("DENY") => Some(Action::Deny),
        Some("AUDIT") => Some(Action::Audit),
        Some("CUSTOM") => None,
        Some(other) => {
            return Err(ConfigError::new(
                format!("{at}.action"),
                format!("unknown action {other:?}: ALLOW, DENY, AUDIT or CUSTOM"),
            ));
        }
    };
    match (action, &spec.provider) {
        (None, None) => {
            return Err(ConfigError::new(
                format!("{at}.provider"),
                "a CUSTOM policy must name a provider",
            ));
        }
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                format!("{at}.provider"),
                "provider is only allowed with action CUSTOM",
            ));
        }
        _ => {}
    }
    if let Some(sel) = &spec.selector {
        if sel.match_labels.keys().any(String::is_empty) {
            return Err(ConfigError::new(
                format!("{at}.selector.matchLabels"),
                "empty key is not supported in selector",
            ));
        }
        if spec.target_ref.is_some() || !spec.target_refs.is_empty() {
            return Err(ConfigError::new(
                at.as_str(),
                "only one of targetRefs or selector can be set",
            ));
        }
    }
    Ok(action)
}

fn compile_policy(
    ap: &Resource<AuthorizationPolicy>,
    ns: &str,
    action: Action,
    dry_run: bool,
) -> Result<CompiledPolicy, ConfigError> {
    let name = &ap.metadata.name;
    let id = |i: usize| format!("ns[{ns}]-policy[{name}]-rule[{i}]");
    let mut rules = Vec::new();
    for (i, rule) in ap.spec.rules.iter().enumerate() {
        let at = format!("{}.rules[{i}]", ap.spec_path());
        let (permissions, principals) = compile_rule(rule, ns, &at)?;
        rules.push(RuleMatcher {
            details: format!("rbac_access_denied_matched_policy[{}]", id(i)),
            id: id(i),
            permissions,
            principals,
        });
    }
    if rules.is_empty() {
        // Istio's MATCH_NEVER: a policy without rules matches nothing.
        rules.push(RuleMatcher {
            details: format!("rbac_access_denied_matched_policy[{}]", id(0)),
            id: id(0),
            permissions: Vec::new(),
            principals: Vec::new(),
        });
    }
    Ok(CompiledPolicy {
        namespace: ns.to_owned(),
        name: name.clone(),
        action,
        dry_run,
        rules,
    })
}

/// A condition over `values` (OR) or its negation over `not_values`.
fn conds(
    attr: &Attr,
    values: &[String],
    not_values: &[String],
    at_values: &str,
    at_not: &str,
) -> Result<Vec<Cond>, ConfigError> {
    let mut out = Vec::new();
    for (list, at, negate) in [(values, at_values, false), (not_values, at_not, true)] {
        if list.is_empty() {
            continue;
        }
        let leaves = list
            .iter()
            .enumerate()
            .map(|(j, v)| leaf(attr, v, &format!("{at}[{j}]")))
            .collect::<Result<Vec<_>, _>>()?;
        out.push(Cond { leaves, negate });
    }
    Ok(out)
}

/// One rule → (permission clauses, principal clauses), `when` conditions
/// added to every clause of their side (istio `model.New`).
fn compile_rule(
    rule: &Rule,
    policy_ns: &str,
    at: &str,
) -> Result<(Vec<Clause>, Vec<Clause>), ConfigError> {
    let mut base_perm = Vec::new();
    let mut base_prin = Vec::new();
    for (i, c) in rule.when.iter().enumerate() {
        let (attr, cs) = when(c, policy_ns, &format!("{at}.when[{i}]"))?;
        if is_permission(&attr) {
            base_perm.extend(cs);
        } else {
            base_prin.extend(cs);
        }
    }
    let mut principals = Vec::new();
    match &rule.from {
        Some(from) if from.is_empty() => {
            return Err(ConfigError::new(
                format!("{at}.from"),
                "`from` must not be empty",
            ));
        }
        Some(from) => {
            for (k, f) in from.iter().enumerate() {
                let at = format!("{at}.from[{k}].source");
                let source =
                    f.source.as_ref().filter(|s| !s.is_empty()).ok_or_else(|| {
                        ConfigError::new(at.as_str(), "`source` must not be empty")
                    })?;
                let mut clause = source_conds(source, policy_ns, &at)?;
                clause.extend(base_prin.iter().cloned());
                principals.push(Clause(clause));
            }
        }
        None => principals.push(Clause(base_prin)),
    }
    let mut permissions = Vec::new();
    match &rule.to {
        Some(to) if to.is_empty() => {
            return Err(ConfigError::new(
                format!("{at}.to"),
                "`to` must not be empty",
            ));
        }
        Some(to) => {
            for (k, t) in to.iter().enumerate() {
                let at = format!("{at}.to[{k}].operation");
                let op = t
                    .operation
                    .as_ref()
                    .filter(|o| !o.is_empty())
                    .ok_or_else(|| {
                        ConfigError::new(at.as_str(), "`operation` must not be empty")
                    })?;
                let mut clause = operation_conds(op, &at)?;
                clause.extend(base_perm.iter().cloned());
                permissions.push(Clause(clause));
            }
        }
        None => permissions.push(Clause(base_perm)),
    }
    Ok((permissions, principals))
}

fn when(c: &Condition, policy_ns: &str, at: &str) -> Result<(Attr, Vec<Cond>), ConfigError> {
    if c.key.is_empty() {
        return Err(ConfigError::new(
            format!("{at}.key"),
            "`key` must not be empty",
        ));
    }
    let attr =
        attr_of_key(&c.key, policy_ns).map_err(|m| ConfigError::new(format!("{at}.key"), m))?;
    if c.values.is_empty() && c.not_values.is_empty() {
        return Err(ConfigError::new(
            at,
            format!(
                "at least one of values or notValues must be set for key {}",
                c.key
            ),
        ));
    }
    let cs = conds(
        &attr,
        &c.values,
        &c.not_values,
        &format!("{at}.values"),
        &format!("{at}.notValues"),
    )?;
    Ok((attr, cs))
}

fn source_conds(s: &Source, policy_ns: &str, at: &str) -> Result<Vec<Cond>, ConfigError> {
    let has_sa = !s.service_accounts.is_empty() || !s.not_service_accounts.is_empty();
    let has_others = [
        &s.principals,
        &s.not_principals,
        &s.namespaces,
        &s.not_namespaces,
    ]
    .iter()
    .any(|v| !v.is_empty());
    if has_sa && has_others {
        return Err(ConfigError::new(
            format!("{at}.serviceAccounts"),
            "serviceAccounts cannot be set together with principals or namespaces",
        ));
    }
    let fields: [(Attr, &str, &[String], &[String]); 7] = [
        (
            Attr::Principal,
            "principals",
            &s.principals,
            &s.not_principals,
        ),
        (
            Attr::RequestPrincipal,
            "requestPrincipals",
            &s.request_principals,
            &s.not_request_principals,
        ),
        (
            Attr::Namespace,
            "namespaces",
            &s.namespaces,
            &s.not_namespaces,
        ),
        (
            Attr::ServiceAccount(policy_ns.to_owned()),
            "serviceAccounts",
            &s.service_accounts,
            &s.not_service_accounts,
        ),
        (
            Attr::TrustDomain,
            "trustDomains",
            &s.trust_domains,
            &s.not_trust_domains,
        ),
        (Attr::SourceIp, "ipBlocks", &s.ip_blocks, &s.not_ip_blocks),
        (
            Attr::RemoteIp,
            "remoteIpBlocks",
            &s.remote_ip_blocks,
            &s.not_remote_ip_blocks,
        ),
    ];
    fields_conds(&fields, at)
}

fn operation_conds(o: &Operation, at: &str) -> Result<Vec<Cond>, ConfigError> {
    let fields: [(Attr, &str, &[String], &[String]); 4] = [
        (Attr::Host, "hosts", &o.hosts, &o.not_hosts),
        (Attr::Method, "methods", &o.methods, &o.not_methods),
        (Attr::Path, "paths", &o.paths, &o.not_paths),
        (Attr::DestinationPort, "ports", &o.ports, &o.not_ports),
    ];
    fields_conds(&fields, at)
}

fn fields_conds(
    fields: &[(Attr, &str, &[String], &[String])],
    at: &str,
) -> Result<Vec<Cond>, ConfigError> {
    let mut out = Vec::new();
    for (attr, field, values, not_values) in fields {
        let mut not = String::from("not");
        not.extend(field.chars().take(1).flat_map(char::to_uppercase));
        not.push_str(field.get(1..).unwrap_or_default());
        out.extend(conds(
            attr,
            values,
            not_values,
            &format!("{at}.{field}"),
            &format!("{at}.{not}"),
        )?);
    }
    Ok(out)
}
