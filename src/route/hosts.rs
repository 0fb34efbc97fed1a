//! Which VirtualService serves an `:authority` (SPEC.md §VirtualService
//! "Hosts"): the port is stripped, short names are qualified with the
//! VirtualService's namespace, and Envoy's order applies: exact domain, then
//! the longest `*.suffix` wildcard, then `*`. Names compare ASCII
//! case-insensitively, without allocating per request.

/// Domains of the virtual hosts, compiled for lookup.
#[derive(Debug, Clone, Default)]
pub(crate) struct DomainIndex {
    /// Exact domains (lower-case) → virtual host.
    exact: Vec<(String, usize)>,
    /// Wildcard suffixes (lower-case, with the leading dot), longest first.
    suffix: Vec<(String, usize)>,
    /// The `*` host.
    any: Option<usize>,
}

/// How a VirtualService host is written.
pub(crate) enum HostPattern {
    /// `*`.
    Any,
    /// `*.example.com`, stored as `.example.com`.
    Suffix(String),
    /// A name, expanded to every domain a sidecar answers for it.
    Exact(Vec<String>),
}

/// Expands a VirtualService `host` written in namespace `ns`.
pub(crate) fn pattern(host: &str, ns: &str, workload_ns: &str, domain_suffix: &str) -> HostPattern {
    let host = host.to_ascii_lowercase();
    if host == "*" {
        return HostPattern::Any;
    }
    if let Some(rest) = host.strip_prefix('*') {
        return HostPattern::Suffix(rest.to_owned());
    }
    let fqdn = fqdn(&host, ns, domain_suffix);
    HostPattern::Exact(alt_names(&fqdn, workload_ns, domain_suffix))
}

/// The FQDN of `host` as Istio qualifies it: a dotless name gets
/// `.<ns>.svc.<domain>`; anything with a dot is taken as written.
pub(crate) fn fqdn(host: &str, ns: &str, domain_suffix: &str) -> String {
    if host.contains('.') {
        host.to_ascii_lowercase()
    } else {
        format!("{}.{ns}.svc.{domain_suffix}", host.to_ascii_lowercase())
    }
}

/// The FQDN and the other names a sidecar's virtual host also answers for
/// a Kubernetes service (`<name>.<ns>.svc.<domain>`): the absolute FQDN
/// with its trailing dot (Istio's `GenerateAltVirtualHosts`, on by default
/// through `PILOT_ENABLE_ABSOLUTE_FQDN_VHOST_DOMAIN`) and its short names
/// (`name.ns.svc`, `name.ns`, and `name` from the same namespace) — Istio
/// `generateVirtualHostDomains`. Any other name is not a registry service
/// here (meshwasm reads no ServiceEntry), so it answers for itself only,
/// as Istio's virtual host for such a VirtualService host does.
fn alt_names(fqdn: &str, workload_ns: &str, domain_suffix: &str) -> Vec<String> {
    let mut names = vec![fqdn.to_owned()];
    let kube_suffix = format!(".svc.{domain_suffix}");
    if let Some(name_ns) = fqdn.strip_suffix(&kube_suffix) {
        names.push(format!("{fqdn}."));
        names.push(format!("{name_ns}.svc"));
        names.push(name_ns.to_owned());
        if let Some((name, ns)) = name_ns.split_once('.')
            && ns == workload_ns
        {
            names.push(name.to_owned());
        }
    }
    names
}

/// Strips the port from an authority as Envoy does
/// (`HeaderUtility::getPortStart`): everything from the last `:` is cut,
/// whatever follows it (`a:abc` is host `a`), unless that `:` sits inside
/// an IPv6 literal (`[::1]`, `[::1]:80` is `[::1]`).
pub(crate) fn strip_port(authority: &[u8]) -> &[u8] {
    let Some(colon) = authority.iter().rposition(|&b| b == b':') else {
        return authority;
    };
    match authority.iter().rposition(|&b| b == b']') {
        Some(bracket) if bracket > colon => authority,
        _ => authority.get(..colon).unwrap_or(authority),
    }
}

impl DomainIndex {
    /// Registers `pattern` for virtual host `vhost`; returns the domains
    /// another virtual host had already claimed (the first one keeps them).
    pub(crate) fn insert(&mut self, pattern: HostPattern, vhost: usize) -> Vec<(String, usize)> {
        let mut taken = Vec::new();
        match pattern {
            HostPattern::Any => match self.any {
                Some(owner) => taken.push(("*".to_owned(), owner)),
                None => self.any = Some(vhost),
            },
            HostPattern::Suffix(s) => match self.suffix.iter().find(|(d, _)| *d == s) {
                Some((_, owner)) => taken.push((format!("*{s}"), *owner)),
                None => {
                    self.suffix.push((s, vhost));
                    self.suffix.sort_by_key(|(d, _)| std::cmp::Reverse(d.len()));
                }
            },
            HostPattern::Exact(names) => {
                for name in names {
                    match self.exact.iter().find(|(d, _)| *d == name) {
                        Some((_, owner)) if *owner != vhost => taken.push((name, *owner)),
                        Some(_) => {}
                        None => self.exact.push((name, vhost)),
                    }
                }
            }
        }
        taken
    }

    /// The virtual host serving `authority`, if any.
    pub(crate) fn lookup(&self, authority: &[u8]) -> Option<usize> {
        let host = strip_port(authority);
        if let Some((_, v)) = self
            .exact
            .iter()
            .find(|(d, _)| d.as_bytes().eq_ignore_ascii_case(host))
        {
            return Some(*v);
        }
        let wildcard = self.suffix.iter().find(|(s, _)| {
            host.len() > s.len()
                && host
                    .get(host.len() - s.len()..)
                    .is_some_and(|tail| tail.eq_ignore_ascii_case(s.as_bytes()))
        });
        wildcard.map(|(_, v)| *v).or(self.any)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(hosts: &[&str]) -> DomainIndex {
        let mut idx = DomainIndex::default();
        for (i, h) in hosts.iter().enumerate() {
            idx.insert(pattern(h, "default", "default", "cluster.local"), i);
        }
        idx
    }

    #[test]
    fn a_short_name_answers_for_all_its_kubernetes_forms_with_or_without_port() {
        let idx = index(&["product-service"]);
        for a in [
            "product-service",
            "product-service:8080",
            "Product-Service",
            "product-service.default",
            "product-service.default.svc",
            "product-service.default.svc.cluster.local:80",
        ] {
            assert_eq!(idx.lookup(a.as_bytes()), Some(0), "{a}");
        }
        assert_eq!(idx.lookup(b"product-service.other"), None);
        assert_eq!(idx.lookup(b"127.0.0.1:10000"), None);
    }

    #[test]
    fn exact_beats_longest_suffix_beats_any() {
        let idx = index(&["*", "*.foo.com", "*.bar.foo.com", "x.bar.foo.com"]);
        assert_eq!(idx.lookup(b"x.bar.foo.com"), Some(3));
        assert_eq!(idx.lookup(b"y.bar.foo.com"), Some(2));
        assert_eq!(idx.lookup(b"y.foo.com"), Some(1));
        assert_eq!(
            idx.lookup(b"foo.com"),
            Some(0),
            "*.foo.com does not cover foo.com"
        );
    }

    #[test]
    fn ports_are_stripped_from_names_and_ipv6_literals() {
        assert_eq!(strip_port(b"a:80"), b"a");
        assert_eq!(strip_port(b"[::1]:80"), b"[::1]");
        assert_eq!(strip_port(b"[::1]"), b"[::1]");
        assert_eq!(
            strip_port(b"a:b"),
            b"a",
            "Envoy cuts at the last ':' whatever follows"
        );
        assert_eq!(strip_port(b"a:"), b"a");
        assert_eq!(strip_port(b"[::1]:abc"), b"[::1]");
    }

    #[test]
    fn the_first_virtual_service_keeps_a_shared_host() {
        let mut idx = DomainIndex::default();
        idx.insert(pattern("a", "default", "default", "cluster.local"), 0);
        let taken = idx.insert(pattern("a", "default", "default", "cluster.local"), 1);
        assert!(!taken.is_empty());
        assert_eq!(idx.lookup(b"a"), Some(0));
    }
}
