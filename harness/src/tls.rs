//! Test PKI and an HTTPS client for mTLS tests (SPEC.md §PeerAuthentication):
//! a CA, a server certificate for `127.0.0.1`/`localhost`, and client
//! certificates whose URI SAN is a SPIFFE id, all made at test time with
//! `rcgen` (ECDSA P-256 keys); [`HttpsClient`] speaks HTTP/1.1 over rustls
//! with or without a client certificate.
//!
//! ```no_run
//! use meshwasm_harness::envoy::{EnvoyRig, ListenerTls};
//! use meshwasm_harness::tls::{FRONTEND_SPIFFE_ID, HttpsClient, TestPki};
//! # fn main() -> anyhow::Result<()> {
//! let pki = TestPki::generate()?;
//! let envoy = EnvoyRig::builder().tls(ListenerTls::new(&pki)).start()?;
//! let frontend = pki.client(FRONTEND_SPIFFE_ID)?;
//! let mtls = HttpsClient::new(pki.ca_pem(), Some(&frontend))?;
//! let r = mtls.get(&format!("{}/api/products", envoy.https_url()), &[])?;
//! # Ok(()) }
//! ```

mod client;

use std::net::{IpAddr, Ipv4Addr};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

pub use client::HttpsClient;

/// SPIFFE id of the client workload tests use: Istio's identity of service
/// account `frontend` in namespace `default`.
pub const FRONTEND_SPIFFE_ID: &str = "spiffe://cluster.local/ns/default/sa/frontend";

/// SPIFFE id in the server certificate's URI SAN (the product service's
/// workload identity).
pub const SERVER_SPIFFE_ID: &str = "spiffe://cluster.local/ns/default/sa/product-service";

/// Why a certificate or TLS configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rcgen refused the parameters or failed to sign.
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// A PEM document or a server name did not parse.
    #[error("{0}")]
    Parse(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// A certificate and its private key.
#[derive(Clone)]
pub struct Identity {
    cert_pem: String,
    key_pem: String,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// The certificate (PEM), alone: the chain Envoy and clients present
    /// (the CA is the trust anchor, so no intermediate follows).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The PKCS#8 private key (PEM).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The certificate (DER).
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The PKCS#8 private key (DER).
    pub fn key_der(&self) -> &[u8] {
        &self.key_der
    }
}

/// What a certificate [`TestPki::issue`]s says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertSpec {
    /// Subject `CN` (none: an empty subject, as Istio's workload certs).
    pub common_name: Option<String>,
    /// URI SANs, in order (the first is `connection.uri_san_peer_certificate`).
    pub uris: Vec<String>,
    /// DNS SANs.
    pub dns: Vec<String>,
    /// IP SANs.
    pub ips: Vec<IpAddr>,
    /// Extended key usage `serverAuth`.
    pub server_auth: bool,
    /// Extended key usage `clientAuth`.
    pub client_auth: bool,
}

/// A test CA with a server identity, issuing client identities on demand.
pub struct TestPki {
    ca_pem: String,
    ca_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
    server: Identity,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki")
            .field("ca_pem", &self.ca_pem)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl TestPki {
    /// A new CA (`CN=meshwasm test CA`) and a server certificate for
    /// `localhost` and `127.0.0.1` with URI SAN [`SERVER_SPIFFE_ID`].
    pub fn generate() -> Result<TestPki, TlsError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "meshwasm test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let mut pki = TestPki {
            ca_pem: cert.pem(),
            ca_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
            server: Identity {
                cert_pem: String::new(),
                key_pem: String::new(),
                cert_der: Vec::new(),
                key_der: Vec::new(),
            },
        };
        pki.server = pki.issue(&CertSpec {
            common_name: Some("localhost".to_owned()),
            uris: vec![SERVER_SPIFFE_ID.to_owned()],
            dns: vec!["localhost".to_owned()],
            ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            server_auth: true,
            client_auth: false,
        })?;
        Ok(pki)
    }

    /// The CA certificate (PEM): what clients and Envoy trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The CA certificate (DER).
    pub fn ca_der(&self) -> &[u8] {
        &self.ca_der
    }

    /// The server identity (for Envoy's listener).
    pub fn server(&self) -> &Identity {
        &self.server
    }

    /// A new client identity with URI SAN `spiffe_id` (e.g.
    /// [`FRONTEND_SPIFFE_ID`]), an empty subject and `clientAuth`.
    pub fn client(&self, spiffe_id: &str) -> Result<Identity, TlsError> {
        self.issue(&CertSpec {
            uris: vec![spiffe_id.to_owned()],
            client_auth: true,
            ..CertSpec::default()
        })
    }

    /// A new identity as `spec` says, signed by this CA (fresh P-256 key).
    pub fn issue(&self, spec: &CertSpec) -> Result<Identity, TlsError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        if let Some(cn) = &spec.common_name {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        let ia5 = |s: &String| {
            s.clone()
                .try_into()
                .map_err(|_| TlsError::Parse(format!("not an IA5 string: {s:?}")))
        };
        for uri in &spec.uris {
            params.subject_alt_names.push(SanType::URI(ia5(uri)?));
        }
        for dns in &spec.dns {
            params.subject_alt_names.push(SanType::DnsName(ia5(dns)?));
        }
        for ip in &spec.ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        if spec.server_auth {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if spec.client_auth {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Identity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        })
    }
}

#[cfg(test)]
mod tests;
