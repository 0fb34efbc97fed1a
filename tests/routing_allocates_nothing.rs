//! A routing decision on the seed configuration allocates nothing beyond
//! reading the headers (issue "Route filter", Performance; STYLE.md rule 6):
//! counted with a global allocator around `decide` + `verdict`.
#![allow(clippy::unwrap_used, clippy::expect_used, unsafe_code, missing_docs)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

mod common;

use meshwasm::config::{Document, Kind};
use meshwasm::http::HeaderList;
use meshwasm::rng::SplitMix64;
use meshwasm::route::RouteTable;
use meshwasm::verdict::Verdict;

struct Counting;

thread_local! {
    /// Allocations made by this thread (tests run on several threads).
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn seed_table(files: &[&str]) -> RouteTable {
    let resources = common::seed_resources(files);
    let json = serde_json::to_vec(&serde_json::json!({"resources": resources})).unwrap();
    let doc = Document::parse(&json, &[Kind::VirtualService, Kind::DestinationRule]).unwrap();
    RouteTable::compile(&doc).unwrap()
}

fn allocations_of(mut f: impl FnMut()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
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
