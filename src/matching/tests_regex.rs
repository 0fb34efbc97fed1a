//! `ByteRegex` (regex-lite over Latin-1 code points) against the engine it
//! replaced, `regex::bytes` without Unicode: for any pattern of a small
//! RE2 grammar (bytes that are not ASCII, `.`, classes, Perl classes, case
//! folding, repetition, alternation) that the old engine compiled, the same
//! answer on any bytes.

use proptest::prelude::*;

use super::full_match_regex;

fn atom() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "a",
        "b",
        "A",
        "0",
        " ",
        "é",
        r"\xE9",
        r"\xC3",
        r"\xFF",
        ".",
        "[a-c]",
        "[^a]",
        r"[\xC3\xA9]",
        r"\w",
        r"\d",
        r"\s",
        r"\W",
        r"\b",
        "(?i)a",
        "(?i:B)",
        r"\.",
        "[[:alpha:]]",
        "(?s:.)",
    ])
    .prop_map(str::to_owned)
}

fn pattern() -> impl Strategy<Value = String> {
    let leaf = prop::collection::vec(atom(), 1..4).prop_map(|v| v.concat());
    leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a}|{b}")),
            (
                inner.clone(),
                prop::sample::select(vec!["*", "+", "?", "{1,2}", "*?"])
            )
                .prop_map(|(a, r)| format!("(?:{a}){r}")),
            (inner.clone(), inner).prop_map(|(a, b)| format!("{a}{b}")),
        ]
    })
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    let bytes = vec![
        b'a', b'b', b'c', b'A', b'B', b'0', b' ', b'\n', b'.', 0xC3, 0xA9, 0xE9, 0xFF,
    ];
    prop::collection::vec(prop::sample::select(bytes), 0..6)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn agrees_with_the_regex_crate_on_bytes(pattern in pattern(), inputs in prop::collection::vec(input(), 12)) {
        let old = regex::bytes::RegexBuilder::new(&format!(r"\A(?:{pattern})\z"))
            .unicode(false)
            .build();
        // A pattern the old engine refused (`é` inside a class) is read as
        // RE2 reads it in Latin-1 mode: its bytes.
        let Ok(old) = old else { return Ok(()) };
        let new = full_match_regex(&pattern, "p");
        prop_assert!(new.is_ok(), "{pattern:?}: {new:?}");
        let new = new.unwrap();
        for value in &inputs {
            prop_assert_eq!(new.is_match(value), old.is_match(value), "{:?} on {:?}", pattern, value);
        }
    }
}

#[test]
fn a_character_that_is_not_ascii_is_its_bytes_in_a_class_too() {
    let re = full_match_regex("[é]", "p").unwrap();
    assert!(re.is_match(b"\xC3"));
    assert!(re.is_match(b"\xA9"));
    assert!(!re.is_match("é".as_bytes()));
    let re = full_match_regex("[^é]+", "p").unwrap();
    assert!(re.is_match(b"ab\xE9\xFF"));
    assert!(!re.is_match(b"a\xC3"));
}

#[test]
fn the_buffer_for_values_that_are_not_ascii_is_reused_without_leftovers() {
    let re = full_match_regex(r"x\xFF", "p").unwrap();
    assert!(!re.is_match(b"\xFF\xFF\xFF\xFF\xFF\xFFx\xFF"));
    assert!(re.is_match(b"x\xFF"));
}
