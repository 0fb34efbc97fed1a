//! The authn filter in real Envoy 1.40 (one worker, loopback) on the seed's
//! `authentication-policy.yaml` pasted as is: valid tokens pass, a token for
//! another audience gets 403, every attack token of SPEC.md
//! §RequestAuthentication Behaviour 9 gets 401 with its status string and
//! the `www-authenticate` challenge (Behaviour 3–4, Verified 1–3, 10–11) and
//! the filter keeps serving afterwards; inline `jwks` verify without a
//! fetch; STRICT mTLS refuses plaintext and certificate-less TLS (§Peer-
//! Authentication 4); and the identity reaches the next filter through
//! Envoy filter state, where no client header can forge it. The remote key
//! set's fetches are in `authn_e2e_jwks.rs`.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod authn_e2e_common;

use authn_e2e_common::{
    AUDIENCE, FRONTEND_PRINCIPAL, ISSUER, MTLS_REFUSED, PATH, Rig, Setup, assert_passed,
    assert_refused, bearer, claims, document, mint, provider_key, seed_document, seed_resources,
    seed_rule,
};
use meshwasm_harness::client::Response;
use meshwasm_harness::envoy::{ClientCertificate, ListenerTls};
use meshwasm_harness::jwt::malformed::{self, Part, PublicKeyBytes};
use meshwasm_harness::jwt::{self, Alg, Claims, Key};
use meshwasm_harness::upstream::JwksServer;
use serde_json::{Value, json};

/// The seed policy in Envoy, its keys served by a JWKS server.
fn seed_rig(key: &Key) -> (Rig, JwksServer) {
    let jwks = JwksServer::start(&key.jwks()).unwrap();
    let config = seed_document();
    let rig = Setup::new(&config).jwks(jwks.addr()).start();
    (rig, jwks)
}

#[test]
fn valid_tokens_with_or_without_kid_or_with_an_audience_list_and_token_less_requests_pass() {
    // Arrange
    let key = provider_key();
    let (rig, _jwks) = seed_rig(&key);
    let no_kid_token = jwt::mint(
        Alg::RS256,
        &key,
        &json!({"kid": null}),
        &claims("bob").to_value(),
    )
    .unwrap();
    let requests = [
        ("no token", None),
        ("kid", Some(mint(&key, &claims("alice")))),
        ("no kid", Some(no_kid_token)),
        (
            "aud list",
            Some(mint(
                &key,
                &claims("carol").audiences(&["other-service", AUDIENCE]),
            )),
        ),
    ];

    // Act
    let responses: Vec<(&str, Response)> = requests
        .iter()
        .map(|(what, token)| match token {
            Some(t) => (*what, rig.get_with(t)),
            None => (*what, rig.get(PATH, &[])),
        })
        .collect();

    // Assert
    for (what, r) in &responses {
        assert_passed(r, what);
    }
    let upstream = rig.service.last_request().unwrap();
    assert_eq!(
        upstream.header("authorization"),
        None,
        "a verified token is not forwarded"
    );
    assert_eq!(rig.authn_counter("jwt_verified"), 3);
    assert_eq!(rig.authn_counter("no_token"), 1);
    rig.assert_no_trap();
}

#[test]
fn a_token_for_another_audience_is_refused_with_403() {
    // Arrange
    let key = provider_key();
    let (rig, _jwks) = seed_rig(&key);
    let token = mint(&key, &claims("alice").audience("billing-service"));

    // Act
    let r = rig.get_with(&token);

    // Assert
    assert_refused(&rig, &r, 403, "Audiences in Jwt are not allowed", PATH);
    assert_eq!(rig.service.hits(), 0);
}

/// A request carrying a hostile token and the status string it must get.
struct Attack {
    name: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    message: &'static str,
}

fn in_header(name: &'static str, token: String, message: &'static str) -> Attack {
    Attack {
        name,
        path: PATH.to_owned(),
        headers: vec![("authorization", bearer(&token))],
        message,
    }
}

const FORM: &str =
    "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections";
const FAILS: &str = "Jwt verification fails";

/// Every attack of SPEC.md §RequestAuthentication Behaviour 9 (and the
/// malformed tokens of Behaviour 4) against the key `key` serves.
fn attacks(key: &Key) -> Vec<Attack> {
    let c = claims("alice");
    let cv = c.to_value();
    let good = mint(key, &c);
    let forger = Key::generate(Alg::RS256).unwrap().with_kid("k1");
    let ec_forger = Key::generate(Alg::ES256).unwrap().with_kid("k1");
    let header = serde_json::to_vec(&json!({"alg": "RS256", "kid": "k1"})).unwrap();
    let payload = serde_json::to_vec(&cv).unwrap();
    let dup = format!(
        r#"{{"iss":"{ISSUER}","sub":"alice","sub":"admin","aud":"{AUDIENCE}","exp":{}}}"#,
        jwt::now() + 3600
    );
    let sig = good.rsplit('.').next().unwrap();
    let truncated = format!(
        "{}.{}",
        good.rsplit_once('.').unwrap().0,
        &sig[..sig.len() / 8 * 4]
    );
    let expired = mint(key, &c.clone().expired_by(120));
    vec![
        in_header(
            "alg none, no signature",
            malformed::alg_none(&cv, None),
            FORM,
        ),
        in_header(
            "alg none with a signature",
            malformed::alg_none(&cv, Some(b"sig")),
            "Jwt header [alg] is not supported",
        ),
        in_header(
            "HS256 keyed with the RSA public key (PEM)",
            malformed::hs_with_rsa_public_key(Alg::HS256, key, PublicKeyBytes::Pem, &cv).unwrap(),
            FAILS,
        ),
        in_header(
            "HS512 keyed with the RSA public key (DER)",
            malformed::hs_with_rsa_public_key(Alg::HS512, key, PublicKeyBytes::Der, &cv).unwrap(),
            FAILS,
        ),
        in_header(
            "RS256 label on an ES256 signature",
            malformed::mislabelled(Alg::RS256, Alg::ES256, &ec_forger, &cv).unwrap(),
            FAILS,
        ),
        in_header(
            "psychic ECDSA signature",
            malformed::zero_ecdsa_signature(Alg::ES256, &ec_forger, &cv).unwrap(),
            FAILS,
        ),
        in_header(
            "crit header",
            malformed::with_crit(Alg::RS256, key, &cv).unwrap(),
            FAILS,
        ),
        in_header(
            "embedded jwk",
            malformed::with_embedded_jwk(Alg::RS256, &forger, &cv).unwrap(),
            FAILS,
        ),
        in_header(
            "jku",
            malformed::with_jku(Alg::RS256, &forger, "http://127.0.0.1:1/jwks.json", &cv).unwrap(),
            FAILS,
        ),
        in_header("expired 120 s ago", expired.clone(), "Jwt is expired"),
        in_header(
            "valid only in 120 s",
            mint(key, &c.clone().not_yet_valid_by(120)),
            "Jwt not yet valid",
        ),
        in_header(
            "another issuer",
            mint(
                key,
                &Claims::new("https://evil.example.com", "alice").audience(AUDIENCE),
            ),
            "Jwt issuer is not configured",
        ),
        in_header(
            "flipped signature bit",
            malformed::bad_signature(&good),
            FAILS,
        ),
        in_header(
            "payload changed to sub admin",
            malformed::tampered(&good, &claims("admin").to_value()),
            FAILS,
        ),
        in_header(
            "unknown kid",
            malformed::with_kid(Alg::RS256, key, "k-unknown", &cv).unwrap(),
            "Jwks doesn't have key to match kid or alg from Jwt",
        ),
        in_header("truncated signature", truncated, FAILS),
        in_header(
            "padded signature",
            malformed::padded(&good, Part::Signature),
            "Jwt signature is an invalid Base64url encoded",
        ),
        in_header("two parts", malformed::two_parts(&good), FORM),
        in_header("garbage", malformed::garbage(), FORM),
        in_header(
            "header not base64url",
            malformed::bad_base64(&good, Part::Header),
            "Jwt header is an invalid Base64url encoded",
        ),
        in_header(
            "payload not base64url",
            malformed::bad_base64(&good, Part::Payload),
            "Jwt payload is an invalid Base64url encoded",
        ),
        in_header(
            "signature not base64url",
            malformed::bad_base64(&good, Part::Signature),
            "Jwt signature is an invalid Base64url encoded",
        ),
        in_header(
            "header not JSON",
            jwt::sign_parts(Alg::RS256, key, b"{\"alg\":\"RS256\"", &payload).unwrap(),
            "Jwt header is an invalid JSON",
        ),
        in_header(
            "payload not JSON",
            jwt::sign_parts(Alg::RS256, key, &header, b"{not json").unwrap(),
            "Jwt payload is an invalid JSON",
        ),
        in_header(
            "duplicate sub claim",
            jwt::sign_parts(Alg::RS256, key, &header, dup.as_bytes()).unwrap(),
            "Jwt payload is an invalid JSON",
        ),
        in_header(
            "20 KB forged token",
            malformed::oversize(Alg::RS256, &forger, &cv, 20_000).unwrap(),
            FAILS,
        ),
        Attack {
            name: "valid header token, forged ?access_token=",
            path: format!("{PATH}?access_token={}", malformed::bad_signature(&good)),
            headers: vec![("authorization", bearer(&good))],
            message: FAILS,
        },
        Attack {
            name: "expired header token, valid ?access_token=",
            path: format!("{PATH}?access_token={good}"),
            headers: vec![("authorization", bearer(&expired))],
            message: "Jwt is expired",
        },
        Attack {
            name: "two Authorization headers",
            path: PATH.to_owned(),
            headers: vec![
                ("authorization", bearer(&good)),
                ("authorization", bearer(&good)),
            ],
            message: FORM,
        },
    ]
}

#[test]
fn every_attack_token_gets_401_with_its_status_and_valid_tokens_keep_passing() {
    // Arrange
    let key = provider_key();
    let (rig, _jwks) = seed_rig(&key);
    let valid = mint(&key, &claims("alice"));
    assert_passed(&rig.get_with(&valid), "before the attacks");
    let attacks = attacks(&key);

    // Act
    let answers: Vec<(Response, Response)> = attacks
        .iter()
        .map(|a| {
            let headers: Vec<(&str, &str)> =
                a.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            (rig.get(&a.path, &headers), rig.get_with(&valid))
        })
        .collect();

    // Assert
    for (attack, (refused, after)) in attacks.iter().zip(&answers) {
        assert_eq!(
            (refused.status, refused.text().as_str()),
            (401, attack.message),
            "{}",
            attack.name
        );
        assert_eq!(
            refused.header("www-authenticate"),
            Some(rig.challenge(&attack.path).as_str()),
            "{}",
            attack.name
        );
        assert_passed(after, &format!("a valid token after {}", attack.name));
    }
    assert_eq!(rig.service.hits(), 1 + attacks.len() as u64);
    assert_eq!(rig.authn_counter("jwt_denied"), attacks.len() as u64);
    rig.assert_no_trap();
}

#[test]
fn a_valid_20_kb_token_passes_and_envoy_itself_answers_431_to_a_70_kb_one() {
    // Arrange: no cap below Envoy's 60 KiB header limit (SPEC.md Verified 10).
    let key = provider_key();
    let (rig, _jwks) = seed_rig(&key);
    let cv = claims("alice").to_value();
    let big = malformed::oversize(Alg::RS256, &key, &cv, 20_000).unwrap();
    let huge = malformed::oversize(Alg::RS256, &key, &cv, 70_000).unwrap();

    // Act
    let big_answer = rig.get_with(&big);
    let huge_answer = rig.get_with(&huge);

    // Assert
    assert!(big.len() >= 20_000);
    assert_passed(&big_answer, "a 20 KB token");
    assert_eq!(huge_answer.status, 431, "{}", huge_answer.text());
    assert_eq!(huge_answer.header("www-authenticate"), None);
    assert_eq!(rig.authn_counter("jwt_verified"), 1);
    rig.assert_no_trap();
}

#[test]
fn with_inline_jwks_instead_of_jwks_uri_a_valid_token_passes_without_a_fetch() {
    // Arrange: the seed rule with the same keys written inline.
    let key = provider_key();
    let mut resources = seed_resources();
    let rule = seed_rule(&mut resources);
    rule.remove("jwksUri");
    rule.insert("jwks".to_owned(), Value::from(key.jwks().to_string()));
    let config = document(resources);
    let rig = Setup::new(&config).start();

    // Act
    let valid = rig.get_with(&mint(&key, &claims("alice")));
    let forged = rig.get_with(&malformed::bad_signature(&mint(&key, &claims("alice"))));

    // Assert
    assert_passed(&valid, "inline keys");
    assert_refused(&rig, &forged, 401, FAILS, PATH);
    assert!(!rig.envoy.log().contains("cannot fetch"));
    rig.assert_no_trap();
}

#[test]
fn under_strict_mtls_plaintext_and_certificate_less_tls_get_403_and_mtls_passes() {
    // Arrange: a listener that takes plaintext and TLS without a client
    // certificate too, so the filter's own refusal shows.
    let config = seed_document();
    let rig = Setup::new(&config).start();
    let url = format!("{}{PATH}", rig.envoy.https_url());

    // Act
    let plain = rig.envoy.get(PATH, &[]).unwrap();
    let tls = rig.tls.get(&url, &[]).unwrap();
    let mtls = rig.get(PATH, &[]);

    // Assert
    for (what, r) in [("plaintext", &plain), ("TLS without a certificate", &tls)] {
        assert_eq!((r.status, r.text().as_str()), (403, MTLS_REFUSED), "{what}");
        assert_eq!(r.header("www-authenticate"), None, "{what}");
    }
    assert_passed(&mtls, "mTLS");
    assert_eq!(rig.service.hits(), 1);
    assert_eq!(rig.authn_counter("mtls_denied"), 2);
    rig.assert_no_trap();
}

#[test]
fn a_strict_listener_closes_plaintext_and_certificate_less_connections_before_the_filter() {
    // Arrange: Istio's STRICT listener shape (SPEC.md §PeerAuthentication 4).
    let config = seed_document();
    let rig = Setup::new(&config)
        .listener(|pki| {
            ListenerTls::new(pki)
                .client_certificate(ClientCertificate::Required)
                .plaintext(false)
        })
        .start();
    let url = format!("{}{PATH}", rig.envoy.https_url());

    // Act
    let plain = rig.envoy.get(PATH, &[]);
    let tls = rig.tls.get(&url, &[]);
    let mtls = rig.get(PATH, &[]);

    // Assert
    assert!(plain.is_err(), "{plain:?}");
    assert!(tls.is_err(), "{tls:?}");
    assert_passed(&mtls, "mTLS");
    assert_eq!(rig.authn_counter("mtls_denied"), 0);
}

/// The identity the next filter (the probe) read from filter state, and
/// the output headers it saw.
fn seen_by_next(r: &Response) -> (Value, Value) {
    assert_eq!(r.header("x-probe"), Some("next"), "{}", r.text());
    let body = r.json().unwrap();
    let identity = |key: &str| -> Value {
        match &body[key] {
            Value::String(text) => serde_json::from_str(text).unwrap(),
            other => other.clone(),
        }
    };
    let via_property = identity("prop:meshwasm.identity");
    assert_eq!(
        via_property,
        identity("prop:filter_state/wasm.meshwasm.identity"),
        "property and filter_state agree"
    );
    let headers = json!({
        "x-jwt-sub": body["get:x-jwt-sub"],
        "x-jwt-payload": body["get:x-jwt-payload"],
        "meshwasm.identity": body["get:meshwasm.identity"],
    });
    (via_property, headers)
}

/// `extra` headers plus the probe's operations.
fn probed<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut headers = vec![("x-probe-op", PROBE_OPS)];
    headers.extend_from_slice(extra);
    headers
}

const PROBE_OPS: &str = "prop:meshwasm.identity,prop:filter_state/wasm.meshwasm.identity,\
                         get:x-jwt-sub,get:x-jwt-payload,get:meshwasm.identity";

/// The seed rule writing `sub` to `x-jwt-sub` and the payload to
/// `x-jwt-payload`, the probe after the authn filter.
fn identity_rig(key: &Key) -> (Rig, JwksServer) {
    let jwks = JwksServer::start(&key.jwks()).unwrap();
    let mut resources = seed_resources();
    let rule = seed_rule(&mut resources);
    rule.insert("outputPayloadToHeader".to_owned(), json!("x-jwt-payload"));
    rule.insert(
        "outputClaimToHeaders".to_owned(),
        json!([{"header": "x-jwt-sub", "claim": "sub"}]),
    );
    let config = document(resources);
    let rig = Setup::new(&config).jwks(jwks.addr()).probe().start();
    (rig, jwks)
}

#[test]
fn the_next_filter_sees_the_request_and_peer_principals_in_filter_state() {
    // Arrange
    let key = provider_key();
    let (rig, _jwks) = identity_rig(&key);
    let token = mint(&key, &claims("alice").claim("azp", "frontend-app"));
    let auth = bearer(&token);

    // Act
    let with_token = rig.get(PATH, &[("authorization", &auth), ("x-probe-op", PROBE_OPS)]);
    let without = rig.get(PATH, &[("x-probe-op", PROBE_OPS)]);

    // Assert
    let (identity, headers) = seen_by_next(&with_token);
    eprintln!("the next filter saw {identity} and {headers}");
    assert_eq!(identity["requestPrincipal"], format!("{ISSUER}/alice"));
    assert_eq!(identity["peerPrincipal"], FRONTEND_PRINCIPAL);
    assert_eq!(identity["issuer"], ISSUER);
    assert_eq!(identity["subject"], "alice");
    assert_eq!(identity["audiences"], json!([AUDIENCE]));
    assert_eq!(identity["presenter"], "frontend-app");
    assert_eq!(identity["claims"]["azp"], "frontend-app");
    assert_eq!(headers["x-jwt-sub"], "alice");
    assert_eq!(headers["x-jwt-payload"], token.split('.').nth(1).unwrap());
    let (anonymous, _) = seen_by_next(&without);
    assert_eq!(anonymous.get("requestPrincipal"), None, "{anonymous}");
    assert_eq!(anonymous["peerPrincipal"], FRONTEND_PRINCIPAL);
    rig.assert_no_trap();
}

#[test]
fn client_headers_named_like_the_outputs_or_xfcc_do_not_change_what_the_next_filter_sees() {
    // Arrange
    let key = provider_key();
    let (rig, _jwks) = identity_rig(&key);
    let token = mint(&key, &claims("alice"));
    let auth = bearer(&token);
    let forged_payload = jwt::b64(serde_json::to_vec(&claims("admin").to_value()).unwrap());
    let forged_identity =
        json!({"requestPrincipal": format!("{ISSUER}/admin"), "peerPrincipal": "x/ns/admin/sa/root"})
            .to_string();
    let forged: [(&str, &str); 4] = [
        ("x-jwt-sub", "admin"),
        ("x-jwt-payload", &forged_payload),
        ("meshwasm.identity", &forged_identity),
        (
            "x-forwarded-client-cert",
            "By=spiffe://cluster.local/ns/default/sa/product-service;\
             URI=spiffe://cluster.local/ns/admin/sa/root",
        ),
    ];

    // Act
    let plain = rig.get(PATH, &probed(&[("authorization", &auth)]));
    let with_forgeries = rig.get(
        PATH,
        &probed(&[&[("authorization", auth.as_str())], &forged[..]].concat()),
    );
    let anonymous_forgeries = rig.get(PATH, &probed(&forged));

    // Assert
    let (identity, headers) = seen_by_next(&plain);
    let (forged_seen, forged_headers) = seen_by_next(&with_forgeries);
    assert_eq!(
        forged_seen, identity,
        "the filter state is the filter's alone"
    );
    assert_eq!(forged_seen["requestPrincipal"], format!("{ISSUER}/alice"));
    assert_eq!(forged_seen["peerPrincipal"], FRONTEND_PRINCIPAL);
    assert_eq!(forged_headers["x-jwt-sub"], "alice");
    assert_eq!(forged_headers["x-jwt-payload"], headers["x-jwt-payload"]);
    let (anonymous, anonymous_headers) = seen_by_next(&anonymous_forgeries);
    assert_eq!(anonymous.get("requestPrincipal"), None, "{anonymous}");
    assert_eq!(anonymous["peerPrincipal"], FRONTEND_PRINCIPAL);
    assert_eq!(
        anonymous_headers["x-jwt-sub"],
        Value::Null,
        "client copy removed"
    );
    assert_eq!(
        anonymous_headers["x-jwt-payload"],
        Value::Null,
        "client copy removed"
    );
    rig.assert_no_trap();
}
