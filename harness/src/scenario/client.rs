//! Who sends a step's requests: the connection (`client`: plaintext, TLS
//! without a client certificate, or mTLS with a certificate made at test
//! time) and an optional bearer token (`jwt`) signed at test time.
//!
//! A scenario's [`Credentials`] — a test CA, one certificate per distinct
//! client certificate its steps name, the JWT signing keys — are made once
//! when the scenario is loaded and shared by both backends: Envoy's
//! listener is served by the CA's server certificate and the client
//! presents the certificate over a real handshake, while the harness sets
//! the connection properties Envoy 1.40 gives a filter for that very
//! certificate ([`Credentials::properties`]; the scenario
//! `rbac/client-connections-reach-the-filters-as-envoy-reports-them` checks
//! them against Envoy with the probe module).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use anyhow::{Context as _, anyhow};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::jwt::{self, Alg, Key};
use crate::tls::{CertSpec, Identity, SERVER_SPIFFE_ID, TestPki};

/// A string value in `config.inline` replaced by the JSON text of the
/// scenario's JWKS (the public key of the `scenario` signer).
pub const JWKS_PLACEHOLDER: &str = "$SCENARIO_JWKS";

/// `kid` of both signing keys: a `stranger` token names the published key
/// but is signed by another one.
const KID: &str = "scenario";

/// The connection a step's requests come over.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "ClientRepr")]
pub enum Client {
    /// Plaintext HTTP (the default): no TLS, no peer identity.
    #[default]
    Plaintext,
    /// TLS without a client certificate: no peer identity.
    Tls,
    /// mTLS presenting a client certificate signed by the scenario's CA.
    Mtls(ClientCert),
}

/// `plaintext`, `tls`, or a client certificate.
#[derive(Deserialize)]
#[serde(untagged)]
enum ClientRepr {
    Name(String),
    Cert(ClientCert),
}

impl TryFrom<ClientRepr> for Client {
    type Error = String;

    fn try_from(repr: ClientRepr) -> Result<Client, String> {
        match repr {
            ClientRepr::Name(name) => match name.as_str() {
                "plaintext" => Ok(Client::Plaintext),
                "tls" => Ok(Client::Tls),
                _ => Err(format!(
                    "client {name:?}: plaintext, tls, or a certificate {{spiffe, uris, dns, cn}}"
                )),
            },
            ClientRepr::Cert(cert) => Ok(Client::Mtls(cert)),
        }
    }
}

impl Client {
    /// Whether the connection is TLS.
    pub fn is_tls(&self) -> bool {
        !matches!(self, Client::Plaintext)
    }
}

/// What an mTLS client's certificate says.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCert {
    /// The first URI SAN, e.g. `spiffe://cluster.local/ns/default/sa/frontend`.
    #[serde(default)]
    pub spiffe: Option<String>,
    /// More URI SANs, after `spiffe`.
    #[serde(default)]
    pub uris: Vec<String>,
    /// DNS SANs.
    #[serde(default)]
    pub dns: Vec<String>,
    /// Subject `CN` (none: an empty subject, as Istio's workload certificates).
    #[serde(default)]
    pub cn: Option<String>,
}

impl ClientCert {
    fn uri_sans(&self) -> impl Iterator<Item = &String> {
        self.spiffe.iter().chain(&self.uris)
    }

    fn spec(&self) -> CertSpec {
        CertSpec {
            common_name: self.cn.clone(),
            uris: self.uri_sans().cloned().collect(),
            dns: self.dns.clone(),
            client_auth: true,
            ..CertSpec::default()
        }
    }
}

/// A bearer token a step sends (`authorization: Bearer …`), ES256.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jwt {
    /// The claims; `iat` (now) and `exp` (now + 1 h) by the backend's clock
    /// are added unless given.
    pub claims: Map<String, Value>,
    /// Which key signs it (default `scenario`).
    #[serde(default)]
    pub signed_by: Signer,
}

/// The key a [`Jwt`] is signed with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Signer {
    /// The key published as [`JWKS_PLACEHOLDER`].
    #[default]
    Scenario,
    /// Another key with the same `kid`: a forgery.
    Stranger,
}

/// The certificates and keys of one scenario (see the module docs).
#[derive(Default)]
pub struct Credentials {
    pki: Option<TestPki>,
    certs: BTreeMap<ClientCert, Identity>,
    keys: Option<[Key; 2]>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("tls", &self.pki.is_some())
            .field("certs", &self.certs.keys().collect::<Vec<_>>())
            .field("jwt", &self.keys.is_some())
            .finish()
    }
}

impl Credentials {
    /// What `clients` and, when `jwt` is set, the JWT steps need.
    pub(super) fn make<'a>(
        clients: impl Iterator<Item = &'a Client>,
        jwt: bool,
    ) -> anyhow::Result<Credentials> {
        let clients: BTreeSet<&Client> = clients.filter(|c| c.is_tls()).collect();
        let mut out = Credentials::default();
        if !clients.is_empty() {
            let pki = TestPki::generate()?;
            for client in clients {
                if let Client::Mtls(cert) = client {
                    let identity = pki
                        .issue(&cert.spec())
                        .with_context(|| format!("issuing a client certificate for {cert:?}"))?;
                    out.certs.insert(cert.clone(), identity);
                }
            }
            out.pki = Some(pki);
        }
        if jwt {
            let key = || Key::generate(Alg::ES256).map(|k| k.with_kid(KID));
            out.keys = Some([key()?, key()?]);
        }
        Ok(out)
    }

    /// The test CA, when a step uses TLS.
    pub fn pki(&self) -> Option<&TestPki> {
        self.pki.as_ref()
    }

    /// The certificate and key of `cert`.
    pub fn identity(&self, cert: &ClientCert) -> anyhow::Result<&Identity> {
        self.certs
            .get(cert)
            .ok_or_else(|| anyhow!("no certificate was made for {cert:?}"))
    }

    /// The JWKS text that replaces [`JWKS_PLACEHOLDER`].
    pub fn jwks(&self) -> Option<String> {
        self.keys.as_ref().map(|[k, _]| k.jwks().to_string())
    }

    /// `Bearer <token>` for `jwt`, its times from `now` (Unix seconds).
    pub fn bearer(&self, jwt: &Jwt, now: i64) -> anyhow::Result<String> {
        let [scenario, stranger] = self
            .keys
            .as_ref()
            .ok_or_else(|| anyhow!("no JWT keys were made for this scenario"))?;
        let key = match jwt.signed_by {
            Signer::Scenario => scenario,
            Signer::Stranger => stranger,
        };
        let mut claims = jwt.claims.clone();
        claims.entry("iat").or_insert_with(|| Value::from(now));
        claims
            .entry("exp")
            .or_insert_with(|| Value::from(now + 3600));
        let token = jwt::mint(
            Alg::ES256,
            key,
            &Value::Object(Map::new()),
            &Value::Object(claims),
        )?;
        Ok(format!("Bearer {token}"))
    }

    /// The properties Envoy 1.40 gives a wasm filter on a connection of
    /// `client` (SPEC.md §proxy-wasm ABI D) beyond what every connection
    /// has: `connection.mtls` (`false` also on plaintext), the TLS version,
    /// the server certificate's SANs and subject, and under mTLS the client
    /// certificate (`connection.peer_certificate`, PEM), its first URI and
    /// DNS SAN, its subject and its SHA-256 digest. Absent values (an empty
    /// subject, no SAN of a kind, no SNI: the clients connect to an IP) are
    /// absent in Envoy too.
    pub fn properties(&self, client: &Client) -> anyhow::Result<Vec<(&'static str, Vec<u8>)>> {
        let mut props = vec![(
            "connection.mtls",
            vec![u8::from(matches!(client, Client::Mtls(_)))],
        )];
        if !client.is_tls() {
            return Ok(props);
        }
        props.extend([
            ("connection.tls_version", b"TLSv1.3".to_vec()),
            (
                "connection.uri_san_local_certificate",
                SERVER_SPIFFE_ID.as_bytes().to_vec(),
            ),
            (
                "connection.dns_san_local_certificate",
                b"localhost".to_vec(),
            ),
            (
                "connection.subject_local_certificate",
                b"CN=localhost".to_vec(),
            ),
        ]);
        let Client::Mtls(cert) = client else {
            return Ok(props);
        };
        let identity = self.identity(cert)?;
        let digest = Sha256::digest(identity.cert_der())
            .iter()
            .fold(String::new(), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            });
        props.push((
            "connection.peer_certificate",
            identity.cert_pem().as_bytes().to_vec(),
        ));
        props.push(("connection.sha256_peer_certificate_digest", digest.into()));
        if let Some(uri) = cert.uri_sans().next() {
            props.push(("connection.uri_san_peer_certificate", uri.clone().into()));
        }
        if let Some(dns) = cert.dns.first() {
            props.push(("connection.dns_san_peer_certificate", dns.clone().into()));
        }
        if let Some(cn) = &cert.cn {
            props.push((
                "connection.subject_peer_certificate",
                format!("CN={cn}").into(),
            ));
        }
        Ok(props)
    }
}

/// Replaces every string [`JWKS_PLACEHOLDER`] in `value` with `jwks`.
pub(super) fn fill_jwks(value: &mut Value, jwks: &str) {
    match value {
        Value::String(s) if s == JWKS_PLACEHOLDER => *s = jwks.to_owned(),
        Value::Array(items) => items.iter_mut().for_each(|v| fill_jwks(v, jwks)),
        Value::Object(map) => map.values_mut().for_each(|v| fill_jwks(v, jwks)),
        _ => {}
    }
}

/// Whether `value` holds [`JWKS_PLACEHOLDER`].
pub(super) fn wants_jwks(value: &Value) -> bool {
    match value {
        Value::String(s) => s == JWKS_PLACEHOLDER,
        Value::Array(items) => items.iter().any(wants_jwks),
        Value::Object(map) => map.values().any(wants_jwks),
        _ => false,
    }
}
