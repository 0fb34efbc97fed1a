//! The bench's JWT inputs: two keys made at bench start — RS256 (2048-bit,
//! `kid: bench-rs256`) and ES256 (P-256, `kid: bench-es256`) — published in
//! one inline JWKS, the RequestAuthentication of the full seed policy
//! (`policy.rs`), the `jwt_authn` filter istiod would write for it, per key
//! one token every request repeats, and pre-minted tokens with distinct
//! `jti` that a wrk Lua script cycles through, one per request.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use meshwasm_harness::envoy::EnvoyRig;
use meshwasm_harness::jwt::{self, Alg, Claims, Key};
use serde_json::{Value, json};

/// Issuer of the bench tokens.
pub(super) const ISSUER: &str = "https://bench.example";
/// Their audience, the workload's service.
pub(super) const AUDIENCE: &str = "product-service";
/// Tokens a `*-new-token` variant cycles through: far more than the authn
/// filter's token cache (256 per VM) or `jwt_cache_config` (100) hold, so
/// every request verifies a signature.
pub(super) const NEW_TOKENS: usize = 5_000;
/// Token lifetime: longer than any bench run.
const LIFETIME_SECS: i64 = 86_400;

const JWT_FILTER: &str = "envoy.filters.http.jwt_authn";
const JWT_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication";
/// Istio's name for the provider of a policy's first rule.
const PROVIDER: &str = "origins-0";

/// The key a variant's tokens are signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sig {
    /// RSASSA-PKCS1-v1_5 SHA-256, 2048-bit key.
    Rs256,
    /// ECDSA P-256 SHA-256.
    Es256,
}

impl Sig {
    pub(super) const ALL: [Sig; 2] = [Sig::Rs256, Sig::Es256];

    fn alg(self) -> Alg {
        match self {
            Sig::Rs256 => Alg::RS256,
            Sig::Es256 => Alg::ES256,
        }
    }

    /// `RS256` or `ES256`.
    pub(super) fn name(self) -> &'static str {
        self.alg().name()
    }

    fn kid(self) -> &'static str {
        match self {
            Sig::Rs256 => "bench-rs256",
            Sig::Es256 => "bench-es256",
        }
    }

    fn file_stem(self) -> &'static str {
        match self {
            Sig::Rs256 => "rs256",
            Sig::Es256 => "es256",
        }
    }
}

/// The tokens of one key.
pub(super) struct Signed {
    /// The token every request of a repeated-token variant carries.
    pub token: String,
    /// Distinct valid tokens (empty unless a new-token variant uses the key).
    pub tokens: Vec<String>,
    /// The wrk script cycling [`Signed::tokens`] (written when minted).
    pub script: Option<PathBuf>,
}

/// Everything the JWT variants need, made once per run.
pub(super) struct JwtBench {
    /// The JWKS document with both public keys, as a string.
    pub jwks: String,
    rs256: Signed,
    es256: Signed,
}

impl JwtBench {
    /// Two new keys and one token each; for each key in `new_tokens`,
    /// [`NEW_TOKENS`] more, written with their wrk script under `dir`.
    pub(super) fn prepare(new_tokens: &[Sig], dir: &Path) -> anyhow::Result<JwtBench> {
        let rs = Key::generate(Alg::RS256)?.with_kid(Sig::Rs256.kid());
        let es = Key::generate(Alg::ES256)?.with_kid(Sig::Es256.kid());
        let jwks = jwt::jwks(&[&rs, &es]).to_string();
        let signed = |sig: Sig, key: &Key| -> anyhow::Result<Signed> {
            let token = mint(sig, key, "bench-repeated")?;
            if !new_tokens.contains(&sig) {
                return Ok(Signed {
                    token,
                    tokens: Vec::new(),
                    script: None,
                });
            }
            let tokens = mint_many(sig, key, NEW_TOKENS)?;
            let script = write_script(&tokens, dir, sig)?;
            Ok(Signed {
                token,
                tokens,
                script: Some(script),
            })
        };
        Ok(JwtBench {
            rs256: signed(Sig::Rs256, &rs)?,
            es256: signed(Sig::Es256, &es)?,
            jwks,
        })
    }

    /// The tokens signed with `sig`'s key.
    pub(super) fn signed(&self, sig: Sig) -> &Signed {
        match sig {
            Sig::Rs256 => &self.rs256,
            Sig::Es256 => &self.es256,
        }
    }

    /// The RequestAuthentication of the full seed policy.
    pub(super) fn request_authentication(&self) -> Value {
        request_authentication(&self.jwks)
    }

    /// The rig with Envoy's `jwt_authn` as istiod configures it for that
    /// RequestAuthentication, with `jwt_cache_config` when `cache`.
    pub(super) fn native(&self, rig: EnvoyRig, cache: bool) -> EnvoyRig {
        rig.native_filter(native_filter(&self.jwks, cache))
    }
}

/// A RequestAuthentication for the product-service workload: the bench
/// issuer, its audience, the keys inline (so nothing is fetched).
fn request_authentication(jwks: &str) -> Value {
    json!({
        "apiVersion": "security.istio.io/v1",
        "kind": "RequestAuthentication",
        "metadata": {"name": "bench-jwt", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "product-service"}},
            "jwtRules": [{"issuer": ISSUER, "audiences": [AUDIENCE], "jwks": jwks}],
        },
    })
}

/// `envoy.filters.http.jwt_authn` as istiod writes it for that policy
/// (istio/istio `pilot/pkg/security/authn/policy_applier.go`
/// `convertToEnvoyJwtConfig`): one provider, the token optional
/// (`allow_missing`), CORS preflights bypassed.
fn native_filter(jwks: &str, cache: bool) -> Value {
    let mut provider = json!({
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "local_jwks": {"inline_string": jwks},
        "from_headers": [{"name": "Authorization", "value_prefix": "Bearer "}],
        "forward": false,
        "payload_in_metadata": "payload",
    });
    if cache && let Some(obj) = provider.as_object_mut() {
        obj.insert(
            "jwt_cache_config".to_owned(),
            json!({"jwt_cache_size": 100}),
        );
    }
    json!({
        "name": JWT_FILTER,
        "typed_config": {
            "@type": JWT_TYPE,
            "providers": {PROVIDER: provider},
            "rules": [{
                "match": {"prefix": "/"},
                "requires": {"requires_any": {"requirements": [
                    {"provider_name": PROVIDER},
                    {"allow_missing": {}},
                ]}},
            }],
            "bypass_cors_preflight": true,
        },
    })
}

fn mint(sig: Sig, key: &Key, jti: &str) -> anyhow::Result<String> {
    let claims = Claims::new(ISSUER, "bench-user")
        .audience(AUDIENCE)
        .expires_in(LIFETIME_SECS)
        .claim("jti", jti);
    Ok(jwt::mint(sig.alg(), key, &json!({}), &claims.to_value())?)
}

/// `n` tokens with `jti` `bench-0` … , signed on every core.
fn mint_many(sig: Sig, key: &Key, n: usize) -> anyhow::Result<Vec<String>> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let chunk = n.div_ceil(threads).max(1);
    let starts: Vec<usize> = (0..n).step_by(chunk).collect();
    eprintln!("minting {n} {} tokens on {threads} threads", sig.name());
    let parts = std::thread::scope(|s| {
        let handles: Vec<_> = starts
            .iter()
            .map(|&start| {
                s.spawn(move || {
                    (start..n.min(start + chunk))
                        .map(|i| mint(sig, key, &format!("bench-{i}")))
                        .collect::<anyhow::Result<Vec<String>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h.join() {
                Ok(part) => part,
                Err(_) => bail!("a minting thread panicked"),
            })
            .collect::<anyhow::Result<Vec<Vec<String>>>>()
    })?;
    Ok(parts.into_iter().flatten().collect())
}

/// Writes the tokens, one a line, and a wrk script whose `request()` sends
/// the next one on every request (`Authorization: Bearer <token>`, the
/// command line's headers kept); returns the script's path.
fn write_script(tokens: &[String], dir: &Path, sig: Sig) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let list = dir.join(format!("jwt-tokens-{}.txt", sig.file_stem()));
    let mut text = tokens.join("\n");
    text.push('\n');
    std::fs::write(&list, text).with_context(|| format!("writing {}", list.display()))?;
    let script = dir.join(format!("jwt-new-token-{}.lua", sig.file_stem()));
    std::fs::write(&script, lua_script(&list.display().to_string()))
        .with_context(|| format!("writing {}", script.display()))?;
    Ok(script)
}

fn lua_script(list: &str) -> String {
    let quoted = list.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        r#"-- cargo xtask bench: a different valid token on every request,
-- cycling the pre-minted tokens of {quoted}.
local tokens = {{}}
for line in io.lines("{quoted}") do
  if #line > 0 then tokens[#tokens + 1] = line end
end
if #tokens == 0 then error("no tokens in {quoted}") end
local i = 0
request = function()
  i = i % #tokens + 1
  wrk.headers["Authorization"] = "Bearer " .. tokens[i]
  return wrk.format()
end
"#
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn the_native_filter_caches_only_when_asked() {
        let with = native_filter("{}", true);
        let without = native_filter("{}", false);
        let provider = |v: &Value| v["typed_config"]["providers"][PROVIDER].clone();

        assert_eq!(provider(&with)["jwt_cache_config"]["jwt_cache_size"], 100);
        assert!(provider(&without).get("jwt_cache_config").is_none());
        assert_eq!(provider(&without)["local_jwks"]["inline_string"], "{}");
        assert_eq!(
            without["typed_config"]["rules"][0]["requires"]["requires_any"]["requirements"][1],
            json!({"allow_missing": {}})
        );
    }

    #[test]
    fn the_request_authentication_carries_the_inline_jwks_for_the_workload() {
        let ra = request_authentication("{\"keys\":[]}");

        let rule = &ra["spec"]["jwtRules"][0];
        assert_eq!(rule["jwks"], "{\"keys\":[]}");
        assert_eq!(rule["issuer"], ISSUER);
        assert_eq!(
            ra["spec"]["selector"]["matchLabels"]["app"],
            "product-service"
        );
    }

    #[test]
    fn minted_tokens_of_both_keys_are_distinct_and_verify() {
        for sig in Sig::ALL {
            let key = Key::generate(sig.alg()).unwrap().with_kid(sig.kid());

            let tokens = mint_many(sig, &key, 5).unwrap();

            let mut unique = tokens.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), 5);
            let claims = jwt::verify(&tokens[4], &jwt::jwks(&[&key])).unwrap();
            assert_eq!(claims["jti"], "bench-4");
            assert_eq!(claims["aud"], AUDIENCE);
        }
    }

    #[test]
    fn the_lua_script_reads_the_token_list() {
        let script = lua_script("/t/jwt-tokens.txt");

        assert!(
            script.contains("io.lines(\"/t/jwt-tokens.txt\")"),
            "{script}"
        );
        assert!(script.contains("wrk.headers[\"Authorization\"] = \"Bearer \" .. tokens[i]"));
    }
}
