//! The gateway's validated configuration (the runtime's `settings::mcp`
//! turns `[mcp]` into these).

use airlock_policy::EgressPolicy;
use airlock_types::Autonomy;
pub use rustls_pki_types::CertificateDer;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// How a tool server is reached.
#[derive(Debug, Clone)]
pub enum Transport {
    /// A program speaking MCP on stdin/stdout, started in its own sandbox.
    Stdio {
        /// The command and its arguments.
        command: Vec<String>,
        /// The directory mounted at /workspace (`None`: an empty one).
        workspace: Option<PathBuf>,
        /// Environment variables (`NAME` from the gateway's environment or `NAME=VALUE`).
        env: Vec<String>,
    },
    /// A streamable-HTTP MCP endpoint, reached only if `policy` allows it.
    Http {
        /// The endpoint URL.
        url: String,
        /// For an `https://` URL: the only CAs trusted for this server
        /// (`ca_file`, DER certificates, checked by [`parse_ca_pem`]);
        /// `None`: the web PKI roots.
        ca: Option<Vec<CertificateDer<'static>>>,
    },
}

/// Why a `ca_file` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaError {
    /// A PEM block could not be read.
    #[error("not a PEM certificate file: {0}")]
    NotPem(String),
    /// No `CERTIFICATE` block.
    #[error("holds no PEM CERTIFICATE block")]
    Empty,
    /// A certificate cannot be a trust anchor.
    #[error("certificate {index} cannot be used as a trust anchor: {message}")]
    Unusable {
        /// Its position in the file (from 1).
        index: usize,
        /// Why.
        message: String,
    },
}

/// The certificates of a PEM bundle (one or more `CERTIFICATE` blocks;
/// other blocks are ignored), each checked to be usable as a trust anchor.
pub fn parse_ca_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, CaError> {
    use rustls_pki_types::pem::PemObject as _;
    let mut out = Vec::new();
    for (i, c) in CertificateDer::pem_slice_iter(pem).enumerate() {
        let c = c.map_err(|e| CaError::NotPem(e.to_string()))?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(c.clone()).map_err(|e| CaError::Unusable {
            index: i + 1,
            message: e.to_string(),
        })?;
        out.push(c);
    }
    if out.is_empty() {
        return Err(CaError::Empty);
    }
    Ok(out)
}

/// Labels on a server's tools.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Labels {
    /// Its results are private data (`private_data` taint).
    pub private: bool,
    /// Its results are untrusted content (`untrusted_content` taint).
    pub untrusted: bool,
    /// It writes somewhere (subject to the trifecta guard and `ask_writes`).
    pub writes: bool,
}

impl Labels {
    /// Both sets of labels.
    pub fn union(self, o: Labels) -> Labels {
        Labels {
            private: self.private || o.private,
            untrusted: self.untrusted || o.untrusted,
            writes: self.writes || o.writes,
        }
    }
}

/// One `[[mcp.servers]]`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The name tools are namespaced with (`[A-Za-z0-9_-]+`).
    pub name: String,
    /// How it is reached.
    pub transport: Transport,
    /// Vault secrets it is granted (as handles, in its sandbox).
    pub secrets: Vec<String>,
    /// Its egress policy (a stdio server's sandbox; an HTTP server's URL).
    pub policy: EgressPolicy,
    /// Labels on all its tools.
    pub labels: Labels,
    /// Labels on single tools (by the tool's own name).
    pub tool_labels: BTreeMap<String, Labels>,
}

impl ServerConfig {
    /// The labels of one of its tools.
    pub fn labels_of(&self, tool: &str) -> Labels {
        self.tool_labels
            .get(tool)
            .copied()
            .unwrap_or_default()
            .union(self.labels)
    }
}

/// A rule's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RuleAction {
    /// Allowed.
    Allow,
    /// Allowed after a reviewer approves the exact call.
    Ask,
    /// Refused.
    Deny,
}

/// A constraint on one argument's value (the argument is named by a JSON
/// pointer-like dotted path into the arguments object: `path`, `opts.url`).
#[derive(Debug, Clone)]
pub enum ArgConstraint {
    /// A filesystem path under one of these prefixes (normalized, no `..`
    /// escape; a symlink on the host that leads out is refused).
    PathPrefix(Vec<PathBuf>),
    /// A URL the egress policy allows for `method`.
    Url {
        /// The method the tool will use.
        method: String,
        /// The policy it must pass.
        policy: EgressPolicy,
    },
    /// A string matching this regex (whole value).
    Pattern(regex::Regex),
    /// A number in this range (inclusive).
    Range {
        /// Lowest allowed.
        min: Option<f64>,
        /// Highest allowed.
        max: Option<f64>,
    },
    /// At most this many bytes when serialized as JSON.
    MaxBytes(usize),
}

/// One `[[mcp.rules]]`.
#[derive(Debug, Clone)]
pub struct ToolRule {
    /// Globs over namespaced tool names (`*` any run of characters).
    pub tools: Vec<String>,
    /// What it does.
    pub action: RuleAction,
    /// Only for these agents (empty: every agent).
    pub agents: Vec<String>,
    /// Value constraints by argument name; a call that breaks one is refused.
    pub args: Vec<(String, ArgConstraint)>,
    /// This rule explicitly allows the tools' writes (the trifecta guard
    /// does not turn them into asks).
    pub allow_writes: bool,
}

/// When a tool's definition is pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PinMode {
    /// The first definition seen of a tool some rule allows is pinned
    /// automatically (trust on first use, audited as `mcp.tool_pinned`).
    #[default]
    FirstUse,
    /// Only `airlock mcp pin` pins; unpinned tools are hidden and refused.
    Explicit,
}

/// The validated `[mcp]` section.
#[derive(Debug, Clone)]
pub struct McpConfig {
    /// The tool servers.
    pub servers: Vec<ServerConfig>,
    /// The rules; with none matching, a tool is refused (`default_deny`).
    pub rules: Vec<ToolRule>,
    /// Largest JSON-RPC message accepted from the client or a server.
    pub max_message_bytes: usize,
    /// How long one call may wait for its server.
    pub call_timeout: Duration,
    /// How long a call waits for an approval.
    pub approval_wait: Duration,
    /// Interval of `notifications/progress` while waiting for an approval.
    pub progress_every: Duration,
    /// Mask personal data in results (secrets are always masked).
    pub redact_pii: bool,
    /// Pinning mode.
    pub pin: PinMode,
    /// The agent a session belongs to when none is named.
    pub default_agent: Option<String>,
    /// Per-agent autonomy (else `default_autonomy`).
    pub autonomy: BTreeMap<String, Autonomy>,
    /// The approval mode of agents not in `autonomy` (and of sessions
    /// without an agent).
    pub default_autonomy: Autonomy,
    /// A digest of the rules as configured, the approvals' policy version.
    pub policy_version: String,
}

impl Default for McpConfig {
    fn default() -> Self {
        McpConfig {
            servers: Vec::new(),
            rules: Vec::new(),
            max_message_bytes: 4 << 20,
            call_timeout: Duration::from_secs(60),
            approval_wait: Duration::from_secs(300),
            progress_every: Duration::from_secs(5),
            redact_pii: false,
            pin: PinMode::FirstUse,
            default_agent: None,
            autonomy: BTreeMap::new(),
            default_autonomy: Autonomy::AskNone,
            policy_version: String::new(),
        }
    }
}

/// Is `name` usable as a server name (it prefixes tool names with a `.`)?
pub fn valid_server_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
