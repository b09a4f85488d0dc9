//! Configuration: the only place that knows the file format.
//!
//! Two phases, as in ripgrep: first the raw TOML is parsed into `Raw*` types
//! with `deny_unknown_fields` and byte spans; then each section is validated
//! into the settings type its crate consumes. Every error names
//! `file:line:col`, the field, and what is wrong.

mod policy;
mod proxy;
mod source;

use airlock_runtime::settings::{approvals, audit, gateway, mcp, sandbox, serve, store};
pub use airlock_runtime::{AuditSettings, SandboxSettings};
pub use gateway::GatewaySettings;
pub use policy::{PolicySettings, load_file as load_policy_file};
pub use proxy::ProxySettings;
pub use source::{ConfigError, SourceFile};

use schemars::JsonSchema;
use serde::Deserialize;
use std::path::Path;

/// The raw configuration file, exactly as written.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Airlock configuration (airlock.toml)")]
pub struct RawConfig {
    /// The tamper-evident audit log.
    #[serde(default)]
    pub audit: audit::RawAudit,
    /// Egress policy: what the agent's traffic may reach.
    #[serde(default)]
    pub policy: policy::RawPolicy,
    /// The egress proxy's listener and limits.
    #[serde(default)]
    pub proxy: proxy::RawProxy,
    /// The sandbox `airlock run` builds.
    #[serde(default)]
    pub sandbox: sandbox::RawSandbox,
    /// The LLM gateway: providers, limits, prices.
    #[serde(default)]
    pub gateway: gateway::RawGateway,
    /// Approvals: lifetimes, each agent's autonomy, the lethal-trifecta guard.
    #[serde(default)]
    pub approvals: approvals::RawApprovals,
    /// The MCP gateway: tool servers, rules, limits.
    #[serde(default)]
    pub mcp: mcp::RawMcp,
    /// Where records live: the embedded SQLite database, or PostgreSQL.
    #[serde(default)]
    pub store: store::RawStore,
    /// The control-plane API server (`airlock serve`).
    #[serde(default)]
    pub serve: serve::RawServe,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from (`<built-in>` for the defaults).
    pub origin: String,
    pub audit: AuditSettings,
    pub policy: PolicySettings,
    pub proxy: ProxySettings,
    pub sandbox: SandboxSettings,
    pub gateway: GatewaySettings,
    pub approvals: approvals::ApprovalsSettings,
    pub mcp: airlock_mcp::config::McpConfig,
    pub store: store::StoreSettings,
    pub serve: serve::ServeSettings,
}

impl Config {
    /// The embedded defaults, used when no configuration file exists.
    pub fn builtin() -> Config {
        let src = SourceFile::new("<built-in>", String::new());
        validate(RawConfig::default(), &src).expect("invariant: built-in defaults are valid")
    }
}

/// Read and validate a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let src = SourceFile::read(path)?;
    parse(&src)
}

/// Parse and validate configuration text.
pub fn parse(src: &SourceFile) -> Result<Config, ConfigError> {
    let raw: RawConfig = src.deserialize()?;
    validate(raw, src)
}

fn validate(raw: RawConfig, src: &SourceFile) -> Result<Config, ConfigError> {
    let policy = policy::validate(&raw.policy, src)?;
    let approvals = approvals::validate(&raw.approvals, &src.located())?;
    let store = store::validate(&raw.store, &src.located())?;
    let mut audit = audit::validate(&raw.audit, &src.located())?;
    audit.store = store.clone();
    Ok(Config {
        origin: src.name().to_owned(),
        audit,
        mcp: mcp::validate(&raw.mcp, &src.located(), &policy.policy, &approvals)?,
        policy,
        proxy: ProxySettings {
            proxy: airlock_runtime::settings::proxy::validate(&raw.proxy, &src.located())?,
        },
        sandbox: sandbox::validate(&raw.sandbox, &src.located())?,
        gateway: gateway::validate(&raw.gateway, &src.located())?,
        store,
        approvals,
        serve: serve::validate(&raw.serve, &src.located())?,
    })
}

/// The JSON schema of the configuration file.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(RawConfig);
    let mut s = serde_json::to_string_pretty(&schema).expect("invariant: schema serializes");
    s.push('\n');
    s
}

/// The commented default configuration written by `airlock init`.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Config, ConfigError> {
        parse(&SourceFile::new("test.toml", text.to_owned()))
    }

    #[test]
    fn default_file_is_valid() {
        parse_str(DEFAULT_TOML).expect("default.toml parses");
    }

    #[test]
    fn unknown_key_names_file_line_col_and_field() {
        let err = parse_str("[audit]\ncheckpoint_every = 10\ncheckpiont_interval_secs = 5\n")
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("test.toml:3:1: audit.checkpiont_interval_secs: unknown field"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_section_is_rejected() {
        let msg = parse_str("[audti]\n").unwrap_err().to_string();
        assert!(
            msg.starts_with("test.toml:1:2: audti: unknown field"),
            "{msg}"
        );
    }

    #[test]
    fn wrong_type_names_the_field() {
        let msg = parse_str("[audit]\ncheckpoint_every = \"lots\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("test.toml:2:20: audit.checkpoint_every: invalid type"),
            "{msg}"
        );
    }

    #[test]
    fn out_of_range_value_is_a_validation_error_with_location() {
        let msg = parse_str("[audit]\n\ncheckpoint_every = 0\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            "test.toml:3:20: audit.checkpoint_every: must be between 1 and 1000000, got 0"
        );
    }

    #[test]
    fn syntax_error_has_location() {
        let msg = parse_str("[audit\n").unwrap_err().to_string();
        assert!(msg.starts_with("test.toml:1:"), "{msg}");
    }

    #[test]
    fn committed_schema_is_fresh() {
        let committed = include_str!("../../../../schema/airlock.schema.json");
        assert!(
            committed == schema_json(),
            "schema/airlock.schema.json is stale: run `cargo run -q -- config schema > schema/airlock.schema.json`"
        );
    }
}
