//! The fault filter chained before the route filter in real Envoy 1.40, on
//! one worker, where a scenario file cannot say it: hundreds of concurrent
//! delayed streams paused and resumed from the VM's tick while undelayed
//! streams pass, clients hanging up during a delay, the seed's 50 % abort
//! over 2,000 requests, and `maxActiveFaults`. Expected values come from
//! SPEC.md §fault injection (body `fault filter abort`, stats as Envoy's
//! fault filter) and the seed's `fault-injection-*.yaml`, whose `fixedDelay`
//! of 5 s is shortened here so the file runs in seconds.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::disallowed_methods, // reason: a real Envoy runs in wall time; requests are timed with Instant
    missing_docs
)]

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use meshwasm_harness::envoy::{
    Envoy, EnvoyRig, WasmFilter, product_cluster, static_cluster, wasm_path,
};
use meshwasm_harness::scenario::{config_document, istio_resources, testdata};
use meshwasm_harness::upstream::ProductService;
use serde_json::{Value, json};

/// The seed's delay, shortened: long enough that a few hundred requests are
/// all paused at once on a loaded 2-core machine, short enough for a test.
const DELAY: Duration = Duration::from_millis(500);
/// How much longer than the delay a delayed request may take.
const DELAY_SLACK: Duration = Duration::from_millis(1500);
/// The most an undelayed request may take, well under the delay.
const FAST: Duration = Duration::from_millis(200);

const DELAYED: (&str, &str) = ("test-scenario", "delay");
const ERRORED: (&str, &str) = ("test-scenario", "error");

const ACTIVE_FAULTS: &str = "wasmcustom.meshwasm.fault.active_faults";
const DELAYS_INJECTED: &str = "wasmcustom.meshwasm.fault.delays_injected";
const ABORTS_INJECTED: &str = "wasmcustom.meshwasm.fault.aborts_injected";
const FAULTS_OVERFLOW: &str = "wasmcustom.meshwasm.fault.faults_overflow";

/// What a trapped or failed wasm VM leaves in Envoy's logs (SPEC.md
/// §proxy-wasm ABI G).
const TRAP_MARKS: [&str; 3] = ["panicked", "wasm_fail_stream", "Uncaught"];

/// The configuration document of the seed file `fault_file` (under
/// `testdata/istio/`) with every `fixedDelay` set to `delay`, plus the
/// seed's DestinationRule (subsets v1, v2) and the `envoy` knobs.
fn seed_config(fault_file: &str, delay: Option<Duration>, envoy: Option<Value>) -> String {
    let istio = testdata().join("istio");
    let files = [
        istio.join(fault_file),
        istio.join("destination-rule-example.yaml"),
    ];
    let mut resources = istio_resources(&files).unwrap();
    if let Some(delay) = delay {
        let mut rewritten = 0;
        for rule in resources
            .iter_mut()
            .filter_map(|r| r.pointer_mut("/spec/http")?.as_array_mut())
            .flatten()
        {
            if let Some(d) = rule.pointer_mut("/fault/delay/fixedDelay") {
                *d = json!(format!("{}ms", delay.as_millis()));
                rewritten += 1;
            }
        }
        assert_eq!(rewritten, 1, "{fault_file} has one delay rule");
    }
    serde_json::to_string(&config_document(resources, None, envoy)).unwrap()
}

/// A STATIC cluster `name` at `addr` whose circuit breakers never trip.
fn unlimited_cluster(name: &str, addr: SocketAddr) -> Value {
    let mut cluster = static_cluster(name, addr);
    cluster["circuit_breakers"] = json!({"thresholds": [{
        "max_connections": 100_000, "max_pending_requests": 100_000,
        "max_requests": 100_000}]});
    cluster
}

/// The seed's resources without the DestinationRule's connection limits.
fn without_connection_limits(config: &str) -> String {
    let mut doc: Value = serde_json::from_str(config).unwrap();
    let mut removed = 0;
    for r in doc["resources"].as_array_mut().unwrap() {
        if let Some(policy) = r
            .pointer_mut("/spec/trafficPolicy")
            .and_then(Value::as_object_mut)
        {
            removed += usize::from(policy.remove("connectionPool").is_some());
        }
    }
    assert_eq!(removed, 1, "the seed DestinationRule has a connectionPool");
    doc.to_string()
}

/// Envoy on one worker with the fault filter chained before the route
/// filter, both on `config`, in front of product-service v1 and v2.
/// Fields drop in order: Envoy first, then the upstreams.
struct Rig {
    envoy: Envoy,
    v1: ProductService,
    v2: ProductService,
}

impl Rig {
    fn start(config: &str) -> Rig {
        Rig::start_with(config, false)
    }

    /// With `unlimited`, the product clusters have no connection limits
    /// (envoy.yaml's carry the seed DestinationRule's: 100 connections, 50
    /// pending requests, which a burst of 200 requests to a cold cluster
    /// overflows, as it should).
    fn start_with(config: &str, unlimited: bool) -> Rig {
        let filters: Vec<WasmFilter> = ["fault", "route"]
            .iter()
            .map(|f| {
                let wasm = wasm_path(f);
                assert!(
                    wasm.exists(),
                    "{} is missing: run `cargo xtask build`",
                    wasm.display()
                );
                WasmFilter::new(&format!("meshwasm.{f}"), wasm, config)
            })
            .collect();
        let v1 = ProductService::start("v1").unwrap();
        let v2 = ProductService::start("v2").unwrap();
        let mut builder = EnvoyRig::builder().filters(filters);
        for (subset, addr) in [("v1", v1.addr()), ("v2", v2.addr())] {
            let name = product_cluster(subset);
            builder = if unlimited {
                builder.raw_cluster(unlimited_cluster(&name, addr))
            } else {
                builder.cluster(&name, addr)
            };
        }
        let envoy = builder.start().unwrap_or_else(|e| panic!("{e}"));
        Rig { envoy, v1, v2 }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.envoy.port()))
    }

    /// Counter or gauge `name` from admin `/stats`.
    fn stat(&self, name: &str) -> u64 {
        self.envoy.counter(name).unwrap_or_else(|| {
            let stats = self.envoy.stats();
            let ours: Vec<&str> = stats.lines().filter(|l| l.contains("wasm")).collect();
            panic!(
                "no stat {name} in /stats; its wasm lines:\n{}",
                ours.join("\n")
            )
        })
    }

    /// Polls `name` until it equals `want` (at most `within`); its last value.
    fn await_stat(&self, name: &str, want: u64, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            let value = self.stat(name);
            if value == want || Instant::now() >= deadline {
                return value;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Envoy's log and access log, for failure messages.
    fn logs(&self) -> String {
        format!(
            "--- envoy log ---\n{}\n--- access log ---\n{}",
            self.envoy.log(),
            self.envoy.access_log()
        )
    }

    /// Fails when a wasm VM trapped or failed a stream.
    fn assert_no_trap(&self) {
        let logs = self.logs();
        for mark in TRAP_MARKS {
            assert!(!logs.contains(mark), "{mark:?} in Envoy's logs:\n{logs}");
        }
    }
}

/// One response read off a raw HTTP/1.1 connection.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// From before connecting to the connection's end.
    elapsed: Duration,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn version(&self) -> Option<&str> {
        self.header("service-version")
    }
}

/// `GET /api/products` for host `product-service` with `headers`, on a
/// connection of its own (opened now).
fn open(addr: SocketAddr, headers: &[(&str, &str)], close: bool) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(DELAY + DELAY_SLACK + Duration::from_secs(10)))
        .unwrap();
    let mut head = String::from("GET /api/products HTTP/1.1\r\nhost: product-service\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if close {
        head.push_str("connection: close\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream
}

/// Sends one request on a fresh connection and reads the whole response.
fn get(addr: SocketAddr, headers: &[(&str, &str)]) -> Reply {
    let start = Instant::now();
    let mut stream = open(addr, headers, true);
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    parse(&raw, start.elapsed())
}

/// `get` on `n` threads at once; the replies in thread order.
fn get_concurrently(addr: SocketAddr, n: usize, header: (&str, &str)) -> Vec<Reply> {
    let (name, value) = (header.0.to_owned(), header.1.to_owned());
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let (name, value) = (name.clone(), value.clone());
            thread::spawn(move || get(addr, &[(&name, &value)]))
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// Parses a `connection: close` HTTP/1.1 response (content-length or
/// chunked body).
fn parse(raw: &[u8], elapsed: Duration) -> Reply {
    let text = String::from_utf8_lossy(raw);
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete response head in {text:?}"));
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[end + 4..];
    let mut reply = Reply {
        status,
        headers,
        body: Vec::new(),
        elapsed,
    };
    reply.body = if reply.header("transfer-encoding") == Some("chunked") {
        dechunk(rest)
    } else {
        let len = reply
            .header("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(rest.len());
        rest[..len.min(rest.len())].to_vec()
    };
    reply
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&rest[..eol]);
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        let start = eol + 2;
        body.extend_from_slice(&rest[start..start + size]);
        rest = &rest[start + size + 2..];
    }
    body
}

#[test]
fn two_hundred_delayed_requests_on_one_worker_wait_the_delay_while_undelayed_ones_pass_at_once() {
    // Arrange: all the delayed requests reach v1 at the same instant when
    // their delay ends, a burst the seed DestinationRule's connection limits
    // (which the route filter and envoy.yaml's clusters enforce) rightly
    // refuse in part; this test is about the delays, so it has none.
    let config = seed_config("fault-injection-delay.yaml", Some(DELAY), None);
    let rig = Rig::start_with(&without_connection_limits(&config), true);
    let addr = rig.addr();
    let n = 200;

    // Act: 200 delayed requests at once; once all are paused, 20 undelayed
    // ones, one after the other, on the same (only) worker.
    let delayed = thread::spawn(move || get_concurrently(addr, n, DELAYED));
    let paused = rig.await_stat(ACTIVE_FAULTS, n as u64, DELAY);
    let undelayed: Vec<Reply> = (0..20).map(|_| get(addr, &[])).collect();
    let still_paused = rig.stat(ACTIVE_FAULTS);
    let delayed = delayed.join().unwrap();

    // Assert
    let logs = || rig.logs();
    assert_eq!(paused, n as u64, "all delayed requests paused at once");
    assert_eq!(
        still_paused, n as u64,
        "the undelayed requests completed while all delayed ones were paused"
    );
    for r in &undelayed {
        assert_eq!((r.status, r.version()), (200, Some("v1")), "{r:?}");
        assert!(
            r.elapsed < FAST,
            "an undelayed request took {:?}",
            r.elapsed
        );
    }
    for (i, r) in delayed.iter().enumerate() {
        assert_eq!(
            (r.status, r.version()),
            (200, Some("v1")),
            "delayed #{i}: {r:?}"
        );
        assert!(
            r.elapsed >= DELAY && r.elapsed < DELAY + DELAY_SLACK,
            "delayed #{i} took {:?}, expected {DELAY:?} to {:?}\n{}",
            r.elapsed,
            DELAY + DELAY_SLACK,
            logs()
        );
    }
    assert_eq!(rig.await_stat(ACTIVE_FAULTS, 0, Duration::from_secs(2)), 0);
    assert_eq!(rig.stat(DELAYS_INJECTED), n as u64);
    assert_eq!(rig.stat(ABORTS_INJECTED), 0);
    assert_eq!((rig.v1.hits(), rig.v2.hits()), (n as u64 + 20, 0));
    rig.assert_no_trap();
    let slowest = delayed.iter().map(|r| r.elapsed).max().unwrap();
    let slowest_fast = undelayed.iter().map(|r| r.elapsed).max().unwrap();
    eprintln!("delayed: slowest {slowest:?}; undelayed: slowest {slowest_fast:?}");
}

#[test]
fn clients_hanging_up_during_a_delay_release_their_faults_and_never_reach_the_upstream() {
    // Arrange
    let rig = Rig::start(&seed_config(
        "fault-injection-delay.yaml",
        Some(DELAY),
        None,
    ));
    let addr = rig.addr();
    let n = 50;
    let opened = Instant::now();
    let streams: Vec<TcpStream> = (0..n).map(|_| open(addr, &[DELAYED], false)).collect();
    let paused = rig.await_stat(ACTIVE_FAULTS, n, DELAY / 2);

    // Act: every client hangs up while its request is paused; once the
    // delay has passed, one more delayed and one undelayed request.
    for s in &streams {
        s.shutdown(Shutdown::Both).unwrap();
    }
    drop(streams);
    let hung_up = Instant::now();
    let released = rig.await_stat(ACTIVE_FAULTS, 0, DELAY / 2);
    let released_after = hung_up.elapsed();
    thread::sleep(
        (opened + DELAY + Duration::from_millis(500)).saturating_duration_since(Instant::now()),
    );
    let active_after_delay = rig.stat(ACTIVE_FAULTS);
    let delays_after_delay = rig.stat(DELAYS_INJECTED);
    let upstream_hits = rig.v1.total_hits() + rig.v2.total_hits();
    let access_log = rig.envoy.access_log();
    let later = [get(addr, &[DELAYED]), get(addr, &[])];

    // Assert
    assert_eq!(paused, n, "all {n} requests were paused before the hang-up");
    assert_eq!(
        released,
        0,
        "active faults {DELAY:?}/2 after the hang-up\n{}",
        rig.logs()
    );
    assert_eq!(
        active_after_delay, 0,
        "active faults after the delay passed"
    );
    assert_eq!(delays_after_delay, n);
    assert_eq!(upstream_hits, 0, "hung-up requests reached the upstream");
    // Envoy logs each as status 0, flag DC, details
    // downstream_remote_disconnect (cluster: envoy.yaml's fallback route,
    // since the route filter never ran).
    let hung: Vec<&str> = access_log
        .lines()
        .filter(|l| l.contains(" 0 DC downstream_remote_disconnect "))
        .collect();
    assert_eq!(hung.len() as u64, n, "access log:\n{access_log}");
    for r in &later {
        assert_eq!((r.status, r.version()), (200, Some("v1")), "{r:?}");
    }
    assert!(
        later[0].elapsed >= DELAY && later[0].elapsed < DELAY + DELAY_SLACK,
        "a later delayed request: {later:?}"
    );
    assert!(
        later[1].elapsed < FAST,
        "a later undelayed request: {later:?}"
    );
    assert_eq!(rig.await_stat(ACTIVE_FAULTS, 0, Duration::from_secs(2)), 0);
    assert_eq!(rig.stat(DELAYS_INJECTED), n + 1);
    rig.assert_no_trap();
    eprintln!(
        "faults released {released_after:?} after the hang-up; e.g. {:?}",
        hung.first()
    );
}

#[test]
fn half_of_the_seed_error_requests_are_aborted_with_the_fault_filter_body_the_rest_reach_v1() {
    // Arrange
    let rig = Rig::start(&seed_config("fault-injection-abort.yaml", None, None));
    let (n, plain) = (2000, 200);

    // Act
    let errored: Vec<_> = (0..n)
        .map(|_| {
            rig.envoy
                .get("/api/products", &[("host", "product-service"), ERRORED])
                .unwrap()
        })
        .collect();
    let unmarked: Vec<_> = (0..plain)
        .map(|_| {
            rig.envoy
                .get("/api/products", &[("host", "product-service")])
                .unwrap()
        })
        .collect();

    // Assert
    let aborted: Vec<_> = errored.iter().filter(|r| r.status == 500).collect();
    for r in &aborted {
        assert_eq!(r.text(), "fault filter abort", "{r:?}");
        assert_eq!(r.header("service-version"), None, "{r:?}");
    }
    for r in errored.iter().filter(|r| r.status != 500) {
        assert_eq!(
            (r.status, r.header("service-version")),
            (200, Some("v1")),
            "{r:?}"
        );
    }
    let share = aborted.len() as f64 * 100.0 / n as f64;
    assert!((45.0..=55.0).contains(&share), "{share} % aborted");
    assert_eq!(rig.stat(ABORTS_INJECTED), aborted.len() as u64);
    for r in &unmarked {
        assert_eq!(
            (r.status, r.header("service-version")),
            (200, Some("v1")),
            "{r:?}"
        );
    }
    assert_eq!(rig.stat(DELAYS_INJECTED), 0);
    assert_eq!(rig.await_stat(ACTIVE_FAULTS, 0, Duration::from_secs(2)), 0);
    let reached = (n + plain - aborted.len()) as u64;
    assert_eq!((rig.v1.hits(), rig.v2.hits()), (reached, 0));
    rig.assert_no_trap();
    eprintln!("{} of {n} aborted ({share} %)", aborted.len());
}

#[test]
fn with_max_active_faults_one_a_second_delayed_request_overflows_and_passes_undelayed() {
    // Arrange
    let rig = Rig::start(&seed_config(
        "fault-injection-delay.yaml",
        Some(DELAY),
        Some(json!({"maxActiveFaults": 1})),
    ));
    let addr = rig.addr();
    let first = thread::spawn(move || get(addr, &[DELAYED]));
    let paused = rig.await_stat(ACTIVE_FAULTS, 1, DELAY / 2);

    // Act
    let second = get(addr, &[DELAYED]);

    // Assert
    let overflow = rig.stat(FAULTS_OVERFLOW);
    let active_meanwhile = rig.stat(ACTIVE_FAULTS);
    let first = first.join().unwrap();
    assert_eq!(paused, 1, "the first request was paused");
    assert_eq!(
        (second.status, second.version()),
        (200, Some("v1")),
        "{second:?}"
    );
    assert!(
        second.elapsed < FAST,
        "the second took {:?}",
        second.elapsed
    );
    assert_eq!(
        (overflow, active_meanwhile),
        (1, 1),
        "overflow, active faults"
    );
    assert_eq!(
        (first.status, first.version()),
        (200, Some("v1")),
        "{first:?}"
    );
    assert!(
        first.elapsed >= DELAY && first.elapsed < DELAY + DELAY_SLACK,
        "the first took {:?}",
        first.elapsed
    );
    assert_eq!(rig.stat(DELAYS_INJECTED), 1);
    assert_eq!(rig.await_stat(ACTIVE_FAULTS, 0, Duration::from_secs(2)), 0);
    rig.assert_no_trap();
}
