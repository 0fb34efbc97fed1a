//! Sticky A/B assignment (beyond Istio: its consistent hashing cannot hold
//! a user to one *weighted* subset). A VirtualService opts in with
//! annotations, so the setting travels with the route and stays valid Istio:
//!
//! - `meshwasm.io/sticky-by: "header:x-user-id"` or `"cookie:NAME"`
//! - `meshwasm.io/sticky-test: "checkout-flow"` (default: the VirtualService's name)
//! - `meshwasm.io/sticky-response-header: "x-ab-test-variant"` (optional)
//!
//! The weighted pick is then FNV-1a-32(user id + test name) % 100, exactly
//! the seed's `getUserVariant` (ab-testing.go; SPEC.md §seed behaviours A/B):
//! bucket b goes to the destination whose cumulative weight range holds b.

use std::collections::BTreeMap;

use crate::config::ConfigError;
use crate::http::{RequestView, is_header_name};

/// Annotation naming where the user id comes from.
pub const STICKY_BY: &str = "meshwasm.io/sticky-by";
/// Annotation naming the test (hashed with the user id).
pub const STICKY_TEST: &str = "meshwasm.io/sticky-test";
/// Annotation naming a response header that repeats the variant.
pub const STICKY_RESPONSE_HEADER: &str = "meshwasm.io/sticky-response-header";
/// Request header carrying the chosen subset to the upstream (the seed's
/// `X-AB-Test-Variant`).
pub const VARIANT_HEADER: &str = "x-ab-test-variant";
/// User id of a request without one (the seed's).
pub const ANONYMOUS: &str = "anonymous";

/// Where the user id is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserIdSource {
    /// A request header (lower-case name).
    Header(String),
    /// A cookie.
    Cookie(String),
}

/// The sticky settings of one VirtualService.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sticky {
    /// Where the user id comes from.
    pub by: UserIdSource,
    /// The test name appended to the user id before hashing.
    pub test: String,
    /// Response header that repeats the variant, if any.
    pub response_header: Option<String>,
}

impl Sticky {
    /// Reads the annotations of a VirtualService; `None` when it does not
    /// opt in. `path` is the resource's JSON path.
    pub fn from_annotations(
        annotations: &BTreeMap<String, String>,
        vs_name: &str,
        path: &str,
    ) -> Result<Option<Sticky>, ConfigError> {
        let at = |key: &str| format!("{path}.metadata.annotations.{key}");
        let Some(by) = annotations.get(STICKY_BY) else {
            for key in [STICKY_TEST, STICKY_RESPONSE_HEADER] {
                if annotations.contains_key(key) {
                    return Err(ConfigError::new(at(key), format!("needs {STICKY_BY} too")));
                }
            }
            return Ok(None);
        };
        let by = match by.split_once(':') {
            Some(("header", name)) if is_header_name(name) => {
                UserIdSource::Header(name.to_ascii_lowercase())
            }
            Some(("cookie", name)) if is_header_name(name) => UserIdSource::Cookie(name.to_owned()),
            _ => {
                return Err(ConfigError::new(
                    at(STICKY_BY),
                    format!("{by:?} is neither \"header:<name>\" nor \"cookie:<name>\""),
                ));
            }
        };
        let test = annotations
            .get(STICKY_TEST)
            .cloned()
            .unwrap_or_else(|| vs_name.to_owned());
        let response_header = match annotations.get(STICKY_RESPONSE_HEADER) {
            Some(h) if is_header_name(h) => Some(h.to_ascii_lowercase()),
            Some(h) => {
                return Err(ConfigError::new(
                    at(STICKY_RESPONSE_HEADER),
                    format!("{h:?} is not a header name"),
                ));
            }
            None => None,
        };
        Ok(Some(Sticky {
            by,
            test,
            response_header,
        }))
    }

    /// The bucket (0..100) of the request's user.
    pub fn bucket(&self, req: &impl RequestView) -> u32 {
        let id = match &self.by {
            UserIdSource::Header(name) => req.header(name),
            UserIdSource::Cookie(name) => req
                .header("cookie")
                .and_then(|c| cookie(&c, name).map(|v| v.to_vec().into())),
        };
        let id = id.filter(|v| !v.is_empty());
        bucket(id.as_deref().unwrap_or(ANONYMOUS.as_bytes()), &self.test)
    }
}

/// `FNV-1a-32(user_id ‖ test) % 100`, as the seed's Go code computes it.
pub fn bucket(user_id: &[u8], test: &str) -> u32 {
    fnv1a32(user_id, test.as_bytes()) % 100
}

/// FNV-1a, 32 bits (offset 2166136261, prime 16777619) over `a ‖ b`.
/// Written out: the `fnv` crate only offers the 64-bit variant, and the seed
/// (Go's `hash/fnv.New32a`) uses 32 bits.
fn fnv1a32(a: &[u8], b: &[u8]) -> u32 {
    a.iter().chain(b).fold(0x811c_9dc5u32, |h, &byte| {
        (h ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

/// The value of cookie `name` in a `Cookie` header (RFC 6265 §5.4:
/// `name=value` pairs separated by `;` and optional spaces). Hand-written:
/// one split, and the crates that parse cookies allocate per pair.
fn cookie<'c>(header: &'c [u8], name: &str) -> Option<&'c [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        let (k, v) = (pair.get(..eq)?, pair.get(eq + 1..)?);
        (k.trim_ascii() == name.as_bytes()).then(|| v.trim_ascii())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::HeaderList;
    use crate::testutil::seed_variant;

    #[test]
    fn fnv_matches_the_published_test_vectors() {
        assert_eq!(fnv1a32(b"", b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a", b""), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foo", b"bar"), 0xbf9c_f968);
    }

    #[test]
    fn the_worked_values_of_the_spec_hold() {
        // SPEC.md §seed behaviours A/B 4.
        for (user, b) in [
            ("alice", 42),
            ("anonymous", 77),
            ("bob", 55),
            ("user-123", 38),
        ] {
            assert_eq!(bucket(user.as_bytes(), "checkout-flow"), b, "{user}");
        }
    }

    #[test]
    fn buckets_reproduce_the_seed_go_code_for_many_users() {
        for i in 0..1000 {
            let user = format!("user-{i}");
            let ours = if bucket(user.as_bytes(), "checkout-flow") < 50 {
                "A"
            } else {
                "B"
            };
            assert_eq!(ours, seed_variant(&user), "{user}");
        }
    }

    #[test]
    fn a_missing_or_empty_user_id_is_anonymous() {
        let s = Sticky {
            by: UserIdSource::Header("x-user-id".into()),
            test: "checkout-flow".into(),
            response_header: None,
        };
        let expected = bucket(b"anonymous", "checkout-flow");
        assert_eq!(s.bucket(&HeaderList::request("GET", "h", "/")), expected);
        assert_eq!(
            s.bucket(&HeaderList::request("GET", "h", "/").with("x-user-id", "")),
            expected
        );
    }

    #[test]
    fn the_user_id_can_come_from_a_cookie() {
        let s = Sticky {
            by: UserIdSource::Cookie("uid".into()),
            test: "t".into(),
            response_header: None,
        };
        let req = HeaderList::request("GET", "h", "/").with("cookie", "a=1; uid=bob ; c=3");
        assert_eq!(s.bucket(&req), bucket(b"bob", "t"));
    }

    #[test]
    fn bad_annotations_are_refused_with_their_path() {
        let mut a = BTreeMap::new();
        a.insert(STICKY_BY.to_owned(), "query:uid".to_owned());
        let e = Sticky::from_annotations(&a, "vs", "resources[0]").unwrap_err();
        assert_eq!(
            e.path,
            "resources[0].metadata.annotations.meshwasm.io/sticky-by"
        );
        let mut a = BTreeMap::new();
        a.insert(STICKY_TEST.to_owned(), "t".to_owned());
        assert!(Sticky::from_annotations(&a, "vs", "r").is_err());
    }
}
