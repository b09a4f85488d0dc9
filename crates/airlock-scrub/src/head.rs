//! Cheap necessary conditions on where a match can start, derived from a
//! rule's pattern, so the engine can rule out most keyword occurrences
//! without running a regex there.
//!
//! [`head`] gives, for the first few byte offsets of any match, the set of
//! bytes that can appear at that offset (an over-approximation: a real match
//! always passes). [`assignment_follows`] is the same idea for the shape
//! every `context` rule's pattern has after its name.

use regex_syntax::hir::{Class, Hir, HirKind};

/// A set of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ByteSet([u64; 4]);

impl ByteSet {
    const ALL: ByteSet = ByteSet([u64::MAX; 4]);
    const NONE: ByteSet = ByteSet([0; 4]);

    /// The set of one byte.
    fn of(b: u8) -> ByteSet {
        let mut s = ByteSet::NONE;
        s.insert_range(b, b);
        s
    }

    fn insert_range(&mut self, lo: u8, hi: u8) {
        for b in lo..=hi {
            self.0[usize::from(b / 64)] |= 1 << (b % 64);
        }
    }

    fn union(self, o: ByteSet) -> ByteSet {
        let mut u = self;
        for (a, b) in u.0.iter_mut().zip(o.0) {
            *a |= b;
        }
        u
    }

    #[inline]
    pub(crate) fn contains(&self, b: u8) -> bool {
        self.0[usize::from(b / 64)] >> (b % 64) & 1 != 0
    }
}

/// Offsets examined at most.
pub(crate) const HEAD_LEN: usize = 12;

/// `sets[j]` holds every byte that can be at offset `j` of a match of `h`,
/// for each `j` below the returned length (every match is at least that
/// long). Look-around is zero-width and ignored (an over-approximation).
pub(crate) fn head(h: &Hir, k: usize) -> Vec<ByteSet> {
    if k == 0 {
        return Vec::new();
    }
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => Vec::new(),
        HirKind::Literal(lit) => lit.0.iter().take(k).map(|&b| ByteSet::of(b)).collect(),
        HirKind::Class(Class::Bytes(c)) => {
            let mut s = ByteSet::NONE;
            for r in c.ranges() {
                s.insert_range(r.start(), r.end());
            }
            vec![s]
        }
        HirKind::Class(Class::Unicode(c)) => {
            // One byte per match only when every member is ASCII.
            let mut s = ByteSet::NONE;
            for r in c.ranges() {
                match (u8::try_from(r.start()), u8::try_from(r.end())) {
                    (Ok(lo), Ok(hi)) if hi < 0x80 => s.insert_range(lo, hi),
                    _ => return Vec::new(),
                }
            }
            vec![s]
        }
        HirKind::Capture(c) => head(&c.sub, k),
        HirKind::Repetition(r) => {
            if r.min == 0 {
                return Vec::new();
            }
            match fixed_len(&r.sub) {
                // Fixed-length copies: the first `min` are all present.
                Some(len) if len > 0 => {
                    let one = padded(&r.sub, len, k);
                    one.iter()
                        .copied()
                        .cycle()
                        .take((len * r.min as usize).min(k))
                        .collect()
                }
                _ => head(&r.sub, k),
            }
        }
        HirKind::Concat(parts) => {
            let mut out = Vec::new();
            for p in parts {
                if out.len() >= k {
                    break;
                }
                match fixed_len(p) {
                    Some(len) => out.extend(padded(p, len, k - out.len())),
                    None => {
                        // A variable-length part: its own head is certain,
                        // what follows it is at no fixed offset.
                        out.extend(head(p, k - out.len()));
                        break;
                    }
                }
            }
            out.truncate(k);
            out
        }
        HirKind::Alternation(alts) => {
            let heads: Vec<Vec<ByteSet>> = alts.iter().map(|a| head(a, k)).collect();
            let n = heads.iter().map(Vec::len).min().unwrap_or(0);
            (0..n)
                .map(|j| heads.iter().fold(ByteSet::NONE, |acc, h| acc.union(h[j])))
                .collect()
        }
    }
}

/// The length of every match of `h`, when it is fixed.
fn fixed_len(h: &Hir) -> Option<usize> {
    let p = h.properties();
    match (p.minimum_len(), p.maximum_len()) {
        (Some(a), Some(b)) if a == b => Some(a),
        _ => None,
    }
}

/// `head(h)` for a part of fixed length `len`, padded with "any byte" to
/// `min(len, k)` offsets, so that what follows it keeps its offset.
fn padded(h: &Hir, len: usize, k: usize) -> Vec<ByteSet> {
    let mut v = head(h, k.min(len));
    v.resize(k.min(len), ByteSet::ALL);
    v
}

/// At most this many bytes in a [`Needs`] (what `memchr3` looks for).
const NEEDS_MAX: u32 = 3;
/// Candidate sets kept per sub-pattern while [`needs`] folds a pattern.
const NEEDS_KEEP: usize = 8;

/// A few bytes at least one of which every match of a pattern holds: a
/// window that holds none of them holds no match, whatever the regex would
/// do there (the bytes a match consumes lie inside the range searched).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Needs {
    bytes: [u8; NEEDS_MAX as usize],
    n: u8,
}

impl Needs {
    /// Whether `hay` holds one of the bytes.
    #[inline]
    pub(crate) fn found_in(&self, hay: &[u8]) -> bool {
        let [a, b, c] = self.bytes;
        match self.n {
            1 => memchr::memchr(a, hay).is_some(),
            2 => memchr::memchr2(a, b, hay).is_some(),
            _ => memchr::memchr3(a, b, c, hay).is_some(),
        }
    }

    /// Whether every occurrence of `word` (ASCII case-insensitive) holds
    /// one of the bytes: a window around a keyword then always passes.
    pub(crate) fn in_every_occurrence_of(&self, word: &str) -> bool {
        word.bytes()
            .any(|b| self.contains(b.to_ascii_lowercase()) && self.contains(b.to_ascii_uppercase()))
    }

    /// Whether `b` is one of the bytes.
    pub(crate) fn contains(&self, b: u8) -> bool {
        self.bytes[..usize::from(self.n)].contains(&b)
    }
}

impl ByteSet {
    fn len(&self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
    }

    fn bytes(&self) -> impl Iterator<Item = u8> + '_ {
        self.0.iter().enumerate().flat_map(|(i, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                let b = w.trailing_zeros();
                (b < 64).then(|| {
                    w &= w - 1;
                    (i * 64) as u8 + b as u8
                })
            })
        })
    }

    /// How often text is expected to hold one of the bytes (rough, higher
    /// is more often): the rarest set makes the cheapest-to-pass filter.
    fn commonness(&self) -> u32 {
        self.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b' ' => 8,
                b'0'..=b'9' => 6,
                b'A'..=b'Z' | b'\n' => 3,
                _ => 2,
            })
            .sum()
    }
}

/// The [`Needs`] of `h`: the rarest set of at most three bytes found such
/// that every match of `h` holds one of them, or `None` (a pattern that
/// can match with any bytes, or whose required bytes are too many).
/// Look-around is zero-width and requires nothing.
pub(crate) fn needs(h: &Hir) -> Option<Needs> {
    // `required` gives its sets rarest first.
    let best = *required(h).first()?;
    let mut bytes = [0u8; NEEDS_MAX as usize];
    let mut n = 0u8;
    for b in best.bytes() {
        bytes[usize::from(n)] = b;
        n += 1;
    }
    Some(Needs { bytes, n })
}

/// Byte sets of at most `NEEDS_MAX` bytes, each of which every match of
/// `h` meets (holds a byte of): the few rarest found, rarest first.
fn required(h: &Hir) -> Vec<ByteSet> {
    let sets = match h.kind() {
        HirKind::Empty | HirKind::Look(_) => Vec::new(),
        HirKind::Literal(lit) => lit.0.iter().map(|&b| ByteSet::of(b)).collect(),
        // A class's bytes, when there are few. A class of scalars (an
        // alternation of single characters becomes one even with Unicode
        // off) counts only when all are ASCII: beyond, a scalar is more
        // than one byte.
        HirKind::Class(c) => {
            let mut s = ByteSet::NONE;
            let few = match c {
                Class::Bytes(c) => add_few(
                    &mut s,
                    c.ranges().iter().map(|r| (r.start(), r.end())),
                    0xFF,
                ),
                Class::Unicode(c) => add_few(
                    &mut s,
                    c.ranges().iter().map(|r| (r.start(), r.end())),
                    0x7F,
                ),
            };
            if few && s.len() > 0 {
                vec![s]
            } else {
                Vec::new()
            }
        }
        HirKind::Capture(c) => required(&c.sub),
        HirKind::Repetition(r) if r.min == 0 => Vec::new(),
        HirKind::Repetition(r) => required(&r.sub),
        // Every part is matched: any part's set will do.
        HirKind::Concat(parts) => parts.iter().flat_map(required).collect(),
        // One branch is matched: a set is required when it contains one
        // required set of each branch.
        HirKind::Alternation(alts) => {
            let mut acc: Vec<ByteSet> = vec![ByteSet::NONE];
            for a in alts {
                let mine = required(a);
                let mut next = Vec::new();
                for x in &acc {
                    for y in &mine {
                        let u = x.union(*y);
                        if u.len() <= NEEDS_MAX {
                            next.push(u);
                        }
                    }
                }
                acc = keep_rarest(next);
                if acc.is_empty() {
                    break;
                }
            }
            acc
        }
    };
    keep_rarest(sets)
}

/// Adds a class's ranges to `s`: false when they hold more than
/// `NEEDS_MAX` values, or one above `top`.
fn add_few<T: Into<u32>>(s: &mut ByteSet, ranges: impl Iterator<Item = (T, T)>, top: u32) -> bool {
    let mut count = 0;
    for (lo, hi) in ranges {
        let (lo, hi) = (lo.into(), hi.into());
        count += hi - lo + 1;
        if count > NEEDS_MAX || hi > top {
            return false;
        }
        s.insert_range(lo as u8, hi as u8);
    }
    true
}

fn keep_rarest(sets: Vec<ByteSet>) -> Vec<ByteSet> {
    // Keyed once (the key reads every byte of a set), by the set last so
    // that equal sets end up next to each other.
    let mut keyed: Vec<(u32, u32, [u64; 4])> = sets
        .into_iter()
        .map(|s| (s.commonness(), s.len(), s.0))
        .collect();
    keyed.sort_unstable();
    keyed.dedup();
    keyed.truncate(NEEDS_KEEP);
    keyed.into_iter().map(|k| ByteSet(k.2)).collect()
}

/// Whether `hay[p..]` can open a match by the bytes at its first offsets.
#[inline]
pub(crate) fn head_ok(sets: &[ByteSet], hay: &[u8], p: usize) -> bool {
    sets.iter()
        .enumerate()
        .all(|(j, s)| hay.get(p + j).is_some_and(|&b| s.contains(b)))
}

/// A byte a `context` rule's name stretch may hold (`[A-Za-z0-9_.\-]`).
pub(crate) fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

/// The shape after a `context` rule's name (`rules::context_pattern`):
/// name bytes, at most 2 of `"'` `]` (each perhaps escaped with `\`), at
/// most 12 spaces or tabs, then an operator starting with `=`, `:`, `?`,
/// `+`, `.` or `,`, or a type word, blanks and `=`. When every name consists of name
/// bytes, a match at `p` starts with one run of name bytes (the name, then
/// up to 24 more) of at most `max_run` bytes, and since the four byte
/// classes are disjoint, each stretch is a maximal run: this is a necessary
/// condition for a match at `p`.
pub(crate) fn assignment_follows(hay: &[u8], p: usize, max_run: usize) -> bool {
    let run = |from: usize, limit: usize, class: fn(u8) -> bool| {
        let mut i = from;
        while i < hay.len() && class(hay[i]) {
            i += 1;
            if i - from > limit {
                return None;
            }
        }
        Some(i)
    };
    // The type of `var apiToken string = …` may follow the name's stretch
    // with no blank between (its bytes are name bytes too): a run up to 16
    // bytes longer than a name is then that type, and only blanks and `=`
    // may follow it.
    let Some(i) = run(p, max_run + 16, is_name_byte) else {
        return false;
    };
    if i - p > max_run {
        let Some(k) = run(i, 4, |b| matches!(b, b' ' | b'\t')) else {
            return false;
        };
        return k > i && hay.get(k) == Some(&b'=');
    }
    let q = i;
    let Some(i) = run(i, 4, |b| matches!(b, b'"' | b'\'' | b']' | b'\\')) else {
        return false;
    };
    // At most two quotes or brackets, each perhaps escaped.
    if i - q > 2 && hay[q..i].iter().filter(|&&b| b != b'\\').count() > 2 {
        return false;
    }
    let Some(i) = run(i, 12, |b| matches!(b, b' ' | b'\t')) else {
        return false;
    };
    match hay.get(i) {
        Some(b'=' | b':' | b'?' | b'+' | b'.' | b',') => true,
        // A type between the name and `=`: `var apiToken string = "…"`.
        Some(b) if b.is_ascii_alphabetic() => {
            let Some(j) = run(i, 16, |b| b.is_ascii_alphanumeric() || b == b'_') else {
                return false;
            };
            let Some(k) = run(j, 4, |b| matches!(b, b' ' | b'\t')) else {
                return false;
            };
            k > j && hay.get(k) == Some(&b'=')
        }
        _ => false,
    }
}

/// What must follow the name in a keyword-anchored rule whose pattern is
/// one of the built-in patterns below (tied to the exact pattern text, like
/// a scanner): a cheap necessary condition on the bytes after a keyword
/// occurrence, so that most occurrences (`key` in prose, `token` in code)
/// are ruled out before the forward matcher runs.
///
/// Both patterns open with `(?i:password|…|auth)[A-Za-z0-9_\-]{0,16}` and
/// continue with a byte outside that class, so the name of a match is the
/// maximal run of `[A-Za-z0-9_\-]` bytes at its start, of at most
/// 10 + 16 bytes (`credential` is the longest name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Follows {
    /// `secret_call_argument`: `["']?[ \t]{0,2}[,(][ \t]{0,2}["']`.
    CallArgument,
    /// `xml_secret_element`: `>` or `["'][ \t]{1,3}(?i:value)=["']`.
    XmlElement,
}

const FOLLOWS_NAMES: &str =
    r#"(?i:password|passwd|pwd|pass|secret|token|key|credential|auth)[A-Za-z0-9_\-]{0,16}"#;
const FOLLOWS_SECRET: &str = r#"(?P<secret>[A-Za-z0-9_\-+/=.~!@#$%^&*?:]{8,128})"#;
/// The longest name run: `credential` and 16 more bytes.
const FOLLOWS_RUN: usize = 10 + 16;

/// The names `FOLLOWS_NAMES` opens with: every match of a `Follows`
/// pattern starts with one of them (ASCII case-insensitively).
const FOLLOWS_NAME_LIST: [&str; 9] = [
    "password",
    "passwd",
    "pwd",
    "pass",
    "secret",
    "token",
    "key",
    "credential",
    "auth",
];

impl Follows {
    /// The names a match of the pattern starts with (the alternation
    /// `for_pattern` found at its start).
    pub(crate) fn names(self) -> &'static [&'static str] {
        &FOLLOWS_NAME_LIST
    }

    /// The condition derived from exactly this pattern, if any.
    pub(crate) fn for_pattern(pattern: &str) -> Option<Follows> {
        let rest = pattern.strip_prefix(FOLLOWS_NAMES)?;
        match rest {
            _ if rest
                == format!(r#"["']?[ \t]{{0,2}}[,(][ \t]{{0,2}}["']{FOLLOWS_SECRET}["']"#) =>
            {
                Some(Follows::CallArgument)
            }
            _ if rest
                == format!(
                    r#"(?:>(?:\r?\n[ \t]{{0,16}})?|["'][ \t]{{1,3}}(?i:value)=["']){FOLLOWS_SECRET}(?:["'<]|\r?\n)"#
                ) =>
            {
                Some(Follows::XmlElement)
            }
            _ => None,
        }
    }

    /// Whether a match can start at `p` by the bytes after its name.
    #[inline]
    pub(crate) fn ok(self, hay: &[u8], p: usize) -> bool {
        let name = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
        let mut q = p;
        while hay.get(q).is_some_and(|&b| name(b)) {
            q += 1;
            if q - p > FOLLOWS_RUN {
                return false;
            }
        }
        let quote = |i: usize| matches!(hay.get(i), Some(b'"' | b'\''));
        let blanks = |mut i: usize, max: usize| {
            let from = i;
            while i - from < max && matches!(hay.get(i), Some(b' ' | b'\t')) {
                i += 1;
            }
            i
        };
        match self {
            Follows::CallArgument => {
                let i = blanks(q + usize::from(quote(q)), 2);
                matches!(hay.get(i), Some(b',' | b'(')) && quote(blanks(i + 1, 2))
            }
            Follows::XmlElement => {
                if hay.get(q) == Some(&b'>') {
                    return true;
                }
                let i = blanks(q + 1, 3);
                quote(q)
                    && i > q + 1
                    && hay
                        .get(i..i + 6)
                        .is_some_and(|v| v.eq_ignore_ascii_case(b"value="))
                    && quote(i + 6)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use regex_automata::{Anchored, Input, meta};

    fn parse(p: &str) -> Hir {
        regex_syntax::ParserBuilder::new()
            .unicode(false)
            .utf8(false)
            .build()
            .parse(p)
            .expect("pattern")
    }

    fn shown(sets: &[ByteSet]) -> Vec<String> {
        sets.iter()
            .map(|s| {
                if *s == ByteSet::ALL {
                    return "*".into();
                }
                s.bytes().map(char::from).collect()
            })
            .collect()
    }

    #[test]
    fn examples() {
        let sets = head(&parse(r"\bpat[A-Za-z0-9]{2}\.x"), HEAD_LEN);
        let alnum: String = ('0'..='9').chain('A'..='Z').chain('a'..='z').collect();
        assert_eq!(shown(&sets), ["p", "a", "t", &alnum, &alnum, ".", "x"]);
        // Variable length stops the fixed offsets; alternation unions.
        let sets = head(&parse(r"(?:ab|cd)e?f"), HEAD_LEN);
        assert_eq!(shown(&sets), ["ac", "bd"]);
        let sets = head(&parse(r"(?i:ok)[0-9]{1,3}"), HEAD_LEN);
        assert_eq!(shown(&sets), ["Oo", "Kk", "0123456789"]);
        assert!(head(&parse(r"x?y"), HEAD_LEN).is_empty());
        assert!(assignment_follows(b"api_key = 'v'", 0, 31));
        assert!(assignment_follows(b"TOKEN\"]:", 0, 29));
        assert!(!assignment_follows(b"token test", 0, 29));
        assert!(!assignment_follows(b"token'''=", 0, 29));
        assert!(!assignment_follows(b"token             =", 0, 29));
        // The shapes of session 12: aligned columns, make, PHP, CSV, escaped
        // JSON quotes, a type before `=`.
        assert!(assignment_follows(b"token     =", 0, 29));
        assert!(assignment_follows(b"TOKEN ::= \"v\"", 0, 29));
        assert!(assignment_follows(b"token .= 'v'", 0, 29));
        assert!(assignment_follows(b"token,v,", 0, 29));
        assert!(assignment_follows(b"token\\\": \\\"v", 0, 29));
        assert!(assignment_follows(b"Token string = \"v\"", 0, 29));
        assert!(!assignment_follows(b"token string value", 0, 29));
        assert!(!assignment_follows(b"token", 0, 29));
        // A type glued to a name of the longest stretch: `key` + 24 name
        // bytes + `aa0a000a0`, then ` = `.
        let glued = format!("key{}aa0a000a0 = 0AaAA00AAAaAaa", "-0".repeat(12));
        assert!(assignment_follows(glued.as_bytes(), 0, 27));
        assert!(!assignment_follows(
            format!("{glued}x").replace(" = ", "x=").as_bytes(),
            0,
            27
        ));
    }

    /// Patterns with every kind of node, over a small alphabet.
    fn pattern() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            "[abc]{1,3}",
            Just("[a-b]".to_string()),
            Just("(?i:ab)".to_string()),
            Just(r"\b".to_string()),
            Just("^".to_string()),
            Just(".".to_string()),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 1..4).prop_map(|v| v.concat()),
                prop::collection::vec(inner.clone(), 1..3)
                    .prop_map(|v| format!("(?:{})", v.join("|"))),
                (inner.clone(), 0u32..3, 0u32..3).prop_map(|(p, a, b)| format!(
                    "(?:{p}){{{},{}}}",
                    a,
                    a + b
                )),
                inner.prop_map(|p| format!("({p})")),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

        /// Wherever the regex matches (anchored), the head conditions hold
        /// and the match holds one of the bytes its pattern needs.
        #[test]
        fn every_match_passes_its_head_and_holds_its_needs(pat in pattern(), hay in "[abcAB .]{0,16}") {
            let re = meta::Regex::builder()
                .syntax(regex_automata::util::syntax::Config::new().unicode(false).utf8(false))
                .build(&pat)
                .expect("compiles");
            let sets = head(&parse(&pat), HEAD_LEN);
            let needed = needs(&parse(&pat));
            let hay = hay.as_bytes();
            for p in 0..=hay.len() {
                let input = Input::new(hay).range(p..).anchored(Anchored::Yes);
                if let Some(m) = re.search(&input) {
                    prop_assert!(head_ok(&sets, hay, p), "{pat} at {p} in {:?}: {:?}", hay, shown(&sets));
                    if let Some(n) = needed {
                        prop_assert!(n.found_in(&hay[m.range()]), "{pat} at {p} in {:?}: {:?}", hay, n);
                    }
                }
            }
        }
    }

    fn needs_of(p: &str) -> Option<String> {
        let n = needs(&parse(p))?;
        Some(
            n.bytes[..usize::from(n.n)]
                .iter()
                .map(|&b| char::from(b))
                .collect(),
        )
    }

    #[test]
    fn needs_examples() {
        // An extension's marker: every branch holds an x.
        assert_eq!(
            needs_of(r"\d{7}[ \t]{0,2}(?i:x|ext\.?|extension)[ \t]{0,2}\d{1,6}").as_deref(),
            Some("Xx")
        );
        // The rarest part of a concatenation; an optional part requires nothing.
        assert_eq!(needs_of(r"[a-z]+@?[a-z]+\.com").as_deref(), Some("."));
        assert_eq!(needs_of(r"abc").as_deref(), Some("a"));
        assert_eq!(needs_of(r"a|b|c").as_deref(), Some("abc"));
        // Four bytes are too many to look for at once.
        assert_eq!(needs_of(r"a|b|c|d"), None);
        assert_eq!(needs_of(r"(?i:ab|cd)"), None);
        // What can match anywhere, or match nothing, needs nothing.
        assert_eq!(needs_of(r"\d{4,8}"), None);
        assert_eq!(needs_of(r"x?"), None);
        assert_eq!(needs_of(r"^|,"), None);
        // A repetition that must happen keeps its body's needs.
        assert_eq!(needs_of(r"(?:k=){2,3}").as_deref(), Some("="));
    }

    /// Every built-in rule whose pattern strings can be generated, with
    /// those strings (look-around dropped) wrapped in random bytes.
    fn builtin_rule_soup() -> impl Strategy<Value = (usize, Vec<u8>)> {
        let rules = all_builtin_rules();
        let gens: Vec<proptest::strategy::BoxedStrategy<(usize, Vec<u8>)>> = rules
            .iter()
            .enumerate()
            .filter(|(_, r)| needs(&parse(&r.pattern)).is_some())
            .filter_map(|(k, r)| {
                let p = r.pattern.replace("\\b", "").replace("|$)", ")");
                proptest::string::bytes_regex(&p)
                    .ok()
                    .map(|s| s.prop_map(move |b| (k, b)).boxed())
            })
            .collect();
        assert!(gens.len() > 40, "{} rules generate", gens.len());
        (
            proptest::strategy::Union::new(gens),
            prop::collection::vec(any::<u8>(), 0..4),
            prop::collection::vec(any::<u8>(), 0..4),
        )
            .prop_map(|((k, sample), pre, post)| {
                let mut hay = pre;
                hay.extend_from_slice(&sample);
                hay.extend_from_slice(&post);
                (k, hay)
            })
    }

    fn all_builtin_rules() -> &'static [crate::rules::Rule] {
        static RULES: std::sync::OnceLock<Vec<crate::rules::Rule>> = std::sync::OnceLock::new();
        RULES.get_or_init(|| {
            let mut v = crate::rules::load(
                "secrets.toml",
                crate::rules::BUILTIN_SECRETS,
                crate::Category::Secret,
                false,
            )
            .expect("secrets load");
            v.extend(
                crate::rules::load(
                    "pii.toml",
                    crate::rules::BUILTIN_PII,
                    crate::Category::Pii,
                    false,
                )
                .expect("pii load"),
            );
            v
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Every match of a built-in rule, on strings of its own pattern,
        /// holds one of the bytes its pattern needs.
        #[test]
        fn builtin_matches_hold_their_needs((k, hay) in builtin_rule_soup()) {
            let rule = &all_builtin_rules()[k];
            let n = needs(&parse(&rule.pattern)).expect("filtered");
            for m in rule.regex().find_iter(&hay) {
                prop_assert!(n.found_in(&hay[m.range()]), "{} in {:?}", rule.id, String::from_utf8_lossy(&hay));
            }
        }
    }

    fn follows_rules() -> Vec<crate::rules::Rule> {
        crate::rules::load(
            "secrets.toml",
            crate::rules::BUILTIN_SECRETS,
            crate::Category::Secret,
            false,
        )
        .expect("secrets load")
        .into_iter()
        .filter(|r| r.follows.is_some())
        .collect()
    }

    #[test]
    fn follows_names_are_the_patterns_alternation() {
        assert_eq!(
            FOLLOWS_NAMES,
            format!(
                "(?i:{})[A-Za-z0-9_\\-]{{0,16}}",
                FOLLOWS_NAME_LIST.join("|")
            )
        );
        // Both rules are tried anchored at their keywords.
        for r in follows_rules() {
            assert!(r.starts_with_keyword && r.anchored_only(), "{}", r.id);
        }
    }

    #[test]
    fn follows_is_derived_for_its_two_rules() {
        let ids: Vec<(String, Option<Follows>)> = follows_rules()
            .into_iter()
            .map(|r| (r.id, r.follows))
            .collect();
        assert_eq!(
            ids,
            [
                ("secret_call_argument".into(), Some(Follows::CallArgument)),
                ("xml_secret_element".into(), Some(Follows::XmlElement)),
            ]
        );
        let call = Follows::CallArgument;
        assert!(call.ok(b"setPassword(\"x", 3));
        assert!(call.ok(b"API_KEY', 'x", 4));
        assert!(call.ok(b"key\"  ,  \"x", 0));
        assert!(!call.ok(b"key\"   ,\"x", 0));
        assert!(!call.ok(b"key = 'x'", 0));
        assert!(!call.ok(b"keyboard_layout_with_a_very_long_name('x", 0));
        let xml = Follows::XmlElement;
        assert!(xml.ok(b"password>x", 0));
        assert!(xml.ok(b"ApiKey\" value=\"x", 3));
        assert!(xml.ok(b"key'\t\t\tVALUE='x", 0));
        assert!(!xml.ok(b"key\"    value=\"x", 0));
        assert!(!xml.ok(b"key\"value=\"x", 0));
        assert!(!xml.ok(b"token\": \"x", 0));
    }

    /// Names, quotes, blanks and operators around the two rules' forms.
    fn follows_soup() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            proptest::sample::select(&["key", "Token", "PASS", "pwd", "credential", "auth"][..])
                .prop_map(str::to_string),
            "[A-Za-z0-9_\\-]{1,20}",
            "[\"' \\t,(>=<:]{1,3}",
            Just(" value=".to_string()),
            Just("\" VALUE='".to_string()),
            "[A-Za-z0-9+/=.~!@#$%^&*?:]{6,12}",
        ];
        prop::collection::vec(piece, 0..10).prop_map(|v| v.concat().into_bytes())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        /// A necessary condition: wherever a rule matches (anchored), its
        /// follows condition holds.
        #[test]
        fn every_match_passes_its_follows(hay in follows_soup()) {
            for rule in follows_rules() {
                let f = rule.follows.expect("filtered");
                for p in 0..=hay.len() {
                    let input = Input::new(&hay).range(p..).anchored(Anchored::Yes);
                    if rule.regex().search(&input).is_some() {
                        prop_assert!(f.ok(&hay, p), "{} at {p} in {:?}", rule.id, String::from_utf8_lossy(&hay));
                    }
                }
            }
        }
    }
}
