//! Hand-written matchers for hot rules. Each one implements exactly one
//! rule regex, which stays the definition: a rule may name a scanner only
//! when its pattern is that scanner's pattern (checked at load), and the
//! tests compare every scanner with its regex on random and realistic
//! input (`find_iter` over a range: same matches, same spans).
//!
//! Besides speed, a scanner saves compiling its regex: the private-key
//! blocks (`{64,16384}?` bodies) and `authorization_bearer` (`{20,2000}`)
//! each cost 10–14 ms of NFA construction on first use, a large share of a
//! short `airlock scan`.

use memchr::memmem;

/// A hand-written matcher named by a rule's `scanner` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scanner {
    /// The `ipv4` rule's dotted quad, [`IPV4_PATTERN`].
    Ipv4,
    /// A private-key block `BEGIN [class]{64,16384}? END` (one of
    /// [`FENCED`], named `pem` in rule files).
    Fenced(&'static Fenced),
    /// The `authorization_bearer` rule, [`BEARER_PATTERN`].
    Bearer,
    /// The `aws_session_token` rule, [`AWS_SESSION_PATTERN`].
    AwsSession,
}

/// The regex the `Ipv4` scanner implements (the built-in `ipv4` rule).
pub(crate) const IPV4_PATTERN: &str = r"(?:^|[^\w.])(?P<secret>(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3})(?:[^\w.]|\.(?:[^\w]|$)|$)";

/// The regex the `Bearer` scanner implements (the built-in
/// `authorization_bearer` rule).
pub(crate) const BEARER_PATTERN: &str =
    r"(?i:bearer)\s{1,3}(?P<secret>[A-Za-z0-9_\-.~+/]{20,2000}={0,2})";

/// The regex the `AwsSession` scanner implements (the built-in
/// `aws_session_token` rule).
pub(crate) const AWS_SESSION_PATTERN: &str =
    r"(?:IQoJb3JpZ2luX2Vj|FwoGZXIvYXdz)[A-Za-z0-9/+]{80,2000}={0,2}";

/// A block shape: the literal `begin`, then a body of `FENCE_MIN` to
/// `FENCE_MAX` bytes of one class, as few as possible (lazy), then the
/// literal `end`; no capture group. `pattern` is that regex written out.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Fenced {
    /// The regex this shape is (built from the other fields by [`fenced!`]).
    pub(crate) pattern: &'static str,
    begin: &'static [u8],
    end: &'static [u8],
    /// Bytes allowed in the body besides `[A-Za-z0-9+/=\s]`.
    extra: &'static [u8],
}

/// Shortest body of a [`Fenced`] block.
const FENCE_MIN: usize = 64;
/// Longest body of a [`Fenced`] block.
const FENCE_MAX: usize = 16384;

/// A [`Fenced`] shape from its literals and body class, so that the pattern
/// and the scanner's parameters come from the same text. `$class` is the
/// class as the regex writes it; `$extra` lists the same bytes beyond
/// `A-Za-z0-9+/=\s` (the tests check both describe one class).
macro_rules! fenced {
    ($begin:literal, $class:literal, $extra:literal, $end:literal) => {
        Fenced {
            pattern: concat!($begin, "[", $class, "]{64,16384}?", $end),
            begin: $begin.as_bytes(),
            end: $end.as_bytes(),
            extra: $extra,
        }
    };
}

/// Every block shape the `pem` scanner implements (the built-in
/// `private_key_*` rules).
pub(crate) static FENCED: [Fenced; 8] = [
    fenced!(
        "-----BEGIN RSA PRIVATE KEY-----",
        r#"A-Za-z0-9+/=\s:,\-\\"'"#,
        b":,-\\\"'",
        "-----END RSA PRIVATE KEY-----"
    ),
    fenced!(
        "-----BEGIN EC PRIVATE KEY-----",
        r#"A-Za-z0-9+/=\s:,\-\\"'"#,
        b":,-\\\"'",
        "-----END EC PRIVATE KEY-----"
    ),
    fenced!(
        "-----BEGIN DSA PRIVATE KEY-----",
        r#"A-Za-z0-9+/=\s:,\-\\"'"#,
        b":,-\\\"'",
        "-----END DSA PRIVATE KEY-----"
    ),
    fenced!(
        "-----BEGIN PRIVATE KEY-----",
        r#"A-Za-z0-9+/=\s\\n"'"#,
        b"\\\"'",
        "-----END PRIVATE KEY-----"
    ),
    fenced!(
        "-----BEGIN ENCRYPTED PRIVATE KEY-----",
        r#"A-Za-z0-9+/=\s\\n"'"#,
        b"\\\"'",
        "-----END ENCRYPTED PRIVATE KEY-----"
    ),
    fenced!(
        "-----BEGIN OPENSSH PRIVATE KEY-----",
        r#"A-Za-z0-9+/=\s\\n"'"#,
        b"\\\"'",
        "-----END OPENSSH PRIVATE KEY-----"
    ),
    fenced!(
        "-----BEGIN PGP PRIVATE KEY BLOCK-----",
        r#"A-Za-z0-9+/=\s:.,()\-\\n"'"#,
        b":.,()-\\\"'",
        "-----END PGP PRIVATE KEY BLOCK-----"
    ),
    fenced!(
        "---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----",
        r#"A-Za-z0-9+/=\s:"\-\\'"#,
        b":\"-\\'",
        "---- END SSH2 ENCRYPTED PRIVATE KEY ----"
    ),
];

/// The `pem` family: one scanner per [`FENCED`] shape.
static PEM: [Scanner; 8] = [
    Scanner::Fenced(&FENCED[0]),
    Scanner::Fenced(&FENCED[1]),
    Scanner::Fenced(&FENCED[2]),
    Scanner::Fenced(&FENCED[3]),
    Scanner::Fenced(&FENCED[4]),
    Scanner::Fenced(&FENCED[5]),
    Scanner::Fenced(&FENCED[6]),
    Scanner::Fenced(&FENCED[7]),
];

impl Scanner {
    /// The scanners a rule file may name `name`: a rule gets the one whose
    /// [`Scanner::pattern`] is its regex, if any.
    pub(crate) fn family(name: &str) -> Option<&'static [Scanner]> {
        match name {
            "ipv4" => Some(&[Scanner::Ipv4]),
            "pem" => Some(&PEM),
            "bearer" => Some(&[Scanner::Bearer]),
            "aws_session" => Some(&[Scanner::AwsSession]),
            _ => None,
        }
    }

    /// The one pattern this scanner implements.
    pub(crate) fn pattern(self) -> &'static str {
        match self {
            Scanner::Ipv4 => IPV4_PATTERN,
            Scanner::Fenced(f) => f.pattern,
            Scanner::Bearer => BEARER_PATTERN,
            Scanner::AwsSession => AWS_SESSION_PATTERN,
        }
    }

    /// Every match in `hay[s..e]`, as the pattern's leftmost-first
    /// `captures_iter` over that range reports them: `(full, secret)`
    /// spans (for a pattern without a `secret` group both are the whole
    /// match). Like the regex, `^` and `$` see the whole haystack.
    pub(crate) fn find_iter(
        self,
        hay: &[u8],
        s: usize,
        e: usize,
        out: &mut dyn FnMut((usize, usize), (usize, usize)),
    ) {
        let e = e.min(hay.len());
        match self {
            Scanner::Ipv4 => ipv4_find_iter(hay, s, e, out),
            Scanner::Fenced(f) => fenced_find_iter(f, hay, s, e, out),
            Scanner::Bearer => bearer_find_iter(hay, s, e, out),
            Scanner::AwsSession => aws_session_find_iter(hay, s, e, out),
        }
    }
}

/// `\s` with Unicode off: `[\t\n\x0B\x0C\r ]` (unlike
/// `u8::is_ascii_whitespace`, it includes the vertical tab).
fn is_space(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | b' ')
}

/// `\w` with Unicode off.
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// One octet `25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d` starting at `i`, which must
/// be the whole digit run there (a digit after an octet fails every
/// continuation of the pattern: '.' or a non-word byte or the end). Returns
/// the end of the octet.
fn octet(hay: &[u8], i: usize, e: usize) -> Option<usize> {
    let mut j = i;
    while j < e && j - i < 4 && hay[j].is_ascii_digit() {
        j += 1;
    }
    let d = &hay[i..j];
    let ok = match d.len() {
        1 => true,
        2 => d[0] != b'0',
        3 => d[0] == b'1' || (d[0] == b'2' && (d[1] < b'5' || (d[1] == b'5' && d[2] <= b'5'))),
        _ => false,
    };
    // A digit right after the octet (inside the range or not) leaves no
    // way to continue; past the range end nothing can be matched anyway.
    (ok && !(j < hay.len() && hay[j].is_ascii_digit())).then_some(j)
}

/// The secret part at `q`: four octets joined by '.'; returns its end.
fn quad(hay: &[u8], q: usize, e: usize) -> Option<usize> {
    let mut i = octet(hay, q, e)?;
    for _ in 0..3 {
        if i >= e || hay[i] != b'.' {
            return None;
        }
        i = octet(hay, i + 1, e)?;
    }
    Some(i)
}

/// The end of the full match after a secret ending at `q`, trying the
/// suffix alternatives in order: `[^\w.]`, `\.(?:[^\w]|$)`, `$`.
fn suffix(hay: &[u8], q: usize, e: usize) -> Option<usize> {
    if q < e && !is_word(hay[q]) && hay[q] != b'.' {
        return Some(q + 1);
    }
    if q < e && hay[q] == b'.' {
        if q + 1 < e && !is_word(hay[q + 1]) {
            return Some(q + 2);
        }
        if q + 1 == hay.len() {
            return Some(q + 1);
        }
    }
    (q == hay.len()).then_some(q)
}

/// The match whose full span starts at `p`, if any: the prefix `^` (only at
/// 0) is tried before `[^\w.]`.
fn ipv4_at(hay: &[u8], p: usize, e: usize) -> Option<((usize, usize), (usize, usize))> {
    let from = |q: usize| {
        let qe = quad(hay, q, e)?;
        let fe = suffix(hay, qe, e)?;
        Some(((p, fe), (q, qe)))
    };
    if p == 0
        && let Some(m) = from(0)
    {
        return Some(m);
    }
    if p < e && !is_word(hay[p]) && hay[p] != b'.' && p + 1 < e && hay[p + 1].is_ascii_digit() {
        return from(p + 1);
    }
    None
}

fn ipv4_find_iter(
    hay: &[u8],
    s: usize,
    e: usize,
    out: &mut dyn FnMut((usize, usize), (usize, usize)),
) {
    let mut p = s;
    while p < e {
        // Past the haystack's start a match starts with a prefix byte
        // followed by a digit: go straight to the byte before the next
        // digit.
        if p > 0 {
            match hay
                .get(p + 1..e)
                .and_then(|r| r.iter().position(u8::is_ascii_digit))
            {
                Some(k) => p += k,
                None => return,
            }
        }
        match ipv4_at(hay, p, e) {
            Some((full, span)) => {
                out(full, span);
                // Never empty: the secret alone is at least 7 bytes.
                p = full.1;
            }
            None => p += 1,
        }
    }
}

impl Fenced {
    /// Whether `b` may appear in the body.
    fn body(&self, b: u8) -> bool {
        b.is_ascii_alphanumeric()
            || matches!(b, b'+' | b'/' | b'=')
            || is_space(b)
            || self.extra.contains(&b)
    }
}

/// The matches of a [`Fenced`] shape in `hay[s..e]` (`e <= hay.len()`).
///
/// A match starts at a `begin`; its body is the shortest run of body bytes
/// of at least `FENCE_MIN` followed by `end`, within `FENCE_MAX` and within
/// `e`. So at a `begin` whose body starts at `b` there is a match exactly
/// when the first `end` at or after `b + FENCE_MIN` starts no later than
/// `b + min(run, FENCE_MAX)`, `run` being the number of body bytes from
/// `b` on (no later `end` can do better). Leftmost-first: the first
/// `begin` with a match wins, and the search resumes at the match end.
///
/// Linear time: `begin` occurrences may overlap and their bodies may hold
/// further `begin`s, so the body run and the next `end` are remembered and
/// reused while the positions asked about do not pass them.
fn fenced_find_iter(
    f: &Fenced,
    hay: &[u8],
    s: usize,
    e: usize,
    out: &mut dyn FnMut((usize, usize), (usize, usize)),
) {
    let begins = memmem::Finder::new(f.begin);
    let ends = memmem::Finder::new(f.end);
    // `hay[run.0..run.1]` are body bytes and `run.1` is `e` or not one.
    let mut run = (usize::MAX, 0);
    // The first `end` at or after `next_end.0` that finishes by `e`.
    let mut next_end: (usize, Option<usize>) = (usize::MAX, None);
    let mut p = s;
    while p < e {
        let Some(at) = begins.find(&hay[p..e]).map(|o| p + o) else {
            return;
        };
        let b = at + f.begin.len();
        if !(run.0 <= b && b <= run.1) {
            let n = hay[b..e].iter().take_while(|&&c| f.body(c)).count();
            run = (b, b + n);
        }
        let longest = (run.1 - b).min(FENCE_MAX);
        if longest >= FENCE_MIN {
            // `b + FENCE_MIN <= run.1 <= e`.
            let from = b + FENCE_MIN;
            let cached = next_end.0 <= from && next_end.1.is_none_or(|q| q >= from);
            if !cached {
                next_end = (from, ends.find(&hay[from..e]).map(|o| from + o));
            }
            if let Some(q) = next_end.1
                && q <= b + longest
            {
                let full = (at, q + f.end.len());
                out(full, full);
                p = full.1;
                continue;
            }
        }
        p = at + 1;
    }
}

/// `[A-Za-z0-9_\-.~+/]`, the bearer token's bytes.
fn is_bearer_byte(b: u8) -> bool {
    is_word(b) || matches!(b, b'-' | b'.' | b'~' | b'+' | b'/')
}

/// The [`BEARER_PATTERN`] match starting at `at` (where `bearer` is, in
/// any ASCII case), within `e`. No backtracking is needed: the token class
/// holds neither `\s` nor `=`, so fewer spaces would leave a space where
/// the token starts, and a shorter token would leave a token byte where
/// only `=` or the end may follow. Hence: 1 to 3 spaces that are the whole
/// run of spaces, the longest token up to 2000 bytes (at least 20), then
/// up to two `=`.
fn bearer_at(hay: &[u8], at: usize, e: usize) -> Option<((usize, usize), (usize, usize))> {
    let sp = at + 6;
    let mut i = sp;
    while i < e && i - sp < 3 && is_space(hay[i]) {
        i += 1;
    }
    if i == sp {
        return None;
    }
    let t = i;
    while i < e && i - t < 2000 && is_bearer_byte(hay[i]) {
        i += 1;
    }
    if i - t < 20 {
        return None;
    }
    let mut eq = 0;
    while i < e && eq < 2 && hay[i] == b'=' {
        i += 1;
        eq += 1;
    }
    Some(((at, i), (t, i)))
}

/// The [`BEARER_PATTERN`] matches in `hay[s..e]` (`e <= hay.len()`):
/// at each `bearer` (which cannot overlap itself) from left to right, the
/// match there if any, resuming after it.
fn bearer_find_iter(
    hay: &[u8],
    s: usize,
    e: usize,
    out: &mut dyn FnMut((usize, usize), (usize, usize)),
) {
    let mut p = s;
    while p < e {
        let Some(at) = memchr::memchr2(b'b', b'B', &hay[p..e]).map(|o| p + o) else {
            return;
        };
        if hay
            .get(at..at + 6)
            .is_some_and(|w| at + 6 <= e && w.eq_ignore_ascii_case(b"bearer"))
            && let Some((full, span)) = bearer_at(hay, at, e)
        {
            out(full, span);
            p = full.1;
        } else {
            p = at + 1;
        }
    }
}

/// The two prefixes of [`AWS_SESSION_PATTERN`] (they start with different
/// bytes, so at most one is at any position).
const AWS_SESSION_PREFIXES: [&[u8]; 2] = [b"IQoJb3JpZ2luX2Vj", b"FwoGZXIvYXdz"];

/// The [`AWS_SESSION_PATTERN`] match starting at `at`, within `e`. As for
/// bearer, no backtracking is needed: `=` is not in the body class, so the
/// longest body (up to 2000 bytes, at least 80) then up to two `=` is the
/// preferred match, and no shorter body can succeed where it fails.
fn aws_session_at(hay: &[u8], at: usize, e: usize) -> Option<(usize, usize)> {
    let rest = hay.get(at..e)?;
    let prefix = AWS_SESSION_PREFIXES.iter().find(|p| rest.starts_with(p))?;
    let b = at + prefix.len();
    let mut i = b;
    while i < e && i - b < 2000 && (hay[i].is_ascii_alphanumeric() || matches!(hay[i], b'/' | b'+'))
    {
        i += 1;
    }
    if i - b < 80 {
        return None;
    }
    let mut eq = 0;
    while i < e && eq < 2 && hay[i] == b'=' {
        i += 1;
        eq += 1;
    }
    Some((at, i))
}

/// The [`AWS_SESSION_PATTERN`] matches in `hay[s..e]` (`e <= hay.len()`):
/// at each `I` or `F` from left to right, the match there if any,
/// resuming after it.
fn aws_session_find_iter(
    hay: &[u8],
    s: usize,
    e: usize,
    out: &mut dyn FnMut((usize, usize), (usize, usize)),
) {
    let mut p = s;
    while p < e {
        let Some(at) = memchr::memchr2(b'I', b'F', &hay[p..e]).map(|o| p + o) else {
            return;
        };
        if let Some(full) = aws_session_at(hay, at, e) {
            out(full, full);
            p = full.1;
        } else {
            p = at + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{BUILTIN_PII, load};
    use proptest::prelude::*;
    use regex_automata::Input;

    type Spans = Vec<((usize, usize), (usize, usize))>;

    fn by_regex(
        re: &regex_automata::meta::Regex,
        g: usize,
        hay: &[u8],
        s: usize,
        e: usize,
    ) -> Spans {
        re.captures_iter(Input::new(hay).range(s..e))
            .filter_map(|c| {
                let f = c.get_match()?;
                let sp = c.get_group(g)?;
                Some(((f.start(), f.end()), (sp.start, sp.end)))
            })
            .collect()
    }

    fn by_scanner(hay: &[u8], s: usize, e: usize) -> Spans {
        let mut v = Vec::new();
        Scanner::Ipv4.find_iter(hay, s, e, &mut |f, sp| v.push((f, sp)));
        v
    }

    fn ipv4_rule() -> crate::rules::Rule {
        load("pii.toml", BUILTIN_PII, crate::Category::Pii, false)
            .expect("pii rules load")
            .into_iter()
            .find(|r| r.id == "ipv4")
            .expect("ipv4 rule")
    }

    #[test]
    fn builtin_ipv4_rule_uses_the_scanner_and_its_pattern() {
        let r = ipv4_rule();
        assert_eq!(r.scanner, Some(Scanner::Ipv4));
        assert_eq!(r.pattern, IPV4_PATTERN);
    }

    fn check(hay: &[u8], s: usize, e: usize) -> Result<(), TestCaseError> {
        let r = ipv4_rule();
        let g = r.secret_group.expect("secret group");
        prop_assert_eq!(
            by_scanner(hay, s, e),
            by_regex(r.regex(), g, hay, s, e),
            "hay {:?} range {}..{}",
            String::from_utf8_lossy(hay),
            s,
            e
        );
        Ok(())
    }

    #[test]
    fn ipv4_examples_match_the_regex() {
        for h in [
            "1.2.3.4",
            "1.2.3.4.",
            "1.2.3.4..",
            "1.2.3.4.a",
            "a1.2.3.4",
            " 1.2.3.4 5.6.7.8 9.9.9.9 ",
            "256.1.1.1 01.2.3.4 1.2.3.04 255.255.255.255",
            "1.2.3.4.5 .1.2.3.4 _1.2.3.4 1.2.3.4_",
            "x=10.0.0.1:8080, [192.168.1.1] 1.2.3.\u{e9}",
            "1.2.3.1234 1234.1.1.1 1.2.3",
        ] {
            let b = h.as_bytes();
            for s in 0..=b.len() {
                for e in s..=b.len() {
                    check(b, s, e).map_err(|e| e.to_string()).expect("equal");
                }
            }
        }
    }

    /// Digits, dots and separators in every mix; a few octet-shaped pieces.
    fn soup() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            "[0-9]{1,4}",
            Just(".".to_string()),
            "(25[0-9]|2[0-9][0-9]|1[0-9][0-9]|0[0-9]|[0-9])",
            "[ .:,;=/\\-_\\[\\]()aZx\\n\\t\u{e9}]",
        ];
        prop::collection::vec(piece, 0..48).prop_map(|v| v.concat().into_bytes())
    }

    /// Log-shaped lines with client addresses, ports and timestamps.
    fn log_lines() -> impl Strategy<Value = Vec<u8>> {
        let octet = prop_oneof!["[0-9]{1,3}", Just("255".to_string()), Just("0".to_string())];
        let ip = prop::collection::vec(octet, 4).prop_map(|o| o.join("."));
        let line = (
            ip.clone(),
            prop_oneof![Just(" - - ["), Just(":"), Just("\" from "), Just(" ip=")],
            ip,
            prop_oneof![
                Just("] GET /a HTTP/1.1 200"),
                Just(":8080"),
                Just("."),
                Just(""),
                Just(".x")
            ],
        )
            .prop_map(|(a, s, b, t)| format!("2026-11-22T04:01:59Z {a}{s}{b}{t}\n"));
        prop::collection::vec(line, 1..6).prop_map(|v| v.concat().into_bytes())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

        /// The scanner reports exactly the regex's matches, over the whole
        /// input and over an arbitrary range of it (engine windows are
        /// ranges; `^`/`$` see the whole haystack).
        #[test]
        fn ipv4_scanner_equals_regex_on_soup(hay in soup(), a in 0usize..64, b in 0usize..64) {
            check(&hay, 0, hay.len())?;
            let (s, e) = (a.min(b).min(hay.len()), a.max(b).min(hay.len()));
            check(&hay, s, e)?;
        }

        #[test]
        fn ipv4_scanner_equals_regex_on_log_lines(hay in log_lines(), a in 0usize..200, b in 0usize..200) {
            check(&hay, 0, hay.len())?;
            let (s, e) = (a.min(b).min(hay.len()), a.max(b).min(hay.len()));
            check(&hay, s, e)?;
        }
    }

    /// The built-in secret rules, loaded once (their regexes compile on
    /// first use and stay compiled across test cases).
    fn secret_rules() -> &'static [crate::rules::Rule] {
        static RULES: std::sync::OnceLock<Vec<crate::rules::Rule>> = std::sync::OnceLock::new();
        RULES.get_or_init(|| {
            load(
                "secrets.toml",
                crate::rules::BUILTIN_SECRETS,
                crate::Category::Secret,
                false,
            )
            .expect("secret rules load")
        })
    }

    fn secret_rule(id: &str) -> &'static crate::rules::Rule {
        secret_rules()
            .iter()
            .find(|r| r.id == id)
            .expect("rule exists")
    }

    /// `sc`'s matches in `hay[s..e]` equal its rule's regex's.
    /// `check_rule` over the whole input and over the range between `a`
    /// and `b` (clamped to the input).
    fn check_rule_whole_and_range(
        id: &str,
        hay: &[u8],
        a: usize,
        b: usize,
    ) -> Result<(), TestCaseError> {
        check_rule(id, hay, 0, hay.len())?;
        let (s, e) = (a.min(b).min(hay.len()), a.max(b).min(hay.len()));
        check_rule(id, hay, s, e)
    }

    fn check_rule(id: &str, hay: &[u8], s: usize, e: usize) -> Result<(), TestCaseError> {
        let r = secret_rule(id);
        let sc = r.scanner.expect("rule has a scanner");
        let mut got = Vec::new();
        sc.find_iter(hay, s, e, &mut |f, sp| got.push((f, sp)));
        let want = match r.secret_group {
            Some(g) => by_regex(r.regex(), g, hay, s, e),
            None => by_regex(r.regex(), 0, hay, s, e),
        };
        prop_assert_eq!(
            got,
            want,
            "rule {} hay {:?} range {}..{}",
            id,
            String::from_utf8_lossy(hay),
            s,
            e
        );
        Ok(())
    }

    /// The rule ids of the [`FENCED`] shapes, in order.
    const PEM_RULES: [&str; 8] = [
        "private_key_rsa",
        "private_key_ec",
        "private_key_dsa",
        "private_key_pkcs8",
        "private_key_pkcs8_encrypted",
        "private_key_openssh",
        "private_key_pgp",
        "private_key_ssh2",
    ];

    #[test]
    fn builtin_key_and_bearer_rules_use_their_scanners() {
        for (id, f) in PEM_RULES.iter().zip(&FENCED) {
            let r = secret_rule(id);
            assert_eq!(r.scanner, Some(Scanner::Fenced(f)), "rule {id}");
            assert_eq!(r.pattern, f.pattern, "rule {id}");
        }
        let r = secret_rule("authorization_bearer");
        assert_eq!(r.scanner, Some(Scanner::Bearer));
        assert_eq!(r.pattern, BEARER_PATTERN);
        let r = secret_rule("aws_session_token");
        assert_eq!(r.scanner, Some(Scanner::AwsSession));
        assert_eq!(r.pattern, AWS_SESSION_PATTERN);
    }

    /// Each shape's parameters are its regex's, read from the parsed
    /// pattern: `begin` literal, lazy `{64,16384}` of a byte class equal to
    /// [`Fenced::body`] on all 256 bytes, `end` literal.
    #[test]
    fn fenced_shapes_are_their_regexes() {
        use regex_syntax::hir::{Class, HirKind};
        for f in &FENCED {
            let hir = regex_syntax::ParserBuilder::new()
                .unicode(false)
                .utf8(false)
                .build()
                .parse(f.pattern)
                .expect("parses");
            let HirKind::Concat(parts) = hir.kind() else {
                panic!("{}: not a concatenation", f.pattern)
            };
            let [begin, body, end] = parts.as_slice() else {
                panic!("{}: not three parts", f.pattern)
            };
            assert!(matches!(begin.kind(), HirKind::Literal(l) if &*l.0 == f.begin));
            assert!(matches!(end.kind(), HirKind::Literal(l) if &*l.0 == f.end));
            let HirKind::Repetition(rep) = body.kind() else {
                panic!("{}: body is not a repetition", f.pattern)
            };
            assert_eq!(
                (rep.min, rep.max, rep.greedy),
                (FENCE_MIN as u32, Some(FENCE_MAX as u32), false)
            );
            let HirKind::Class(Class::Bytes(class)) = rep.sub.kind() else {
                panic!("{}: body is not a byte class", f.pattern)
            };
            for b in 0..=255u8 {
                let in_regex = class
                    .ranges()
                    .iter()
                    .any(|r| r.start() <= b && b <= r.end());
                assert_eq!(in_regex, f.body(b), "{}: byte {b:#04x}", f.pattern);
            }
        }
    }

    /// A body of `n` bytes cycling through `alphabet`.
    fn body_of(alphabet: &[u8], n: usize) -> Vec<u8> {
        alphabet.iter().copied().cycle().take(n).collect()
    }

    /// Lengths at the edges: bodies of 63/64/65 and 16384/16385 bytes, an
    /// `end` inside the body (nested), a second block, every range cut.
    #[test]
    fn fenced_edges_match_the_regex() -> Result<(), TestCaseError> {
        for (k, f) in FENCED.iter().enumerate() {
            let id = PEM_RULES[k];
            for n in [0, 1, 63, 64, 65, 200, 16383, 16384, 16385, 16400] {
                let mut hay = f.begin.to_vec();
                hay.extend(body_of(b"MIIEow\nAB+/=9z \t", n));
                hay.extend(f.end);
                check_rule(id, &hay, 0, hay.len())?;
                // A second block right after, and one nested inside.
                let mut two = hay.clone();
                two.extend(&hay);
                check_rule(id, &two, 0, two.len())?;
                let mut nested = f.begin.to_vec();
                nested.extend(body_of(b"Qk9=", 40));
                nested.extend(&hay);
                nested.extend(body_of(b"xy", 30));
                nested.extend(f.end);
                check_rule(id, &nested, 0, nested.len())?;
                for cut in [1, 5, f.end.len() - 1, f.end.len(), f.end.len() + 1] {
                    check_rule(id, &two, cut, two.len() - cut)?;
                    check_rule(id, &two, 0, two.len() - cut)?;
                    check_rule(id, &nested, cut, nested.len())?;
                }
            }
        }
        Ok(())
    }

    /// Pieces of PEM-like text for shape `k`: its own and a neighbour's
    /// `begin`/`end`, partial fences, bodies around the 64-byte minimum
    /// from bytes in and out of the various body classes.
    fn pem_soup(k: usize) -> impl Strategy<Value = Vec<u8>> {
        let f = &FENCED[k];
        let g = &FENCED[(k + 1) % FENCED.len()];
        let lit = |b: &'static [u8]| Just(b.to_vec());
        let piece = prop_oneof![
            3 => lit(f.begin),
            3 => lit(f.end),
            1 => lit(g.begin),
            1 => lit(g.end),
            1 => lit(b"-----"),
            1 => lit(&f.begin[..f.begin.len() - 1]),
            1 => lit(&f.end[1..]),
            6 => prop::collection::vec(
                prop::sample::select(b"AZaz09+/=\n \t\x0b\x0c\r:,-.()\\\"n".to_vec()),
                0..80
            ),
            2 => prop::collection::vec(
                prop::sample::select(b"!*\x00\xff_#;".to_vec()),
                1..3
            ),
        ];
        prop::collection::vec(piece, 0..14).prop_map(|v| v.concat())
    }

    /// Bearer-like text: `bearer` in any case and cut short, runs of `\s`
    /// (including the vertical tab), tokens around 20 and 2000 bytes,
    /// `=` padding, bytes outside the token class.
    fn bearer_soup() -> impl Strategy<Value = Vec<u8>> {
        let lit = |b: &'static [u8]| Just(b.to_vec());
        let piece = prop_oneof![
            2 => lit(b"bearer"),
            1 => lit(b"Bearer"),
            1 => lit(b"BEARER"),
            1 => lit(b"bEaReR"),
            1 => lit(b"beare"),
            1 => lit(b"b"),
            3 => prop::collection::vec(
                prop::sample::select(b" \t\n\x0b\x0c\r".to_vec()),
                1..5
            ),
            4 => prop::collection::vec(
                prop::sample::select(b"aZ09_-.~+/b".to_vec()),
                0..30
            ),
            1 => (1990usize..2010).prop_map(|n| body_of(b"eyJ0eXAi", n)),
            2 => prop::collection::vec(Just(b'='), 1..4),
            1 => prop::collection::vec(
                prop::sample::select(b"!\"#,:;\xff\x00".to_vec()),
                1..3
            ),
        ];
        prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
    }

    /// Session-token-like text: both prefixes and cut-short ones, body
    /// runs around 80 and 2000 bytes, `=` padding, bytes outside the class
    /// (`-`, `_`, `.`, space).
    fn aws_session_soup() -> impl Strategy<Value = Vec<u8>> {
        let lit = |b: &'static [u8]| Just(b.to_vec());
        let piece = prop_oneof![
            2 => lit(b"IQoJb3JpZ2luX2Vj"),
            2 => lit(b"FwoGZXIvYXdz"),
            1 => lit(b"IQoJb3JpZ2lu"),
            1 => lit(b"Fwo"),
            4 => prop::collection::vec(
                prop::sample::select(b"aZ09/+IFQ".to_vec()),
                0..60
            ),
            1 => (1990usize..2010).prop_map(|n| body_of(b"AQoDYXdzEJr//////////", n)),
            2 => prop::collection::vec(Just(b'='), 1..4),
            1 => prop::collection::vec(
                prop::sample::select(b"-_. \n\xff".to_vec()),
                1..3
            ),
        ];
        prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn aws_session_scanner_equals_regex_on_soup(
            hay in aws_session_soup(),
            a in 0usize..2400,
            b in 0usize..2400,
        ) {
            check_rule_whole_and_range("aws_session_token", &hay, a, b)?;
        }

        /// Each PEM scanner reports exactly its regex's matches, over the
        /// whole input and over an arbitrary range of it.
        #[test]
        fn fenced_scanners_equal_regex_on_soup(
            k in 0usize..8,
            hay in (0usize..8).prop_flat_map(pem_soup),
            a in 0usize..1200,
            b in 0usize..1200,
        ) {
            check_rule_whole_and_range(PEM_RULES[k], &hay, a, b)?;
        }

        /// Same soup, but for the shape the soup was made for (so its
        /// own `begin`/`end` pieces are frequent).
        #[test]
        fn fenced_scanner_equals_regex_on_own_soup(
            (k, hay) in (0usize..8).prop_flat_map(|k| (Just(k), pem_soup(k))),
            a in 0usize..1200,
            b in 0usize..1200,
        ) {
            check_rule_whole_and_range(PEM_RULES[k], &hay, a, b)?;
        }

        #[test]
        fn bearer_scanner_equals_regex_on_soup(
            hay in bearer_soup(),
            a in 0usize..2400,
            b in 0usize..2400,
        ) {
            check_rule_whole_and_range("authorization_bearer", &hay, a, b)?;
        }
    }

    /// The engine runs scanner rules without ever compiling their regexes
    /// (which is what the scanners save), and still finds every shape.
    #[test]
    fn engine_does_not_compile_scanner_rules() {
        let sc = crate::Scrubber::builtin();
        let mut text = String::new();
        for f in &FENCED {
            text.push_str(std::str::from_utf8(f.begin).expect("ascii"));
            text.push('\n');
            text.push_str(&"MIIEowIBAAKCAQEA7bq98vQ+/z\n".repeat(4));
            text.push_str(std::str::from_utf8(f.end).expect("ascii"));
            text.push('\n');
        }
        text.push_str("Authorization: Bearer 9f8e7d6c5b4a39281706f5e4d3c2b1a0Zx\n");
        text.push_str("token=IQoJb3JpZ2luX2Vj");
        text.push_str(&"EJr7Kd9QmZx3/+Tb".repeat(6));
        text.push_str("==\n");
        let found = sc.scan(&text);
        let keys = found.iter().filter(|f| f.kind == "private_key").count();
        assert_eq!(keys, FENCED.len(), "{found:?}");
        assert!(found.iter().any(|f| f.kind == "bearer_token"), "{found:?}");
        assert!(
            found.iter().any(|f| f.kind == "aws_session_token"),
            "{found:?}"
        );
        for r in sc.inner.engine.rules() {
            assert!(
                r.scanner.is_none() || !r.is_compiled(),
                "rule {} has a scanner but its regex was compiled",
                r.id
            );
        }
    }
}
