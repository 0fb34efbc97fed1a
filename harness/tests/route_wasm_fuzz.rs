//! The built route filter never traps, whatever a client sends: random
//! authorities, paths, header names and non-UTF-8 header values (legal
//! obs-text) go through `meshwasm_route.wasm` in the harness, on the seed
//! configuration. A trap would fail every later request on the worker in
//! Envoy (SPEC.md §proxy-wasm ABI G).
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

use meshwasm_harness::envoy::{seed_filter_config, wasm_path};
use meshwasm_harness::host::{FilterSpec, Host};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn any_request_is_answered_without_a_trap(
        authority in prop_oneof![Just("product-service".to_owned()), "[a-z0-9.:*\\[\\]-]{0,30}"],
        path in "/[ -~]{0,60}",
        headers in prop::collection::vec(
            ("[a-z][a-z0-9-]{0,15}", prop::collection::vec(any::<u8>().prop_filter("no NUL/CR/LF", |b| !matches!(b, 0 | b'\r' | b'\n')), 0..24)),
            0..8,
        ),
        premium in any::<bool>(),
    ) {
        let wasm = wasm_path("route");
        assert!(wasm.exists(), "{} is missing: run `cargo xtask build`", wasm.display());
        let mut host = Host::builder().seed(9).build().unwrap();
        let chain = host
            .load(&[FilterSpec::new("meshwasm.route", wasm).config(seed_filter_config().unwrap().as_bytes())])
            .unwrap();
        let mut req = chain.request("GET", &path).authority(&authority);
        for (name, value) in &headers {
            req = req.header(name, value);
        }
        if premium {
            req = req.header("user-type", "premium");
        }
        let out = req.send();
        prop_assert!(out.is_ok(), "{:?}", out.err());
        let out = out.unwrap();
        prop_assert!(matches!(out.status(), 200 | 404), "status {}", out.status());
    }
}
