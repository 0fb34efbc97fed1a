//! A small blocking HTTP client for tests: HTTP/1.1 or h2c (prior
//! knowledge), keep-alive pooling, a per-request timeout, whole bodies.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! let r = meshwasm_harness::client::get("http://127.0.0.1:10000/api/products", &[("user-type", "premium")])?;
//! assert_eq!(r.status, 200);
//! # Ok(()) }
//! ```

use std::time::Duration;

use anyhow::{Context as _, anyhow};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper_util::client::legacy::Client as LegacyClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A whole HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header names (lower-case) and values, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("body is not JSON: {}", self.text()))
    }
}

/// A blocking client with its own single-threaded runtime and a
/// keep-alive connection pool.
#[derive(Debug)]
pub struct Client {
    runtime: tokio::runtime::Runtime,
    inner: LegacyClient<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl Client {
    /// An HTTP/1.1 client with a 30 s timeout per request.
    pub fn new() -> anyhow::Result<Client> {
        Self::build(false)
    }

    /// An h2c client (HTTP/2 with prior knowledge, no TLS).
    pub fn http2() -> anyhow::Result<Client> {
        Self::build(true)
    }

    fn build(http2: bool) -> anyhow::Result<Client> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building the client runtime")?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let inner = LegacyClient::builder(TokioExecutor::new())
            .http2_only(http2)
            .build(connector);
        Ok(Client {
            runtime,
            inner,
            timeout: Duration::from_secs(30),
        })
    }

    /// Sets the timeout of each request (headers and body).
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// `GET url` with extra `headers` (a `host` header overrides the URL's).
    pub fn get(&self, url: &str, headers: &[(&str, &str)]) -> anyhow::Result<Response> {
        self.request("GET", url, headers, Bytes::new())
    }

    /// `method url` with `headers` and `body`.
    pub fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> anyhow::Result<Response> {
        let mut builder = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let req = builder
            .body(Full::new(body.into()))
            .with_context(|| format!("building {method} {url}"))?;
        let fut = async {
            let resp = self.inner.request(req).await?;
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

/// One-off `GET url` over HTTP/1.1 (a fresh connection).
pub fn get(url: &str, headers: &[(&str, &str)]) -> anyhow::Result<Response> {
    Client::new()?.get(url, headers)
}

/// One-off `method url` over HTTP/1.1 (a fresh connection).
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> anyhow::Result<Response> {
    Client::new()?.request(method, url, headers, body)
}
