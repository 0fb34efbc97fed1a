//! BENCHMARKS.md from the samples of one run.

use std::fmt::Write as _;

use super::fuel::Fuel;
use super::jwt::NEW_TOKENS;
use super::opt_in::{BASE_COMPARISONS, COST_CALLS, is_cost};
use super::rbac::TENANT;
use super::variants::{
    ALSO_AGAINST_NOOP, COMPARISONS, SINGLE_FILTER_AIM, SINGLE_FILTERS, Tokens, Variant,
};
use super::wrk::Sample;

/// What BENCHMARKS.md says about the run besides the samples.
pub(super) struct Facts {
    pub machine: String,
    pub envoy_version: String,
    pub cmdline: String,
    pub date: String,
    pub rounds: usize,
    pub duration: u64,
    /// Each `.wasm` file and its size in bytes.
    pub modules: Vec<(String, u64)>,
    /// Wall time of the whole run so far, in minutes.
    pub minutes: f64,
    /// Rounds whose requests were not all answered 2xx.
    pub failures: Vec<String>,
    /// Whether `envoy.yaml`'s routes carried Istio's default timeout and
    /// retry policy (and the document `envoy.routeHasIstioDefaults`).
    pub route_defaults: bool,
}

pub(super) fn median(mut xs: Vec<f64>) -> f64 {
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

fn ratio(rps: f64, base: f64) -> String {
    if base > 0.0 {
        format!("{:.2}", rps / base)
    } else {
        "–".to_owned()
    }
}

/// The medians of one variant.
#[derive(Clone, Copy, Default)]
struct Medians {
    rps: f64,
    p50: f64,
    p99: f64,
}

pub(super) fn report(
    variants: &[&Variant],
    samples: &[Vec<Sample>],
    fuel: &[Option<Fuel>],
    facts: &Facts,
) -> anyhow::Result<String> {
    let medians: Vec<Medians> = (0..variants.len())
        .map(|i| {
            let med = |f: fn(&Sample) -> f64| {
                median(
                    samples
                        .get(i)
                        .map_or_else(Vec::new, |v| v.iter().map(f).collect()),
                )
            };
            Medians {
                rps: med(|s| s.rps),
                p50: med(|s| s.p50_us),
                p99: med(|s| s.p99_us),
            }
        })
        .collect();
    let index = |name: &str| variants.iter().position(|v| v.name == name);
    let of = |name: &str| index(name).and_then(|i| medians.get(i).copied());
    let base = medians.first().copied().unwrap_or_default();
    let noop = of("noop");
    let mut md = String::new();
    header(&mut md, variants, fuel, facts)?;
    writeln!(
        md,
        "\n| variant | rps | p50 | p99 | non-2xx | rps vs none | rps vs noop | added p50 | added p99 | fuel/request | what |"
    )?;
    writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")?;
    for (i, v) in variants.iter().enumerate() {
        let m = medians.get(i).copied().unwrap_or_default();
        let non_2xx: u64 = samples
            .get(i)
            .map_or(0, |v| v.iter().map(|s| s.non_2xx).sum());
        writeln!(
            md,
            "| `{}` | {:.0} | {:.0} µs | {:.0} µs | {non_2xx} | {} | {} | {:+.0} µs | {:+.0} µs | {} | {} |",
            v.name,
            m.rps,
            m.p50,
            m.p99,
            ratio(m.rps, base.rps),
            noop.map_or_else(|| "–".to_owned(), |n| ratio(m.rps, n.rps)),
            m.p50 - base.p50,
            m.p99 - base.p99,
            fuel.get(i)
                .and_then(Option::as_ref)
                .map_or_else(|| "–".to_owned(), |f| format!("{:.0}", f.mean)),
            v.what
        )?;
    }
    let pairs: Vec<_> = COMPARISONS
        .iter()
        .chain(BASE_COMPARISONS)
        .filter_map(|c| Some((c, of(c.variant)?, of(c.reference)?)))
        .collect();
    if !pairs.is_empty() {
        writeln!(md, "\n## Comparisons\n")?;
        writeln!(
            md,
            "Medians of the table above, one variant against another.\n"
        )?;
    }
    for (c, a, b) in pairs {
        let aim = match c.aim {
            Some(aim) if b.rps > 0.0 => format!(
                " (aim ≥ ×{aim:.2}: {})",
                if a.rps / b.rps >= aim {
                    "met"
                } else {
                    "not met"
                }
            ),
            _ => String::new(),
        };
        writeln!(
            md,
            "- `{}` vs `{}`: rps ×{}{aim}, p50 {:+.0} µs, p99 {:+.0} µs — {}",
            c.variant,
            c.reference,
            ratio(a.rps, b.rps),
            a.p50 - b.p50,
            a.p99 - b.p99,
            c.what,
        )?;
    }
    if let Some(noop) = noop {
        against_noop(&mut md, base, noop, &of)?;
    }
    if let Some(noop) = noop {
        costs(&mut md, variants, noop, &of)?;
    }
    fuel_by_filter(&mut md, variants, fuel)?;
    modules(&mut md, &facts.modules)?;
    // What earlier changes bought: kept by hand beside the generator.
    writeln!(md, "\n{}", include_str!("changes.md").trim_end())?;
    rounds(&mut md, variants, samples)?;
    Ok(md)
}

/// Title, how the run was made, the load, the fuel notes.
fn header(
    md: &mut String,
    variants: &[&Variant],
    fuel: &[Option<Fuel>],
    facts: &Facts,
) -> anyhow::Result<()> {
    let Facts {
        machine,
        envoy_version,
        cmdline,
        date,
        rounds,
        duration,
        minutes,
        failures,
        route_defaults,
        ..
    } = facts;
    writeln!(md, "# Benchmarks\n")?;
    writeln!(
        md,
        "Generated by `{cmdline}` on {date} ({minutes:.0} min). Do not edit: rerun the command.\n"
    )?;
    if !failures.is_empty() {
        writeln!(
            md,
            "**Failed: not every request was answered 2xx** — {}\n",
            failures.join("; ")
        )?;
    }
    writeln!(md, "- Machine: {machine}")?;
    writeln!(
        md,
        "- Envoy: {envoy_version}, `--concurrency 1`, loopback, `envoy.wasm.runtime.v8`"
    )?;
    writeln!(
        md,
        "- Load: `wrk -t1 -c16 -d{duration}s --latency -H 'Host: product-service' -H '{}: {}' \
         -H 'Authorization: Bearer <token>'` → `GET /api/products` (in-process product-service \
         v1/v2), the same requests for every variant; {rounds} round{}, variants interleaved, 1 s \
         warm-up each; medians over rounds. Before measuring, each variant must answer that \
         request 200 and be seen enforcing its part of the policy (a tampered token 401, no \
         tenant or `/api/products/internal/…` 403, `user-type: premium` routed to v2); a non-2xx \
         answer under load fails the run",
        TENANT.0,
        TENANT.1,
        if *rounds == 1 { "" } else { "s" }
    )?;
    writeln!(
        md,
        "- Policy: one document for every meshwasm filter — the seed VirtualService and \
         DestinationRule, a RequestAuthentication with an inline JWKS (issuer \
         `https://bench.example`), the AuthorizationPolicies of \
         testdata/istio/bench-authorization-policy.yaml (`x-tenant` required); the native \
         variants configure the same policy as Istio writes it (xtask/src/bench/policy.rs)"
    )?;
    writeln!(
        md,
        "- Clusters: `envoy.yaml`'s subset clusters carry the DestinationRule's `connectionPool` \
         as circuit breakers (as `cargo xtask clusters` writes them) in every variant, and the \
         document sets `envoy.clustersHaveConnectionPool: true`: the filters leave the \
         concurrency limits to Envoy (docs/resilience.md)"
    )?;
    if *route_defaults {
        writeln!(
            md,
            "- Routes: `envoy.yaml`'s routes carry Istio's default timeout (`0s`) and retry policy, \
             as the native routes do, and the document sets `envoy.routeHasIstioDefaults: true`: \
             the route filter writes router headers only for rules that differ (docs/route.md)"
        )?;
    } else {
        writeln!(
            md,
            "- Routes (`--no-route-defaults`): `envoy.yaml`'s routes carry no retry policy and the \
             route filter writes every router header; the native routes carry Istio's defaults"
        )?;
    }
    if variants.iter().any(|v| v.load.tokens == Tokens::New) {
        writeln!(
            md,
            "- Tokens: an RS256 key (2048-bit) and an ES256 key (P-256) made at start; one \
             valid token repeated or, for `*-new-token`, a wrk `request()` script cycling \
             {NEW_TOKENS} pre-minted valid tokens with distinct `jti`, so every request carries \
             a new one"
        )?;
    }
    writeln!(
        md,
        "- fuel/request: wasmtime fuel (≈ wasm instructions) the filters spend per request in \
         the harness (mean over 200 requests, premium and basic users alternating); exact and \
         machine-independent"
    )?;
    for note in fuel.iter().flatten().filter_map(|f| f.note.as_ref()) {
        writeln!(md, "  - {note}")?;
    }
    Ok(())
}

/// Each single filter's added p50 as a multiple of the no-op filter's.
fn against_noop(
    md: &mut String,
    base: Medians,
    noop: Medians,
    of: &dyn Fn(&str) -> Option<Medians>,
) -> anyhow::Result<()> {
    let noop_added = noop.p50 - base.p50;
    let rows: Vec<(&str, Medians, bool)> = SINGLE_FILTERS
        .iter()
        .map(|n| (*n, true))
        .chain(ALSO_AGAINST_NOOP.iter().map(|n| (*n, false)))
        .filter_map(|(n, aimed)| Some((n, of(n)?, aimed)))
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    writeln!(md, "\n## Added p50 against the no-op filter's\n")?;
    writeln!(
        md,
        "The no-op filter adds {noop_added:+.0} µs to `none`'s p50; each single filter should add \
         at most ×{SINGLE_FILTER_AIM:.1} that.\n"
    )?;
    for (name, m, aimed) in rows {
        let added = m.p50 - base.p50;
        let times = if noop_added > 0.0 {
            format!("×{:.2}", added / noop_added)
        } else {
            "– (the no-op added nothing measurable)".to_owned()
        };
        let aim = match (aimed, noop_added > 0.0) {
            (true, true) => format!(
                " (aim ≤ ×{SINGLE_FILTER_AIM:.1}: {})",
                if added <= SINGLE_FILTER_AIM * noop_added {
                    "met"
                } else {
                    "not met"
                }
            ),
            _ => String::new(),
        };
        writeln!(md, "- `{name}`: {added:+.0} µs = {times} the no-op's{aim}")?;
    }
    Ok(())
}

/// What one host call of each kind costs in Envoy: the `cost-*`
/// variants' time per request (1/rps: one saturated worker) over the
/// no-op's, divided by the calls they add.
fn costs(
    md: &mut String,
    variants: &[&Variant],
    noop: Medians,
    of: &dyn Fn(&str) -> Option<Medians>,
) -> anyhow::Result<()> {
    let rows: Vec<(&str, &str, Medians)> = variants
        .iter()
        .filter(|v| is_cost(v))
        .filter_map(|v| Some((v.name, v.what, of(v.name)?)))
        .filter(|(_, _, m)| m.rps > 0.0)
        .collect();
    if rows.is_empty() || noop.rps <= 0.0 {
        return Ok(());
    }
    writeln!(md, "\n## What one host call costs\n")?;
    writeln!(
        md,
        "Time per request (1/rps, one saturated worker) of the no-op filter making {COST_CALLS:.0} \
         more calls of one kind, minus the no-op's, divided by {COST_CALLS:.0}.\n"
    )?;
    writeln!(md, "| variant | µs per call | calls |")?;
    writeln!(md, "|---|---:|---|")?;
    let per_request = |m: Medians| 1e6 / m.rps;
    for (name, what, m) in rows {
        let each = (per_request(m) - per_request(noop)) / COST_CALLS;
        let calls = what.split(" per request").next().unwrap_or(what);
        writeln!(md, "| `{name}` | {each:.2} | {calls} |")?;
    }
    Ok(())
}

/// Harness fuel per request, filter by filter, of the chains.
fn fuel_by_filter(
    md: &mut String,
    variants: &[&Variant],
    fuel: &[Option<Fuel>],
) -> anyhow::Result<()> {
    let rows: Vec<(&str, &Fuel)> = variants
        .iter()
        .zip(fuel)
        .filter_map(|(v, f)| Some((v.name, f.as_ref()?)))
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    writeln!(md, "\n## Harness fuel per filter\n")?;
    writeln!(
        md,
        "Mean wasmtime fuel per request of each filter of the variant, in chain order, and \
         the calls into the host per request (hostcalls and WASI functions, all filters): in \
         Envoy each is a crossing between V8 and C++.\n"
    )?;
    writeln!(md, "| variant | per filter | total | host calls |")?;
    writeln!(md, "|---|---|---:|---:|")?;
    for (name, f) in rows {
        let parts: Vec<String> = f
            .by_filter
            .iter()
            .map(|(filter, fuel)| format!("`{filter}` {fuel:.0}"))
            .collect();
        writeln!(
            md,
            "| `{name}` | {} | {:.0} | {:.1} |",
            parts.join(" · "),
            f.mean,
            f.hostcalls
        )?;
    }
    Ok(())
}

fn modules(md: &mut String, modules: &[(String, u64)]) -> anyhow::Result<()> {
    if modules.is_empty() {
        return Ok(());
    }
    writeln!(md, "\n## Module sizes\n")?;
    writeln!(
        md,
        "`target/wasm32-wasip1/release/`, as built for this run.\n"
    )?;
    writeln!(md, "| module | bytes | KiB |")?;
    writeln!(md, "|---|---:|---:|")?;
    for (file, bytes) in modules {
        writeln!(md, "| `{file}` | {bytes} | {:.0} |", *bytes as f64 / 1024.0)?;
    }
    Ok(())
}

fn rounds(md: &mut String, variants: &[&Variant], samples: &[Vec<Sample>]) -> anyhow::Result<()> {
    writeln!(md, "\n## Rounds\n")?;
    writeln!(
        md,
        "| variant | round | rps | p50 | p99 | non-2xx | socket errors |"
    )?;
    writeln!(md, "|---|---:|---:|---:|---:|---:|---:|")?;
    for (i, v) in variants.iter().enumerate() {
        for (r, s) in samples.get(i).into_iter().flatten().enumerate() {
            writeln!(
                md,
                "| `{}` | {} | {:.0} | {:.0} µs | {:.0} µs | {} | {} |",
                v.name,
                r + 1,
                s.rps,
                s.p50_us,
                s.p99_us,
                s.non_2xx,
                s.errors
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::choose;
    use super::*;

    fn sample(rps: f64, p50_us: f64) -> Sample {
        Sample {
            rps,
            p50_us,
            p99_us: 2.0 * p50_us,
            non_2xx: 0,
            errors: 0,
        }
    }

    fn facts() -> Facts {
        Facts {
            machine: "m".to_owned(),
            envoy_version: "v".to_owned(),
            cmdline: "c".to_owned(),
            date: "d".to_owned(),
            rounds: 1,
            duration: 1,
            modules: vec![("meshwasm_authn.wasm".to_owned(), 2048)],
            minutes: 1.0,
            failures: Vec::new(),
            route_defaults: true,
        }
    }

    fn fuel(by_filter: &[(&str, f64)]) -> Option<Fuel> {
        Some(Fuel {
            mean: by_filter.iter().map(|(_, f)| f).sum(),
            by_filter: by_filter
                .iter()
                .map(|(n, f)| ((*n).to_owned(), *f))
                .collect(),
            hostcalls: 3.0,
            by_name: Vec::new(),
            note: Some("`x`: note".to_owned()),
        })
    }

    #[test]
    fn the_report_compares_fault_with_native_fault_and_noop() {
        let variants = choose(Some("none,noop,fault,native-fault")).unwrap();
        let samples = vec![
            vec![sample(1000.0, 500.0)],
            vec![sample(900.0, 550.0)],
            vec![sample(720.0, 640.0)],
            vec![sample(800.0, 600.0)],
        ];
        let fuels = [None, None, fuel(&[("meshwasm.fault", 7.0)]), None];

        let md = report(&variants, &samples, &fuels, &facts()).unwrap();

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
        assert!(
            md.contains("- `fault`: +140 µs = ×2.80 the no-op's (aim ≤ ×1.2: not met)"),
            "{md}"
        );
        assert!(md.contains("| `fault` | `meshwasm.fault` 7 | 7 |"), "{md}");
        assert!(md.contains("  - `x`: note"), "{md}");
        assert!(!md.contains("`mesh` vs"), "{md}");
        assert!(!md.contains("Failed"), "{md}");
    }

    #[test]
    fn a_host_call_costs_the_time_per_request_it_adds_over_the_no_op_divided_by_the_calls() {
        let variants = choose(Some("none,noop,cost-map,cost-metric")).unwrap();
        // 1/rps: none 40 µs, noop 50 µs, cost-map 70 µs, cost-metric 51 µs.
        let samples = vec![
            vec![sample(25_000.0, 500.0)],
            vec![sample(20_000.0, 550.0)],
            vec![sample(1e6 / 70.0, 800.0)],
            vec![sample(1e6 / 51.0, 560.0)],
        ];

        let md = report(&variants, &samples, &[None, None, None, None], &facts()).unwrap();

        assert!(md.contains("## What one host call costs"), "{md}");
        assert!(
            md.contains("| `cost-map` | 2.00 | the no-op plus 10 × `get_header_map_pairs`"),
            "{md}"
        );
        assert!(
            md.contains("| `cost-metric` | 0.10 | the no-op plus 10 × `increment_metric`"),
            "{md}"
        );
    }

    #[test]
    fn the_report_checks_the_mesh_aims_and_lists_fuel_per_filter() {
        let variants = choose(Some("none,noop,chain,mesh,native-chain-cache")).unwrap();
        let samples = vec![
            vec![sample(1000.0, 500.0)],
            vec![sample(900.0, 550.0)],
            vec![sample(600.0, 800.0)],
            vec![sample(870.0, 560.0)],
            vec![sample(850.0, 580.0)],
        ];
        let chain = fuel(&[("meshwasm.authn", 10.0), ("meshwasm.rbac", 5.0)]);
        let fuels = [None, None, chain, fuel(&[("meshwasm.mesh", 12.0)]), None];
        let mut f = facts();
        f.failures = vec!["`mesh` round 1: 3 non-2xx answers, 0 socket errors".to_owned()];

        let md = report(&variants, &samples, &fuels, &f).unwrap();

        assert!(
            md.contains(
                "- `mesh` vs `native-chain-cache`: rps ×1.02 (aim ≥ ×1.00: met), p50 -20 µs"
            ),
            "{md}"
        );
        assert!(
            md.contains("- `mesh` vs `noop`: rps ×0.97 (aim ≥ ×0.95: met)"),
            "{md}"
        );
        assert!(
            md.contains("- `mesh`: +60 µs = ×1.20 the no-op's\n"),
            "{md}"
        );
        assert!(
            md.contains("| `chain` | `meshwasm.authn` 10 · `meshwasm.rbac` 5 | 15 |"),
            "{md}"
        );
        assert!(md.contains("| `meshwasm_authn.wasm` | 2048 | 2 |"), "{md}");
        assert!(md.contains("**Failed: not every request"), "{md}");
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_pair() {
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(vec![5.0, 1.0, 3.0]), 3.0);
    }
}
