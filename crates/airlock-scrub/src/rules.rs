//! Rule files: parsing, validation and compilation.
//!
//! A rule is data (see `rules/secrets.toml`). Loading checks every field and
//! refuses a rule whose pattern has no finite maximum match length, because
//! the stream scrubber's correctness depends on holding back exactly that
//! many bytes.

use crate::Category;
use crate::checks::Check;
use crate::error::ScrubError;
use regex_automata::meta;
use regex_automata::util::syntax;
use serde::Deserialize;

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

/// A compiled, validated rule.
#[derive(Debug)]
pub(crate) struct Rule {
    pub id: String,
    pub kind: String,
    pub provider: String,
    pub source: String,
    pub category: Category,
    pub anchor: Anchor,
    pub regex: meta::Regex,
    /// Capture group index of `secret`, when the rule has one.
    pub secret_group: Option<usize>,
    /// Longest possible match in bytes.
    pub max_len: usize,
    pub check: Check,
    pub min_entropy: Option<f64>,
    pub pattern: String,
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
/// no UTF-8 requirement. Returns the regex and its maximum match length.
pub(crate) fn compile(pattern: &str) -> Result<(meta::Regex, Option<usize>, usize), String> {
    let hir = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(pattern)
        .map_err(|e| {
            format!(
                "invalid regex: {}",
                e.to_string().lines().last().unwrap_or("")
            )
        })?;
    let max = hir.properties().maximum_len();
    let min = hir.properties().minimum_len().unwrap_or(0);
    let re = meta::Regex::builder()
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .configure(meta::Config::new().utf8_empty(false))
        .build(pattern)
        .map_err(|e| format!("regex does not compile: {e}"))?;
    Ok((re, max, min))
}

fn context_pattern(names: &[String], secret: &str) -> String {
    let alts: Vec<String> = names.iter().map(|n| regex_syntax::escape(n)).collect();
    format!(
        r#"(?i:{})[A-Za-z0-9_.\-]{{0,24}}["'\]]{{0,2}}[ \t]{{0,4}}(?:=|:=|:|=>|\?=)[ \t]{{0,4}}["'`]?(?P<secret>(?:{}))(?:[^A-Za-z0-9_\-]|$)"#,
        alts.join("|"),
        secret
    )
}

/// Parse and compile a rule file. `file` names it in errors.
pub(crate) fn load(file: &str, text: &str, category: Category) -> Result<Vec<Rule>, ScrubError> {
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
        let (regex, max, min) = compile(&pattern).map_err(&bad)?;
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
        let secret_group = regex
            .group_info()
            .to_index(regex_automata::PatternID::ZERO, "secret");
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
        out.push(Rule {
            id: spec.id,
            kind: spec.kind,
            provider: spec.provider,
            source: spec.source,
            category,
            anchor,
            regex,
            secret_group,
            max_len,
            check,
            min_entropy: spec.entropy,
            pattern: pattern_text,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_rule_files_load() {
        let s = load("secrets.toml", BUILTIN_SECRETS, Category::Secret).expect("secrets load");
        let p = load("pii.toml", BUILTIN_PII, Category::Pii).expect("pii load");
        assert!(s.len() >= 150, "only {} secret rules", s.len());
        assert!(p.len() >= 10);
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
        let err = load("t.toml", text, Category::Secret).expect_err("must reject");
        assert_eq!(
            err.to_string(),
            "t.toml: rule bad: pattern has no maximum match length (unbounded repetition)"
        );
    }

    #[test]
    fn invalid_regex_and_unknown_fields_are_located() {
        let text = "[[rule]]\nid = \"x\"\ntype = \"x\"\nprovider = \"x\"\nsource = \"x\"\nkeywords = [\"abc\"]\nregex = 'abc('\n";
        let err = load("t.toml", text, Category::Secret).expect_err("must reject");
        assert!(
            err.to_string().starts_with("t.toml: rule x: invalid regex"),
            "{err}"
        );
        let text = "[[rule]]\nid = \"x\"\nkind = \"x\"\n";
        let err = load("t.toml", text, Category::Secret).expect_err("must reject");
        assert!(err.to_string().starts_with("t.toml: "), "{err}");
    }
}
