//! Running wrk at the bench's fixed settings and reading its report.

use std::process::Command;

use anyhow::{Context as _, bail};

use super::rbac::TENANT;
use super::variants::{Inputs, Load, Tokens};
use crate::util::output;

/// One wrk run.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Sample {
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub non_2xx: u64,
    /// Socket errors wrk counted (connect, read, write, timeout).
    pub errors: u64,
}

/// `wrk -t1 -c16 -d<seconds>s --latency -H 'Host: product-service'
/// -H 'x-tenant: acme'`, plus the token header or the script `load` calls for.
pub(super) fn wrk(url: &str, seconds: u64, load: Load, inputs: &Inputs) -> anyhow::Result<Sample> {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t1",
        "-c16",
        &format!("-d{seconds}s"),
        "--latency",
        "-H",
        "Host: product-service",
        "-H",
        &format!("{}: {}", TENANT.0, TENANT.1),
    ]);
    let signed = inputs.jwt.signed(load.sig);
    match load.tokens {
        Tokens::Repeated => {
            cmd.args(["-H", &format!("Authorization: Bearer {}", signed.token)]);
        }
        Tokens::New => {
            let script = signed.script.as_deref().with_context(|| {
                format!(
                    "no token script: the {} new-token variants' tokens were not minted",
                    load.sig.name()
                )
            })?;
            cmd.arg("-s").arg(script);
        }
    }
    cmd.arg(url);
    let out = output(&mut cmd)?;
    parse_wrk(&out).with_context(|| format!("unexpected wrk output:\n{out}"))
}

pub(super) fn parse_wrk(out: &str) -> anyhow::Result<Sample> {
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
        } else if let Some(e) = line.strip_prefix("Socket errors:") {
            s.errors = socket_errors(e)?;
        } else if let Some(r) = line.strip_prefix("Requests/sec:") {
            s.rps = r.trim().parse()?;
        }
    }
    if s.rps <= 0.0 {
        bail!("no Requests/sec");
    }
    Ok(s)
}

/// ` connect 0, read 2, write 0, timeout 1` → 3.
fn socket_errors(text: &str) -> anyhow::Result<u64> {
    let mut total = 0;
    for part in text.split(',') {
        let n = part.split_whitespace().last().unwrap_or("0");
        total += n.parse::<u64>()?;
    }
    Ok(total)
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
            (s.rps, s.p50_us, s.p99_us, s.non_2xx, s.errors),
            (28814.22, 518.0, 1240.0, 12, 0)
        );
        let with_errors = format!("{out}  Socket errors: connect 0, read 2, write 0, timeout 1\n");
        assert_eq!(parse_wrk(&with_errors).unwrap().errors, 3);
    }
}
