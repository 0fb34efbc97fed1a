//! VirtualService routing (SPEC.md §VirtualService, §Destinations and
//! weights): pick the virtual host by `:authority`, walk its rules in order
//! (first match wins; `match` entries OR-ed, fields AND-ed), then pick a
//! destination by weight and name its Envoy cluster with the `clusterName`
//! template. [`RouteTable::compile`] validates and precomputes everything;
//! [`RouteTable::decide`] only reads.

mod compile;
mod hosts;

use std::borrow::Cow;

use crate::http::RequestView;
use crate::matching::{HeaderMatcher, StrMatcher};
use crate::rng::Rng;
use crate::verdict::{HeaderOp, LocalReply, Mutations, Verdict};

/// Response details of Envoy's router when no route matches.
pub const ROUTE_NOT_FOUND: &str = "route_not_found";

/// The compiled routing configuration of one filter instance.
#[derive(Debug, Clone)]
pub struct RouteTable {
    cluster_header: String,
    vhosts: Vec<VirtualHost>,
    domains: hosts::DomainIndex,
    warnings: Vec<String>,
}

/// The rules of one VirtualService.
#[derive(Debug, Clone)]
pub struct VirtualHost {
    /// `<namespace>/<name>` of the VirtualService.
    pub name: String,
    /// Rules in declared order.
    pub routes: Vec<Route>,
}

/// One `http[]` rule.
#[derive(Debug, Clone)]
pub struct Route {
    /// The rule's `name`, else `http[<i>]`.
    pub name: String,
    /// Alternatives (OR); empty ⇒ the rule matches every request.
    matches: Vec<RequestMatcher>,
    /// Weighted destinations.
    pub destinations: WeightedClusters,
}

/// Weighted destinations with precomputed cumulative weights.
#[derive(Debug, Clone)]
pub struct WeightedClusters {
    /// Destinations with a non-zero share, in declared order.
    pub targets: Vec<Target>,
    total: u32,
}

/// One destination of a rule.
#[derive(Debug, Clone)]
pub struct Target {
    /// The Envoy cluster name, from the `clusterName` template.
    pub cluster: String,
    /// The subset name (empty without one).
    pub subset: String,
    /// Relative weight.
    pub weight: u32,
    cumulative_end: u32,
}

/// One `match[]` entry: every part must hold.
#[derive(Debug, Clone, Default)]
struct RequestMatcher {
    /// `uri`: exact/regex on the path without query, prefix on the raw path.
    uri: Option<(UriPart, StrMatcher)>,
    /// `headers`, `withoutHeaders`, `method`, `scheme`, `authority`.
    headers: Vec<HeaderMatcher>,
    /// `queryParams`.
    query: Vec<(String, StrMatcher)>,
    /// `port`.
    port: Option<u32>,
}

#[derive(Debug, Clone, Copy)]
enum UriPart {
    PathOnly,
    Raw,
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
    /// Forward to a destination.
    Forward {
        /// The virtual host.
        vhost: &'t VirtualHost,
        /// The rule that matched.
        route: &'t Route,
        /// The destination picked by weight.
        target: &'t Target,
    },
}

impl RouteTable {
    /// Non-fatal findings of compilation, each naming a JSON path.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The header the chosen cluster is written into.
    pub fn cluster_header(&self) -> &str {
        &self.cluster_header
    }

    /// Routes a request. Allocates nothing beyond what the view allocates.
    pub fn decide<'t>(&'t self, req: &impl RequestView, rng: &mut impl Rng) -> Decision<'t> {
        let Some(authority) = req.header(":authority") else {
            return Decision::PassThrough;
        };
        let Some(vhost) = self
            .domains
            .lookup(&authority)
            .and_then(|i| self.vhosts.get(i))
        else {
            return Decision::PassThrough;
        };
        let path = req.header(":path").unwrap_or(Cow::Borrowed(b"/"));
        let Some(route) = vhost.routes.iter().find(|r| r.matches(req, &path)) else {
            return Decision::NoRoute { vhost };
        };
        match route.destinations.pick(rng) {
            Some(target) => Decision::Forward {
                vhost,
                route,
                target,
            },
            None => Decision::NoRoute { vhost },
        }
    }

    /// The verdict for a decision: the cluster header is always removed or
    /// replaced, so a client can never pick its own cluster.
    pub fn verdict<'t>(&'t self, decision: &Decision<'t>) -> Verdict<'t> {
        let header = self.cluster_header.as_str();
        match decision {
            Decision::PassThrough => Verdict::Continue(Mutations {
                request_headers: vec![HeaderOp::Remove(header)],
            }),
            Decision::NoRoute { .. } => Verdict::Reply(LocalReply {
                status: 404,
                body: Cow::Borrowed(""),
                details: ROUTE_NOT_FOUND,
                headers: Vec::new(),
            }),
            Decision::Forward { target, .. } => Verdict::Continue(Mutations {
                request_headers: vec![HeaderOp::Set(
                    header,
                    Cow::Borrowed(target.cluster.as_str()),
                )],
            }),
        }
    }
}

impl Route {
    fn matches(&self, req: &impl RequestView, path: &[u8]) -> bool {
        self.matches.is_empty() || self.matches.iter().any(|m| m.matches(req, path))
    }
}

impl RequestMatcher {
    fn matches(&self, req: &impl RequestView, path: &[u8]) -> bool {
        if let Some(port) = self.port
            && req.destination_port() != Some(port)
        {
            return false;
        }
        if let Some((part, m)) = &self.uri {
            let subject = match part {
                UriPart::Raw => path,
                UriPart::PathOnly => path_without_query(path),
            };
            if !m.matches(subject) {
                return false;
            }
        }
        let headers_ok = self
            .headers
            .iter()
            .all(|h| h.matches(req.header(&h.name).as_deref()));
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

/// The first value of query parameter `name` (raw, as sent); `?k` ⇒ `""`.
fn query_param<'p>(path: &'p [u8], name: &str) -> Option<&'p [u8]> {
    let start = path.iter().position(|&b| b == b'?')? + 1;
    let query = path.get(start..)?;
    let query = query.split(|&b| b == b'#').next().unwrap_or(query);
    query.split(|&b| b == b'&').find_map(|pair| {
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (pair.get(..eq)?, pair.get(eq + 1..)?),
            None => (pair, &b""[..]),
        };
        (k == name.as_bytes()).then_some(v)
    })
}

impl WeightedClusters {
    /// Picks a destination: `rng.below(total)` falls in one cumulative range.
    pub fn pick(&self, rng: &mut impl Rng) -> Option<&Target> {
        match self.targets.as_slice() {
            [only] => Some(only),
            targets => {
                let draw = rng.below(self.total);
                targets.iter().find(|t| draw < t.cumulative_end)
            }
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
