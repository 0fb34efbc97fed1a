//! Remote key sets (`jwksUri`), held for every VM of the proxy in shared
//! data (SPEC.md §proxy-wasm ABI E.4): Envoy runs several VMs per worker
//! count (three for one worker), so no VM's memory is the truth.
//!
//! - `meshwasm.jwks.<uri>` holds the last good document: 8 bytes of fetch
//!   time (ms, little-endian) then the JSON. A VM parses it once per CAS
//!   version and uses it until it is `cache_ms` old.
//! - `meshwasm.jwks.<uri>.lease` holds the deadline (ms) of a fetch under
//!   way. A VM takes it with compare-and-swap before fetching, so one fetch
//!   serves all workers; the others poll the document from their tick until
//!   it arrives, the lease runs out (then they may fetch), or their streams'
//!   timeouts end the wait.
//! - Fetches are dispatched from the root context's tick, so their answers
//!   reach the root even if the stream that asked is gone.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use meshwasm::authn::RemoteJwks;
use meshwasm::authn::jwks::Jwks;
use meshwasm::pipeline::{KeySource, KeyState};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};

use crate::host::now_ms;

/// How often a VM waiting for another VM's fetch looks at shared data.
pub const POLL_MS: u64 = 50;
/// Fewest milliseconds between two refetches forced by an unknown `kid`
/// (a client cannot make the proxy hammer the key server).
pub const REFRESH_MIN_MS: u64 = 10_000;

#[derive(Default)]
struct Held {
    keys: Option<Rc<Jwks>>,
    fetched_at: u64,
    cas: Option<u32>,
    /// The shared-data version whose keys lacked a `kid` (a refetch is due).
    stale_cas: Option<u32>,
    /// When a refetch was last forced.
    forced_at: Option<u64>,
    /// When shared data was last looked at.
    checked_at: u64,
}

/// How long a VM trusts its own copy of a key set before looking at
/// shared data again (a newer fetch by another VM reaches it this late).
const RECHECK_MS: u64 = 1_000;

/// What the glue needs of a VM's key sets. Two implementations, chosen by
/// the filter ([`crate::Filter::Keys`]), so that a filter without remote
/// keys does not carry the JWKS code at all.
pub trait KeyHost: KeySource + Sized + 'static {
    /// A store for the filter's remote key sets.
    fn new(remotes: Vec<RemoteJwks>) -> Self;
    /// Marks `source` as wanted by a waiting stream; `refresh` asks for a
    /// new fetch even though keys are held (rate-limited).
    fn want(&self, source: usize, refresh: bool);
    /// Whether some stream waits for keys (the tick must poll).
    fn is_wanted(&self) -> bool;
    /// From the tick: settled sources; starts fetches.
    fn tick(&self, log: impl FnMut(&str)) -> Vec<Event>;
    /// The answer to a fetch.
    fn on_response(&self, token: u32, body_size: usize, log: impl FnMut(&str)) -> Option<Event>;
}

/// No remote key sets (filters without authn).
pub struct NoRemoteKeys;

impl KeySource for NoRemoteKeys {
    fn jwks(&self, _source: usize) -> KeyState {
        KeyState::Pending
    }
}

impl KeyHost for NoRemoteKeys {
    fn new(_remotes: Vec<RemoteJwks>) -> Self {
        NoRemoteKeys
    }
    fn want(&self, _source: usize, _refresh: bool) {}
    fn is_wanted(&self) -> bool {
        false
    }
    fn tick(&self, _log: impl FnMut(&str)) -> Vec<Event> {
        Vec::new()
    }
    fn on_response(&self, _token: u32, _body_size: usize, _log: impl FnMut(&str)) -> Option<Event> {
        None
    }
}

/// The key sets of one VM's filter, in shared data.
pub struct KeyStore {
    remotes: Vec<RemoteJwks>,
    held: RefCell<Vec<Held>>,
    /// Sources some stream waits for.
    wanted: RefCell<BTreeSet<usize>>,
    /// Fetches under way from this VM: call token → source.
    calls: RefCell<Vec<(u32, usize)>>,
}

/// What a tick or an answer did to one source.
pub enum Event {
    /// Keys arrived (or a fetch ended): wake the streams waiting for it.
    Settled(usize),
}

impl KeyHost for KeyStore {
    fn new(remotes: Vec<RemoteJwks>) -> Self {
        let held = remotes.iter().map(|_| Held::default()).collect();
        Self {
            remotes,
            held: RefCell::new(held),
            wanted: RefCell::new(BTreeSet::new()),
            calls: RefCell::new(Vec::new()),
        }
    }

    fn want(&self, source: usize, refresh: bool) {
        if refresh {
            let now = now_ms();
            if let Ok(mut held) = self.held.try_borrow_mut()
                && let Some(h) = held.get_mut(source)
                && h.forced_at
                    .is_none_or(|t| now.saturating_sub(t) >= REFRESH_MIN_MS)
            {
                h.forced_at = Some(now);
                h.stale_cas = h.cas;
            }
        }
        if let Ok(mut w) = self.wanted.try_borrow_mut() {
            w.insert(source);
        }
    }

    fn is_wanted(&self) -> bool {
        self.wanted.try_borrow().is_ok_and(|w| !w.is_empty())
    }

    fn tick(&self, log: impl FnMut(&str)) -> Vec<Event> {
        self.tick_sources(log)
    }

    fn on_response(&self, token: u32, body_size: usize, log: impl FnMut(&str)) -> Option<Event> {
        self.answer(token, body_size, log)
    }
}

impl KeyStore {
    fn key(&self, source: usize) -> Option<String> {
        self.remotes
            .get(source)
            .map(|r| format!("meshwasm.jwks.{}", r.uri))
    }

    /// Fresh keys of `source` from this VM or shared data.
    fn fresh(&self, source: usize, now: u64) -> Option<Rc<Jwks>> {
        let remote = self.remotes.get(source)?;
        let mut held = self.held.try_borrow_mut().ok()?;
        let h = held.get_mut(source)?;
        let usable = |h: &Held| {
            h.keys
                .as_ref()
                .filter(|_| now.saturating_sub(h.fetched_at) < remote.cache_ms)
                .filter(|_| h.stale_cas.is_none() || h.cas != h.stale_cas)
                .cloned()
        };
        if now.saturating_sub(h.checked_at) < RECHECK_MS
            && let Some(keys) = usable(h)
        {
            return Some(keys);
        }
        h.checked_at = now;
        let (value, cas) = hostcalls::get_shared_data(&self.key(source)?).ok()?;
        if cas.is_some() && cas != h.cas {
            if let Some(bytes) = value.as_deref()
                && let (Some(at), Some(body)) = (bytes.get(..8), bytes.get(8..))
                && let Ok(keys) = Jwks::parse(body)
            {
                let mut t = [0u8; 8];
                t.copy_from_slice(at);
                h.fetched_at = u64::from_le_bytes(t);
                h.keys = Some(Rc::new(keys));
            }
            h.cas = cas;
        }
        usable(h)
    }

    /// From the tick: settles every wanted source that has keys now, and
    /// starts a fetch for those nobody fetches.
    fn tick_sources(&self, mut log: impl FnMut(&str)) -> Vec<Event> {
        let now = now_ms();
        let wanted: Vec<usize> = match self.wanted.try_borrow() {
            Ok(w) => w.iter().copied().collect(),
            Err(_) => return Vec::new(),
        };
        let mut events = Vec::new();
        for source in wanted {
            if self.fresh(source, now).is_some() {
                self.settle(source);
                events.push(Event::Settled(source));
            } else if !self.fetching(source)
                && let Err(e) = self.fetch(source, now)
            {
                log(&e);
            }
        }
        events
    }

    fn fetching(&self, source: usize) -> bool {
        self.calls
            .try_borrow()
            .is_ok_and(|c| c.iter().any(|(_, s)| *s == source))
    }

    fn settle(&self, source: usize) {
        if let Ok(mut w) = self.wanted.try_borrow_mut() {
            w.remove(&source);
        }
    }

    /// Takes the lease and dispatches the fetch; another VM's live lease
    /// means waiting for its result.
    fn fetch(&self, source: usize, now: u64) -> Result<(), String> {
        let (Some(remote), Some(key)) = (self.remotes.get(source), self.key(source)) else {
            return Ok(());
        };
        let lease = format!("{key}.lease");
        let (value, cas) = hostcalls::get_shared_data(&lease).map_err(|s| format!("{s:?}"))?;
        let held_until = value
            .as_deref()
            .and_then(|v| v.get(..8))
            .and_then(|v| <[u8; 8]>::try_from(v).ok())
            .map_or(0, u64::from_le_bytes);
        if held_until > now {
            return Ok(());
        }
        let until = now.saturating_add(remote.timeout_ms);
        if hostcalls::set_shared_data(&lease, Some(&until.to_le_bytes()), Some(cas.unwrap_or(0)))
            .is_err()
        {
            return Ok(()); // another VM took it first
        }
        let headers = vec![
            (":method", "GET"),
            (":path", remote.path.as_str()),
            (":authority", remote.authority.as_str()),
            ("accept", "application/json"),
        ];
        let timeout = std::time::Duration::from_millis(remote.timeout_ms);
        match hostcalls::dispatch_http_call(&remote.cluster, headers, None, vec![], timeout) {
            Ok(token) => {
                if let Ok(mut c) = self.calls.try_borrow_mut() {
                    c.push((token, source));
                }
                Ok(())
            }
            Err(s) => {
                let _ = hostcalls::set_shared_data(&lease, Some(&0u64.to_le_bytes()), None);
                self.settle(source);
                Err(format!(
                    "cannot fetch {} from cluster {}: {s:?}",
                    remote.uri, remote.cluster
                ))
            }
        }
    }

    /// The answer to fetch `token`: stores good keys in shared data; either
    /// way the waiting streams are woken (they fail closed without keys).
    fn answer(&self, token: u32, body_size: usize, mut log: impl FnMut(&str)) -> Option<Event> {
        let source = {
            let mut calls = self.calls.try_borrow_mut().ok()?;
            let at = calls.iter().position(|(t, _)| *t == token)?;
            calls.remove(at).1
        };
        let remote = self.remotes.get(source)?;
        let key = self.key(source)?;
        let status = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
            .unwrap_or_default();
        let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let now = now_ms();
        match (status.as_slice(), Jwks::parse(&body)) {
            (b"200", Ok(_)) => {
                let mut value = now.to_le_bytes().to_vec();
                value.extend_from_slice(&body);
                if let Err(s) = hostcalls::set_shared_data(&key, Some(&value), None) {
                    log(&format!("cannot store the keys of {}: {s:?}", remote.uri));
                }
            }
            (status, parsed) => log(&format!(
                "fetching {} failed: status {:?}{}",
                remote.uri,
                String::from_utf8_lossy(status),
                parsed.err().map(|e| format!(", {e}")).unwrap_or_default()
            )),
        }
        let _ =
            hostcalls::set_shared_data(&format!("{key}.lease"), Some(&0u64.to_le_bytes()), None);
        self.settle(source);
        Some(Event::Settled(source))
    }
}

impl KeySource for KeyStore {
    fn jwks(&self, source: usize) -> KeyState {
        match self.fresh(source, now_ms()) {
            Some(keys) => KeyState::Ready(keys),
            None => KeyState::Pending,
        }
    }
}
