//! Request-path canonicalization and glob matching.
//!
//! Servers disagree on what a path means: Tomcat and Jetty drop `;`
//! parameters from each segment (so `/a/..;/b` is `/b` there), IIS maps `\`
//! to `/` and strips trailing dots and spaces from segments, nginx merges
//! `//`, most frameworks decode `%2e` and resolve dot segments, some decode
//! twice, and case-insensitive servers route `/ADMIN` to `/admin`. A rule
//! judged on one reading and sent to a server with another is a bypass
//! ("path normalization confusion"). So a path is judged exactly once, in
//! one canonical spelling, and that spelling is what the proxy sends on:
//!
//! * [`canonicalize`] turns the path as written into that spelling, or
//!   refuses it as ambiguous (`ambiguous_path`) when common servers would
//!   read it differently in a way the canonical form cannot pin down;
//! * [`PathViews`] are the readings of a canonical path that rules are
//!   matched against: the percent-decoded path as it stands, and the
//!   *lenient* reading of servers that drop `;` parameters and trailing
//!   dots and spaces of segments. Deny and ask rules match when either
//!   reading matches, allow rules only when both do;
//! * rules match case-insensitively when asked to ([`Glob::matches`] with
//!   `fold`): the policy does so by default for deny and ask rules.
//!
//! The canonical form: it starts with `/`; it has no empty segment (`//` is
//! merged) except a final `/`; no `.` or `..` segment (resolved as RFC 3986
//! §5.2.4 says, never above the root); `\` is `/` (the WHATWG URL standard);
//! escapes of unreserved characters (`%2e`, `%41`) are decoded; other
//! escapes are kept, with upper-case hex; non-ASCII, space and `"<>`{}`
//! are percent-encoded. Refused as ambiguous: an escape of `/`, `\`, `;`, a
//! control character or NUL; `%25` followed by two hex digits (double
//! encoding); a `%` that starts no valid escape (`%u002e`); bytes that are
//! not UTF-8 once decoded (overlong `%c0%ae`); a dot segment carrying
//! parameters (`..;`, `.;x`); a segment of dots, spaces and dots other than
//! `.` and `..` (`...`, `..%20`, which Windows servers read as `..`);
//! characters that Unicode compatibility or Windows "best fit" mappings turn
//! into `/`, `\`, `.`, `;` or `%` (full-width solidus, `¥`, …). The query
//! is not part of the path: it is neither changed nor judged here.

use crate::percent::{hex_val, percent_decode};

/// Why a path was refused as ambiguous (a fixed phrase, never the path).
pub(crate) type Ambiguity = &'static str;

/// Characters some servers map to a path delimiter or `.`/`%` through
/// Unicode compatibility normalization (NFKC) or Windows "best fit" code
/// page conversion. Any of them in a decoded path is refused.
const CONFUSABLE_DELIMITERS: &[char] = &[
    '\u{FF0F}', // FULLWIDTH SOLIDUS -> /
    '\u{FF3C}', // FULLWIDTH REVERSE SOLIDUS -> \
    '\u{FF0E}', // FULLWIDTH FULL STOP -> .
    '\u{FF1B}', // FULLWIDTH SEMICOLON -> ;
    '\u{FF05}', // FULLWIDTH PERCENT SIGN -> %
    '\u{2215}', // DIVISION SLASH -> / (best fit)
    '\u{2044}', // FRACTION SLASH -> / (best fit)
    '\u{2216}', // SET MINUS -> \ (best fit)
    '\u{29F5}', // REVERSE SOLIDUS OPERATOR -> \ (best fit)
    '\u{FE68}', // SMALL REVERSE SOLIDUS -> \
    '\u{FE52}', // SMALL FULL STOP -> .
    '\u{FE54}', // SMALL SEMICOLON -> ;
    '\u{FE6A}', // SMALL PERCENT SIGN -> %
    '\u{2024}', // ONE DOT LEADER -> .
    '\u{2025}', // TWO DOT LEADER -> ..
    '\u{2026}', // HORIZONTAL ELLIPSIS -> ...
    '\u{00A5}', // YEN SIGN -> \ (best fit, code page 932)
    '\u{20A9}', // WON SIGN -> \ (best fit, code page 949)
    '\u{037E}', // GREEK QUESTION MARK -> ; (NFC/NFKC)
];

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Bytes written as they are in a canonical path; everything else printable
/// is percent-encoded (the WHATWG path percent-encode set plus `|`, `^`,
/// `[`, `]`, which request-target parsers disagree on).
fn is_plain(b: u8) -> bool {
    b.is_ascii_graphic()
        && !matches!(
            b,
            b'"' | b'<' | b'>' | b'`' | b'{' | b'}' | b'|' | b'^' | b'[' | b']' | b'%'
        )
}

fn push_escape(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 15)]));
}

/// The canonical spelling of a request path (query and fragment already
/// removed), or why it is ambiguous. Idempotent: a canonical path comes
/// back unchanged.
pub(crate) fn canonicalize(path: &str) -> Result<String, Ambiguity> {
    // 1. One pass over the bytes: `\` is `/`, unreserved escapes decoded,
    //    other escapes upper-cased, unsafe bytes encoded.
    let b = path.as_bytes();
    let mut enc = String::with_capacity(b.len() + 1);
    if !path.starts_with(['/', '\\']) {
        enc.push('/');
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|x| hex_val(*x)),
                b.get(i + 2).and_then(|x| hex_val(*x)),
            ) else {
                return Err("a `%` that starts no valid escape");
            };
            let v = h * 16 + l;
            match v {
                b'/' | b'\\' => return Err("an encoded `/` or `\\`"),
                b';' => return Err("an encoded `;`"),
                0..=0x1f | 0x7f => return Err("an encoded control character or NUL"),
                _ if is_unreserved(v) => enc.push(char::from(v)),
                _ => push_escape(&mut enc, v),
            }
            i += 3;
            continue;
        }
        if c < 0x20 || c == 0x7f {
            return Err("a control character");
        }
        if c == b'\\' {
            enc.push('/');
        } else if is_plain(c) {
            enc.push(char::from(c));
        } else {
            push_escape(&mut enc, c);
        }
        i += 1;
    }
    // 2. Double encoding: `%25` followed by what a second decoding would
    //    read as an escape.
    let e = enc.as_bytes();
    for (j, w) in e.windows(3).enumerate() {
        if w == b"%25"
            && e.get(j + 3).is_some_and(|x| hex_val(*x).is_some())
            && e.get(j + 4).is_some_and(|x| hex_val(*x).is_some())
        {
            return Err("double percent-encoding (`%25` before an escape)");
        }
    }
    // 3. Decoded, it must be UTF-8 (no overlong forms) without characters
    //    that other mappings turn into delimiters.
    let decoded = percent_decode(e);
    let Ok(text) = std::str::from_utf8(&decoded) else {
        return Err("bytes that are not UTF-8 once decoded");
    };
    if text.contains(CONFUSABLE_DELIMITERS) {
        return Err("a character that Unicode or Windows mappings turn into a delimiter");
    }
    // 4. Segments: merge empty ones, resolve dot segments, refuse dot
    //    segments that other servers read differently.
    let segs: Vec<&str> = enc.split('/').skip(1).collect();
    let mut out: Vec<&str> = Vec::with_capacity(segs.len());
    let mut trailing = false;
    for (k, seg) in segs.iter().enumerate() {
        let last = k + 1 == segs.len();
        trailing = false;
        let base = seg.split(';').next().unwrap_or("");
        let dot = base == "." || base == "..";
        if dot && seg.len() != base.len() {
            return Err("a dot segment with `;` parameters (`..;`)");
        }
        let plain = String::from_utf8_lossy(&percent_decode(base.as_bytes())).into_owned();
        if !dot && !base.is_empty() && lenient_segment(&plain).is_empty() {
            return Err("a segment of dots and spaces read as `..` by some servers");
        }
        if seg.is_empty() {
            trailing = last && k > 0;
        } else if base == "." {
            trailing = last;
        } else if base == ".." {
            out.pop();
            trailing = last;
        } else {
            out.push(seg);
        }
    }
    let mut s = String::with_capacity(enc.len());
    for seg in &out {
        s.push('/');
        s.push_str(seg);
    }
    if s.is_empty() || trailing {
        s.push('/');
    }
    Ok(s)
}

/// A decoded segment as Windows servers read it: trailing dots and spaces
/// dropped.
fn lenient_segment(seg: &str) -> &str {
    seg.trim_end_matches(['.', ' '])
}

/// The readings of one canonical path that rules are matched against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathViews {
    /// Percent-decoded, `;` parameters kept.
    pub decoded: String,
    /// Percent-decoded, `;` parameters and trailing dots and spaces of each
    /// segment dropped, empty segments merged (Tomcat, Jetty, IIS).
    pub lenient: String,
    /// Both, lower-cased (Unicode), for case-insensitive rules.
    pub decoded_folded: String,
    pub lenient_folded: String,
}

impl PathViews {
    /// Canonicalize `path` (a query or fragment after it is ignored) and
    /// compute its readings, or say why it is ambiguous.
    pub(crate) fn new(path: &str) -> Result<PathViews, Ambiguity> {
        let path = path.split(['?', '#']).next().unwrap_or("");
        let canonical = canonicalize(path)?;
        let decoded = String::from_utf8(percent_decode(canonical.as_bytes()))
            .map_err(|_| "bytes that are not UTF-8 once decoded")?;
        let mut lenient = String::with_capacity(decoded.len());
        for seg in decoded.split('/').skip(1) {
            let base = lenient_segment(seg.split(';').next().unwrap_or(""));
            if !base.is_empty() {
                lenient.push('/');
                lenient.push_str(base);
            }
        }
        if lenient.is_empty() || decoded.ends_with('/') {
            lenient.push('/');
        }
        Ok(PathViews {
            decoded_folded: decoded.to_lowercase(),
            lenient_folded: lenient.to_lowercase(),
            decoded,
            lenient,
        })
    }
}

/// A compiled path glob: `*` matches within one segment, `**` across
/// segments; a pattern ending in `/**` also matches its prefix alone.
/// Patterns are written decoded (`/users/@me`, not `/users/%40me`) and are
/// matched against [`PathViews`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Glob {
    exact: Compiled,
    folded: Compiled,
    matches_all: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Compiled {
    pattern: Vec<Tok>,
    prefix_also: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(u8),
    Star,
    DoubleStar,
}

impl Compiled {
    fn new(p: &str) -> Compiled {
        let b = p.as_bytes();
        let mut toks = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'*' {
                if b.get(i + 1) == Some(&b'*') {
                    toks.push(Tok::DoubleStar);
                    i += 2;
                } else {
                    toks.push(Tok::Star);
                    i += 1;
                }
            } else {
                toks.push(Tok::Lit(b[i]));
                i += 1;
            }
        }
        let prefix_also = p.strip_suffix("/**").map(|s| {
            if s.is_empty() {
                "/".to_owned()
            } else {
                s.to_owned()
            }
        });
        Compiled {
            pattern: toks,
            prefix_also,
        }
    }

    fn matches(&self, path: &str) -> bool {
        self.prefix_also.as_deref() == Some(path) || glob_match(&self.pattern, path.as_bytes())
    }
}

impl Glob {
    pub(crate) fn compile(p: &str) -> Result<Glob, String> {
        if !p.starts_with('/') {
            return Err("must start with `/`".into());
        }
        if p.contains(['?', '#']) {
            return Err("must not contain `?` or `#` (the query is never matched)".into());
        }
        if p.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("must not contain whitespace or control characters".into());
        }
        if p.contains("***") {
            return Err("`***` is not a valid wildcard".into());
        }
        if p.contains(['%', '\\']) {
            return Err(
                "paths are matched percent-decoded with `/` separators: write the character itself, not a `%` escape or `\\`"
                    .into(),
            );
        }
        if p.split('/').any(|s| s == "." || s == "..") {
            return Err(
                "must not contain `.` or `..` segments (paths are judged with them resolved)"
                    .into(),
            );
        }
        Ok(Glob {
            exact: Compiled::new(p),
            folded: Compiled::new(&p.to_lowercase()),
            matches_all: p == "/**",
        })
    }

    /// True when the glob matches every path.
    pub(crate) fn matches_all(&self) -> bool {
        self.matches_all
    }

    /// Match one reading of a path; `fold`: case-insensitively (the path
    /// must then be the lower-cased reading).
    pub(crate) fn matches(&self, path: &str, fold: bool) -> bool {
        if self.matches_all {
            return true;
        }
        if fold {
            self.folded.matches(path)
        } else {
            self.exact.matches(path)
        }
    }
}

/// Linear-space dynamic programming match, O(pattern × path).
fn glob_match(pat: &[Tok], s: &[u8]) -> bool {
    // cur[j]: pattern[..i] matches s[..j]
    let mut cur = vec![false; s.len() + 1];
    cur[0] = true;
    for tok in pat {
        let mut next = vec![false; s.len() + 1];
        match tok {
            Tok::Lit(c) => {
                for j in 0..s.len() {
                    next[j + 1] = cur[j] && s[j] == *c;
                }
            }
            Tok::Star | Tok::DoubleStar => {
                let cross = matches!(tok, Tok::DoubleStar);
                let mut reach = false;
                for j in 0..=s.len() {
                    reach = cur[j] || (reach && j > 0 && (cross || s[j - 1] != b'/'));
                    next[j] = reach;
                }
            }
        }
        cur = next;
    }
    cur[s.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn canon(p: &str) -> String {
        canonicalize(p).unwrap_or_else(|e| panic!("{p:?} refused: {e}"))
    }

    #[test]
    fn dot_segments_unreserved_escapes_and_separators_are_canonicalized() {
        assert_eq!(canon("/a/./b/../c"), "/a/c");
        assert_eq!(canon("/a/%2e%2E/c"), "/c");
        assert_eq!(canon("/a/.%2e/c"), "/c");
        assert_eq!(canon("/a//b/"), "/a/b/");
        assert_eq!(canon("//a///b"), "/a/b");
        assert_eq!(canon(""), "/");
        assert_eq!(canon("/.."), "/");
        assert_eq!(canon("/../../a"), "/a");
        assert_eq!(canon("/a/.."), "/");
        assert_eq!(canon("/a/b/."), "/a/b/");
        assert_eq!(canon("\\a\\..\\b"), "/b");
        assert_eq!(canon("/%61dmin/%7Euser"), "/admin/~user");
        assert_eq!(canon("/caf%c3%a9/%3a%40"), "/caf%C3%A9/%3A%40");
        assert_eq!(canon("/café"), "/caf%C3%A9");
        assert_eq!(canon("/a b/\"q\"/{x}|^"), "/a%20b/%22q%22/%7Bx%7D%7C%5E");
        assert_eq!(canon("/a;jsessionid=1/b"), "/a;jsessionid=1/b");
        assert_eq!(canon("/admin;/users"), "/admin;/users");
    }

    #[test]
    fn ambiguous_spellings_are_refused() {
        for p in [
            "/repos/mine/..;/other/issues",
            "/x/..;/admin/users",
            "/x/..;a=b/admin",
            "/x/.;/admin",
            "/x/%2e%2e;/admin",
            "/api/..%2fadmin",
            "/api%2Fadmin",
            "/api%5cadmin",
            "/api/%252e%252e/admin",
            "/api/%252fadmin",
            "/a%00b",
            "/a%0a",
            "/a%7f",
            "/a\u{1}b",
            "/a%zz",
            "/a%",
            "/a/%u002e%u002e/b",
            "/a/%c0%ae%c0%ae/b",
            "/a/%ff",
            "/a/%3b/b",
            "/a/.../b",
            "/a/..%20/b",
            "/a/.. ./b",
            "/a/%ef%bc%8fadmin",
            "/a/\u{FF0F}admin",
            "/a/\u{2025}/admin",
            "/a/%C2%A5admin",
        ] {
            assert!(
                canonicalize(p).is_err(),
                "{p:?} was accepted as {:?}",
                canonicalize(p)
            );
        }
    }

    #[test]
    fn views_read_parameters_and_windows_trailing_dots_leniently() {
        let v = PathViews::new("/admin;/users?q=1").expect("canonical");
        assert_eq!(
            (v.decoded.as_str(), v.lenient.as_str()),
            ("/admin;/users", "/admin/users")
        );
        let v = PathViews::new("/a;jsessionid=x/b/").expect("canonical");
        assert_eq!(
            (v.decoded.as_str(), v.lenient.as_str()),
            ("/a;jsessionid=x/b/", "/a/b/")
        );
        let v = PathViews::new("/admin./x%20").expect("canonical");
        assert_eq!(
            (v.decoded.as_str(), v.lenient.as_str()),
            ("/admin./x ", "/admin/x")
        );
        let v = PathViews::new("/;x/admin").expect("canonical");
        assert_eq!(v.lenient, "/admin");
        let v = PathViews::new("/ADMIN/%C3%89").expect("canonical");
        assert_eq!(
            (v.decoded_folded.as_str(), v.lenient_folded.as_str()),
            ("/admin/é", "/admin/é")
        );
    }

    #[test]
    fn globs() {
        let g = Glob::compile("/repos/*/issues").expect("valid");
        assert!(g.matches("/repos/a/issues", false));
        assert!(!g.matches("/repos/a/b/issues", false));
        assert!(!g.matches("/repos/a/issues/1", false));
        let g = Glob::compile("/api/**").expect("valid");
        assert!(g.matches("/api", false));
        assert!(g.matches("/api/", false));
        assert!(g.matches("/api/a/b", false));
        assert!(!g.matches("/apix", false));
        assert!(!g.matches("/API/x", false));
        assert!(g.matches("/api/x", true));
        let g = Glob::compile("/Admin/**").expect("valid");
        assert!(g.matches("/admin", true) && !g.matches("/admin", false));
        assert!(
            Glob::compile("/**")
                .expect("valid")
                .matches("/anything/at/all", false)
        );
        assert!(Glob::compile("api").is_err());
        assert!(Glob::compile("/a%2Fb").is_err());
        assert!(Glob::compile("/a\\b").is_err());
        assert!(Glob::compile("/a/../b").is_err());
        let g = Glob::compile("/a*b*c").expect("valid");
        assert!(
            g.matches("/abc", false) && g.matches("/aXbYc", false) && !g.matches("/aX/bc", false)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Canonicalizing twice is canonicalizing once, and a canonical path
        /// has no dot segment, no empty segment but a final one, no `\`, and
        /// only upper-case escapes of bytes that are not unreserved.
        #[test]
        fn canonical_paths_are_fixed_points_without_dot_segments(
            p in r"[/\\a.;%2eEfF5cC0 ~é\x00-\x1f]{0,24}"
        ) {
            if let Ok(c) = canonicalize(&p) {
                prop_assert_eq!(canonicalize(&c), Ok(c.clone()));
                prop_assert!(c.starts_with('/'));
                prop_assert!(!c.contains('\\') && !c.contains("//"));
                let inner = c.strip_suffix('/').unwrap_or(&c);
                for seg in inner.split('/').skip(1) {
                    let base = seg.split(';').next().unwrap_or("");
                    prop_assert!(base != "." && base != "..", "{:?} -> {:?}", p, c);
                }
                let b = c.as_bytes();
                for (i, x) in b.iter().enumerate() {
                    if *x == b'%' {
                        let v = hex_val(b[i + 1]).unwrap() * 16 + hex_val(b[i + 2]).unwrap();
                        prop_assert!(!is_unreserved(v));
                        prop_assert!(!b[i + 1].is_ascii_lowercase() && !b[i + 2].is_ascii_lowercase());
                    }
                }
                let v = PathViews::new(&c).expect("a canonical path has views");
                prop_assert!(!v.lenient.split('/').any(|s| s == "." || s == ".."));
            }
        }

        /// Whatever the spelling, a path that any reading takes under
        /// `/admin` is matched by a deny rule on `/admin/**`.
        #[test]
        fn no_spelling_of_admin_escapes_a_deny_rule(
            pre in r"(/x/\.\.|/%2e|/\.|/;a|//)?",
            a in r"(a|A|%61|%41)",
            mid in r"(dmin|DMIN|dm%69n)",
            sep in r"(/|//|\\|;/|;x=1/|\./|%2e/|\.\./admin/)",
        ) {
            let path = format!("{pre}/{a}{mid}{sep}users");
            if let Ok(v) = PathViews::new(&path) {
                let g = Glob::compile("/admin/**").expect("valid");
                prop_assert!(
                    g.matches(&v.decoded_folded, true) || g.matches(&v.lenient_folded, true),
                    "{:?} escaped as {:?}", path, v
                );
            }
        }
    }
}
