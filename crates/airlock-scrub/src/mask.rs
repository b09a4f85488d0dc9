//! Masking: what replaces a finding, numbering that is stable within a run,
//! the reversible mapping used by `unmask`, and statistics.

use crate::Category;
use airlock_types::Secret;
use aws_lc_rs::hmac;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// How one category of findings is masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mask {
    /// A typed placeholder: `[SECRET:github_pat]`, `[EMAIL_1]`.
    #[default]
    Placeholder,
    /// Remove the value entirely.
    Drop,
    /// A keyed hash (HMAC-SHA256, first 8 bytes as hex): `[EMAIL:3f9a…]`.
    /// Equal values give equal tags under the same key, so records can be
    /// correlated without revealing the value.
    Hash,
}

/// Counts of what was masked, per type and per category. Never values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Secrets masked.
    pub secrets: u64,
    /// Personal data masked.
    pub pii: u64,
    /// Count per type (`github_pat`, `EMAIL`, …).
    pub by_type: BTreeMap<String, u64>,
}

impl Stats {
    /// Total findings masked.
    pub fn total(&self) -> u64 {
        self.secrets + self.pii
    }

    pub(crate) fn add(&mut self, category: Category, kind: &str) {
        match category {
            Category::Secret => self.secrets += 1,
            Category::Pii => self.pii += 1,
        }
        match self.by_type.get_mut(kind) {
            Some(n) => *n += 1,
            None => {
                self.by_type.insert(kind.to_string(), 1);
            }
        }
    }

    /// Add another set of counts to this one.
    pub fn merge(&mut self, other: &Stats) {
        self.secrets += other.secrets;
        self.pii += other.pii;
        for (k, v) in &other.by_type {
            *self.by_type.entry(k.clone()).or_insert(0) += v;
        }
    }
}

/// The numbers of one kind: 1, 2, … in order of first appearance.
#[derive(Default)]
struct Numbering {
    by_digest: HashMap<Digest, u64, BuildDigestHasher>,
}

impl Numbering {
    /// The value's number: the one it got before, else the next one.
    fn number(&mut self, digest: [u8; 16]) -> u64 {
        let next = self.by_digest.len() as u64 + 1;
        *self.by_digest.entry(Digest(digest)).or_insert(next)
    }
}

/// A keyed fingerprint of a value (`Masker::fingerprint`). Its bytes are
/// already uniform under a secret key, so the map hashes it by its first 8
/// bytes instead of running SipHash again (equality compares all 16).
#[derive(PartialEq, Eq)]
struct Digest([u8; 16]);

impl std::hash::Hash for Digest {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(first));
    }
}

#[derive(Default)]
struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

type BuildDigestHasher = std::hash::BuildHasherDefault<DigestHasher>;

/// Lower-case hex digits, for [`Mask::Hash`] tags.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `n` in decimal, as `format!("{n}")` writes it.
fn push_decimal(mut n: u64, out: &mut Vec<u8>) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Per-run masking state: numbering (and, when reversible, the mapping).
pub(crate) struct Masker {
    secrets: Mask,
    pii: Mask,
    key: hmac::Key,
    reversible: bool,
    /// Per kind: numbers given so far, by keyed fingerprint of the value.
    /// Hashed with aHash under a random key, as the fingerprints are.
    numbers: HashMap<String, Numbering, ahash::RandomState>,
    /// Random keys of the two halves of a fingerprint.
    fingerprint_keys: [ahash::RandomState; 2],
    /// placeholder -> value (reversible mode only)
    mapping: HashMap<String, Secret<Vec<u8>>>,
    pub stats: Stats,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masker")
            .field("secrets", &self.secrets)
            .field("pii", &self.pii)
            .field("reversible", &self.reversible)
            .field("mapped", &self.mapping.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Masker {
    pub(crate) fn new(secrets: Mask, pii: Mask, key: hmac::Key, reversible: bool) -> Masker {
        Masker {
            secrets,
            pii,
            key,
            reversible,
            numbers: HashMap::default(),
            fingerprint_keys: [ahash::RandomState::new(), ahash::RandomState::new()],
            mapping: HashMap::new(),
            stats: Stats::default(),
        }
    }

    fn digest(&self, kind: &str, value: &[u8]) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(kind.as_bytes());
        ctx.update(&[0]);
        ctx.update(value);
        let tag = ctx.sign();
        let mut out = [0u8; 32];
        out.copy_from_slice(&tag.as_ref()[..32]);
        out
    }

    /// A 128-bit keyed fingerprint of a value, for numbering only: two
    /// aHash passes under this masker's random keys (drawn at run time, so
    /// values cannot be chosen to collide: aHash is built to resist HashDoS
    /// the way SipHash does, at about a third of SipHash-1-3's cost on the
    /// short values findings are; it was ≈ 1.5 % of a scan). It never
    /// leaves memory (the printed tag of [`Mask::Hash`] is an HMAC); it only
    /// has to tell values apart (a collision among n values has probability
    /// about n²/2¹²⁹), at a fraction of HMAC-SHA256's cost per finding.
    fn fingerprint(&self, value: &[u8]) -> [u8; 16] {
        use std::hash::{BuildHasher, Hasher};
        let mut out = [0u8; 16];
        for (half, keys) in out.chunks_exact_mut(8).zip(&self.fingerprint_keys) {
            let mut h = keys.build_hasher();
            h.write(value);
            half.copy_from_slice(&h.finish().to_le_bytes());
        }
        out
    }

    fn number(&mut self, kind: &str, digest: [u8; 16]) -> u64 {
        if let Some(k) = self.numbers.get_mut(kind) {
            return k.number(digest);
        }
        let mut k = Numbering::default();
        let n = k.number(digest);
        self.numbers.insert(kind.to_string(), k);
        n
    }

    /// The replacement for one finding; appends it to `out`. Written into
    /// `out` piece by piece (no `String` per finding: `format!` and its
    /// allocation were ≈ 6 % of a scan of finding-dense text); only a
    /// reversible masker copies the placeholder, to map it to its value.
    pub(crate) fn mask(&mut self, category: Category, kind: &str, value: &[u8], out: &mut Vec<u8>) {
        self.stats.add(category, kind);
        let mode = match category {
            Category::Secret => self.secrets,
            Category::Pii => self.pii,
        };
        let mark = out.len();
        let open: &[u8] = match category {
            Category::Secret => b"[SECRET:",
            Category::Pii => b"[",
        };
        match mode {
            Mask::Drop => return,
            Mask::Hash => {
                let d = self.digest(kind, value);
                out.extend_from_slice(open);
                out.extend_from_slice(kind.as_bytes());
                out.push(b':');
                for b in &d[..8] {
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 0xF)]);
                }
            }
            Mask::Placeholder if category == Category::Secret && !self.reversible => {
                out.extend_from_slice(open);
                out.extend_from_slice(kind.as_bytes());
            }
            Mask::Placeholder => {
                let d = self.fingerprint(value);
                let n = self.number(kind, d);
                out.extend_from_slice(open);
                out.extend_from_slice(kind.as_bytes());
                out.push(b'_');
                push_decimal(n, out);
            }
        }
        out.push(b']');
        if self.reversible && mode == Mask::Placeholder {
            // ASCII around `kind` (a `&str`): always valid UTF-8, so the
            // lossy conversion borrows and never replaces anything.
            let placeholder = String::from_utf8_lossy(&out[mark..]);
            if !self.mapping.contains_key(placeholder.as_ref()) {
                self.mapping
                    .insert(placeholder.into_owned(), Secret::new(value.to_vec()));
            }
        }
    }

    /// Replace every placeholder this masker produced with its value.
    pub(crate) fn unmask(&self, text: &[u8]) -> Vec<u8> {
        if self.mapping.is_empty() {
            return text.to_vec();
        }
        // The whole text is one placeholder (the gateway restores token by
        // token): a map lookup, not an automaton built per call. Same
        // answer: a leftmost-longest search would match all of it.
        if let Some(v) = std::str::from_utf8(text)
            .ok()
            .and_then(|t| self.mapping.get(t))
        {
            return v.expose().clone();
        }
        let keys: Vec<&String> = self.mapping.keys().collect();
        let Ok(ac) = aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .build(&keys)
        else {
            return text.to_vec();
        };
        let mut out = Vec::with_capacity(text.len());
        let mut last = 0;
        for m in ac.find_iter(text) {
            out.extend_from_slice(&text[last..m.start()]);
            match self.mapping.get(keys[m.pattern().as_usize()]) {
                Some(v) => out.extend_from_slice(v.expose()),
                None => out.extend_from_slice(&text[m.start()..m.end()]),
            }
            last = m.end();
        }
        out.extend_from_slice(&text[last..]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_is_what_format_writes() {
        for n in [0, 1, 9, 10, 99, 100, 12_345, u64::from(u32::MAX), u64::MAX] {
            let mut out = b"x".to_vec();
            push_decimal(n, &mut out);
            assert_eq!(out, format!("x{n}").into_bytes());
        }
    }

    #[test]
    fn placeholders_as_written() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"k");
        let mut m = Masker::new(Mask::Placeholder, Mask::Placeholder, key.clone(), false);
        let mut out = Vec::new();
        m.mask(Category::Secret, "github_pat", b"v1", &mut out);
        m.mask(Category::Pii, "EMAIL", b"a@b.c", &mut out);
        m.mask(Category::Pii, "EMAIL", b"d@e.f", &mut out);
        m.mask(Category::Pii, "EMAIL", b"a@b.c", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "[SECRET:github_pat][EMAIL_1][EMAIL_2][EMAIL_1]"
        );

        let mut m = Masker::new(Mask::Placeholder, Mask::Drop, key.clone(), true);
        let mut out = Vec::new();
        m.mask(Category::Secret, "aws", b"v1", &mut out);
        m.mask(Category::Pii, "EMAIL", b"a@b.c", &mut out);
        m.mask(Category::Secret, "aws", b"v1", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "[SECRET:aws_1][SECRET:aws_1]"
        );
        assert_eq!(m.unmask(b"<[SECRET:aws_1]>"), b"<v1>".to_vec());
        assert_eq!(m.stats.total(), 3);

        let mut m = Masker::new(Mask::Hash, Mask::Hash, key, false);
        let mut out = Vec::new();
        m.mask(Category::Pii, "EMAIL", b"a@b.c", &mut out);
        let d = m.digest("EMAIL", b"a@b.c");
        let hexed: String = d[..8].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(String::from_utf8(out).unwrap(), format!("[EMAIL:{hexed}]"));
    }
}
