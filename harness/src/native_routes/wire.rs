//! Sending a [`DiffRequest`] to a listener: HTTP/1.1 as raw bytes over
//! `std::net` on a fresh connection (so odd forms go out exactly as
//! written), h2 with prior knowledge over one kept connection (hyper's
//! client connection, reopened after an error).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::requests::DiffRequest;

/// Status and headers of a response (the body is not kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Header names (lower-case) and values.
    pub headers: Vec<(String, String)>,
}

impl Reply {
    /// Every value of header `name` joined with `,` (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<String> {
        let values: Vec<&str> = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    }
}

/// The h2 request for `req`, or `None` when its method, authority, target
/// or a header cannot be expressed in h2 (then it goes over HTTP/1.1).
pub fn h2_request(req: &DiffRequest) -> Option<Request<Empty<Bytes>>> {
    let host = req.host.as_deref()?;
    if !req.target.starts_with('/') {
        return None;
    }
    let uri: Uri = format!("{}://{host}{}", req.scheme, req.target)
        .parse()
        .ok()?;
    let mut r = Request::builder()
        .method(Method::from_bytes(req.method.as_bytes()).ok()?)
        .uri(uri);
    for (n, v) in &req.headers {
        let name = HeaderName::from_bytes(n.as_bytes()).ok()?;
        if name == hyper::header::HOST || name == hyper::header::CONNECTION {
            return None;
        }
        r = r.header(name, HeaderValue::from_str(v).ok()?);
    }
    r.body(Empty::new()).ok()
}

/// Sends requests to one listener.
#[derive(Debug)]
pub struct Sender {
    addr: SocketAddr,
    timeout: Duration,
    runtime: tokio::runtime::Runtime,
    h2: Option<SendRequest<Empty<Bytes>>>,
}

impl Sender {
    /// A sender to `addr`, waiting at most `timeout` per request.
    pub fn new(addr: SocketAddr, timeout: Duration) -> std::io::Result<Sender> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Sender {
            addr,
            timeout,
            runtime,
            h2: None,
        })
    }

    /// Sends `req`; an error says what happened instead of a response.
    pub fn send(&mut self, req: &DiffRequest) -> Result<Reply, String> {
        if req.http2 {
            self.send_h2(req)
        } else {
            self.send_http1(req)
        }
    }

    fn send_http1(&self, req: &DiffRequest) -> Result<Reply, String> {
        let io = |e: std::io::Error| format!("http/1.1: {e}");
        let mut stream = TcpStream::connect_timeout(&self.addr, self.timeout).map_err(io)?;
        stream.set_read_timeout(Some(self.timeout)).map_err(io)?;
        stream.set_write_timeout(Some(self.timeout)).map_err(io)?;
        stream.write_all(&req.http1_bytes()).map_err(io)?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = find(&buf, b"\r\n\r\n") {
                return parse_head(buf.get(..end).unwrap_or_default());
            }
            match stream.read(&mut chunk) {
                Ok(0) if buf.is_empty() => {
                    return Err("http/1.1: closed without a response".to_owned());
                }
                Ok(0) => return Err("http/1.1: closed inside the response head".to_owned()),
                Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(e) => return Err(io(e)),
            }
        }
    }

    fn send_h2(&mut self, req: &DiffRequest) -> Result<Reply, String> {
        let request = h2_request(req).ok_or("not expressible in h2")?;
        let (addr, timeout, kept) = (self.addr, self.timeout, self.h2.take());
        let exchange = async move {
            let mut sender = match kept.filter(|s| !s.is_closed()) {
                Some(s) => s,
                None => {
                    let tcp = tokio::net::TcpStream::connect(addr)
                        .await
                        .map_err(|e| format!("h2 connect: {e}"))?;
                    let (s, conn) = hyper::client::conn::http2::handshake(
                        TokioExecutor::new(),
                        TokioIo::new(tcp),
                    )
                    .await
                    .map_err(|e| format!("h2 handshake: {e}"))?;
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    s
                }
            };
            sender.ready().await.map_err(|e| format!("h2: {e}"))?;
            let resp = sender
                .send_request(request)
                .await
                .map_err(|e| format!("h2: {e}"))?;
            let reply = Reply {
                status: resp.status().as_u16(),
                headers: resp
                    .headers()
                    .iter()
                    .map(|(n, v)| {
                        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                        (n.as_str().to_owned(), v)
                    })
                    .collect(),
            };
            let _ = resp.into_body().collect().await;
            Ok::<_, String>((reply, sender))
        };
        let result = self
            .runtime
            .block_on(async { tokio::time::timeout(timeout, exchange).await })
            .map_err(|_| format!("h2: no response within {timeout:?}"))?;
        let (reply, sender) = result?;
        self.h2 = Some(sender);
        Ok(reply)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `HTTP/1.1 404 Not Found` + header lines → [`Reply`].
fn parse_head(head: &[u8]) -> Result<Reply, String> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("http/1.1: bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Reply { status, headers })
}
