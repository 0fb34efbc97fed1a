//! Envoy 1.40's VMs of an HTTP filter against the harness's (SPEC §A.5): the
//! probe logs `probe vm <tag>: on_vm_start`, `probe <name>: configured (vm <tag>)`
//! and, with `log_ticks`, `probe <name>: tick (vm <tag>)`, where `<tag>` is drawn
//! once per VM. Envoy's log lines carry the thread id, and the main thread is the
//! one that logs `starting workers`; the harness's carry the VM's role. Per VM,
//! both sides must show the same thread kind, `on_vm_start` and `on_configure`
//! counts and whether it ticked; Envoy's `wasm.wasm_vm_count` and
//! `wasm.envoy.wasm.runtime.v8.created` must equal the harness's counts.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::time::{Duration, Instant};

use meshwasm_harness::envoy::{Envoy, EnvoyRig, WasmFilter, wasm_path};
use meshwasm_harness::host::{FilterSpec, Host};

/// One VM as its log lines show it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct VmSeen {
    main_thread: bool,
    filter: String,
    starts: usize,
    configures: usize,
    ticked: bool,
}

/// `(main_thread, message)` lines → VMs in order of their first line.
fn vms(lines: impl Iterator<Item = (bool, String)>) -> Vec<VmSeen> {
    let mut tags: Vec<String> = Vec::new();
    let mut seen: Vec<VmSeen> = Vec::new();
    for (main_thread, message) in lines {
        let (tag, event) = if let Some(rest) = message.strip_prefix("probe vm ") {
            match rest.strip_suffix(": on_vm_start") {
                Some(tag) => (tag.to_owned(), "start"),
                None => continue,
            }
        } else if let Some((head, tag)) = message.split_once(" (vm ") {
            let event = if head.ends_with(": configured") {
                "configure"
            } else if head.ends_with(": tick") {
                "tick"
            } else {
                continue;
            };
            (tag.trim_end_matches(')').to_owned(), event)
        } else {
            continue;
        };
        let i = tags.iter().position(|t| *t == tag).unwrap_or_else(|| {
            tags.push(tag);
            seen.push(VmSeen {
                main_thread,
                filter: String::new(),
                starts: 0,
                configures: 0,
                ticked: false,
            });
            seen.len() - 1
        });
        let vm = &mut seen[i];
        assert_eq!(vm.main_thread, main_thread, "a VM moved threads: {message}");
        match event {
            "start" => vm.starts += 1,
            "configure" => {
                vm.configures += 1;
                vm.filter = message
                    .strip_prefix("probe ")
                    .and_then(|m| m.split(':').next())
                    .unwrap_or_default()
                    .to_owned();
            }
            _ => vm.ticked = true,
        }
    }
    seen
}

/// The probe's wasm log lines: `(main_thread, message)`.
fn envoy_lines(envoy: &Envoy) -> Vec<(bool, String)> {
    let log = envoy.log();
    let tid = |line: &str| line.split("][").nth(1).map(str::to_owned);
    let main = log
        .lines()
        .find(|l| l.contains("starting workers"))
        .and_then(tid)
        .unwrap();
    log.lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once("] wasm log ")?;
            // `<root_id> <vm_id>: <message>`
            let (_, message) = rest.split_once(": ")?;
            Some((tid(line)? == main, message.to_owned()))
        })
        .collect()
}

fn harness_lines(host: &Host) -> Vec<(bool, String)> {
    host.logs()
        .into_iter()
        .map(|l| (l.vm.worker().is_none(), l.message))
        .collect()
}

/// Starts the probe as `filters` (name, config, vm_id) on `workers` workers in
/// Envoy and in the harness; waits until Envoy's workers configured theirs.
fn start(filters: &[(&str, &str, &str)], workers: usize) -> (Envoy, Host) {
    let wasm = wasm_path("probe");
    assert!(
        wasm.exists(),
        "{} is missing: cargo xtask build",
        wasm.display()
    );
    let envoy = EnvoyRig::builder()
        .filters(
            filters
                .iter()
                .map(|(name, config, vm_id)| {
                    WasmFilter::new(name, &wasm, *config)
                        .root_id(&format!("root_{name}"))
                        .vm_id(vm_id)
                })
                .collect(),
        )
        .concurrency(u32::try_from(workers).unwrap())
        .start()
        .unwrap();
    let mut host = Host::builder().workers(workers).build().unwrap();
    let specs: Vec<FilterSpec> = filters
        .iter()
        .map(|(name, config, vm_id)| {
            FilterSpec::new(name, &wasm)
                .config(config)
                .root_id(&format!("root_{name}"))
                .vm_id(vm_id)
        })
        .collect();
    host.load(&specs).unwrap();
    let configured = filters.len() * (workers + 2);
    wait_until(|| {
        let vms = vms(envoy_lines(&envoy).into_iter());
        vms.iter().map(|v| v.configures).sum::<usize>() >= configured
    });
    (envoy, host)
}

/// Polls `done` for up to 10 s (Envoy's workers start after it is live).
#[allow(clippy::disallowed_methods)] // reason: waits on a real process's log
fn wait_until(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn vm(main_thread: bool, filter: &str, ticked: bool) -> VmSeen {
    VmSeen {
        main_thread,
        filter: filter.to_owned(),
        starts: 1,
        configures: 1,
        ticked,
    }
}

#[test]
fn one_filter_on_one_worker_starts_three_vms_and_two_of_them_tick_as_in_envoy() {
    // Arrange
    let config = r#"{"name": "a", "tick_ms": 200, "log_ticks": true}"#;
    let (envoy, mut host) = start(&[("a", config, "probe")], 1);

    // Act: at least two ticks of every ticking VM on both sides.
    std::thread::sleep(Duration::from_millis(700));
    host.advance(Duration::from_millis(700)).unwrap();

    // Assert: the validation VM, the lasting main-thread VM, the worker's.
    let expected = [
        vm(true, "a", false),
        vm(true, "a", true),
        vm(false, "a", true),
    ];
    let in_envoy = vms(envoy_lines(&envoy).into_iter());
    assert_eq!(in_envoy, expected, "Envoy's log:\n{}", envoy.log());
    assert_eq!(vms(harness_lines(&host).into_iter()), expected);
    assert_eq!(envoy.counter("wasm.wasm_vm_count"), Some(3));
    assert_eq!(host.vm_count(), 3);
    assert_eq!(envoy.counter("wasm.envoy.wasm.runtime.v8.created"), Some(4));
    assert_eq!(host.vms_created(), 4);
}

#[test]
fn two_filters_in_their_own_vms_on_two_workers_start_as_in_envoy() {
    // Arrange + Act
    let (envoy, host) = start(
        &[
            ("a", r#"{"name": "a"}"#, "vm_a"),
            ("b", r#"{"name": "b"}"#, "vm_b"),
        ],
        2,
    );

    // Assert: the main thread does a's two VMs, then b's; the workers follow
    // (in either order in Envoy).
    let mut in_envoy = vms(envoy_lines(&envoy).into_iter());
    let mut in_harness = vms(harness_lines(&host).into_iter());
    let main_thread = [
        vm(true, "a", false),
        vm(true, "a", false),
        vm(true, "b", false),
        vm(true, "b", false),
    ];
    assert_eq!(in_envoy[..4], main_thread, "Envoy's log:\n{}", envoy.log());
    assert_eq!(in_harness[..4], main_thread);
    in_envoy.sort();
    in_harness.sort();
    assert_eq!(in_harness, in_envoy);
    assert_eq!(in_envoy.len(), 8);
    assert_eq!(envoy.counter("wasm.wasm_vm_count"), Some(8));
    assert_eq!(host.vm_count(), 8);
    assert_eq!(
        envoy.counter("wasm.envoy.wasm.runtime.v8.created"),
        Some(10)
    );
    assert_eq!(host.vms_created(), 10);
}
