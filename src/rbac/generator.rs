//! One Istio field or `when` key → its matchers, as istio/istio
//! `pilot/pkg/security/authz/model/generator.go` and `matcher/*.go` build
//! them (SPEC.md §AuthorizationPolicy 4–7, §PeerAuthentication 5), with
//! Istio's validation (`pkg/config/security/security.go`
//! `ValidateAttribute`, `CheckValidPathTemplate`): a value Istio or Envoy
//! would refuse is a [`ConfigError`] naming its path.

use crate::matching::ByteRegex as Regex;

use super::matchers::{Cidr, Leaf, StrMatch};
use crate::config::ConfigError;
use crate::matching::full_match_regex;

const SPIFFE: &str = "spiffe://";

/// What kind of attribute a field or key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attr {
    /// `principals`, `source.principal`.
    Principal,
    /// `requestPrincipals`, `request.auth.principal`.
    RequestPrincipal,
    /// `namespaces`, `source.namespace`.
    Namespace,
    /// `serviceAccounts`, `source.serviceAccount` (policy namespace).
    ServiceAccount(String),
    /// `trustDomains`, `source.trustDomain`.
    TrustDomain,
    /// `ipBlocks`, `source.ip`.
    SourceIp,
    /// `remoteIpBlocks`, `remote.ip`.
    RemoteIp,
    /// `destination.ip`.
    DestinationIp,
    /// `ports`, `destination.port`.
    DestinationPort,
    /// `connection.sni`.
    Sni,
    /// `hosts` (`:authority`, case-insensitive).
    Host,
    /// `methods` (`:method`).
    Method,
    /// `paths`.
    Path,
    /// `request.headers[<name>]` (lower-case name).
    Header(String),
    /// `request.auth.claims[a][b]`, `audiences` (`aud`), `presenter` (`azp`).
    Claim(Vec<String>),
    /// `experimental.envoy.filters.<filter>[<key>]`: the property path.
    Metadata(String),
}

/// Whether a condition on `attr` belongs to the permissions (`to`) of a
/// rule rather than its principals (`from`), as Istio sorts `when` keys.
pub(crate) fn is_permission(attr: &Attr) -> bool {
    matches!(
        attr,
        Attr::DestinationIp
            | Attr::DestinationPort
            | Attr::Sni
            | Attr::Host
            | Attr::Method
            | Attr::Path
            | Attr::Metadata(_)
    )
}

/// The bracketed name of `request.headers[x]`-style keys.
fn bracketed(rest: &str) -> Option<&str> {
    rest.strip_prefix('[')?
        .strip_suffix(']')
        .filter(|n| !n.is_empty())
}

/// `[a][b]` → `["a", "b"]` (istio `extractNameInNestedBrackets`); a single
/// `[a.b]` or anything else is one name.
fn nested(rest: &str) -> Option<Vec<String>> {
    let mut names = Vec::new();
    let mut s = rest;
    while !s.is_empty() {
        let Some(inner) = s.strip_prefix('[') else {
            return bracketed(rest).map(|n| vec![n.to_owned()]);
        };
        let Some(end) = inner
            .find(['[', ']'])
            .filter(|e| inner.get(*e..*e + 1) == Some("]"))
        else {
            return bracketed(rest).map(|n| vec![n.to_owned()]);
        };
        names.push(inner.get(..end)?.to_owned());
        s = inner.get(end + 1..)?;
    }
    (!names.is_empty() && names.iter().all(|n| !n.is_empty())).then_some(names)
}

/// The attribute of a `when` key (SPEC.md §AuthorizationPolicy 7); an
/// unknown key is refused.
pub(crate) fn attr_of_key(key: &str, policy_ns: &str) -> Result<Attr, String> {
    let bad = || format!("{key:?} is not of the form <attribute>[<name>]");
    Ok(match key {
        "source.ip" => Attr::SourceIp,
        "remote.ip" => Attr::RemoteIp,
        "source.namespace" => Attr::Namespace,
        "source.principal" => Attr::Principal,
        "source.serviceAccount" => Attr::ServiceAccount(policy_ns.to_owned()),
        "source.trustDomain" => Attr::TrustDomain,
        "request.auth.principal" => Attr::RequestPrincipal,
        "request.auth.audiences" => Attr::Claim(vec!["aud".into()]),
        "request.auth.presenter" => Attr::Claim(vec!["azp".into()]),
        "destination.ip" => Attr::DestinationIp,
        "destination.port" => Attr::DestinationPort,
        "connection.sni" => Attr::Sni,
        _ => {
            if let Some(rest) = key.strip_prefix("request.headers") {
                let name = bracketed(rest).ok_or_else(bad)?;
                return Ok(Attr::Header(name.to_ascii_lowercase()));
            }
            if let Some(rest) = key.strip_prefix("request.auth.claims") {
                return nested(rest).map(Attr::Claim).ok_or_else(bad);
            }
            if let Some(k) = key.strip_prefix("experimental.")
                && k.starts_with("envoy.filters.")
            {
                let (filter, name) = k
                    .strip_suffix(']')
                    .and_then(|k| k.split_once('['))
                    .filter(|(f, n)| !f.is_empty() && !n.is_empty())
                    .ok_or_else(bad)?;
                return Ok(Attr::Metadata(format!(
                    "metadata\0filter_metadata\0{filter}\0{name}"
                )));
            }
            return Err(format!(
                "unknown attribute {key:?}: see SPEC.md §AuthorizationPolicy 7 for the keys meshwasm reads"
            ));
        }
    })
}

/// Istio's string match: `*` non-empty, `*x` suffix, `x*` prefix, else
/// exact; `prefix` is prepended (`spiffe://` for principals), turning a
/// suffix into `<prefix>.*x` (`matcher.StringMatcherWithPrefix`).
fn istio_match(v: &str, prefix: &str) -> StrMatch {
    if v == "*" {
        StrMatch::NonEmpty
    } else if let Some(s) = v.strip_prefix('*') {
        if prefix.is_empty() {
            StrMatch::Suffix(s.to_owned())
        } else {
            StrMatch::PrefixSuffix(prefix.to_owned(), s.to_owned())
        }
    } else if let Some(p) = v.strip_suffix('*') {
        StrMatch::Prefix(format!("{prefix}{p}"))
    } else {
        StrMatch::Exact(format!("{prefix}{v}"))
    }
}

/// A header match: `*` present, `*x` suffix, `x*` prefix, else exact;
/// `None` means present (`present_match`, SPEC.md Verified 2).
fn header_match(v: &str, no_case: bool) -> Option<StrMatch> {
    if v == "*" {
        return None;
    }
    Some(match (v.strip_prefix('*'), v.strip_suffix('*'), no_case) {
        (Some(s), _, false) => StrMatch::Suffix(s.to_owned()),
        (Some(s), _, true) => StrMatch::SuffixNoCase(s.to_owned()),
        (None, Some(p), false) => StrMatch::Prefix(p.to_owned()),
        (None, Some(p), true) => StrMatch::PrefixNoCase(p.to_owned()),
        (None, None, false) => StrMatch::Exact(v.to_owned()),
        (None, None, true) => StrMatch::ExactNoCase(v.to_owned()),
    })
}

fn regex(pattern: &str, path: &str) -> Result<StrMatch, ConfigError> {
    full_match_regex(pattern, path).map(StrMatch::Regex)
}

/// A port (`convertToPort`): decimal, at most 65535.
fn port(v: &str) -> Option<u32> {
    v.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| v.parse::<u32>().ok())
        .flatten()
        .filter(|p| *p <= 65535)
}

/// Envoy's pchar, the characters a path template segment may hold (a glob
/// also matches `*`, as Envoy 1.40 does).
const PCHAR: &str = r"a-zA-Z0-9\-._~%!$&'()*+,;:@=";

fn is_literal(seg: &str) -> bool {
    !seg.is_empty()
        && seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()+,;:@=".contains(&b))
}

/// A path with `{*}` / `{**}` → Envoy's `uri_template` regex (istio
/// `matcher.PathTemplateMatcher`; envoy `uri_template_internal.cc`): `{*}`
/// one non-empty segment, `{**}` anything including slashes (possibly
/// nothing: the slashes around it stay, SPEC.md Verified 3), no operator
/// after `{**}`, segments otherwise literal pchars.
fn template(path: &str, at: &str) -> Result<Regex, ConfigError> {
    let bad = |why: &str| ConfigError::new(at, format!("invalid path template {path:?}: {why}"));
    let rest = path
        .strip_prefix('/')
        .filter(|_| path.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| bad("it must start with / and be printable ASCII"))?;
    let mut re = String::from("/");
    let mut text_glob = false;
    for (n, seg) in rest.split('/').enumerate() {
        if n > 0 {
            re.push('/');
        }
        match seg {
            "{*}" | "{**}" if text_glob => return Err(bad("{**} must be the last operator")),
            "{*}" => re.push_str(&format!("[{PCHAR}]+")),
            "{**}" => {
                text_glob = true;
                re.push_str(&format!("[{PCHAR}/]*"));
            }
            // A trailing slash: Envoy's empty last literal.
            "" if n > 0 && n == rest.split('/').count() - 1 => {}
            _ if is_literal(seg) => re.push_str(&crate::matching::escape(seg)),
            _ => {
                return Err(bad(&format!(
                    "segment {seg:?} is neither {{*}}, {{**}} nor a literal of pchars"
                )));
            }
        }
    }
    full_match_regex(&re, at)
}

fn cidr(v: &str, at: &str) -> Result<Cidr, ConfigError> {
    Cidr::parse(v)
        .ok_or_else(|| ConfigError::new(at, format!("{v:?} is not an IP address or CIDR")))
}

/// The leaf one value of `attr` compiles to; `at` is the value's JSON path.
pub(crate) fn leaf(attr: &Attr, v: &str, at: &str) -> Result<Leaf, ConfigError> {
    Ok(match attr {
        Attr::Principal => Leaf::Peer(istio_match(v, SPIFFE)),
        Attr::RequestPrincipal => {
            let (iss, sub) = request_principal(v);
            Leaf::RequestPrincipal(iss, sub)
        }
        Attr::Namespace => {
            let ns: Vec<String> = v.split('*').map(crate::matching::escape).collect();
            Leaf::Peer(regex(&format!(".*/ns/{}/.*", ns.join(".*")), at)?)
        }
        Attr::ServiceAccount(policy_ns) => {
            let (ns, sa) = v.split_once('/').unwrap_or((policy_ns, v));
            if v.contains('*') || sa.contains('/') || ns.is_empty() || sa.is_empty() {
                return Err(ConfigError::new(
                    at,
                    format!(
                        "{v:?} is not a service account <namespace>/<name> or <name> (no wildcards)"
                    ),
                ));
            }
            let (ns, sa) = (crate::matching::escape(ns), crate::matching::escape(sa));
            Leaf::Peer(regex(
                &format!("spiffe://.+/ns/{ns}/(.+/|)sa/{sa}(/.+)?"),
                at,
            )?)
        }
        Attr::TrustDomain => Leaf::Peer(match v.split_once('*') {
            _ if v == "*" => StrMatch::Prefix(SPIFFE.into()),
            None => StrMatch::Prefix(format!("{SPIFFE}{v}/")),
            Some((a, b)) => {
                let (a, b) = (crate::matching::escape(a), crate::matching::escape(b));
                regex(&format!("spiffe://{a}[^/]*{b}/.*"), at)?
            }
        }),
        Attr::SourceIp => Leaf::SourceIp(cidr(v, at)?),
        Attr::RemoteIp => Leaf::RemoteIp(cidr(v, at)?),
        Attr::DestinationIp => Leaf::DestinationIp(cidr(v, at)?),
        Attr::DestinationPort => Leaf::DestinationPort(
            port(v).ok_or_else(|| ConfigError::new(at, format!("invalid port {v:?}")))?,
        ),
        Attr::Sni => Leaf::Sni(istio_match(v, "")),
        Attr::Host => Leaf::Header(":authority".into(), header_match(v, true)),
        Attr::Method => Leaf::Header(":method".into(), header_match(v, false)),
        Attr::Header(name) => Leaf::Header(name.clone(), header_match(v, false)),
        Attr::Path if v.contains("{*}") || v.contains("{**}") => {
            Leaf::PathTemplate(template(v, at)?)
        }
        Attr::Path if v.contains(['{', '}']) => {
            return Err(ConfigError::new(
                at,
                format!("{v:?} contains '{{' or '}}' beyond a {{*}} / {{**}} path template"),
            ));
        }
        Attr::Path => Leaf::Path(istio_match(v, "")),
        Attr::Claim(path) => Leaf::Claim(path.clone(), istio_match(v, "")),
        Attr::Metadata(property) => {
            let v = v
                .strip_prefix('[')
                .and_then(|s| s.strip_suffix(']'))
                .unwrap_or(v);
            Leaf::Metadata(property.clone(), istio_match(v, ""))
        }
    })
}

/// `iss/sub` → the matchers of the token's `iss` and `sub` claims, split
/// at the last `/` (istio `requestPrincipalGenerator`): a value without
/// `/` is an issuer with an empty subject.
fn request_principal(v: &str) -> (StrMatch, StrMatch) {
    let any = || StrMatch::NonEmpty;
    let (iss, sub, found) = match v.rfind('/') {
        Some(i) => (v.get(..i).unwrap_or(v), v.get(i + 1..).unwrap_or(""), true),
        None => (v, "", false),
    };
    if v == "*" {
        (any(), any())
    } else if let Some(rest) = v.strip_prefix('*') {
        if found {
            let iss = match iss {
                "*" => any(),
                i => StrMatch::Suffix(i.strip_prefix('*').unwrap_or(i).to_owned()),
            };
            (iss, StrMatch::Exact(sub.to_owned()))
        } else {
            (any(), StrMatch::Suffix(rest.to_owned()))
        }
    } else if let Some(head) = v.strip_suffix('*') {
        if found {
            let sub = match sub {
                "*" => any(),
                s => StrMatch::Prefix(s.strip_suffix('*').unwrap_or(s).to_owned()),
            };
            (StrMatch::Exact(iss.to_owned()), sub)
        } else {
            (StrMatch::Prefix(head.to_owned()), any())
        }
    } else {
        (
            StrMatch::Exact(iss.to_owned()),
            StrMatch::Exact(sub.to_owned()),
        )
    }
}
