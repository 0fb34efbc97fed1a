//! Path normalisation as Envoy's HTTP connection manager does it under
//! Istio's mesh `pathNormalization` (SPEC.md §AuthorizationPolicy 11, 12 and
//! Verified 5; envoyproxy/envoy `source/common/http/path_utility.cc`,
//! `conn_manager_utility.cc` `maybeNormalizePath`), then the path RBAC
//! matches.
//!
//! In Envoy's order: `%2F` `%5C` decoded (`DECODE_AND_MERGE_SLASHES`), then
//! the canonical path of Chromium's URL library (`BASE`: `\` → `/`, dot
//! segments — also `%2e` forms and, since Envoy 1.40, `.;x` / `..;x`
//! segments (here `%2e;x` too) — removed, unreserved `%XX` decoded, other escapes kept as
//! written, characters a path may not hold escaped), then `//` merged
//! (`MERGE_SLASHES`). The query is never touched. A `#`, an escaped NUL
//! (`%00`) or a path that does not start with `/` is malformed: Envoy
//! answers 400 `path_normalization_failed` (a `#` at every level).
//!
//! The character classes below were read off Envoy 1.40 itself (every
//! byte, raw and escaped, through `normalize_path: true`).
//!
//! For matching, the query is cut and each segment's `;` parameters are
//! stripped (Envoy's `ignore_path_parameters_in_path_matching`; Istio does
//! not set it, so here meshwasm is stricter than Istio: SPEC.md Verified 9).
//! Nothing allocates when the path is already in normal form.

use std::borrow::Cow;

use crate::config::PathNormalization;

/// The path cannot be normalised: Envoy answers 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// How Chromium's canonicaliser treats a byte of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Kept as it is, raw or escaped.
    Pass,
    /// Kept raw; decoded when escaped (unreserved characters).
    Unescape,
    /// Escaped when raw; kept escaped.
    Escape,
    /// Refused (NUL).
    Invalid,
    /// `%`, `.` and `\`: handled by the canonicaliser itself.
    Special,
}

fn class(b: u8) -> Class {
    match b {
        0 => Class::Invalid,
        b'%' | b'.' | b'\\' => Class::Special,
        b'-' | b'_' | b'~' => Class::Unescape,
        _ if b.is_ascii_alphanumeric() => Class::Unescape,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'/' | b':' | b';'
        | b'=' | b'@' | b'[' | b']' => Class::Pass,
        _ => Class::Escape,
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The byte `%XX` at `i` stands for.
fn decode_at(p: &[u8], i: usize) -> Option<u8> {
    if p.get(i) != Some(&b'%') {
        return None;
    }
    Some(hex(*p.get(i + 1)?)? << 4 | hex(*p.get(i + 2)?)?)
}

fn push_escaped(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push(b'%');
    out.extend(
        [b >> 4, b & 15]
            .iter()
            .filter_map(|n| HEX.get(usize::from(*n))),
    );
}

/// Length of the dot (`.` or `%2e`) at `i`, if there is one.
fn dot_at(p: &[u8], i: usize) -> Option<usize> {
    match p.get(i)? {
        b'.' => Some(1),
        b'%' if p
            .get(i + 1..i + 3)
            .is_some_and(|h| h.eq_ignore_ascii_case(b"2e")) =>
        {
            Some(3)
        }
        _ => None,
    }
}

fn is_slash(b: Option<&u8>) -> bool {
    matches!(b, Some(b'/' | b'\\'))
}

/// What a dot after a slash means (Chromium `ClassifyAfterDot`): `None`
/// for a dot inside a name, else whether it goes up and how much input
/// after the first dot it consumes.
fn after_dot(p: &[u8], j: usize) -> Option<(bool, usize)> {
    if j >= p.len() {
        return Some((false, 0));
    }
    if is_slash(p.get(j)) {
        return Some((false, 1));
    }
    let second = dot_at(p, j)?;
    let k = j + second;
    if k >= p.len() {
        return Some((true, second));
    }
    is_slash(p.get(k)).then_some((true, second + 1))
}

/// Drops the last segment of the output (Chromium `BackUpToPreviousSlash`).
fn back_up(out: &mut Vec<u8>) {
    let Some(mut i) = out.len().checked_sub(1) else {
        return;
    };
    if i == 0 {
        return;
    }
    i -= 1;
    while i > 0 && out.get(i) != Some(&b'/') {
        i -= 1;
    }
    out.truncate(i + 1);
}

/// The length of a `.`/`..` (also `%2e` forms) that starts `seg` and is
/// followed by `;`.
fn dots_before_parameters(seg: &[u8]) -> Option<usize> {
    let first = dot_at(seg, 0)?;
    let len = first + dot_at(seg, first).unwrap_or(0);
    (seg.get(len) == Some(&b';')).then_some(len)
}

/// Envoy 1.40 reads a segment `.;x` or `..;x` as `.` / `..`
/// (CVE-2026-73551, SPEC.md Verified 5): from the dots to the next `/`.
/// Envoy looks for them after `/` only and for literal dots only, so its
/// output may hold `.;x` segments that a second pass of its own (and a Java
/// server) reads as dot segments — after a `\` (`/a\..;x\b` →
/// `/a/..;x/b`) or from `%2e;x`; meshwasm reads those too (to the next `/`
/// or `\`), so one pass reaches what two of Envoy's give (docs/rbac.md).
fn dot_parameters(p: &[u8]) -> Cow<'_, [u8]> {
    let starts = |i: usize| i == 0 || matches!(p.get(i.wrapping_sub(1)), Some(b'/' | b'\\'));
    let at = |i: usize| dots_before_parameters(p.get(i..).unwrap_or_default());
    if !(0..p.len()).any(|i| starts(i) && at(i).is_some()) {
        return Cow::Borrowed(p);
    }
    let mut out = Vec::with_capacity(p.len());
    let mut i = 0;
    while let Some(&b) = p.get(i) {
        if let Some(len) = at(i).filter(|_| starts(i)) {
            out.extend_from_slice(p.get(i..i + len).unwrap_or_default());
            let after_backslash = i > 0 && p.get(i - 1) == Some(&b'\\');
            let end = |c: &u8| *c == b'/' || (after_backslash && *c == b'\\');
            let rest = p.get(i + len..).unwrap_or_default();
            i += len + rest.iter().position(end).unwrap_or(rest.len());
            continue;
        }
        out.push(b);
        i += 1;
    }
    Cow::Owned(out)
}

/// Whether the canonicaliser would leave `p` as it is (cheap scan).
fn is_canonical(p: &[u8]) -> bool {
    p.first() == Some(&b'/')
        && p.iter()
            .zip(std::iter::once(&0).chain(p.iter()))
            .all(|(b, prev)| {
                *b != b'%'
                    && *b != b'\\'
                    && !(*b == b'.' && *prev == b'/')
                    && !matches!(class(*b), Class::Escape | Class::Invalid)
            })
}

/// Chromium's `CanonicalizePath` as Envoy's `PathUtil::canonicalPath`
/// runs it on the path (no query); `None` when unchanged.
fn canonicalize(p: &[u8]) -> Result<Option<Vec<u8>>, Malformed> {
    if is_canonical(p) {
        return Ok(None);
    }
    let pre = dot_parameters(p);
    let input = pre.as_ref();
    let mut out = Vec::with_capacity(input.len() + 8);
    if !is_slash(input.first()) {
        out.push(b'/');
    }
    let mut i = 0;
    while let Some(&c) = input.get(i) {
        if let Some(len) = dot_at(input, i) {
            if out.last() == Some(&b'/') {
                match after_dot(input, i + len) {
                    None => out.push(b'.'),
                    Some((up, consumed)) => {
                        if up {
                            back_up(&mut out);
                        }
                        i += consumed;
                    }
                }
            } else {
                out.push(b'.');
            }
            i += len;
            continue;
        }
        match (c, class(c)) {
            (b'\\', _) => out.push(b'/'),
            (b'%', _) => match decode_at(input, i) {
                Some(v) => {
                    match class(v) {
                        Class::Unescape => out.push(v),
                        Class::Invalid => return Err(Malformed),
                        _ => out.extend_from_slice(input.get(i..i + 3).unwrap_or_default()),
                    }
                    i += 3;
                    continue;
                }
                None => out.push(b'%'),
            },
            (_, Class::Invalid) => return Err(Malformed),
            (0x80.., _) => {
                // Chromium escapes a UTF-8 character byte by byte and
                // refuses invalid UTF-8 (Envoy's codec refuses both first).
                let len = match c {
                    0xc2..=0xdf => 2,
                    0xe0..=0xef => 3,
                    0xf0..=0xf4 => 4,
                    _ => return Err(Malformed),
                };
                let ch = input.get(i..i + len).ok_or(Malformed)?;
                std::str::from_utf8(ch).map_err(|_| Malformed)?;
                ch.iter().for_each(|b| push_escaped(&mut out, *b));
                i += len;
                continue;
            }
            (_, Class::Escape) => push_escaped(&mut out, c),
            _ => out.push(c),
        }
        i += 1;
    }
    Ok((out != p).then_some(out))
}

/// `%2F` `%2f` → `/` and `%5C` `%5c` → `\` (Envoy `unescapeSlashes`).
fn unescape_slashes(p: &[u8]) -> Option<Vec<u8>> {
    let slash_at = |i: usize| match decode_at(p, i) {
        Some(b'/') => Some(b'/'),
        Some(b'\\') => Some(b'\\'),
        _ => None,
    };
    (0..p.len()).find_map(slash_at)?;
    let mut out = Vec::with_capacity(p.len());
    let mut i = 0;
    while let Some(&b) = p.get(i) {
        match slash_at(i) {
            Some(s) => {
                out.push(s);
                i += 3;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

/// `//…` → `/` (Envoy `mergeSlashes`); `None` when there are none.
fn merge_slashes(p: &[u8]) -> Option<Vec<u8>> {
    p.windows(2).any(|w| w == b"//").then(|| {
        let mut out = Vec::with_capacity(p.len());
        for &b in p {
            if !(b == b'/' && out.last() == Some(&b'/')) {
                out.push(b);
            }
        }
        out
    })
}

fn step<'a>(
    input: Cow<'a, [u8]>,
    f: impl FnOnce(&[u8]) -> Result<Option<Vec<u8>>, Malformed>,
) -> Result<Cow<'a, [u8]>, Malformed> {
    Ok(match f(&input)? {
        Some(v) => Cow::Owned(v),
        None => input,
    })
}

/// The `:path` Envoy forwards under `level` (the query unchanged);
/// borrowed when the path is already normal.
pub fn normalize(level: PathNormalization, path: &[u8]) -> Result<Cow<'_, [u8]>, Malformed> {
    if path.contains(&b'#') {
        return Err(Malformed);
    }
    if level == PathNormalization::None {
        return Ok(Cow::Borrowed(path));
    }
    let (part, query) = match path.iter().position(|b| *b == b'?') {
        Some(q) => path.split_at(q),
        None => (path, &b""[..]),
    };
    if part.first() != Some(&b'/') {
        return Err(Malformed);
    }
    let mut p = Cow::Borrowed(part);
    if level == PathNormalization::DecodeAndMergeSlashes {
        p = step(p, |p| Ok(unescape_slashes(p)))?;
    }
    p = step(p, canonicalize)?;
    if merges(level) {
        p = step(p, |p| Ok(merge_slashes(p)))?;
    }
    Ok(match p {
        Cow::Borrowed(_) => Cow::Borrowed(path),
        Cow::Owned(mut v) => {
            v.extend_from_slice(query);
            Cow::Owned(v)
        }
    })
}

/// Whether `level` merges slashes.
pub fn merges(level: PathNormalization) -> bool {
    matches!(
        level,
        PathNormalization::MergeSlashes | PathNormalization::DecodeAndMergeSlashes
    )
}

/// The path RBAC matches: without the query, each segment's `;`
/// parameters stripped, slashes merged again when `merge` (a stripped
/// segment may leave `//`).
pub fn for_matching(path: &[u8], merge: bool) -> Cow<'_, [u8]> {
    let end = path
        .iter()
        .position(|b| *b == b'?' || *b == b'#')
        .unwrap_or(path.len());
    let path = path.get(..end).unwrap_or_default();
    if !path.contains(&b';') {
        return Cow::Borrowed(path);
    }
    let mut out = Vec::with_capacity(path.len());
    for (n, seg) in path.split(|b| *b == b'/').enumerate() {
        if n > 0 {
            out.push(b'/');
        }
        let end = seg.iter().position(|b| *b == b';').unwrap_or(seg.len());
        out.extend_from_slice(seg.get(..end).unwrap_or_default());
    }
    match merge.then(|| merge_slashes(&out)).flatten() {
        Some(merged) => Cow::Owned(merged),
        None => Cow::Owned(out),
    }
}
