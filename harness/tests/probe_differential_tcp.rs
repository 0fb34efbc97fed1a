//! Network (TCP) filters in the wasmtime host and in Envoy 1.40: the TCP probe
//! (`harness/probe_tcp`) as network filters before `tcp_proxy`, a TCP echo
//! upstream behind Envoy and the test playing the echo in the harness. The same
//! client steps run on both sides; the probe's log lines (every callback with its
//! arguments and data), the bytes the client and the upstream got, and the
//! upstream cluster must be equal.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use meshwasm_harness::envoy::{Envoy, EnvoyRig, TcpEcho, WasmFilter, wasm_path};
use meshwasm_harness::host::{Chain, Connection, FilterSpec, Host, VmRole};

/// A client step.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Send bytes, then (Envoy) wait until this many echoed bytes arrived in
    /// total.
    Send(&'static str, usize),
    /// Half-close, then read to the end.
    Fin,
}

struct Side {
    envoy: Envoy,
    echo: TcpEcho,
    echo_b: TcpEcho,
    host: Host,
    chain: Chain,
}

fn start(configs: &[(&str, &str)]) -> Side {
    let wasm = wasm_path("probe_tcp");
    assert!(
        wasm.exists(),
        "{} is missing: cargo xtask build",
        wasm.display()
    );
    let echo = TcpEcho::start().unwrap();
    let echo_b = TcpEcho::start().unwrap();
    let filters = configs
        .iter()
        .map(|(n, c)| WasmFilter::new(n, &wasm, *c).vm_id(&format!("vm_{n}")))
        .collect();
    let envoy = EnvoyRig::builder()
        .tcp_proxy("echo", filters)
        .cluster("echo", echo.addr())
        .cluster("echo_b", echo_b.addr())
        .start()
        .unwrap();
    let mut host = Host::builder().build().unwrap();
    let specs: Vec<FilterSpec> = configs
        .iter()
        .map(|(n, c)| {
            FilterSpec::new(n, &wasm)
                .config(c)
                .vm_id(&format!("vm_{n}"))
        })
        .collect();
    let chain = host.load(&specs).unwrap();
    Side {
        envoy,
        echo,
        echo_b,
        host,
        chain,
    }
}

/// The probe's `tcp …` lines in Envoy's log (workers only).
fn envoy_lines(envoy: &Envoy) -> Vec<String> {
    envoy
        .log()
        .lines()
        .filter_map(|l| l.split_once("] wasm log ").map(|(_, r)| r))
        .filter_map(|r| r.split_once(": ").map(|(_, m)| m.to_owned()))
        .filter(|m| m.starts_with("tcp "))
        .collect()
}

/// Runs `steps` against Envoy; returns what the client received.
#[allow(clippy::disallowed_methods)] // reason: a real socket against a real Envoy
fn run_envoy(side: &Side, steps: &[Step], last_line: &str) -> (Vec<u8>, Vec<String>) {
    let mut client = TcpStream::connect(("127.0.0.1", side.envoy.port())).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut got = Vec::new();
    for step in steps {
        match step {
            Step::Send(bytes, total) => {
                client.write_all(bytes.as_bytes()).unwrap();
                let mut buf = [0u8; 1024];
                while got.len() < *total {
                    match client.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                std::thread::sleep(Duration::from_millis(150));
            }
            Step::Fin => {
                client.shutdown(Shutdown::Write).unwrap();
                let _ = client.read_to_end(&mut got);
            }
        }
    }
    drop(client);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !envoy_lines(&side.envoy)
        .iter()
        .any(|l| l.ends_with(last_line))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(100));
    (got, envoy_lines(&side.envoy))
}

/// The test as the echo upstream: returns every new upstream byte.
fn echo(conn: &Connection) {
    if conn.is_closed() || !conn.outcome().upstream_connected {
        return;
    }
    let bytes = conn.take_upstream();
    if !bytes.is_empty() {
        conn.upstream_send(bytes).unwrap();
    }
}

fn run_harness(side: &Side, steps: &[Step]) -> (Vec<u8>, Vec<String>, Option<String>) {
    let conn = side.chain.connection().open().unwrap();
    for step in steps {
        match step {
            Step::Send(bytes, _) => {
                conn.send(bytes).unwrap();
                echo(&conn);
            }
            Step::Fin => {
                conn.close_client().unwrap();
                echo(&conn);
                if !conn.is_closed() && conn.outcome().upstream_got_fin {
                    conn.close_upstream().unwrap();
                }
            }
        }
    }
    if !conn.is_closed() {
        conn.reset_client().unwrap();
    }
    let out = conn.finish().unwrap();
    let lines = side
        .host
        .logs()
        .into_iter()
        .filter(|l| matches!(l.vm, VmRole::Worker(_)) && l.message.starts_with("tcp "))
        .map(|l| l.message)
        .collect();
    (out.client_received, lines, out.upstream_cluster)
}

fn same(side: &Side, steps: &[Step], last_line: &str) -> (Vec<u8>, Vec<String>, Option<String>) {
    let harness = run_harness(side, steps);
    let envoy = run_envoy(side, steps, last_line);
    assert_eq!(
        (&harness.1, &harness.0),
        (&envoy.1, &envoy.0),
        "harness (left) and Envoy (right) differ; Envoy log:\n{}",
        side.envoy.log()
    );
    harness
}

#[test]
fn echo_through_one_network_filter_with_a_client_fin_matches_envoy() {
    // Arrange
    let side = start(&[("a", r#"{"name": "a"}"#)]);
    let steps = [
        Step::Send("hello", 5),
        Step::Send("abc UPPER", 14),
        Step::Fin,
    ];

    // Act
    let (got, lines, cluster) = same(&side, &steps, "a: log");

    // Assert
    assert_eq!(got, b"helloABC UPPER");
    assert_eq!(side.echo.connections()[0].received, b"helloABC UPPER");
    assert!(side.echo.connections()[0].got_fin);
    assert_eq!(cluster, None);
    assert_eq!(
        lines.last().map(String::as_str),
        Some("tcp a: log"),
        "{lines:?}"
    );
}

#[test]
fn held_bytes_come_again_with_the_next_ones_and_a_filter_can_close_as_in_envoy() {
    // Arrange
    let side = start(&[("a", r#"{"name": "a"}"#)]);

    // Act
    let (got, _, _) = same(
        &side,
        &[
            Step::Send("xHOLD", 0),
            Step::Send("y APPEND", 14),
            Step::Fin,
        ],
        "a: log",
    );
    let side = start(&[("a", r#"{"name": "a"}"#)]);
    let (closed, lines, _) = same(&side, &[Step::Send("CLOSE", 0)], "a: log");

    // Assert
    assert_eq!(got, b"xHOLDy APPEND+");
    assert!(closed.is_empty());
    assert!(
        lines.contains(&"tcp a: downstream close 1".to_owned()),
        "{lines:?}"
    );
}

#[test]
fn three_filters_in_order_choose_the_upstream_cluster_through_filter_state_as_in_envoy() {
    // Arrange
    let side = start(&[
        ("a", r#"{"name": "a", "cluster": "echo_b"}"#),
        ("b", r#"{"name": "b", "state": "no.such.object=1"}"#),
        (
            "c",
            r#"{"name": "c", "state": "envoy.upstream.dynamic_port=x"}"#,
        ),
    ]);

    // Act
    let (got, lines, cluster) = same(&side, &[Step::Send("PROP", 4), Step::Fin], "c: log");

    // Assert
    assert_eq!(got, b"PROP");
    assert_eq!(cluster.as_deref(), Some("echo_b"));
    assert_eq!(side.echo_b.connections().len(), 1);
    assert!(side.echo.connections().is_empty());
    assert!(
        lines.contains(&"tcp b: set no.such.object: NotFound".to_owned()),
        "{lines:?}"
    );
}

#[test]
fn a_new_connection_a_filter_stops_reads_nothing_more_as_in_envoy() {
    // Arrange
    let side = start(&[
        ("a", r#"{"name": "a", "stop_new": true}"#),
        ("b", r#"{"name": "b"}"#),
    ]);

    // Act: the client writes and half-closes; nothing reaches the filters.
    let conn = side.chain.connection().open().unwrap();
    conn.send("hello").unwrap();
    conn.close_client().unwrap();
    let harness = side.host.logs().into_iter().map(|l| l.message);
    let harness: Vec<String> = harness.filter(|m| m.starts_with("tcp ")).collect();
    let mut client = TcpStream::connect(("127.0.0.1", side.envoy.port())).unwrap();
    client.write_all(b"hello").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    std::thread::sleep(Duration::from_millis(500));

    // Assert
    assert_eq!(harness, envoy_lines(&side.envoy), "{}", side.envoy.log());
    assert_eq!(harness, ["tcp a: new connection"]);
    assert!(!conn.outcome().upstream_connected);
    assert!(side.echo.connections().is_empty());
}
