//! Property tests: whatever a user configures or a client sends, parsing,
//! compiling and routing never panic (a panic traps the VM and Envoy then
//! fails every request on that worker — SPEC.md §proxy-wasm ABI G).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use meshwasm::config::{Document, Kind, validate_all};
use meshwasm::http::HeaderList;
use meshwasm::rng::SplitMix64;
use meshwasm::route::RouteTable;
use proptest::prelude::*;
use serde_json::{Value, json};

fn seed_document() -> Value {
    let resources = common::seed_resources(&[
        "virtual-service-example.yaml",
        "destination-rule-example.yaml",
        "canary-virtual-service.yaml",
        "timeout-policy.yaml",
    ]);
    json!({"workload": {"namespace": "default"}, "resources": resources})
}

/// Arbitrary JSON: scalars and small nested arrays/objects.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e6f64..1e6).prop_map(|n| json!(n)),
        "[a-z*/.:|{}()\\[\\]?^$-]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Replaces the value at a random position of `doc` with `replacement`.
fn mutate(doc: &mut Value, mut choice: usize, replacement: Value) {
    let mut cur = doc;
    loop {
        let len = match cur {
            Value::Object(m) => m.len(),
            Value::Array(a) => a.len(),
            _ => 0,
        };
        if len == 0 || choice.is_multiple_of(4) {
            *cur = replacement;
            return;
        }
        let i = (choice / 4) % len;
        choice /= 7;
        cur = match cur {
            Value::Object(m) => m.values_mut().nth(i).unwrap(),
            Value::Array(a) => &mut a[i],
            _ => return,
        };
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_are_refused_or_accepted_never_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = validate_all(&bytes);
    }

    #[test]
    fn mutated_seed_documents_never_panic_the_compiler(choice in any::<usize>(), replacement in any_json()) {
        let mut doc = seed_document();
        mutate(&mut doc, choice, replacement);
        let _ = validate_all(&serde_json::to_vec(&doc).unwrap());
    }

    #[test]
    fn any_request_is_routed_without_panicking(
        authority in prop::collection::vec(any::<u8>(), 0..40),
        path in prop::collection::vec(any::<u8>(), 0..80),
        headers in prop::collection::vec(("[a-z:-]{1,12}", prop::collection::vec(any::<u8>(), 0..30)), 0..8),
        seed in any::<u64>(),
    ) {
        let doc = Document::parse(&serde_json::to_vec(&seed_document()).unwrap(), &[Kind::VirtualService, Kind::DestinationRule]).unwrap();
        let table = RouteTable::compile(&doc).unwrap();
        let mut pairs = vec![(":authority".to_owned(), authority), (":path".to_owned(), path)];
        pairs.extend(headers);
        let request = HeaderList::new(pairs);
        let decision = table.decide(&request, &mut SplitMix64::new(seed));
        let _ = table.verdict(&decision, &request);
    }
}
