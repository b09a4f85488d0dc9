//! `[mcp]` section: the MCP gateway's tool servers, rules and limits.

use super::in_range;
use airlock_mcp::config::{
    ArgConstraint, Labels, McpConfig, PinMode, RuleAction, ServerConfig, ToolRule, Transport,
    valid_server_name,
};
use airlock_policy::EgressPolicy;
use airlock_policy::document::{DocumentError, SourceText};
use serde::Deserialize;
use serde_spanned::Spanned;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Raw `[mcp]`.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawMcp {
    /// Tool servers.
    #[serde(default)]
    pub servers: Vec<RawServer>,
    /// Tool rules (strictest matching wins; no match: refused).
    #[serde(default)]
    pub rules: Vec<RawRule>,
    /// Largest JSON-RPC message in bytes (default 4194304).
    #[cfg_attr(feature = "schema", schemars(with = "Option<u64>"))]
    pub max_message_bytes: Option<Spanned<u64>>,
    /// Seconds a call may wait for its server (default 60).
    #[cfg_attr(feature = "schema", schemars(with = "Option<u64>"))]
    pub call_timeout_secs: Option<Spanned<u64>>,
    /// Seconds a call waits for an approval (default 300).
    #[cfg_attr(feature = "schema", schemars(with = "Option<u64>"))]
    pub approval_wait_secs: Option<Spanned<u64>>,
    /// Mask personal data in results (default false; secrets always are).
    pub redact_pii: Option<bool>,
    /// `first_use` (default: the first definition seen of an allowed tool is
    /// pinned, audited) or `explicit` (only `airlock mcp pin` pins).
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub pin: Option<Spanned<String>>,
    /// The agent a session belongs to when `--agent` is not given.
    pub agent: Option<String>,
}

/// Raw `[[mcp.servers]]`.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Tools are named `NAME.TOOL` (`[A-Za-z0-9_-]`, at most 64).
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub name: Spanned<String>,
    /// A stdio server: the program and its arguments (run in its own sandbox).
    pub command: Option<Vec<String>>,
    /// A streamable-HTTP server's URL (must be allowed by `policy`).
    pub url: Option<String>,
    /// For an `https://` url: a PEM file of the CA certificates to trust for
    /// this server *instead of* the web PKI roots (a private CA).
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub ca_file: Option<Spanned<PathBuf>>,
    /// A stdio server's workspace (default: an empty directory).
    pub workspace: Option<PathBuf>,
    /// Environment for a stdio server: `NAME` or `NAME=VALUE`.
    #[serde(default)]
    pub env: Vec<String>,
    /// Vault secrets the server is granted (as handles).
    #[serde(default)]
    pub secrets: Vec<String>,
    /// An egress policy file for the server (default: no network at all).
    pub policy: Option<PathBuf>,
    /// Labels on every tool: `private`, `untrusted`, `writes`.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "Vec<String>"))]
    pub labels: Vec<Spanned<String>>,
    /// Labels per tool (by the tool's own name).
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "BTreeMap<String, Vec<String>>"))]
    pub tool_labels: BTreeMap<String, Vec<Spanned<String>>>,
}

/// Raw `[[mcp.rules]]`.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Globs over `SERVER.TOOL` (`*` matches any run of characters).
    pub tools: Vec<String>,
    /// `allow`, `deny` or `ask`.
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub action: Spanned<String>,
    /// Only for these agents (default: all).
    #[serde(default)]
    pub agents: Vec<String>,
    /// The tools' writes are explicitly allowed (the lethal-trifecta guard
    /// does not turn them into approvals).
    #[serde(default)]
    pub allow_writes: bool,
    /// Constraints on argument values, by argument name (`a.b` for nested).
    #[serde(default)]
    pub args: BTreeMap<String, RawArg>,
}

/// Raw constraint on one argument.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawArg {
    /// A path under one of these directories.
    pub path_prefix: Option<Vec<PathBuf>>,
    /// A URL the egress `[policy]` allows for this method.
    pub url_method: Option<String>,
    /// A regex the whole string must match.
    pub pattern: Option<String>,
    /// Lowest number.
    pub min: Option<f64>,
    /// Highest number.
    pub max: Option<f64>,
    /// Largest size in bytes (as JSON).
    pub max_bytes: Option<u64>,
}

fn labels(
    src: &SourceText<'_>,
    field: &str,
    raw: &[Spanned<String>],
) -> Result<Labels, DocumentError> {
    let mut l = Labels::default();
    for s in raw {
        match s.get_ref().as_str() {
            "private" => l.private = true,
            "untrusted" => l.untrusted = true,
            "writes" => l.writes = true,
            _ => {
                return Err(src.error(
                    s.span(),
                    field,
                    "must be \"private\", \"untrusted\" or \"writes\"",
                ));
            }
        }
    }
    Ok(l)
}

/// Read and check a server's `ca_file` (at load, with its location, rather
/// than at the first call).
fn ca_file(
    src: &SourceText<'_>,
    field: &str,
    p: &Spanned<PathBuf>,
    url: &str,
) -> Result<Vec<airlock_mcp::config::CertificateDer<'static>>, DocumentError> {
    if !url.starts_with("https://") {
        return Err(src.error(p.span(), field, "ca_file is for https:// servers only"));
    }
    let path = p.get_ref();
    let pem = airlock_store::read_limited(path, super::MAX_PEM_BYTES).map_err(|e| {
        src.error(
            p.span(),
            field,
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    airlock_mcp::config::parse_ca_pem(&pem)
        .map_err(|e| src.error(p.span(), field, format!("{}: {e}", path.display())))
}

/// Validate `[mcp]`. `egress` is the configuration's egress policy (URL
/// argument constraints are judged by it).
pub fn validate(
    raw: &RawMcp,
    src: &SourceText<'_>,
    egress: &EgressPolicy,
    approvals: &super::approvals::ApprovalsSettings,
) -> Result<McpConfig, DocumentError> {
    let mut servers = Vec::new();
    for (i, s) in raw.servers.iter().enumerate() {
        let field = |f: &str| format!("mcp.servers[{i}].{f}");
        let name = s.name.get_ref().clone();
        if !valid_server_name(&name) || servers.iter().any(|x: &ServerConfig| x.name == name) {
            return Err(src.error(
                s.name.span(),
                &field("name"),
                "must be unique, 1-64 characters of A-Z a-z 0-9 _ -",
            ));
        }
        if let (Some(p), None) = (&s.ca_file, &s.url) {
            return Err(src.error(
                p.span(),
                &field("ca_file"),
                "ca_file is for https:// servers only (url = \"https://...\")",
            ));
        }
        let transport = match (&s.command, &s.url) {
            (Some(c), None) if !c.is_empty() => Transport::Stdio {
                command: c.clone(),
                workspace: s.workspace.clone(),
                env: s.env.clone(),
            },
            (None, Some(u)) => {
                if !s.secrets.is_empty() {
                    return Err(src.error(
                        s.name.span(),
                        &field("secrets"),
                        "secrets are granted to stdio servers only (an HTTP server holds its own)",
                    ));
                }
                let ok = u.parse::<http::Uri>().ok().is_some_and(|x| {
                    matches!(x.scheme_str(), Some("http" | "https")) && x.host().is_some()
                });
                if !ok {
                    return Err(src.error(s.name.span(), &field("url"), "must be an http(s) URL"));
                }
                let ca = match &s.ca_file {
                    None => None,
                    Some(p) => Some(ca_file(src, &field("ca_file"), p, u)?),
                };
                Transport::Http { url: u.clone(), ca }
            }
            _ => {
                return Err(src.error(
                    s.name.span(),
                    &field("command"),
                    "give exactly one of command = [\"prog\", ...] or url = \"...\"",
                ));
            }
        };
        let policy = match &s.policy {
            None => EgressPolicy::deny_all(),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    src.error(
                        s.name.span(),
                        &field("policy"),
                        format!("{}: {e}", p.display()),
                    )
                })?;
                airlock_policy::parse_document(&text, &p.display().to_string())?.policy
            }
        };
        let mut tool_labels = BTreeMap::new();
        for (t, l) in &s.tool_labels {
            tool_labels.insert(
                t.clone(),
                labels(src, &field(&format!("tool_labels.{t}")), l)?,
            );
        }
        servers.push(ServerConfig {
            name,
            transport,
            secrets: s.secrets.clone(),
            policy,
            labels: labels(src, &field("labels"), &s.labels)?,
            tool_labels,
        });
    }
    let mut rules = Vec::new();
    for (i, r) in raw.rules.iter().enumerate() {
        let field = |f: &str| format!("mcp.rules[{i}].{f}");
        let action = match r.action.get_ref().as_str() {
            "allow" => RuleAction::Allow,
            "ask" => RuleAction::Ask,
            "deny" => RuleAction::Deny,
            _ => {
                return Err(src.error(
                    r.action.span(),
                    &field("action"),
                    "must be \"allow\", \"deny\" or \"ask\"",
                ));
            }
        };
        let mut args = Vec::new();
        for (name, a) in &r.args {
            let f = field(&format!("args.{name}"));
            let at = r.action.span();
            if let Some(p) = &a.path_prefix {
                let mut norm = Vec::new();
                for x in p {
                    let n =
                        airlock_mcp::rules::normalize(&x.display().to_string()).map_err(|m| {
                            src.error(at.clone(), &f, format!("path_prefix {}: {m}", x.display()))
                        })?;
                    norm.push(n);
                }
                args.push((name.clone(), ArgConstraint::PathPrefix(norm)));
            }
            if let Some(m) = &a.url_method {
                args.push((
                    name.clone(),
                    ArgConstraint::Url {
                        method: m.to_ascii_uppercase(),
                        policy: egress.clone(),
                    },
                ));
            }
            if let Some(p) = &a.pattern {
                let re = regex::Regex::new(p)
                    .map_err(|e| src.error(at.clone(), &f, format!("pattern: {e}")))?;
                args.push((name.clone(), ArgConstraint::Pattern(re)));
            }
            if a.min.is_some() || a.max.is_some() {
                args.push((
                    name.clone(),
                    ArgConstraint::Range {
                        min: a.min,
                        max: a.max,
                    },
                ));
            }
            if let Some(m) = a.max_bytes {
                args.push((
                    name.clone(),
                    ArgConstraint::MaxBytes(usize::try_from(m).unwrap_or(usize::MAX)),
                ));
            }
        }
        rules.push(ToolRule {
            tools: r.tools.clone(),
            action,
            agents: r.agents.clone(),
            args,
            allow_writes: r.allow_writes,
        });
    }
    let pin = match raw.pin.as_ref().map(|p| p.get_ref().as_str()) {
        None | Some("first_use") => PinMode::FirstUse,
        Some("explicit") => PinMode::Explicit,
        Some(_) => {
            let p = raw.pin.as_ref().map(|p| p.span()).unwrap_or(0..0);
            return Err(src.error(p, "mcp.pin", "must be \"first_use\" or \"explicit\""));
        }
    };
    let secs = |f: &str, v: Option<&Spanned<u64>>, max: u64, d: u64| {
        in_range(src, f, v, 1, max, d).map(Duration::from_secs)
    };
    let policy_version = airlock_mcp::pin::sha256_hex(format!("{:?}", raw.rules).as_bytes());
    Ok(McpConfig {
        servers,
        rules,
        max_message_bytes: in_range(
            src,
            "mcp.max_message_bytes",
            raw.max_message_bytes.as_ref(),
            1024,
            268_435_456,
            4 << 20,
        )? as usize,
        call_timeout: secs(
            "mcp.call_timeout_secs",
            raw.call_timeout_secs.as_ref(),
            86_400,
            60,
        )?,
        approval_wait: secs(
            "mcp.approval_wait_secs",
            raw.approval_wait_secs.as_ref(),
            86_400,
            300,
        )?,
        progress_every: Duration::from_secs(5),
        redact_pii: raw.redact_pii.unwrap_or(false),
        pin,
        default_agent: raw.agent.clone(),
        // One place for each agent's approval mode: `[approvals]`.
        autonomy: approvals.agents.clone(),
        default_autonomy: approvals.autonomy,
        policy_version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Default)]
    struct Doc {
        #[serde(default)]
        mcp: RawMcp,
    }

    fn parse_str(text: &str) -> String {
        let src = SourceText::new("t.toml", text);
        let approvals = super::super::approvals::ApprovalsSettings::default();
        match src
            .deserialize::<Doc>()
            .and_then(|d| validate(&d.mcp, &src, &EgressPolicy::deny_all(), &approvals))
        {
            Ok(_) => "ok".into(),
            Err(e) => e.to_string(),
        }
    }

    fn server(lines: &str) -> String {
        parse_str(&format!("[[mcp.servers]]\nname = \"w\"\n{lines}"))
    }

    #[test]
    fn a_missing_ca_file_is_located() {
        let msg =
            server("url = \"https://tools.internal/mcp\"\nca_file = \"/nonexistent/ca.pem\"\n");
        assert!(
            msg.starts_with("t.toml:4:11: mcp.servers[0].ca_file: cannot read /nonexistent/ca.pem"),
            "{msg}"
        );
    }

    #[test]
    fn a_ca_file_without_a_certificate_is_located() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("ca.pem");
        std::fs::write(&p, "not a certificate\n").expect("write");
        let at = p.display().to_string();
        assert_eq!(
            server(&format!(
                "url = \"https://tools.internal/mcp\"\nca_file = {at:?}\n"
            )),
            format!("t.toml:4:11: mcp.servers[0].ca_file: {at}: holds no PEM CERTIFICATE block")
        );
        std::fs::write(
            &p,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let msg = server(&format!(
            "url = \"https://tools.internal/mcp\"\nca_file = {at:?}\n"
        ));
        assert!(
            msg.starts_with(&format!("t.toml:4:11: mcp.servers[0].ca_file: {at}: ")),
            "{msg}"
        );
        assert_ne!(msg, "ok");
    }

    #[test]
    fn a_ca_file_is_for_https_servers_only() {
        assert_eq!(
            server("url = \"http://127.0.0.1:1/mcp\"\nca_file = \"ca.pem\"\n"),
            "t.toml:4:11: mcp.servers[0].ca_file: ca_file is for https:// servers only"
        );
        assert_eq!(
            server("command = [\"prog\"]\nca_file = \"ca.pem\"\n"),
            "t.toml:4:11: mcp.servers[0].ca_file: ca_file is for https:// servers only (url = \"https://...\")"
        );
    }
}
