//! Test upstreams: the seed's product service (`canary-deployment.go`,
//! SPEC.md §seed behaviours "Product service") as a hyper 1 server, plus
//! test-only controls that later issues need (delays, injected failures, hit
//! counts).
//!
//! Behaviour of the seed service:
//! - `GET /api/products` ⇒ `200`, `Content-Type: application/json`,
//!   `Service-Version: <v>`, body `{"version","message","timestamp","features"}\n`;
//! - `GET /health` ⇒ `200 OK` (no newline);
//! - another method on those paths ⇒ `405` (empty body, as gorilla/mux);
//! - an unknown path ⇒ `404 page not found\n`; a path that is not clean
//!   (`//x`, `/a/../b`) ⇒ `301` to the cleaned path (gorilla/mux).
//!
//! Test controls (never counted as hits, never delayed or failed):
//! - request header `x-test-delay-ms: N` sleeps N ms before answering;
//! - request header `x-test-status: N` answers with status N;
//! - `POST /__test/fail?status=503&count=2` makes the next 2 requests fail;
//! - `POST /__test/delay?ms=N` delays every later request by N ms (0 = off);
//! - `GET /__test/hits` ⇒ JSON object of hit counts per path;
//! - `GET /__test/last` ⇒ JSON `{method, path, headers}` of the last request;
//! - `POST /__test/reset` clears hits, failures and the delay;
//! - any method on `/__test/echo` ⇒ `200` with the request as JSON (counted).
//!
//! [`JwksServer`] serves a JWKS document for JWT tests, with rotation,
//! injected failures, hit counts and stop/restart on the same port.
//!
//! Each [`ProductService`] runs on its own thread with its own tokio runtime,
//! serves HTTP/1.1 and h2c, and stops when dropped.

mod handler;
mod jwks;
pub(crate) mod seed;

pub use jwks::{JWKS_PATH, JwksFault, JwksServer};

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::sync::oneshot;

/// The last request a [`ProductService`] saw (control endpoints excluded).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RecordedRequest {
    /// Request method, e.g. `GET`.
    pub method: String,
    /// Path and query as received.
    pub path: String,
    /// Header names (lower-case) and values, in arrival order.
    pub headers: Vec<(String, String)>,
}

impl RecordedRequest {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Mutable state shared by the server tasks and the test thread.
#[derive(Debug, Default)]
struct Controls {
    hits: BTreeMap<String, u64>,
    fail_status: u16,
    fail_count: u64,
    delay: Duration,
    last: Option<RecordedRequest>,
}

#[derive(Debug)]
struct Shared {
    version: String,
    controls: Mutex<Controls>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Controls> {
        // A panicking test thread must not take the server down with it.
        self.controls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running product service; dropping it stops the server.
#[derive(Debug)]
pub struct ProductService {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ProductService {
    /// Starts service `version` (`v1`, `v2`; others answer with empty
    /// fields, as the seed) on a free port of 127.0.0.1.
    pub fn start(version: &str) -> anyhow::Result<ProductService> {
        Self::start_on(version, SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Starts service `version` on `addr` (port 0 = a free port).
    pub fn start_on(version: &str, addr: SocketAddr) -> anyhow::Result<ProductService> {
        let listener = StdTcpListener::bind(addr)
            .with_context(|| format!("binding product service to {addr}"))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            version: version.to_owned(),
            controls: Mutex::new(Controls::default()),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building the product service runtime")?;
        let (tx, rx) = oneshot::channel();
        let server_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("product-service-{version}-{}", addr.port()))
            .spawn(move || runtime.block_on(serve(listener, server_shared, rx)))
            .context("spawning the product service thread")?;
        Ok(ProductService {
            addr,
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// Address the service listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Version the service answers as.
    pub fn version(&self) -> &str {
        &self.shared.version
    }

    /// Requests to `/api/products` so far.
    pub fn hits(&self) -> u64 {
        self.hits_for("/api/products")
    }

    /// Requests to `path` (query excluded) so far.
    pub fn hits_for(&self, path: &str) -> u64 {
        self.shared.lock().hits.get(path).copied().unwrap_or(0)
    }

    /// Requests to any path so far (control endpoints excluded).
    pub fn total_hits(&self) -> u64 {
        self.shared.lock().hits.values().sum()
    }

    /// Hit counts per path.
    pub fn all_hits(&self) -> BTreeMap<String, u64> {
        self.shared.lock().hits.clone()
    }

    /// Makes the next `count` requests answer `status` (body
    /// `injected <status> from <version>\n`).
    pub fn fail_next(&self, status: u16, count: u64) {
        let mut c = self.shared.lock();
        c.fail_status = status;
        c.fail_count = count;
    }

    /// Delays every later request by `delay` (zero = off).
    pub fn set_delay(&self, delay: Duration) {
        self.shared.lock().delay = delay;
    }

    /// The last request seen, if any.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.shared.lock().last.clone()
    }

    /// Clears hits, failures, the delay and the last request.
    pub fn reset(&self) {
        *self.shared.lock() = Controls::default();
    }
}

impl Drop for ProductService {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(listener: StdTcpListener, shared: Arc<Shared>, mut shutdown: oneshot::Receiver<()>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("product service: cannot use listener: {e}");
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
        tokio::spawn(async move {
            let service = service_fn(move |req| handler::handle(Arc::clone(&shared), req));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests;
