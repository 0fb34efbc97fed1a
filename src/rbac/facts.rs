//! What the RBAC matchers read of one request, each fact read from the host
//! at most once and only when a matcher asks: the peer identities, the
//! addresses, the SNI, the normalised path and the verified JWT's claims.
//!
//! - Peer identities (SPEC.md §AuthorizationPolicy Verified 10): under mTLS
//!   (`connection.mtls`), every URI SAN, then every DNS SAN, then the
//!   subject of the client certificate — Envoy's order. The SANs are read
//!   from the certificate itself (`connection.peer_certificate`, Envoy
//!   1.38 and later); a host without it gives the first URI SAN and the
//!   first DNS SAN (`connection.{uri,dns}_san_peer_certificate`), and a
//!   peer matcher those do not satisfy is then unknown
//!   ([`Facts::peer_partial`]): a later SAN might satisfy it.
//! - `remote.ip`: the last `x-forwarded-for` entry when it is an IP, else
//!   the peer (Istio's sidecar: `use_remote_address: false`, no trusted
//!   hops; Verified 4). `source.ip` is the peer — but under
//!   `use_remote_address: false` Envoy reports that same client address as
//!   `source.address` whenever the last `x-forwarded-for` entry is an IP,
//!   and proxy-wasm has no property for the peer itself: the peer is then
//!   unknown ([`Facts::source_ip`] is `Err`), and the matchers decide as
//!   the policy's action requires (docs/rbac.md).
//! - Request principals and claims come from the [`Identity`] the authn
//!   filter handed on in filter state, never from a header.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::net::IpAddr;

use serde_json::Value;

use crate::authn::Identity;
use crate::http::RequestView;

use super::cert::{Sans, sans};

/// The peer's identities, as far as the host gives them.
#[derive(Default)]
struct Peer<'r> {
    /// Every SAN of the certificate, when the host gives it.
    sans: Option<Sans>,
    /// First URI SAN and first DNS SAN, without the certificate.
    first: [Option<Cow<'r, [u8]>>; 2],
    subject: Option<Cow<'r, [u8]>>,
}

/// The peer address is unknown: Envoy reports the client's instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unknown;

/// The facts of one request.
pub(crate) struct Facts<'r, R: RequestView> {
    req: &'r R,
    path: Option<&'r [u8]>,
    identity: Option<&'r Identity>,
    /// Extra space-delimited claims of the token's issuer.
    split: &'r [String],
    peer: OnceCell<Peer<'r>>,
    reported: OnceCell<Option<IpAddr>>,
    xff: OnceCell<Option<IpAddr>>,
    destination: OnceCell<Option<IpAddr>>,
    sni: OnceCell<Option<Cow<'r, [u8]>>>,
}

/// The IP of an `ip:port` / `[ip]:port` address property (or a bare IP).
pub(crate) fn address_ip(v: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(v).ok()?.trim();
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    s.rsplit_once(':')?.0.parse().ok()
}

impl<'r, R: RequestView> Facts<'r, R> {
    /// The facts of `req`, whose path for matching is `path`.
    pub(crate) fn new(
        req: &'r R,
        path: Option<&'r [u8]>,
        identity: Option<&'r Identity>,
        split: &'r [String],
    ) -> Self {
        Self {
            req,
            path,
            identity,
            split,
            peer: OnceCell::new(),
            reported: OnceCell::new(),
            xff: OnceCell::new(),
            destination: OnceCell::new(),
            sni: OnceCell::new(),
        }
    }

    /// The request.
    pub(crate) fn request(&self) -> &'r R {
        self.req
    }

    /// The normalised path without the query, path parameters stripped.
    pub(crate) fn path(&self) -> Option<&'r [u8]> {
        self.path
    }

    /// The peer's identities under mTLS; none otherwise.
    pub(crate) fn peer_ids(&self) -> impl Iterator<Item = &[u8]> {
        let peer = self.peer();
        peer.sans.iter().flat_map(Sans::iter).chain(
            peer.first
                .iter()
                .chain([&peer.subject])
                .flatten()
                .map(|v| v.as_ref()),
        )
    }

    /// Whether [`Facts::peer_ids`] may miss some of the peer's identities:
    /// the host gave the first URI SAN or the first DNS SAN but not the
    /// certificate (Envoy before 1.38 has no `connection.peer_certificate`),
    /// so later SANs are unseen.
    pub(crate) fn peer_partial(&self) -> bool {
        let peer = self.peer();
        peer.sans.is_none() && peer.first.iter().any(Option::is_some)
    }

    fn peer(&self) -> &Peer<'r> {
        self.peer.get_or_init(|| {
            let mtls = self
                .req
                .property("connection.mtls")
                .is_some_and(|v| v.first() == Some(&1));
            if !mtls {
                return Peer::default();
            }
            let sans = self
                .req
                .property("connection.peer_certificate")
                .and_then(|pem| sans(&pem));
            let first = match sans {
                Some(_) => [None, None],
                None => [
                    "connection.uri_san_peer_certificate",
                    "connection.dns_san_peer_certificate",
                ]
                .map(|p| self.req.property(p).filter(|v| !v.is_empty())),
            };
            Peer {
                sans,
                first,
                subject: self.req.property("connection.subject_peer_certificate"),
            }
        })
    }

    /// The last `x-forwarded-for` entry, if it is an IP.
    fn xff(&self) -> Option<IpAddr> {
        *self.xff.get_or_init(|| {
            let v = self.req.header("x-forwarded-for")?;
            let last = v.rsplit(|b| *b == b',').next()?;
            std::str::from_utf8(last).ok()?.trim().parse().ok()
        })
    }

    /// `source.address` as the host reports it.
    fn reported_source(&self) -> Option<IpAddr> {
        *self.reported.get_or_init(|| {
            self.req
                .property("source.address")
                .and_then(|v| address_ip(&v))
        })
    }

    /// The connection's peer address (`Err` when the host reports the
    /// client's from `x-forwarded-for` instead).
    pub(crate) fn source_ip(&self) -> Result<Option<IpAddr>, Unknown> {
        match self.xff() {
            Some(_) => Err(Unknown),
            None => Ok(self.reported_source()),
        }
    }

    /// The client's address: the last `x-forwarded-for` entry, else the
    /// peer.
    pub(crate) fn remote_ip(&self) -> Option<IpAddr> {
        self.xff().or_else(|| self.reported_source())
    }

    /// The address the connection arrived on.
    pub(crate) fn destination_ip(&self) -> Option<IpAddr> {
        *self.destination.get_or_init(|| {
            self.req
                .property("destination.address")
                .and_then(|v| address_ip(&v))
        })
    }

    /// The port the connection arrived on.
    pub(crate) fn destination_port(&self) -> Option<u32> {
        self.req.destination_port()
    }

    /// The TLS SNI, lower-case; empty without TLS.
    pub(crate) fn sni(&self) -> &[u8] {
        self.sni
            .get_or_init(|| {
                self.req
                    .property("connection.requested_server_name")
                    .map(|v| {
                        if v.iter().any(u8::is_ascii_uppercase) {
                            Cow::Owned(v.to_ascii_lowercase())
                        } else {
                            v
                        }
                    })
            })
            .as_deref()
            .unwrap_or_default()
    }

    /// A claim of the verified token by path (`["nested", "key"]`).
    pub(crate) fn claim(&self, path: &[impl AsRef<str>]) -> Option<&'r Value> {
        let claims = &self.identity?.claims;
        let (first, rest) = path.split_first()?;
        let mut v = claims.get(first.as_ref())?;
        for key in rest {
            v = v.as_object()?.get(key.as_ref())?;
        }
        Some(v)
    }

    /// Whether top-level claim `name` is read as space-delimited words:
    /// `scope`, `permission` and the issuer's `spaceDelimitedClaims`.
    pub(crate) fn space_delimited(&self, name: &str) -> bool {
        name == "scope" || name == "permission" || self.split.iter().any(|c| c == name)
    }
}
