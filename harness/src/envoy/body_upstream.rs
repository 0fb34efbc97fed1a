//! An HTTP/1.1 upstream for buffer-limit and header tests: `GET /bytes/<n>`
//! answers `200` with `n` bytes of `x` (`content-length`), `GET /hop` with
//! [`HOP_RESPONSE`], anything else `404`. Plain threads
//! and sockets; the body is written in 16 KiB pieces.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// The answer to `GET /hop`: hop-by-hop headers, repeated headers (inline
/// `via`, custom `x-rep`) and a chunked body `ok`.
pub const HOP_RESPONSE: &str = "HTTP/1.1 200 OK\r\nconnection: keep-alive\r\n\
    keep-alive: timeout=5\r\nproxy-connection: keep-alive\r\nupgrade: foo\r\n\
    via: a\r\nvia: b\r\nx-rep: 1\r\nx-rep: 2\r\ntransfer-encoding: chunked\r\n\r\n\
    2\r\nok\r\n0\r\n\r\n";

/// A running body upstream; dropping it stops accepting.
#[derive(Debug)]
pub struct BodyUpstream {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl BodyUpstream {
    /// Starts on a free port of 127.0.0.1.
    pub fn start() -> std::io::Result<BodyUpstream> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(format!("body-upstream-{}", addr.port()))
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let _ = std::thread::Builder::new()
                                .name("body-upstream-conn".to_owned())
                                .spawn(move || serve(stream));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })?;
        Ok(BodyUpstream {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for BodyUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves requests on one keep-alive connection.
fn serve(stream: TcpStream) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let mut content_length = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.trim().eq_ignore_ascii_case("content-length")
            {
                content_length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; content_length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let size = path
            .strip_prefix("/bytes/")
            .and_then(|n| n.parse::<usize>().ok());
        let ok = match (size, path.as_str()) {
            (Some(n), _) => respond(&mut out, "200 OK", n),
            (None, "/hop") => out.write_all(HOP_RESPONSE.as_bytes()),
            (None, _) => respond(&mut out, "404 Not Found", 0),
        };
        if ok.is_err() {
            return;
        }
    }
}

fn respond(out: &mut TcpStream, status: &str, n: usize) -> std::io::Result<()> {
    write!(
        out,
        "HTTP/1.1 {status}\r\ncontent-length: {n}\r\ncontent-type: application/octet-stream\r\n\r\n"
    )?;
    let piece = [b'x'; 16 * 1024];
    let mut left = n;
    while left > 0 {
        let k = left.min(piece.len());
        out.write_all(piece.get(..k).unwrap_or_default())?;
        left -= k;
    }
    out.flush()
}
