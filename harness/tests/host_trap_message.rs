//! A trap's message names it once: `wasm trap: wasm \`unreachable\` instruction
//! executed`, not `wasm trap: wasm trap: …`.
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

mod common;

use common::probe_named;
use meshwasm_harness::host::{HarnessError, Host};

#[test]
fn a_panic_traps_with_the_prefix_once_and_the_panic_text() {
    // Arrange
    let mut host = Host::builder().build().unwrap();
    let chain = host.load(&[probe_named("a")]).unwrap();

    // Act
    let err = chain
        .request("GET", "/")
        .header("x-probe-op", "panic")
        .send()
        .unwrap_err();

    // Assert
    let HarnessError::Trap { message, panic, .. } = &err else {
        panic!("not a trap: {err}");
    };
    assert_eq!(
        message,
        "wasm trap: wasm `unreachable` instruction executed"
    );
    assert!(
        panic
            .as_deref()
            .unwrap_or_default()
            .contains("probe a panics on request")
    );
    assert_eq!(err.to_string().matches("wasm trap:").count(), 1, "{err}");
}
