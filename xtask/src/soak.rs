//! `cargo xtask soak`: the memory target of issue 15 — no heap growth over
//! 1,000,000 requests in the harness, and none in Envoy under a 60 s load
//! with client resets.
//!
//! 1. The harness: `harness/tests/mesh_memory.rs` with
//!    `MESHWASM_MEMORY_REQUESTS` (`--requests`, default 1,000,000; `0`
//!    skips it): the mesh and route filters' linear memory must not grow
//!    after the warm-up.
//! 2. Envoy (`--concurrency 1`) with the `mesh` filter (or `--filter chain`:
//!    authn → rbac → fault → route) on the full seed policy plus the demo's
//!    hosts (`testdata/istio/demo-extras.yaml`,
//!    `soak-authorization-policy.yaml`), for `--secs` seconds (60) under two
//!    kinds of client (`soak/client.rs`): keep-alive connections sending a
//!    mix of requests (good, fresh and forged tokens, no tenant, fault
//!    aborts, sticky users, retries) and reading every answer, and clients
//!    that hang up mid-request — while a fault delay holds the stream in
//!    the filter, right after sending, half-way through the request line,
//!    or on a kept-alive connection. Every second it samples Envoy's
//!    resident memory (`/proc/<pid>/status` `VmRSS`: V8 keeps the wasm
//!    linear memory in its own mappings, so a filter's heap growth shows
//!    there) and tcmalloc's `server.memory_allocated` (Envoy's own heap:
//!    streams and filter contexts it never frees). After a warm-up (a
//!    quarter of the run, at least 5 s) neither may grow by more than
//!    `--rss-mib` (8) / `--heap-mib` (4); the kept-alive clients must get
//!    only the answers the policy gives; once the load stops and the last
//!    delays are over, the filters' gauges of streams in flight
//!    (`active_faults`, `rq_active`) and Envoy's `downstream_rq_active`
//!    must be back to 0.

mod client;

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use meshwasm_harness::envoy::{Envoy, EnvoyRig, WasmFilter, product_cluster, wasm_path};
use meshwasm_harness::jwt::{self, Alg, Claims, Key};
use meshwasm_harness::scenario::{config_document, istio_resources};
use meshwasm_harness::upstream::ProductService;
use serde_json::json;

use crate::util::{Flags, banner, cargo, root, run};
use crate::wasm;
use client::{Counts, Tokens};

const ISSUER: &str = "https://soak.example";
const AUDIENCE: &str = "product-service";
/// Fresh tokens cycled by the kept-alive clients.
const POOL: usize = 2_000;
/// Kept-alive clients and hanging-up clients.
const STEADY: usize = 2;
const RESETTING: usize = 4;

/// Runs the soak.
pub fn soak(args: &[String]) -> anyhow::Result<()> {
    let mut flags = Flags::new(args);
    let secs = flags.parsed::<u64>("--secs")?.unwrap_or(60).max(4);
    let requests = flags.parsed::<u64>("--requests")?.unwrap_or(1_000_000);
    let filter = flags
        .value("--filter")?
        .unwrap_or_else(|| "mesh".to_owned());
    let rss_mib = flags.parsed::<f64>("--rss-mib")?.unwrap_or(8.0);
    let heap_mib = flags.parsed::<f64>("--heap-mib")?.unwrap_or(4.0);
    flags.positional()?;
    if !matches!(filter.as_str(), "mesh" | "chain") {
        bail!("--filter must be `mesh` or `chain`, not `{filter}`");
    }
    wasm::build()?;
    if requests > 0 {
        banner(&format!("harness: {requests} requests per filter"));
        run(cargo()
            .args(["test", "-p", "meshwasm-harness", "--test", "mesh_memory"])
            .args(["--", "--nocapture", "--test-threads", "1"])
            .env("MESHWASM_MEMORY_REQUESTS", requests.to_string()))?;
    }
    banner(&format!(
        "Envoy: {secs} s of load with client resets ({filter})"
    ));
    let (config, tokens) = policy()?;
    let v1 = ProductService::start("v1")?;
    let v2 = ProductService::start("v2")?;
    let filters = match filter.as_str() {
        "mesh" => vec![wasm_filter("mesh", &config)],
        _ => ["authn", "rbac", "fault", "route"]
            .iter()
            .map(|n| wasm_filter(n, &config))
            .collect(),
    };
    let envoy = EnvoyRig::builder()
        .filters(filters)
        .cluster(&product_cluster("v1"), v1.addr())
        .cluster(&product_cluster("v2"), v2.addr())
        .concurrency(1)
        .access_log(false)
        .log_level("warn")
        .start()
        .context("starting Envoy")?;
    let samples = load(&envoy, &tokens, Duration::from_secs(secs))?;
    verdict(&envoy, &samples, secs, rss_mib, heap_mib)
}

fn wasm_filter(name: &str, config: &str) -> WasmFilter {
    WasmFilter::new(&format!("meshwasm.{name}"), wasm_path(name), config)
}

/// The document (see the module docs) and tokens for it: an RS256 and an
/// ES256 key inline.
fn policy() -> anyhow::Result<(String, Tokens)> {
    let rs = Key::generate(Alg::RS256)?.with_kid("soak-rs256");
    let es = Key::generate(Alg::ES256)?.with_kid("soak-es256");
    let istio = root().join("testdata").join("istio");
    let mut resources = istio_resources(&[
        istio.join("virtual-service-example.yaml"),
        istio.join("destination-rule-example.yaml"),
        istio.join("demo-extras.yaml"),
    ])?;
    resources.push(json!({
        "apiVersion": "security.istio.io/v1",
        "kind": "RequestAuthentication",
        "metadata": {"name": "soak-jwt", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "product-service"}},
            "jwtRules": [{
                "issuer": ISSUER,
                "audiences": [AUDIENCE],
                "jwks": jwt::jwks(&[&rs, &es]).to_string(),
            }],
        },
    }));
    resources.extend(istio_resources(&[
        istio.join("bench-authorization-policy.yaml"),
        istio.join("soak-authorization-policy.yaml"),
    ])?);
    let mint = |alg: Alg, key: &Key, jti: &str| -> anyhow::Result<String> {
        let claims = Claims::new(ISSUER, "soak-user")
            .audience(AUDIENCE)
            .expires_in(86_400)
            .claim("jti", jti);
        Ok(jwt::mint(alg, key, &json!({}), &claims.to_value())?)
    };
    let repeated = mint(Alg::RS256, &rs, "repeated")?;
    let pool = (0..POOL)
        .map(|i| mint(Alg::ES256, &es, &format!("pool-{i}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let tokens = Tokens::new(repeated, pool);
    Ok((config_document(resources, None, None).to_string(), tokens))
}

/// One reading of Envoy's memory.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    at: f64,
    rss: u64,
    allocated: u64,
    requests: u64,
    resets: u64,
}

/// Runs the clients for `length`, sampling every second; returns the
/// samples and checks what the kept-alive clients got.
fn load(envoy: &Envoy, tokens: &Tokens, length: Duration) -> anyhow::Result<Vec<Sample>> {
    let addr = format!("127.0.0.1:{}", envoy.port());
    let stop = AtomicBool::new(false);
    let counts = Counts::default();
    #[allow(clippy::disallowed_methods)] // reason: a real Envoy under load for real seconds
    let started = Instant::now();
    let mut samples = Vec::new();
    thread::scope(|s| {
        for k in 0..STEADY {
            let (addr, stop, counts) = (&addr, &stop, &counts);
            s.spawn(move || client::steady(addr, tokens, k, stop, counts));
        }
        for k in 0..RESETTING {
            let (addr, stop, counts) = (&addr, &stop, &counts);
            s.spawn(move || client::resetting(addr, tokens, k, stop, counts));
        }
        while started.elapsed() < length {
            thread::sleep(Duration::from_secs(1));
            samples.push(sample(envoy, started));
            if let Some(last) = samples.last().filter(|_| samples.len() % 5 == 0) {
                eprintln!(
                    "{:>5.0} s  rss {:>7.1} MiB  heap {:>7.1} MiB  requests {:>8}  resets {:>6}",
                    last.at,
                    mib(last.rss),
                    mib(last.allocated),
                    last.requests,
                    last.resets
                );
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    counts.report(started.elapsed().as_secs_f64());
    if let Some(problem) = counts.problem() {
        bail!("{problem}");
    }
    Ok(samples)
}

fn sample(envoy: &Envoy, started: Instant) -> Sample {
    let stats = envoy.stats();
    let stat = |name: &str| {
        stats
            .lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .strip_prefix(": ")?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    };
    Sample {
        at: started.elapsed().as_secs_f64(),
        rss: rss(envoy.pid()).unwrap_or(0),
        allocated: stat("server.memory_allocated"),
        requests: stat("http.main.downstream_rq_total"),
        resets: stat("http.main.downstream_cx_destroy_remote_active_rq"),
    }
}

/// Resident bytes of process `pid`.
fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Growth after the warm-up, and the gauges of streams in flight once the
/// load is over.
fn verdict(
    envoy: &Envoy,
    samples: &[Sample],
    secs: u64,
    rss_mib: f64,
    heap_mib: f64,
) -> anyhow::Result<()> {
    let warm_up = (secs as f64 / 4.0).max(5.0);
    let Some(base) = samples.iter().rfind(|s| s.at <= warm_up).copied() else {
        bail!("no sample within the warm-up");
    };
    let after: Vec<&Sample> = samples.iter().filter(|s| s.at > warm_up).collect();
    let peak = |f: fn(&Sample) -> u64| after.iter().map(|s| f(s)).max().unwrap_or(0);
    let last = samples.last().copied().unwrap_or_default();
    let rss_growth = mib(peak(|s| s.rss)) - mib(base.rss);
    let heap_growth = mib(peak(|s| s.allocated)) - mib(base.allocated);
    // The last delayed streams end 2 s after the load stops.
    thread::sleep(Duration::from_millis(2_500));
    let stats = envoy.stats();
    let in_flight: Vec<(String, i64)> = stats
        .lines()
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(": ")?;
            let gauge = k == "http.main.downstream_rq_active"
                || (k.starts_with("wasmcustom.")
                    && (k.ends_with(".active_faults") || k.ends_with(".rq_active")));
            gauge.then(|| (k.to_owned(), v.trim().parse().unwrap_or(-1)))
        })
        .collect();
    let wasm: Vec<&str> = stats
        .lines()
        .filter(|l| l.starts_with("wasm.") || l.contains("wasm_vm"))
        .collect();
    println!(
        "\nsoak: {secs} s, {} requests, {} streams reset by the client\n\
         resident:  {:.1} MiB after the {warm_up:.0} s warm-up, peak {:.1} MiB after it (+{rss_growth:.1} MiB, limit {rss_mib} MiB), {:.1} MiB at the end\n\
         tcmalloc:  {:.1} MiB after the warm-up, peak {:.1} MiB after it (+{heap_growth:.1} MiB, limit {heap_mib} MiB), {:.1} MiB at the end\n\
         in flight after the load: {in_flight:?}\n\
         wasm stats: {wasm:?}",
        last.requests,
        last.resets,
        mib(base.rss),
        mib(peak(|s| s.rss)),
        mib(last.rss),
        mib(base.allocated),
        mib(peak(|s| s.allocated)),
        mib(last.allocated),
    );
    let mut problems = Vec::new();
    if rss_growth > rss_mib {
        problems.push(format!(
            "resident memory grew {rss_growth:.1} MiB after the warm-up"
        ));
    }
    if heap_growth > heap_mib {
        problems.push(format!(
            "Envoy's heap grew {heap_growth:.1} MiB after the warm-up"
        ));
    }
    if last.resets == 0 {
        problems.push("no stream was reset by a client".to_owned());
    }
    if !in_flight.iter().any(|(k, _)| k.starts_with("wasmcustom.")) {
        problems.push("no active_faults / rq_active gauge in Envoy's stats".to_owned());
    }
    problems.extend(
        in_flight
            .iter()
            .filter(|(_, v)| *v != 0)
            .map(|(k, v)| format!("{k} is {v} after the load, not 0")),
    );
    if !problems.is_empty() {
        bail!("soak failed: {}", problems.join("; "));
    }
    println!("soak: no growth after the warm-up; nothing left in flight");
    Ok(())
}
