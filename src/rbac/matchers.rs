//! The compiled matchers of an RBAC rule, with the semantics of Envoy's RBAC
//! filter as Istio configures it (envoyproxy/envoy
//! `source/extensions/filters/common/rbac/matchers.cc`; istio/istio
//! `pilot/pkg/security/authz/model/generator.go`, `matcher/*.go`): a rule
//! matches when one of its permission clauses and one of its principal
//! clauses match; a clause is an AND of conditions; a condition is an OR of
//! leaves, negated for `not*` fields and `notValues`. Built once at
//! configure time; matching reads the request through [`Facts`] and
//! allocates nothing.
//!
//! A leaf may be unknown (the peer address behind an `x-forwarded-for`;
//! a peer identity the host gave only the first SANs of):
//! the logic is then three-valued (Kleene), and an unknown rule counts as
//! a match for a DENY policy and as no match for an ALLOW policy — never
//! more access than Envoy would give.

use crate::matching::ByteRegex as Regex;
use serde_json::Value;

use super::facts::Facts;
use crate::http::RequestView;

/// An Envoy `StringMatcher` as Istio generates it.
#[derive(Debug, Clone)]
pub(crate) enum StrMatch {
    /// Equal bytes.
    Exact(String),
    /// Starts with.
    Prefix(String),
    /// Ends with.
    Suffix(String),
    /// Equal, ASCII case folded (`hosts`).
    ExactNoCase(String),
    /// Starts with, ASCII case folded.
    PrefixNoCase(String),
    /// Ends with, ASCII case folded.
    SuffixNoCase(String),
    /// Istio's `spiffe://.*<suffix>` regex for `*<suffix>` principals:
    /// starts with the first, ends with the second, no newline between.
    PrefixSuffix(String, String),
    /// Istio's `*`: the regex `.+` — non-empty, without a newline.
    NonEmpty,
    /// A full-match regex over bytes (namespaces, service accounts, trust
    /// domains with a wildcard).
    Regex(Regex),
}

fn ends_with_no_case(v: &[u8], s: &[u8]) -> bool {
    v.len() >= s.len()
        && v.get(v.len() - s.len()..)
            .is_some_and(|t| t.eq_ignore_ascii_case(s))
}

impl StrMatch {
    /// Whether `v` matches.
    pub(crate) fn matches(&self, v: &[u8]) -> bool {
        match self {
            StrMatch::Exact(s) => v == s.as_bytes(),
            StrMatch::Prefix(s) => v.starts_with(s.as_bytes()),
            StrMatch::Suffix(s) => v.ends_with(s.as_bytes()),
            StrMatch::ExactNoCase(s) => v.eq_ignore_ascii_case(s.as_bytes()),
            StrMatch::PrefixNoCase(s) => v
                .get(..s.len())
                .is_some_and(|h| h.eq_ignore_ascii_case(s.as_bytes())),
            StrMatch::SuffixNoCase(s) => ends_with_no_case(v, s.as_bytes()),
            StrMatch::PrefixSuffix(p, s) => {
                v.len() >= p.len() + s.len()
                    && v.starts_with(p.as_bytes())
                    && v.ends_with(s.as_bytes())
                    && v.get(p.len()..v.len() - s.len())
                        .is_some_and(|mid| !mid.contains(&b'\n'))
            }
            StrMatch::NonEmpty => !v.is_empty() && !v.contains(&b'\n'),
            StrMatch::Regex(re) => re.is_match(v),
        }
    }
}

/// An IP block: an address and a prefix length (Envoy `CidrRange`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    addr: std::net::IpAddr,
    len: u8,
}

impl Cidr {
    /// Parses `1.2.3.4`, `1.2.0.0/16`, `::1` or `fd00::/8` as Istio does
    /// (`model/generator.go` `toCidr`).
    pub(crate) fn parse(v: &str) -> Option<Cidr> {
        let (a, bits) = match v.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (v, None),
        };
        let addr: std::net::IpAddr = a.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match bits {
            None => max,
            Some(b) if !b.is_empty() && b.bytes().all(|c| c.is_ascii_digit()) => {
                b.parse::<u8>().ok().filter(|n| *n <= max)?
            }
            Some(_) => return None,
        };
        Some(Cidr { addr, len })
    }

    /// Whether `ip` is in the block.
    pub(crate) fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr::{V4, V6};
        let (a, b, width) = match (self.addr, ip) {
            (V4(a), V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
            (V6(a), V6(b)) => (u128::from(a), u128::from(b), 128),
            _ => return false,
        };
        let shift = width - u32::from(self.len);
        if shift >= 128 {
            return true;
        }
        (a >> shift) == (b >> shift)
    }
}

/// One test of the request (an Envoy RBAC permission or principal leaf).
#[derive(Debug, Clone)]
pub(crate) enum Leaf {
    /// `authenticated.principal_name`: any identity of the peer
    /// certificate (URI SAN, then DNS SAN, then subject) under mTLS.
    Peer(StrMatch),
    /// `direct_remote_ip`: the connection's source address.
    SourceIp(Cidr),
    /// `remote_ip`: the last `x-forwarded-for` entry, else the peer.
    RemoteIp(Cidr),
    /// `destination_ip`.
    DestinationIp(Cidr),
    /// `destination_port`.
    DestinationPort(u32),
    /// `requested_server_name` (empty without TLS).
    Sni(StrMatch),
    /// A header matcher; `None` = `present_match`. Each value of a repeated
    /// header is tested on its own (SPEC.md Verified 1).
    Header(String, Option<StrMatch>),
    /// `url_path`: the normalised path without the query.
    Path(StrMatch),
    /// `uri_template`: the path template's full-match regex.
    PathTemplate(Regex),
    /// The JWT's `iss` and `sub` claims (strings).
    RequestPrincipal(StrMatch, StrMatch),
    /// A JWT claim by path: a string, a string in a list, or a word of a
    /// space-delimited claim.
    Claim(Vec<String>, StrMatch),
    /// Dynamic metadata of another filter (`experimental.envoy.filters.*`),
    /// read as a host property (segments joined by NUL), matched as text.
    Metadata(String, StrMatch),
}

/// Kleene OR: true if one is, unknown if none is but one is unknown.
fn any3(items: impl Iterator<Item = Option<bool>>) -> Option<bool> {
    let mut unknown = false;
    for v in items {
        match v {
            Some(true) => return Some(true),
            None => unknown = true,
            Some(false) => {}
        }
    }
    (!unknown).then_some(false)
}

/// Kleene AND: false if one is, unknown if none is but one is unknown.
fn all3(items: impl Iterator<Item = Option<bool>>) -> Option<bool> {
    any3(items.map(|v| v.map(|b| !b))).map(|b| !b)
}

impl Leaf {
    fn eval<R: RequestView>(&self, f: &Facts<'_, R>) -> Option<bool> {
        match self {
            Leaf::SourceIp(c) => f
                .source_ip()
                .ok()
                .map(|ip| ip.is_some_and(|ip| c.contains(ip))),
            // Without the certificate, a SAN after the first may match.
            Leaf::Peer(_) => {
                let matched = self.matches(f);
                (matched || !f.peer_partial()).then_some(matched)
            }
            _ => Some(self.matches(f)),
        }
    }

    fn matches<R: RequestView>(&self, f: &Facts<'_, R>) -> bool {
        match self {
            Leaf::Peer(m) => f.peer_ids().any(|id| m.matches(id)),
            Leaf::SourceIp(c) => f
                .source_ip()
                .ok()
                .flatten()
                .is_some_and(|ip| c.contains(ip)),
            Leaf::RemoteIp(c) => f.remote_ip().is_some_and(|ip| c.contains(ip)),
            Leaf::DestinationIp(c) => f.destination_ip().is_some_and(|ip| c.contains(ip)),
            Leaf::DestinationPort(p) => f.destination_port() == Some(*p),
            Leaf::Sni(m) => m.matches(f.sni()),
            Leaf::Header(name, m) => f
                .request()
                .any_header_value(name, &mut |v| m.as_ref().is_none_or(|m| m.matches(v)))
                .unwrap_or(false),
            Leaf::Path(m) => f.path().is_some_and(|p| m.matches(p)),
            Leaf::PathTemplate(re) => f.path().is_some_and(|p| re.is_match(p)),
            Leaf::RequestPrincipal(iss, sub) => {
                let text = |k: &str| f.claim(&[k]).and_then(Value::as_str);
                text("iss").is_some_and(|v| iss.matches(v.as_bytes()))
                    && text("sub").is_some_and(|v| sub.matches(v.as_bytes()))
            }
            Leaf::Claim(path, m) => claim_matches(f, path, m),
            Leaf::Metadata(property, m) => f
                .request()
                .property(property)
                .is_some_and(|v| m.matches(&v)),
        }
    }
}

/// Envoy's metadata matcher over the JWT payload as Istio writes it
/// (`metadata_list_matcher` with `use_extended_jwt`): `listMatch.oneOf`
/// over a list's strings, or the string itself; the space-delimited claims
/// of the token's issuer (always `scope` and `permission`) are lists of
/// their words. Booleans, numbers and objects never match.
fn claim_matches<R: RequestView>(f: &Facts<'_, R>, path: &[String], m: &StrMatch) -> bool {
    let Some(v) = f.claim(path) else {
        return false;
    };
    match v {
        Value::String(s) => match path {
            [name] if f.space_delimited(name) => s
                .split(' ')
                .filter(|w| !w.is_empty())
                .any(|w| m.matches(w.as_bytes())),
            _ => m.matches(s.as_bytes()),
        },
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .any(|s| m.matches(s.as_bytes())),
        _ => false,
    }
}

/// A condition: the OR of its leaves, negated for `not*` / `notValues`.
#[derive(Debug, Clone)]
pub(crate) struct Cond {
    pub leaves: Vec<Leaf>,
    pub negate: bool,
}

impl Cond {
    fn eval<R: RequestView>(&self, f: &Facts<'_, R>) -> Option<bool> {
        any3(self.leaves.iter().map(|l| l.eval(f))).map(|b| b != self.negate)
    }

    /// The leaves, for tools that need to know what a rule reads.
    pub(crate) fn leaves(&self) -> &[Leaf] {
        &self.leaves
    }
}

/// An AND of conditions; empty ⇒ matches anything (Envoy `any: true`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Clause(pub Vec<Cond>);

impl Clause {
    fn eval<R: RequestView>(&self, f: &Facts<'_, R>) -> Option<bool> {
        all3(self.0.iter().map(|c| c.eval(f)))
    }
}

/// One Istio rule as an Envoy RBAC policy: named
/// `ns[<ns>]-policy[<name>]-rule[<i>]`.
#[derive(Debug, Clone)]
pub(crate) struct RuleMatcher {
    /// `ns[<ns>]-policy[<name>]-rule[<i>]`.
    pub id: String,
    /// `rbac_access_denied_matched_policy[<id>]`, the reply's details.
    pub details: String,
    /// One `to` each (OR); empty ⇒ the rule never matches (a policy
    /// without rules).
    pub permissions: Vec<Clause>,
    /// One `from` each (OR).
    pub principals: Vec<Clause>,
}

impl RuleMatcher {
    /// Whether the request matches the rule; `unknown` is the answer when
    /// that depends on a fact the host does not give.
    pub(crate) fn matches<R: RequestView>(&self, f: &Facts<'_, R>, unknown: bool) -> bool {
        let perm = any3(self.permissions.iter().map(|c| c.eval(f)));
        let prin = || any3(self.principals.iter().map(|c| c.eval(f)));
        all3(
            [
                perm,
                if perm == Some(false) {
                    Some(false)
                } else {
                    prin()
                },
            ]
            .into_iter(),
        )
        .unwrap_or(unknown)
    }

    /// Every condition of the rule.
    pub(crate) fn conds(&self) -> impl Iterator<Item = &Cond> {
        self.permissions
            .iter()
            .chain(self.principals.iter())
            .flat_map(|c| c.0.iter())
    }
}
