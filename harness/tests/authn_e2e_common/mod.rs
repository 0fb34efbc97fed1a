//! What the authn filter's Envoy tests share (`authn_e2e.rs`,
//! `authn_e2e_jwks.rs`): the seed's `authentication-policy.yaml` as pasted
//! (PeerAuthentication STRICT, RequestAuthentication for issuer
//! `https://auth.example.com`, audience `product-service`, `jwksUri`
//! `https://auth.example.com/.well-known/jwks.json`) with
//! `envoy.jwksClusters` sending the key fetch to the rig's cluster `jwks`,
//! tokens minted at test time, and an Envoy 1.40 on one worker whose
//! listener takes plaintext, TLS and mTLS on one port — the seed is STRICT,
//! so requests go over mTLS as workload `frontend` unless a test says
//! otherwise. Expected strings come from SPEC.md §RequestAuthentication
//! (Behaviour 3–4) and §PeerAuthentication (4).
#![allow(dead_code)] // reason: each test file uses its part

use std::net::SocketAddr;

use meshwasm_harness::client::Response;
use meshwasm_harness::envoy::{
    Envoy, EnvoyRig, ListenerTls, WasmFilter, product_cluster, wasm_path,
};
use meshwasm_harness::jwt::{self, Alg, Claims, Key};
use meshwasm_harness::scenario::{config_document, istio_resources, testdata};
use meshwasm_harness::tls::{FRONTEND_SPIFFE_ID, HttpsClient, TestPki};
use meshwasm_harness::upstream::ProductService;
use serde_json::{Map, Value, json};

/// The seed rule's issuer.
pub const ISSUER: &str = "https://auth.example.com";
/// The seed rule's audience.
pub const AUDIENCE: &str = "product-service";
/// The seed's workload's peer principal when `frontend` calls it.
pub const FRONTEND_PRINCIPAL: &str = "cluster.local/ns/default/sa/frontend";
/// Body of a refusal when the key set cannot be fetched.
pub const FETCH_FAILED: &str = "Jwks remote fetch is failed";
/// Body of a refusal for want of mTLS (SPEC.md §PeerAuthentication 4).
pub const MTLS_REFUSED: &str = "RBAC: access denied";
/// The path every test requests.
pub const PATH: &str = "/api/products";

/// What a trapped or failed wasm VM leaves in Envoy's logs (SPEC.md
/// §proxy-wasm ABI G).
const TRAP_MARKS: [&str; 3] = ["panicked", "wasm_fail_stream", "Uncaught"];

/// The resources of `testdata/istio/authentication-policy.yaml`, as pasted.
pub fn seed_resources() -> Vec<Value> {
    let file = testdata().join("istio").join("authentication-policy.yaml");
    let resources = istio_resources(&[file]).unwrap();
    assert_eq!(
        resources.len(),
        2,
        "PeerAuthentication + RequestAuthentication"
    );
    resources
}

/// The seed's one JWT rule, to change a copy of it.
pub fn seed_rule(resources: &mut [Value]) -> &mut Map<String, Value> {
    resources
        .iter_mut()
        .find(|r| r["kind"] == "RequestAuthentication")
        .and_then(|r| r.pointer_mut("/spec/jwtRules/0"))
        .and_then(Value::as_object_mut)
        .unwrap()
}

/// The configuration document of `resources`, the key set of
/// `auth.example.com` fetched through cluster `jwks`.
pub fn document(resources: Vec<Value>) -> String {
    let envoy = json!({"jwksClusters": {"auth.example.com": "jwks"}});
    config_document(resources, None, Some(envoy)).to_string()
}

/// The seed's policy, as pasted.
pub fn seed_document() -> String {
    document(seed_resources())
}

/// The identity provider's signing key: RS256, `kid` `k1`.
pub fn provider_key() -> Key {
    Key::generate(Alg::RS256).unwrap().with_kid("k1")
}

/// Claims of a token the seed rule accepts: issuer, `sub`, audience,
/// valid for an hour.
pub fn claims(sub: &str) -> Claims {
    Claims::new(ISSUER, sub).audience(AUDIENCE)
}

/// An RS256 token signed by `key` (its `kid` in the header, if it has one).
pub fn mint(key: &Key, claims: &Claims) -> String {
    jwt::mint(Alg::RS256, key, &json!({}), &claims.to_value()).unwrap()
}

/// `Bearer <token>`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Envoy on one worker with the authn filter (then the probe module, when
/// asked) on `config`, cluster `jwks` at `jwks`, the product service
/// behind the default route. Fields drop in order: Envoy first.
pub struct Rig {
    pub envoy: Envoy,
    pub service: ProductService,
    pub pki: TestPki,
    /// mTLS as `frontend`.
    pub mtls: HttpsClient,
    /// TLS without a client certificate.
    pub tls: HttpsClient,
}

/// How the rig is built.
pub struct Setup<'a> {
    pub config: &'a str,
    pub jwks: Option<SocketAddr>,
    /// Chain the probe module (name `next`) after the authn filter.
    pub probe: bool,
    /// The listener's TLS, from the rig's PKI (default: plaintext and TLS
    /// on one port, client certificates optional).
    pub listener: fn(&TestPki) -> ListenerTls,
}

impl<'a> Setup<'a> {
    pub fn new(config: &'a str) -> Setup<'a> {
        Setup {
            config,
            jwks: None,
            probe: false,
            listener: ListenerTls::new,
        }
    }

    pub fn jwks(mut self, addr: SocketAddr) -> Setup<'a> {
        self.jwks = Some(addr);
        self
    }

    pub fn probe(mut self) -> Setup<'a> {
        self.probe = true;
        self
    }

    pub fn listener(mut self, listener: fn(&TestPki) -> ListenerTls) -> Setup<'a> {
        self.listener = listener;
        self
    }

    pub fn start(self) -> Rig {
        let authn = wasm_path("authn");
        assert!(
            authn.exists(),
            "{} is missing: run `cargo xtask build`",
            authn.display()
        );
        let mut filters = vec![WasmFilter::new("meshwasm.authn", authn, self.config)];
        if self.probe {
            filters.push(
                WasmFilter::new("next", wasm_path("probe"), r#"{"name": "next"}"#).vm_id("probe"),
            );
        }
        let pki = TestPki::generate().unwrap();
        let service = ProductService::start("v1").unwrap();
        let mut rig = EnvoyRig::builder()
            .filters(filters)
            .cluster(&product_cluster("v1"), service.addr())
            .tls((self.listener)(&pki));
        if let Some(addr) = self.jwks {
            rig = rig.cluster("jwks", addr);
        }
        let envoy = rig.start().unwrap_or_else(|e| panic!("{e}"));
        let frontend = pki.client(FRONTEND_SPIFFE_ID).unwrap();
        let mtls = HttpsClient::new(pki.ca_pem(), Some(&frontend)).unwrap();
        let tls = HttpsClient::new(pki.ca_pem(), None).unwrap();
        Rig {
            envoy,
            service,
            pki,
            mtls,
            tls,
        }
    }
}

impl Rig {
    /// `GET <path>` over mTLS as `frontend`.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        let url = format!("{}{path}", self.envoy.https_url());
        self.mtls
            .get(&url, headers)
            .unwrap_or_else(|e| panic!("{e:#}\n{}", self.logs()))
    }

    /// `GET /api/products` over mTLS with `Authorization: Bearer <token>`.
    pub fn get_with(&self, token: &str) -> Response {
        self.get(PATH, &[("authorization", &bearer(token))])
    }

    /// The challenge of a refusal of `GET <path>` over TLS (SPEC.md
    /// §RequestAuthentication Behaviour 3: the realm is the request's URL,
    /// path and query cut at 256 characters).
    pub fn challenge(&self, path: &str) -> String {
        let path: String = path.chars().take(256).collect();
        format!(
            "Bearer realm=\"https://127.0.0.1:{}{path}\", error=\"invalid_token\"",
            self.envoy.port()
        )
    }

    /// Envoy's log and access log, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- envoy log ---\n{}\n--- access log ---\n{}",
            self.envoy.log(),
            self.envoy.access_log()
        )
    }

    /// Fails when a wasm VM trapped or failed a stream.
    pub fn assert_no_trap(&self) {
        let logs = self.logs();
        for mark in TRAP_MARKS {
            assert!(!logs.contains(mark), "{mark:?} in Envoy's logs:\n{logs}");
        }
    }

    /// Counter `wasmcustom.meshwasm.authn.<name>`.
    pub fn authn_counter(&self, name: &str) -> u64 {
        self.envoy
            .counter(&format!("wasmcustom.meshwasm.authn.{name}"))
            .unwrap_or(0)
    }
}

/// Fails unless `r` is the product service's answer.
pub fn assert_passed(r: &Response, what: &str) {
    assert_eq!(r.status, 200, "{what}: {} {:?}", r.text(), r.headers);
    assert_eq!(r.header("service-version"), Some("v1"), "{what}");
}

/// Fails unless `r` is the filter's refusal with `status` and `message`
/// and the challenge of `path`.
pub fn assert_refused(rig: &Rig, r: &Response, status: u16, message: &str, path: &str) {
    assert_eq!(
        (r.status, r.text().as_str()),
        (status, message),
        "{:?}",
        r.headers
    );
    assert_eq!(
        r.header("www-authenticate"),
        Some(rig.challenge(path).as_str()),
        "{message}"
    );
    assert_eq!(r.header("service-version"), None, "{message}");
}
