//! The rig's L4 side: a listener whose filter chain is wasm **network** filters
//! then `tcp_proxy` ([`super::EnvoyRig::tcp_proxy`]), and a TCP echo upstream
//! ([`TcpEcho`]) for it.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Value, json};

use super::config::{template_error, wasm_filter_json};
use super::{EnvoyError, WasmFilter};

const NETWORK_WASM: &str = "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm";
const TCP_PROXY: &str =
    "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";

/// A `tcp_proxy` listener: wasm network filters, then `tcp_proxy` to `cluster`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TcpListenerSpec {
    pub cluster: String,
    pub filters: Vec<WasmFilter>,
}

/// Replaces the first listener's filter chain by the wasm network filters and
/// `tcp_proxy`.
pub(crate) fn apply(
    spec: &TcpListenerSpec,
    cfg: &mut Value,
    root: &Path,
    path: &Path,
) -> Result<(), EnvoyError> {
    let mut chain: Vec<Value> = spec
        .filters
        .iter()
        .map(|f| {
            let mut v = wasm_filter_json(f, root);
            if let Some(t) = v.pointer_mut("/typed_config/@type") {
                *t = json!(NETWORK_WASM);
            }
            v
        })
        .collect();
    chain.push(json!({
        "name": "envoy.filters.network.tcp_proxy",
        "typed_config": {"@type": TCP_PROXY, "stat_prefix": "tcp", "cluster": spec.cluster},
    }));
    let slot = cfg
        .pointer_mut("/static_resources/listeners/0/filter_chains/0/filters")
        .ok_or_else(|| template_error(path, "no listeners[0].filter_chains[0].filters"))?;
    *slot = Value::Array(chain);
    Ok(())
}

/// One connection the echo upstream accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EchoConnection {
    /// Bytes received (and echoed).
    pub received: Vec<u8>,
    /// The peer half-closed (FIN); the echo then closes its side.
    pub got_fin: bool,
}

type Conns = Arc<Mutex<Vec<EchoConnection>>>;

fn lock(c: &Conns) -> MutexGuard<'_, Vec<EchoConnection>> {
    c.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A TCP echo server on 127.0.0.1: every byte comes back; on the peer's FIN it
/// closes its side. Dropping it stops accepting.
#[derive(Debug)]
pub struct TcpEcho {
    addr: SocketAddr,
    conns: Conns,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TcpEcho {
    /// Starts on a free port.
    pub fn start() -> std::io::Result<TcpEcho> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let conns: Conns = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (Arc::clone(&conns), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name(format!("tcp-echo-{}", addr.port()))
            .spawn(move || accept(&listener, &c, &s))?;
        Ok(TcpEcho {
            addr,
            conns,
            stop,
            thread: Some(thread),
        })
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far, in order.
    pub fn connections(&self) -> Vec<EchoConnection> {
        lock(&self.conns).clone()
    }
}

impl Drop for TcpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept(listener: &TcpListener, conns: &Conns, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let index = {
                    let mut c = lock(conns);
                    c.push(EchoConnection::default());
                    c.len() - 1
                };
                let conns = Arc::clone(conns);
                let _ = std::thread::Builder::new()
                    .name("tcp-echo-conn".to_owned())
                    .spawn(move || echo(stream, &conns, index));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn echo(mut stream: TcpStream, conns: &Conns, index: usize) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => {
                if let Some(c) = lock(conns).get_mut(index) {
                    c.got_fin = true;
                }
                let _ = stream.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                let data = buf.get(..n).unwrap_or_default();
                if let Some(c) = lock(conns).get_mut(index) {
                    c.received.extend_from_slice(data);
                }
                if stream.write_all(data).is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}
