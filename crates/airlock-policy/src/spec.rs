//! What a user writes, before compilation: [`PolicySpec`] and [`RuleSpec`].

use crate::host::Scheme;
use airlock_types::Outcome;
use std::net::IpAddr;

/// The built-in behaviour when no rule matches a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Reads (GET, HEAD, OPTIONS) to any public host are allowed; everything
    /// else only where a rule allows it. The default.
    #[default]
    ReadPublic,
    /// Only what a rule allows.
    DenyAll,
}

impl Mode {
    /// Stable snake_case name, as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::ReadPublic => "read_public",
            Mode::DenyAll => "deny_all",
        }
    }

    /// Parse the configuration spelling.
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "read_public" => Some(Mode::ReadPublic),
            "deny_all" => Some(Mode::DenyAll),
            _ => None,
        }
    }
}

/// An uncompiled policy, as written by a user.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicySpec {
    /// What applies when no rule matches.
    pub mode: Mode,
    /// Rules; the strictest matching outcome wins, whatever their order.
    pub rules: Vec<RuleSpec>,
    /// CIDRs (address, prefix length) exempt from the private/reserved address
    /// guard, e.g. an internal service or a test upstream on 127.0.0.0/8.
    pub allow_private: Vec<(IpAddr, u8)>,
    /// Intercept every HTTPS connection, even where a blind tunnel would be
    /// enough to enforce the policy.
    pub inspect_all: bool,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    /// Host patterns: an exact host (`api.example.com`, `пример.рф`,
    /// `203.0.113.7`, `[2001:db8::1]`), `*.suffix` (any name strictly below
    /// `suffix`, not `suffix` itself), or `*` (any host). Must not be empty.
    pub hosts: Vec<String>,
    /// Schemes the rule applies to; empty means both.
    pub schemes: Vec<Scheme>,
    /// Methods the rule applies to (case-insensitive tokens); empty or `*`
    /// means every method.
    pub methods: Vec<String>,
    /// Path globs (`/repos/*/issues`, `/api/**`); empty means every path.
    /// `*` matches within one segment, `**` across segments; the query is
    /// never part of the match.
    pub paths: Vec<String>,
    /// Destination ports the rule applies to. Empty: an `allow` rule covers
    /// only the scheme's default port (443 for https, 80 for http), a `deny`
    /// or `ask` rule every port (so a refusal cannot be dodged by naming
    /// another port).
    pub ports: Vec<u16>,
    /// An `allow` rule with `websocket = true` also lets a request it allows
    /// upgrade to WebSocket (`Upgrade: websocket`). No other upgrade is ever
    /// allowed, and none without such a rule.
    pub websocket: bool,
    /// An `allow` rule with `allow_userinfo = true` lets a URL carrying
    /// user information (`https://user:pass@host/`) through for the
    /// requests it allows; without such a rule that URL is refused with
    /// `userinfo_in_url` (credentials belong in the vault, and such URLs
    /// are a classic parser-confusion and exfiltration shape). The proxy
    /// never forwards the userinfo in the URL: it becomes an
    /// `Authorization: Basic` header when the request has none (what a
    /// client does with it), and is never logged or audited. Ignored on
    /// `deny` and `ask` rules.
    pub allow_userinfo: bool,
    /// What happens when the rule matches.
    pub action: Outcome,
    /// Match `paths` regardless of case (`/ADMIN` as `/admin`, Unicode
    /// lower-casing). `None`: the default for the action, case-insensitive
    /// for `deny` and `ask` (a case-insensitive server would route a
    /// spelling the rule does not name to the same handler), case-sensitive
    /// for `allow` (so an allow rule never covers more than it names).
    pub case_insensitive: Option<bool>,
}

impl RuleSpec {
    /// A rule matching every scheme, method and path of `hosts`.
    pub fn for_hosts(hosts: &[&str], action: Outcome) -> RuleSpec {
        RuleSpec {
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            schemes: Vec::new(),
            methods: Vec::new(),
            paths: Vec::new(),
            ports: Vec::new(),
            websocket: false,
            allow_userinfo: false,
            action,
            case_insensitive: None,
        }
    }
}

/// Why a [`PolicySpec`] could not be compiled. `rule` and `index` are
/// 0-based positions in [`PolicySpec::rules`] and in the rule's list, so a
/// configuration loader can point at the offending item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A rule has no host patterns.
    #[error("rule {rule}: hosts must not be empty")]
    EmptyHosts {
        /// Rule position.
        rule: usize,
    },
    /// A host pattern is not a valid host, `*.suffix` or `*`.
    #[error("rule {rule}: host pattern {pattern:?}: {message}")]
    InvalidHostPattern {
        /// Rule position.
        rule: usize,
        /// Position in the rule's `hosts`.
        index: usize,
        /// The pattern as written.
        pattern: String,
        /// What is wrong.
        message: String,
    },
    /// A method is not an HTTP token.
    #[error("rule {rule}: method {method:?} is not an HTTP method token")]
    InvalidMethod {
        /// Rule position.
        rule: usize,
        /// Position in the rule's `methods`.
        index: usize,
        /// The method as written.
        method: String,
    },
    /// A path glob is malformed.
    #[error("rule {rule}: path pattern {pattern:?}: {message}")]
    InvalidPathPattern {
        /// Rule position.
        rule: usize,
        /// Position in the rule's `paths`.
        index: usize,
        /// The pattern as written.
        pattern: String,
        /// What is wrong.
        message: String,
    },
    /// A rule's port is 0.
    #[error("rule {rule}: port 0 is not a destination port")]
    InvalidPort {
        /// Rule position.
        rule: usize,
        /// Position in the rule's `ports`.
        index: usize,
    },
    /// An `allow_private` CIDR is malformed.
    #[error("allow_private entry {index}: {message}")]
    InvalidCidr {
        /// Position in `allow_private`.
        index: usize,
        /// What is wrong.
        message: String,
    },
}
