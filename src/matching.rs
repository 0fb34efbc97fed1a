//! Compiled string and header matchers with Envoy's semantics, built once at
//! configure time (SPEC.md §VirtualService "HTTPMatchRequest → Envoy
//! RouteMatch"; Envoy `HeaderUtility::HeaderData`, `StringMatcherImpl`).

use crate::config::ConfigError;
use crate::config::virtual_service::StringMatch;
use crate::http::RequestView;

/// Longest regex Istio's validation accepts (`validateStringMatch`).
const MAX_REGEX_LEN: usize = 1024;

/// A compiled Istio `StringMatch`.
#[derive(Debug, Clone)]
pub enum StrMatcher {
    /// Equal bytes (ASCII case folded when `ignore_case`).
    Exact {
        /// The value.
        value: String,
        /// `ignoreUriCase`.
        ignore_case: bool,
    },
    /// Starts with (ASCII case folded when `ignore_case`).
    Prefix {
        /// The prefix.
        value: String,
        /// `ignoreUriCase`.
        ignore_case: bool,
    },
    /// RE2-style full match over bytes (Envoy 1.40 matches in Latin-1).
    Regex(ByteRegex),
    /// The value is present (`{}`: no match kind set, on headers, query
    /// parameters, `uri`, `method`, `scheme`, `authority`).
    Present,
}

/// Compiles `regex` as a full match over bytes.
pub fn full_match_regex(pattern: &str, path: &str) -> Result<ByteRegex, ConfigError> {
    if pattern.is_empty() {
        return Err(ConfigError::new(path, "regex must not be empty"));
    }
    if pattern.len() > MAX_REGEX_LEN {
        return Err(ConfigError::new(
            path,
            format!(
                "regex is {} characters long; at most {MAX_REGEX_LEN} are allowed",
                pattern.len()
            ),
        ));
    }
    ByteRegex::full_match(pattern)
        .map_err(|e| ConfigError::new(path, format!("regex {pattern:?} does not compile: {e}")))
}

/// A regex over bytes read as Latin-1, as Envoy 1.40 runs `safe_regex`
/// (SPEC.md §VirtualService, CVE-2026-73552): `.` is one byte, `\xE9` the
/// byte 0xE9, classes and case folding are ASCII.
///
/// `regex-lite`, not `regex`: ≈ 350 KB less in every filter that matches
/// regexes, for more instructions on a request that meets regex rules (a
/// PikeVM, not a lazy DFA: ×3 on a route of five; docs/size.md). It
/// searches `&str` only, so pattern and value are both read byte by byte
/// as the code points U+0000–U+00FF; a value that is ASCII (nearly all) is
/// used as it is.
#[derive(Debug, Clone)]
pub struct ByteRegex(regex_lite::Regex);

impl ByteRegex {
    /// `\A(?:pattern)\z`, its compiled program bounded (1 MiB).
    fn full_match(pattern: &str) -> Result<Self, regex_lite::Error> {
        let latin1: String = pattern.bytes().map(char::from).collect();
        regex_lite::RegexBuilder::new(&format!(r"\A(?:{latin1})\z"))
            .size_limit(1 << 20)
            .build()
            .map(ByteRegex)
    }

    /// Whether the whole of `value` matches.
    pub fn is_match(&self, value: &[u8]) -> bool {
        if value.is_ascii() {
            return std::str::from_utf8(value).is_ok_and(|v| self.0.is_match(v));
        }
        LATIN1.with(|buffer| match buffer.try_borrow_mut() {
            Ok(mut text) => {
                text.clear();
                text.extend(value.iter().copied().map(char::from));
                self.0.is_match(&text)
            }
            Err(_) => self
                .0
                .is_match(&value.iter().copied().map(char::from).collect::<String>()),
        })
    }
}

thread_local! {
    /// Where a value that is not ASCII is rewritten as Latin-1 code
    /// points: one buffer, reused, so a match allocates nothing once it is
    /// big enough.
    static LATIN1: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Escapes `text` to match itself in a [`ByteRegex`] pattern.
pub fn escape(text: &str) -> String {
    regex_lite::escape(text)
}

impl StrMatcher {
    /// Compiles `m` found at JSON `path`. `presence_ok` allows `{}` (Istio
    /// translates it to Envoy's `present_match`); elsewhere an empty match
    /// is an error. `regex: "*"` is a regex like any other, and `*` alone
    /// does not compile: Istio's validation refuses it (SPEC.md
    /// §VirtualService, HTTPMatchRequest `headers`).
    pub fn compile(
        m: &StringMatch,
        path: &str,
        ignore_case: bool,
        presence_ok: bool,
    ) -> Result<Self, ConfigError> {
        match (&m.exact, &m.prefix, &m.regex) {
            (Some(value), None, None) => Ok(StrMatcher::Exact {
                value: value.clone(),
                ignore_case,
            }),
            (None, Some(value), None) if value.is_empty() => Err(ConfigError::new(
                format!("{path}.prefix"),
                "prefix must not be empty",
            )),
            (None, Some(value), None) => Ok(StrMatcher::Prefix {
                value: value.clone(),
                ignore_case,
            }),
            (None, None, Some(re)) => {
                full_match_regex(re, &format!("{path}.regex")).map(StrMatcher::Regex)
            }
            (None, None, None) if presence_ok => Ok(StrMatcher::Present),
            (None, None, None) => Err(ConfigError::new(
                path,
                "one of exact, prefix or regex is required",
            )),
            _ => Err(ConfigError::new(
                path,
                "only one of exact, prefix or regex may be set",
            )),
        }
    }

    /// Whether `value` matches.
    pub fn matches(&self, value: &[u8]) -> bool {
        match self {
            StrMatcher::Exact {
                value: v,
                ignore_case: false,
            } => value == v.as_bytes(),
            StrMatcher::Exact {
                value: v,
                ignore_case: true,
            } => value.eq_ignore_ascii_case(v.as_bytes()),
            StrMatcher::Prefix {
                value: p,
                ignore_case,
            } => value.get(..p.len()).is_some_and(|head| {
                if *ignore_case {
                    head.eq_ignore_ascii_case(p.as_bytes())
                } else {
                    head == p.as_bytes()
                }
            }),
            StrMatcher::Regex(re) => re.is_match(value),
            StrMatcher::Present => true,
        }
    }
}

/// A header matcher: name (lower-case), matcher and whether it is inverted.
#[derive(Debug, Clone)]
pub struct HeaderMatcher {
    /// Lower-case header name.
    pub name: String,
    /// The value matcher.
    pub matcher: StrMatcher,
    /// `withoutHeaders`: the request matches when the header does not.
    pub invert: bool,
}

impl HeaderMatcher {
    /// Whether a request with header value `value` (None = absent) matches.
    /// An absent header never matches a positive matcher; for an inverted
    /// value matcher it is treated as empty (`treat_missing_header_as_empty`).
    pub fn matches(&self, value: Option<&[u8]>) -> bool {
        self.verdict(value.map(|v| self.matcher.matches(v)))
    }

    /// Whether `req` matches, a repeated header value by value: a positive
    /// matcher holds when any value matches, an inverted one when none
    /// does — Envoy 1.40's route header matchers
    /// (`match_headers_individually`, on since 1.39; SPEC.md
    /// §VirtualService, Verified on Envoy 1.40). Allocates nothing beyond
    /// what the view allocates.
    pub fn matches_request(&self, req: &(impl RequestView + ?Sized)) -> bool {
        let matcher = &self.matcher;
        self.verdict(req.any_header_value(&self.name, &mut |v| matcher.matches(v)))
    }

    /// The result given whether some value matched (`None`: the header is
    /// absent).
    fn verdict(&self, any_matched: Option<bool>) -> bool {
        match (any_matched, self.invert) {
            (Some(any), false) => any,
            (None, false) => false,
            (Some(any), true) => !any,
            (None, true) => match self.matcher {
                StrMatcher::Present => true,
                _ => !self.matcher.matches(b""),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sm(exact: Option<&str>, prefix: Option<&str>, regex: Option<&str>) -> StringMatch {
        StringMatch {
            exact: exact.map(Into::into),
            prefix: prefix.map(Into::into),
            regex: regex.map(Into::into),
        }
    }

    #[test]
    fn regex_is_a_full_match() {
        let m = StrMatcher::compile(&sm(None, None, Some(r"\d+")), "p", false, false).unwrap();
        assert!(m.matches(b"123"));
        assert!(!m.matches(b"a123"));
        assert!(!m.matches(b"123a"));
    }

    #[test]
    fn regexes_match_bytes_not_characters() {
        let m = StrMatcher::compile(&sm(None, None, Some("caf.")), "p", false, false).unwrap();
        assert!(m.matches(b"caf\xe9"), "Latin-1 byte");
        assert!(
            !m.matches("café".as_bytes()),
            "two UTF-8 bytes are two characters"
        );
        let m = StrMatcher::compile(&sm(None, None, Some("(?i)abc")), "p", false, false).unwrap();
        assert!(m.matches(b"ABC"));
        let m = StrMatcher::compile(&sm(None, None, Some("café")), "p", false, false).unwrap();
        assert!(m.matches("café".as_bytes()));
    }

    #[test]
    fn alternation_is_anchored_as_a_whole() {
        let m = StrMatcher::compile(&sm(None, None, Some("a|b")), "p", false, false).unwrap();
        assert!(m.matches(b"a"));
        assert!(!m.matches(b"ab"));
    }

    #[test]
    fn exact_is_case_sensitive_unless_ignore_case() {
        let m = StrMatcher::compile(&sm(Some("Premium"), None, None), "p", false, false).unwrap();
        assert!(!m.matches(b"premium"));
        let m = StrMatcher::compile(&sm(Some("Premium"), None, None), "p", true, false).unwrap();
        assert!(m.matches(b"premium"));
    }

    #[test]
    fn two_kinds_at_once_and_bad_regexes_are_refused_with_their_path() {
        let e = StrMatcher::compile(&sm(Some("a"), Some("b"), None), "x.uri", false, false)
            .unwrap_err();
        assert_eq!(e.path, "x.uri");
        let e = StrMatcher::compile(&sm(None, None, Some("(")), "x.uri", false, false).unwrap_err();
        assert_eq!(e.path, "x.uri.regex");
        assert!(e.message.contains("does not compile"), "{e}");
        let e = StrMatcher::compile(&sm(None, Some(""), None), "x.uri", false, false).unwrap_err();
        assert_eq!(e.path, "x.uri.prefix");
    }

    #[test]
    fn empty_match_means_presence_only_for_headers() {
        assert!(matches!(
            StrMatcher::compile(&sm(None, None, None), "h", false, true),
            Ok(StrMatcher::Present)
        ));
        assert!(StrMatcher::compile(&sm(None, None, None), "u", false, false).is_err());
    }

    #[test]
    fn a_missing_header_satisfies_without_headers() {
        let m = HeaderMatcher {
            name: "x".into(),
            matcher: StrMatcher::compile(&sm(Some("a"), None, None), "p", false, true).unwrap(),
            invert: true,
        };
        assert!(m.matches(None));
        assert!(!m.matches(Some(b"a")));
        assert!(m.matches(Some(b"b")));
    }
}

#[cfg(test)]
mod tests_regex;
