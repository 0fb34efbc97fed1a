//! A gRPC test upstream for the rig: service `probe.Echo` over h2c, written on
//! hyper's HTTP/2 server with gRPC's length-prefixed framing done by hand (a
//! byte of flags, a big-endian `u32` length, the message). hyper is already the
//! rig's HTTP stack; tonic would add tower, prost and code generation for a
//! service whose messages are opaque bytes.
//!
//! What each method answers is a pure function ([`unary_answer`],
//! [`stream_echo`], [`stream_trailers`]), so a harness test can answer its
//! filter's calls exactly as this server answers Envoy's:
//! * `Unary`: `echo:<request>` with response header `x-upstream: grpc` and
//!   trailer `x-trailer: t`, status 0;
//! * `Fail`: trailers-only, `grpc-status: 7`, `grpc-message: denied`;
//! * `Empty`: status 0 and no message; `NoStatus`: a message, trailers without
//!   `grpc-status`; `Http503`: `:status: 503`, no `grpc-status`;
//! * `Slow`: as `Unary`, after 2 s;
//! * `Stream`: response headers at once, `echo:<m>` for each message `m`, and
//!   when the client half-closes, trailers `grpc-status: 0`,
//!   `grpc-message: bye`, `x-count: <messages>`; `StreamReject`: trailers-only
//!   `grpc-status: 5`, `grpc-message: nope`.
//!
//! Every request is recorded ([`GrpcUpstream::requests`]).

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt as _;
use http_body_util::Empty;
use http_body_util::channel::{Channel, Sender};
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::sync::oneshot;

use crate::host::GrpcResponse;

/// The service the upstream serves.
pub const SERVICE: &str = "probe.Echo";

/// The `date` the upstream sends (hyper would add the real one).
const DATE: &str = "Thu, 01 Jan 2026 00:00:00 GMT";

/// A request the upstream received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrpcRequestSeen {
    /// `:path`.
    pub path: String,
    /// Request headers (lower-case), in arrival order.
    pub headers: Vec<(String, String)>,
    /// Messages, without framing.
    pub messages: Vec<Vec<u8>>,
    /// The client ended its side (end of stream).
    pub half_closed: bool,
}

impl GrpcRequestSeen {
    /// First value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What a unary method answers to `messages` (the last one counts), and after
/// how long.
pub fn unary_answer(method: &str, messages: &[Vec<u8>]) -> (GrpcResponse, Duration) {
    let (mut response, delay) = answer(method, messages);
    if !response.headers.iter().any(|(k, _)| k == "date") {
        response
            .headers
            .push(("date".to_owned(), DATE.as_bytes().to_vec()));
    }
    (response, delay)
}

fn answer(method: &str, messages: &[Vec<u8>]) -> (GrpcResponse, Duration) {
    let request = messages.last().cloned().unwrap_or_default();
    let echo = [b"echo:".as_slice(), &request].concat();
    let ok = GrpcResponse::ok(echo)
        .header("x-upstream", "grpc")
        .trailer("x-trailer", "t");
    match method {
        "Fail" => (GrpcResponse::status(7, "denied"), Duration::ZERO),
        "Empty" => {
            let mut r = GrpcResponse::ok(b"");
            r.messages.clear();
            (r, Duration::ZERO)
        }
        "NoStatus" => {
            let mut r = ok;
            r.trailers.retain(|(k, _)| k != "grpc-status");
            (r, Duration::ZERO)
        }
        "Http503" => {
            let mut r = GrpcResponse::status(0, "");
            r.headers = vec![(":status".to_owned(), b"503".to_vec())];
            r.trailers.clear();
            (r, Duration::ZERO)
        }
        "StreamReject" => (GrpcResponse::status(5, "nope"), Duration::ZERO),
        "Slow" => (ok, Duration::from_secs(2)),
        _ => (ok, Duration::ZERO),
    }
}

/// Response headers of method `Stream`.
pub fn stream_headers() -> Vec<(String, Vec<u8>)> {
    GrpcResponse::ok(b"")
        .header("x-upstream", "grpc")
        .header("date", DATE)
        .headers
}

/// What method `Stream` sends for message `m`.
pub fn stream_echo(m: &[u8]) -> Vec<u8> {
    [b"echo:".as_slice(), m].concat()
}

/// Trailers of method `Stream` after `count` messages.
pub fn stream_trailers(count: usize) -> Vec<(String, Vec<u8>)> {
    vec![
        ("grpc-status".to_owned(), b"0".to_vec()),
        ("grpc-message".to_owned(), b"bye".to_vec()),
        ("x-count".to_owned(), count.to_string().into_bytes()),
    ]
}

/// A running gRPC upstream; dropping it stops the server.
#[derive(Debug)]
pub struct GrpcUpstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<GrpcRequestSeen>>>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

type Seen = Arc<Mutex<Vec<GrpcRequestSeen>>>;

fn lock(seen: &Seen) -> MutexGuard<'_, Vec<GrpcRequestSeen>> {
    seen.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl GrpcUpstream {
    /// Starts the upstream on a free port of 127.0.0.1.
    pub fn start() -> anyhow::Result<GrpcUpstream> {
        let listener =
            StdTcpListener::bind(("127.0.0.1", 0)).context("binding the gRPC upstream")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let seen: Seen = Arc::new(Mutex::new(Vec::new()));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building the gRPC upstream runtime")?;
        let (tx, rx) = oneshot::channel();
        let server_seen = Arc::clone(&seen);
        let thread = std::thread::Builder::new()
            .name(format!("grpc-upstream-{}", addr.port()))
            .spawn(move || runtime.block_on(serve(listener, server_seen, rx)))
            .context("spawning the gRPC upstream thread")?;
        Ok(GrpcUpstream {
            addr,
            seen,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// Address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests received so far, in order.
    pub fn requests(&self) -> Vec<GrpcRequestSeen> {
        lock(&self.seen).clone()
    }
}

impl Drop for GrpcUpstream {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(listener: StdTcpListener, seen: Seen, mut shutdown: oneshot::Receiver<()>) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(Arc::clone(&seen), req));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

type Body = BoxBody<Bytes, Infallible>;

/// Splits complete gRPC frames off `buf`.
fn frames(buf: &mut BytesMut) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while buf.len() >= 5 {
        let len = buf
            .get(1..5)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, u32::from_be_bytes);
        let Ok(len) = usize::try_from(len) else {
            break;
        };
        if buf.len() < 5 + len {
            break;
        }
        buf.advance(5);
        out.push(buf.split_to(len).to_vec());
    }
    out
}

fn frame(message: &[u8]) -> Bytes {
    let len = u32::try_from(message.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(message.len() + 5);
    out.push(0);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(message);
    Bytes::from(out)
}

fn header_map(pairs: &[(String, Vec<u8>)]) -> hyper::HeaderMap {
    let mut map = hyper::HeaderMap::new();
    for (k, v) in pairs.iter().filter(|(k, _)| !k.starts_with(':')) {
        if let (Ok(k), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(k.as_bytes()),
            hyper::header::HeaderValue::from_bytes(v),
        ) {
            map.append(k, v);
        }
    }
    map
}

fn status_of(pairs: &[(String, Vec<u8>)]) -> u16 {
    pairs
        .iter()
        .find(|(k, _)| k == ":status")
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(200)
}

/// Sends `response` on `tx`: messages, then trailers (none if trailers-only).
async fn send_body(mut tx: Sender<Bytes, Infallible>, response: GrpcResponse) {
    if response.trailers_only && response.messages.is_empty() {
        return;
    }
    for m in &response.messages {
        if tx.send_data(frame(m)).await.is_err() {
            return;
        }
    }
    let _ = tx.send_trailers(header_map(&response.trailers)).await;
}

fn respond_with(headers: &[(String, Vec<u8>)], body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() =
        hyper::StatusCode::from_u16(status_of(headers)).unwrap_or(hyper::StatusCode::OK);
    *response.headers_mut() = header_map(headers);
    response
}

async fn handle(seen: Seen, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let index = {
        let mut s = lock(&seen);
        s.push(GrpcRequestSeen {
            path: path.clone(),
            headers,
            ..GrpcRequestSeen::default()
        });
        s.len() - 1
    };
    let method = path
        .strip_prefix(&format!("/{SERVICE}/"))
        .unwrap_or_default()
        .to_owned();
    let (tx, body) = Channel::<Bytes, Infallible>::new(16);
    let mut incoming = req.into_body();
    if method == "Stream" {
        tokio::spawn(async move {
            let mut tx = tx;
            let mut buf = BytesMut::new();
            let mut count = 0;
            while let Some(Ok(f)) = incoming.frame().await {
                if let Ok(data) = f.into_data() {
                    buf.extend_from_slice(&data);
                }
                for m in frames(&mut buf) {
                    count += 1;
                    if let Some(r) = lock(&seen).get_mut(index) {
                        r.messages.push(m.clone());
                    }
                    if tx.send_data(frame(&stream_echo(&m))).await.is_err() {
                        return;
                    }
                }
            }
            if let Some(r) = lock(&seen).get_mut(index) {
                r.half_closed = true;
            }
            let _ = tx.send_trailers(header_map(&stream_trailers(count))).await;
        });
        return Ok(respond_with(&stream_headers(), body.boxed()));
    }
    let mut buf = BytesMut::new();
    // `StreamReject` answers at once; the unary methods read the whole request.
    while method != "StreamReject"
        && let Some(Ok(f)) = incoming.frame().await
    {
        if let Ok(data) = f.into_data() {
            buf.extend_from_slice(&data);
        }
    }
    let messages = frames(&mut buf);
    if let Some(r) = lock(&seen).get_mut(index)
        && method != "StreamReject"
    {
        r.messages = messages.clone();
        r.half_closed = true;
    }
    let (response, delay) = unary_answer(&method, &messages);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut head = response.headers.clone();
    if response.trailers_only && response.messages.is_empty() {
        head.extend(response.trailers.iter().cloned());
        // An empty body that says so up front: HEADERS with END_STREAM.
        return Ok(respond_with(&head, Empty::new().boxed()));
    }
    tokio::spawn(send_body(tx, response));
    Ok(respond_with(&head, body.boxed()))
}
