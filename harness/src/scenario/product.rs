//! The seed's product service v1/v2 emulated for the harness backend, with
//! the test controls of the real one ([`crate::upstream::ProductService`]):
//! request headers `x-test-delay-ms` / `x-test-status`, stateful
//! `fail_next(status, count)` and `set_delay`, hit counts. A delay is
//! reported, not slept: the emulated router ([`super::router`]) runs on
//! simulated time.

use std::collections::BTreeMap;

use crate::host::{UpstreamRequest, UpstreamResponse};
use crate::upstream::seed::{self, SeedRoute};

/// Controls and hits of one emulated service.
#[derive(Debug, Default, Clone)]
struct Service {
    hits: u64,
    fail_status: u16,
    fail_count: u64,
    delay_ms: u64,
}

/// The emulated product services, by version.
#[derive(Debug, Clone)]
pub struct Products {
    services: BTreeMap<String, Service>,
}

impl Products {
    /// Services `versions`, without failures, delay or hits.
    pub fn new(versions: &[&str]) -> Products {
        Products {
            services: versions
                .iter()
                .map(|v| ((*v).to_owned(), Service::default()))
                .collect(),
        }
    }

    fn service(&mut self, version: &str) -> anyhow::Result<&mut Service> {
        self.services
            .get_mut(version)
            .ok_or_else(|| anyhow::anyhow!("no product service {version:?}"))
    }

    /// Clears hits, failures and delays (`ProductService::reset`).
    pub fn reset(&mut self) {
        for s in self.services.values_mut() {
            *s = Service::default();
        }
    }

    /// The next `count` requests to `version` answer `status`.
    pub fn fail_next(&mut self, version: &str, status: u16, count: u64) -> anyhow::Result<()> {
        let s = self.service(version)?;
        s.fail_status = status;
        s.fail_count = count;
        Ok(())
    }

    /// Every later request to `version` takes `ms` (0 = off).
    pub fn set_delay(&mut self, version: &str, ms: u64) -> anyhow::Result<()> {
        self.service(version)?.delay_ms = ms;
        Ok(())
    }

    /// Requests per version so far.
    pub fn hits(&self) -> BTreeMap<String, u64> {
        self.services
            .iter()
            .map(|(v, s)| (v.clone(), s.hits))
            .collect()
    }

    /// One request arriving at `version` (which must exist): counts the hit
    /// and takes an injected failure on arrival, as the real service does.
    /// Returns how long the answer takes (ms) and the answer.
    pub fn serve(&mut self, version: &str, req: &UpstreamRequest) -> (u64, UpstreamResponse) {
        let number = |name: &str| req.header(name).and_then(|v| v.trim().parse::<u64>().ok());
        let Some(s) = self.services.get_mut(version) else {
            return (0, UpstreamResponse::new(503));
        };
        s.hits += 1;
        let injected = (s.fail_count > 0).then(|| {
            s.fail_count -= 1;
            s.fail_status
        });
        let delay = number("x-test-delay-ms").unwrap_or(s.delay_ms);
        let header_status = number("x-test-status").and_then(|n| u16::try_from(n).ok());
        let response = match header_status.or(injected) {
            Some(status) => injected_reply(version, status),
            None => seed_route(version, req),
        };
        (delay, response)
    }
}

/// `injected_reply` of the real service.
fn injected_reply(version: &str, status: u16) -> UpstreamResponse {
    let (status, body) = seed::injected(version, status);
    UpstreamResponse::new(u32::from(status))
        .header("content-type", "text/plain; charset=utf-8")
        .header("service-version", version)
        .body(body)
}

/// The seed's routes ([`seed::seed_route`], shared with the real service):
/// `/api/products` and `/health`, GET only; an unclean path is redirected
/// to its cleaned form. Only the products answer carries `service-version`,
/// as in the real service.
fn seed_route(version: &str, req: &UpstreamRequest) -> UpstreamResponse {
    let raw = req.path().unwrap_or("/");
    let (path, query) = match raw.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (raw, None),
    };
    let text = |status: u32, body: &str| {
        UpstreamResponse::new(status)
            .header("content-type", "text/plain; charset=utf-8")
            .body(body)
    };
    let is_get = req.method().unwrap_or("GET") == "GET";
    match seed::seed_route(is_get, path, query) {
        SeedRoute::Redirect(location) => UpstreamResponse::new(301).header("location", location),
        SeedRoute::Products => UpstreamResponse::new(200)
            .header("content-type", "application/json")
            .header("service-version", version)
            .body(format!("{{\"version\":\"{version}\"}}\n")),
        SeedRoute::Health => text(200, "OK"),
        SeedRoute::MethodNotAllowed => UpstreamResponse::new(405),
        SeedRoute::NotFound => {
            text(404, "404 page not found\n").header("x-content-type-options", "nosniff")
        }
    }
}
