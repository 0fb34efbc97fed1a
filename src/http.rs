//! The request as the core sees it, behind a narrow trait so the same
//! decision code runs over proxy-wasm hostcalls (filters/glue) and over plain
//! values in tests (STYLE.md rule 2).

use std::borrow::Cow;

/// Whether `name` is a valid HTTP header name: one or more RFC 9110
/// `tchar`s (pseudo-headers excluded).
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The `(key, value)` pairs of a path's query, raw as sent: after the
/// first `?`, up to `#`, split on `&`; `?k` gives `(k, "")`.
pub fn query_pairs(path: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let query = path
        .iter()
        .position(|&b| b == b'?')
        .and_then(|q| path.get(q + 1..))
        .map(|q| q.split(|&b| b == b'#').next().unwrap_or(q));
    query
        .into_iter()
        .flat_map(|q| q.split(|&b| b == b'&'))
        .map(|pair| match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (
                pair.get(..eq).unwrap_or_default(),
                pair.get(eq + 1..).unwrap_or_default(),
            ),
            None => (pair, &b""[..]),
        })
}

/// Read access to a request's headers and connection facts.
pub trait RequestView {
    /// The value of header `name` (lower-case; pseudo-headers `:path`,
    /// `:method`, `:authority`, `:scheme` included). A repeated header's
    /// values are joined with `,` as Envoy's header matchers see them.
    fn header(&self, name: &str) -> Option<Cow<'_, [u8]>>;

    /// Whether any value of header `name` satisfies `pred`, each value of a
    /// repeated header on its own (as Envoy 1.40's RBAC header matchers see
    /// them: SPEC.md §AuthorizationPolicy Verified 1); `None` when the
    /// header is absent. The default tests the comma-joined
    /// [`RequestView::header`].
    fn any_header_value(&self, name: &str, pred: &mut dyn FnMut(&[u8]) -> bool) -> Option<bool> {
        self.header(name).map(|v| pred(&v))
    }

    /// The port the request arrived on (`destination.port`), if known.
    fn destination_port(&self) -> Option<u32> {
        None
    }

    /// A property of the connection or request, dotted
    /// (`connection.mtls`, `connection.uri_san_peer_certificate`), encoded
    /// as the host encodes it (SPEC.md §proxy-wasm ABI D: a bool is one
    /// byte, a string its bytes).
    fn property(&self, _path: &str) -> Option<Cow<'_, [u8]>> {
        None
    }
}

/// Headers as an ordered list of `(lower-case name, value)` pairs: what
/// proxy-wasm's `get_http_request_headers_bytes` returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderList {
    /// The pairs, in order; names lower-case.
    pub pairs: Vec<(String, Vec<u8>)>,
    /// `destination.port`, if known.
    pub port: Option<u32>,
    /// Other properties (tests and tools), dotted path → bytes.
    pub properties: Vec<(String, Vec<u8>)>,
}

impl HeaderList {
    /// Wraps pairs read from the host.
    pub fn new(pairs: Vec<(String, Vec<u8>)>) -> Self {
        Self {
            pairs,
            port: None,
            properties: Vec::new(),
        }
    }

    /// A request with the given pseudo-headers, for tests and tools.
    pub fn request(method: &str, authority: &str, path: &str) -> Self {
        Self::new(vec![
            (":authority".into(), authority.as_bytes().to_vec()),
            (":path".into(), path.as_bytes().to_vec()),
            (":method".into(), method.as_bytes().to_vec()),
            (":scheme".into(), b"http".to_vec()),
        ])
    }

    /// Adds a header (name lower-cased), builder style.
    #[must_use]
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.pairs
            .push((name.to_ascii_lowercase(), value.as_bytes().to_vec()));
        self
    }
}

impl HeaderList {
    /// Applies a header change as Envoy's header map does: `Set` replaces
    /// every value with one, `Add` appends, `Remove` removes every value.
    pub fn apply(&mut self, op: &crate::verdict::HeaderOp) {
        use crate::verdict::HeaderOp;
        match op {
            HeaderOp::Set(name, value) => {
                let mut seen = false;
                self.pairs.retain_mut(|(n, v)| {
                    if n != name {
                        return true;
                    }
                    if !seen {
                        *v = value.as_bytes().to_vec();
                    }
                    !std::mem::replace(&mut seen, true)
                });
                if !seen {
                    self.pairs.push((name.clone(), value.as_bytes().to_vec()));
                }
            }
            HeaderOp::Add(name, value) => {
                self.pairs.push((name.clone(), value.as_bytes().to_vec()));
            }
            HeaderOp::Remove(name) => self.pairs.retain(|(n, _)| n != name),
        }
    }
}

/// A header's values as one: the only value borrowed, several joined with
/// `,` (as Envoy's `get_header_map_value` gives them); `None` if none.
pub fn joined<'a>(mut values: impl Iterator<Item = &'a [u8]>) -> Option<Cow<'a, [u8]>> {
    let first = values.next()?;
    match values.next() {
        None => Some(Cow::Borrowed(first)),
        Some(second) => {
            let mut joined = first.to_vec();
            for v in std::iter::once(second).chain(values) {
                joined.push(b',');
                joined.extend_from_slice(v);
            }
            Some(Cow::Owned(joined))
        }
    }
}

/// Whether any single value satisfies `pred`; `None` when there is none
/// ([`RequestView::any_header_value`]).
pub fn any_value<'a>(
    values: impl Iterator<Item = &'a [u8]>,
    pred: &mut dyn FnMut(&[u8]) -> bool,
) -> Option<bool> {
    let mut present = false;
    for v in values {
        present = true;
        if pred(v) {
            return Some(true);
        }
    }
    present.then_some(false)
}

impl HeaderList {
    fn values<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        self.pairs
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

impl RequestView for HeaderList {
    fn header(&self, name: &str) -> Option<Cow<'_, [u8]>> {
        joined(self.values(name))
    }

    fn any_header_value(&self, name: &str, pred: &mut dyn FnMut(&[u8]) -> bool) -> Option<bool> {
        any_value(self.values(name), pred)
    }

    fn destination_port(&self) -> Option<u32> {
        self.port
    }

    fn property(&self, path: &str) -> Option<Cow<'_, [u8]>> {
        self.properties
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, v)| Cow::Borrowed(v.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_header_is_seen_comma_joined() {
        let req = HeaderList::request("GET", "h", "/")
            .with("x", "a")
            .with("X", "b");
        assert_eq!(req.header("x").as_deref(), Some(&b"a,b"[..]));
    }

    #[test]
    fn set_replaces_every_value_in_place_and_remove_drops_them_all() {
        use crate::verdict::HeaderOp;
        let mut req = HeaderList::request("GET", "h", "/")
            .with("x", "a")
            .with("y", "1")
            .with("x", "b");
        req.apply(&HeaderOp::Set("x".into(), "c".into()));
        assert_eq!(req.header("x").as_deref(), Some(&b"c"[..]));
        assert_eq!(req.pairs.len(), 6);
        req.apply(&HeaderOp::Add("x".into(), "d".into()));
        assert_eq!(req.header("x").as_deref(), Some(&b"c,d"[..]));
        req.apply(&HeaderOp::Remove("x".into()));
        assert_eq!(req.header("x"), None);
        req.apply(&HeaderOp::Set("z".into(), "1".into()));
        assert_eq!(req.header("z").as_deref(), Some(&b"1"[..]));
    }

    #[test]
    fn each_value_of_a_repeated_header_is_tested_on_its_own() {
        let req = HeaderList::request("GET", "h", "/")
            .with("x", "a")
            .with("x", "b,c");
        assert_eq!(req.any_header_value("x", &mut |v| v == b"b,c"), Some(true));
        assert_eq!(req.any_header_value("x", &mut |v| v == b"b"), Some(false));
        assert_eq!(req.any_header_value("y", &mut |_| true), None);
    }

    #[test]
    fn header_lookup_ignores_case() {
        let req = HeaderList::request("GET", "h", "/").with("User-Type", "premium");
        assert_eq!(req.header("user-type").as_deref(), Some(&b"premium"[..]));
        assert_eq!(req.header("absent"), None);
    }
}
