//! Requests aimed at one match entry: its literals put together (a value a
//! prefix starts, a presence header, the `uri` it names, a served host),
//! then, half the time, one twist of the kind that separates matchers — a
//! repeated or re-cased header, a port or trailing dot, a percent-encoded
//! byte, an `https` scheme.

use rand::Rng;
use rand::seq::IndexedRandom;

use meshwasm::config::virtual_service::StringMatch;

use super::{DiffRequest, RequestGenerator, header_safe, query_escape};

impl RequestGenerator {
    pub(super) fn targeted(&mut self) -> DiffRequest {
        let Some(target) = self.words.targets.choose(&mut self.rng).cloned() else {
            return self.free_form();
        };
        let m = &target.entry;
        let mut host = match target.hosts.choose(&mut self.rng) {
            Some(h) => h.clone(),
            None => self.host().unwrap_or_default(),
        };
        match &m.authority {
            Some(StringMatch {
                regex: Some(re), ..
            }) => {
                if let Some(h) = self.hinted(|w| w.other_hosts.as_slice(), re) {
                    host = h;
                }
            }
            Some(a) if a.exact.is_some() || a.prefix.is_some() => host = self.value_for(a),
            _ => {}
        }
        let path = match &m.uri {
            Some(StringMatch { exact: Some(e), .. }) => e.clone(),
            Some(StringMatch {
                prefix: Some(p), ..
            }) => format!("{p}{}", self.tail()),
            Some(StringMatch {
                regex: Some(re), ..
            }) => {
                let re = re.clone();
                match self.hinted(|w| w.sample_paths.as_slice(), &re) {
                    Some(p) => p,
                    None => self.pick(|w| w.paths.as_slice(), "/"),
                }
            }
            _ => self.pick(|w| w.paths.as_slice(), "/"),
        };
        let mut query = Vec::new();
        for (key, sm) in &m.query_params {
            let v = query_escape(&self.value_for(sm));
            query.push(if v.is_empty() && self.chance(0.5) {
                key.clone()
            } else {
                format!("{key}={v}")
            });
        }
        let target_path = if query.is_empty() {
            path
        } else {
            let sep = if path.contains('?') { "&" } else { "?" };
            format!("{path}{sep}{}", query.join("&"))
        };
        let method = match &m.method {
            Some(sm) if sm.exact.is_some() || sm.prefix.is_some() => {
                let v = self.value_for(sm);
                let known = self
                    .words
                    .methods
                    .iter()
                    .find(|w| w.starts_with(&v))
                    .cloned();
                known.unwrap_or(v)
            }
            Some(_) => self.pick(|w| w.methods.as_slice(), "GET"),
            None => "GET".to_owned(),
        };
        let mut headers = Vec::new();
        for (name, sm) in &m.headers {
            if !name.starts_with(':') {
                let v = self.value_for(sm);
                headers.push((name.clone(), header_safe(&v)));
            }
        }
        for (name, sm) in &m.without_headers {
            if self.chance(0.5) {
                let v = if self.chance(0.5) {
                    self.value_for(sm)
                } else {
                    self.value()
                };
                headers.push((name.clone(), header_safe(&v)));
            }
        }
        let https = m
            .scheme
            .as_ref()
            .is_some_and(|s| s.exact.as_deref() == Some("https"));
        let mut req = DiffRequest {
            method,
            target: target_path,
            host: Some(host),
            headers,
            http2: https || self.chance(0.2),
            scheme: if https || self.chance(0.1) {
                "https"
            } else {
                "http"
            }
            .to_owned(),
        };
        if self.chance(0.5) {
            self.twist(&mut req);
        }
        req
    }

    /// A value the match holds for (`exact`, a `prefix` and more), or any
    /// value for a regex or presence match.
    fn value_for(&mut self, sm: &StringMatch) -> String {
        if let Some(e) = &sm.exact {
            return e.clone();
        }
        if let Some(p) = &sm.prefix {
            let tail = if self.chance(0.5) {
                String::new()
            } else {
                self.value()
            };
            return format!("{p}{tail}");
        }
        if let Some(re) = &sm.regex
            && let Some(v) = self.hinted(|w| w.sample_values.as_slice(), re)
        {
            return v;
        }
        self.value()
    }

    /// Most of the time, a word of `pool` holding the longest literal run
    /// of `re` (`curl` of `.*curl.*`) — a word the regex likely matches.
    fn hinted(&mut self, pool: fn(&super::Vocabulary) -> &[String], re: &str) -> Option<String> {
        if !self.chance(0.7) {
            return None;
        }
        let hint = re
            .split(|c: char| "\\.*+?()[]{}|^$".contains(c))
            .max_by_key(|run| run.len())
            .unwrap_or_default();
        let words: Vec<&String> = pool(&self.words)
            .iter()
            .filter(|w| w.contains(hint))
            .collect();
        words.choose(&mut self.rng).map(|w| (*w).clone())
    }

    fn tail(&mut self) -> String {
        ["", "", "x", "/x", "/", "/sub/item"]
            .choose(&mut self.rng)
            .copied()
            .unwrap_or_default()
            .to_owned()
    }

    /// One twist of an otherwise matching request.
    fn twist(&mut self, req: &mut DiffRequest) {
        match self.rng.random_range(0..10) {
            0 | 1 => {
                if let Some(h) = &mut req.host {
                    let mut twisted = h.clone();
                    self.twist_host(&mut twisted);
                    *h = twisted;
                }
            }
            2 => req.target = self.twist_path(req.target.clone()),
            3 | 4 => {
                // The header again, with another value, before or after.
                if let Some((n, _)) = req.headers.choose(&mut self.rng).cloned() {
                    let extra = (n, header_safe(&self.value()));
                    if self.chance(0.5) {
                        req.headers.insert(0, extra);
                    } else {
                        req.headers.push(extra);
                    }
                }
            }
            5 => {
                let i = self.rng.random_range(0..req.headers.len().max(1));
                if let Some((n, v)) = req.headers.get(i).cloned() {
                    let n = if self.chance(0.5) {
                        n.to_ascii_uppercase()
                    } else {
                        n
                    };
                    let v = self.flip_case(&v);
                    if let Some(slot) = req.headers.get_mut(i) {
                        *slot = (n, v);
                    }
                }
            }
            6 => req.target = self.percent_encode_one(&req.target),
            7 => req.headers.extend(self.headers()),
            8 => req.method = self.method(),
            _ => {
                let q = self.query(req.target.contains('?'));
                req.target.push_str(&q);
            }
        }
    }
}
