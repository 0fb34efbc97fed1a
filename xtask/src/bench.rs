//! `cargo xtask bench`: the cost of the meshwasm filters in real Envoy.
//!
//! Envoy `--concurrency 1` on loopback, driven by `wrk -t1 -c16` against
//! `GET /api/products` (`Host: product-service`). Variants run interleaved
//! (A B C A B C …) so drift hits them alike; each reports the median over
//! rounds, and its ratio to `none` (and `noop`) of the same run; pairs in
//! [`COMPARISONS`] (e.g. `fault` vs Envoy's own `native-fault`) get a line
//! of their own. The variants are in `bench/variants.rs`. Writes BENCHMARKS.md.

mod variants;

use std::fmt::Write as _;
use std::process::Command;

use anyhow::{Context as _, bail};
use meshwasm_harness::envoy::{
    ENVOY_VERSION, EnvoyRig, WasmFilter, envoy_binary, product_cluster, seed_filter_config,
};
use meshwasm_harness::host::{FilterSpec, Host};
use meshwasm_harness::upstream::ProductService;

use crate::util::{Flags, banner, output, root, run};
use crate::wasm;
use variants::{COMPARISONS, VARIANTS, Variant};

/// One wrk run.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    non_2xx: u64,
}

/// Runs the benchmark.
pub fn bench(args: &[String]) -> anyhow::Result<()> {
    let mut flags = Flags::new(args);
    let rounds = flags.parsed::<usize>("--rounds")?.unwrap_or(5).max(1);
    let duration = flags.parsed::<u64>("--duration")?.unwrap_or(5).max(1);
    let only = flags.value("--variants")?;
    flags.positional()?;
    let variants = choose(only.as_deref())?;

    ensure_wrk()?;
    wasm::build()?;
    let envoy_bin = envoy_binary()?;
    let envoy_version = output(Command::new(&envoy_bin).arg("--version"))?
        .split("version:")
        .nth(1)
        .map_or_else(|| ENVOY_VERSION.to_owned(), |v| v.trim().to_owned());
    let seed = seed_filter_config()?;
    let v1 = ProductService::start("v1")?;
    let v2 = ProductService::start("v2")?;

    // Instructions (wasmtime fuel) per request in the harness: deterministic,
    // unlike the wrk figures, so a change in filter cost shows exactly.
    let mut fuel = Vec::with_capacity(variants.len());
    for v in &variants {
        fuel.push(fuel_per_request(&(v.filters)(&seed))?);
    }
    let machine = machine();
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); variants.len()];
    for round in 1..=rounds {
        for (i, v) in variants.iter().enumerate() {
            banner(&format!("round {round}/{rounds}: {}", v.name));
            let envoy = (v.envoy)(EnvoyRig::builder())
                .filters((v.filters)(&seed))
                .cluster(&product_cluster("v1"), v1.addr())
                .cluster(&product_cluster("v2"), v2.addr())
                .concurrency(1)
                .access_log(false)
                .log_level("warn")
                .start()
                .with_context(|| format!("starting Envoy for variant {}", v.name))?;
            let url = format!("{}/api/products", envoy.url());
            // Warm-up: connections, V8 tiering.
            wrk(&url, 1)?;
            let s = wrk(&url, duration)?;
            eprintln!(
                "{:>6}: {:>9.0} rps  p50 {:>7.0} µs  p99 {:>7.0} µs  non-2xx {}",
                v.name, s.rps, s.p50_us, s.p99_us, s.non_2xx
            );
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
        rounds,
        duration,
    };
    let report = report(&variants, &samples, &fuel, &facts)?;
    let path = root().join("BENCHMARKS.md");
    std::fs::write(&path, &report).with_context(|| format!("writing {}", path.display()))?;
    println!("{report}");
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// The variants `--variants a,b,..` names (all when absent), in run order;
/// `none`, the baseline, must be among them.
fn choose(only: Option<&str>) -> anyhow::Result<Vec<&'static Variant>> {
    let Some(list) = only else {
        return Ok(VARIANTS.iter().collect());
    };
    let names: Vec<&str> = list.split(',').map(str::trim).collect();
    let known: Vec<&str> = VARIANTS.iter().map(|v| v.name).collect();
    if let Some(unknown) = names.iter().find(|n| !known.contains(n)) {
        bail!(
            "unknown variant `{unknown}` in --variants; known: {}",
            known.join(", ")
        );
    }
    if !names.contains(&"none") {
        bail!("--variants must name `none` (the baseline)");
    }
    Ok(VARIANTS
        .iter()
        .filter(|v| names.contains(&v.name))
        .collect())
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

fn wrk(url: &str, seconds: u64) -> anyhow::Result<Sample> {
    let out = output(Command::new("wrk").args([
        "-t1",
        "-c16",
        &format!("-d{seconds}s"),
        "--latency",
        "-H",
        "Host: product-service",
        url,
    ]))?;
    parse_wrk(&out).with_context(|| format!("unexpected wrk output:\n{out}"))
}

fn parse_wrk(out: &str) -> anyhow::Result<Sample> {
    let mut s = Sample::default();
    let mut in_distribution = false;
    for line in out.lines().map(str::trim) {
        if line.starts_with("Latency Distribution") {
            in_distribution = true;
        } else if in_distribution && line.starts_with("50%") {
            s.p50_us = micros(line.trim_start_matches("50%").trim())?;
        } else if in_distribution && line.starts_with("99%") {
            s.p99_us = micros(line.trim_start_matches("99%").trim())?;
        } else if let Some(n) = line.strip_prefix("Non-2xx or 3xx responses:") {
            s.non_2xx = n.trim().parse()?;
        } else if let Some(r) = line.strip_prefix("Requests/sec:") {
            s.rps = r.trim().parse()?;
        }
    }
    if s.rps <= 0.0 {
        bail!("no Requests/sec");
    }
    Ok(s)
}

/// `518.00us`, `1.24ms`, `2.01s` → microseconds.
fn micros(text: &str) -> anyhow::Result<f64> {
    let (num, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1e6)
    } else {
        bail!("latency `{text}` has no unit");
    };
    Ok(num.trim().parse::<f64>()? * factor)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => xs.get(n / 2).copied().unwrap_or(0.0),
        _ => {
            (xs.get(n / 2 - 1).copied().unwrap_or(0.0) + xs.get(n / 2).copied().unwrap_or(0.0))
                / 2.0
        }
    }
}

/// What BENCHMARKS.md says about the run.
struct Facts {
    machine: String,
    envoy_version: String,
    cmdline: String,
    rounds: usize,
    duration: u64,
}

/// Mean wasmtime fuel the chain spends per request in the harness, over the
/// seed's two kinds of request (premium and basic users).
fn fuel_per_request(filters: &[WasmFilter]) -> anyhow::Result<Option<f64>> {
    if filters.is_empty() {
        return Ok(None);
    }
    let mut host = Host::builder().seed(1).build()?;
    let specs: Vec<FilterSpec> = filters
        .iter()
        .map(|f| {
            FilterSpec::new(&f.name, &f.wasm)
                .config(f.config.as_bytes())
                .vm_id(&f.vm_id)
        })
        .collect();
    let chain = host.load(&specs)?;
    const N: u64 = 200;
    let mut total = 0u64;
    for i in 0..N {
        let user = if i % 2 == 0 { "premium" } else { "basic" };
        let out = chain
            .request("GET", "/api/products")
            .authority("product-service")
            .header("user-type", user)
            .send()?;
        total += out.fuel();
    }
    Ok(Some(total as f64 / N as f64))
}

fn report(
    variants: &[&Variant],
    samples: &[Vec<Sample>],
    fuel: &[Option<f64>],
    facts: &Facts,
) -> anyhow::Result<String> {
    let Facts {
        machine,
        envoy_version,
        cmdline,
        rounds,
        duration,
    } = facts;
    let med = |i: usize, f: fn(&Sample) -> f64| {
        median(
            samples
                .get(i)
                .map_or_else(Vec::new, |v| v.iter().map(f).collect()),
        )
    };
    let index = |name: &str| variants.iter().position(|v| v.name == name);
    let base_rps = med(0, |s| s.rps);
    let base_p50 = med(0, |s| s.p50_us);
    let base_p99 = med(0, |s| s.p99_us);
    let noop_rps = index("noop").map(|i| med(i, |s| s.rps));
    let ratio = |rps: f64, base: f64| {
        if base > 0.0 {
            format!("{:.2}", rps / base)
        } else {
            "–".to_owned()
        }
    };
    let mut md = String::new();
    writeln!(md, "# Benchmarks\n")?;
    writeln!(
        md,
        "Generated by `{cmdline}` on {}. Do not edit: rerun the command.\n",
        today()
    )?;
    writeln!(md, "- Machine: {machine}")?;
    writeln!(
        md,
        "- Envoy: {envoy_version}, `--concurrency 1`, loopback, `envoy.wasm.runtime.v8`"
    )?;
    writeln!(
        md,
        "- Load: `wrk -t1 -c16 -d{duration}s --latency -H 'Host: product-service'` → `GET /api/products` \
         (in-process product-service v1/v2); {rounds} round{}, variants interleaved, 1 s warm-up each; medians over rounds",
        if *rounds == 1 { "" } else { "s" }
    )?;
    writeln!(
        md,
        "- fuel/request: wasmtime fuel (≈ wasm instructions) the filters spend per request in the harness \
         (mean over 200 requests, premium and basic users alternating); exact and machine-independent\n"
    )?;
    writeln!(
        md,
        "| variant | rps | p50 | p99 | non-2xx | rps vs none | rps vs noop | added p50 | added p99 | fuel/request | what |"
    )?;
    writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")?;
    for (i, v) in variants.iter().enumerate() {
        let (rps, p50, p99) = (
            med(i, |s| s.rps),
            med(i, |s| s.p50_us),
            med(i, |s| s.p99_us),
        );
        let non_2xx: u64 = samples
            .get(i)
            .map_or(0, |v| v.iter().map(|s| s.non_2xx).sum());
        writeln!(
            md,
            "| `{}` | {rps:.0} | {p50:.0} µs | {p99:.0} µs | {non_2xx} | {} | {} | {:+.0} µs | {:+.0} µs | {} | {} |",
            v.name,
            ratio(rps, base_rps),
            noop_rps.map_or_else(|| "–".to_owned(), |n| ratio(rps, n)),
            p50 - base_p50,
            p99 - base_p99,
            fuel.get(i)
                .copied()
                .flatten()
                .map_or_else(|| "–".to_owned(), |f| format!("{f:.0}")),
            v.what
        )?;
    }
    let pairs: Vec<(usize, usize, &str)> = COMPARISONS
        .iter()
        .filter_map(|(a, b, what)| Some((index(a)?, index(b)?, *what)))
        .collect();
    if !pairs.is_empty() {
        writeln!(md, "\n## Comparisons\n")?;
        writeln!(
            md,
            "Medians of the table above, one variant against another.\n"
        )?;
    }
    for (a, b, what) in pairs {
        let name = |i: usize| variants.get(i).map_or("?", |v| v.name);
        writeln!(
            md,
            "- `{}` vs `{}`: rps ×{}, p50 {:+.0} µs, p99 {:+.0} µs — {what}",
            name(a),
            name(b),
            ratio(med(a, |s| s.rps), med(b, |s| s.rps)),
            med(a, |s| s.p50_us) - med(b, |s| s.p50_us),
            med(a, |s| s.p99_us) - med(b, |s| s.p99_us),
        )?;
    }
    writeln!(md, "\n## Rounds\n")?;
    writeln!(md, "| variant | round | rps | p50 | p99 | non-2xx |")?;
    writeln!(md, "|---|---:|---:|---:|---:|---:|")?;
    for (i, v) in variants.iter().enumerate() {
        for (r, s) in samples.get(i).into_iter().flatten().enumerate() {
            writeln!(
                md,
                "| `{}` | {} | {:.0} | {:.0} µs | {:.0} µs | {} |",
                v.name,
                r + 1,
                s.rps,
                s.p50_us,
                s.p99_us,
                s.non_2xx
            )?;
        }
    }
    Ok(md)
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
    fn wrk_output_is_parsed() {
        let out = "Running 5s test @ http://127.0.0.1:1/api/products
  1 threads and 16 connections
  Latency Distribution
     50%  518.00us
     75%  602.00us
     90%  740.00us
     99%    1.24ms
  144121 requests in 5.00s, 38.76MB read
  Non-2xx or 3xx responses: 12
Requests/sec:  28814.22
";
        let s = parse_wrk(out).unwrap();
        assert_eq!(
            (s.rps, s.p50_us, s.p99_us, s.non_2xx),
            (28814.22, 518.0, 1240.0, 12)
        );
    }

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
        assert_eq!(names(None).len(), VARIANTS.len());
        assert!(choose(Some("noop,fault")).is_err());
        assert!(choose(Some("none,faul")).is_err());
    }

    #[test]
    fn the_report_compares_fault_with_native_fault_and_noop() {
        let variants = choose(Some("none,noop,fault,native-fault")).unwrap();
        let sample = |rps, p50_us| Sample {
            rps,
            p50_us,
            p99_us: 2.0 * p50_us,
            non_2xx: 0,
        };
        let samples = vec![
            vec![sample(1000.0, 500.0)],
            vec![sample(900.0, 550.0)],
            vec![sample(720.0, 640.0)],
            vec![sample(800.0, 600.0)],
        ];
        let facts = Facts {
            machine: "m".to_owned(),
            envoy_version: "v".to_owned(),
            cmdline: "c".to_owned(),
            rounds: 1,
            duration: 1,
        };

        let md = report(&variants, &samples, &[None, None, Some(7.0), None], &facts).unwrap();

        assert!(
            md.contains(
                "| `fault` | 720 | 640 µs | 1280 µs | 0 | 0.72 | 0.80 | +140 µs | +280 µs | 7 |"
            ),
            "{md}"
        );
        assert!(
            md.contains("- `fault` vs `native-fault`: rps ×0.90, p50 +40 µs, p99 +80 µs — "),
            "{md}"
        );
        assert!(!md.contains("`fault+route` vs"), "{md}");
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_pair() {
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(vec![5.0, 1.0, 3.0]), 3.0);
    }
}
