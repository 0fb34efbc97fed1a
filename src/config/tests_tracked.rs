//! The config deserializer (`tracked`) against `serde_path_to_error`, the
//! crate it replaced: the same path and message for any mutation of the
//! seed's and the tests' resources.

use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::authz::AuthorizationPolicy;
use super::destination_rule::DestinationRule;
use super::resource::RawResource;
use super::security::{PeerAuthentication, RequestAuthentication};
use super::tracked;
use super::virtual_service::VirtualService;
use crate::testutil::resources;

const FILES: &[&str] = &[
    "authentication-policy.yaml",
    "authorization-policy.yaml",
    "bench-authorization-policy.yaml",
    "canary-virtual-service.yaml",
    "demo-authn.yaml",
    "demo-extras.yaml",
    "destination-rule-example.yaml",
    "fault-injection-abort.yaml",
    "fault-injection-delay.yaml",
    "timeout-policy.yaml",
    "virtual-service-example.yaml",
];

/// Values put in place of a node: every JSON type, and the shapes the
/// mirrors expect somewhere (a duration, a string match, a percentage).
fn replacements() -> Vec<Value> {
    vec![
        Value::Null,
        json!(true),
        json!(3),
        json!(-2),
        json!(1.5),
        json!(18446744073709551615u64),
        json!("x"),
        json!("5s"),
        json!("STRICT"),
        json!([]),
        json!([1, "a"]),
        json!([{"exact": "a"}]),
        json!({}),
        json!({"exact": "a"}),
        json!({"value": 50}),
        json!({"mtach": 1}),
        json!({"a": 1, "b": 2}),
    ]
}

/// The nodes of `value` in preorder.
fn nodes(value: &Value) -> usize {
    1 + match value {
        Value::Object(m) => m.values().map(nodes).sum(),
        Value::Array(a) => a.iter().map(nodes).sum(),
        _ => 0,
    }
}

/// Applies `f` to node `n` (preorder) of `value`.
fn at(value: &mut Value, n: &mut usize, f: &mut dyn FnMut(&mut Value)) -> bool {
    if *n == 0 {
        f(value);
        return true;
    }
    *n -= 1;
    let children: Vec<&mut Value> = match value {
        Value::Object(m) => m.values_mut().collect(),
        Value::Array(a) => a.iter_mut().collect(),
        _ => Vec::new(),
    };
    children.into_iter().any(|c| at(c, n, f))
}

fn verdicts<T: DeserializeOwned + std::fmt::Debug>(value: &Value) -> (String, String) {
    let ours = match tracked::deserialize::<T>(value) {
        Ok(t) => format!("ok {t:?}"),
        Err((path, e)) => format!("{path:?}: {e}"),
    };
    let reference = match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(t) => format!("ok {t:?}"),
        Err(e) => {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            format!("{path:?}: {}", e.inner())
        }
    };
    (ours, reference)
}

/// Same verdict, except where `tracked` refuses a message written as a
/// list, which serde_json reads field by field and Istio refuses.
fn agree<T: DeserializeOwned + std::fmt::Debug>(value: &Value) -> Result<(), TestCaseError> {
    let (ours, reference) = verdicts::<T>(value);
    if ours != reference {
        prop_assert!(
            ours.contains(": invalid type: sequence, expected struct "),
            "{value}\nours:      {ours}\nreference: {reference}"
        );
    }
    Ok(())
}

fn check(value: &Value) -> Result<(), TestCaseError> {
    agree::<RawResource>(value)?;
    let spec = value.get("spec").unwrap_or(&Value::Null);
    match value.get("kind").and_then(Value::as_str) {
        Some("VirtualService") => agree::<VirtualService>(spec),
        Some("DestinationRule") => agree::<DestinationRule>(spec),
        Some("AuthorizationPolicy") => agree::<AuthorizationPolicy>(spec),
        Some("RequestAuthentication") => agree::<RequestAuthentication>(spec),
        Some("PeerAuthentication") => agree::<PeerAuthentication>(spec),
        _ => Ok(()),
    }
}

#[test]
fn every_resource_as_it_is_types_the_same() {
    for file in FILES {
        for value in resources(file) {
            check(&value).unwrap();
        }
    }
    let (ours, reference) = verdicts::<VirtualService>(&json!({"hosts": "a"}));
    assert_eq!(
        ours,
        "\"hosts\": invalid type: string \"a\", expected a sequence"
    );
    assert_eq!(ours, reference);
}

#[test]
fn a_message_written_as_a_list_is_refused() {
    let (ours, reference) = verdicts::<VirtualService>(&json!({"http": [[["a"]]]}));
    assert_eq!(
        ours,
        "\"http[0]\": invalid type: sequence, expected struct HttpRoute"
    );
    // serde_json reads it as the route's fields in order (`name` first).
    assert_eq!(
        reference,
        "\"http[0][0]\": invalid type: sequence, expected a string"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_mutation_names_the_same_path_and_reason(
        pick in any::<prop::sample::Index>(),
        node in any::<prop::sample::Index>(),
        replacement in any::<prop::sample::Index>(),
        key in any::<prop::sample::Index>(),
        insert in any::<bool>(),
    ) {
        let all: Vec<Value> = FILES.iter().flat_map(|f| resources(f)).collect();
        let mut value = pick.get(&all).clone();
        let mut n = node.index(nodes(&value));
        let replacements = replacements();
        let with = replacement.get(&replacements).clone();
        // A replaced node, or an entry added to an object (a field of some
        // other level, or one no level has).
        let keys = ["mtach", "route", "match", "weight", "action", "rules", "mode", "jwtRules", "subset", "uri"];
        let key = key.get(&keys).to_string();
        at(&mut value, &mut n, &mut |v: &mut Value| match v {
            Value::Object(m) if insert => {
                m.insert(key.clone(), with.clone());
            }
            other => *other = with.clone(),
        });
        check(&value)?;
    }
}
