//! Request handling of the product service: the seed's routes (gorilla/mux
//! semantics) and the `/__test/` controls.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use super::seed::{self, SeedRoute};
use super::{Controls, RecordedRequest, Shared};

type Reply = Response<Full<Bytes>>;

/// The seed's JSON body (`Response` in canary-deployment.go); `features` is
/// `omitempty`.
#[derive(serde::Serialize)]
struct Product<'a> {
    version: &'a str,
    message: &'a str,
    timestamp: String,
    #[serde(skip_serializing_if = "no_features")]
    features: &'a [&'a str],
}

fn no_features(features: &&[&str]) -> bool {
    features.is_empty()
}

pub(super) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Reply, Infallible> {
    let path = req.uri().path().to_owned();
    if let Some(control) = path.strip_prefix("/__test/")
        && control != "echo"
    {
        return Ok(handle_control(&shared, control, &req));
    }
    let recorded = record(&req);
    let header_delay = header_u64(&req, "x-test-delay-ms");
    let header_status = header_u64(&req, "x-test-status").and_then(|s| u16::try_from(s).ok());
    let (delay, injected) = {
        let mut c = shared.lock();
        *c.hits.entry(path.clone()).or_insert(0) += 1;
        c.last = Some(recorded.clone());
        let injected = take_failure(&mut c);
        (c.delay, injected)
    };
    let delay = header_delay.map_or(delay, Duration::from_millis);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(status) = header_status.or(injected) {
        return Ok(injected_reply(&shared.version, status));
    }
    if path == "/__test/echo" {
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let json = serde_json::json!({
            "method": recorded.method,
            "path": recorded.path,
            "headers": recorded.headers,
            "body": String::from_utf8_lossy(&body),
            "version": shared.version,
        });
        return Ok(json_reply(StatusCode::OK, &json));
    }
    Ok(seed_route(
        &shared.version,
        req.method(),
        &path,
        req.uri().query(),
    ))
}

/// The seed service's mux: `/api/products` and `/health`, GET only.
fn seed_route(version: &str, method: &Method, path: &str, query: Option<&str>) -> Reply {
    match seed::seed_route(method == Method::GET, path, query) {
        SeedRoute::Redirect(location) => {
            plain(StatusCode::MOVED_PERMANENTLY, "").map(|r| with_header(r, "location", &location))
        }
        SeedRoute::Products => products(version),
        SeedRoute::Health => plain(StatusCode::OK, "OK"),
        SeedRoute::MethodNotAllowed => Response::builder()
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .body(Full::default()),
        SeedRoute::NotFound => plain(StatusCode::NOT_FOUND, "404 page not found\n")
            .map(|r| with_header(r, "x-content-type-options", "nosniff")),
    }
    .unwrap_or_else(|_| Response::new(Full::default()))
}

fn products(version: &str) -> Result<Reply, hyper::http::Error> {
    let (message, features): (&str, &[&str]) = match version {
        "v1" => (
            "Product service v1 - stable version",
            &["basic-catalog", "search"],
        ),
        "v2" => (
            "Product service v2 - canary version",
            &["basic-catalog", "search", "recommendations", "reviews"],
        ),
        _ => ("", &[]),
    };
    let body = Product {
        version: if message.is_empty() { "" } else { version },
        message,
        timestamp: rfc3339_now(),
        features,
    };
    let mut json = serde_json::to_vec(&body).unwrap_or_default();
    json.push(b'\n');
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .header("service-version", version)
        .body(Full::new(Bytes::from(json)))
}

fn handle_control(shared: &Shared, control: &str, req: &Request<Incoming>) -> Reply {
    let query = req.uri().query().unwrap_or("");
    let post = req.method() == Method::POST;
    match (control, post) {
        ("fail", true) => {
            let status = query_u64(query, "status")
                .and_then(|s| u16::try_from(s).ok())
                .unwrap_or(503);
            let count = query_u64(query, "count").unwrap_or(1);
            let mut c = shared.lock();
            c.fail_status = status;
            c.fail_count = count;
            json_reply(
                StatusCode::OK,
                &serde_json::json!({"status": status, "count": count}),
            )
        }
        ("delay", true) => {
            let ms = query_u64(query, "ms").unwrap_or(0);
            shared.lock().delay = Duration::from_millis(ms);
            json_reply(StatusCode::OK, &serde_json::json!({"ms": ms}))
        }
        ("reset", true) => {
            *shared.lock() = Controls::default();
            json_reply(StatusCode::OK, &serde_json::json!({}))
        }
        ("hits", false) => json_reply(StatusCode::OK, &serde_json::json!(shared.lock().hits)),
        ("last", false) => json_reply(StatusCode::OK, &serde_json::json!(shared.lock().last)),
        ("fail" | "delay" | "reset" | "hits" | "last", _) => {
            plain(StatusCode::METHOD_NOT_ALLOWED, "")
                .unwrap_or_else(|_| Response::new(Full::default()))
        }
        _ => plain(StatusCode::NOT_FOUND, "404 page not found\n")
            .unwrap_or_else(|_| Response::new(Full::default())),
    }
}

fn take_failure(c: &mut Controls) -> Option<u16> {
    if c.fail_count == 0 {
        return None;
    }
    c.fail_count -= 1;
    Some(c.fail_status)
}

fn injected_reply(version: &str, status: u16) -> Reply {
    let (status, body) = seed::injected(version, status);
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .header("service-version", version)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::default()))
}

pub(super) fn record(req: &Request<Incoming>) -> RecordedRequest {
    RecordedRequest {
        method: req.method().to_string(),
        path: req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().path().to_owned(), |pq| pq.as_str().to_owned()),
        headers: req
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
    }
}

fn header_u64(req: &Request<Incoming>, name: &str) -> Option<u64> {
    req.headers().get(name)?.to_str().ok()?.trim().parse().ok()
}

fn query_u64(query: &str, key: &str) -> Option<u64> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
}

fn plain(status: StatusCode, body: &'static str) -> Result<Reply, hyper::http::Error> {
    let mut b = Response::builder().status(status);
    if !body.is_empty() {
        b = b.header("content-type", "text/plain; charset=utf-8");
    }
    b.body(Full::new(Bytes::from_static(body.as_bytes())))
}

fn with_header(mut r: Reply, name: &'static str, value: &str) -> Reply {
    if let Ok(v) = hyper::header::HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
    r
}

fn json_reply(status: StatusCode, value: &serde_json::Value) -> Reply {
    let mut body = serde_json::to_vec(value).unwrap_or_default();
    body.push(b'\n');
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::default()))
}

/// Now as RFC 3339 with nanoseconds in UTC, the way Go's `time.Time`
/// marshals (`RFC3339Nano`: trailing zeros of the fraction trimmed).
fn rfc3339_now() -> String {
    #[allow(clippy::disallowed_methods)]
    // reason: a real upstream stamps responses with the OS clock, as the seed does
    let now = std::time::SystemTime::now();
    let since = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format_rfc3339(since.as_secs(), since.subsec_nanos())
}

/// Formats Unix seconds + nanoseconds as RFC 3339 UTC (`…T…[.fffffffff]Z`).
pub(super) fn format_rfc3339(secs: u64, nanos: u32) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let mut s = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    );
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Howard Hinnant's `civil_from_days` for days since 1970-01-01 (≥ 0).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_as_go_rfc3339nano() {
        assert_eq!(format_rfc3339(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_rfc3339(951_782_400, 120_000_000),
            "2000-02-29T00:00:00.12Z"
        );
        assert_eq!(
            format_rfc3339(1_735_689_599, 1),
            "2024-12-31T23:59:59.000000001Z"
        );
    }
}
