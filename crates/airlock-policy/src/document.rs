//! Policy documents: the TOML a person writes (a `--policy` file, the
//! `[policy]` section of `airlock.toml`, or a body an API receives) turned
//! into a compiled [`EgressPolicy`].
//!
//! Two phases. Phase one deserializes [`RawPolicy`] with
//! `deny_unknown_fields` and byte spans; phase two turns it into a
//! [`PolicySpec`] and compiles it, so every mistake — a bad host pattern,
//! method, path glob, port or CIDR — comes back as a [`DocumentError`] naming
//! `source:line:col`, the field and what is wrong. The raw types derive
//! `schemars::JsonSchema` with the `schema` feature, for the configuration
//! file's published schema.

use crate::{EgressPolicy, Mode, PolicyError, PolicySpec, RuleSpec, Scheme};
use airlock_types::Outcome;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_spanned::Spanned;
use std::net::IpAddr;
use std::ops::Range;

/// A policy document (or any TOML text) failed to parse or validate.
/// Displays as one line: `source:line:col: field: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}:{line}:{col}: {field}: {message}")]
pub struct DocumentError {
    /// The name the text was given (a path, `<built-in>`, a request id).
    pub source_name: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    /// Dotted path of the field (`rules[0].hosts[1]`), or `(top level)`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// A validated, compiled policy document.
#[derive(Debug, Clone, Default)]
pub struct PolicyDocument {
    /// True when the source set any policy field (otherwise the built-in
    /// `read_public` applies and a `--policy` file may take over).
    pub configured: bool,
    /// The spec as written, validated (for embedders that describe the policy).
    pub spec: PolicySpec,
    /// The compiled policy.
    pub policy: EgressPolicy,
}

/// Parse and compile a standalone policy document (the top level has the
/// fields of [`RawPolicy`]). `source_name` names it in errors.
pub fn parse_document(text: &str, source_name: &str) -> Result<PolicyDocument, DocumentError> {
    let src = SourceText::new(source_name, text);
    let raw: RawPolicy = src.deserialize()?;
    let mut doc = validate_at(&raw, &src, "")?;
    doc.configured = true;
    Ok(doc)
}

/// Validate a policy already deserialized as part of a larger document
/// (`[policy]` in `airlock.toml`): `text` and `source_name` are that
/// document's, `prefix` is prepended to field names (`"policy."`).
pub fn validate_section(
    raw: &RawPolicy,
    text: &str,
    source_name: &str,
    prefix: &str,
) -> Result<PolicyDocument, DocumentError> {
    validate_at(raw, &SourceText::new(source_name, text), prefix)
}

/// TOML text with its name, for located errors. Also used by the binary for
/// the other sections of its configuration file, so every error reads alike.
#[derive(Debug, Clone, Copy)]
pub struct SourceText<'a> {
    name: &'a str,
    text: &'a str,
}

impl<'a> SourceText<'a> {
    /// `text`, reported as `name`.
    pub fn new(name: &'a str, text: &'a str) -> SourceText<'a> {
        SourceText { name, text }
    }

    /// Phase one: parse into raw types. Syntax errors, unknown fields and
    /// wrong types come back located.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, DocumentError> {
        toml::from_str::<T>(self.text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let field = self.field_at(span.start);
            self.error(span, &field, e.message().trim())
        })
    }

    /// A located error for `field` at byte range `span`.
    pub fn error(
        &self,
        span: Range<usize>,
        field: &str,
        message: impl Into<String>,
    ) -> DocumentError {
        let (line, col) = self.line_col(span.start);
        DocumentError {
            source_name: self.name.to_owned(),
            line,
            col,
            field: if field.is_empty() {
                "(top level)".into()
            } else {
                field.to_owned()
            },
            message: message.into(),
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let col = before
            .get(line_start..)
            .map(|s| s.chars().count())
            .unwrap_or(0)
            + 1;
        (line, col)
    }

    /// Best-effort dotted path of the key at a byte offset: the enclosing
    /// `[table]` header plus the key on that line. Used only for messages.
    fn field_at(&self, offset: usize) -> String {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or("");
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let line_end = self.text[line_start..]
            .find('\n')
            .map(|i| line_start + i)
            .unwrap_or(self.text.len());
        let line = self.text[line_start..line_end].trim();
        let header_of = |l: &str| -> Option<String> {
            let l = l.trim();
            let inner = l
                .strip_prefix("[[")
                .and_then(|r| r.split("]]").next())
                .or_else(|| l.strip_prefix('[').and_then(|r| r.split(']').next()))?;
            Some(inner.trim().to_owned())
        };
        if let Some(h) = header_of(line) {
            return h;
        }
        let key = line
            .split('=')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"')
            .to_owned();
        let table = self.text[..line_start]
            .lines()
            .rev()
            .find_map(|l| {
                if l.trim_start().starts_with('[') {
                    header_of(l)
                } else {
                    None
                }
            })
            .unwrap_or_default();
        match (table.is_empty(), key.is_empty()) {
            (true, _) => key,
            (false, true) => table,
            (false, false) => format!("{table}.{key}"),
        }
    }
}

/// Built-in behaviour when no rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum RawMode {
    /// GET, HEAD and OPTIONS to any public host; other methods only where a rule allows.
    ReadPublic,
    /// Only what a rule allows.
    DenyAll,
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum RawAction {
    /// Let the request through.
    Allow,
    /// Hold the request for approval (until approvals exist: denied with `approval_required`).
    Ask,
    /// Refuse the request.
    Deny,
}

/// A URL scheme a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum RawScheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

/// Raw `[policy]` section (also the top level of a `--policy` file).
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// What applies when no rule matches: `read_public` (default) or `deny_all`.
    #[cfg_attr(feature = "schema", schemars(with = "Option<RawMode>"))]
    pub mode: Option<Spanned<RawMode>>,
    /// Intercept (TLS-terminate) every HTTPS connection, even where a blind tunnel would enforce the policy.
    pub inspect_all: Option<bool>,
    /// Address ranges exempt from the private/reserved address guard, as CIDRs
    /// (`"10.1.2.0/24"`, `"fd12::/64"`) or single addresses. Use for internal services and tests.
    #[cfg_attr(feature = "schema", schemars(with = "Option<Vec<String>>"))]
    pub allow_private: Option<Vec<Spanned<String>>>,
    /// Rules; the strictest matching outcome wins, whatever their order.
    pub rules: Option<Vec<RawRule>>,
}

/// One `[[policy.rules]]` entry.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Hosts: exact names (`api.example.com`, Unicode allowed), IP literals, `*.suffix`
    /// (any name strictly below the suffix), or `*` (any host).
    #[cfg_attr(feature = "schema", schemars(with = "Vec<String>"))]
    pub hosts: Spanned<Vec<Spanned<String>>>,
    /// Schemes the rule applies to (`http`, `https`); absent means both.
    pub schemes: Option<Vec<RawScheme>>,
    /// HTTP methods (case-insensitive); absent or `"*"` means every method.
    #[cfg_attr(feature = "schema", schemars(with = "Option<Vec<String>>"))]
    pub methods: Option<Vec<Spanned<String>>>,
    /// Path globs starting with `/`: `*` matches within a segment, `**` across segments
    /// (`/api/**` also matches `/api`); absent means every path. The query is never matched.
    #[cfg_attr(feature = "schema", schemars(with = "Option<Vec<String>>"))]
    pub paths: Option<Vec<Spanned<String>>>,
    /// Destination ports (1-65535). Absent: an `allow` rule covers only the scheme's default
    /// port (443 for https, 80 for http, so a CONNECT only to 443), a `deny` or `ask` rule
    /// every port.
    #[cfg_attr(feature = "schema", schemars(with = "Option<Vec<u16>>"))]
    pub ports: Option<Vec<Spanned<u16>>>,
    /// On an `allow` rule: requests it allows may also upgrade to WebSocket
    /// (`Upgrade: websocket`). No other upgrade (e.g. `h2c`) is ever allowed. Default false.
    pub websocket: Option<bool>,
    /// On an `allow` rule: requests it allows may carry user information in the URL
    /// (`https://user:pass@host/`); elsewhere such a URL is refused with `userinfo_in_url`.
    /// The proxy sends the userinfo as an `Authorization: Basic` header (unless the request
    /// has one) and never logs or audits it. Default false.
    pub allow_userinfo: Option<bool>,
    /// `allow`, `deny` or `ask`.
    #[cfg_attr(feature = "schema", schemars(with = "RawAction"))]
    pub action: Spanned<RawAction>,
    /// Match `paths` regardless of case (`/ADMIN` as `/admin`). Default: true for `deny` and
    /// `ask` rules (a case-insensitive server routes `/ADMIN` to the handler the rule names),
    /// false for `allow` rules (an allow rule never covers more than it names).
    pub case_insensitive: Option<bool>,
}

fn validate_at(
    raw: &RawPolicy,
    src: &SourceText<'_>,
    prefix: &str,
) -> Result<PolicyDocument, DocumentError> {
    let configured = raw.mode.is_some()
        || raw.inspect_all.is_some()
        || raw.allow_private.is_some()
        || raw.rules.is_some();
    let mode = match raw.mode.as_ref().map(|m| *m.get_ref()) {
        None | Some(RawMode::ReadPublic) => Mode::ReadPublic,
        Some(RawMode::DenyAll) => Mode::DenyAll,
    };
    let mut allow_private = Vec::new();
    for (i, c) in raw.allow_private.iter().flatten().enumerate() {
        let cidr = parse_cidr(c.get_ref())
            .map_err(|m| src.error(c.span(), &format!("{prefix}allow_private[{i}]"), m))?;
        allow_private.push(cidr);
    }
    let rules: Vec<RuleSpec> = raw.rules.iter().flatten().map(to_rule_spec).collect();
    let spec = PolicySpec {
        mode,
        rules,
        allow_private,
        inspect_all: raw.inspect_all.unwrap_or(false),
    };
    let policy = EgressPolicy::compile(spec.clone()).map_err(|e| locate(&e, raw, src, prefix))?;
    Ok(PolicyDocument {
        configured,
        spec,
        policy,
    })
}

fn to_rule_spec(r: &RawRule) -> RuleSpec {
    let strings = |v: &Option<Vec<Spanned<String>>>| {
        v.iter()
            .flatten()
            .map(|s| s.get_ref().clone())
            .collect::<Vec<_>>()
    };
    RuleSpec {
        hosts: r
            .hosts
            .get_ref()
            .iter()
            .map(|s| s.get_ref().clone())
            .collect(),
        schemes: r
            .schemes
            .iter()
            .flatten()
            .map(|s| match s {
                RawScheme::Http => Scheme::Http,
                RawScheme::Https => Scheme::Https,
            })
            .collect(),
        methods: strings(&r.methods),
        paths: strings(&r.paths),
        ports: r.ports.iter().flatten().map(|p| *p.get_ref()).collect(),
        websocket: r.websocket.unwrap_or(false),
        allow_userinfo: r.allow_userinfo.unwrap_or(false),
        action: match r.action.get_ref() {
            RawAction::Allow => Outcome::Allow,
            RawAction::Ask => Outcome::Ask,
            RawAction::Deny => Outcome::Deny,
        },
        case_insensitive: r.case_insensitive,
    }
}

/// `addr/len` or a bare address (a single host).
fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (a, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr: IpAddr = a
        .trim_matches(['[', ']'])
        .parse()
        .map_err(|_| format!("{s:?} is not an IP address or CIDR"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(l) => match l.parse::<u8>() {
            Ok(n) if n <= max => n,
            _ => return Err(format!("{s:?}: prefix length must be 0..={max}")),
        },
    };
    Ok((addr, len))
}

/// Point a compile error at the item it is about.
fn locate(e: &PolicyError, raw: &RawPolicy, src: &SourceText<'_>, prefix: &str) -> DocumentError {
    let rule = |i: usize| raw.rules.as_ref().and_then(|r| r.get(i));
    let item =
        |v: Option<&Vec<Spanned<String>>>, j: usize| v.and_then(|v| v.get(j)).map(|s| s.span());
    let (span, field, message) = match e {
        PolicyError::EmptyHosts { rule: i } => (
            rule(*i).map(|r| r.hosts.span()),
            format!("{prefix}rules[{i}].hosts"),
            "must name at least one host".to_owned(),
        ),
        PolicyError::InvalidHostPattern {
            rule: i,
            index,
            message,
            ..
        } => (
            item(rule(*i).map(|r| r.hosts.get_ref()), *index),
            format!("{prefix}rules[{i}].hosts[{index}]"),
            format!("{}: {message}", quoted(raw, *i, *index)),
        ),
        PolicyError::InvalidMethod {
            rule: i,
            index,
            method,
        } => (
            item(rule(*i).and_then(|r| r.methods.as_ref()), *index),
            format!("{prefix}rules[{i}].methods[{index}]"),
            format!("{method:?} is not an HTTP method token"),
        ),
        PolicyError::InvalidPathPattern {
            rule: i,
            index,
            pattern,
            message,
        } => (
            item(rule(*i).and_then(|r| r.paths.as_ref()), *index),
            format!("{prefix}rules[{i}].paths[{index}]"),
            format!("{pattern:?} {message}"),
        ),
        PolicyError::InvalidPort { rule: i, index } => (
            rule(*i)
                .and_then(|r| r.ports.as_ref())
                .and_then(|v| v.get(*index))
                .map(|s| s.span()),
            format!("{prefix}rules[{i}].ports[{index}]"),
            "0 is not a destination port".to_owned(),
        ),
        PolicyError::InvalidCidr { index, message } => (
            item(raw.allow_private.as_ref(), *index),
            format!("{prefix}allow_private[{index}]"),
            message.clone(),
        ),
    };
    src.error(span.unwrap_or(0..0), &field, message)
}

fn quoted(raw: &RawPolicy, rule: usize, index: usize) -> String {
    raw.rules
        .as_ref()
        .and_then(|r| r.get(rule))
        .and_then(|r| r.hosts.get_ref().get(index))
        .map(|s| format!("{:?}", s.get_ref()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Result<PolicyDocument, DocumentError> {
        parse_document(text, "p.toml")
    }

    #[test]
    fn full_policy_file_parses() {
        let s = file(
            "mode = \"deny_all\"\ninspect_all = true\nallow_private = [\"127.0.0.0/8\", \"::1\"]\n\n\
             [[rules]]\nhosts = [\"api.example.com\", \"*.example.org\"]\nschemes = [\"https\"]\n\
             methods = [\"GET\", \"post\"]\npaths = [\"/v1/**\"]\nports = [443, 8443]\n\
             websocket = true\nallow_userinfo = true\naction = \"allow\"\n",
        )
        .expect("valid");
        assert!(s.configured);
        assert_eq!(s.spec.mode, Mode::DenyAll);
        assert!(s.spec.inspect_all);
        assert_eq!(
            s.spec.allow_private,
            vec![
                ("127.0.0.0".parse().expect("ip"), 8),
                ("::1".parse().expect("ip"), 128)
            ]
        );
        assert_eq!(
            s.spec.rules,
            vec![RuleSpec {
                hosts: vec!["api.example.com".into(), "*.example.org".into()],
                schemes: vec![Scheme::Https],
                methods: vec!["GET".into(), "post".into()],
                paths: vec!["/v1/**".into()],
                ports: vec![443, 8443],
                websocket: true,
                allow_userinfo: true,
                action: Outcome::Allow,
                case_insensitive: None,
            }]
        );
    }

    #[test]
    fn errors_point_at_the_item() {
        let cases = [
            (
                "[[rules]]\nhosts = [\"ok.com\", \"a..b\"]\naction = \"allow\"\n",
                "p.toml:2:20: rules[0].hosts[1]: \"a..b\": ",
            ),
            (
                "[[rules]]\nhosts = [\"ok.com\"]\nmethods = [\"GE T\"]\naction = \"allow\"\n",
                "p.toml:3:12: rules[0].methods[0]: \"GE T\" is not",
            ),
            (
                "[[rules]]\nhosts = [\"ok.com\"]\npaths = [\"api\"]\naction = \"deny\"\n",
                "p.toml:3:10: rules[0].paths[0]: \"api\" must start",
            ),
            (
                "allow_private = [\"10.0.0.1/8\"]\n",
                "p.toml:1:18: allow_private[0]: 10.0.0.1/8 has host bits set",
            ),
            (
                "allow_private = [\"10.0.0.0/33\"]\n",
                "p.toml:1:18: allow_private[0]: \"10.0.0.0/33\": prefix length",
            ),
            (
                "[[rules]]\nhosts = []\naction = \"deny\"\n",
                "p.toml:2:9: rules[0].hosts: must name at least one host",
            ),
            (
                "[[rules]]\nhosts = [\"a.com\"]\naction = \"alow\"\n",
                "p.toml:3:10: rules.action: unknown variant `alow`",
            ),
            (
                "mode = \"open\"\n",
                "p.toml:1:8: mode: unknown variant `open`",
            ),
            (
                "[[rules]]\nhosts = [\"a.com\"]\naction = \"deny\"\nport = 1\n",
                "p.toml:4:1: rules.port: unknown field",
            ),
            (
                "[[rules]]\nhosts = [\"a.com\"]\nports = [443, 0]\naction = \"allow\"\n",
                "p.toml:3:15: rules[0].ports[1]: 0 is not a destination port",
            ),
            (
                "[[rules]]\nhosts = [\"a.com\"]\nports = [70000]\naction = \"allow\"\n",
                "p.toml:3:10: rules.ports: invalid value",
            ),
            (
                "[[rules]]\nhosts = [\"*.com*\"]\naction = \"deny\"\n",
                "p.toml:2:10: rules[0].hosts[0]: \"*.com*\": ",
            ),
        ];
        for (text, want) in cases {
            let msg = file(text).expect_err(text).to_string();
            assert!(
                msg.starts_with(want),
                "{text:?}\n got: {msg}\nwant: {want}…"
            );
            assert!(!msg.contains('\n'), "one line: {msg}");
        }
    }
}
