//! The per-VM cache of verified tokens, shaped for wasm: a token of a few
//! hundred bytes is hashed on a fraction of its bytes and compared in
//! words, not bytes.
//!
//! Measured on the bench's RS256 token (≈ 800 bytes) in the harness, the
//! cache hit of a `HashMap<String, _>` spent most of its instructions in
//! SipHash over the whole token and in `memcmp`, which wasm32's
//! compiler-builtins implement a byte at a time (issue 15, BENCHMARKS.md).
//! Here the map key is a keyed hash (`RandomState`, random keys per VM) of
//! the length, the first 16 and the last 48 bytes — the signature's end,
//! which differs between any two tokens — and a hit is confirmed by
//! comparing the whole token, 8 bytes a step and without an early exit.
//! Two tokens with the same key (an attacker cannot aim at one without the
//! keys) only evict each other.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};

/// Verified tokens and what verifying them produced.
#[derive(Debug, Clone, Default)]
pub(super) struct TokenCache<V> {
    hasher: RandomState,
    entries: HashMap<u64, (Box<str>, V)>,
    capacity: usize,
}

impl<V> TokenCache<V> {
    /// A cache of at most `capacity` tokens (emptied when full).
    pub fn new(capacity: usize) -> Self {
        Self {
            hasher: RandomState::new(),
            entries: HashMap::new(),
            capacity,
        }
    }

    fn key(&self, token: &str) -> u64 {
        let bytes = token.as_bytes();
        let mut h = self.hasher.build_hasher();
        h.write_usize(bytes.len());
        h.write(bytes.get(..16).unwrap_or(bytes));
        h.write(bytes.get(bytes.len().saturating_sub(48)..).unwrap_or(bytes));
        h.finish()
    }

    /// What `token` produced, if it is held.
    pub fn get(&self, token: &str) -> Option<&V> {
        let (held, value) = self.entries.get(&self.key(token))?;
        same(held.as_bytes(), token.as_bytes()).then_some(value)
    }

    /// Holds `value` for `token` (replacing a token with the same key).
    pub fn insert(&mut self, token: &str, value: V) {
        if self.entries.len() >= self.capacity {
            self.entries.clear();
        }
        self.entries.insert(self.key(token), (token.into(), value));
    }
}

/// Whether `a` and `b` are equal, compared 8 bytes a step to the end.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let word = |c: &[u8]| c.try_into().map(u64::from_ne_bytes).unwrap_or(0);
    let mut diff = 0u64;
    let (wa, wb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (wa.remainder(), wb.remainder());
    for (x, y) in wa.zip(wb) {
        diff |= word(x) ^ word(y);
    }
    for (x, y) in ra.iter().zip(rb) {
        diff |= u64::from(x ^ y);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_found_only_by_itself() {
        let mut cache = TokenCache::new(4);
        let token =
            "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJlLW9mLXRoZS10b2tlbi0xMjM0NTY3ODkw";
        cache.insert(token, 1);
        assert_eq!(cache.get(token), Some(&1));
        // Same length, first and last bytes: the same key, another token.
        let mut other = token.as_bytes().to_vec();
        other[30] ^= 1;
        let other = String::from_utf8(other).unwrap_or_default();
        assert_eq!(cache.key(&other), cache.key(token));
        assert_eq!(cache.get(&other), None);
        assert_eq!(cache.get(&token[..token.len() - 1]), None);
        assert_eq!(cache.get(""), None);
    }

    #[test]
    fn words_and_the_tail_are_compared() {
        for n in [0, 1, 7, 8, 9, 15, 16, 17, 800] {
            let a: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            assert!(same(&a, &a.clone()), "{n}");
            for i in 0..n {
                let mut b = a.clone();
                b[i] ^= 0x80;
                assert!(!same(&a, &b), "{n} {i}");
            }
        }
        assert!(!same(b"ab", b"abc"));
    }

    #[test]
    fn a_full_cache_starts_again() {
        let mut cache = TokenCache::new(2);
        cache.insert("a", 1);
        cache.insert("b", 2);
        cache.insert("c", 3);
        assert_eq!(cache.get("c"), Some(&3));
        assert_eq!(cache.get("a"), None);
    }
}
