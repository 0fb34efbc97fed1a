//! The request header map as the host serialises it, kept in that one
//! buffer: a header is a span of it, not a `String` and a `Vec` of its
//! own. Reading the map this way costs one allocation (the host's copy)
//! where the SDK's `get_map_bytes` makes two per header and validates
//! every name — measured in the harness, 8,800 wasm instructions per read
//! of the bench request's map before, and most of a filter's own cost
//! beside the crossings (BENCHMARKS.md).
//!
//! The layout is proxy-wasm's (ABI spec, "Header maps"; SDK
//! `utils::deserialize_map`): a `u32` count, then each pair's name and
//! value lengths as `u32`s, then each name and value followed by a NUL —
//! little-endian, as wasm is. Hand-written because it is that fixed
//! layout, read once per request; a malformed buffer reads as no headers.

use std::borrow::Cow;

use meshwasm::verdict::HeaderOp;

/// One header: where its name and value are in the buffer.
#[derive(Debug, Clone, Copy)]
struct Span {
    name: (u32, u32),
    value: (u32, u32),
}

/// A header map in the host's serialisation, with this stream's own
/// changes applied (new names and values are appended to the buffer).
#[derive(Debug, Default)]
pub struct RawHeaders {
    buf: Vec<u8>,
    spans: Vec<Span>,
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    let bytes: [u8; 4] = buf.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(bytes))
}

impl RawHeaders {
    /// The map in `buf`; `None` if the buffer does not hold what its
    /// lengths say.
    pub fn parse(buf: Vec<u8>) -> Option<Self> {
        if buf.is_empty() {
            return Some(Self::default());
        }
        let count = usize::try_from(u32_at(&buf, 0)?).ok()?;
        let mut data = 4usize.checked_add(count.checked_mul(8)?)?;
        if data > buf.len() {
            return None;
        }
        let mut spans = Vec::with_capacity(count);
        for i in 0..count {
            let name_len = u32_at(&buf, 4 + i * 8)?;
            let value_len = u32_at(&buf, 8 + i * 8)?;
            let name = u32::try_from(data).ok()?;
            let value = name.checked_add(name_len)?.checked_add(1)?;
            let end = usize::try_from(value.checked_add(value_len)?.checked_add(1)?).ok()?;
            if end > buf.len() {
                return None;
            }
            spans.push(Span {
                name: (name, name_len),
                value: (value, value_len),
            });
            data = end;
        }
        Some(Self { buf, spans })
    }

    fn bytes(&self, (at, len): (u32, u32)) -> &[u8] {
        let at = at as usize;
        self.buf.get(at..at + len as usize).unwrap_or_default()
    }

    fn values<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        self.spans
            .iter()
            .filter(move |s| self.bytes(s.name).eq_ignore_ascii_case(name.as_bytes()))
            .map(|s| self.bytes(s.value))
    }

    /// A header's value; several values are joined with `,` (as Envoy's
    /// `get_header_map_value` gives them).
    pub fn header(&self, name: &str) -> Option<Cow<'_, [u8]>> {
        meshwasm::http::joined(self.values(name))
    }

    /// Whether any single value of header `name` satisfies `pred`; `None`
    /// when the header is absent.
    pub fn any_header_value(
        &self,
        name: &str,
        pred: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Option<bool> {
        meshwasm::http::any_value(self.values(name), pred)
    }

    fn append(&mut self, bytes: &[u8]) -> (u32, u32) {
        let at = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        self.buf.extend_from_slice(bytes);
        (at, u32::try_from(bytes.len()).unwrap_or(0))
    }

    /// Applies a change the pipeline made to the host's map, so later
    /// stages see it: `Set` replaces the first value and drops the others
    /// (or adds one), `Add` adds a value, `Remove` drops them all.
    pub fn apply(&mut self, op: &HeaderOp) {
        match op {
            HeaderOp::Set(name, value) => {
                let value = self.append(value.as_bytes());
                let mut seen = false;
                let buf = &self.buf;
                self.spans.retain_mut(|s| {
                    if !span_is(buf, s, name) {
                        return true;
                    }
                    s.value = value;
                    !std::mem::replace(&mut seen, true)
                });
                if !seen {
                    let name = self.append(name.as_bytes());
                    self.spans.push(Span { name, value });
                }
            }
            HeaderOp::Add(name, value) => {
                let name = self.append(name.as_bytes());
                let value = self.append(value.as_bytes());
                self.spans.push(Span { name, value });
            }
            HeaderOp::Remove(name) => {
                let buf = &self.buf;
                self.spans.retain(|s| !span_is(buf, s, name));
            }
        }
    }
}

fn span_is(buf: &[u8], s: &Span, name: &str) -> bool {
    let (at, len) = (s.name.0 as usize, s.name.1 as usize);
    buf.get(at..at + len) == Some(name.as_bytes())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use meshwasm::http::{HeaderList, RequestView};

    /// The host's serialisation of `pairs`.
    fn serialise(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (k, v) in pairs {
            out.extend((k.len() as u32).to_le_bytes());
            out.extend((v.len() as u32).to_le_bytes());
        }
        for (k, v) in pairs {
            out.extend(k.as_bytes());
            out.push(0);
            out.extend(v.as_bytes());
            out.push(0);
        }
        out
    }

    const REQUEST: &[(&str, &str)] = &[
        (":authority", "product-service"),
        (":path", "/api/products"),
        ("x", "a"),
        ("user-type", "premium"),
        ("x", "b,c"),
        ("empty", ""),
    ];

    fn both() -> (RawHeaders, HeaderList) {
        let raw = RawHeaders::parse(serialise(REQUEST)).unwrap();
        let list = HeaderList::new(
            REQUEST
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
                .collect(),
        );
        (raw, list)
    }

    fn agree(raw: &RawHeaders, list: &HeaderList) {
        for name in [
            ":authority",
            ":path",
            "x",
            "X",
            "user-type",
            "empty",
            "absent",
            "new",
        ] {
            assert_eq!(raw.header(name), list.header(name), "{name}");
            for probe in [&b"a"[..], b"b,c", b"b", b""] {
                assert_eq!(
                    raw.any_header_value(name, &mut |v| v == probe),
                    list.any_header_value(name, &mut |v| v == probe),
                    "{name} {probe:?}"
                );
            }
        }
    }

    #[test]
    fn reads_what_the_core_header_list_reads() {
        let (raw, list) = both();
        agree(&raw, &list);
        assert_eq!(raw.header("x").as_deref(), Some(&b"a,b,c"[..]));
    }

    #[test]
    fn changes_as_the_core_header_list_changes() {
        let ops = [
            HeaderOp::Set("x".into(), "z".into()),
            HeaderOp::Add("x".into(), "y".into()),
            HeaderOp::Set("new".into(), "1".into()),
            HeaderOp::Remove("user-type".into()),
            HeaderOp::Set(":path".into(), "/other".into()),
            HeaderOp::Remove("absent".into()),
            HeaderOp::Add("empty".into(), "e".into()),
            HeaderOp::Set("x".into(), "last".into()),
        ];
        let (mut raw, mut list) = both();
        for op in &ops {
            raw.apply(op);
            list.apply(op);
            agree(&raw, &list);
        }
        assert_eq!(raw.header("x").as_deref(), Some(&b"last"[..]));
    }

    #[test]
    fn a_buffer_that_does_not_hold_its_lengths_is_refused() {
        let good = serialise(REQUEST);
        for cut in [1, 3, 5, 20, good.len() - 1] {
            assert!(RawHeaders::parse(good[..cut].to_vec()).is_none(), "{cut}");
        }
        let mut huge = good.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(RawHeaders::parse(huge).is_none());
        assert_eq!(RawHeaders::parse(Vec::new()).unwrap().header("x"), None);
    }

    proptest::proptest! {
        #[test]
        fn any_buffer_parses_or_is_refused_without_panicking(buf in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..96)) {
            if let Some(raw) = RawHeaders::parse(buf) {
                let _ = raw.header("x");
            }
        }

        #[test]
        fn any_map_reads_back_as_the_core_list_reads_it(
            pairs in proptest::collection::vec(("[a-cX]{1,2}", "[a-c,]{0,3}"), 0..6),
            ops in proptest::collection::vec((0..3u8, "[a-c]{1,2}", "[a-c]{0,2}"), 0..6),
        ) {
            let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let mut raw = RawHeaders::parse(serialise(&borrowed)).unwrap();
            let mut list = HeaderList::new(pairs.iter().map(|(k, v)| (k.clone(), v.as_bytes().to_vec())).collect());
            agree(&raw, &list);
            for (kind, name, value) in ops {
                let op = match kind {
                    0 => HeaderOp::Set(name, value),
                    1 => HeaderOp::Add(name, value),
                    _ => HeaderOp::Remove(name),
                };
                raw.apply(&op);
                list.apply(&op);
                agree(&raw, &list);
            }
        }
    }
}
