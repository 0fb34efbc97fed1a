//! The VMs the harness makes for a filter, as Envoy 1.40 does (SPEC §A.5;
//! checked against Envoy in `probe_differential_lifecycle.rs`): a base VM, a
//! validation VM that is configured then dropped, a lasting main-thread VM that
//! ticks but never sees a stream, and one VM per worker.
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{probe_named, probe_with};
use meshwasm_harness::host::{HarnessError, Host, VmRole};

/// The VMs that logged a line containing `needle`, in log order.
fn logged_by(host: &Host, needle: &str) -> Vec<VmRole> {
    host.logs()
        .iter()
        .filter(|l| l.message.contains(needle))
        .map(|l| l.vm)
        .collect()
}

#[test]
fn on_vm_start_and_on_configure_run_in_the_validation_main_and_worker_vms() {
    // Arrange
    let mut host = Host::builder().workers(2).build().unwrap();

    // Act
    host.load(&[probe_named("a")]).unwrap();

    // Assert
    let expected = [
        VmRole::Validation,
        VmRole::Main,
        VmRole::Worker(0),
        VmRole::Worker(1),
    ];
    assert_eq!(logged_by(&host, ": on_vm_start"), expected);
    assert_eq!(logged_by(&host, "probe a: configured"), expected);
}

#[test]
fn every_started_vm_is_a_vm_of_its_own() {
    // Arrange
    let mut host = Host::builder().workers(2).build().unwrap();

    // Act
    host.load(&[probe_named("a")]).unwrap();

    // Assert: the probe's VM tag is a static drawn once per VM.
    let tags: BTreeSet<String> = host
        .logs()
        .iter()
        .filter_map(|l| l.message.strip_suffix(": on_vm_start"))
        .map(str::to_owned)
        .collect();
    assert_eq!(tags.len(), 4, "{tags:?}");
}

#[test]
fn the_main_thread_vm_and_the_workers_tick_and_the_validation_vm_does_not() {
    // Arrange
    let mut host = Host::builder().workers(1).build().unwrap();
    let config = r#"{"name": "a", "tick_ms": 100, "log_ticks": true}"#;
    host.load(&[probe_with("a", config)]).unwrap();

    // Act
    host.advance(Duration::from_millis(250)).unwrap();

    // Assert
    let ticks = logged_by(&host, "probe a: tick");
    let expected = [
        VmRole::Main,
        VmRole::Worker(0),
        VmRole::Main,
        VmRole::Worker(0),
    ];
    assert_eq!(ticks, expected);
}

#[test]
fn streams_run_in_the_worker_vms_only() {
    // Arrange
    let mut host = Host::builder().workers(2).build().unwrap();
    let chain = host.load(&[probe_named("a")]).unwrap();

    // Act
    for _ in 0..4 {
        chain
            .request("GET", "/")
            .header("x-probe-op", "log:in a stream")
            .send()
            .unwrap();
    }

    // Assert
    let expected = [
        VmRole::Worker(0),
        VmRole::Worker(1),
        VmRole::Worker(0),
        VmRole::Worker(1),
    ];
    assert_eq!(logged_by(&host, "probe a: in a stream"), expected);
}

#[test]
fn vm_counts_are_envoys_wasm_vm_count_and_vms_created() {
    // Arrange
    let mut host = Host::builder().workers(2).build().unwrap();

    // Act
    host.load(&[probe_named("a"), probe_named("b")]).unwrap();

    // Assert: per filter a base, a main-thread and 2 worker VMs stay; the
    // validation VM was created too (Envoy: `wasm.wasm_vm_count: 8`,
    // `wasm.envoy.wasm.runtime.v8.created: 10`).
    assert_eq!(host.vm_count(), 8);
    assert_eq!(host.vms_created(), 10);
}

#[test]
fn a_refused_configuration_stops_at_the_validation_vm_and_keeps_no_vm() {
    // Arrange
    let mut host = Host::builder().workers(2).build().unwrap();
    host.load(&[probe_named("a")]).unwrap();
    let refusing = probe_with("p", r#"{"name": "p", "refuse": true}"#);

    // Act
    let err = host.load(&[refusing]).err().unwrap();

    // Assert
    assert!(
        matches!(&err, HarnessError::ConfigureRefused { filter, .. } if filter == "p"),
        "{err}"
    );
    assert_eq!(
        logged_by(&host, "probe p: configuration refused"),
        [VmRole::Validation]
    );
    assert_eq!(host.vm_count(), 4);
    assert_eq!(host.vms_created(), 5 + 2);
}
