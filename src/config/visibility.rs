//! Which VirtualServices and DestinationRules the workload sees (Istio's
//! `exportTo`, pilot/pkg/model/push_context.go `IsVisible`-style checks, and
//! a DestinationRule's `workloadSelector`, which "does not apply across
//! namespace boundaries", destination_rule.proto). A resource the workload
//! does not see is left out of the [`super::Document`] after validation,
//! with a warning, so every filter and stage reads only what applies.

use std::collections::BTreeMap;

use super::Workload;
use super::destination_rule::WorkloadSelector;

/// Whether a resource in namespace `ns` with `export_to` is visible in the
/// workload's namespace: no list (Istio's default, `*`), `*`, `.` from the
/// same namespace, or the workload's namespace by name.
pub fn exported_to(export_to: &[String], ns: &str, workload_ns: &str) -> bool {
    export_to.is_empty()
        || export_to
            .iter()
            .any(|e| e == "*" || e == workload_ns || (e == "." && ns == workload_ns))
}

/// Whether a DestinationRule's `workloadSelector` selects the workload:
/// same namespace, and every label present with its value.
pub fn selects(selector: &WorkloadSelector, ns: &str, workload: &Workload) -> bool {
    ns == workload.namespace && labels_match(&selector.match_labels, &workload.labels)
}

fn labels_match(want: &BTreeMap<String, String>, have: &BTreeMap<String, String>) -> bool {
    want.iter().all(|(k, v)| have.get(k) == Some(v))
}

/// The warning for a resource left out, or `None` when the workload sees it.
pub fn hidden(
    kind: &str,
    index: usize,
    ns: &str,
    name: &str,
    export_to: &[String],
    selector: Option<&WorkloadSelector>,
    workload: &Workload,
) -> Option<String> {
    let wns = &workload.namespace;
    if !exported_to(export_to, ns, wns) {
        return Some(format!(
            "resources[{index}]: {kind} {ns}/{name} is exported to {export_to:?}, not to the \
             workload's namespace {wns:?}; skipped"
        ));
    }
    match selector {
        Some(sel) if !selects(sel, ns, workload) => Some(format!(
            "resources[{index}]: {kind} {ns}/{name} applies to workloads {:?} in namespace \
             {ns:?}, not to this one ({wns:?}, {:?}); skipped",
            sel.match_labels, workload.labels
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn export_to_dot_star_and_namespaces() {
        assert!(exported_to(&[], "a", "b"), "no list: everywhere");
        assert!(exported_to(&l(&["*"]), "a", "b"));
        assert!(exported_to(&l(&["."]), "a", "a"));
        assert!(!exported_to(&l(&["."]), "a", "b"));
        assert!(exported_to(&l(&["x", "b"]), "a", "b"));
        assert!(!exported_to(&l(&["x"]), "a", "b"));
    }

    #[test]
    fn a_workload_selector_selects_in_its_own_namespace_only() {
        let w = Workload {
            namespace: "ns".into(),
            labels: BTreeMap::from([("app".into(), "a".into()), ("v".into(), "1".into())]),
        };
        let sel = |k: &str, v: &str| WorkloadSelector {
            match_labels: BTreeMap::from([(k.to_owned(), v.to_owned())]),
        };
        assert!(selects(&sel("app", "a"), "ns", &w));
        assert!(
            !selects(&sel("app", "a"), "other", &w),
            "no crossing namespaces"
        );
        assert!(!selects(&sel("app", "b"), "ns", &w));
        assert!(
            hidden(
                "DestinationRule",
                1,
                "other",
                "d",
                &[],
                Some(&sel("app", "a")),
                &w
            )
            .is_some()
        );
        assert!(hidden("VirtualService", 0, "ns", "v", &l(&["."]), None, &w).is_none());
    }
}
