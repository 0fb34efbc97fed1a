//! VirtualService routing (SPEC.md §VirtualService, §Destinations and
//! weights, §timeouts and retries): pick the virtual host by `:authority`,
//! walk its rules in order (first match wins; `match` entries OR-ed, fields
//! AND-ed), pick a destination by weight — or stickily per user — and turn
//! it into header changes: the Envoy cluster in `clusterHeader`, the
//! router's timeout and retry headers, the route's header operations.
//! [`RouteTable::compile`] validates and precomputes everything, so
//! [`RouteTable::decide`] and [`RouteTable::verdict`] only read: on a route
//! without a URI rewrite they allocate nothing.

pub mod actions;
mod checks;
mod compile;
pub(crate) mod hosts;
pub mod stage;
pub mod sticky;

use std::borrow::Cow;

use crate::http::RequestView;
use crate::matching::{HeaderMatcher, StrMatcher};
use crate::rng::Rng;
use crate::verdict::{HeaderOp, LocalReply, Mutations, Verdict};
use actions::{DirectResponse, Redirect};
use sticky::Sticky;

/// Response details of Envoy's router when no route matches.
pub const ROUTE_NOT_FOUND: &str = "route_not_found";
/// Response details of a redirect or direct response.
pub const DIRECT_RESPONSE: &str = "direct_response";

/// The compiled routing configuration of one filter instance.
#[derive(Debug, Clone)]
pub struct RouteTable {
    /// Removal of every header the filter owns (pass-through requests).
    pass_through: Vec<HeaderOp>,
    vhosts: Vec<VirtualHost>,
    domains: hosts::DomainIndex,
    /// Target ids → (vhost, route, target) indices.
    targets: Vec<(usize, usize, usize)>,
    warnings: Vec<String>,
}

/// The rules of one VirtualService.
#[derive(Debug, Clone)]
pub struct VirtualHost {
    /// `<namespace>/<name>` of the VirtualService.
    pub name: String,
    /// Rules in declared order.
    pub routes: Vec<Route>,
    /// Sticky A/B settings from the annotations.
    pub sticky: Option<Sticky>,
    /// Whether any rule has a `fault` that can inject something.
    pub has_fault: bool,
    /// The request ports (`destination.port`) on which some rule can
    /// apply; `None`: every port. On another port the VirtualService is
    /// absent, as Istio builds no virtual host for it on that listener.
    ports: Option<Vec<u32>>,
}

/// One `http[]` rule.
#[derive(Debug, Clone)]
pub struct Route {
    /// The rule's `name`, else `http[<i>]`.
    pub name: String,
    /// Alternatives (OR); empty ⇒ the rule matches every request.
    matches: Vec<RequestMatcher>,
    /// What the rule does.
    pub action: Action,
    /// The rule's `fault`, applied by the fault stage.
    pub fault: Option<crate::fault::Fault>,
}

/// What a matching rule does.
#[derive(Debug, Clone)]
pub enum Action {
    /// Forward to weighted destinations.
    Forward(Forward),
    /// Answer with a redirect.
    Redirect(Redirect),
    /// Answer with a fixed response.
    Direct(DirectResponse),
}

/// Forwarding: weighted destinations and the rewrite.
#[derive(Debug, Clone)]
pub struct Forward {
    /// Destinations with a non-zero share, in declared order.
    pub targets: Vec<Target>,
    total: u32,
    sticky: bool,
    rewrite_uri: Option<String>,
}

/// One destination of a rule, with every header change precompiled.
#[derive(Debug, Clone)]
pub struct Target {
    /// Global id of the target (metrics index).
    pub id: usize,
    /// The destination host's FQDN (DestinationRules are found by it).
    pub host: String,
    /// The Envoy cluster name, from the `clusterName` template.
    pub cluster: String,
    /// The subset name (empty without one).
    pub subset: String,
    /// Relative weight.
    pub weight: u32,
    cumulative_end: u32,
    /// Request header changes: owned headers dropped, cluster, variant,
    /// timeout and retries, destination then route `headers.request`.
    pub request_ops: Vec<HeaderOp>,
    /// Request changes after the first whose value is computed from the
    /// request (Envoy's `%REQ(…)%`, `%DOWNSTREAM_REMOTE_ADDRESS%`, …),
    /// evaluated per request; empty for most targets.
    pub request_tail: Vec<actions::ReqOp>,
    /// Response header changes: destination then route `headers.response`.
    pub response_ops: Vec<HeaderOp>,
}

/// One `match[]` entry: every part must hold.
#[derive(Debug, Clone, Default)]
struct RequestMatcher {
    /// `uri`: exact, prefix or regex on the path without its query
    /// (Envoy 1.40: a prefix holding `?` never matches).
    uri: Option<StrMatcher>,
    /// `headers`, `withoutHeaders`, `method`, `scheme`, `authority`.
    headers: Vec<HeaderMatcher>,
    /// `queryParams`.
    query: Vec<(String, StrMatcher)>,
    /// `port`.
    port: Option<u32>,
    /// What `rewrite.uri` replaces: the `uri.prefix`, `/` without a uri
    /// match, `None` (the whole path) for exact and regex matches.
    prefix: Option<String>,
}

/// Which rule of which VirtualService a request matched, by index: plain
/// data that a stream keeps across waits and that every stage acting on
/// the rule shares (the fault and route stages agree by construction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleMatch {
    /// No VirtualService serves the authority.
    PassThrough,
    /// The VirtualService `vhost` serves it, but no rule matched.
    NoRoute {
        /// Index of the virtual host.
        vhost: usize,
    },
    /// Rule `route` of `vhost` matched, through match entry `entry`
    /// (`None` for a rule without `match`).
    Matched {
        /// Index of the virtual host.
        vhost: usize,
        /// Index of the rule.
        route: usize,
        /// Index of the matching entry.
        entry: Option<usize>,
    },
}

/// What routing decided for a request.
#[derive(Debug, Clone, Copy)]
pub enum Decision<'t> {
    /// No VirtualService serves the authority: the request passes untouched.
    PassThrough,
    /// A VirtualService serves the authority but no rule matched.
    NoRoute {
        /// The virtual host.
        vhost: &'t VirtualHost,
    },
    /// A rule matched.
    Matched {
        /// The virtual host.
        vhost: &'t VirtualHost,
        /// The rule.
        route: &'t Route,
        /// What `rewrite.uri` replaces: the matched `uri.prefix` (`/` when
        /// the entry had no uri match), or the whole path (`None`) after an
        /// exact or regex uri match.
        prefix: Option<&'t str>,
        /// The destination, when the rule forwards.
        target: Option<&'t Target>,
    },
}

impl RouteTable {
    /// Non-fatal findings of compilation, each naming a JSON path.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Every target, by id, with a stat-safe name `<ns>.<vs>.<route>.<subset>`.
    pub fn target_names(&self) -> impl Iterator<Item = String> + '_ {
        self.targets.iter().map(|&(v, r, t)| {
            let vhost = self.vhosts.get(v);
            let route = vhost.and_then(|vh| vh.routes.get(r));
            let target = route.and_then(|rt| match &rt.action {
                Action::Forward(f) => f.targets.get(t),
                _ => None,
            });
            let safe = crate::pipeline::stat_safe;
            format!(
                "{}.{}.{}",
                vhost.map_or(String::new(), |v| v
                    .name
                    .split('/')
                    .map(safe)
                    .collect::<Vec<_>>()
                    .join(".")),
                route.map_or(String::new(), |r| safe(&r.name)),
                target.map_or(String::new(), |t| if t.subset.is_empty() {
                    "default".into()
                } else {
                    safe(&t.subset)
                }),
            )
        })
    }

    /// How many targets (destinations of forwarding rules) there are; ids
    /// run from 0 to this.
    pub fn target_count(&self) -> usize {
        self.targets.len()
    }

    /// The target with id `id`.
    pub fn target(&self, id: usize) -> Option<&Target> {
        let &(v, r, t) = self.targets.get(id)?;
        match &self.vhosts.get(v)?.routes.get(r)?.action {
            Action::Forward(f) => f.targets.get(t),
            _ => None,
        }
    }

    /// The virtual host serving a request's `:authority`, by index.
    pub fn vhost_index(&self, req: &impl RequestView) -> Option<usize> {
        self.domains.lookup(&req.header(":authority")?)
    }

    /// The virtual host with index `v`.
    pub fn vhost(&self, v: usize) -> Option<&VirtualHost> {
        self.vhosts.get(v)
    }

    /// Which rule serves a request (no destination picked yet).
    /// Allocates nothing beyond what the view allocates.
    pub fn rule_match(&self, req: &impl RequestView) -> RuleMatch {
        let Some(authority) = req.header(":authority") else {
            return RuleMatch::PassThrough;
        };
        let Some((v, vhost)) = self
            .domains
            .lookup(&authority)
            .and_then(|i| self.vhosts.get(i).map(|vh| (i, vh)))
        else {
            return RuleMatch::PassThrough;
        };
        if let Some(ports) = &vhost.ports
            && !req.destination_port().is_some_and(|p| ports.contains(&p))
        {
            return RuleMatch::PassThrough;
        }
        let path = req.header(":path").unwrap_or(Cow::Borrowed(b"/"));
        vhost
            .routes
            .iter()
            .enumerate()
            .find_map(|(r, route)| {
                route.matching(req, &path).map(|entry| RuleMatch::Matched {
                    vhost: v,
                    route: r,
                    entry,
                })
            })
            .unwrap_or(RuleMatch::NoRoute { vhost: v })
    }

    /// The rule a match names, if it names one.
    pub fn rule(&self, m: RuleMatch) -> Option<&Route> {
        match m {
            RuleMatch::Matched { vhost, route, .. } => self.vhosts.get(vhost)?.routes.get(route),
            _ => None,
        }
    }

    /// The decision for a matched rule: resolves the indices and picks the
    /// destination (weighted, or sticky per user).
    pub fn decision<'t>(
        &'t self,
        m: RuleMatch,
        req: &impl RequestView,
        rng: &mut (impl Rng + ?Sized),
    ) -> Decision<'t> {
        self.decision_by(m, |vhost, f| match (&vhost.sticky, f.sticky) {
            (Some(sticky), true) => f.by_bucket(sticky.bucket(req) * f.total / 100),
            _ => f.pick(rng),
        })
    }

    /// The decision for a matched rule whose destination another stage
    /// chose (target id `chosen`, a destination of that rule).
    pub fn decision_to(&self, m: RuleMatch, chosen: usize) -> Decision<'_> {
        self.decision_by(m, |_, f| f.targets.iter().find(|t| t.id == chosen))
    }

    fn decision_by<'t>(
        &'t self,
        m: RuleMatch,
        pick: impl FnOnce(&'t VirtualHost, &'t Forward) -> Option<&'t Target>,
    ) -> Decision<'t> {
        let (v, r, entry) = match m {
            RuleMatch::PassThrough => return Decision::PassThrough,
            RuleMatch::NoRoute { vhost } => {
                return match self.vhosts.get(vhost) {
                    Some(vhost) => Decision::NoRoute { vhost },
                    None => Decision::PassThrough,
                };
            }
            RuleMatch::Matched {
                vhost,
                route,
                entry,
            } => (vhost, route, entry),
        };
        let Some(vhost) = self.vhosts.get(v) else {
            return Decision::PassThrough;
        };
        let Some(route) = vhost.routes.get(r) else {
            return Decision::NoRoute { vhost };
        };
        let target = match &route.action {
            Action::Forward(f) => pick(vhost, f),
            _ => None,
        };
        let prefix = match entry.and_then(|e| route.matches.get(e)) {
            Some(m) => m.prefix.as_deref(),
            None => Some("/"),
        };
        Decision::Matched {
            vhost,
            route,
            prefix,
            target,
        }
    }

    /// Routes a request: [`RouteTable::rule_match`] then
    /// [`RouteTable::decision`]. Allocates nothing beyond what the view
    /// allocates.
    pub fn decide<'t>(&'t self, req: &impl RequestView, rng: &mut impl Rng) -> Decision<'t> {
        self.decision(self.rule_match(req), req, rng)
    }

    /// The verdict for a decision: headers the filter owns are always
    /// removed or replaced, so a client never picks its own cluster,
    /// variant, timeout or retries.
    pub fn verdict<'t>(&'t self, decision: &Decision<'t>, req: &impl RequestView) -> Verdict<'t> {
        match decision {
            Decision::PassThrough => Verdict::Continue(Mutations {
                compiled: &self.pass_through,
                computed: Vec::new(),
            }),
            Decision::NoRoute { .. } => Verdict::Reply(LocalReply::new(404, b"", ROUTE_NOT_FOUND)),
            Decision::Matched {
                route,
                prefix,
                target,
                ..
            } => match (&route.action, target) {
                (Action::Forward(f), Some(t)) => {
                    // Allocates only for a target with computed header
                    // values or a URI rewrite.
                    let mut computed: Vec<HeaderOp> = t
                        .request_tail
                        .iter()
                        .filter_map(|op| op.expand(req))
                        .collect();
                    if let Some(to) = &f.rewrite_uri {
                        computed.extend(rewrite(req, *prefix, to));
                    }
                    Verdict::Continue(Mutations {
                        compiled: &t.request_ops,
                        computed,
                    })
                }
                (Action::Forward(_), None) => {
                    Verdict::Reply(LocalReply::new(404, b"", ROUTE_NOT_FOUND))
                }
                (Action::Redirect(r), _) => {
                    let h = |n: &str| req.header(n).map(|v| v.into_owned()).unwrap_or_default();
                    let location =
                        r.location(&h(":scheme"), &h(":authority"), &h(":path"), *prefix);
                    let mut reply = LocalReply::new(r.status, b"", DIRECT_RESPONSE);
                    reply.headers.push(("location".into(), location));
                    Verdict::Reply(reply)
                }
                (Action::Direct(d), _) => {
                    Verdict::Reply(LocalReply::new(d.status, &d.body, DIRECT_RESPONSE))
                }
            },
        }
    }
}

/// `rewrite.uri`: replaces the matched prefix, or the whole path (query
/// kept) when `prefix` is `None` — Envoy's `prefix_rewrite` on a `prefix`
/// or `path` match; Istio emits `prefix: "/"` for an entry without uri.
fn rewrite(req: &impl RequestView, prefix: Option<&str>, to: &str) -> Option<HeaderOp> {
    let path = req.header(":path")?;
    let head = prefix.and_then(|p| {
        path.get(..p.len())
            .filter(|h| h.eq_ignore_ascii_case(p.as_bytes()))
    });
    let rest = match head {
        Some(head) => path.get(head.len()..).unwrap_or_default(),
        None => {
            let end = path.iter().position(|&b| b == b'?').unwrap_or(path.len());
            path.get(end..).unwrap_or_default()
        }
    };
    Some(HeaderOp::Set(
        ":path".into(),
        format!("{to}{}", String::from_utf8_lossy(rest)),
    ))
}

impl Route {
    /// Whether no match entry of the rule applies to this workload.
    fn never_matches(&self) -> bool {
        !self.matches.is_empty() && self.matches.iter().all(|m| m.port == Some(0))
    }

    /// `Some(index of the entry)` when the rule matches (`Some(None)` for
    /// a rule without `match`).
    fn matching(&self, req: &impl RequestView, path: &[u8]) -> Option<Option<usize>> {
        if self.matches.is_empty() {
            return Some(None);
        }
        self.matches
            .iter()
            .position(|m| m.matches(req, path))
            .map(Some)
    }
}

impl RequestMatcher {
    fn matches(&self, req: &impl RequestView, path: &[u8]) -> bool {
        if let Some(port) = self.port
            && req.destination_port() != Some(port)
        {
            return false;
        }
        if let Some(m) = &self.uri
            && !m.matches(path_without_query(path))
        {
            return false;
        }
        let headers_ok = self.headers.iter().all(|h| h.matches_request(req));
        headers_ok
            && self
                .query
                .iter()
                .all(|(name, m)| query_param(path, name).is_some_and(|v| m.matches(v)))
    }
}

/// The path up to `?` or `#`.
fn path_without_query(path: &[u8]) -> &[u8] {
    let end = path
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(path.len());
    path.get(..end).unwrap_or(path)
}

/// The first value of query parameter `name` (raw, as sent, like Envoy's
/// `parseQueryString`); `?k` ⇒ `""`.
fn query_param<'p>(path: &'p [u8], name: &str) -> Option<&'p [u8]> {
    crate::http::query_pairs(path).find_map(|(k, v)| (k == name.as_bytes()).then_some(v))
}

impl Forward {
    /// Picks a destination: `rng.below(total)` falls in one cumulative range.
    pub fn pick(&self, rng: &mut (impl Rng + ?Sized)) -> Option<&Target> {
        match self.targets.as_slice() {
            [only] => Some(only),
            _ => self.by_bucket(rng.below(self.total)),
        }
    }

    /// The destination whose cumulative range holds `bucket` in `0..total`.
    pub fn by_bucket(&self, bucket: u32) -> Option<&Target> {
        self.targets.iter().find(|t| bucket < t.cumulative_end)
    }

    /// Sum of the weights.
    pub fn total(&self) -> u32 {
        self.total
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_actions;
#[cfg(test)]
mod tests_native;
