//! The authn stage against SPEC.md §RequestAuthentication and
//! §PeerAuthentication: valid tokens, every attack, audiences, locations,
//! outputs, mTLS modes, remote keys.

use std::rc::Rc;

use serde_json::{Value, json};

use super::testkeys::{Signer, jwks, mint};
use super::*;
use crate::config::{Document, Kind};
use crate::http::HeaderList;
use crate::pipeline::tests::MapSink;
use crate::pipeline::{Env, Exchange, KeySource, KeyState, Metrics, Stage, Wake};
use crate::rng::SplitMix64;
use crate::testutil::document_of;
use crate::verdict::{HeaderOp, Verdict};

pub(super) const NOW_MS: u64 = 1_800_000_000_000;
pub(super) const ISS: &str = "https://auth.example.com";

pub(super) fn now() -> u64 {
    NOW_MS
}

pub(super) fn ra(rule: Value) -> Value {
    json!({"apiVersion": "security.istio.io/v1", "kind": "RequestAuthentication",
           "metadata": {"name": "jwt"}, "spec": {"jwtRules": [rule]}})
}

pub(super) fn inline(extra: Value) -> Value {
    let mut rule = json!({"issuer": ISS, "jwks": jwks().to_string()});
    if let (Some(r), Some(e)) = (rule.as_object_mut(), extra.as_object()) {
        r.extend(e.clone());
    }
    ra(rule)
}

pub(super) fn policy(resources: Vec<Value>) -> Result<AuthnPolicy, crate::config::ConfigError> {
    let doc = Document::parse(
        &document_of(resources),
        &[Kind::RequestAuthentication, Kind::PeerAuthentication],
    )?;
    AuthnPolicy::compile(&doc)
}

pub(super) fn claims(extra: Value) -> Value {
    let mut c = json!({"iss": ISS, "sub": "alice", "aud": "product-service",
                       "exp": NOW_MS / 1000 + 600});
    if let (Some(m), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    c
}

pub(super) fn rs256(extra: Value) -> String {
    mint(
        Signer::Rsa,
        json!({"alg": "RS256", "kid": "rsa"}),
        claims(extra),
    )
}

pub(super) fn bearer(token: &str) -> HeaderList {
    HeaderList::request("GET", "product-service", "/api/products?x=1")
        .with("authorization", &format!("Bearer {token}"))
}

pub(super) struct Keys(pub(super) KeyState);
impl KeySource for Keys {
    fn jwks(&self, _source: usize) -> KeyState {
        self.0.clone()
    }
}

/// Runs the stage once (and once more after a wake if it waited).
pub(super) fn run_with(
    stage: &AuthnStage,
    req: HeaderList,
    keys: &dyn KeySource,
    wake: Option<&dyn KeySource>,
) -> (Verdict<'static>, Option<Identity>, Vec<HeaderOp>) {
    let mut ex = Exchange::new(req);
    let mut state = AuthnState::default();
    let mut rng = SplitMix64::new(1);
    let mut sink = MapSink::default();
    let mut env = Env {
        now_ms: &now,
        keys,
        ..Env::new(&mut rng, &mut sink)
    };
    let mut v = stage.request(&mut ex, &mut state, &mut env);
    if let (Verdict::Pause(_), Some(after)) = (&v, wake) {
        env.keys = after;
        v = stage.wake(&mut ex, &mut state, Wake::Keys, &mut env);
    }
    let ops = match &v {
        Verdict::Continue(m) => m.iter().cloned().collect(),
        _ => Vec::new(),
    };
    let owned = match v {
        Verdict::Continue(_) => Verdict::Continue(Default::default()),
        Verdict::Pause(w) => Verdict::Pause(w),
        Verdict::Reply(r) => {
            let mut out = crate::verdict::LocalReply::new(r.status, b"", "x");
            out.body = std::borrow::Cow::Owned(r.body.into_owned());
            out.headers = r.headers;
            Verdict::Reply(out)
        }
    };
    (owned, ex.identity.map(|i| (*i).clone()), ops)
}

pub(super) fn stage_of(resources: Vec<Value>) -> AuthnStage {
    AuthnStage::new(Rc::new(policy(resources).unwrap()), &mut Metrics::default())
}

pub(super) fn run(
    resources: Vec<Value>,
    req: HeaderList,
) -> (Verdict<'static>, Option<Identity>, Vec<HeaderOp>) {
    run_with(&stage_of(resources), req, &crate::pipeline::NoKeys, None)
}

/// The status and body of a refusal, or `(200, "")` when let through.
pub(super) fn answer(resources: Vec<Value>, req: HeaderList) -> (u32, String) {
    match run(resources, req).0 {
        Verdict::Reply(r) => (r.status, String::from_utf8_lossy(&r.body).into_owned()),
        Verdict::Continue(_) => (200, String::new()),
        Verdict::Pause(w) => panic!("unexpected wait {w:?}"),
    }
}

#[test]
fn a_valid_token_passes_and_names_the_request_principal() {
    let (v, id, ops) = run(vec![inline(json!({}))], bearer(&rs256(json!({}))));
    assert!(matches!(v, Verdict::Continue(_)));
    let id = id.unwrap();
    assert_eq!(
        id.request_principal.as_deref(),
        Some("https://auth.example.com/alice")
    );
    assert_eq!(id.audiences, vec!["product-service"]);
    assert!(
        ops.contains(&HeaderOp::Remove("authorization".into())),
        "not forwarded: {ops:?}"
    );
}

#[test]
fn every_algorithm_verifies_with_its_key_with_or_without_kid() {
    let cases = [
        (Signer::Rsa, "RS256", "rsa"),
        (Signer::Rsa, "RS384", "rsa"),
        (Signer::Rsa, "PS256", "rsa"),
        (Signer::P256, "ES256", "p256"),
        (Signer::P384, "ES384", "p384"),
        (Signer::Ed, "EdDSA", "ed"),
        (Signer::Hs, "HS256", "hs"),
    ];
    for (signer, alg, kid) in cases {
        for header in [json!({"alg": alg, "kid": kid}), json!({"alg": alg})] {
            let token = mint(
                signer,
                header.clone(),
                claims(json!({"aud": ["x", "product-service"]})),
            );
            let got = answer(
                vec![inline(json!({"audiences": ["product-service"]}))],
                bearer(&token),
            );
            assert_eq!(got, (200, String::new()), "{header}");
        }
    }
}

#[test]
fn attacks_are_refused_with_envoys_status() {
    let good = rs256(json!({}));
    let (h, p, _) = {
        let mut it = good.split('.');
        (
            it.next().unwrap().to_owned(),
            it.next().unwrap().to_owned(),
            (),
        )
    };
    let b64 = |v: Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap())
    };
    let none = b64(json!({"alg": "none"}));
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "alg none without signature",
            format!("{none}.{p}."),
            status::JwtStatus::BadFormat.message(),
        ),
        (
            "alg none with a signature",
            format!("{none}.{p}.c2ln"),
            "Jwt header [alg] is not supported",
        ),
        (
            "HS/RS confusion",
            mint(
                Signer::HsWithRsaPublic,
                json!({"alg": "HS256", "kid": "rsa"}),
                claims(json!({})),
            ),
            "Jwt verification fails",
        ),
        (
            "crit header",
            mint(
                Signer::Rsa,
                json!({"alg": "RS256", "kid": "rsa", "crit": ["exp"]}),
                claims(json!({})),
            ),
            "Jwt verification fails",
        ),
        (
            "embedded jwk of the attacker",
            mint(
                Signer::EvilRsa,
                json!({"alg": "RS256", "jwk": {"kty": "RSA"}, "jku": "https://evil"}),
                claims(json!({})),
            ),
            "Jwt verification fails",
        ),
        (
            "expired beyond the skew",
            rs256(json!({"exp": NOW_MS / 1000 - 61})),
            "Jwt is expired",
        ),
        (
            "not yet valid beyond the skew",
            rs256(json!({"nbf": NOW_MS / 1000 + 61})),
            "Jwt not yet valid",
        ),
        (
            "wrong issuer",
            rs256(json!({"iss": "https://evil.example.com"})),
            "Jwt issuer is not configured",
        ),
        (
            "bad signature",
            format!("{h}.{p}.{}", "A".repeat(342)),
            "Jwt verification fails",
        ),
        (
            "unknown kid",
            mint(
                Signer::Rsa,
                json!({"alg": "RS256", "kid": "nope"}),
                claims(json!({})),
            ),
            "Jwks doesn't have key to match kid or alg from Jwt",
        ),
        (
            "truncated",
            good.get(..good.len() - 10).unwrap().to_owned(),
            "Jwt verification fails",
        ),
        (
            "two parts",
            format!("{h}.{p}"),
            status::JwtStatus::BadFormat.message(),
        ),
        (
            "empty middle section",
            format!("{h}..{p}"),
            status::JwtStatus::BadFormat.message(),
        ),
        (
            "garbage",
            "garbage".into(),
            status::JwtStatus::BadFormat.message(),
        ),
        (
            "bad base64 header",
            format!("@@.{p}.c2ln"),
            "Jwt header is an invalid Base64url encoded",
        ),
        (
            "header not JSON",
            format!("{}.{p}.c2ln", b64(json!("x")).replace("Ing", "Ixx")),
            "Jwt header is an invalid JSON",
        ),
        (
            "payload not JSON",
            format!("{h}.bm90IGpzb24.c2ln"),
            "Jwt payload is an invalid JSON",
        ),
        (
            "padded signature",
            format!("{good}="),
            "Jwt signature is an invalid Base64url encoded",
        ),
        (
            "oversize",
            format!("{h}.{}.c2ln", "A".repeat(70_000)),
            status::JwtStatus::BadFormat.message(),
        ),
    ];
    for (name, token, want) in cases {
        let (status, body) = answer(vec![inline(json!({}))], bearer(&token));
        assert_eq!((status, body.as_str()), (401, want), "{name}");
    }
}

#[test]
fn the_skew_is_sixty_seconds_both_ways() {
    let within = rs256(json!({"exp": NOW_MS / 1000 - 60, "nbf": NOW_MS / 1000 + 60}));
    assert_eq!(answer(vec![inline(json!({}))], bearer(&within)).0, 200);
}

#[test]
fn a_refusal_carries_envoys_challenge_and_details() {
    let token = rs256(json!({"exp": 1}));
    let (v, _, _) = run(vec![inline(json!({}))], bearer(&token));
    let Verdict::Reply(r) = v else {
        panic!("not refused")
    };
    assert_eq!(
        r.headers,
        vec![(
            "www-authenticate".to_owned(),
            "Bearer realm=\"http://product-service/api/products?x=1\", error=\"invalid_token\""
                .to_owned()
        )]
    );
}

#[test]
fn a_wrong_audience_is_403_and_audiences_ignore_scheme_and_trailing_slash() {
    let rule = inline(json!({"audiences": ["product-service"]}));
    let other = rs256(json!({"aud": "billing"}));
    assert_eq!(
        answer(vec![rule.clone()], bearer(&other)),
        (403, "Audiences in Jwt are not allowed".into())
    );
    let url = rs256(json!({"aud": "https://product-service/"}));
    assert_eq!(answer(vec![rule.clone()], bearer(&url)).0, 200);
    let evil = rs256(json!({"aud": "https://product-service.evil"}));
    assert_eq!(answer(vec![rule], bearer(&evil)).0, 403);
}

#[test]
fn no_token_passes_unauthenticated() {
    let req = HeaderList::request("GET", "product-service", "/");
    let (v, id, _) = run(vec![inline(json!({}))], req);
    assert!(matches!(v, Verdict::Continue(_)));
    assert_eq!(id.unwrap().request_principal, None);
}

#[test]
fn a_bad_second_token_elsewhere_fails_the_request() {
    let good = rs256(json!({}));
    let req = HeaderList::request("GET", "product-service", "/p?access_token=bad.token.x")
        .with("authorization", &format!("Bearer {good}"));
    assert_eq!(answer(vec![inline(json!({}))], req).0, 401);
}

#[test]
fn configured_locations_replace_the_defaults() {
    let rule = inline(
        json!({"fromHeaders": [{"name": "x-jwt", "prefix": "Token "}], "fromParams": ["t"], "forwardOriginalToken": true}),
    );
    let token = rs256(json!({}));
    let in_header =
        HeaderList::request("GET", "product-service", "/").with("x-jwt", &format!("Token {token}"));
    let (v, id, ops) = run(vec![rule.clone()], in_header);
    assert!(matches!(v, Verdict::Continue(_)) && id.unwrap().request_principal.is_some());
    assert!(
        !ops.iter().any(|o| o.name() == "x-jwt"),
        "forwarded: {ops:?}"
    );
    let in_param = HeaderList::request("GET", "product-service", &format!("/?t={token}"));
    assert!(
        run(vec![rule.clone()], in_param)
            .1
            .unwrap()
            .request_principal
            .is_some()
    );
    // The default Authorization header is not read any more.
    let (_, id, _) = run(vec![rule], bearer("garbage"));
    assert_eq!(id.unwrap().request_principal, None);
}

#[test]
fn payload_and_claims_go_to_their_headers_and_client_copies_never_count() {
    let rule = inline(json!({
        "outputPayloadToHeader": "x-jwt-payload",
        "outputClaimToHeaders": [{"header": "x-sub", "claim": "sub"}, {"header": "x-tier", "claim": "org.tier"},
                                 {"header": "x-n", "claim": "n"}, {"header": "x-f", "claim": "f"}, {"header": "x-l", "claim": "l"}]}));
    let token = rs256(json!({"org": {"tier": "gold"}, "n": 7, "f": 1.5, "l": ["a"]}));
    let req = bearer(&token)
        .with("x-sub", "mallory")
        .with("x-jwt-payload", "forged");
    let (_, _, ops) = run(vec![rule.clone()], req);
    let payload = token.split('.').nth(1).unwrap();
    for want in [
        HeaderOp::Remove("x-sub".into()),
        HeaderOp::Remove("x-jwt-payload".into()),
        HeaderOp::Set("x-jwt-payload".into(), payload.into()),
        HeaderOp::Set("x-sub".into(), "alice".into()),
        HeaderOp::Set("x-tier".into(), "gold".into()),
        HeaderOp::Set("x-n".into(), "7".into()),
        HeaderOp::Set("x-f".into(), "1.500000".into()),
        HeaderOp::Set("x-l".into(), "WyJhIl0=".into()),
    ] {
        assert!(ops.contains(&want), "{want:?} not in {ops:?}");
    }
    // Without a token, the forged copies are removed all the same.
    let plain = HeaderList::request("GET", "product-service", "/").with("x-sub", "mallory");
    let (_, _, ops) = run(vec![rule], plain);
    assert!(ops.contains(&HeaderOp::Remove("x-sub".into())));
}

fn seed() -> Vec<Value> {
    crate::testutil::resources("authentication-policy.yaml")
}

#[test]
fn the_seed_policy_compiles_with_strict_mtls_and_remote_keys() {
    let p = policy(seed()).unwrap();
    assert_eq!(p.mtls.mode(None), mtls::Mode::Strict);
    assert_eq!(
        p.remotes,
        vec![RemoteJwks {
            uri: "https://auth.example.com/.well-known/jwks.json".into(),
            cluster: "outbound|443||auth.example.com".into(),
            authority: "auth.example.com".into(),
            path: "/.well-known/jwks.json".into(),
            timeout_ms: 5_000,
            cache_ms: 300_000,
        }]
    );
}

#[test]
fn strict_mtls_refuses_plaintext_and_names_the_peer_under_mtls() {
    let plain = HeaderList::request("GET", "product-service", "/");
    assert_eq!(
        answer(seed(), plain.clone()),
        (403, "RBAC: access denied".into())
    );
    let mut tls = plain;
    tls.properties.push(("connection.mtls".into(), vec![1]));
    tls.properties.push((
        "connection.uri_san_peer_certificate".into(),
        b"spiffe://cluster.local/ns/default/sa/frontend".to_vec(),
    ));
    let (v, id, _) = run(seed(), tls);
    assert!(matches!(v, Verdict::Continue(_)));
    assert_eq!(
        id.unwrap().peer_principal.as_deref(),
        Some("cluster.local/ns/default/sa/frontend")
    );
}

#[test]
fn peer_authentication_scopes_and_ports_compose_as_istio_does() {
    let pa = |name: &str, ns: &str, selector: bool, mode: &str, ports: Value| {
        let mut spec = json!({"mtls": {"mode": mode}, "portLevelMtls": ports});
        if selector {
            spec["selector"] = json!({"matchLabels": {"app": "product-service"}});
        }
        json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
               "metadata": {"name": name, "namespace": ns}, "spec": spec})
    };
    let mode = |r: Vec<Value>, port: Option<u32>| policy(r).unwrap().mtls.mode(port);
    assert_eq!(mode(vec![], None), mtls::Mode::Permissive);
    assert_eq!(
        mode(
            vec![pa("m", "istio-system", false, "STRICT", json!({}))],
            None
        ),
        mtls::Mode::Strict
    );
    let ns_over_mesh = vec![
        pa("m", "istio-system", false, "STRICT", json!({})),
        pa("n", "default", false, "PERMISSIVE", json!({})),
    ];
    assert_eq!(mode(ns_over_mesh, None), mtls::Mode::Permissive);
    let unset_inherits = vec![
        pa("n", "default", false, "STRICT", json!({})),
        pa(
            "w",
            "default",
            true,
            "UNSET",
            json!({"8080": {"mode": "DISABLE"}}),
        ),
    ];
    assert_eq!(mode(unset_inherits.clone(), None), mtls::Mode::Strict);
    assert_eq!(mode(unset_inherits, Some(8080)), mtls::Mode::Disable);
    let other_ns = vec![pa("o", "other", false, "STRICT", json!({}))];
    assert_eq!(mode(other_ns, None), mtls::Mode::Permissive);
}

#[test]
fn invalid_policies_are_refused_with_their_path() {
    let at = "resources[0].spec.jwtRules[0]";
    let cases = [
        (json!({}), format!("{at}.issuer")),
        (
            json!({"issuer": ISS, "jwksUri": "auth.example.com/jwks"}),
            format!("{at}.jwksUri"),
        ),
        (
            json!({"issuer": ISS, "jwksUri": "https://a:99999/jwks"}),
            format!("{at}.jwksUri"),
        ),
        (
            json!({"issuer": ISS, "jwks": "{\"keys\": [{\"kty\": \"XYZ\"}]}"}),
            format!("{at}.jwks"),
        ),
        (
            json!({"issuer": ISS, "jwks": "not json"}),
            format!("{at}.jwks"),
        ),
        (
            json!({"issuer": ISS, "audiences": [""]}),
            format!("{at}.audiences[0]"),
        ),
        (
            json!({"issuer": ISS, "fromHeaders": [{"prefix": "x"}]}),
            format!("{at}.fromHeaders[0].name"),
        ),
        (
            json!({"issuer": ISS, "fromParams": [""]}),
            format!("{at}.fromParams[0]"),
        ),
        (
            json!({"issuer": ISS, "outputClaimToHeaders": [{"header": "bad header", "claim": "sub"}]}),
            format!("{at}.outputClaimToHeaders[0].header"),
        ),
        (
            json!({"issuer": ISS, "issuerr": "x"}),
            format!("{at}.issuerr"),
        ),
    ];
    for (rule, path) in cases {
        let e = policy(vec![ra(rule.clone())]).unwrap_err();
        assert!(e.path.starts_with(&path), "{rule}: {e}");
    }
}

#[test]
fn an_identitys_json_is_made_once_and_a_changed_clone_is_serialised_anew() {
    let id = Identity {
        request_principal: Some("iss/sub".into()),
        ..Identity::default()
    };
    let first = id.to_json().as_ptr();
    assert_eq!(id.to_json().as_ptr(), first, "cached");
    let with_peer = Identity {
        peer_principal: Some("cluster.local/ns/a/sa/b".into()),
        ..id.clone()
    };
    assert_eq!(
        Identity::from_json(with_peer.to_json()),
        Some(with_peer.clone())
    );
    assert!(
        String::from_utf8_lossy(with_peer.to_json()).contains("peerPrincipal"),
        "the clone's own JSON"
    );
    assert_eq!(Identity::from_json(id.to_json()), Some(id));
}
