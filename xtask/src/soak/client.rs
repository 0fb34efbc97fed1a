//! The soak's clients, plain HTTP/1.1 on `std::net`: kept-alive
//! connections that read every answer and check it against the policy, and
//! connections that hang up mid-request (Envoy resets the stream: a closed
//! connection with a request in flight is
//! `downstream_cx_destroy_remote_active_rq`).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

/// Requests on one kept-alive connection before a new one.
const PER_CONNECTION: usize = 200;
/// Examples of unexpected answers kept for the report.
const EXAMPLES: usize = 5;

/// The tokens the clients send.
pub(super) struct Tokens {
    repeated: String,
    pool: Vec<String>,
    forged: String,
}

impl Tokens {
    /// `repeated` (every request that needs a token and is not fresh), the
    /// `pool` of fresh ones, and `repeated` with its signature tampered.
    pub(super) fn new(repeated: String, pool: Vec<String>) -> Tokens {
        let mut forged = repeated.clone();
        if let Some(dot) = forged.rfind('.') {
            let mid = dot + (forged.len() - dot) / 2;
            let swapped = if forged.get(mid..=mid) == Some("Q") {
                "R"
            } else {
                "Q"
            };
            if forged.is_char_boundary(mid) && forged.is_char_boundary(mid + 1) {
                forged.replace_range(mid..=mid, swapped);
            }
        }
        Tokens {
            repeated,
            pool,
            forged,
        }
    }
}

/// What the clients did and saw.
#[derive(Default)]
pub(super) struct Counts {
    answered: AtomicU64,
    unexpected: AtomicU64,
    errors: AtomicU64,
    hang_ups: AtomicU64,
    examples: Mutex<Vec<String>>,
}

impl Counts {
    fn unexpected(&self, what: String) {
        self.unexpected.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut e) = self.examples.lock()
            && e.len() < EXAMPLES
        {
            e.push(what);
        }
    }

    /// Prints the totals.
    pub(super) fn report(&self, secs: f64) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        println!(
            "clients: {} answers read ({:.0}/s), {} unexpected, {} connection errors, {} hang-ups mid-request",
            get(&self.answered),
            get(&self.answered) as f64 / secs.max(1.0),
            get(&self.unexpected),
            get(&self.errors),
            get(&self.hang_ups)
        );
    }

    /// Why the answers are not what the policy gives, if they are not.
    pub(super) fn problem(&self) -> Option<String> {
        let answered = self.answered.load(Ordering::Relaxed);
        let unexpected = self.unexpected.load(Ordering::Relaxed);
        let errors = self.errors.load(Ordering::Relaxed);
        let examples = self
            .examples
            .lock()
            .map(|e| e.join("; "))
            .unwrap_or_default();
        if answered == 0 {
            Some("the kept-alive clients got no answer".to_owned())
        } else if unexpected > 0 {
            Some(format!("{unexpected} unexpected answers, e.g. {examples}"))
        } else if errors * 100 > answered {
            Some(format!("{errors} connection errors for {answered} answers"))
        } else {
            None
        }
    }
}

/// A small xorshift generator: the clients need variety, not quality.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// `GET path` to `authority` with `headers` (and `x-tenant: acme` when
/// `tenant`).
fn request(authority: &str, path: &str, tenant: bool, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut text = format!("GET {path} HTTP/1.1\r\nhost: {authority}\r\n");
    if tenant {
        text.push_str("x-tenant: acme\r\n");
    }
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str("\r\n");
    text.into_bytes()
}

/// Request `n` of a kept-alive client and the statuses the policy gives it.
fn steady_request(t: &Tokens, n: usize) -> (Vec<u8>, &'static [u16]) {
    let bearer = |tok: &str| format!("Bearer {tok}");
    let repeated = bearer(&t.repeated);
    let auth = |v: &str| [("authorization", v.to_owned())];
    let products = |headers: &[(&str, String)], tenant| {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        request("product-service", "/api/products", tenant, &h)
    };
    match n % 9 {
        0 => (
            products(
                &[("authorization", repeated), ("user-type", "premium".into())],
                true,
            ),
            &[200],
        ),
        1 => {
            let fresh = t
                .pool
                .get(n / 9 % t.pool.len().max(1))
                .unwrap_or(&t.repeated);
            (products(&auth(&bearer(fresh)), true), &[200])
        }
        2 => (products(&auth(&bearer(&t.forged)), true), &[401]),
        3 => (products(&auth(&repeated), false), &[403]),
        4 => (
            request(
                "chaos",
                "/api/products",
                true,
                &[("test-scenario", "error")],
            ),
            &[200, 500],
        ),
        5 => {
            let user = format!("user-{}", n % 1000);
            let h = [("x-user-id", user.as_str())];
            (request("checkout", "/api/products", true, &h), &[200])
        }
        6 => (request("product-api", "/api/products", true, &[]), &[200]),
        7 => {
            let h = [("authorization", repeated.as_str())];
            let path = "/api/products/internal/stats";
            (request("product-service", path, true, &h), &[403])
        }
        _ => (products(&[], true), &[200]),
    }
}

/// Reads one response; its status and whether the connection stays open.
fn read_response(r: &mut BufReader<TcpStream>) -> std::io::Result<(u16, bool)> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(bad("connection closed before an answer"));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let (mut length, mut chunked, mut keep) = (0usize, false, true);
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end().to_ascii_lowercase();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.strip_prefix("content-length:") {
            length = v.trim().parse().map_err(|_| bad("content-length"))?;
        } else if l.starts_with("transfer-encoding:") && l.ends_with("chunked") {
            chunked = true;
        } else if l.starts_with("connection:") && l.ends_with("close") {
            keep = false;
        }
    }
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim(), 16).map_err(|_| bad("chunk size"))?;
            let mut chunk = vec![0; size + 2];
            r.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
        }
    } else {
        let mut body = vec![0; length];
        r.read_exact(&mut body)?;
    }
    Ok((status, keep))
}

fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// A kept-alive client: requests of every kind, each answer read and
/// checked, until `stop`.
pub(super) fn steady(addr: &str, t: &Tokens, k: usize, stop: &AtomicBool, counts: &Counts) {
    let mut n = k * 7;
    while !stop.load(Ordering::Relaxed) {
        let Ok(stream) = connect(addr) else {
            counts.errors.fetch_add(1, Ordering::Relaxed);
            thread::sleep(Duration::from_millis(50));
            continue;
        };
        let Ok(mut writer) = stream.try_clone() else {
            continue;
        };
        let mut reader = BufReader::new(stream);
        for _ in 0..PER_CONNECTION {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            n += 1;
            let (bytes, want) = steady_request(t, n);
            let answer = writer
                .write_all(&bytes)
                .and_then(|()| read_response(&mut reader));
            match answer {
                Ok((status, keep)) => {
                    counts.answered.fetch_add(1, Ordering::Relaxed);
                    if !want.contains(&status) {
                        let head = String::from_utf8_lossy(&bytes);
                        let head = head.lines().take(2).collect::<Vec<_>>().join(" ");
                        counts.unexpected(format!("{status} for {head} (kind {})", n % 9));
                    }
                    if !keep {
                        break;
                    }
                }
                Err(_) => {
                    counts.errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
}

/// A client that hangs up mid-request, in turn: while a fault delay holds
/// the stream, right after sending, half-way through the request line, or
/// after a first answer on the same connection, until `stop`.
pub(super) fn resetting(addr: &str, t: &Tokens, k: usize, stop: &AtomicBool, counts: &Counts) {
    let mut rng = Rng::new(k as u64 + 1);
    let delayed = request(
        "chaos",
        "/api/products",
        true,
        &[("test-scenario", "delay")],
    );
    let bearer = format!("Bearer {}", t.repeated);
    let plain = request(
        "product-service",
        "/api/products",
        true,
        &[("authorization", bearer.as_str())],
    );
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = connect(addr) else {
            thread::sleep(Duration::from_millis(50));
            continue;
        };
        let sent = match rng.below(4) {
            0 => stream.write_all(&delayed).map(|()| {
                thread::sleep(Duration::from_millis(5 + rng.below(400)));
            }),
            1 => stream.write_all(&plain),
            2 => {
                let half = plain.get(..plain.len() / 2).unwrap_or(&plain);
                stream.write_all(half).map(|()| {
                    thread::sleep(Duration::from_millis(1 + rng.below(20)));
                })
            }
            _ => stream.try_clone().and_then(|s| {
                stream.write_all(&plain)?;
                read_response(&mut BufReader::new(s))?;
                stream.write_all(&delayed)?;
                thread::sleep(Duration::from_millis(5 + rng.below(400)));
                Ok(())
            }),
        };
        if sent.is_ok() {
            counts.hang_ups.fetch_add(1, Ordering::Relaxed);
        }
        drop(stream);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_forged_token_differs_in_its_signature_only() {
        let t = Tokens::new("aaa.bbb.cdefgh".to_owned(), Vec::new());

        assert_eq!(t.forged, "aaa.bbb.cdQfgh");
    }

    #[test]
    fn steady_requests_carry_what_their_kind_needs() {
        let t = Tokens::new("h.p.sig".to_owned(), vec!["fresh".to_owned()]);
        let text = |n| String::from_utf8(steady_request(&t, n).0).unwrap();

        assert!(text(9).contains("user-type: premium"), "{}", text(9));
        assert!(text(10).contains("authorization: Bearer fresh"));
        assert!(!text(12).contains("x-tenant"));
        assert_eq!(steady_request(&t, 12).1, &[403]);
        assert!(text(13).starts_with("GET /api/products HTTP/1.1\r\nhost: chaos\r\n"));
    }
}
