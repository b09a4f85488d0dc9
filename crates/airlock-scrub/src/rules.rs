//! Rule files: parsing, validation and compilation.
//!
//! A rule is data (see `rules/secrets.toml`). Loading checks every field and
//! refuses a rule whose pattern has no finite maximum match length, because
//! the stream scrubber's correctness depends on holding back exactly that
//! many bytes.

use crate::Category;
use crate::checks::Check;
use crate::error::ScrubError;
use crate::forward::Forward;
use crate::head::{self, ByteSet};
use crate::pattern::{NAME_STRETCH, context_pattern};
use crate::scan::Scanner;
use regex_automata::meta;
use serde::Deserialize;
use std::sync::OnceLock;

pub(crate) const BUILTIN_SECRETS: &str = include_str!("../rules/secrets.toml");
pub(crate) const BUILTIN_PII: &str = include_str!("../rules/pii.toml");

/// Longest pattern we accept (bytes). Larger rules would make streams hold
/// back too much.
const MAX_RULE_LEN: usize = 64 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    rule: Vec<RuleSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    provider: String,
    source: String,
    #[serde(default)]
    keywords: Vec<String>,
    regex: Option<String>,
    #[serde(default)]
    context: Vec<String>,
    secret: Option<String>,
    check: Option<String>,
    entropy: Option<f64>,
    anchor: Option<String>,
    min_digits: Option<usize>,
    run_needs: Option<String>,
    min_colons: Option<usize>,
    scanner: Option<String>,
    /// Refuse low-information values (placeholders, templates, masks,
    /// runs, sequences). Default: on for credential rules except those
    /// whose format carries a checksum or structure of its own (GitHub/npm
    /// CRC32, JWT) and those with a scanner (key blocks).
    low_info: Option<bool>,
}

/// Where a rule's regex is tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Anchor {
    /// Around hits of these literals (ASCII case-insensitive).
    Keywords(Vec<String>),
    /// Around each `@`.
    At,
    /// Around runs of digits and separators with at least `min_digits` digits.
    Digits {
        min_digits: usize,
        run_needs: Option<u8>,
    },
    /// Around each `:` next to a hex digit.
    Colon,
}

/// A validated rule. Its regex is compiled on first use ([`Rule::regex`]):
/// a run pays only for the rules whose anchors occur in its input, which is
/// most of a short CLI run's time otherwise (≈ 290 regexes).
#[derive(Debug)]
pub(crate) struct Rule {
    pub id: String,
    pub kind: String,
    pub provider: String,
    pub source: String,
    pub category: Category,
    pub anchor: Anchor,
    /// Compiled on first use; see [`Rule::regex`].
    compiled: OnceLock<meta::Regex>,
    /// Compiled on first use; see [`Rule::forward`].
    forward: OnceLock<Forward>,
    /// The pattern as parsed at load, which both compile from.
    hir: regex_syntax::hir::Hir,
    /// For a `context` rule: its names and secret pattern, which its
    /// forward matcher is built from ([`Forward::context`]).
    context: Option<(Vec<String>, String)>,
    /// Capture group index of `secret`, when the rule has one.
    pub secret_group: Option<usize>,
    /// Longest possible match in bytes.
    pub max_len: usize,
    pub check: Check,
    pub min_entropy: Option<f64>,
    /// Refuse values [`crate::checks::low_information`] calls filler.
    pub low_info: bool,
    pub pattern: String,
    /// Declared precondition (`min_colons`): every match lies within one
    /// run of hex digits, ':' and '.' that holds "::" or at least this many
    /// ':'. Windows without such a run are skipped without a search.
    pub min_colons: Option<usize>,
    /// Bytes one of which every match holds ([`head::needs`]), when its
    /// windows need not hold one already (an `@` rule's windows hold
    /// `@`): a window without them is skipped without a search.
    pub needs: Option<head::Needs>,
    /// A hand-written matcher used instead of the regex; only allowed when
    /// the pattern is the one it implements.
    pub scanner: Option<Scanner>,
    /// Every match starts with one of the rule's keywords (ASCII
    /// case-insensitively): the engine then tries the regex anchored at each
    /// keyword occurrence instead of searching windows around it. Derived
    /// at load from the pattern's literal prefixes (the extraction regex
    /// uses for its own prefilters, which must never miss a match), or true
    /// by construction for `context` rules, whose pattern opens with the
    /// names.
    pub starts_with_keyword: bool,
    /// The bytes a match can hold at its first offsets ([`head::head`]):
    /// an anchored try that fails them cannot match.
    pub head: Vec<ByteSet>,
    /// For a `context` rule whose names are all name bytes: the longest run
    /// of name bytes that opens a match ([`head::assignment_follows`]).
    pub assign_run: Option<usize>,
    /// For the built-in call-argument and XML-element rules: what must
    /// follow the name ([`head::Follows`]).
    pub follows: Option<head::Follows>,
}

/// Public description of a loaded rule (for listing and documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    /// Stable rule id.
    pub id: String,
    /// The type reported in findings and placeholders.
    pub kind: String,
    /// Secret or PII.
    pub category: Category,
    /// Who issues the credential / which standard defines the format.
    pub provider: String,
    /// Where the format is documented.
    pub source: String,
    /// Longest possible match in bytes.
    pub max_len: usize,
    /// The compiled pattern (bytes, Unicode off).
    pub pattern: String,
}

impl Rule {
    /// The rule's regex, compiled on first call. Every pattern was parsed
    /// and bounded at load; built-in patterns are compiled by
    /// `builtin_rules_compile` in the tests, and patterns from other rule
    /// files are compiled at load (`load(.., eager = true)`), so the build
    /// here cannot fail.
    pub(crate) fn regex(&self) -> &meta::Regex {
        self.compiled.get_or_init(|| {
            build_regex_from_hir(&self.hir)
                .expect("invariant: every rule pattern compiled in tests or at load")
        })
    }

    /// Whether [`Rule::regex`] has been compiled (for tests that check a
    /// path never needs it).
    #[cfg(test)]
    pub(crate) fn is_compiled(&self) -> bool {
        self.compiled.get().is_some()
    }

    /// Whether the engine only ever tries this rule anchored at a keyword
    /// occurrence (never searches a range for it): a keyword rule whose
    /// every match starts with a keyword and that has no scanner (a
    /// scanner searches a range, it does not try one position). Such a
    /// rule is matched by [`Rule::forward`], not [`Rule::regex`].
    pub(crate) fn anchored_only(&self) -> bool {
        matches!(self.anchor, Anchor::Keywords(_))
            && self.starts_with_keyword
            && self.scanner.is_none()
    }

    /// The rule's forward-only anchored matcher, compiled on first call
    /// (only [`Rule::anchored_only`] rules use it). Cannot fail for the
    /// same reason as [`Rule::regex`]: built-in patterns are built by
    /// `builtin_rules_compile`, others at load (`eager`); it compiles the
    /// same pattern with the same settings as the regex's forward NFA.
    pub(crate) fn forward(&self) -> &Forward {
        self.forward.get_or_init(|| {
            self.build_forward()
                .expect("invariant: every rule pattern compiled in tests or at load")
        })
    }

    /// A new forward matcher for this rule: a `context` rule's is its
    /// names followed by the matcher of its tail, which rules with the same
    /// secret pattern share.
    pub(crate) fn build_forward(&self) -> Result<Forward, String> {
        match &self.context {
            Some((names, secret)) => Forward::context(names, secret),
            None => Forward::build_from_hir(&self.hir),
        }
    }

    pub(crate) fn info(&self) -> RuleInfo {
        RuleInfo {
            id: self.id.clone(),
            kind: self.kind.clone(),
            category: self.category,
            provider: self.provider.clone(),
            source: self.source.clone(),
            max_len: self.max_len,
            pattern: self.pattern.clone(),
        }
    }
}

/// Compile a pattern the way every rule is compiled: bytes, Unicode off,
/// no UTF-8 requirement ([`crate::syntax::parse`]), then
/// [`build_regex_from_hir`].
pub(crate) fn build_regex(pattern: &str) -> Result<meta::Regex, String> {
    build_regex_from_hir(&crate::syntax::parse(pattern)?)
}

/// A rule's full regex from its parsed pattern. Without prefilters: a
/// rule's regex searches windows of a few hundred bytes, where building
/// and starting a prefilter (and the reverse-inner literal search it
/// brings) costs more than it skips.
fn build_regex_from_hir(hir: &regex_syntax::hir::Hir) -> Result<meta::Regex, String> {
    meta::Regex::builder()
        .configure(meta::Config::new().utf8_empty(false).auto_prefilter(false))
        .build_from_hir(hir)
        .map_err(|e| format!("regex does not compile: {e}"))
}

/// The index of the capture group named `secret` (numbered as the compiled
/// regex numbers its groups: group 0 is the whole match).
fn secret_index(hir: &regex_syntax::hir::Hir) -> Option<usize> {
    use regex_syntax::hir::HirKind;
    match hir.kind() {
        HirKind::Capture(c) if c.name.as_deref() == Some("secret") => usize::try_from(c.index).ok(),
        HirKind::Capture(c) => secret_index(&c.sub),
        HirKind::Repetition(r) => secret_index(&r.sub),
        HirKind::Concat(v) | HirKind::Alternation(v) => v.iter().find_map(secret_index),
        _ => None,
    }
}

/// What parsing a pattern tells about it.
pub(crate) struct Parsed {
    /// The parsed pattern.
    hir: regex_syntax::hir::Hir,
    /// The compiled regex, when compiled eagerly.
    regex: Option<meta::Regex>,
    /// Longest possible match, `None` when unbounded.
    max: Option<usize>,
    /// Shortest possible match.
    min: usize,
    /// Index of the `secret` capture group.
    secret_group: Option<usize>,
    /// Byte sets of the first offsets of every match.
    head: Vec<ByteSet>,
}

/// Parse a pattern the way every rule is compiled. With `eager`, also
/// compile it (else it is compiled on first use).
pub(crate) fn compile(pattern: &str, eager: bool) -> Result<Parsed, String> {
    let hir = crate::syntax::parse(pattern)?;
    let max = hir.properties().maximum_len();
    let min = hir.properties().minimum_len().unwrap_or(0);
    let group = secret_index(&hir);
    let head = head::head(&hir, head::HEAD_LEN);
    let re = if eager {
        Some(build_regex_from_hir(&hir)?)
    } else {
        None
    };
    Ok(Parsed {
        hir,
        regex: re,
        max,
        min,
        secret_group: group,
        head,
    })
}

/// Literals one of which begins every match of `hir`, `None` when unknown
/// (the extraction regex uses for its own prefilters). Asked only of
/// keyword rules that nothing else shows to start with a keyword: the
/// extraction was a third of loading the built-in rules.
fn prefixes(hir: &regex_syntax::hir::Hir) -> Option<Vec<Vec<u8>>> {
    regex_syntax::hir::literal::Extractor::new()
        .kind(regex_syntax::hir::literal::ExtractKind::Prefix)
        .extract(hir)
        .literals()
        .map(|ls| ls.iter().map(|l| l.as_bytes().to_vec()).collect())
}

/// For the compile-cost benchmark: each built-in rule's id and whether
/// the engine matches it with a forward-only anchored matcher (a
/// keyword rule whose every match starts with a keyword, without a
/// scanner) rather than a full regex.
pub fn builtin_anchored_only() -> Vec<(String, bool)> {
    [
        ("secrets.toml", BUILTIN_SECRETS, Category::Secret),
        ("pii.toml", BUILTIN_PII, Category::Pii),
    ]
    .into_iter()
    .filter_map(|(file, text, cat)| load(file, text, cat, false).ok())
    .flatten()
    .map(|r| {
        let a = r.anchored_only();
        (r.id, a)
    })
    .collect()
}

/// Parse and validate a rule file. `file` names it in errors. With `eager`,
/// every regex is also compiled now (for rule files not covered by this
/// crate's tests); otherwise on first use.
pub(crate) fn load(
    file: &str,
    text: &str,
    category: Category,
    eager: bool,
) -> Result<Vec<Rule>, ScrubError> {
    let parsed: RuleFile = toml::from_str(text).map_err(|e| ScrubError::RuleFile {
        file: file.to_string(),
        message: e.message().to_string(),
    })?;
    let mut out = Vec::with_capacity(parsed.rule.len());
    let mut seen = std::collections::HashSet::new();
    for spec in parsed.rule {
        let id = spec.id.clone();
        let bad = |message: String| ScrubError::Rule {
            file: file.to_string(),
            id: id.clone(),
            message,
        };
        if id.is_empty()
            || !id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(bad("id must be non-empty snake_case".into()));
        }
        if !seen.insert(id.clone()) {
            return Err(bad("duplicate rule id".into()));
        }
        if spec.kind.is_empty()
            || spec
                .kind
                .bytes()
                .any(|b| !(b.is_ascii_alphanumeric() || b == b'_'))
        {
            return Err(bad("type must be non-empty [A-Za-z0-9_]".into()));
        }
        if spec.source.is_empty() || spec.provider.is_empty() {
            return Err(bad("provider and source are required".into()));
        }
        let mut keywords: Vec<String> = spec.keywords.clone();
        let from_context = spec.regex.is_none();
        let pattern = match (&spec.regex, &spec.context, &spec.secret) {
            (Some(r), c, None) if c.is_empty() => r.clone(),
            (None, c, Some(s)) if !c.is_empty() => {
                // Assignment names are matched in any case.
                keywords.extend(c.iter().cloned());
                context_pattern(c, s)
            }
            _ => return Err(bad("give either `regex`, or `context` with `secret`".into())),
        };
        keywords.retain(|k| !k.is_empty());
        let anchor = match spec.anchor.as_deref() {
            None | Some("keywords") => {
                if keywords.is_empty() {
                    return Err(bad("a keyword-anchored rule needs keywords".into()));
                }
                if let Some(k) = keywords.iter().find(|k| k.len() < 3) {
                    return Err(bad(format!("keyword {k:?} is shorter than 3 bytes")));
                }
                Anchor::Keywords(keywords)
            }
            Some("at") => Anchor::At,
            Some("colon") => Anchor::Colon,
            Some("digits") => {
                let run_needs = match spec.run_needs.as_deref() {
                    None => None,
                    Some(s) if s.len() == 1 => s.bytes().next(),
                    Some(_) => return Err(bad("run_needs must be one byte".into())),
                };
                Anchor::Digits {
                    min_digits: spec.min_digits.unwrap_or(1).max(1),
                    run_needs,
                }
            }
            Some(other) => return Err(bad(format!("unknown anchor {other:?}"))),
        };
        let Parsed {
            hir,
            regex,
            max,
            min,
            secret_group,
            head,
        } = compile(&pattern, eager).map_err(&bad)?;
        let needs = head::needs(&hir).filter(|n| match &anchor {
            Anchor::Keywords(words) => !words.iter().all(|w| n.in_every_occurrence_of(w)),
            Anchor::At => !n.contains(b'@'),
            Anchor::Colon => !n.contains(b':'),
            Anchor::Digits { run_needs, .. } => !run_needs.is_some_and(|b| n.contains(b)),
        });
        // A context pattern opens with `(?i:name|…)` and its names are
        // keywords (`keywords.retain` above drops an empty one, which would
        // let a match start anywhere, so check them all).
        let context_names = from_context && spec.context.iter().all(|c| !c.is_empty());
        let assign_run = (context_names
            && spec
                .context
                .iter()
                .all(|c| c.bytes().all(head::is_name_byte)))
        .then(|| spec.context.iter().map(String::len).max().unwrap_or(0) + NAME_STRETCH);
        // The call-argument and XML-element patterns open with an
        // alternation of names too large for the literal extractor (its
        // case variants exceed its limits), so their prefixes come out
        // inexact; `Follows::for_pattern` recognizes exactly those patterns,
        // whose every match starts with one of `Follows::names`.
        let follows = head::Follows::for_pattern(&pattern);
        let starts_with_keyword = match &anchor {
            Anchor::Keywords(kws) => {
                context_names
                    || follows.is_some_and(|f| {
                        f.names().iter().all(|n| {
                            kws.iter().any(|k| {
                                n.len() >= k.len()
                                    && n.as_bytes()[..k.len()].eq_ignore_ascii_case(k.as_bytes())
                            })
                        })
                    })
                    || prefixes(&hir).is_some_and(|ps| {
                        !ps.is_empty()
                            && ps.iter().all(|p| {
                                kws.iter().any(|k| {
                                    p.len() >= k.len()
                                        && p[..k.len()].eq_ignore_ascii_case(k.as_bytes())
                                })
                            })
                    })
            }
            _ => false,
        };
        let pattern_text = pattern.clone();
        let max_len = match max {
            Some(m) if m <= MAX_RULE_LEN => m,
            Some(m) => {
                return Err(bad(format!(
                    "longest match is {m} bytes (limit {MAX_RULE_LEN})"
                )));
            }
            None => {
                return Err(bad(
                    "pattern has no maximum match length (unbounded repetition)".into(),
                ));
            }
        };
        if min == 0 {
            return Err(bad("pattern can match the empty string".into()));
        }
        let check = match spec.check.as_deref() {
            None => Check::None,
            Some(name) => {
                Check::parse(name).ok_or_else(|| bad(format!("unknown check {name:?}")))?
            }
        };
        if let Some(e) = spec.entropy
            && !(0.0..=8.0).contains(&e)
        {
            return Err(bad("entropy must be within 0..=8 bits per byte".into()));
        }
        if spec.min_colons == Some(0) {
            return Err(bad("min_colons must be at least 1".into()));
        }
        let scanner = match spec.scanner.as_deref() {
            None => None,
            Some(name) => {
                let family = Scanner::family(name)
                    .ok_or_else(|| bad(format!("unknown scanner {name:?}")))?;
                let sc = family
                    .iter()
                    .find(|sc| sc.pattern() == pattern_text)
                    .ok_or_else(|| {
                        bad(format!(
                            "scanner {name:?} implements only its own pattern, not this regex"
                        ))
                    })?;
                Some(*sc)
            }
        };
        let low_info = spec.low_info.unwrap_or(
            category == Category::Secret
                && scanner.is_none()
                && !matches!(check, Check::GithubCrc32 | Check::Jwt),
        );
        let rule = Rule {
            id: spec.id,
            kind: spec.kind,
            provider: spec.provider,
            source: spec.source,
            category,
            anchor,
            compiled: regex.map(OnceLock::from).unwrap_or_default(),
            forward: OnceLock::new(),
            hir,
            context: context_names
                .then(|| spec.secret.clone().map(|s| (spec.context.clone(), s)))
                .flatten(),
            secret_group,
            max_len,
            check,
            min_entropy: spec.entropy,
            low_info,
            pattern: pattern_text,
            min_colons: spec.min_colons,
            needs,
            scanner,
            starts_with_keyword,
            head,
            assign_run,
            follows,
        };
        if eager && rule.anchored_only() {
            let fwd = rule.build_forward().map_err(&bad)?;
            let _ = rule.forward.set(fwd);
        }
        out.push(rule);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_rule_files_load() {
        let s =
            load("secrets.toml", BUILTIN_SECRETS, Category::Secret, false).expect("secrets load");
        let p = load("pii.toml", BUILTIN_PII, Category::Pii, false).expect("pii load");
        assert!(s.len() >= 150, "only {} secret rules", s.len());
        assert!(p.len() >= 10);
    }

    /// Built-in rules are loaded lazily (`eager = false`): this test is what
    /// makes [`Rule::regex`]'s invariant hold for them. Each regex compiles,
    /// and the `secret` group index found in the parsed pattern is the one
    /// the compiled regex uses.
    #[test]
    fn builtin_rules_compile() {
        for (file, text, cat) in [
            ("secrets.toml", BUILTIN_SECRETS, Category::Secret),
            ("pii.toml", BUILTIN_PII, Category::Pii),
        ] {
            let eager = load(file, text, cat, true).expect("eager load");
            let lazy = load(file, text, cat, false).expect("lazy load");
            for (e, l) in eager.iter().zip(&lazy) {
                let from_regex = e
                    .regex()
                    .group_info()
                    .to_index(regex_automata::PatternID::ZERO, "secret");
                assert_eq!(l.secret_group, from_regex, "rule {}", l.id);
                assert_eq!(l.max_len, e.max_len, "rule {}", l.id);
                build_regex(&l.pattern).unwrap_or_else(|m| panic!("rule {}: {m}", l.id));
                // [`Rule::forward`]'s invariant, for every rule (cheap).
                Forward::build(&l.pattern).unwrap_or_else(|m| panic!("rule {}: {m}", l.id));
                assert_eq!(
                    e.forward.get().is_some(),
                    l.anchored_only(),
                    "rule {}: eager load builds the forward matcher of anchored-only rules",
                    l.id
                );
            }
            assert_eq!(eager.len(), lazy.len());
        }
    }

    #[test]
    fn unbounded_rule_is_rejected() {
        let text = r#"
[[rule]]
id = "bad"
type = "bad"
provider = "x"
source = "x"
keywords = ["abc"]
regex = 'abc[a-z]+'
"#;
        let err = load("t.toml", text, Category::Secret, true).expect_err("must reject");
        assert_eq!(
            err.to_string(),
            "t.toml: rule bad: pattern has no maximum match length (unbounded repetition)"
        );
    }

    /// A scanner replaces the regex only for the pattern it implements; a
    /// rule file cannot attach it to another regex. `min_colons = 0` (which
    /// would skip every window) is refused.
    #[test]
    fn scanner_and_min_colons_are_checked() {
        let rule = |extra: &str, regex: &str| {
            format!(
                "[[rule]]\nid = \"x\"\ntype = \"x\"\nprovider = \"x\"\nsource = \"x\"\nanchor = \"digits\"\n{extra}\nregex = '''{regex}'''\n"
            )
        };
        let err = load(
            "t.toml",
            &rule("scanner = \"ipv4\"", r"\d{1,3}\.\d{1,3}"),
            Category::Pii,
            true,
        )
        .expect_err("must reject");
        assert_eq!(
            err.to_string(),
            "t.toml: rule x: scanner \"ipv4\" implements only its own pattern, not this regex"
        );
        let err = load(
            "t.toml",
            &rule("scanner = \"ipv9\"", r"\d{1,3}"),
            Category::Pii,
            true,
        )
        .expect_err("must reject");
        assert_eq!(err.to_string(), "t.toml: rule x: unknown scanner \"ipv9\"");
        let ok = load(
            "t.toml",
            &rule("scanner = \"ipv4\"", crate::scan::IPV4_PATTERN),
            Category::Pii,
            true,
        )
        .expect("own pattern loads");
        assert_eq!(ok[0].scanner, Some(Scanner::Ipv4));
        let err = load(
            "t.toml",
            &rule("min_colons = 0", r"\d{1,3}"),
            Category::Pii,
            true,
        )
        .expect_err("must reject");
        assert_eq!(
            err.to_string(),
            "t.toml: rule x: min_colons must be at least 1"
        );
    }

    #[test]
    fn invalid_regex_and_unknown_fields_are_located() {
        let text = "[[rule]]\nid = \"x\"\ntype = \"x\"\nprovider = \"x\"\nsource = \"x\"\nkeywords = [\"abc\"]\nregex = 'abc('\n";
        let err = load("t.toml", text, Category::Secret, true).expect_err("must reject");
        assert!(
            err.to_string().starts_with("t.toml: rule x: invalid regex"),
            "{err}"
        );
        let text = "[[rule]]\nid = \"x\"\nkind = \"x\"\n";
        let err = load("t.toml", text, Category::Secret, true).expect_err("must reject");
        assert!(err.to_string().starts_with("t.toml: "), "{err}");
    }
}
