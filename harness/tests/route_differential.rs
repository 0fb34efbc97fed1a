//! The route filter against native Envoy routes (issue 11): each
//! `testdata/differential/*.yaml` document's VirtualServices run in one
//! Envoy 1.40 as the meshwasm route filter and in another as the native
//! routes Istio's pilot would give a sidecar (`native_routes`); seeded
//! edge-case requests go to both, and the rule each picked (the `x-rule`
//! header the upstream saw) and the status must agree.
//!
//! `MESHWASM_DIFF_REQUESTS` (requests per file, default 300; `cargo xtask
//! route-diff` sends 4000), `MESHWASM_DIFF_SEED` (default 1),
//! `MESHWASM_DIFF_FILES` (only files whose name contains it),
//! `MESHWASM_ROUTE_WASM` (another build of the route filter).
//!
//! Every disagreement is printed with a minimal request (shrunk while both
//! Envoys still answer as they did). Deliberate differences go in
//! [`EXCEPTIONS`], each with its reason; it is empty: meshwasm routes as
//! native Envoy does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use meshwasm::config::{Document, Kind};
use meshwasm_harness::envoy::{
    Envoy, EnvoyError, EnvoyRig, WasmFilter, free_port, product_cluster, wasm_path,
};
use meshwasm_harness::native_routes::requests::{
    DiffRequest, RequestGenerator, Samples, Vocabulary,
};
use meshwasm_harness::native_routes::wire::{Reply, Sender};
use meshwasm_harness::native_routes::{
    PASSTHROUGH, RULE_HEADER, UPSTREAM_HOST, instrument, route_configuration, with_match_port,
};
use meshwasm_harness::scenario::testdata;
use serde_json::Value;

/// A deliberate difference from native Envoy: requests of `file` for which
/// `applies` holds are not counted. None today.
struct Exception {
    file: &'static str,
    why: &'static str,
    applies: fn(&DiffRequest, &Outcome, &Outcome) -> bool,
}

const EXCEPTIONS: &[Exception] = &[];

/// What a client saw: the rule the upstream was sent by, a status from
/// Envoy itself (404 no route, 400 codec, …), or no response.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Rule(String),
    Status(u16),
    NoResponse,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Rule(r) => write!(f, "rule {r}"),
            Outcome::Status(s) => write!(f, "{s} from Envoy"),
            Outcome::NoResponse => write!(f, "no response"),
        }
    }
}

fn outcome(reply: Result<Reply, String>) -> Outcome {
    match reply {
        Ok(r) if r.header(ECHO_HEADER).is_some() => {
            let rule = r.header(ECHO_RULE).unwrap_or_default();
            // A request the route filter passes through carries no marker.
            Outcome::Rule(if rule == "-" {
                PASSTHROUGH.to_owned()
            } else {
                rule
            })
        }
        Ok(r) => Outcome::Status(r.status),
        Err(_) => Outcome::NoResponse,
    }
}

// ---------------------------------------------------------------- upstream

const ECHO_HEADER: &str = "x-diff-echo";
const ECHO_RULE: &str = "x-diff-rule";

/// An HTTP/1.1 upstream answering `200` with the request's `x-rule` values
/// in `x-diff-rule` (`-` for none); stops when dropped.
struct Echo {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Echo {
    fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let (stream, _) = tokio::select! {
                        _ = &mut rx => return,
                        accepted = listener.accept() => match accepted {
                            Ok(a) => a,
                            Err(_) => continue,
                        },
                    };
                    tokio::spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service_fn(echo))
                            .await;
                    });
                }
            });
        });
        Echo {
            addr,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }
}

async fn echo(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let rules: Vec<String> = req
        .headers()
        .get_all(RULE_HEADER)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    let rule = if rules.is_empty() {
        "-".to_owned()
    } else {
        rules.join(",")
    };
    let mut resp = Response::new(Full::new(Bytes::new()));
    resp.headers_mut()
        .insert(ECHO_HEADER, hyper::header::HeaderValue::from_static("1"));
    if let Ok(v) = hyper::header::HeaderValue::from_str(&rule) {
        resp.headers_mut().insert(ECHO_RULE, v);
    }
    Ok(resp)
}

impl Drop for Echo {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ------------------------------------------------------------------ files

/// A test file: a configuration document in YAML plus `samples`.
struct Case {
    name: String,
    document: Value,
    samples: Samples,
}

fn cases() -> Vec<Case> {
    let filter = std::env::var("MESHWASM_DIFF_FILES").unwrap_or_default();
    let dir = testdata().join("differential");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "too few files in {}", dir.display());
    files
        .iter()
        .map(|p| load(p))
        .filter(|c| c.name.contains(&filter))
        .collect()
}

fn load(path: &Path) -> Case {
    let text = std::fs::read_to_string(path).unwrap();
    let mut document: Value = serde_norway::from_str(&text).unwrap();
    let samples = document
        .as_object_mut()
        .and_then(|o| o.remove("samples"))
        .map(|s| serde_json::from_value(s).unwrap())
        .unwrap_or_default();
    Case {
        name: path.file_name().unwrap().to_string_lossy().into_owned(),
        document,
        samples,
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
        })
        .unwrap_or(default)
}

fn route_wasm() -> PathBuf {
    let path = std::env::var_os("MESHWASM_ROUTE_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| wasm_path("route"));
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask build`",
        path.display()
    );
    path
}

// ------------------------------------------------------------------- run

/// The two Envoys of one file.
struct Pair {
    meshwasm: Sender,
    native: Sender,
    _envoys: (Envoy, Envoy),
}

impl Pair {
    fn send(&mut self, req: &DiffRequest) -> (Outcome, Outcome) {
        (
            outcome(self.meshwasm.send(req)),
            outcome(self.native.send(req)),
        )
    }
}

/// One kind of disagreement: the two outcomes, how often, for which hosts,
/// a minimal request.
struct Finding {
    file: String,
    /// The route filter refused the file's configuration (its log line).
    refused: Option<String>,
    meshwasm: Outcome,
    native: Outcome,
    count: usize,
    hosts: BTreeSet<String>,
    example: DiffRequest,
}

/// What one file's requests did where both Envoys agreed.
#[derive(Default)]
struct Coverage {
    sent: u64,
    h2: u64,
    agreed: BTreeMap<Outcome, usize>,
}

impl std::fmt::Display for Coverage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} requests ({} h2); agreed:", self.sent, self.h2)?;
        for (o, n) in &self.agreed {
            match o {
                Outcome::Rule(r) => write!(f, " {r}={n}")?,
                Outcome::Status(s) => write!(f, " {s}={n}")?,
                Outcome::NoResponse => write!(f, " none={n}")?,
            }
        }
        Ok(())
    }
}

/// The host a request names (an absolute-form target's, else `Host`),
/// lower-case, without port or trailing dot.
fn host_of(req: &DiffRequest) -> String {
    let url_host = req
        .target
        .split_once("://")
        .map(|(_, rest)| rest.split('/').next().unwrap_or_default());
    let h = url_host
        .or(req.host.as_deref())
        .unwrap_or("(none)")
        .to_ascii_lowercase();
    let h = match h.rsplit_once(':') {
        Some((name, _)) if !name.contains(':') => name.to_owned(),
        _ => h,
    };
    h.trim_end_matches('.').to_owned()
}

const SENDER_TIMEOUT: Duration = Duration::from_secs(10);
/// Kinds of disagreement shrunk per file (the rest are only counted).
const SHRUNK_PER_FILE: usize = 40;

fn start(case: &Case, echo: SocketAddr) -> Result<Pair, String> {
    let instrumented = instrument(&case.document);
    let doc = Document::parse(instrumented.to_string().as_bytes(), &[Kind::VirtualService])
        .unwrap_or_else(|e| panic!("{}: {e}", case.name));
    let port = doc.envoy.default_port;
    let upstream = format!("outbound|{port}||{UPSTREAM_HOST}");
    let passthrough = product_cluster("v1");
    let native_routes = route_configuration(&doc, port, &passthrough)
        .unwrap_or_else(|e| panic!("{}: {e}", case.name));
    let native = EnvoyRig::builder()
        .filters(vec![])
        .route_config(native_routes)
        .cluster(&upstream, echo)
        .cluster(&passthrough, echo)
        .start()
        .unwrap_or_else(|e| panic!("native Envoy for {}: {e}", case.name));
    let listener = loop {
        let p = free_port().unwrap();
        if ![80, 8080, 9090].contains(&p) {
            break p;
        }
    };
    let mut doc_json = instrumented.clone();
    with_match_port(&mut doc_json, port, u32::from(listener));
    let filter = WasmFilter::new("meshwasm.route", route_wasm(), doc_json.to_string());
    let meshwasm = match EnvoyRig::builder()
        .filters(vec![filter])
        .listener_port(listener)
        .cluster(&upstream, echo)
        .cluster(&passthrough, echo)
        .start()
    {
        Ok(e) => e,
        Err(EnvoyError::Refused { log }) => {
            let why = log.lines().find(|l| l.contains("invalid configuration"));
            return Err(why.unwrap_or(&log).to_owned());
        }
        Err(e) => panic!("meshwasm Envoy for {}: {e}", case.name),
    };
    let addr = |e: &Envoy| SocketAddr::from(([127, 0, 0, 1], e.port()));
    Ok(Pair {
        meshwasm: Sender::new(addr(&meshwasm), SENDER_TIMEOUT).unwrap(),
        native: Sender::new(addr(&native), SENDER_TIMEOUT).unwrap(),
        _envoys: (meshwasm, native),
    })
}

/// The simplest request on which both Envoys still answer `want`.
fn shrink(pair: &mut Pair, req: &DiffRequest, want: &(Outcome, Outcome)) -> DiffRequest {
    let mut best = req.clone();
    let mut tried = BTreeSet::from([best.to_string()]);
    'steps: for _ in 0..30 {
        for candidate in best.simpler() {
            if tried.insert(candidate.to_string()) && pair.send(&candidate) == *want {
                best = candidate;
                continue 'steps;
            }
        }
        break;
    }
    best
}

fn run_case(case: &Case, echo: SocketAddr, requests: u64, seed: u64) -> (Coverage, Vec<Finding>) {
    let mut cover = Coverage::default();
    let mut pair = match start(case, echo) {
        Ok(p) => p,
        Err(why) => {
            let finding = Finding {
                file: case.name.clone(),
                refused: Some(why),
                meshwasm: Outcome::NoResponse,
                native: Outcome::NoResponse,
                count: 1,
                hosts: BTreeSet::new(),
                example: DiffRequest::get("-", "/"),
            };
            return (cover, vec![finding]);
        }
    };
    let doc = Document::parse(
        case.document.to_string().as_bytes(),
        &[Kind::VirtualService],
    )
    .unwrap_or_else(|e| panic!("{}: {e}", case.name));
    let mut generator = RequestGenerator::new(seed, Vocabulary::new(&doc, &case.samples));
    type Kinds = BTreeMap<(Outcome, Outcome), (usize, BTreeSet<String>, DiffRequest)>;
    let mut kinds: Kinds = BTreeMap::new();
    for _ in 0..requests {
        let req = generator.request();
        cover.sent += 1;
        cover.h2 += u64::from(req.http2);
        let (m, n) = pair.send(&req);
        if m == n {
            *cover.agreed.entry(m).or_insert(0) += 1;
            continue;
        }
        let excused = EXCEPTIONS
            .iter()
            .any(|x| x.file == case.name && (x.applies)(&req, &m, &n));
        if !excused {
            let host = host_of(&req);
            let kind = kinds
                .entry((m, n))
                .or_insert_with(|| (0, BTreeSet::new(), req));
            kind.0 += 1;
            kind.1.insert(host);
        }
    }
    let findings = kinds
        .into_iter()
        .enumerate()
        .map(|(i, ((m, n), (count, hosts, req)))| {
            let example = if i < SHRUNK_PER_FILE {
                shrink(&mut pair, &req, &(m.clone(), n.clone()))
            } else {
                req
            };
            Finding {
                file: case.name.clone(),
                refused: None,
                meshwasm: m,
                native: n,
                count,
                hosts,
                example,
            }
        })
        .collect();
    (cover, findings)
}

#[test]
fn the_route_filter_picks_the_rule_native_envoy_picks() {
    for x in EXCEPTIONS {
        assert!(
            !x.why.is_empty(),
            "exception for {} without a reason",
            x.file
        );
    }
    let requests = env_number("MESHWASM_DIFF_REQUESTS", 300);
    let seed = env_number("MESHWASM_DIFF_SEED", 1);
    let echo = Echo::start();
    #[allow(clippy::disallowed_methods)] // reason: wall time of a real-Envoy test
    let started = Instant::now();
    let mut sent = 0;
    let mut findings = Vec::new();
    let mut coverage = String::new();
    for case in cases() {
        let (cover, f) = run_case(&case, echo.addr, requests, seed);
        sent += cover.sent;
        coverage.push_str(&format!("  {}: {cover}\n", case.name));
        findings.extend(f);
    }
    let disagreeing: usize = findings.iter().map(|f| f.count).sum();
    let mut report = format!(
        "route differential, seed {seed}: {sent} requests to each Envoy, {disagreeing} \
         disagreements in {} kinds ({:.1} s)\n{coverage}",
        findings.len(),
        started.elapsed().as_secs_f64()
    );
    for f in &findings {
        if let Some(why) = &f.refused {
            report.push_str(&format!(
                "[{}] the route filter refused it: {why}\n",
                f.file
            ));
            continue;
        }
        let hosts: Vec<&str> = f.hosts.iter().map(String::as_str).collect();
        report.push_str(&format!(
            "[{}] {}x  meshwasm: {}, native: {}  (hosts: {})\n    {}\n",
            f.file,
            f.count,
            f.meshwasm,
            f.native,
            hosts.join(", "),
            f.example
        ));
    }
    eprintln!("{report}");
    assert!(findings.is_empty(), "{report}");
}
