//! Hand-written matchers for hot rules. Each one implements exactly one
//! rule regex, which stays the definition: a rule may name a scanner only
//! when its pattern is that scanner's pattern (checked at load), and the
//! tests compare every scanner with its regex on random and realistic
//! input (`find_iter` over a range: same matches, same spans).

/// A hand-written matcher named by a rule's `scanner` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scanner {
    /// The `ipv4` rule's dotted quad, [`IPV4_PATTERN`].
    Ipv4,
}

/// The regex the `Ipv4` scanner implements (the built-in `ipv4` rule).
pub(crate) const IPV4_PATTERN: &str = r"(?:^|[^\w.])(?P<secret>(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3})(?:[^\w.]|\.(?:[^\w]|$)|$)";

impl Scanner {
    pub(crate) fn parse(name: &str) -> Option<Scanner> {
        match name {
            "ipv4" => Some(Scanner::Ipv4),
            _ => None,
        }
    }

    /// The one pattern this scanner implements.
    pub(crate) fn pattern(self) -> &'static str {
        match self {
            Scanner::Ipv4 => IPV4_PATTERN,
        }
    }

    /// Every match in `hay[s..e]`, as the pattern's leftmost-first
    /// `captures_iter` over that range reports them: `(full, secret)`
    /// spans. Like the regex, `^` and `$` see the whole haystack.
    pub(crate) fn find_iter(
        self,
        hay: &[u8],
        s: usize,
        e: usize,
        out: &mut dyn FnMut((usize, usize), (usize, usize)),
    ) {
        match self {
            Scanner::Ipv4 => ipv4_find_iter(hay, s, e.min(hay.len()), out),
        }
    }
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
}
