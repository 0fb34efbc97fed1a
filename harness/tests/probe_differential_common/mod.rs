//! Shared by `probe_differential.rs` and `probe_differential_calls.rs`: runs the
//! probe module (`harness/probe`) in the wasmtime host and in real Envoy 1.40 and
//! collects what each side showed for identical requests.
//!
//! Each [`Diff`] starts one Envoy (`--concurrency 1`) with the probe loaded as
//! filters `a` (and `b`), plus one `ProductService` behind the default route and
//! one behind cluster `probe_upstream` (the target of the probe's http calls). The
//! harness side loads the same filters; its http calls are answered with what that
//! same `ProductService` returns for the call. Only values that legitimately differ
//! are normalised: `date`, `server`, `x-request-id`, and headers Envoy's *router*
//! adds (the harness has no router).
// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::time::Duration;

use meshwasm_harness::client::Client;
use meshwasm_harness::envoy::{Envoy, EnvoyRig, WasmFilter, product_cluster, wasm_path};
use meshwasm_harness::host::{Chain, FilterSpec, Host, Outcome, UpstreamResponse};
use meshwasm_harness::upstream::ProductService;

pub const AUTHORITY: &str = "probe.test";
pub const CALL_CLUSTER: &str = "probe_upstream";
pub const VM_ID: &str = "probe";

/// Response headers that differ for legitimate reasons (time, proxy identity,
/// router timing).
const VOLATILE_RESPONSE: [&str; 3] = ["date", "server", "x-envoy-upstream-service-time"];
/// Request headers Envoy's router adds after the filters ran.
const ROUTER_ADDED: [&str; 1] = ["x-envoy-expected-rq-timeout-ms"];

/// What one side showed for one request.
#[derive(Debug, PartialEq)]
pub struct Seen {
    pub status: u32,
    /// Response headers (lower-case, arrival order), volatile ones removed.
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// What the upstream got (`None`: the request never reached it).
    pub upstream: Option<Upstream>,
}

/// The request an upstream received.
#[derive(Debug, PartialEq)]
pub struct Upstream {
    pub method: String,
    pub path: String,
    /// As on the HTTP/1 wire: `host` first, then the rest in order.
    pub headers: Vec<(String, String)>,
}

impl Seen {
    /// When the upstream answered, its body and headers come from two different
    /// upstreams: keep only the status and the probes' own response headers.
    fn passed_through(mut self) -> Seen {
        if self.upstream.is_some() {
            self.body.clear();
            self.headers.retain(|(k, _)| k.starts_with("x-probe"));
        }
        self
    }

    /// Envoy's router adds `x-envoy-upstream-service-time` to http-call responses
    /// (the probe lists them in `call.headers`); the harness's calls are answered
    /// by the test, with no router in between. Drops that pair from the JSON body
    /// and fixes `content-length`.
    fn without_router_call_header(mut self) -> Seen {
        let needle = r#",["x-envoy-upstream-service-time",""#;
        let Some(at) = self.body.find(needle) else {
            return self;
        };
        let end = self.body[at + needle.len()..].find("\"]").unwrap() + at + needle.len() + 2;
        self.body.replace_range(at..end, "");
        for (k, v) in &mut self.headers {
            if k == "content-length" {
                *v = self.body.len().to_string();
            }
        }
        self
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn upstream_header(&self, name: &str) -> Option<&str> {
        let up = self.upstream.as_ref()?;
        up.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn normalise_upstream_headers(headers: Vec<(String, String)>) -> Vec<(String, String)> {
    headers
        .into_iter()
        .filter(|(k, _)| !ROUTER_ADDED.contains(&k.as_str()))
        .map(|(k, v)| match k.as_str() {
            "x-request-id" => (k, "present".to_owned()),
            _ => (k, v),
        })
        .collect()
}

/// The probe twice (`a`, `b`) or once, on both sides.
pub struct Diff {
    pub host: Host,
    pub chain: Chain,
    pub envoy: Envoy,
    pub service: ProductService,
    pub call_service: ProductService,
    client: Client,
}

impl Diff {
    pub fn start(names: &[&str]) -> Diff {
        let wasm = wasm_path("probe");
        assert!(
            wasm.exists(),
            "{} is missing: cargo build --release --target wasm32-wasip1 -p meshwasm-probe",
            wasm.display()
        );
        let config = |name: &str| format!(r#"{{"name": "{name}"}}"#);
        let specs: Vec<FilterSpec> = names
            .iter()
            .map(|n| {
                FilterSpec::new(n, &wasm)
                    .config(config(n))
                    .root_id(&format!("root_{n}"))
                    .vm_id(VM_ID)
            })
            .collect();
        let filters: Vec<WasmFilter> = names
            .iter()
            .map(|n| {
                WasmFilter::new(n, &wasm, config(n))
                    .root_id(&format!("root_{n}"))
                    .vm_id(VM_ID)
            })
            .collect();
        let service = ProductService::start("v1").unwrap();
        let call_service = ProductService::start("call").unwrap();
        let envoy = EnvoyRig::builder()
            .filters(filters)
            .cluster(&product_cluster("v1"), service.addr())
            .cluster(&product_cluster("v2"), service.addr())
            .cluster(CALL_CLUSTER, call_service.addr())
            .start()
            .unwrap();
        let mut host = Host::builder().cluster(CALL_CLUSTER).build().unwrap();
        let chain = host.load(&specs).unwrap();
        // Stand-in for the default route's upstream: the status and headers of
        // `GET /api/products` (the body carries a timestamp and is not compared).
        chain.set_upstream(|_| {
            UpstreamResponse::new(200)
                .header("content-type", "application/json")
                .header("service-version", "v1")
        });
        Diff {
            host,
            chain,
            envoy,
            service,
            call_service,
            client: Client::new().unwrap().with_timeout(Duration::from_secs(10)),
        }
    }

    /// Sends `GET path` with `headers` to both sides: `(harness, envoy)`.
    pub fn send(&mut self, path: &str, headers: &[(&str, &str)]) -> (Seen, Seen) {
        let harness = self.send_harness(path, headers);
        let envoy = self.send_envoy(path, headers);
        (harness, envoy)
    }

    fn send_envoy(&self, path: &str, headers: &[(&str, &str)]) -> Seen {
        let mut all = vec![("host", AUTHORITY)];
        all.extend_from_slice(headers);
        let hits = self.service.total_hits();
        let r = self.envoy.get(path, &all).unwrap();
        let upstream = (self.service.total_hits() > hits).then(|| {
            let last = self.service.last_request().unwrap();
            Upstream {
                method: last.method,
                path: last.path,
                headers: normalise_upstream_headers(last.headers),
            }
        });
        Seen {
            status: u32::from(r.status),
            headers: r
                .headers
                .into_iter()
                .filter(|(k, _)| !VOLATILE_RESPONSE.contains(&k.as_str()))
                .collect(),
            body: String::from_utf8_lossy(&r.body).into_owned(),
            upstream,
        }
        .passed_through()
        .without_router_call_header()
    }

    fn send_harness(&mut self, path: &str, headers: &[(&str, &str)]) -> Seen {
        let mut req = self
            .chain
            .request("GET", path)
            .authority(AUTHORITY)
            .scheme("http");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let stream = req.start().unwrap();
        // Answer every http call with what the cluster's ProductService says.
        while let Some(call) = stream.pending_calls().pop() {
            let url = format!(
                "{}{}",
                self.call_service.url(),
                call.header(":path").unwrap()
            );
            let authority = call.header(":authority").unwrap_or_default();
            let r = self.client.get(&url, &[("host", authority)]).unwrap();
            let mut response = UpstreamResponse::new(u32::from(r.status)).body(&r.body);
            for (k, v) in &r.headers {
                response = response.header(k, v);
            }
            self.host.respond_with(call.token, &response).unwrap();
        }
        let out = stream.finish().unwrap();
        harness_seen(&out)
    }
}

fn harness_seen(out: &Outcome) -> Seen {
    let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
    let upstream = out.upstream_request().map(|up| {
        let pseudo = |name: &str| up.header(name).unwrap_or_default().to_owned();
        // HTTP/1 upstream: `:authority` goes first as `host`, other pseudo-headers
        // go into the request line.
        let mut headers = vec![("host".to_owned(), pseudo(":authority"))];
        headers.extend(
            up.headers
                .iter()
                .filter(|(k, _)| !k.starts_with(':'))
                .map(|(k, v)| (k.clone(), text(v))),
        );
        Upstream {
            method: pseudo(":method"),
            path: pseudo(":path"),
            headers: normalise_upstream_headers(headers),
        }
    });
    Seen {
        status: out.status(),
        headers: out
            .response_headers()
            .iter()
            .filter(|(k, _)| !k.starts_with(':') && !VOLATILE_RESPONSE.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), text(v)))
            .collect(),
        body: out.body_text(),
        upstream,
    }
    .passed_through()
}

/// Asserts both sides agree, showing Envoy's log on failure.
pub fn assert_same(diff: &Diff, harness: &Seen, envoy: &Seen) {
    let wasm_log: Vec<String> = diff
        .envoy
        .log()
        .lines()
        .filter(|l| l.contains("[wasm]"))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        harness,
        envoy,
        "harness (left) and Envoy (right) differ; Envoy wasm log:\n{}",
        wasm_log.join("\n")
    );
}
