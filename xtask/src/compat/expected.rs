//! The known differences of each Envoy release (`testdata/envoy-compat.yaml`)
//! and the verdict of a run against them: a release passes when exactly its
//! listed tests and conformance cases fail — an unlisted failure is a
//! regression, a listed one that passes is a stale entry.

use std::collections::BTreeMap;

use anyhow::Context as _;
use serde::Deserialize;

use crate::util::root;

/// One release's known differences, each with why it differs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Known {
    /// `file::test` → why.
    #[serde(default)]
    pub tests: BTreeMap<String, String>,
    /// Conformance case → why.
    #[serde(default)]
    pub conformance: BTreeMap<String, String>,
}

/// Every release's known differences, by release.
pub fn load() -> anyhow::Result<BTreeMap<String, Known>> {
    let path = root().join("testdata").join("envoy-compat.yaml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_norway::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// What a run found against the known differences.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Failures that are not known: each `name: why`.
    pub unexpected: Vec<String>,
    /// Known differences that did not show: each name.
    pub stale: Vec<String>,
    /// Known differences that showed.
    pub known: usize,
}

impl Verdict {
    /// Whether the release behaves as documented.
    pub fn holds(&self) -> bool {
        self.unexpected.is_empty() && self.stale.is_empty()
    }
}

/// `file::test` of a `file::test: why` failure.
pub fn test_name(failure: &str) -> &str {
    failure.split_once(": ").map_or(failure, |(name, _)| name)
}

/// The cases a conformance error names (`FAILED <case>: …` lines); `None`
/// when it failed otherwise (it did not run, a tool is missing, …).
pub fn conformance_cases(result: &str) -> Option<Vec<&str>> {
    if matches!(result, "ok" | "skipped") {
        return Some(Vec::new());
    }
    let cases: Vec<&str> = result
        .lines()
        .filter_map(|l| l.trim().strip_prefix("FAILED "))
        .filter_map(|l| l.split_once(':').map(|(case, _)| case.trim()))
        .collect();
    (!cases.is_empty()).then_some(cases)
}

/// Compares a run's failures and conformance result with `known`.
pub fn judge(failed: &[String], conformance: &str, known: &Known) -> Verdict {
    let mut v = Verdict::default();
    for f in failed {
        if known.tests.contains_key(test_name(f)) {
            v.known += 1;
        } else {
            v.unexpected.push(f.clone());
        }
    }
    for name in known.tests.keys() {
        if !failed.iter().any(|f| test_name(f) == name) {
            v.stale.push(name.clone());
        }
    }
    let skipped = conformance == "skipped";
    match conformance_cases(conformance) {
        Some(cases) => {
            for case in &cases {
                if known.conformance.contains_key(*case) {
                    v.known += 1;
                } else {
                    v.unexpected.push(format!("conformance {case}"));
                }
            }
            if !skipped {
                for case in known.conformance.keys() {
                    if !cases.contains(&case.as_str()) {
                        v.stale.push(format!("conformance {case}"));
                    }
                }
            }
        }
        None => v.unexpected.push(format!(
            "conformance: {}",
            conformance.lines().next().unwrap_or_default()
        )),
    }
    v
}

#[cfg(test)]
mod tests {
    use super::{Known, conformance_cases, judge};

    fn known() -> Known {
        Known {
            tests: [("a::x".to_owned(), "why".to_owned())].into(),
            conformance: [("seed/c".to_owned(), "why".to_owned())].into(),
        }
    }

    #[test]
    fn exactly_the_known_differences_hold() {
        let failed = vec!["a::x: assertion failed".to_owned()];
        let conformance = "1 request(s) failed:\n  FAILED seed/c: want 200, got 403";
        let v = judge(&failed, conformance, &known());
        assert!(v.holds(), "{v:?}");
        assert_eq!(v.known, 2);
    }

    #[test]
    fn an_unlisted_failure_and_a_stale_entry_do_not() {
        let failed = vec!["b::y: boom".to_owned()];
        let v = judge(&failed, "ok", &known());
        assert_eq!(v.unexpected, ["b::y: boom"]);
        assert_eq!(v.stale, ["a::x", "conformance seed/c"]);
        let v = judge(&[], "JWT runner: no such file", &Known::default());
        assert_eq!(v.unexpected, ["conformance: JWT runner: no such file"]);
    }

    #[test]
    fn conformance_cases_are_read_from_failed_lines() {
        assert_eq!(
            conformance_cases("2 failed:\n  FAILED a/b: want\n  FAILED c: got"),
            Some(vec!["a/b", "c"])
        );
        assert_eq!(conformance_cases("ok"), Some(vec![]));
        assert_eq!(conformance_cases("something else"), None);
    }
}
