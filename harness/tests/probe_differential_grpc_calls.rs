//! gRPC calls and streams of a filter, in the wasmtime host and in Envoy 1.40:
//! the gRPC probe (`harness/probe_grpc`) opens them against the rig's gRPC
//! upstream (`envoy::grpc_upstream`); the harness side answers each one as that
//! upstream answers Envoy. The probe's JSON — tokens, statuses, status messages,
//! metadata, messages, callback order — must be equal on both sides.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::collections::HashMap;
use std::time::Duration;

use meshwasm_harness::envoy::grpc_upstream::{
    GrpcUpstream, stream_echo, stream_headers, stream_trailers, unary_answer,
};
use meshwasm_harness::envoy::{Envoy, EnvoyRig, WasmFilter, h2_cluster, wasm_path};
use meshwasm_harness::host::{Chain, FilterSpec, GrpcEvent, GrpcKind, Host};

const CLUSTER: &str = "grpc_upstream";

struct Rig {
    host: Host,
    chain: Chain,
    envoy: Envoy,
    upstream: GrpcUpstream,
}

fn start() -> Rig {
    let wasm = wasm_path("probe_grpc");
    assert!(
        wasm.exists(),
        "{} is missing: cargo xtask build",
        wasm.display()
    );
    let upstream = GrpcUpstream::start().unwrap();
    let envoy = EnvoyRig::builder()
        .filters(vec![WasmFilter::new("g", &wasm, "{}").vm_id("grpc")])
        .raw_cluster(h2_cluster(CLUSTER, upstream.addr()))
        .start()
        .unwrap();
    let mut host = Host::builder().cluster(CLUSTER).build().unwrap();
    let chain = host
        .load(&[FilterSpec::new("g", &wasm).config("{}").vm_id("grpc")])
        .unwrap();
    Rig {
        host,
        chain,
        envoy,
        upstream,
    }
}

/// Envoy's router adds `x-envoy-upstream-service-time` to the response headers
/// a gRPC stream gets as initial metadata; the harness has no router. Drops the
/// pair and counts it out of the `md:<n>` event before it.
fn without_router_header(body: &str) -> String {
    let needle = r#",["x-envoy-upstream-service-time",""#;
    let mut out = body.to_owned();
    while let Some(at) = out.find(needle) {
        let end = out[at + needle.len()..].find("\"]").unwrap() + at + needle.len() + 2;
        out.replace_range(at..end, "");
        let before = &out[..at];
        let md = before.rfind("\"md:").unwrap();
        let num_end = md + 4 + before[md + 4..].find('"').unwrap();
        let n: usize = before[md + 4..num_end].parse().unwrap();
        out.replace_range(md + 4..num_end, &(n - 1).to_string());
    }
    out
}

impl Rig {
    fn envoy(&self, ops: &str) -> (u16, String) {
        let r = self
            .envoy
            .get("/grpc", &[("host", "probe.test"), ("x-grpc-op", ops)])
            .unwrap();
        (r.status, without_router_header(&r.text()))
    }

    /// Runs the request in the harness, answering every gRPC call and stream
    /// as the rig's upstream does.
    fn harness(&mut self, ops: &str) -> (u16, String) {
        let stream = self
            .chain
            .request("GET", "/grpc")
            .authority("probe.test")
            .header("x-grpc-op", ops)
            .start()
            .unwrap();
        let mut echoed: HashMap<u64, usize> = HashMap::new();
        for _ in 0..20 {
            if stream.is_done() {
                break;
            }
            for p in self.host.pending_grpc() {
                match (p.kind, p.method.as_str()) {
                    (GrpcKind::Call, "Slow") => {
                        if let Some(t) = p.timeout {
                            self.host.advance(t).unwrap();
                        }
                    }
                    (GrpcKind::Stream, "Stream") => {
                        let sent = echoed.entry(p.id).or_insert(usize::MAX);
                        if *sent == usize::MAX {
                            self.host
                                .grpc_event(p.id, GrpcEvent::Headers(stream_headers()))
                                .unwrap();
                            *sent = 0;
                        }
                        for m in &p.messages[*sent..] {
                            let echo = GrpcEvent::Message(stream_echo(m));
                            self.host.grpc_event(p.id, echo).unwrap();
                        }
                        *sent = p.messages.len();
                        if p.half_closed {
                            let end = GrpcEvent::Trailers(stream_trailers(p.messages.len()));
                            self.host.grpc_event(p.id, end).unwrap();
                        }
                    }
                    (_, method) => {
                        let (answer, _) = unary_answer(method, &p.messages);
                        self.host.grpc_respond(p.id, &answer).unwrap();
                    }
                }
            }
        }
        let out = stream.finish().unwrap();
        (u16::try_from(out.status()).unwrap(), out.body_text())
    }

    fn same(&mut self, ops: &str) -> String {
        let harness = self.harness(ops);
        let envoy = self.envoy(ops);
        assert_eq!(
            harness,
            envoy,
            "{ops}: harness (left) and Envoy (right) differ; Envoy log:\n{}",
            self.envoy.log()
        );
        envoy.1
    }
}

#[test]
fn unary_grpc_calls_see_the_same_tokens_statuses_and_messages_as_in_envoy() {
    // Arrange
    let mut rig = start();
    let cases = [
        "call:grpc_upstream/Unary/5000",
        "callp:grpc_upstream/Unary/5000",
        "call:grpc_upstream/Fail/5000",
        "call:grpc_upstream/Empty/5000",
        "call:grpc_upstream/NoStatus/5000",
        "call:grpc_upstream/Http503/5000",
        "call:no_such_cluster/Unary/100,callp:no_such_cluster/Unary/100",
    ];

    // Act + Assert
    let mut seen = Vec::new();
    for ops in cases {
        seen.push(rig.same(ops));
    }
    assert!(seen[0].contains(r#""call.body":"echo:hi""#), "{}", seen[0]);
    assert!(seen[2].contains(r#""call.status":7"#), "{}", seen[2]);
    let requests = rig.upstream.requests();
    assert_eq!(requests[0].path, "/probe.Echo/Unary");
    assert_eq!(requests[0].messages, vec![b"hi".to_vec()]);
    assert_eq!(requests[0].header("x-probe-md"), Some("m"));
}

#[test]
fn a_grpc_call_times_out_on_the_clock_and_cancelled_calls_are_gone_as_in_envoy() {
    // Arrange
    let mut rig = start();

    // Act + Assert
    rig.same("call:grpc_upstream/Slow/300");
    let cancelled = rig.same(
        "call-nowait:grpc_upstream/Slow/0,call-cancel,call-cancel,call-close,\
         raw-send:5,raw-close:4,raw-cancel:1001,raw-send:6",
    );
    assert!(cancelled.contains(r#""call-cancel":0"#), "{cancelled}");
    assert!(rig.host.pending_grpc().is_empty());
}

#[test]
fn grpc_streams_deliver_metadata_messages_trailers_and_close_as_in_envoy() {
    // Arrange
    let mut rig = start();
    let cases = [
        "stream:grpc_upstream/Stream,send:a,send-end:b,wait",
        "stream:grpc_upstream/Stream,send:a,close,wait",
        "stream:grpc_upstream/StreamReject,wait,close",
        "stream:grpc_upstream/Stream,send:a,cancel,cancel,send:b",
        "stream:no_such_cluster/Stream",
    ];

    // Act + Assert
    let mut seen = Vec::new();
    for ops in cases {
        seen.push(rig.same(ops));
    }
    assert!(seen[0].contains(r#""msg:echo:b""#), "{}", seen[0]);
    std::thread::sleep(Duration::from_millis(100));
    let requests = rig.upstream.requests();
    assert_eq!(requests[0].messages, vec![b"a".to_vec(), b"b".to_vec()]);
    assert!(requests[0].half_closed);
}
