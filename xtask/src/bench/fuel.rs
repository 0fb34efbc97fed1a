//! Instructions (wasmtime fuel) per request in the harness, per filter:
//! deterministic, unlike the wrk figures, so a change in filter cost shows
//! exactly.

use std::time::{Duration, UNIX_EPOCH};

use anyhow::bail;
use meshwasm_harness::host::{FilterSpec, Host};

use super::rbac::TENANT;
use super::variants::{Inputs, Tokens, Variant};

/// Requests measured per variant (`--requests` changes it, e.g. to
/// profile).
pub(super) const N: usize = 200;

/// Fuel per request of a variant, and how its signature checks were done.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Fuel {
    /// Mean over the requests, all filters.
    pub mean: f64,
    /// Mean per filter, in chain order.
    pub by_filter: Vec<(String, f64)>,
    /// Mean calls from the filters into the host (hostcalls and WASI) per
    /// request, all filters: each is a VM crossing in Envoy.
    pub hostcalls: f64,
    /// The same by import name, when asked for (`--fuel-only`).
    pub by_name: Vec<(String, f64)>,
    /// Where the signatures were checked (token variants).
    pub note: Option<String>,
}

const BY_HOST: &str = "meshwasm.authn.signatures_verified_by_host";
const IN_WASM: &str = "meshwasm.authn.signatures_verified_in_wasm";

/// The token request `i` of variant `v` carries: the repeated one, or the
/// `i`-th of the pre-minted ones (cycling).
pub(super) fn token<'a>(v: &Variant, inputs: &'a Inputs, i: usize) -> &'a str {
    let signed = inputs.jwt.signed(v.load.sig);
    match v.load.tokens {
        Tokens::Repeated => signed.token.as_str(),
        Tokens::New => signed
            .tokens
            .get(i % signed.tokens.len().max(1))
            .unwrap_or(&signed.token)
            .as_str(),
    }
}

/// Mean wasmtime fuel the chain spends per request in the harness, over
/// the seed's two kinds of request (premium and basic users) carrying the
/// variant's token and tenant, in total and per filter; `None` without
/// wasm filters. With one repeated token, a first uncounted request fills
/// the token cache.
pub(super) fn fuel_per_request(
    v: &Variant,
    inputs: &Inputs,
    n: usize,
    names: bool,
) -> anyhow::Result<Option<Fuel>> {
    let n = n.max(1);
    let filters = (v.filters)(inputs);
    if filters.is_empty() {
        return Ok(None);
    }
    // Envoy checks `exp` against the OS clock; so must the harness.
    let now = u64::try_from(meshwasm_harness::jwt::now()).unwrap_or(0);
    let mut builder = Host::builder()
        .seed(1)
        .start_time(UNIX_EPOCH + Duration::from_secs(now));
    if names {
        builder = builder.count_hostcalls_by_name();
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
        let out = chain
            .request("GET", "/api/products")
            .authority("product-service")
            .header("user-type", user)
            .header(TENANT.0, TENANT.1)
            .header("authorization", format!("Bearer {}", token(v, inputs, i)))
            .send()?;
        if out.local_reply().is_some() {
            bail!(
                "variant {}: the harness answered {} ({}) instead of passing the request",
                v.name,
                out.status(),
                out.body_text()
            );
        }
        Ok(out.fuel_by_filter().to_vec())
    };
    if v.load.tokens == Tokens::Repeated {
        send(0)?;
    }
    let mut by_filter: Vec<(String, u64)> = filters.iter().map(|f| (f.name.clone(), 0)).collect();
    let calls_before = host.hostcalls();
    let names_before = host.hostcalls_by_name();
    for i in 0..n {
        for (name, fuel) in send(i)? {
            if let Some(slot) = by_filter.iter_mut().find(|(n, _)| *n == name) {
                slot.1 += fuel;
            }
        }
    }
    let per = |total: u64| total as f64 / n as f64;
    let mut by_name: Vec<(String, f64)> = host
        .hostcalls_by_name()
        .into_iter()
        .map(|(name, count)| {
            let before = names_before
                .iter()
                .find(|(b, _)| *b == name)
                .map_or(0, |(_, c)| *c);
            (name, per(count.saturating_sub(before)))
        })
        .filter(|(_, c)| *c > 0.0)
        .collect();
    let hostcalls = per(host.hostcalls().saturating_sub(calls_before));
    let unnamed = hostcalls - by_name.iter().map(|(_, c)| c).sum::<f64>();
    if names && unnamed > 0.0 {
        by_name.push(("(not named)".to_owned(), unnamed));
    }
    let note = signature_note(v, host.metric(BY_HOST), host.metric(IN_WASM));
    Ok(Some(Fuel {
        mean: per(by_filter.iter().map(|(_, f)| *f).sum()),
        by_filter: by_filter.into_iter().map(|(n, f)| (n, per(f))).collect(),
        hostcalls,
        by_name,
        note,
    }))
}

/// Where the harness checked the signatures of a variant that checks any.
pub(super) fn signature_note(
    v: &Variant,
    by_host: Option<u64>,
    in_wasm: Option<u64>,
) -> Option<String> {
    let place = match (by_host.unwrap_or(0), in_wasm.unwrap_or(0)) {
        (0, 0) => return None,
        (_, 0) => {
            "by the harness's `verify_signature` foreign function (host code, outside the fuel)"
                .to_owned()
        }
        (0, _) => "in wasm (pure-Rust crypto, inside the fuel)".to_owned(),
        (h, w) => format!("{h} by the host's `verify_signature`, {w} in wasm"),
    };
    let alg = v.load.sig.name();
    Some(match v.load.tokens {
        Tokens::Repeated => format!(
            "`{}`: one {alg} token, verified by an uncounted first request (signature checked \
             {place}), then from the filter's token cache",
            v.name
        ),
        Tokens::New => format!(
            "`{}`: {N} distinct {alg} tokens, each signature checked {place}",
            v.name
        ),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::choose;
    use super::*;

    #[test]
    fn the_signature_note_says_where_signatures_were_checked() {
        let v = choose(Some("none,authn-new-token")).unwrap();
        let new_token = v.get(1).unwrap();

        let in_wasm = signature_note(new_token, Some(0), Some(200)).unwrap();
        let by_host = signature_note(new_token, Some(200), None).unwrap();

        assert!(in_wasm.contains("in wasm (pure-Rust crypto"), "{in_wasm}");
        assert!(by_host.contains("200 distinct RS256 tokens"), "{by_host}");
        assert!(by_host.contains("`verify_signature`"), "{by_host}");
        assert!(signature_note(v.first().unwrap(), None, None).is_none());
    }
}
