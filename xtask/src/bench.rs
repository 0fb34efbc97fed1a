//! `cargo xtask bench`: the cost of the meshwasm filters in real Envoy.
//!
//! Envoy `--concurrency 1` on loopback, driven by `wrk -t1 -c16` against
//! `GET /api/products` (`Host: product-service`, `x-tenant: acme`, a valid
//! JWT). Every meshwasm filter reads one document, the full seed policy
//! (`bench/policy.rs`: the seed VirtualService and DestinationRule, a
//! RequestAuthentication with inline RS256 and ES256 keys, the bench
//! AuthorizationPolicies), and the native variants configure the same
//! policy in Envoy's own filters as Istio would. Variants run interleaved
//! (A B C A B C …) so drift hits them alike; each reports the median over
//! rounds, and its ratio to `none` (and `noop`) of the same run; pairs in
//! [`variants::COMPARISONS`] (e.g. `mesh` vs `native-chain-cache`) get a
//! line of their own, and each single filter's added p50 is held against
//! the no-op filter's. The variants are in `bench/variants.rs`; the keys
//! and tokens, made at start, in `bench/jwt.rs`; the AuthorizationPolicies
//! and their native translation in `bench/rbac.rs`; the checks run before
//! each measurement (200 for the bench request, the variant's policy seen
//! in force) in `bench/check.rs`; harness fuel per filter in
//! `bench/fuel.rs`. A variant with a non-2xx answer or a socket error
//! under load fails the run (after the report is written). By default
//! `envoy.yaml`'s routes carry Istio's default timeout and retry policy and
//! the document sets `envoy.routeHasIstioDefaults` (`--no-route-defaults`:
//! neither). Writes BENCHMARKS.md (`bench/report.rs`), module sizes
//! included, or `--report PATH`. A full run (21 variants, [`DEFAULT_ROUNDS`]
//! rounds of [`DEFAULT_DURATION`] s) takes about 10 minutes on 2 cores.
//!
//! `--baseline DIR` with the opt-in `*-base` variants (`bench/opt_in.rs`)
//! measures another build's modules beside this one's in the same run.
//! `--fuel-only` prints the harness figures (fuel and host calls per
//! request) and stops before Envoy; with `--requests N` and the harness's
//! `profiling` feature it is the profiling loop: `MESHWASM_PERFMAP=1 perf
//! record -g cargo run --release -p xtask --features
//! meshwasm-harness/profiling -- bench --fuel-only --variants none,route
//! --requests 100000` (BENCHMARKS.md, "What each change bought", records
//! what it found).

mod check;
mod fuel;
mod jwt;
mod opt_in;
mod policy;
mod rbac;
mod report;
mod variants;
mod wrk;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, bail};
use meshwasm_harness::envoy::{ENVOY_VERSION, EnvoyRig, envoy_binary, product_cluster, target_dir};
use meshwasm_harness::upstream::ProductService;

use crate::util::{Flags, banner, output, root, run};
use crate::wasm;
use fuel::fuel_per_request;
use jwt::{JwtBench, Sig};
use policy::SeedPolicy;
use rbac::RbacBench;
use report::{Facts, report};
use variants::{Inputs, Tokens, VARIANTS, Variant};
use wrk::{Sample, wrk};

/// Rounds when `--rounds` is not given.
pub const DEFAULT_ROUNDS: usize = 3;
/// Seconds of load per variant and round when `--duration` is not given.
pub const DEFAULT_DURATION: u64 = 5;

/// Runs the benchmark.
pub fn bench(args: &[String]) -> anyhow::Result<()> {
    #[allow(clippy::disallowed_methods)] // reason: the report says how long a run takes
    let started = Instant::now();
    let mut flags = Flags::new(args);
    let rounds = flags
        .parsed::<usize>("--rounds")?
        .unwrap_or(DEFAULT_ROUNDS)
        .max(1);
    let duration = flags
        .parsed::<u64>("--duration")?
        .unwrap_or(DEFAULT_DURATION)
        .max(1);
    let only = flags.value("--variants")?;
    let fuel_only = flags.switch("--fuel-only");
    let baseline = flags.value("--baseline")?.map(PathBuf::from);
    let requests = flags.parsed::<usize>("--requests")?.unwrap_or(fuel::N);
    let route_defaults = !flags.switch("--no-route-defaults");
    let report_path = flags
        .value("--report")?
        .map_or_else(|| root().join("BENCHMARKS.md"), PathBuf::from);
    flags.positional()?;
    let variants = choose(only.as_deref())?;
    for v in &variants {
        let Some(filter) = v.name.strip_suffix("-base") else {
            continue;
        };
        let Some(dir) = &baseline else {
            bail!(
                "variant `{}` needs --baseline DIR (the other build's modules)",
                v.name
            );
        };
        let module = opt_in::baseline_module(dir, filter);
        if !module.is_file() {
            bail!(
                "--baseline {}: no {} there",
                dir.display(),
                module.display()
            );
        }
    }

    if !fuel_only {
        ensure_wrk()?;
    }
    let modules = module_sizes(&wasm::build()?);
    let envoy_bin = envoy_binary()?;
    let envoy_version = output(Command::new(&envoy_bin).arg("--version"))?
        .split("version:")
        .nth(1)
        .map_or_else(|| ENVOY_VERSION.to_owned(), |v| v.trim().to_owned());
    banner("keys, tokens and the full seed policy");
    let new_tokens: Vec<Sig> = Sig::ALL
        .into_iter()
        .filter(|s| {
            variants
                .iter()
                .any(|v| v.load.sig == *s && v.load.tokens == Tokens::New)
        })
        .collect();
    let dir = target_dir().join("bench");
    let jwt = JwtBench::prepare(&new_tokens, &dir)?;
    let rbac = RbacBench::prepare(&dir)?;
    let policy = SeedPolicy::prepare(&jwt, &rbac, route_defaults, &dir)?;
    let inputs = Inputs {
        jwt,
        rbac,
        policy,
        baseline,
    };
    banner("harness fuel per request");
    let mut fuel = Vec::with_capacity(variants.len());
    for v in &variants {
        let f = fuel_per_request(v, &inputs, requests, fuel_only)?;
        if let Some(f) = &f {
            eprintln!(
                "{:>22}: {:>8.0} fuel  {:>5.1} host calls per request",
                v.name, f.mean, f.hostcalls
            );
            for (name, calls) in &f.by_name {
                eprintln!("{:>24}{calls:>6.2}  {name}", "");
            }
        }
        fuel.push(f);
    }
    if fuel_only {
        return Ok(());
    }
    let v1 = ProductService::start("v1")?;
    let v2 = ProductService::start("v2")?;
    let machine = machine();
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); variants.len()];
    let mut failures = Vec::new();
    for round in 1..=rounds {
        for (i, v) in variants.iter().enumerate() {
            banner(&format!("round {round}/{rounds}: {}", v.name));
            let rig = inputs.policy.mesh_routes(EnvoyRig::builder());
            let envoy = (v.envoy)(rig, &inputs)
                .filters((v.filters)(&inputs))
                .cluster(&product_cluster("v1"), v1.addr())
                .cluster(&product_cluster("v2"), v2.addr())
                .concurrency(1)
                .access_log(false)
                .log_level("warn")
                .start()
                .with_context(|| format!("starting Envoy for variant {}", v.name))?;
            check::preflight(&envoy, v, &inputs)?;
            let url = format!("{}/api/products", envoy.url());
            // Warm-up: connections, V8 tiering.
            wrk(&url, 1, v.load, &inputs)?;
            let s = wrk(&url, duration, v.load, &inputs)?;
            eprintln!(
                "{:>6}: {:>9.0} rps  p50 {:>7.0} µs  p99 {:>7.0} µs  non-2xx {}  socket errors {}",
                v.name, s.rps, s.p50_us, s.p99_us, s.non_2xx, s.errors
            );
            if s.non_2xx > 0 || s.errors > 0 {
                failures.push(format!(
                    "`{}` round {round}: {} non-2xx answers, {} socket errors",
                    v.name, s.non_2xx, s.errors
                ));
            }
            if let Some(list) = samples.get_mut(i) {
                list.push(s);
            }
        }
    }
    let cmdline = format!("cargo xtask bench {}", args.join(" "));
    let facts = Facts {
        machine,
        envoy_version,
        cmdline: cmdline.trim().to_owned(),
        date: today(),
        rounds,
        duration,
        modules,
        minutes: started.elapsed().as_secs_f64() / 60.0,
        route_defaults,
        failures: failures.clone(),
    };
    let report = report(&variants, &samples, &fuel, &facts)?;
    let path = report_path;
    std::fs::write(&path, &report).with_context(|| format!("writing {}", path.display()))?;
    println!("{report}");
    eprintln!(
        "wrote {} ({:.1} min)",
        path.display(),
        started.elapsed().as_secs_f64() / 60.0
    );
    if !failures.is_empty() {
        bail!(
            "every bench request must be answered 2xx; failed:\n  {}",
            failures.join("\n  ")
        );
    }
    Ok(())
}

/// The variants `--variants a,b,..` names (all when absent), in run order;
/// `none`, the baseline, must be among them.
fn choose(only: Option<&str>) -> anyhow::Result<Vec<&'static Variant>> {
    let Some(list) = only else {
        return Ok(VARIANTS.iter().collect());
    };
    let names: Vec<&str> = list.split(',').map(str::trim).collect();
    let all = || VARIANTS.iter().chain(opt_in::OPT_IN);
    let known: Vec<&str> = all().map(|v| v.name).collect();
    if let Some(unknown) = names.iter().find(|n| !known.contains(n)) {
        bail!(
            "unknown variant `{unknown}` in --variants; known: {}",
            known.join(", ")
        );
    }
    if !names.contains(&"none") {
        bail!("--variants must name `none` (the baseline)");
    }
    Ok(all().filter(|v| names.contains(&v.name)).collect())
}

fn ensure_wrk() -> anyhow::Result<()> {
    if Command::new("wrk").arg("--version").output().is_ok() {
        return Ok(());
    }
    banner("installing wrk (apt-get)");
    let root_user = output(Command::new("id").arg("-u")).is_ok_and(|u| u.trim() == "0");
    let apt = |args: &[&str]| {
        let mut cmd = if root_user {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.arg("apt-get");
            c
        };
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut cmd)
    };
    if apt(&["install", "-y", "wrk"]).is_err() {
        apt(&["update"])?;
        apt(&["install", "-y", "wrk"])?;
    }
    if Command::new("wrk").arg("--version").output().is_err() {
        bail!(
            "wrk is not installed and `apt-get install -y wrk` did not install it; install wrk and rerun"
        );
    }
    Ok(())
}

/// `(file name, bytes)` of each built `.wasm`.
fn module_sizes(paths: &[PathBuf]) -> Vec<(String, u64)> {
    paths
        .iter()
        .filter_map(|p| {
            let name = p.file_name()?.to_string_lossy().into_owned();
            Some((name, std::fs::metadata(p).ok()?.len()))
        })
        .collect()
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!(
        "{model}, {cores} cores available; load average at start {} (other work on the machine skews results)",
        load.join(" ")
    )
}

fn today() -> String {
    output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
        .map(|d| d.trim().to_owned())
        .unwrap_or_else(|_| "an unknown date".to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn variants_are_chosen_in_run_order_and_must_include_none() {
        let names = |only| {
            choose(only)
                .unwrap()
                .iter()
                .map(|v| v.name)
                .collect::<Vec<_>>()
        };

        assert_eq!(
            names(Some("native-fault, none,fault")),
            ["none", "fault", "native-fault"]
        );
        assert_eq!(
            names(Some("native-chain-cache,mesh,none")),
            ["none", "mesh", "native-chain-cache"]
        );
        // The opt-in variants only when named.
        assert_eq!(names(None).len(), VARIANTS.len());
        assert!(!names(None).contains(&"cost-map"));
        assert_eq!(names(Some("none,cost-map")), ["none", "cost-map"]);
        assert!(choose(Some("noop,fault")).is_err());
        assert!(choose(Some("none,faul")).is_err());
    }
}
