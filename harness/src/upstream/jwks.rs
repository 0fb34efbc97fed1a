//! A JWKS endpoint for JWT tests (SPEC.md §RequestAuthentication `jwksUri`,
//! `timeout`): serves a JWKS document at one path of a free 127.0.0.1 port,
//! over HTTP/1.1 (and h2c) or HTTPS, and lets the test rotate the document,
//! inject failures (a status, a closed connection, a hang, a delay), count
//! hits, and stop and restart the server on the same port.
//!
//! ```no_run
//! use meshwasm_harness::jwt::{Alg, Key};
//! use meshwasm_harness::upstream::{JwksFault, JwksServer};
//! # fn main() -> anyhow::Result<()> {
//! let key = Key::generate(Alg::RS256)?.with_kid("k1");
//! let mut jwks = JwksServer::start(&key.jwks())?;
//! // Envoy cluster "jwks" → jwks.addr(); the filter fetches jwks.path().
//! jwks.fail(JwksFault::Status(503));
//! jwks.heal();
//! jwks.stop();
//! jwks.restart()?;
//! assert_eq!(jwks.hits(), 0);
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

use super::RecordedRequest;
use crate::tls::Identity;

/// The default path of the document.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// A failure the server injects instead of serving the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwksFault {
    /// Answer this status, body `injected <status>\n`.
    Status(u16),
    /// Close the connection without answering.
    Close,
    /// Never answer (until the server stops): for fetch timeouts.
    Hang,
    /// Wait this long, then serve the document.
    Delay(Duration),
}

#[derive(Debug)]
struct State {
    body: Bytes,
    fault: Option<JwksFault>,
    /// Requests the fault still applies to (`None`: every one).
    fault_left: Option<u64>,
    hits: BTreeMap<String, u64>,
    last: Option<RecordedRequest>,
}

#[derive(Debug)]
struct Shared {
    path: String,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not take the server down with it.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Debug)]
struct Running {
    shutdown: oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

/// A running (or stopped) JWKS server; dropping it stops it.
pub struct JwksServer {
    addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    running: Option<Running>,
}

impl std::fmt::Debug for JwksServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksServer")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .field("shared", &self.shared)
            .field("running", &self.running)
            .finish()
    }
}

impl JwksServer {
    /// Serves `document` at [`JWKS_PATH`] on a free port of 127.0.0.1.
    pub fn start(document: &serde_json::Value) -> anyhow::Result<JwksServer> {
        Self::start_at(JWKS_PATH, document)
    }

    /// Serves `document` at `path` on a free port of 127.0.0.1.
    pub fn start_at(path: &str, document: &serde_json::Value) -> anyhow::Result<JwksServer> {
        Self::launch(path, document, None)
    }

    /// Serves `document` at [`JWKS_PATH`] over TLS with `identity` as the
    /// server certificate (HTTP/1.1 only).
    pub fn start_tls(
        document: &serde_json::Value,
        identity: &Identity,
    ) -> anyhow::Result<JwksServer> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![identity.cert_der().to_vec().into()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(identity.key_der().to_vec().into()),
            )
            .context("the JWKS server's certificate")?;
        Self::launch(
            JWKS_PATH,
            document,
            Some(TlsAcceptor::from(Arc::new(config))),
        )
    }

    fn launch(
        path: &str,
        document: &serde_json::Value,
        tls: Option<TlsAcceptor>,
    ) -> anyhow::Result<JwksServer> {
        let shared = Arc::new(Shared {
            path: path.to_owned(),
            state: Mutex::new(State {
                body: json_body(document),
                fault: None,
                fault_left: None,
                hits: BTreeMap::new(),
                last: None,
            }),
        });
        let listener = StdTcpListener::bind(("127.0.0.1", 0)).context("binding the JWKS server")?;
        let mut server = JwksServer {
            addr: listener.local_addr()?,
            tls,
            shared,
            running: None,
        };
        server.run(listener)?;
        Ok(server)
    }

    fn run(&mut self, listener: StdTcpListener) -> anyhow::Result<()> {
        listener.set_nonblocking(true)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building the JWKS server runtime")?;
        let (tx, rx) = oneshot::channel();
        let shared = Arc::clone(&self.shared);
        let tls = self.tls.clone();
        // The runtime moves into the thread and drops there when `serve`
        // returns, cancelling every connection task: stopping closes open
        // connections too.
        let thread = std::thread::Builder::new()
            .name(format!("jwks-{}", self.addr.port()))
            .spawn(move || runtime.block_on(serve(listener, shared, tls, rx)))
            .context("spawning the JWKS server thread")?;
        self.running = Some(Running {
            shutdown: tx,
            thread,
        });
        Ok(())
    }

    /// Address the server listens on (kept across [`JwksServer::restart`]).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The document's path, e.g. `/.well-known/jwks.json`.
    pub fn path(&self) -> &str {
        &self.shared.path
    }

    /// The document's URL, e.g. `http://127.0.0.1:40123/.well-known/jwks.json`
    /// (`https://` when started with [`JwksServer::start_tls`]).
    pub fn jwks_uri(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}{}", self.addr, self.shared.path)
    }

    /// Serves `document` from now on (key rotation).
    pub fn set_document(&self, document: &serde_json::Value) {
        self.shared.lock().body = json_body(document);
    }

    /// Serves `body` verbatim from now on (e.g. invalid JSON).
    pub fn set_body(&self, body: impl Into<Bytes>) {
        self.shared.lock().body = body.into();
    }

    /// Injects `fault` into every later request until [`JwksServer::heal`].
    pub fn fail(&self, fault: JwksFault) {
        let mut s = self.shared.lock();
        s.fault = Some(fault);
        s.fault_left = None;
    }

    /// Injects `fault` into the next `count` requests only.
    pub fn fail_next(&self, fault: JwksFault, count: u64) {
        let mut s = self.shared.lock();
        s.fault = Some(fault);
        s.fault_left = Some(count);
    }

    /// Serves the document again (requests already hanging stay hung).
    pub fn heal(&self) {
        let mut s = self.shared.lock();
        s.fault = None;
        s.fault_left = None;
    }

    /// Requests to the document's path so far, whatever was answered.
    pub fn hits(&self) -> u64 {
        let s = self.shared.lock();
        s.hits.get(&self.shared.path).copied().unwrap_or(0)
    }

    /// Requests to any path so far.
    pub fn total_hits(&self) -> u64 {
        self.shared.lock().hits.values().sum()
    }

    /// Hit counts per path.
    pub fn all_hits(&self) -> BTreeMap<String, u64> {
        self.shared.lock().hits.clone()
    }

    /// The last request seen, if any.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.shared.lock().last.clone()
    }

    /// Forgets hits and the last request.
    pub fn reset_hits(&self) {
        let mut s = self.shared.lock();
        s.hits.clear();
        s.last = None;
    }

    /// Whether the server is accepting connections.
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Stops listening and closes every open connection (a no-op when
    /// stopped). Connects fail until [`JwksServer::restart`].
    pub fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.shutdown.send(());
            let _ = running.thread.join();
        }
    }

    /// Listens again on the same address, with the same document, faults
    /// and counts (a no-op when running).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.running.is_some() {
            return Ok(());
        }
        let mut attempt = 0;
        let listener = loop {
            attempt += 1;
            match StdTcpListener::bind(self.addr) {
                Ok(l) => break l,
                Err(_) if attempt < 50 => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("rebinding the JWKS server to {}", self.addr));
                }
            }
        };
        self.run(listener)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn json_body(document: &serde_json::Value) -> Bytes {
    Bytes::from(serde_json::to_vec(document).unwrap_or_default())
}

async fn serve(
    listener: StdTcpListener,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("JWKS server: cannot use listener: {e}");
            return;
        }
    };
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _peer)) = accepted else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&shared);
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(Arc::clone(&shared), req));
            let builder = auto::Builder::new(TokioExecutor::new());
            match tls {
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        let _ = builder
                            .http1_only()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                }
                None => {
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
            }
        });
    }
}

/// Why a connection is closed without an answer (the service's error).
#[derive(Debug)]
struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection closed by an injected fault")
    }
}

impl std::error::Error for Closed {}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Closed> {
    let path = req.uri().path().to_owned();
    let (fault, body) = {
        let mut s = shared.lock();
        *s.hits.entry(path.clone()).or_insert(0) += 1;
        s.last = Some(super::handler::record(&req));
        let fault = match s.fault_left {
            Some(0) => None,
            Some(n) => {
                s.fault_left = Some(n - 1);
                s.fault
            }
            None => s.fault,
        };
        (fault, s.body.clone())
    };
    match fault {
        Some(JwksFault::Close) => return Err(Closed),
        Some(JwksFault::Hang) => std::future::pending::<()>().await,
        Some(JwksFault::Delay(d)) => tokio::time::sleep(d).await,
        Some(JwksFault::Status(status)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Ok(reply(
                status,
                "text/plain",
                Bytes::from(format!("injected {}\n", status.as_u16())),
            ));
        }
        None => {}
    }
    if path != shared.path {
        return Ok(reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"404 page not found\n"),
        ));
    }
    Ok(reply(StatusCode::OK, "application/json", body))
}

fn reply(status: StatusCode, content_type: &str, body: Bytes) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body))
        .unwrap_or_else(|_| Response::new(Full::default()))
}
