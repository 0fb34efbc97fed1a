//! The rbac filter in real Envoy 1.40 (one worker, loopback) behind a
//! listener that takes mTLS, TLS without a client certificate and plaintext
//! on one port: the seed's `authorization-policy.yaml` pasted as is (SPEC.md
//! §AuthorizationPolicy 13: `frontend` may `GET /api/products`, `admin` may
//! `POST|PUT|DELETE /api/products/*`, nobody else anything, dot segments
//! normalised first, 11); the authn filter then the rbac filter on one
//! document, where only a verified token makes a request principal and no
//! client header forges one (§AuthorizationPolicy 5, docs/rbac.md
//! "Sources"); and a DENY on `/admin` against the bypass forms of
//! §AuthorizationPolicy 12 under the default `BASE` normalisation (11,
//! Verified 5 and 9). Every request asks the product service for a 200
//! (`x-test-status`), so an allowed request is a 200 from `v1` and a denied
//! one Envoy's RBAC reply (§AuthorizationPolicy 8).
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod authn_e2e_common;

use authn_e2e_common::{AUDIENCE, ISSUER, bearer, claims, mint, provider_key};
use meshwasm_harness::client::Response;
use meshwasm_harness::envoy::{
    Envoy, EnvoyRig, ListenerTls, WasmFilter, product_cluster, wasm_path,
};
use meshwasm_harness::jwt::{self, Alg, Key};
use meshwasm_harness::scenario::{config_document, istio_resources, testdata};
use meshwasm_harness::tls::{FRONTEND_SPIFFE_ID, HttpsClient, TestPki};
use meshwasm_harness::upstream::ProductService;
use serde_json::json;

/// Envoy's RBAC denial body (SPEC.md §AuthorizationPolicy 8).
const DENIED: &str = "RBAC: access denied";
/// The seed's admin workload.
const ADMIN_SPIFFE_ID: &str = "spiffe://cluster.local/ns/default/sa/admin";
/// What a trapped or failed wasm VM leaves in Envoy's logs (SPEC.md
/// §proxy-wasm ABI G).
const TRAP_MARKS: [&str; 3] = ["panicked", "wasm_fail_stream", "Uncaught"];
/// Makes the product service answer 200 to any path it is sent.
const UPSTREAM_OK: (&str, &str) = ("x-test-status", "200");
/// Response details of a denial for want of an ALLOW match.
const NO_ALLOW_MATCHED: &str = "rbac_access_denied_matched_policy[none]";

/// Envoy on one worker with the meshwasm `filters` (in order) on `config`,
/// the product service `v1` behind the default route, the listener's TLS
/// from `pki` (client certificates optional, plaintext on the same port).
/// Fields drop in order: Envoy first.
struct Rig {
    envoy: Envoy,
    service: ProductService,
    pki: TestPki,
}

impl Rig {
    fn start(filters: &[&str], config: &str) -> Rig {
        let filters = filters
            .iter()
            .map(|f| {
                let wasm = wasm_path(f);
                assert!(
                    wasm.exists(),
                    "{} is missing: run `cargo xtask build`",
                    wasm.display()
                );
                WasmFilter::new(&format!("meshwasm.{f}"), wasm, config)
            })
            .collect();
        let pki = TestPki::generate().unwrap();
        let service = ProductService::start("v1").unwrap();
        let envoy = EnvoyRig::builder()
            .filters(filters)
            .cluster(&product_cluster("v1"), service.addr())
            .tls(ListenerTls::new(&pki))
            .start()
            .unwrap_or_else(|e| panic!("{e}"));
        Rig {
            envoy,
            service,
            pki,
        }
    }

    /// A TLS client presenting a certificate for `spiffe_id`, or none.
    fn client(&self, spiffe_id: Option<&str>) -> HttpsClient {
        let identity = spiffe_id.map(|id| self.pki.client(id).unwrap());
        HttpsClient::new(self.pki.ca_pem(), identity.as_ref()).unwrap()
    }

    /// `method path` over TLS with `client`, plus `headers`.
    fn tls(
        &self,
        client: &HttpsClient,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Response {
        let url = format!("{}{path}", self.envoy.https_url());
        client
            .request(method, &url, &with_upstream_ok(headers), "")
            .unwrap_or_else(|e| panic!("{method} {path}: {e:#}\n{}", self.logs()))
    }

    /// `method path` in plaintext, plus `headers`.
    fn plain(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        self.envoy
            .request(method, path, &with_upstream_ok(headers), "")
            .unwrap_or_else(|e| panic!("{method} {path}: {e:#}\n{}", self.logs()))
    }

    fn logs(&self) -> String {
        format!(
            "--- envoy log ---\n{}\n--- access log ---\n{}",
            self.envoy.log(),
            self.envoy.access_log()
        )
    }

    /// Fails when a wasm VM trapped or failed a stream.
    fn assert_no_trap(&self) {
        let logs = self.logs();
        for mark in TRAP_MARKS {
            assert!(!logs.contains(mark), "{mark:?} in Envoy's logs:\n{logs}");
        }
    }

    /// How many access log lines carry response details `details`.
    fn replies_with_details(&self, details: &str) -> usize {
        let log = self.envoy.access_log();
        log.lines().filter(|l| l.contains(details)).count()
    }

    /// Counter `wasmcustom.meshwasm.rbac.<name>`.
    fn rbac_counter(&self, name: &str) -> u64 {
        self.envoy
            .counter(&format!("wasmcustom.meshwasm.rbac.{name}"))
            .unwrap_or(0)
    }
}

fn with_upstream_ok<'a>(headers: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut all = vec![UPSTREAM_OK];
    all.extend_from_slice(headers);
    all
}

/// Fails unless `r` is the product service's answer.
fn assert_allowed(r: &Response, what: &str) {
    assert_eq!(r.status, 200, "{what}: {} {:?}", r.text(), r.headers);
    assert_eq!(r.header("service-version"), Some("v1"), "{what}");
}

/// Fails unless `r` is Envoy's RBAC denial.
fn assert_denied(r: &Response, what: &str) {
    assert_eq!((r.status, r.text().as_str()), (403, DENIED), "{what}");
    assert_eq!(r.header("service-version"), None, "{what}");
}

/// The seed's `authorization-policy.yaml`, as pasted, in the rbac filter.
fn seed_rig() -> Rig {
    let file = testdata().join("istio").join("authorization-policy.yaml");
    let resources = istio_resources(&[file]).unwrap();
    assert_eq!(resources.len(), 1, "one AuthorizationPolicy");
    let config = config_document(resources, None, None).to_string();
    Rig::start(&["rbac"], &config)
}

#[test]
fn the_seed_policy_lets_frontend_get_exactly_api_products_and_nothing_else() {
    // Arrange
    let rig = seed_rig();
    let frontend = rig.client(Some(FRONTEND_SPIFFE_ID));
    let requests = [
        ("GET", "/api/products", true),
        ("GET", "/api/products?x=1", true),
        ("GET", "/api/products/1", false),
        ("GET", "/api/products/", false),
        ("GET", "/api/productsx", false),
        ("GET", "/health", false),
        ("POST", "/api/products", false),
        ("DELETE", "/api/products/1", false),
    ];

    // Act
    let answers: Vec<Response> = requests
        .iter()
        .map(|(method, path, _)| rig.tls(&frontend, method, path, &[]))
        .collect();

    // Assert
    for ((method, path, allowed), r) in requests.iter().zip(&answers) {
        let what = format!("frontend {method} {path}");
        if *allowed {
            assert_allowed(r, &what);
        } else {
            assert_denied(r, &what);
        }
    }
    assert_eq!(rig.service.total_hits(), 2);
    assert_eq!(rig.rbac_counter("allowed"), 2);
    assert_eq!(rig.rbac_counter("denied"), 6);
    assert_eq!(rig.replies_with_details(NO_ALLOW_MATCHED), 6);
    rig.assert_no_trap();
}

#[test]
fn the_seed_policy_lets_admin_post_put_and_delete_a_product_but_not_get_the_list() {
    // Arrange
    let rig = seed_rig();
    let admin = rig.client(Some(ADMIN_SPIFFE_ID));
    let requests = [
        ("POST", "/api/products/1", true),
        ("PUT", "/api/products/1", true),
        ("DELETE", "/api/products/1", true),
        ("DELETE", "/api/products/1/reviews/2", true),
        ("GET", "/api/products", false),
        ("GET", "/api/products/1", false),
        ("POST", "/api/products", false),
        ("PATCH", "/api/products/1", false),
    ];

    // Act
    let answers: Vec<Response> = requests
        .iter()
        .map(|(method, path, _)| rig.tls(&admin, method, path, &[]))
        .collect();

    // Assert
    for ((method, path, allowed), r) in requests.iter().zip(&answers) {
        let what = format!("admin {method} {path}");
        if *allowed {
            assert_allowed(r, &what);
        } else {
            assert_denied(r, &what);
        }
    }
    assert_eq!(rig.service.total_hits(), 4);
    rig.assert_no_trap();
}

#[test]
fn other_identities_certificate_less_tls_and_plaintext_are_denied_by_the_seed_policy() {
    // Arrange: identities that look like the allowed ones but are not them.
    let rig = seed_rig();
    let others = [
        "spiffe://cluster.local/ns/default/sa/checkout",
        "spiffe://cluster.local/ns/other/sa/frontend",
        "spiffe://evil.local/ns/default/sa/frontend",
        "spiffe://cluster.local/ns/default/sa/frontend/x",
        "spiffe://cluster.local/ns/default/sa/frontendx",
    ];
    let clients: Vec<(&str, HttpsClient)> = others
        .iter()
        .map(|id| (*id, rig.client(Some(id))))
        .collect();
    let anonymous = rig.client(None);
    let xfcc = "By=spiffe://cluster.local/ns/default/sa/product-service;\
                URI=spiffe://cluster.local/ns/default/sa/frontend";
    let forged = [("x-forwarded-client-cert", xfcc)];

    // Act
    let mut answers: Vec<(String, Response)> = clients
        .iter()
        .map(|(id, c)| (id.to_string(), rig.tls(c, "GET", "/api/products", &[])))
        .collect();
    answers.push((
        "TLS without a certificate".to_owned(),
        rig.tls(&anonymous, "GET", "/api/products", &forged),
    ));
    answers.push((
        "plaintext".to_owned(),
        rig.plain("GET", "/api/products", &forged),
    ));
    answers.push((
        "plaintext DELETE".to_owned(),
        rig.plain("DELETE", "/api/products/1", &forged),
    ));

    // Assert
    for (what, r) in &answers {
        assert_denied(r, what);
    }
    assert_eq!(rig.service.total_hits(), 0);
    assert_eq!(rig.rbac_counter("denied"), answers.len() as u64);
    assert_eq!(rig.replies_with_details(NO_ALLOW_MATCHED), answers.len());
    rig.assert_no_trap();
}

#[test]
fn dot_segments_normalise_to_the_allowed_path_and_climbing_out_of_it_is_denied() {
    // Arrange: `BASE` normalisation, the default (SPEC.md
    // §AuthorizationPolicy 11).
    let rig = seed_rig();
    let frontend = rig.client(Some(FRONTEND_SPIFFE_ID));
    let allowed = [
        "/api/./products",
        "/api/products/../products",
        "/api/x/../products",
        "/api/%70roducts",
    ];
    let denied = ["/api/products/../admin", "/api/products/./1", "/admin"];

    // Act
    let allowed_answers: Vec<(Response, String)> = allowed
        .iter()
        .map(|path| {
            let r = rig.tls(&frontend, "GET", path, &[]);
            (r, rig.service.last_request().unwrap().path)
        })
        .collect();
    let denied_answers: Vec<Response> = denied
        .iter()
        .map(|path| rig.tls(&frontend, "GET", path, &[]))
        .collect();

    // Assert
    for (path, (r, upstream_path)) in allowed.iter().zip(&allowed_answers) {
        assert_allowed(r, path);
        assert_eq!(
            upstream_path, "/api/products",
            "{path} as the backend saw it"
        );
    }
    for (path, r) in denied.iter().zip(&denied_answers) {
        assert_denied(r, path);
    }
    assert_eq!(rig.service.hits_for("/api/products"), allowed.len() as u64);
    assert_eq!(rig.service.total_hits(), allowed.len() as u64);
    rig.assert_no_trap();
}

/// The authn filter then the rbac filter on one document: a
/// RequestAuthentication for `auth.example.com` with `key`'s set inline,
/// writing `sub` to `x-jwt-sub` and the payload to `x-jwt-payload`, and an
/// AuthorizationPolicy allowing only request principal `<issuer>/alice`.
fn alice_only_rig(key: &Key) -> Rig {
    let selector = json!({"matchLabels": {"app": "product-service"}});
    let resources = vec![
        json!({
            "apiVersion": "security.istio.io/v1",
            "kind": "RequestAuthentication",
            "metadata": {"name": "jwt", "namespace": "default"},
            "spec": {"selector": selector, "jwtRules": [{
                "issuer": ISSUER,
                "audiences": [AUDIENCE],
                "jwks": key.jwks().to_string(),
                "outputPayloadToHeader": "x-jwt-payload",
                "outputClaimToHeaders": [{"header": "x-jwt-sub", "claim": "sub"}],
            }]},
        }),
        json!({
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": "alice-only", "namespace": "default"},
            "spec": {"selector": selector, "action": "ALLOW", "rules": [{
                "from": [{"source": {"requestPrincipals": [format!("{ISSUER}/alice")]}}],
            }]},
        }),
    ];
    let config = config_document(resources, None, None).to_string();
    Rig::start(&["authn", "rbac"], &config)
}

#[test]
fn behind_authn_alices_token_is_allowed_and_bob_or_no_token_is_denied() {
    // Arrange
    let key = provider_key();
    let rig = alice_only_rig(&key);
    let frontend = rig.client(Some(FRONTEND_SPIFFE_ID));
    let alice = bearer(&mint(&key, &claims("alice")));
    let bob = bearer(&mint(&key, &claims("bob")));
    let other_key = Key::generate(Alg::RS256).unwrap().with_kid("k1");
    let forged_alice = bearer(&mint(&other_key, &claims("alice")));

    // Act
    let alice_mtls = rig.tls(
        &frontend,
        "GET",
        "/api/products",
        &[("authorization", &alice)],
    );
    let alice_plain = rig.plain("GET", "/api/products", &[("authorization", &alice)]);
    let bob_answer = rig.tls(
        &frontend,
        "GET",
        "/api/products",
        &[("authorization", &bob)],
    );
    let no_token = rig.tls(&frontend, "GET", "/api/products", &[]);
    let forged = rig.plain("GET", "/api/products", &[("authorization", &forged_alice)]);

    // Assert
    assert_allowed(&alice_mtls, "alice over mTLS");
    assert_allowed(&alice_plain, "alice in plaintext");
    assert_denied(&bob_answer, "bob");
    assert_denied(&no_token, "no token");
    assert_eq!(
        (forged.status, forged.text().as_str()),
        (401, "Jwt verification fails"),
        "alice's claims signed by another key are the authn filter's to refuse"
    );
    assert_eq!(rig.service.total_hits(), 2);
    assert_eq!(rig.rbac_counter("allowed"), 2);
    assert_eq!(rig.rbac_counter("denied"), 2);
    rig.assert_no_trap();
}

#[test]
fn behind_authn_client_sent_identity_headers_grant_nothing() {
    // Arrange: every header a client could use to claim to be alice.
    let key = provider_key();
    let rig = alice_only_rig(&key);
    let frontend = rig.client(Some(FRONTEND_SPIFFE_ID));
    let alice_payload = jwt::b64(serde_json::to_vec(&claims("alice").to_value()).unwrap());
    let forged_identity = json!({
        "requestPrincipal": format!("{ISSUER}/alice"),
        "issuer": ISSUER,
        "subject": "alice",
    })
    .to_string();
    let xfcc = format!(
        "By=spiffe://cluster.local/ns/default/sa/product-service;\
         URI=spiffe://cluster.local/ns/default/sa/frontend;Subject=\"{ISSUER}/alice\""
    );
    let forgeries: [(&str, &str); 6] = [
        ("x-forwarded-client-cert", &xfcc),
        ("x-jwt-sub", "alice"),
        ("x-jwt-payload", &alice_payload),
        ("meshwasm.identity", &forged_identity),
        ("wasm.meshwasm.identity", &forged_identity),
        ("x-forwarded-user", "alice"),
    ];
    let bob = bearer(&mint(&key, &claims("bob")));
    let alice = bearer(&mint(&key, &claims("alice")));
    let bob_headers = [&forgeries[..], &[("authorization", bob.as_str())]].concat();
    let alice_headers = [&forgeries[..], &[("authorization", alice.as_str())]].concat();

    // Act
    let mut denied: Vec<(String, Response)> = forgeries
        .iter()
        .map(|h| {
            let r = rig.tls(&frontend, "GET", "/api/products", &[*h]);
            (format!("no token, {}", h.0), r)
        })
        .collect();
    denied.push((
        "no token, every forgery, plaintext".to_owned(),
        rig.plain("GET", "/api/products", &forgeries),
    ));
    denied.push((
        "bob's token, every forgery".to_owned(),
        rig.tls(&frontend, "GET", "/api/products", &bob_headers),
    ));
    let alice_answer = rig.tls(&frontend, "GET", "/api/products", &alice_headers);
    let upstream = rig.service.last_request().unwrap();

    // Assert
    for (what, r) in &denied {
        assert_denied(r, what);
    }
    assert_allowed(&alice_answer, "alice's token with the forgeries");
    assert_eq!(upstream.header("x-jwt-sub"), Some("alice"));
    assert_eq!(rig.service.total_hits(), 1);
    assert_eq!(rig.rbac_counter("denied"), denied.len() as u64);
    rig.assert_no_trap();
}

/// A DENY on `/admin` and `/admin/*` (Istio's advice for a path and what
/// is under it; the conformance cases' `deny-admin`), no ALLOW policy, at
/// normalisation `level` (none: the default, `BASE`).
fn deny_admin_rig(level: Option<&str>) -> Rig {
    let resources = vec![json!({
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "deny-admin", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "product-service"}},
            "action": "DENY",
            "rules": [{"to": [{"operation": {"paths": ["/admin", "/admin/*"]}}]}],
        },
    })];
    let envoy = level.map(|l| json!({"pathNormalization": l}));
    let config = config_document(resources, None, envoy).to_string();
    Rig::start(&["rbac"], &config)
}

#[test]
fn a_deny_on_admin_holds_against_every_bypass_form_base_normalisation_catches() {
    // Arrange: SPEC.md §AuthorizationPolicy 12 and docs/rbac.md "Bypass
    // forms", the ones denied from BASE (`/admin;x=y`: meshwasm is
    // stricter than Envoy, Verified 9).
    let rig = deny_admin_rig(None);
    let forms = [
        "/admin",
        "/admin/",
        "/admin/users",
        "/admin/.",
        "/./admin",
        "/x/../admin",
        "/x/%2e%2e/admin",
        "/x/%2E%2E/admin",
        "/%61dmin",
        "/%61%64%6d%69%6e",
        "/admin;x=y",
        "/admin;x=y/users",
        "/..;/admin",
        "/admin?x=1",
        "/admin/?x=1",
    ];

    // Act
    let answers: Vec<Response> = forms.iter().map(|p| rig.plain("GET", p, &[])).collect();
    let products = rig.plain("GET", "/api/products", &[]);
    let dotted_products = rig.plain("GET", "/x/../api/products", &[]);

    // Assert
    for (path, r) in forms.iter().zip(&answers) {
        assert_denied(r, path);
    }
    assert_allowed(&products, "/api/products");
    assert_allowed(&dotted_products, "/x/../api/products");
    assert_eq!(rig.service.hits_for("/api/products"), 2);
    assert_eq!(rig.service.total_hits(), 2);
    assert_eq!(rig.rbac_counter("denied"), forms.len() as u64);
    let details = "rbac_access_denied_matched_policy[ns[default]-policy[deny-admin]-rule[0]]";
    assert_eq!(rig.replies_with_details(details), forms.len());
    rig.assert_no_trap();
}

#[test]
fn case_and_double_slashes_are_not_admin_under_base_as_in_envoy_and_merge_slashes_denies_the_latter()
 {
    // Arrange: SPEC.md §AuthorizationPolicy 12 (case is not normalised)
    // and the conformance recording `norm/deny-negative/BASE`
    // (`//admin` and `/ADMIN` pass native Envoy's RBAC); MERGE_SLASHES
    // merges `//`.
    let base = deny_admin_rig(None);
    let merge = deny_admin_rig(Some("MERGE_SLASHES"));
    let not_admin = ["/Admin", "/ADMIN", "//admin"];

    // Act
    let base_answers: Vec<(Response, String)> = not_admin
        .iter()
        .map(|p| {
            let r = base.plain("GET", p, &[]);
            (r, base.service.last_request().unwrap().path)
        })
        .collect();
    let merged = ["//admin", "///admin", "/admin//"].map(|p| merge.plain("GET", p, &[]));
    let merged_upper = merge.plain("GET", "//Admin", &[]);

    // Assert
    for (path, (r, upstream_path)) in not_admin.iter().zip(&base_answers) {
        assert_allowed(r, path);
        assert_eq!(upstream_path, path, "{path} reaches the backend unchanged");
    }
    for (path, r) in ["//admin", "///admin", "/admin//"].iter().zip(&merged) {
        assert_denied(r, &format!("{path} under MERGE_SLASHES"));
    }
    assert_allowed(&merged_upper, "//Admin under MERGE_SLASHES");
    assert_eq!(merge.service.last_request().unwrap().path, "/Admin");
    base.assert_no_trap();
    merge.assert_no_trap();
}
