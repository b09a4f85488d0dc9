//! `[approvals]`: how long proposed calls live and wait, each agent's
//! default approval mode (autonomy), and the lethal-trifecta guard's host
//! labels.

use super::in_range;
use airlock_policy::document::{DocumentError, SourceText};
use airlock_types::{AgentId, Autonomy};
use serde::Deserialize;
use serde_spanned::Spanned;
use std::collections::BTreeMap;
use std::time::Duration;

/// Raw `[approvals]` section.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawApprovals {
    /// Seconds a proposed call may be approved before it expires (default 900).
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<u64>", range(min = 1, max = 86_400))
    )]
    pub ttl_secs: Option<Spanned<u64>>,
    /// Seconds a held request or tool call waits for a decision (default 900; never past `ttl_secs`).
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<u64>", range(min = 1, max = 86_400))
    )]
    pub wait_secs: Option<Spanned<u64>>,
    /// Default approval mode of every agent: "ask_none" (only where a rule says ask or the trifecta guard asks), "ask_writes" (every allowed egress write and tool labelled writes), "ask_all" (every tool call and egress write).
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub autonomy: Option<Spanned<String>>,
    /// Per-agent approval modes, by agent name.
    #[serde(default)]
    pub agents: BTreeMap<String, RawAgentApprovals>,
    /// Hosts whose content is private data (reading one sets the run's `private_data` label): `name` or `*.suffix`.
    #[cfg_attr(feature = "schema", schemars(with = "Vec<String>"))]
    #[serde(default)]
    pub private_hosts: Vec<Spanned<String>>,
    /// Hosts whose content is untrusted besides every public read (sets `untrusted_content`): `name` or `*.suffix`.
    #[cfg_attr(feature = "schema", schemars(with = "Vec<String>"))]
    #[serde(default)]
    pub untrusted_hosts: Vec<Spanned<String>>,
    /// The lethal-trifecta guard: once a run holds private data and has read untrusted content, every write no rule explicitly allows asks for approval (default true).
    pub trifecta: Option<bool>,
    /// Largest egress request body held for approval, in bytes (default 1048576); a larger one is refused.
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<u64>", range(min = 0, max = 67_108_864))
    )]
    pub max_body_bytes: Option<Spanned<u64>>,
}

/// One agent's approval settings.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawAgentApprovals {
    /// The agent's approval mode ("ask_none", "ask_writes", "ask_all").
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub autonomy: Spanned<String>,
}

/// `[approvals]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalsSettings {
    /// How long a proposal may be approved.
    pub ttl: Duration,
    /// How long a call waits for a decision.
    pub wait: Duration,
    /// The default approval mode.
    pub autonomy: Autonomy,
    /// Per-agent approval modes.
    pub agents: BTreeMap<String, Autonomy>,
    /// Host patterns labelled private.
    pub private_hosts: Vec<String>,
    /// Host patterns labelled untrusted.
    pub untrusted_hosts: Vec<String>,
    /// The lethal-trifecta guard is on.
    pub trifecta: bool,
    /// Largest egress body held for approval.
    pub max_body_bytes: usize,
}

impl Default for ApprovalsSettings {
    fn default() -> Self {
        ApprovalsSettings {
            ttl: Duration::from_secs(900),
            wait: Duration::from_secs(900),
            autonomy: Autonomy::AskNone,
            agents: BTreeMap::new(),
            private_hosts: Vec::new(),
            untrusted_hosts: Vec::new(),
            trifecta: true,
            max_body_bytes: 1 << 20,
        }
    }
}

impl ApprovalsSettings {
    /// The approval mode of `agent` (its own, else the default).
    pub fn autonomy_for(&self, agent: Option<&AgentId>) -> Autonomy {
        agent
            .and_then(|a| self.agents.get(a.as_str()))
            .copied()
            .unwrap_or(self.autonomy)
    }
}

fn autonomy(
    src: &SourceText<'_>,
    field: &str,
    v: &Spanned<String>,
) -> Result<Autonomy, DocumentError> {
    match v.get_ref().as_str() {
        "ask_none" => Ok(Autonomy::AskNone),
        "ask_writes" => Ok(Autonomy::AskWrites),
        "ask_all" => Ok(Autonomy::AskAll),
        _ => Err(src.error(
            v.span(),
            field,
            "must be \"ask_none\", \"ask_writes\" or \"ask_all\"",
        )),
    }
}

fn hosts(
    src: &SourceText<'_>,
    field: &str,
    raw: &[Spanned<String>],
) -> Result<Vec<String>, DocumentError> {
    raw.iter()
        .map(|h| {
            let text = h.get_ref().trim().to_ascii_lowercase();
            let (wild, name) = match text.strip_prefix("*.") {
                Some(n) => ("*.", n),
                None => ("", text.as_str()),
            };
            match airlock_policy::parse_host(name) {
                Ok(airlock_policy::Host::Domain(d)) => Ok(format!("{wild}{d}")),
                Ok(airlock_policy::Host::Ip(ip)) if wild.is_empty() => Ok(ip.to_string()),
                _ => Err(src.error(
                    h.span(),
                    field,
                    "must be a host name or IP address, or `*.suffix`",
                )),
            }
        })
        .collect()
}

/// Validate `[approvals]`.
pub fn validate(
    raw: &RawApprovals,
    src: &SourceText<'_>,
) -> Result<ApprovalsSettings, DocumentError> {
    let ttl = in_range(
        src,
        "approvals.ttl_secs",
        raw.ttl_secs.as_ref(),
        1,
        86_400,
        900,
    )?;
    let wait = in_range(
        src,
        "approvals.wait_secs",
        raw.wait_secs.as_ref(),
        1,
        86_400,
        900,
    )?;
    let max_body = in_range(
        src,
        "approvals.max_body_bytes",
        raw.max_body_bytes.as_ref(),
        0,
        64 << 20,
        1 << 20,
    )?;
    let default = match &raw.autonomy {
        Some(v) => autonomy(src, "approvals.autonomy", v)?,
        None => Autonomy::AskNone,
    };
    let mut agents = BTreeMap::new();
    for (name, a) in &raw.agents {
        let field = format!("approvals.agents.{name}.autonomy");
        if AgentId::new(name).is_err() {
            return Err(src.error(a.autonomy.span(), &field, "not a valid agent name"));
        }
        agents.insert(name.clone(), autonomy(src, &field, &a.autonomy)?);
    }
    Ok(ApprovalsSettings {
        ttl: Duration::from_secs(ttl),
        wait: Duration::from_secs(wait.min(ttl)),
        autonomy: default,
        agents,
        private_hosts: hosts(src, "approvals.private_hosts", &raw.private_hosts)?,
        untrusted_hosts: hosts(src, "approvals.untrusted_hosts", &raw.untrusted_hosts)?,
        trifecta: raw.trifecta.unwrap_or(true),
        max_body_bytes: usize::try_from(max_body).unwrap_or(usize::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Default)]
    struct Doc {
        #[serde(default)]
        approvals: RawApprovals,
    }

    fn parse_str(text: &str) -> Result<ApprovalsSettings, String> {
        let src = SourceText::new("t.toml", text);
        src.deserialize::<Doc>()
            .and_then(|d| validate(&d.approvals, &src))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_per_agent_autonomy() {
        assert_eq!(parse_str(""), Ok(ApprovalsSettings::default()));
        let s = parse_str(
            "[approvals]\nttl_secs = 60\nwait_secs = 600\nautonomy = \"ask_writes\"\n\
             private_hosts = [\"DB.corp.example\", \"*.internal.example\", \"10.0.0.1\"]\n\
             [approvals.agents.careful]\nautonomy = \"ask_all\"\n",
        )
        .expect("valid");
        assert_eq!(s.ttl, Duration::from_secs(60));
        assert_eq!(s.wait, Duration::from_secs(60), "never waits past the ttl");
        assert_eq!(
            s.private_hosts,
            vec!["db.corp.example", "*.internal.example", "10.0.0.1"]
        );
        let careful = AgentId::new("careful").expect("agent");
        let other = AgentId::new("other").expect("agent");
        assert_eq!(s.autonomy_for(Some(&careful)), Autonomy::AskAll);
        assert_eq!(s.autonomy_for(Some(&other)), Autonomy::AskWrites);
        assert_eq!(s.autonomy_for(None), Autonomy::AskWrites);
    }

    #[test]
    fn errors_are_located() {
        assert_eq!(
            parse_str("[approvals]\nautonomy = \"yolo\"\n"),
            Err("t.toml:2:12: approvals.autonomy: must be \"ask_none\", \"ask_writes\" or \"ask_all\"".into())
        );
        assert_eq!(
            parse_str("[approvals]\nuntrusted_hosts = [\"not a host\"]\n"),
            Err("t.toml:2:20: approvals.untrusted_hosts: must be a host name or IP address, or `*.suffix`".into())
        );
        assert_eq!(
            parse_str("[approvals]\nttl_secs = 0\n"),
            Err("t.toml:2:12: approvals.ttl_secs: must be between 1 and 86400, got 0".into())
        );
        assert!(
            parse_str("[approvals]\ntrifecta = true\nbogus = 1\n")
                .is_err_and(|e| e.contains("unknown field"))
        );
    }
}
