//! The shared rules, one test each, with Istio's own table values where
//! its tests give them (agent/validation_test.go, labels, visibility).

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::config::duration::parse;

fn d(text: &str) -> IstioDuration {
    IstioDuration(parse(text).unwrap())
}

#[test]
fn an_empty_string_is_proto3_unset() {
    assert_eq!(set(&None), None);
    assert_eq!(set(&Some(String::new())), None);
    assert_eq!(set(&Some("x".into())), Some("x"));
}

#[test]
fn durations_are_whole_milliseconds_of_at_least_one() {
    assert_eq!(duration(d("1ms"), "p"), Ok(Duration::from_millis(1)));
    assert_eq!(duration(d("1.5s"), "p"), Ok(Duration::from_millis(1500)));
    let e = duration(d("999us"), "p.timeout").unwrap_err();
    assert_eq!(e.path, "p.timeout");
    assert!(e.message.contains("at least 1ms"), "{e}");
    assert!(duration(d("0s"), "p").is_err());
    let e = duration(d("1.0005s"), "p").unwrap_err();
    assert!(e.message.contains("millisecond precision"), "{e}");
}

#[test]
fn ports_are_1_to_65535() {
    assert!(port(1, "p").is_ok() && port(65_535, "p").is_ok());
    for bad in [0, -1, 65_536] {
        let e = port(bad, "p").unwrap_err();
        assert_eq!(
            e.message,
            format!("port number {bad} must be in the range 1..65535")
        );
    }
}

#[test]
fn integer_percentages_are_0_to_100() {
    assert!(percent(0, "p").is_ok() && percent(100, "p").is_ok());
    assert!(percent(-1, "p").is_err() && percent(101, "p").is_err());
}

#[test]
fn fractional_percentages_are_0_or_at_least_a_millionth_and_at_most_100() {
    for ok in [0.0, 0.0001, 50.5, 100.0] {
        assert!(percentage(ok, "p").is_ok(), "{ok}");
    }
    for bad in [-0.1, 0.00001, 100.01, f64::NAN] {
        assert!(percentage(bad, "p").is_err(), "{bad}");
    }
}

#[test]
fn dns1123_labels_and_their_wildcard_forms() {
    for ok in ["a", "a-b", "A1", "0", &"a".repeat(63)] {
        assert!(is_dns1123_label(ok), "{ok}");
    }
    for bad in ["", "-a", "a-", "a.b", "a_b", &"a".repeat(64), "*"] {
        assert!(!is_dns1123_label(bad), "{bad}");
    }
    for ok in ["*", "*foo", "*-foo", "foo"] {
        assert!(is_wildcard_dns1123_label(ok), "{ok}");
    }
    for bad in ["**", "foo*", "*.", "*--"] {
        assert!(!is_wildcard_dns1123_label(bad), "{bad}");
    }
}

#[test]
fn wildcard_domains_follow_istios_table() {
    // agent/validation_test.go TestValidateWildcardDomain.
    for ok in [
        "*",
        "*.foo.com",
        "*foo.com",
        "foo.com",
        "istio.io.",
        "a",
        "foo.bar",
    ] {
        assert!(wildcard_domain(ok).is_ok(), "{ok}");
    }
    let long = format!("{}.com", "x".repeat(252));
    for bad in [
        "",
        &long,
        "foo.*.com",
        "*.foo.*.com",
        "1.1.1.1",
        "foo.ba!r",
        "default/baz",
        "foo.*",
    ] {
        assert!(wildcard_domain(bad).is_err(), "{bad}");
    }
    assert!(fqdn("foo.com").is_ok());
    assert!(fqdn("*.foo.com").is_err());
    assert!(fqdn("a.123").is_err(), "all-numeric top-level domain");
}

#[test]
fn host_overlap_and_subset_are_istios_name_matches() {
    assert!(hosts_overlap("*.foo.bar", "*.bar"));
    assert!(hosts_overlap("*.bar", "x.bar"));
    assert!(hosts_overlap("a.b", "a.b"));
    assert!(!hosts_overlap("a.b", "A.b"), "names compare as written");
    assert!(!hosts_overlap("*.foo.com", "foo.com"));
    assert!(host_subset_of("a.foo.com", "*.foo.com"));
    assert!(host_subset_of("*.a.foo.com", "*.foo.com"));
    assert!(!host_subset_of("*.foo.com", "a.foo.com"));
    assert!(!host_subset_of("*.com", "*.foo.com"));
}

#[test]
fn label_keys_and_values_are_kubernetes_names() {
    let m = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), v.to_owned())]);
    for (k, v) in [("app", "x"), ("example.com/app", "v1.2_3"), ("a", "")] {
        assert!(labels(&m(k, v), "p").is_ok(), "{k}={v}");
    }
    for (k, v) in [
        ("", "x"),
        ("a b", "x"),
        ("-a", "x"),
        ("a", "-x"),
        ("a", "x y"),
        ("bad_/a", "x"),
    ] {
        let e = labels(&m(k, v), "p.sourceLabels").unwrap_err();
        assert!(e.path.starts_with("p.sourceLabels."), "{e}");
    }
}

#[test]
fn export_to_takes_dot_star_or_namespaces_once() {
    let l = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    for ok in [&[][..], &["."], &["*"], &[".", "other"], &["ns1", "ns2"]] {
        assert!(export_to("ns", &l(ok), false, "p").is_ok(), "{ok:?}");
    }
    for bad in [
        &[".", "ns"][..],
        &["a", "a"],
        &["~"],
        &["*", "a"],
        &["Bad_ns"],
    ] {
        assert!(
            export_to("ns", &l(bad), false, "p.exportTo").is_err(),
            "{bad:?}"
        );
    }
    assert!(export_to("ns", &l(&["."]), true, "p").is_ok());
    assert!(export_to("ns", &l(&["other"]), true, "p").is_err());
    assert!(export_to("ns", &l(&[".", "other"]), true, "p").is_err());
}

#[test]
fn subnets_are_addresses_or_cidr_blocks() {
    for ok in ["1.2.3.4", "1.2.3.0/24", "2001:db8::/32", "::1"] {
        assert!(ip_subnet(ok, "p").is_ok(), "{ok}");
    }
    for bad in [
        "1.2.3.4/33",
        "1.2.3/24",
        "a/8",
        "1.2.3.4/",
        "::/129",
        "1.2.3.4/08",
    ] {
        assert!(ip_subnet(bad, "p").is_err(), "{bad}");
    }
}

#[test]
fn header_names_jwt_claims_and_values() {
    assert!(is_istio_header_name("x-foo") && is_istio_header_name("a,b"));
    assert!(!is_istio_header_name("a b") && !is_istio_header_name(""));
    assert!(is_jwt_claim_route("@request.auth.claims.sub"));
    assert!(is_jwt_claim_route("@request.auth.claims[a][b]"));
    assert!(!is_jwt_claim_route("@request.auth.claims."));
    assert!(!is_jwt_claim_route("@request.auth.claims[]"));
    assert!(header_value("a\tb %HOSTNAME% 100%%", "p").is_ok());
    let e = header_value("50%", "p.set.x").unwrap_err();
    assert_eq!(e.path, "p.set.x");
    assert!(header_value("a\nb", "p").is_err());
}

#[test]
fn base64_decodes_with_and_without_padding() {
    assert_eq!(base64_decode("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
    assert_eq!(base64_decode("aGVsbG8").as_deref(), Some(&b"hello"[..]));
    assert_eq!(base64_decode("aGk=").as_deref(), Some(&b"hi"[..]));
    assert_eq!(base64_decode(""), Some(Vec::new()));
    assert_eq!(base64_decode("a"), None);
    assert_eq!(base64_decode("a$=="), None);
}
