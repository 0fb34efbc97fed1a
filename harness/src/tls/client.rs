//! A small blocking HTTPS client for tests (HTTP/1.1 over rustls with the
//! `ring` provider): trusts one CA, presents a client certificate or none,
//! opens a fresh connection per request (so every request shows the
//! handshake's outcome), returns whole [`Response`]s.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use super::{Identity, TlsError};
use crate::client::Response;

/// A blocking HTTPS client with its own single-threaded runtime.
pub struct HttpsClient {
    runtime: tokio::runtime::Runtime,
    connector: TlsConnector,
    server_name: Option<ServerName<'static>>,
    timeout: Duration,
}

impl std::fmt::Debug for HttpsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsClient")
            .field("server_name", &self.server_name)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HttpsClient {
    /// A client trusting the CA certificate(s) in `ca_pem`, presenting
    /// `identity` as its client certificate when given (and when the server
    /// asks), offering ALPN `http/1.1`; 10 s timeout per request.
    pub fn new(ca_pem: &str, identity: Option<&Identity>) -> Result<HttpsClient, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            let cert = cert.map_err(|e| TlsError::Parse(format!("CA PEM: {e}")))?;
            roots.add(cert)?;
        }
        if roots.is_empty() {
            return Err(TlsError::Parse("CA PEM: no certificate".to_owned()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let mut config = match identity {
            Some(id) => builder.with_client_auth_cert(
                vec![CertificateDer::from(id.cert_der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(id.key_der().to_vec())),
            )?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| TlsError::Parse(format!("building the client runtime: {e}")))?;
        Ok(HttpsClient {
            runtime,
            connector: TlsConnector::from(Arc::new(config)),
            server_name: None,
            timeout: Duration::from_secs(10),
        })
    }

    /// Sets the timeout of each request (connect, handshake, headers, body).
    pub fn with_timeout(mut self, timeout: Duration) -> HttpsClient {
        self.timeout = timeout;
        self
    }

    /// Sends SNI `name` and verifies the server certificate for it, instead
    /// of the URL's host (an IP address: no SNI).
    pub fn with_server_name(mut self, name: &str) -> Result<HttpsClient, TlsError> {
        let name = ServerName::try_from(name.to_owned())
            .map_err(|e| TlsError::Parse(format!("server name {name:?}: {e}")))?;
        self.server_name = Some(name);
        Ok(self)
    }

    /// `GET url` with extra `headers` (a `host` header overrides the URL's).
    pub fn get(&self, url: &str, headers: &[(&str, &str)]) -> anyhow::Result<Response> {
        self.request("GET", url, headers, Bytes::new())
    }

    /// `method url` with `headers` and `body`, over a new TLS connection.
    pub fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> anyhow::Result<Response> {
        let uri: hyper::Uri = url.parse().with_context(|| format!("parsing {url}"))?;
        if uri.scheme_str() != Some("https") {
            bail!("{url}: not an https URL");
        }
        let host = uri.host().ok_or_else(|| anyhow!("{url}: no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let authority = uri
            .authority()
            .map_or_else(|| host.clone(), |a| a.as_str().to_owned());
        let server_name = match &self.server_name {
            Some(name) => name.clone(),
            None => ServerName::try_from(host.clone())
                .with_context(|| format!("{host} as a TLS server name"))?,
        };
        let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
        let mut builder = Request::builder().method(method).uri(path);
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
            builder = builder.header("host", authority.as_str());
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let req = builder
            .body(Full::new(body.into()))
            .with_context(|| format!("building {method} {url}"))?;
        let fut = async {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .with_context(|| format!("connecting to {host}:{port}"))?;
            let _ = tcp.set_nodelay(true);
            let tls = self
                .connector
                .connect(server_name, tcp)
                .await
                .context("TLS handshake")?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(tls))
                    .await
                    .context("HTTP/1.1 handshake")?;
            let driver = tokio::spawn(conn);
            let resp = sender.send_request(req).await?;
            let status = resp.status().as_u16();
            let headers = resp
                .headers()
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let body = resp.into_body().collect().await?.to_bytes().to_vec();
            driver.abort();
            Ok::<_, anyhow::Error>(Response {
                status,
                headers,
                body,
            })
        };
        self.runtime
            .block_on(async { tokio::time::timeout(self.timeout, fut).await })
            .map_err(|_| anyhow!("{method} {url}: no response within {:?}", self.timeout))?
            .with_context(|| format!("{method} {url}"))
    }
}
