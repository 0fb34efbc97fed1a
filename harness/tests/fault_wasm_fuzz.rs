//! The built fault filter never traps, whatever a client sends and however
//! streams end: random authorities, paths, header names and non-UTF-8
//! header values go through `meshwasm_fault.wasm` then `meshwasm_route.wasm`
//! in the harness, on envoy.yaml's configuration (which carries the seed's
//! fault rules on host `chaos`); a delayed stream is either woken by the
//! tick or reset by its client. A trap would fail every later request on
//! the worker in Envoy (SPEC.md §proxy-wasm ABI G), and every stream must
//! give its active fault back.
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

use std::time::Duration;

use meshwasm_harness::envoy::{seed_filter_config, wasm_path};
use meshwasm_harness::host::{FilterSpec, Host};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_request_is_answered_or_reset_without_a_trap(
        authority in prop_oneof![Just("chaos".to_owned()), "[a-z0-9.:*\\[\\]-]{0,30}"],
        path in "/[ -~]{0,60}",
        headers in prop::collection::vec(
            ("[a-z][a-z0-9-]{0,15}", prop::collection::vec(any::<u8>().prop_filter("no NUL/CR/LF", |b| !matches!(b, 0 | b'\r' | b'\n')), 0..24)),
            0..8,
        ),
        scenario in prop_oneof![Just("delay"), Just("error"), Just("other")],
        hang_up in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let config = seed_filter_config().unwrap();
        let mut host = Host::builder().seed(seed).build().unwrap();
        let chain = host
            .load(&[
                FilterSpec::new("meshwasm.fault", wasm_path("fault")).config(config.as_bytes()),
                FilterSpec::new("meshwasm.route", wasm_path("route")).config(config.as_bytes()),
            ])
            .unwrap();
        let mut req = chain.request("GET", &path).authority(&authority).header("test-scenario", scenario);
        for (name, value) in &headers {
            req = req.header(name, value);
        }
        let stream = req.start().unwrap();
        if stream.is_paused() && hang_up {
            stream.cancel().unwrap();
        } else {
            host.advance(Duration::from_secs(3)).unwrap();
            let out = stream.finish();
            prop_assert!(out.is_ok(), "{:?}", out.err());
            let status = out.unwrap().status();
            prop_assert!(matches!(status, 200 | 404 | 500), "status {status}");
        }
        prop_assert_eq!(host.metric("meshwasm.fault.active_faults").unwrap_or(0), 0);
        prop_assert!(!chain.is_failed(0, 0) && !chain.is_failed(1, 0));
    }
}
