//! Seeded edge-case requests for the route differential test: the same seed
//! gives the same requests. The words come from the document (hosts in
//! every form a sidecar answers, `uri`/header/query values) and from the
//! test file's `samples` (strings a regex matches); the generator then bends
//! them: repeated and empty headers, mixed-case names and values, trailing
//! dots and odd ports (`:abc`, `:`, `:80`) in the authority, absolute-form
//! targets, query strings (repeated keys, `k` without `=`, `?` in odd
//! places), percent-encoding, `//`, `.` and `..` segments, odd methods, h2.

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

mod targeted;
mod vocabulary;

pub use vocabulary::{Samples, Vocabulary};

/// One request as sent: over HTTP/1.1 its bytes are exactly these fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffRequest {
    /// Method, as sent (`get` and `FOO` too).
    pub method: String,
    /// Request target: origin-form (`/a?b`) or absolute-form (`http://h/a`).
    pub target: String,
    /// `Host` header (HTTP/1.1) or `:authority` (h2); `None`: none sent.
    pub host: Option<String>,
    /// Further headers in order, names as sent (repeats allowed).
    pub headers: Vec<(String, String)>,
    /// Sent over h2 (prior knowledge) instead of HTTP/1.1.
    pub http2: bool,
    /// `:scheme` of an h2 request.
    pub scheme: String,
}

impl DiffRequest {
    /// `GET target` with `Host: host` over HTTP/1.1.
    pub fn get(host: &str, target: &str) -> DiffRequest {
        DiffRequest {
            method: "GET".to_owned(),
            target: target.to_owned(),
            host: Some(host.to_owned()),
            headers: Vec::new(),
            http2: false,
            scheme: "http".to_owned(),
        }
    }

    /// The HTTP/1.1 request bytes, ending with `connection: close`.
    pub fn http1_bytes(&self) -> Vec<u8> {
        let mut s = format!("{} {} HTTP/1.1\r\n", self.method, self.target);
        if let Some(h) = &self.host {
            s.push_str(&format!("Host: {h}\r\n"));
        }
        for (n, v) in &self.headers {
            s.push_str(&format!("{n}: {v}\r\n"));
        }
        s.push_str("connection: close\r\n\r\n");
        s.into_bytes()
    }

    /// One-step simpler variants, for shrinking a disagreement to a
    /// minimal request.
    pub fn simpler(&self) -> Vec<DiffRequest> {
        let mut out = Vec::new();
        let mut push = |f: &dyn Fn(&mut DiffRequest)| {
            let mut r = self.clone();
            f(&mut r);
            if r != *self {
                out.push(r);
            }
        };
        push(&|r| r.http2 = false);
        push(&|r| r.scheme = "http".to_owned());
        push(&|r| r.method = "GET".to_owned());
        push(&|r| r.target = origin_form(&r.target).to_owned());
        push(&|r| r.target = without_query(&r.target).to_owned());
        push(&|r| {
            let query = r.target.split_once('?').map(|(_, q)| format!("?{q}"));
            r.target = format!("/{}", query.unwrap_or_default());
        });
        for i in 0..self.headers.len() {
            push(&|r| {
                r.headers.remove(i);
            });
        }
        let params = match self.target.split_once('?') {
            Some((_, q)) if q.contains('&') => q.split('&').count(),
            _ => 0,
        };
        for i in 0..params {
            push(&|r| {
                let (path, q) = r.target.split_once('?').unwrap_or((&r.target, ""));
                let kept: Vec<&str> = q
                    .split('&')
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, p)| p)
                    .collect();
                r.target = format!("{path}?{}", kept.join("&"));
            });
        }
        push(&|r| {
            if let Some(h) = &mut r.host {
                *h = h.to_ascii_lowercase();
            }
        });
        push(&|r| {
            if let Some(h) = &mut r.host
                && let Some((name, _)) = h.rsplit_once(':')
                && !name.ends_with(']')
                && !name.contains(':')
            {
                *h = name.to_owned();
            }
        });
        out
    }
}

impl std::fmt::Display for DiffRequest {
    /// The request as a reader would type it: HTTP/1.1 text, or h2
    /// pseudo-headers.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.http2 {
            let host = self.host.as_deref().unwrap_or_default();
            write!(
                f,
                "h2 {} {}://{host}{}",
                self.method, self.scheme, self.target
            )?;
        } else {
            write!(f, "{} {} HTTP/1.1", self.method, self.target)?;
            if let Some(h) = &self.host {
                write!(f, " | Host: {h}")?;
            }
        }
        for (n, v) in &self.headers {
            write!(f, " | {n}: {v}")?;
        }
        Ok(())
    }
}

fn origin_form(target: &str) -> &str {
    match target.split_once("://") {
        Some((_, rest)) => rest.find('/').and_then(|i| rest.get(i..)).unwrap_or("/"),
        None => target,
    }
}

fn without_query(target: &str) -> &str {
    target.split_once('?').map_or(target, |(p, _)| p)
}

/// A deterministic stream of requests from a seed and a vocabulary.
#[derive(Debug)]
pub struct RequestGenerator {
    rng: StdRng,
    words: Vocabulary,
}

const PORTS: &[&str] = &[":80", ":8080", ":abc", ":", ":0080", ":65536", ":80:80"];
const PATH_TAILS: &[&str] = &["/", "/x", "x", "/sub/item", ".json", "/%2e%2e/x"];
const ODD_QUERIES: &[&str] = &["?", "??", "?&", "?=v", "?&&", "?#"];

impl RequestGenerator {
    /// Requests from `seed` over `words`.
    pub fn new(seed: u64, words: Vocabulary) -> RequestGenerator {
        RequestGenerator {
            rng: StdRng::seed_from_u64(seed),
            words,
        }
    }

    fn pick(&mut self, which: fn(&Vocabulary) -> &[String], default: &str) -> String {
        which(&self.words)
            .choose(&mut self.rng)
            .cloned()
            .unwrap_or_else(|| default.to_owned())
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    /// The next request: aimed at a match entry (its literals, then one
    /// twist) or free-form.
    pub fn request(&mut self) -> DiffRequest {
        let mut req = if !self.words.targets.is_empty() && self.chance(0.6) {
            self.targeted()
        } else {
            self.free_form()
        };
        // Lower-case methods are HTTP/1 codec errors; h2 needs a valid URI.
        req.http2 = req.http2
            && !req.method.bytes().any(|b| b.is_ascii_lowercase())
            && super::wire::h2_request(&req).is_some();
        req
    }

    fn free_form(&mut self) -> DiffRequest {
        let method = self.method();
        let host = self.host();
        let mut target = self.path();
        if self.chance(0.4) {
            target.push_str(&self.query(target.contains('?')));
        }
        let absolute = self.chance(0.1);
        let http2 = !absolute && host.is_some() && self.chance(0.2);
        let scheme = if self.chance(0.15) { "https" } else { "http" };
        let mut host_header = host.clone();
        if absolute {
            let url_host = host.clone().unwrap_or_else(|| "absent".to_owned());
            target = format!("{scheme}://{url_host}{target}");
            if self.chance(0.5) {
                host_header = self.host();
            }
        }
        let mut headers = self.headers();
        if !http2 && self.chance(0.01) {
            headers.push(("Host".to_owned(), self.pick(|w| w.hosts.as_slice(), "a")));
        }
        DiffRequest {
            method,
            target,
            host: host_header,
            headers,
            http2,
            scheme: scheme.to_owned(),
        }
    }

    fn method(&mut self) -> String {
        match self.rng.random_range(0..100) {
            0..70 => "GET".to_owned(),
            70..72 => "get".to_owned(),
            72 => "FOO".to_owned(),
            _ => self.pick(|w| w.methods.as_slice(), "GET"),
        }
    }

    fn host(&mut self) -> Option<String> {
        if self.chance(0.01) {
            return None;
        }
        let mut h = if self.chance(0.75) {
            self.pick(|w| w.hosts.as_slice(), "a")
        } else {
            self.pick(|w| w.other_hosts.as_slice(), "a")
        };
        self.twist_host(&mut h);
        Some(h)
    }

    /// Case, a trailing dot, a port — each sometimes.
    fn twist_host(&mut self, h: &mut String) {
        if self.chance(0.15) {
            *h = self.flip_case(h);
        }
        if self.chance(0.15) && !h.starts_with('[') {
            h.push('.');
        }
        if self.chance(0.35) {
            h.push_str(PORTS.choose(&mut self.rng).copied().unwrap_or(":80"));
        }
    }

    fn path(&mut self) -> String {
        let p = self.pick(|w| w.paths.as_slice(), "/");
        self.twist_path(p)
    }

    /// A tail, case, `//`, a dot segment, a percent-encoded byte, one byte
    /// less — or nothing, a quarter of the time.
    fn twist_path(&mut self, mut p: String) -> String {
        match self.rng.random_range(0..12) {
            0 | 1 => p.push_str(PATH_TAILS.choose(&mut self.rng).copied().unwrap_or("/")),
            2 => p = self.flip_case(&p),
            3 => p = format!("/{p}"),
            4 => p = p.replacen('/', "//", 2),
            5 => p = format!("/x/..{p}"),
            6 => p = format!("/.{p}"),
            7 => p = self.percent_encode_one(&p),
            8 if p.len() > 1 => {
                p.pop();
            }
            _ => {}
        }
        if !p.starts_with('/') && self.chance(0.7) {
            p.insert(0, '/');
        }
        p
    }

    fn query(&mut self, has_query: bool) -> String {
        if has_query {
            let v = self.value();
            return query_escape(&v);
        }
        if self.chance(0.1) {
            return ODD_QUERIES
                .choose(&mut self.rng)
                .copied()
                .unwrap_or("?")
                .to_owned();
        }
        let mut parts = Vec::new();
        for _ in 0..self.rng.random_range(1..=3) {
            let mut key = self.pick(|w| w.query_keys.as_slice(), "k");
            if self.chance(0.1) {
                key = self.flip_case(&key);
            }
            let value = query_escape(&self.value());
            parts.push(match self.rng.random_range(0..10) {
                0 => key,
                1 => format!("{key}="),
                2 => format!("{key}={value}&{key}={}", query_escape(&self.value())),
                3 => format!("{key}={}", self.percent_encode_one(&value)),
                _ => format!("{key}={value}"),
            });
        }
        let sep = if self.chance(0.1) { "&&" } else { "&" };
        let mut q = format!("?{}", parts.join(sep));
        if self.chance(0.05) {
            q.push_str("?x=1");
        }
        q
    }

    fn value(&mut self) -> String {
        let v = self.pick(|w| w.values.as_slice(), "");
        match self.rng.random_range(0..12) {
            0 => self.flip_case(&v),
            1 => format!("{v}x"),
            2 => format!("x{v}"),
            3 => String::new(),
            4 => format!(" {v} "),
            5 => v.to_ascii_uppercase(),
            6 if !v.is_empty() => v.get(..v.len() - 1).unwrap_or_default().to_owned(),
            _ => v,
        }
    }

    fn headers(&mut self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let n = [0, 1, 1, 2, 2, 3, 4]
            .choose(&mut self.rng)
            .copied()
            .unwrap_or(1);
        for _ in 0..n {
            let name = self.pick(|w| w.header_names.as_slice(), "x-h");
            let name = match self.rng.random_range(0..10) {
                0 => name.to_ascii_uppercase(),
                1 => title_case(&name),
                2 => self.flip_case(&name),
                _ => name,
            };
            let copies = if self.chance(0.2) {
                self.rng.random_range(2..=3)
            } else {
                1
            };
            for _ in 0..copies {
                let mut value = self.value();
                if self.chance(0.05) {
                    value = format!("{value}, {}", self.value());
                }
                out.push((name.clone(), header_safe(&value)));
            }
        }
        out
    }

    fn flip_case(&mut self, s: &str) -> String {
        let mut bytes = s.as_bytes().to_vec();
        let letters: Vec<usize> = (0..bytes.len())
            .filter(|&i| bytes.get(i).is_some_and(u8::is_ascii_alphabetic))
            .collect();
        if let Some(&i) = letters.choose(&mut self.rng)
            && let Some(b) = bytes.get_mut(i)
        {
            *b ^= 0x20;
        }
        String::from_utf8(bytes).unwrap_or_else(|_| s.to_owned())
    }

    fn percent_encode_one(&mut self, s: &str) -> String {
        let spots: Vec<usize> = s
            .char_indices()
            .filter(|&(i, c)| c.is_ascii_alphanumeric() || (c == '/' && i > 0))
            .map(|(i, _)| i)
            .collect();
        let Some(&i) = spots.choose(&mut self.rng) else {
            return s.to_owned();
        };
        let (Some(head), Some(c), Some(tail)) = (s.get(..i), s.get(i..=i), s.get(i + 1..)) else {
            return s.to_owned();
        };
        let byte = c.bytes().next().unwrap_or(b'x');
        let hex = if self.chance(0.5) {
            format!("%{byte:02X}")
        } else {
            format!("%{byte:02x}")
        };
        format!("{head}{hex}{tail}")
    }
}

fn title_case(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut cs = part.chars();
            cs.next()
                .map(|c| c.to_ascii_uppercase().to_string() + cs.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// A value fit for a query string: space, `#`, `&`, `%`, `+` and
/// non-printable bytes percent-encoded (`=` kept on purpose).
fn query_escape(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_graphic() && !b"#&%+".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A value fit for a header line: CR, LF and NUL dropped.
fn header_safe(v: &str) -> String {
    v.chars()
        .filter(|c| !matches!(c, '\r' | '\n' | '\0'))
        .collect()
}
