//! The words requests are made of: every form of the hosts a document's
//! VirtualServices serve (and near misses), the literals of their matches,
//! each match entry to aim at, and the test file's `samples`.

use serde::Deserialize;

use meshwasm::config::Document;
use meshwasm::config::virtual_service::{HttpMatchRequest, StringMatch};

use super::super::resolve;

/// Extra words of a test file (`samples:`), e.g. paths a `uri.regex` matches.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Samples {
    /// Paths (may carry a query).
    #[serde(default)]
    pub paths: Vec<String>,
    /// Header and query-parameter values.
    #[serde(default)]
    pub values: Vec<String>,
    /// Authorities.
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// The words requests are made of.
#[derive(Debug, Clone, Default)]
pub struct Vocabulary {
    /// Authorities some VirtualService serves (every form of its hosts).
    pub(super) hosts: Vec<String>,
    /// Near misses, unknown hosts, the file's samples.
    pub(super) other_hosts: Vec<String>,
    /// Every match entry, with the hosts of its VirtualService.
    pub(super) targets: Vec<Target>,
    pub(super) paths: Vec<String>,
    pub(super) header_names: Vec<String>,
    pub(super) values: Vec<String>,
    /// The file's own `samples` (what its regexes are meant to match).
    pub(super) sample_values: Vec<String>,
    pub(super) sample_paths: Vec<String>,
    pub(super) query_keys: Vec<String>,
    pub(super) methods: Vec<String>,
}

/// A match entry to aim a request at.
#[derive(Debug, Clone)]
pub(super) struct Target {
    pub(super) hosts: Vec<String>,
    pub(super) entry: HttpMatchRequest,
}

fn add(list: &mut Vec<String>, word: &str) {
    if !list.iter().any(|w| w == word) {
        list.push(word.to_owned());
    }
}

fn literals(sm: &StringMatch) -> impl Iterator<Item = &String> {
    sm.exact.iter().chain(sm.prefix.iter())
}

impl Vocabulary {
    /// The words of `doc`'s VirtualServices plus `samples`.
    pub fn new(doc: &Document, samples: &Samples) -> Vocabulary {
        let mut v = Vocabulary::default();
        let suffix = &doc.envoy.domain_suffix;
        for vs in &doc.virtual_services {
            let ns = doc.namespace_of(vs);
            let mut served = Vec::new();
            for host in &vs.spec.hosts {
                v.host_forms(host, ns, suffix, &mut served);
            }
            for h in &served {
                add(&mut v.hosts, h);
            }
            for rule in &vs.spec.http {
                let entries = if rule.matches.is_empty() {
                    vec![HttpMatchRequest::default()]
                } else {
                    rule.matches.clone()
                };
                v.targets.extend(entries.into_iter().map(|entry| Target {
                    hosts: served.clone(),
                    entry,
                }));
            }
            for m in vs.spec.http.iter().flat_map(|r| r.matches.iter()) {
                for p in m.uri.iter().flat_map(literals) {
                    add(&mut v.paths, p);
                }
                for (name, sm) in m.headers.iter().chain(m.without_headers.iter()) {
                    if !name.starts_with(':') {
                        add(&mut v.header_names, name);
                    }
                    literals(sm).for_each(|w| add(&mut v.values, w));
                }
                for (key, sm) in &m.query_params {
                    add(&mut v.query_keys, key);
                    literals(sm).for_each(|w| add(&mut v.values, w));
                }
                for sm in m.authority.iter() {
                    literals(sm).for_each(|w| add(&mut v.hosts, w));
                }
                for sm in m.scheme.iter() {
                    literals(sm).for_each(|w| add(&mut v.values, w));
                }
                for sm in m.method.iter() {
                    literals(sm).for_each(|w| add(&mut v.methods, w));
                }
            }
        }
        for p in &samples.paths {
            add(&mut v.paths, p);
            add(&mut v.sample_paths, p);
        }
        for w in &samples.values {
            add(&mut v.values, w);
            add(&mut v.sample_values, w);
        }
        for h in &samples.hosts {
            add(&mut v.other_hosts, h);
        }
        for p in ["/", "/other", "/index.html"] {
            add(&mut v.paths, p);
        }
        for n in ["user-agent", "x-unrelated", "cookie"] {
            add(&mut v.header_names, n);
        }
        for w in ["", "x"] {
            add(&mut v.values, w);
        }
        add(&mut v.query_keys, "other");
        for h in ["unknown.example.com", "127.0.0.1", "localhost", "[::1]"] {
            add(&mut v.other_hosts, h);
        }
        for m in ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"] {
            add(&mut v.methods, m);
        }
        v
    }

    /// Every name a sidecar might be asked for `host` (into `served`), and
    /// near misses (into `other_hosts`).
    fn host_forms(&mut self, host: &str, ns: &str, suffix: &str, served: &mut Vec<String>) {
        if host == "*" {
            return;
        }
        if let Some(dot_suffix) = host.strip_prefix('*') {
            for prefix in ["a", "x.y"] {
                add(served, &format!("{prefix}{dot_suffix}"));
            }
            add(&mut self.other_hosts, dot_suffix);
            add(&mut self.other_hosts, dot_suffix.trim_start_matches('.'));
            return;
        }
        add(served, host);
        let fqdn = resolve(host, ns, suffix);
        add(served, &fqdn);
        if let Some(name_ns) = fqdn.strip_suffix(&format!(".svc.{suffix}")) {
            add(served, &format!("{name_ns}.svc"));
            add(served, name_ns);
            if let Some((name, _)) = name_ns.split_once('.') {
                add(served, name);
                add(&mut self.other_hosts, &format!("{name}.elsewhere"));
            }
        }
    }
}
