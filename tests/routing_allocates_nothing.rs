//! A routing decision on the seed configuration allocates nothing beyond
//! reading the headers (issue "Route filter", Performance; STYLE.md rule 6):
//! counted with a global allocator around `decide` + `verdict`.
#![allow(clippy::unwrap_used, clippy::expect_used, unsafe_code, missing_docs)]

mod common;
#[path = "common/counting.rs"]
mod counting;

use meshwasm::config::{Document, Kind};
use meshwasm::http::HeaderList;
use meshwasm::rng::SplitMix64;
use meshwasm::route::RouteTable;
use meshwasm::verdict::Verdict;

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

fn seed_table(files: &[&str]) -> RouteTable {
    let resources = common::seed_resources(files);
    let json = serde_json::to_vec(&serde_json::json!({"resources": resources})).unwrap();
    let doc = Document::parse(&json, &[Kind::VirtualService, Kind::DestinationRule]).unwrap();
    RouteTable::compile(&doc).unwrap()
}

fn allocations_of(mut f: impl FnMut()) -> usize {
    let before = counting::allocations();
    f();
    counting::allocations() - before
}

#[test]
fn routing_on_the_seed_config_allocates_nothing() {
    let table = seed_table(&[
        "virtual-service-example.yaml",
        "destination-rule-example.yaml",
    ]);
    let requests = [
        HeaderList::request("GET", "product-service", "/api/products").with("user-type", "premium"),
        HeaderList::request("GET", "product-service:80", "/api/products?x=1")
            .with("user-agent", "curl/8"),
        HeaderList::request("GET", "other-host", "/"),
    ];
    let mut rng = SplitMix64::new(3);
    let mut continued = 0;
    let n = allocations_of(|| {
        for _ in 0..1000 {
            for req in &requests {
                let decision = table.decide(req, &mut rng);
                if let Verdict::Continue(m) = table.verdict(&decision, req) {
                    continued += m.iter().count();
                }
            }
        }
    });
    assert!(continued > 0, "the verdicts carried header changes");
    assert_eq!(n, 0, "allocations during 3,000 routing decisions");
}

#[test]
fn the_counter_sees_allocations() {
    // The instrument works: it counts an allocation when there is one.
    let n = allocations_of(|| drop(std::hint::black_box(vec![1u8; 16])));
    assert!(n >= 1);
}
