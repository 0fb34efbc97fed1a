//! Connections through network filters: opening one ([`ConnectionBuilder`]),
//! driving it ([`Connection`]) and what it showed ([`ConnectionOutcome`]). The
//! rules are in `tcp.rs`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::outcome::LogEntry;
use super::state::HostState;
use super::tcp::{CloseType, ConnRun, NetBufs, NewConn, TCP_PROXY_CLUSTER};
use super::{Chain, HarnessError, borrow};

/// A connection under construction (see [`Chain::connection`]).
pub struct ConnectionBuilder<'a> {
    pub(super) chain: &'a Chain,
    pub(super) properties: HashMap<String, Vec<u8>>,
    pub(super) worker: Option<usize>,
}

impl ConnectionBuilder<'_> {
    /// Overrides a property for this connection (dotted path, e.g.
    /// `source.address`).
    pub fn property(mut self, path: &str, value: impl AsRef<[u8]>) -> Self {
        self.properties
            .insert(path.to_owned(), value.as_ref().to_vec());
        self
    }

    /// Runs the connection on worker `i` instead of round robin.
    pub fn worker(mut self, i: usize) -> Self {
        self.worker = Some(i);
        self
    }

    /// The client connects: every filter gets its context and
    /// `proxy_on_new_connection` (until one stops), then `tcp_proxy` connects
    /// upstream. A trap is the error (the connection is then closed).
    pub fn open(self) -> Result<Connection, HarnessError> {
        let inner = Rc::clone(&self.chain.inner);
        let id = borrow(&inner)?.open_connection(NewConn {
            chain: self.chain.id,
            worker: self.worker,
            properties: self.properties,
        })?;
        Ok(Connection { inner, id })
    }
}

/// A downstream connection through the chain's network filters and
/// `tcp_proxy`; the test plays the client and the upstream.
pub struct Connection {
    inner: Rc<RefCell<HostState>>,
    id: u64,
}

/// What one connection showed.
#[derive(Debug, Clone)]
pub struct ConnectionOutcome {
    /// Connection id (the `connection_id` property).
    pub id: u64,
    /// Worker that ran it.
    pub worker: usize,
    /// Bytes the client received.
    pub client_received: Vec<u8>,
    /// Bytes the upstream received.
    pub upstream_received: Vec<u8>,
    /// The client got the upstream's FIN.
    pub client_got_fin: bool,
    /// The upstream got the client's FIN.
    pub upstream_got_fin: bool,
    /// How the connection closed (`None`: still open).
    pub closed: Option<CloseType>,
    /// `Some(cluster)` when a filter chose `tcp_proxy`'s cluster
    /// (`envoy.tcp_proxy.cluster` filter state) before it connected; `None`
    /// otherwise (or not connected).
    pub upstream_cluster: Option<String>,
    /// `tcp_proxy` connected upstream.
    pub upstream_connected: bool,
    /// Log lines of this connection's callbacks.
    pub logs: Vec<LogEntry>,
    /// Fuel per filter.
    pub fuel: Vec<(String, u64)>,
    /// Filter state (`wasm.<key>` from `set_property`, Envoy objects from
    /// `set_envoy_filter_state`).
    pub filter_state: Vec<(String, Vec<u8>)>,
}

impl Connection {
    /// Connection id.
    pub fn id(&self) -> u64 {
        self.id
    }

    fn with<R>(&self, f: impl FnOnce(&mut HostState, u64) -> R) -> Result<R, HarnessError> {
        let mut st = borrow(&self.inner)?;
        let open = st.conns.get(&self.id).is_some_and(|c| c.closed.is_none());
        if !open {
            return Err(HarnessError::InvalidArgument(format!(
                "connection {} is closed",
                self.id
            )));
        }
        let r = f(&mut st, self.id);
        st.conn_settle(self.id)?;
        Ok(r)
    }

    /// The client sends `bytes`.
    pub fn send(&self, bytes: impl AsRef<[u8]>) -> Result<(), HarnessError> {
        self.with(|st, id| st.conn_client(id, bytes.as_ref(), false))
    }

    /// The client half-closes (FIN): the filters get end of stream.
    pub fn close_client(&self) -> Result<(), HarnessError> {
        self.with(|st, id| st.conn_client(id, &[], true))
    }

    /// The client resets the connection: it closes at once (`Remote`).
    pub fn reset_client(&self) -> Result<(), HarnessError> {
        self.with(|st, id| st.close_conn(id, CloseType::Remote))
    }

    /// The upstream sends `bytes` (`tcp_proxy` must have connected).
    pub fn upstream_send(&self, bytes: impl AsRef<[u8]>) -> Result<(), HarnessError> {
        self.upstream(bytes.as_ref(), false)
    }

    /// The upstream half-closes (FIN).
    pub fn close_upstream(&self) -> Result<(), HarnessError> {
        self.upstream(&[], true)
    }

    fn upstream(&self, bytes: &[u8], eos: bool) -> Result<(), HarnessError> {
        let connected = self
            .inner
            .borrow()
            .conns
            .get(&self.id)
            .is_some_and(|c| c.connected.is_some());
        if !connected {
            return Err(HarnessError::InvalidArgument(format!(
                "connection {}: tcp_proxy has not connected upstream",
                self.id
            )));
        }
        self.with(|st, id| st.conn_write(id, bytes, eos))
    }

    /// Upstream bytes not taken yet (see [`Connection::upstream_received`] for
    /// all of them).
    pub fn take_upstream(&self) -> Vec<u8> {
        let mut st = self.inner.borrow_mut();
        let Some(c) = st.conns.get_mut(&self.id) else {
            return Vec::new();
        };
        let new = c
            .to_upstream
            .get(c.upstream_taken..)
            .unwrap_or_default()
            .to_vec();
        c.upstream_taken = c.to_upstream.len();
        new
    }

    /// The outcome so far (the connection may still be open).
    pub fn outcome(&self) -> ConnectionOutcome {
        self.inner.borrow().conn_outcome(self.id)
    }

    /// True once the connection closed.
    pub fn is_closed(&self) -> bool {
        self.inner
            .borrow()
            .conns
            .get(&self.id)
            .is_none_or(|c| c.closed.is_some())
    }

    /// The outcome of a closed connection (its record is then dropped);
    /// `InvalidArgument` while it is open.
    pub fn finish(self) -> Result<ConnectionOutcome, HarnessError> {
        let mut st = borrow(&self.inner)?;
        if st.conns.get(&self.id).is_none_or(|c| c.closed.is_none()) {
            return Err(HarnessError::InvalidArgument(format!(
                "connection {} is still open",
                self.id
            )));
        }
        let out = st.conn_outcome(self.id);
        st.conns.remove(&self.id);
        Ok(out)
    }
}

impl HostState {
    /// Creates a connection and runs its first read pass (the filters' new
    /// connection callbacks, `tcp_proxy`'s connect).
    pub(crate) fn open_connection(&mut self, new: NewConn) -> Result<u64, HarnessError> {
        let (worker, slots) = self.new_slots(new.chain, new.worker)?;
        let id = self.next_stream;
        self.next_stream += 1;
        let state = super::context::StreamState {
            connection_id: id,
            properties: new.properties,
            ..Default::default()
        };
        self.conns.insert(
            id,
            ConnRun {
                worker,
                state: Rc::new(RefCell::new(state)),
                bufs: Rc::new(RefCell::new(NetBufs::default())),
                slots,
                read_stopped_at: None,
                blocked_at: None,
                socket: Vec::new(),
                socket_fin: false,
                connected: None,
                client_fin: false,
                upstream_got_fin: false,
                client_got_fin: false,
                to_upstream: Vec::new(),
                upstream_taken: 0,
                to_client: Vec::new(),
                closed: None,
                error: None,
            },
        );
        self.conn_read(id, 0);
        self.conn_settle(id)?;
        Ok(id)
    }

    /// After an operation: pending actions, the close after both FINs, and the
    /// first trap as the error.
    pub(crate) fn conn_settle(&mut self, id: u64) -> Result<(), HarnessError> {
        self.pump();
        self.conn_pump();
        self.conn_maybe_done(id);
        self.traps.clear();
        match self.conns.get_mut(&id).and_then(|c| c.error.take()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    pub(crate) fn conn_outcome(&self, id: u64) -> ConnectionOutcome {
        let Some(c) = self.conns.get(&id) else {
            return ConnectionOutcome {
                id,
                worker: 0,
                client_received: Vec::new(),
                upstream_received: Vec::new(),
                client_got_fin: false,
                upstream_got_fin: false,
                closed: None,
                upstream_cluster: None,
                upstream_connected: false,
                logs: Vec::new(),
                fuel: Vec::new(),
                filter_state: Vec::new(),
            };
        };
        let st = c.state.borrow();
        ConnectionOutcome {
            id,
            worker: c.worker,
            client_received: c.to_client.clone(),
            upstream_received: c.to_upstream.clone(),
            client_got_fin: c.client_got_fin,
            upstream_got_fin: c.upstream_got_fin,
            closed: c.closed,
            upstream_cluster: c.connected.clone().flatten(),
            upstream_connected: c.connected.is_some(),
            logs: self
                .shared
                .borrow()
                .logs
                .iter()
                .filter(|l| l.stream == Some(id))
                .cloned()
                .collect(),
            fuel: c.slots.iter().map(|s| (s.name.clone(), s.fuel)).collect(),
            filter_state: st
                .filter_state
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}

impl ConnectionOutcome {
    /// Filter state `key` at the end (e.g. `envoy.tcp_proxy.cluster`).
    pub fn filter_state(&self, key: &str) -> Option<&[u8]> {
        self.filter_state
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }

    /// The cluster `tcp_proxy` picked through filter state, if any.
    pub fn chosen_cluster(&self) -> Option<&[u8]> {
        self.filter_state(TCP_PROXY_CLUSTER)
    }
}
