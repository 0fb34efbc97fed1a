//! Every URI and DNS SAN of a PEM certificate, in the order Envoy's RBAC
//! `authenticated` matcher tries them (all URI SANs, then all DNS SANs;
//! SPEC.md §AuthorizationPolicy Verified 10). Envoy 1.40 gives a wasm
//! filter the client certificate as property `connection.peer_certificate`
//! (PEM), while `connection.uri_san_peer_certificate` holds the first URI
//! SAN only. A small DER walk, no X.509 library: only the
//! subjectAltName extension is read; anything unexpected is `None`.

use std::ops::Range;

use base64::Engine as _;

/// A DER certificate and where its SANs are in it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sans {
    der: Vec<u8>,
    uris: Vec<Range<usize>>,
    dns: Vec<Range<usize>>,
}

impl Sans {
    /// URI SANs, then DNS SANs.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.uris
            .iter()
            .chain(self.dns.iter())
            .filter_map(|r| self.der.get(r.clone()))
    }
}

/// One DER element at `at`: its tag, its content and where the next
/// element starts.
fn tlv(d: &[u8], at: usize) -> Option<(u8, Range<usize>, usize)> {
    let tag = *d.get(at)?;
    if tag & 0x1f == 0x1f {
        return None; // multi-byte tags do not occur in a certificate's path to SANs
    }
    let first = *d.get(at + 1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = d.get(at + 2..at + 2 + n)?;
        let len = bytes.iter().fold(0usize, |l, b| (l << 8) | usize::from(*b));
        (len, 2 + n)
    };
    let start = at.checked_add(header)?;
    let end = start.checked_add(len)?;
    (end <= d.len()).then_some((tag, start..end, end))
}

/// The elements inside `range`.
fn children(d: &[u8], range: Range<usize>) -> impl Iterator<Item = (u8, Range<usize>)> + '_ {
    let mut at = range.start;
    std::iter::from_fn(move || {
        if at >= range.end {
            return None;
        }
        let (tag, content, next) = tlv(d, at)?;
        if next > range.end {
            return None;
        }
        at = next;
        Some((tag, content))
    })
}

const SEQUENCE: u8 = 0x30;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
const EXTENSIONS: u8 = 0xa3;
const SAN_OID: &[u8] = &[0x55, 0x1d, 0x11];
const DNS_NAME: u8 = 0x82;
const URI: u8 = 0x86;

/// The base64 body of the first PEM block.
fn pem_body(pem: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(pem).ok()?;
    let (_, rest) = text.split_once("-----BEGIN CERTIFICATE-----")?;
    let (body, _) = rest.split_once("-----END CERTIFICATE-----")?;
    let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// The SANs of a PEM certificate; `None` if it cannot be read.
pub(crate) fn sans(pem: &[u8]) -> Option<Sans> {
    let der = pem_body(pem)?;
    let (tag, cert, _) = tlv(&der, 0)?;
    let (tbs_tag, tbs) = children(&der, cert).next()?;
    if tag != SEQUENCE || tbs_tag != SEQUENCE {
        return None;
    }
    let mut out = Sans::default();
    let Some((_, exts)) = children(&der, tbs).find(|(t, _)| *t == EXTENSIONS) else {
        return Some(Sans { der, ..out });
    };
    let (_, list) = children(&der, exts).find(|(t, _)| *t == SEQUENCE)?;
    for (t, ext) in children(&der, list) {
        if t != SEQUENCE {
            continue;
        }
        let mut parts = children(&der, ext);
        let Some((OID, oid)) = parts.next() else {
            continue;
        };
        if der.get(oid) != Some(SAN_OID) {
            continue;
        }
        let (_, value) = parts.find(|(t, _)| *t == OCTET_STRING)?;
        let (_, names) = children(&der, value).find(|(t, _)| *t == SEQUENCE)?;
        for (t, name) in children(&der, names) {
            match t {
                URI => out.uris.push(name),
                DNS_NAME => out.dns.push(name),
                _ => {}
            }
        }
    }
    Some(Sans { der, ..out })
}
