//! Before a variant is measured: the request wrk will send must answer 200
//! (a 401 or 403 means the policy or the token is wrong, and the figures
//! would measure refusals), and each part of the policy the variant claims
//! to enforce must be seen in force — a tampered token refused (401), a
//! request without its tenant or under `/api/products/internal` denied
//! (403), a premium user routed to v2.

use anyhow::bail;
use meshwasm_harness::envoy::Envoy;

use super::fuel::token;
use super::rbac::TENANT;
use super::variants::{Enforced, Inputs, Variant};

const HOST: (&str, &str) = ("host", "product-service");
const PRODUCTS: &str = "/api/products";

/// Runs the checks of `v` against its running Envoy.
pub(super) fn preflight(envoy: &Envoy, v: &Variant, inputs: &Inputs) -> anyhow::Result<()> {
    let bearer = format!("Bearer {}", token(v, inputs, 0));
    let auth = ("authorization", bearer.as_str());
    let r = envoy.get(PRODUCTS, &[HOST, TENANT, auth])?;
    if r.status != 200 {
        bail!(
            "variant {}: GET {PRODUCTS} answered {} (www-authenticate: {:?}): {}",
            v.name,
            r.status,
            r.header("www-authenticate"),
            r.text()
        );
    }
    for part in v.enforces {
        match part {
            Enforced::Jwt => {
                let forged = format!("Bearer {}", tamper(token(v, inputs, 0)));
                expect(
                    envoy,
                    v,
                    PRODUCTS,
                    &[HOST, TENANT, ("authorization", forged.as_str())],
                    401,
                    None,
                )?;
            }
            Enforced::Rbac => {
                let denied = Some("RBAC: access denied");
                expect(envoy, v, PRODUCTS, &[HOST, auth], 403, denied)?;
                let internal = "/api/products/internal/stats";
                expect(envoy, v, internal, &[HOST, TENANT, auth], 403, denied)?;
            }
            Enforced::Routes => {
                let premium = [HOST, TENANT, auth, ("user-type", "premium")];
                let r = envoy.get(PRODUCTS, &premium)?;
                if (r.status, r.header("service-version")) != (200, Some("v2")) {
                    bail!(
                        "variant {}: a premium user got {} from {:?} instead of 200 from v2",
                        v.name,
                        r.status,
                        r.header("service-version")
                    );
                }
            }
        }
    }
    Ok(())
}

fn expect(
    envoy: &Envoy,
    v: &Variant,
    path: &str,
    headers: &[(&str, &str)],
    status: u16,
    body: Option<&str>,
) -> anyhow::Result<()> {
    let r = envoy.get(path, headers)?;
    if r.status != status || body.is_some_and(|b| r.text() != b) {
        bail!(
            "variant {}: GET {path} answered {} {:?} instead of {status} {}",
            v.name,
            r.status,
            r.text(),
            body.unwrap_or("")
        );
    }
    Ok(())
}

/// `token` with one signature character changed (in the middle, so that
/// it changes signature bits, not base64 padding bits).
pub(super) fn tamper(token: &str) -> String {
    let Some(dot) = token.rfind('.') else {
        return format!("{token}x");
    };
    let at = dot + 1 + (token.len() - dot - 1) / 2;
    token
        .char_indices()
        .map(|(i, c)| match (i == at, c) {
            (true, 'A') => 'B',
            (true, _) => 'A',
            (false, c) => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tampered_token_differs_in_one_signature_character() {
        let t = "aaa.bbb.cdefgh";

        let forged = tamper(t);

        assert_eq!(forged, "aaa.bbb.cdeAgh");
        assert_eq!(tamper("aaa.bbb.AAAA"), "aaa.bbb.AABA");
    }
}
