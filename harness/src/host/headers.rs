//! Header maps as Envoy keeps them, and the proxy-wasm pair serialisation.
//!
//! Names are lower-cased on every operation (`Http::LowerCaseString`, SPEC §B.1,
//! envoy `source/extensions/common/wasm/context.cc`); pseudo-headers stay ahead of
//! regular headers (`HeaderMapImpl`, SPEC §B.2); `get` returns the first value
//! (SPEC §B.3); `replace` = `setCopy` = remove all then add (envoy
//! `source/common/http/header_map_impl.cc`, `http_set_copy_replace_all_headers`).
//! Pairs are serialised as proxy-wasm-rust-sdk `src/hostcalls.rs`
//! `utils::deserialize_map_bytes` expects: `u32 n`, `n × (u32 key_len, u32 value_len)`,
//! then `key \0 value \0` for each pair (all little endian).

/// An ordered multi-map of lower-case names to byte values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderMap {
    entries: Vec<(String, Vec<u8>)>,
}

impl HeaderMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a map by adding each pair in order (names lower-cased).
    pub fn from_pairs<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Self {
        let mut map = Self::new();
        for (k, v) in pairs {
            map.add(k.as_ref(), v.as_ref());
        }
        map
    }

    /// All entries, in map order.
    pub fn entries(&self) -> &[(String, Vec<u8>)] {
        &self.entries
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the map holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// First value of `name` (case-insensitive).
    pub fn get(&self, name: &[u8]) -> Option<&[u8]> {
        let key = lower(name);
        self.entries
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_slice())
    }

    /// All values of `name`, joined with `,` (the CEL `request.headers` view).
    pub fn get_joined(&self, name: &[u8]) -> Option<Vec<u8>> {
        let key = lower(name);
        let values: Vec<&[u8]> = self
            .entries
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v.as_slice())
            .collect();
        if values.is_empty() {
            None
        } else {
            Some(values.join(&b","[..]))
        }
    }

    /// First value as UTF-8 text (lossy), for tests and properties.
    pub fn get_str(&self, name: &str) -> Option<String> {
        self.get(name.as_bytes())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// `addCopy`: appends a value; a pseudo-header goes after the last pseudo-header.
    pub fn add(&mut self, name: &[u8], value: &[u8]) {
        let key = lower(name);
        if key.starts_with(':') {
            let pos = self
                .entries
                .iter()
                .position(|(k, _)| !k.starts_with(':'))
                .unwrap_or(self.entries.len());
            self.entries.insert(pos, (key, value.to_vec()));
        } else {
            self.entries.push((key, value.to_vec()));
        }
    }

    /// Envoy's codec adding a repeated inline header: appended to the first
    /// value after a `,`, or added when absent.
    pub fn fold(&mut self, name: &[u8], value: &[u8]) {
        let key = lower(name);
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => {
                entry.1.push(b',');
                entry.1.extend_from_slice(value);
            }
            None => self.add(name, value),
        }
    }

    /// `setCopy`: removes every value of `name`, then adds `value`.
    pub fn replace(&mut self, name: &[u8], value: &[u8]) {
        self.remove(name);
        self.add(name, value);
    }

    /// Envoy's `setReference…` on an inline header (one entry per name): the first
    /// value of `name` becomes `value` where it stands, any others go; appended when
    /// absent.
    pub fn set_in_place(&mut self, name: &[u8], value: &[u8]) {
        let key = lower(name);
        let Some(first) = self.entries.iter().position(|(k, _)| *k == key) else {
            self.add(name, value);
            return;
        };
        let mut i = 0;
        self.entries.retain(|(k, _)| {
            let keep = *k != key || i == first;
            i += 1;
            keep
        });
        if let Some(entry) = self.entries.get_mut(first) {
            entry.1 = value.to_vec();
        }
    }

    /// Removes every value of `name`.
    pub fn remove(&mut self, name: &[u8]) {
        let key = lower(name);
        self.entries.retain(|(k, _)| *k != key);
    }

    /// Replaces the whole map by `pairs` (names lower-cased).
    pub fn set_pairs(&mut self, pairs: &[(Vec<u8>, Vec<u8>)]) {
        self.entries.clear();
        for (k, v) in pairs {
            self.add(k, v);
        }
    }

    /// Serialises the map in the proxy-wasm pairs format.
    pub fn serialize(&self) -> Vec<u8> {
        let pairs: Vec<(&[u8], &[u8])> = self
            .entries
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_slice()))
            .collect();
        serialize_pairs(&pairs)
    }

    /// Entries with values decoded as lossy UTF-8.
    pub fn to_string_pairs(&self) -> Vec<(String, String)> {
        self.entries
            .iter()
            .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
            .collect()
    }
}

/// Lower-cases a header name (ASCII only, as `LowerCaseString`); invalid UTF-8 is
/// replaced lossily.
pub fn lower(name: &[u8]) -> String {
    String::from_utf8_lossy(name).to_ascii_lowercase()
}

/// Serialises pairs in the proxy-wasm format (see module docs).
pub fn serialize_pairs(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&len_u32(pairs.len()).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&len_u32(k.len()).to_le_bytes());
        out.extend_from_slice(&len_u32(v.len()).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Parses the proxy-wasm pairs format; malformed input yields an empty list, as
/// proxy-wasm-cpp-host `src/exports.cc` `toPairs` does.
pub fn deserialize_pairs(buf: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    parse_pairs(buf).unwrap_or_default()
}

fn read_u32(buf: &[u8], at: usize) -> Option<usize> {
    let bytes: [u8; 4] = buf.get(at..at.checked_add(4)?)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(bytes)).ok()
}

fn parse_pairs(buf: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let n = read_u32(buf, 0)?;
    let mut sizes = Vec::with_capacity(n.min(1024));
    for i in 0..n {
        let at = 4usize.checked_add(i.checked_mul(8)?)?;
        sizes.push((read_u32(buf, at)?, read_u32(buf, at + 4)?));
    }
    let mut p = 4usize.checked_add(n.checked_mul(8)?)?;
    let mut out = Vec::with_capacity(sizes.len());
    for (ks, vs) in sizes {
        let key = buf.get(p..p.checked_add(ks)?)?.to_vec();
        p = p.checked_add(ks)?.checked_add(1)?;
        let value = buf.get(p..p.checked_add(vs)?)?.to_vec();
        p = p.checked_add(vs)?.checked_add(1)?;
        out.push((key, value));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pairs_round_trip_through_the_sdk_format() {
        let map = HeaderMap::from_pairs(&[(":method", "GET"), ("X-A", "1")]);
        let parsed = deserialize_pairs(&map.serialize());
        assert_eq!(
            parsed,
            vec![
                (b":method".to_vec(), b"GET".to_vec()),
                (b"x-a".to_vec(), b"1".to_vec())
            ]
        );
    }

    #[test]
    fn truncated_pairs_parse_as_empty() {
        assert!(deserialize_pairs(&[1, 0, 0, 0, 5, 0]).is_empty());
    }

    #[test]
    fn pseudo_headers_are_kept_first_and_get_returns_the_first_value() {
        let mut map = HeaderMap::from_pairs(&[("a", "1"), ("a", "2")]);
        map.add(b":path", b"/");
        assert_eq!(map.entries()[0].0, ":path");
        assert_eq!(map.get(b"A"), Some(&b"1"[..]));
        assert_eq!(map.get_joined(b"a"), Some(b"1,2".to_vec()));
    }
}
