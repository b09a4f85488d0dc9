//! Path canonicalization and glob matching.
//!
//! An upstream may or may not decode `%2F`, `%2e` or `\` before routing, so
//! a request path is judged in two views: the path with only dot segments
//! resolved (`raw`), and the fully percent-decoded path with dot segments
//! resolved (`decoded`). A deny or ask rule matches when either view matches;
//! an allow rule only when both do. `/api/..%2fadmin` therefore cannot slip
//! past `deny /admin/**` nor borrow `allow /api/**`.

use crate::host::hex_val;

/// The two views of a request path (query and fragment removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathViews {
    pub raw: String,
    pub decoded: String,
}

impl PathViews {
    pub(crate) fn new(path: &str) -> PathViews {
        let path = path.split(['?', '#']).next().unwrap_or("");
        let slashed = path.replace('\\', "/");
        let raw = remove_dot_segments(&slashed);
        let decoded_bytes = percent_decode_all(slashed.as_bytes());
        let decoded = String::from_utf8_lossy(&decoded_bytes).replace('\\', "/");
        let decoded = remove_dot_segments(&decoded);
        PathViews { raw, decoded }
    }
}

fn percent_decode_all(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%'
            && let (Some(h), Some(l)) = (
                input.get(i + 1).and_then(|b| hex_val(*b)),
                input.get(i + 2).and_then(|b| hex_val(*b)),
            )
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

fn is_single_dot(seg: &str) -> bool {
    seg == "." || seg.eq_ignore_ascii_case("%2e")
}

fn is_double_dot(seg: &str) -> bool {
    let s = seg.to_ascii_lowercase();
    matches!(s.as_str(), ".." | ".%2e" | "%2e." | "%2e%2e")
}

/// Resolve `.` and `..` segments (also `%2e` spellings), collapse empty
/// segments, and return an absolute path (`/` at least). A trailing slash is
/// kept.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segs: Vec<&str> = path.split('/').collect();
    let mut trailing = false;
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        trailing = false;
        if seg.is_empty() {
            trailing = last && i > 0;
            continue;
        }
        if is_single_dot(seg) {
            trailing = last;
        } else if is_double_dot(seg) {
            out.pop();
            trailing = last;
        } else {
            out.push(seg);
        }
    }
    let mut s = String::with_capacity(path.len() + 1);
    for seg in &out {
        s.push('/');
        s.push_str(seg);
    }
    if s.is_empty() || trailing {
        s.push('/');
    }
    s
}

/// A compiled path glob: `*` matches within one segment, `**` across
/// segments; a pattern ending in `/**` also matches its prefix alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Glob {
    pattern: Vec<Tok>,
    prefix_also: Option<String>,
    matches_all: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(u8),
    Star,
    DoubleStar,
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
        Ok(Glob {
            pattern: toks,
            prefix_also,
            matches_all: p == "/**",
        })
    }

    /// True when the glob matches every path.
    pub(crate) fn matches_all(&self) -> bool {
        self.matches_all
    }

    pub(crate) fn matches(&self, path: &str) -> bool {
        if self.matches_all || self.prefix_also.as_deref() == Some(path) {
            return true;
        }
        glob_match(&self.pattern, path.as_bytes())
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

    #[test]
    fn dot_segments_and_encodings_are_resolved() {
        let v = PathViews::new("/api/..%2fadmin/x?q=1");
        assert_eq!(v.raw, "/api/..%2fadmin/x");
        assert_eq!(v.decoded, "/admin/x");
        assert_eq!(PathViews::new("/a/./b/../c").raw, "/a/c");
        assert_eq!(PathViews::new("/a/%2e%2E/c").raw, "/c");
        assert_eq!(PathViews::new("/a//b/").raw, "/a/b/");
        assert_eq!(PathViews::new("").raw, "/");
        assert_eq!(PathViews::new("/..").raw, "/");
        assert_eq!(PathViews::new("\\a\\..\\b").raw, "/b");
    }

    #[test]
    fn globs() {
        let g = Glob::compile("/repos/*/issues").expect("valid");
        assert!(g.matches("/repos/a/issues"));
        assert!(!g.matches("/repos/a/b/issues"));
        assert!(!g.matches("/repos/a/issues/1"));
        let g = Glob::compile("/api/**").expect("valid");
        assert!(g.matches("/api"));
        assert!(g.matches("/api/"));
        assert!(g.matches("/api/a/b"));
        assert!(!g.matches("/apix"));
        assert!(
            Glob::compile("/**")
                .expect("valid")
                .matches("/anything/at/all")
        );
        assert!(Glob::compile("api").is_err());
        let g = Glob::compile("/a*b*c").expect("valid");
        assert!(g.matches("/abc") && g.matches("/aXbYc") && !g.matches("/aX/bc"));
    }
}
