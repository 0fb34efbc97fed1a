//! Path normalisation against what Envoy 1.40's HTTP connection manager
//! makes of the same raw paths (observed: `normalize_path: true`, then
//! `merge_slashes`, then `path_with_escaped_slashes_action:
//! UNESCAPE_AND_FORWARD`, each path sent raw and read back from
//! `%REQ(:PATH)%`), and every bypass class of SPEC.md §AuthorizationPolicy
//! 12 as "must deny" and "must not break an allowed path".

use std::borrow::Cow;

use serde_json::json;

use super::path::{Malformed, for_matching, normalize};
use super::tests::{ALLOW, Out, ap, check_decisions, check_with, denied, get, none};
use crate::config::PathNormalization::{self, Base, DecodeAndMergeSlashes, MergeSlashes};

/// A raw path and what BASE, MERGE_SLASHES and DECODE_AND_MERGE_SLASHES
/// make of it; `None` = 400.
type Observed = (
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
);

const ENVOY: &[Observed] = &[
    (
        "/api/products",
        Some("/api/products"),
        Some("/api/products"),
        Some("/api/products"),
    ),
    (
        "/api/./products",
        Some("/api/products"),
        Some("/api/products"),
        Some("/api/products"),
    ),
    (
        "/api/products/../admin",
        Some("/api/admin"),
        Some("/api/admin"),
        Some("/api/admin"),
    ),
    (
        "/admin/.",
        Some("/admin/"),
        Some("/admin/"),
        Some("/admin/"),
    ),
    (
        "/public/%2e%2e/admin",
        Some("/admin"),
        Some("/admin"),
        Some("/admin"),
    ),
    (
        "/public/%2E%2E/admin",
        Some("/admin"),
        Some("/admin"),
        Some("/admin"),
    ),
    (
        "/public/..%2Fadmin",
        Some("/public/..%2Fadmin"),
        Some("/public/..%2Fadmin"),
        Some("/admin"),
    ),
    (
        "/public//../admin",
        Some("/public/admin"),
        Some("/public/admin"),
        Some("/public/admin"),
    ),
    ("//admin", Some("//admin"), Some("/admin"), Some("/admin")),
    ("/\\admin", Some("//admin"), Some("/admin"), Some("/admin")),
    (
        "/public\\..\\admin",
        Some("/admin"),
        Some("/admin"),
        Some("/admin"),
    ),
    (
        "/admin%2fusers",
        Some("/admin%2fusers"),
        Some("/admin%2fusers"),
        Some("/admin/users"),
    ),
    (
        "/admin%5Cusers",
        Some("/admin%5Cusers"),
        Some("/admin%5Cusers"),
        Some("/admin/users"),
    ),
    (
        "/%2Fadmin",
        Some("/%2Fadmin"),
        Some("/%2Fadmin"),
        Some("/admin"),
    ),
    ("/%61dmin", Some("/admin"), Some("/admin"), Some("/admin")),
    ("/admin%00", None, None, None),
    (
        "/admin%252Fusers",
        Some("/admin%252Fusers"),
        Some("/admin%252Fusers"),
        Some("/admin%252Fusers"),
    ),
    (
        "/%c0%ae%c0%ae/admin",
        Some("/%c0%ae%c0%ae/admin"),
        Some("/%c0%ae%c0%ae/admin"),
        Some("/%c0%ae%c0%ae/admin"),
    ),
    ("/..;/admin", Some("/admin"), Some("/admin"), Some("/admin")),
    (
        "/public/..;/admin",
        Some("/admin"),
        Some("/admin"),
        Some("/admin"),
    ),
    (
        "/admin;x=y",
        Some("/admin;x=y"),
        Some("/admin;x=y"),
        Some("/admin;x=y"),
    ),
    ("/a/b;c/../d", Some("/a/d"), Some("/a/d"), Some("/a/d")),
    ("/a%2e%2e/b", Some("/a../b"), Some("/a../b"), Some("/a../b")),
    ("/a/..", Some("/"), Some("/"), Some("/")),
    ("/..", Some("/"), Some("/"), Some("/")),
    (
        "/a?b=/../c",
        Some("/a?b=/../c"),
        Some("/a?b=/../c"),
        Some("/a?b=/../c"),
    ),
    (
        "/a//b//?x=//y",
        Some("/a//b//?x=//y"),
        Some("/a/b/?x=//y"),
        Some("/a/b/?x=//y"),
    ),
    ("/a%3cb", Some("/a%3cb"), Some("/a%3cb"), Some("/a%3cb")),
    ("/a\"b", Some("/a%22b"), Some("/a%22b"), Some("/a%22b")),
    (
        "/a<b>",
        Some("/a%3Cb%3E"),
        Some("/a%3Cb%3E"),
        Some("/a%3Cb%3E"),
    ),
    (
        "/a{b}|c^d`e",
        Some("/a%7Bb%7D%7Cc%5Ed%60e"),
        Some("/a%7Bb%7D%7Cc%5Ed%60e"),
        Some("/a%7Bb%7D%7Cc%5Ed%60e"),
    ),
    ("/a%zz", Some("/a%zz"), Some("/a%zz"), Some("/a%zz")),
    ("/a%4", Some("/a%4"), Some("/a%4"), Some("/a%4")),
    (
        "/%7e%2d%5f%41%30",
        Some("/~-_A0"),
        Some("/~-_A0"),
        Some("/~-_A0"),
    ),
    ("/a/.;x/b", Some("/a/b"), Some("/a/b"), Some("/a/b")),
    ("/a/..;x\\b", Some("/"), Some("/"), Some("/")),
    (
        "/a/b/..%5c..",
        Some("/a/b/..%5c.."),
        Some("/a/b/..%5c.."),
        Some("/"),
    ),
    (
        "/x/%2F%2F/y",
        Some("/x/%2F%2F/y"),
        Some("/x/%2F%2F/y"),
        Some("/x/y"),
    ),
    (
        "/x/%5c%5c/y",
        Some("/x/%5c%5c/y"),
        Some("/x/%5c%5c/y"),
        Some("/x/y"),
    ),
    (
        "/a/%2e%2e%2f/b",
        Some("/a/..%2f/b"),
        Some("/a/..%2f/b"),
        Some("/b"),
    ),
    (
        "/a!b$c&d'e(f)g*h+i,j;k=l:m@n[o]p",
        Some("/a!b$c&d'e(f)g*h+i,j;k=l:m@n[o]p"),
        None,
        None,
    ),
];

/// Where meshwasm is stricter: Envoy leaves `%2e;x` as `.;x` (a dot
/// segment to its own second pass and to Java servers); meshwasm resolves
/// it in one pass.
const STRICTER: &[(&str, &str, &str)] = &[
    ("/a/%2e;x/b", "/a/.;x/b", "/a/b"),
    ("/public/%2e%2e;x/admin", "/public/..;x/admin", "/admin"),
    ("/public/.%2E;x/admin", "/public/..;x/admin", "/admin"),
    ("/a\\..;x\\b", "/a/..;x/b", "/b"),
    ("/a\\..;x/b\\c", "/a/..;x/b/c", "/b/c"),
];

#[test]
fn dot_segments_with_parameters_are_resolved_in_their_escaped_form_too() {
    for &(raw, envoy_once, meshwasm) in STRICTER {
        assert_eq!(
            text(normalize(Base, raw.as_bytes())).as_deref(),
            Some(meshwasm),
            "{raw}"
        );
        assert_eq!(
            text(normalize(Base, envoy_once.as_bytes())).as_deref(),
            Some(meshwasm),
            "{raw}"
        );
    }
}

fn text(r: Result<Cow<'_, [u8]>, Malformed>) -> Option<String> {
    r.ok().map(|p| String::from_utf8(p.into_owned()).unwrap())
}

#[test]
fn every_level_normalises_as_envoy_1_40_does() {
    for &(raw, base, merge, decode) in ENVOY {
        assert_eq!(
            text(normalize(Base, raw.as_bytes())).as_deref(),
            base,
            "BASE {raw}"
        );
        if merge.is_some() || decode.is_some() {
            assert_eq!(
                text(normalize(MergeSlashes, raw.as_bytes())).as_deref(),
                merge,
                "MERGE {raw}"
            );
            assert_eq!(
                text(normalize(DecodeAndMergeSlashes, raw.as_bytes())).as_deref(),
                decode,
                "DECODE {raw}"
            );
        }
    }
}

#[test]
fn normalising_twice_changes_nothing_more() {
    for level in [Base, MergeSlashes, DecodeAndMergeSlashes] {
        for &(raw, ..) in ENVOY {
            if let Ok(once) = normalize(level, raw.as_bytes()) {
                let twice = normalize(level, &once).unwrap();
                assert_eq!(twice, once, "{level:?} {raw}");
                assert!(matches!(twice, Cow::Borrowed(_)), "{level:?} {raw}");
            }
        }
    }
}

#[test]
fn a_normal_path_is_borrowed_not_copied() {
    for level in [
        PathNormalization::None,
        Base,
        MergeSlashes,
        DecodeAndMergeSlashes,
    ] {
        let p = normalize(level, b"/api/products/1?x=a/../b").unwrap();
        assert!(matches!(p, Cow::Borrowed(_)), "{level:?}");
    }
    assert!(matches!(
        for_matching(b"/api/products?q=;", true),
        Cow::Borrowed(b"/api/products")
    ));
}

#[test]
fn none_keeps_the_path_but_a_fragment_is_malformed_at_every_level() {
    assert_eq!(
        text(normalize(PathNormalization::None, b"/public/../admin%00")).as_deref(),
        Some("/public/../admin%00")
    );
    for level in [
        PathNormalization::None,
        Base,
        MergeSlashes,
        DecodeAndMergeSlashes,
    ] {
        assert_eq!(
            normalize(level, b"/admin#frag"),
            Err(Malformed),
            "{level:?}"
        );
    }
    assert_eq!(normalize(Base, b"*"), Err(Malformed));
    assert_eq!(
        normalize(Base, b"/caf\xc3\xa9").map(|p| p.into_owned()),
        Ok(b"/caf%C3%A9".to_vec())
    );
    assert_eq!(normalize(Base, b"/caf\xe9"), Err(Malformed));
}

#[test]
fn path_parameters_are_stripped_from_every_segment_for_matching() {
    assert_eq!(&*for_matching(b"/admin;x=y", false), b"/admin");
    assert_eq!(
        &*for_matching(b"/admin;x=y/users;v=1?a=;b", false),
        b"/admin/users"
    );
    assert_eq!(&*for_matching(b"/;x/admin", false), b"//admin");
    assert_eq!(&*for_matching(b"/;x/admin", true), b"/admin");
}

fn deny_admin() -> serde_json::Value {
    ap(
        "deny-admin",
        json!({"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin", "/admin/*"]}}]}]}),
    )
}

fn level(l: &str) -> serde_json::Value {
    json!({"pathNormalization": l})
}

/// Each bypass form, and the first level from which a DENY on `/admin`
/// holds against it (`None`: at every level, `NONE` included).
const BYPASSES: &[(&str, Option<&str>)] = &[
    ("/admin", None),
    ("/admin?x=1", None),
    ("/admin/", None),
    ("/admin/.", None),
    ("/admin;x=y", None),
    ("/admin;x=y/users", None),
    ("/%61dmin", Some("BASE")),
    ("/public/../admin", Some("BASE")),
    ("/public/%2e%2e/admin", Some("BASE")),
    ("/public/%2E%2E/admin", Some("BASE")),
    ("/./admin", Some("BASE")),
    ("/public\\..\\admin", Some("BASE")),
    ("/..;/admin", Some("BASE")),
    ("/public/..;/admin", Some("BASE")),
    ("/public/%2e%2e;x/admin", Some("BASE")),
    ("//admin", Some("MERGE_SLASHES")),
    ("/\\admin", Some("MERGE_SLASHES")),
    ("/admin%2Fusers", Some("DECODE_AND_MERGE_SLASHES")),
    ("/admin%2fusers", Some("DECODE_AND_MERGE_SLASHES")),
    ("/admin%5Cusers", Some("DECODE_AND_MERGE_SLASHES")),
    ("/%2Fadmin", Some("DECODE_AND_MERGE_SLASHES")),
    ("/public/..%2Fadmin", Some("DECODE_AND_MERGE_SLASHES")),
];

const LEVELS: [&str; 4] = ["NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"];

#[test]
fn a_deny_on_admin_holds_against_every_bypass_form_from_its_normalisation_level() {
    let id = "ns[foo]-policy[deny-admin]-rule[0]";
    for (i, l) in LEVELS.iter().enumerate() {
        let cases = BYPASSES
            .iter()
            .map(|&(path, from)| {
                let holds = from.is_none_or(|f| LEVELS.iter().position(|x| *x == f).unwrap() <= i);
                (get(path), if holds { denied(id) } else { ALLOW })
            })
            .collect();
        check_decisions(vec![deny_admin()], level(l), cases);
    }
}

#[test]
fn forms_that_stay_outside_admin_are_not_denied_at_any_level() {
    for l in LEVELS {
        let cases = [
            "/ADMIN",
            "/admin%252Fusers",
            "/%c0%ae%c0%ae/admin",
            "/administrator",
            "/x/admin",
        ]
        .iter()
        .map(|p| (get(p), ALLOW))
        .collect();
        check_decisions(vec![deny_admin()], level(l), cases);
    }
}

#[test]
fn normalisation_never_breaks_an_allowed_path() {
    let allow = ap(
        "allow-api",
        json!({"rules": [{"to": [{"operation": {"paths": ["/api/products", "/public/*"]}}]}]}),
    );
    for l in ["BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"] {
        let cases = [
            "/api/products",
            "/api/products?page=2",
            "/api/./products",
            "/api/products/../products",
            "/api/x/../products",
            "/api/%70roducts",
            "/api\\products",
            "/public/x",
            "/public/x;v=1",
            "/public/../public/x",
            "/public//../public/x",
        ]
        .iter()
        .map(|p| (get(p), ALLOW))
        .collect();
        check_decisions(vec![allow.clone()], level(l), cases);
    }
    let merged = [
        ("//api/products", "MERGE_SLASHES"),
        ("/api//products", "MERGE_SLASHES"),
        ("/api%2Fproducts", "DECODE_AND_MERGE_SLASHES"),
    ];
    for (p, l) in merged {
        check_decisions(vec![allow.clone()], level(l), vec![(get(p), ALLOW)]);
    }
}

#[test]
fn an_allow_positive_policy_refuses_what_normalisation_takes_outside_it() {
    let allow = ap(
        "allow-public",
        json!({"rules": [{"to": [{"operation": {"paths": ["/public", "/public/*"]}}]}]}),
    );
    let cases = [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/..;/admin",
        "/public%2Fx",
        "/admin;x=y",
    ]
    .iter()
    .map(|p| (get(p), none()))
    .collect();
    check_decisions(vec![allow.clone()], level("BASE"), cases);
    check_decisions(
        vec![allow],
        level("DECODE_AND_MERGE_SLASHES"),
        vec![(get("/public/..%2Fadmin"), none())],
    );
}

#[test]
fn a_malformed_path_is_refused_with_400_before_any_policy() {
    for l in ["BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"] {
        check_with(
            vec![],
            level(l),
            vec![
                (get("/admin%00"), None, Out::Rejected),
                (get("/a#b"), None, Out::Rejected),
            ],
        );
    }
    check_with(
        vec![],
        level("NONE"),
        vec![
            (get("/admin%00"), None, ALLOW),
            (get("/a#b"), None, Out::Rejected),
        ],
    );
}

#[test]
fn the_path_is_written_back_only_when_normalisation_changed_it() {
    check_with(
        vec![],
        level("BASE"),
        vec![
            (
                get("/a/./b?x=/./"),
                None,
                Out::Allowed(Some("/a/b?x=/./".into())),
            ),
            (get("/a/b"), None, ALLOW),
        ],
    );
    check_with(vec![], level("NONE"), vec![(get("/a/./b"), None, ALLOW)]);
}
