//! Where tokens are found (SPEC.md §RequestAuthentication Fields, Verified
//! 3–4): a header with a prefix — found anywhere in the value,
//! case-sensitive, the token being the rest of the value (so a repeated
//! `Authorization`, merged as `Bearer A,Bearer B`, is one malformed token) —
//! a query parameter (the first occurrence; an empty value is a token), or a
//! cookie. A rule without locations reads `Authorization: Bearer <t>` and
//! `?access_token=<t>`.

use std::borrow::Cow;

use crate::http::RequestView;

/// One place a token can be.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Location {
    /// Header `name` (lower-case) after `prefix`.
    Header {
        /// Lower-case header name.
        name: String,
        /// Prefix before the token (may be empty).
        prefix: String,
    },
    /// Query parameter.
    Param(String),
    /// Cookie.
    Cookie(String),
}

impl Location {
    /// The default locations of a rule that names none.
    pub fn defaults() -> Vec<Location> {
        vec![
            Location::Header {
                name: "authorization".into(),
                prefix: "Bearer ".into(),
            },
            Location::Param("access_token".into()),
        ]
    }

    /// The token at this location, if any.
    pub fn find<'r>(&self, req: &'r impl RequestView) -> Option<Cow<'r, str>> {
        match self {
            Location::Header { name, prefix } => {
                let value = req.header(name)?;
                let at = if prefix.is_empty() {
                    0
                } else {
                    find(&value, prefix.as_bytes())? + prefix.len()
                };
                // A token is ASCII: borrowed as it is (no copy) unless
                // the value is not UTF-8 at all.
                Some(match value {
                    Cow::Borrowed(v) => match std::str::from_utf8(v.get(at..)?) {
                        Ok(token) => Cow::Borrowed(token.trim()),
                        Err(_) => Cow::Owned(lossy_trimmed(v.get(at..)?)),
                    },
                    Cow::Owned(v) => Cow::Owned(lossy_trimmed(v.get(at..)?)),
                })
            }
            Location::Param(name) => {
                let path = req.header(":path")?;
                query_param(&path, name).map(Cow::Owned)
            }
            Location::Cookie(name) => {
                let cookies = req.header("cookie")?;
                cookie(&cookies, name).map(Cow::Owned)
            }
        }
    }
}

fn lossy_trimmed(v: &[u8]) -> String {
    String::from_utf8_lossy(v).trim().to_owned()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The first value of query parameter `name`, percent-decoded.
fn query_param(path: &[u8], name: &str) -> Option<String> {
    crate::http::query_pairs(path).find_map(|(k, v)| {
        (percent_decode(k) == name.as_bytes())
            .then(|| String::from_utf8_lossy(&percent_decode(v)).into_owned())
    })
}

/// The value of cookie `name` (`a=1; b=2`), surrounding quotes removed.
fn cookie(header: &[u8], name: &str) -> Option<String> {
    header.split(|&b| b == b';' || b == b',').find_map(|pair| {
        let eq = pair.iter().position(|&b| b == b'=')?;
        let (k, v) = (pair.get(..eq)?, pair.get(eq + 1..)?);
        (k.trim_ascii() == name.as_bytes()).then(|| {
            let v = v.trim_ascii();
            let v = v
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(v);
            String::from_utf8_lossy(v).into_owned()
        })
    })
}

/// `%XX` decoding (invalid escapes kept as they are); `+` stays `+`.
fn percent_decode(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        if b == b'%'
            && let (Some(h), Some(l)) = (
                s.get(i + 1).and_then(|&c| hex(c)),
                s.get(i + 2).and_then(|&c| hex(c)),
            )
        {
            out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    out
}

/// `path` without query parameter `name` (every occurrence), for
/// `forwardOriginalToken: false`.
pub fn without_param(path: &[u8], name: &str) -> Option<String> {
    let start = path.iter().position(|&b| b == b'?')?;
    let (head, query) = (path.get(..start)?, path.get(start + 1..)?);
    let kept: Vec<&[u8]> = query
        .split(|&b| b == b'&')
        .filter(|pair| {
            let key = pair.split(|&b| b == b'=').next().unwrap_or(pair);
            percent_decode(key) != name.as_bytes()
        })
        .collect();
    let mut out = String::from_utf8_lossy(head).into_owned();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&String::from_utf8_lossy(&kept.join(&b'&')));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::HeaderList;

    fn req(headers: &[(&str, &str)], path: &str) -> HeaderList {
        headers
            .iter()
            .fold(HeaderList::request("GET", "h", path), |r, (k, v)| {
                r.with(k, v)
            })
    }

    #[test]
    fn the_prefix_is_found_anywhere_and_the_rest_is_the_token() {
        let loc = &Location::defaults()[0];
        let r = req(&[("authorization", "Basic x, Bearer a.b.c")], "/");
        assert_eq!(loc.find(&r).as_deref(), Some("a.b.c"));
        let merged = req(
            &[
                ("authorization", "Bearer a.b.c"),
                ("authorization", "Bearer d.e.f"),
            ],
            "/",
        );
        assert_eq!(loc.find(&merged).as_deref(), Some("a.b.c,Bearer d.e.f"));
        let lower = req(&[("authorization", "bearer a.b.c")], "/");
        assert_eq!(loc.find(&lower), None, "the prefix is case-sensitive");
        assert_eq!(loc.find(&req(&[("authorization", "Bearer")], "/")), None);
    }

    #[test]
    fn the_first_access_token_parameter_counts_even_when_empty() {
        let loc = &Location::defaults()[1];
        assert_eq!(
            loc.find(&req(&[], "/p?a=1&access_token=x.y.z&access_token=q"))
                .as_deref(),
            Some("x.y.z")
        );
        assert_eq!(loc.find(&req(&[], "/p?access_token=")).as_deref(), Some(""));
        assert_eq!(loc.find(&req(&[], "/p?access_token_x=1")), None);
    }

    #[test]
    fn cookies_are_found_by_name() {
        let loc = Location::Cookie("session".into());
        let r = req(&[("cookie", "a=1; session=\"t.o.k\"; b=2")], "/");
        assert_eq!(loc.find(&r).as_deref(), Some("t.o.k"));
    }

    #[test]
    fn a_forwarded_token_parameter_is_removed_from_the_path() {
        assert_eq!(
            without_param(b"/p?a=1&access_token=t&b=2", "access_token").as_deref(),
            Some("/p?a=1&b=2")
        );
        assert_eq!(
            without_param(b"/p?access_token=t", "access_token").as_deref(),
            Some("/p")
        );
    }
}
