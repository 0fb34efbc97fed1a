//! `cargo xtask bench`: the cost of the meshwasm filters in real Envoy.
//!
//! Envoy `--concurrency 1` on loopback, driven by `wrk -t1 -c16` against
//! `GET /api/products` (`Host: product-service`). Variants run interleaved
//! (A B C A B C …) so drift hits them alike; each reports the median over
//! rounds, and its ratio to `none` (and `noop`) of the same run; pairs in
//! [`variants::COMPARISONS`] (e.g. `fault` vs Envoy's own `native-fault`,
//! `authn` vs `native-jwt-cache`, `rbac` vs `native-rbac`) get a line of
//! their own. The variants are in `bench/variants.rs`; the JWT variants'
//! key, policy and tokens, made at start, in `bench/jwt.rs`; the RBAC
//! variants' policy and its native translation in `bench/rbac.rs`. Every
//! variant's first request must answer 200 (and the RBAC variants must
//! deny what their policy denies). Writes BENCHMARKS.md
//! (`bench/report.rs`), module sizes included, or `--report PATH`.

mod jwt;
mod rbac;
mod report;
mod variants;
mod wrk;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use meshwasm_harness::envoy::{
    ENVOY_VERSION, Envoy, EnvoyRig, envoy_binary, product_cluster, seed_filter_config, target_dir,
};
use meshwasm_harness::host::{FilterSpec, Host};
use meshwasm_harness::upstream::ProductService;

use crate::util::{Flags, banner, output, root, run};
use crate::wasm;
use jwt::JwtBench;
use rbac::{RbacBench, TENANT};
use report::{Facts, report};
use variants::{Inputs, Load, VARIANTS, Variant};
use wrk::{Sample, wrk};

/// Runs the benchmark.
pub fn bench(args: &[String]) -> anyhow::Result<()> {
    let mut flags = Flags::new(args);
    let rounds = flags.parsed::<usize>("--rounds")?.unwrap_or(5).max(1);
    let duration = flags.parsed::<u64>("--duration")?.unwrap_or(5).max(1);
    let only = flags.value("--variants")?;
    let report_path = flags
        .value("--report")?
        .map_or_else(|| root().join("BENCHMARKS.md"), PathBuf::from);
    flags.positional()?;
    let variants = choose(only.as_deref())?;

    ensure_wrk()?;
    let modules = module_sizes(&wasm::build()?);
    let envoy_bin = envoy_binary()?;
    let envoy_version = output(Command::new(&envoy_bin).arg("--version"))?
        .split("version:")
        .nth(1)
        .map_or_else(|| ENVOY_VERSION.to_owned(), |v| v.trim().to_owned());
    banner("JWT key, policy and tokens");
    let new_tokens = variants.iter().any(|v| v.load == Load::NewTokens);
    let inputs = Inputs {
        seed: seed_filter_config()?,
        jwt: JwtBench::prepare(new_tokens, &target_dir().join("bench"))?,
        rbac: RbacBench::prepare(&target_dir().join("bench"))?,
    };
    let v1 = ProductService::start("v1")?;
    let v2 = ProductService::start("v2")?;

    // Instructions (wasmtime fuel) per request in the harness: deterministic,
    // unlike the wrk figures, so a change in filter cost shows exactly.
    let mut fuel = Vec::with_capacity(variants.len());
    let mut fuel_notes = Vec::new();
    for v in &variants {
        let measured = fuel_per_request(v, &inputs)?;
        fuel_notes.extend(measured.as_ref().and_then(|f| f.note.clone()));
        fuel.push(measured.map(|f| f.mean));
    }
    let machine = machine();
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); variants.len()];
    for round in 1..=rounds {
        for (i, v) in variants.iter().enumerate() {
            banner(&format!("round {round}/{rounds}: {}", v.name));
            let envoy = (v.envoy)(EnvoyRig::builder(), &inputs)
                .filters((v.filters)(&inputs))
                .cluster(&product_cluster("v1"), v1.addr())
                .cluster(&product_cluster("v2"), v2.addr())
                .concurrency(1)
                .access_log(false)
                .log_level("warn")
                .start()
                .with_context(|| format!("starting Envoy for variant {}", v.name))?;
            answers_200(&envoy, v, &inputs)?;
            let url = format!("{}/api/products", envoy.url());
            // Warm-up: connections, V8 tiering.
            wrk(&url, 1, v.load, &inputs)?;
            let s = wrk(&url, duration, v.load, &inputs)?;
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
        date: today(),
        rounds,
        duration,
        modules,
        fuel_notes,
    };
    let report = report(&variants, &samples, &fuel, &facts)?;
    let path = report_path;
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

/// The token a request of `load` carries: the repeated one, or the `i`-th
/// of the pre-minted ones (cycling).
fn token(load: Load, inputs: &Inputs, i: usize) -> Option<&str> {
    let tokens = &inputs.jwt.tokens;
    match load {
        Load::Plain | Load::Tenant => None,
        Load::Token => Some(inputs.jwt.token.as_str()),
        Load::NewTokens => tokens
            .get(i % tokens.len().max(1))
            .map(String::as_str)
            .or(Some(inputs.jwt.token.as_str())),
    }
}

/// One request as wrk will send it must answer 200: a 401 means the policy
/// or the token is wrong, and the figures would measure refusals. An RBAC
/// variant must also deny that request without its tenant (the ALLOW
/// policy) and with a path under `/api/products/internal` (the DENY
/// policy, as the ALLOW policy allows it), so both are known to be in force.
fn answers_200(envoy: &Envoy, v: &Variant, inputs: &Inputs) -> anyhow::Result<()> {
    let bearer = token(v.load, inputs, 0).map(|t| format!("Bearer {t}"));
    let mut headers = vec![("host", "product-service")];
    if let Some(b) = &bearer {
        headers.push(("authorization", b.as_str()));
    }
    if v.load == Load::Tenant {
        for (path, h) in [
            ("/api/products", &headers[..]),
            (
                "/api/products/internal/stats",
                &[("host", "product-service"), TENANT][..],
            ),
        ] {
            let r = envoy.get(path, h)?;
            if (r.status, r.text().as_str()) != (403, "RBAC: access denied") {
                bail!(
                    "variant {}: GET {path} with {h:?} answered {} {:?} instead of the RBAC denial",
                    v.name,
                    r.status,
                    r.text()
                );
            }
        }
        headers.push(TENANT);
    }
    let r = envoy.get("/api/products", &headers)?;
    if r.status != 200 {
        bail!(
            "variant {}: GET /api/products answered {} (www-authenticate: {:?}): {}",
            v.name,
            r.status,
            r.header("www-authenticate"),
            r.text()
        );
    }
    Ok(())
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

/// Fuel per request of a variant, and how its signature checks were done.
struct Fuel {
    mean: f64,
    note: Option<String>,
}

const BY_HOST: &str = "meshwasm.authn.signatures_verified_by_host";
const IN_WASM: &str = "meshwasm.authn.signatures_verified_in_wasm";

/// Mean wasmtime fuel the chain spends per request in the harness, over the
/// seed's two kinds of request (premium and basic users), each with the
/// variant's token if it has one; `None` without wasm filters. With one
/// repeated token, a first uncounted request fills the token cache.
fn fuel_per_request(v: &Variant, inputs: &Inputs) -> anyhow::Result<Option<Fuel>> {
    let filters = (v.filters)(inputs);
    if filters.is_empty() {
        return Ok(None);
    }
    let mut builder = Host::builder().seed(1);
    if matches!(v.load, Load::Token | Load::NewTokens) {
        // Envoy checks `exp` against the OS clock; so must the harness.
        let now = u64::try_from(meshwasm_harness::jwt::now()).unwrap_or(0);
        builder = builder.start_time(UNIX_EPOCH + Duration::from_secs(now));
    }
    let mut host = builder.build()?;
    let specs: Vec<FilterSpec> = filters
        .iter()
        .map(|f| {
            FilterSpec::new(&f.name, &f.wasm)
                .config(f.config.as_bytes())
                .vm_id(&f.vm_id)
        })
        .collect();
    let chain = host.load(&specs)?;
    let send = |i: usize| {
        let user = if i.is_multiple_of(2) {
            "premium"
        } else {
            "basic"
        };
        let mut req = chain
            .request("GET", "/api/products")
            .authority("product-service")
            .header("user-type", user);
        if v.load == Load::Tenant {
            req = req.header(TENANT.0, TENANT.1);
        }
        if let Some(t) = token(v.load, inputs, i) {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let out = req.send()?;
        if out.local_reply().is_some() {
            bail!(
                "variant {}: the harness answered {} ({}) instead of passing the request",
                v.name,
                out.status(),
                out.body_text()
            );
        }
        Ok(out.fuel())
    };
    if v.load == Load::Token {
        send(0)?;
    }
    const N: u64 = 200;
    let mut total = 0u64;
    for i in 0..N {
        total += send(usize::try_from(i).unwrap_or(0))?;
    }
    let note = signature_note(v, host.metric(BY_HOST), host.metric(IN_WASM));
    Ok(Some(Fuel {
        mean: total as f64 / N as f64,
        note,
    }))
}

/// Where the harness checked the signatures of a token variant.
fn signature_note(v: &Variant, by_host: Option<u64>, in_wasm: Option<u64>) -> Option<String> {
    let (host, wasm) = (by_host.unwrap_or(0), in_wasm.unwrap_or(0));
    let place = match (host, wasm) {
        (0, 0) => "nowhere (no signature check counted)".to_owned(),
        (_, 0) => {
            "by the harness's `verify_signature` foreign function (host code, outside the fuel)"
                .to_owned()
        }
        (0, _) => "in wasm (pure-Rust RSA, inside the fuel)".to_owned(),
        (h, w) => format!("{h} by the host's `verify_signature`, {w} in wasm"),
    };
    match v.load {
        Load::Plain | Load::Tenant => None,
        Load::Token => Some(format!(
            "`{}`: one token, verified by an uncounted first request (signature checked {place}), \
             then from the filter's token cache",
            v.name
        )),
        Load::NewTokens => Some(format!(
            "`{}`: 200 distinct tokens, each signature checked {place}",
            v.name
        )),
    }
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
            names(Some("native-jwt-cache,authn,none")),
            ["none", "authn", "native-jwt-cache"]
        );
        assert_eq!(names(None).len(), VARIANTS.len());
        assert!(choose(Some("noop,fault")).is_err());
        assert!(choose(Some("none,faul")).is_err());
    }

    #[test]
    fn the_signature_note_says_where_signatures_were_checked() {
        let v = choose(Some("none,authn-new-token")).unwrap();
        let new_token = v.get(1).unwrap();

        let in_wasm = signature_note(new_token, Some(0), Some(200)).unwrap();
        let by_host = signature_note(new_token, Some(200), None).unwrap();

        assert!(in_wasm.contains("in wasm (pure-Rust RSA"), "{in_wasm}");
        assert!(by_host.contains("`verify_signature`"), "{by_host}");
        assert!(signature_note(v.first().unwrap(), None, None).is_none());
    }
}
