//! Command-line surface. Each subcommand's arguments live in its own module
//! under `cmd/`.

use crate::cmd;
use crate::ctx::{Ctx, GlobalArgs};
use crate::logging::LogFormat;
use airlock_api::client::{Remote, RemoteCmd};
use clap::{Parser, Subcommand};

/// Airlock: a zero-trust security runtime for AI agents.
#[derive(Debug, Parser)]
#[command(name = "airlock", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// How log events are written on stderr (their level comes from RUST_LOG; default warn).
    #[arg(
        long,
        global = true,
        env = "AIRLOCK_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text,
        value_name = "FORMAT"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the data directory, default config, audit signing key and database.
    Init(cmd::init::InitArgs),
    /// Check or describe the configuration.
    #[command(subcommand)]
    Config(cmd::config::ConfigCmd),
    /// Verify, read, export and prove the audit log.
    #[command(subcommand)]
    Audit(cmd::audit::AuditCmd),
    /// Run a command inside the sandbox, with network only through the egress proxy.
    Run(cmd::run::RunArgs),
    /// Run the egress proxy on its own.
    Proxy(cmd::proxy::ProxyArgs),
    /// Inspect egress policy decisions without a network.
    Policy(cmd::policy::PolicyArgs),
    /// Find secrets and personal data in files or stdin, and redact them.
    Scan(cmd::scan::ScanArgs),
    /// Store, list and remove vault secrets (values never on the command line).
    #[command(subcommand)]
    Secret(cmd::secret::SecretCmd),
    /// Manage the vault's master key.
    #[command(subcommand)]
    Keys(cmd::keys::KeysCmd),
    /// The LLM gateway: an OpenAI/Anthropic-compatible listener with virtual keys.
    Gateway(cmd::gateway::GatewayArgs),
    /// The MCP gateway: serve, list tools with their pins, pin a tool.
    Mcp(cmd::mcp::McpArgs),
    /// The LLM gateway's spending limits.
    #[command(subcommand)]
    Budget(cmd::budget::BudgetCmd),
    /// Review calls held for approval: approve one by the SHA-256 of exactly what it will do.
    #[command(subcommand)]
    Approvals(airlock_runtime::approvals::Command),
    /// Show every layer working, offline: a local upstream, a secret, an agent run, the audit trail.
    Demo(cmd::demo::DemoArgs),
    /// PostgreSQL: `db migrate` (as the owner role; AIRLOCK_DATABASE_ADMIN_URL).
    #[command(subcommand)]
    Db(cmd::db::DbCmd),
    /// The control-plane API (HTTPS, JSON under /v1) and the dashboard (/login).
    Serve(airlock_dashboard::cli::ServeCmd),
    /// The control plane's tenants.
    #[command(subcommand)]
    Tenant(airlock_api::cli::TenantCmd),
    /// API tokens of a tenant (`--tenant NAME`); a new token is printed once.
    #[command(subcommand)]
    Token(airlock_api::cli::TokenCmd),
    /// Print version and build information.
    Version(cmd::version::VersionArgs),
}

pub fn parse() -> Cli {
    // clap exits with 2 on usage errors, which matches our convention.
    Cli::parse()
}

pub fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    let ctx = Ctx::resolve(cli.global)?;
    if let Some(url) = &ctx.server {
        return remote(&ctx, url, cli.command);
    }
    match cli.command {
        Command::Init(a) => cmd::init::run(&ctx, a),
        Command::Config(c) => cmd::config::run(&ctx, c),
        Command::Audit(c) => cmd::audit::run(&ctx, c),
        Command::Run(a) => cmd::run::run(&ctx, a),
        Command::Proxy(a) => cmd::proxy::run(&ctx, a),
        Command::Policy(a) => cmd::policy::run(&ctx, a),
        Command::Scan(a) => cmd::scan::run(&ctx, a),
        Command::Secret(c) => cmd::secret::run(&ctx, c),
        Command::Keys(c) => cmd::keys::run(&ctx, c),
        Command::Gateway(a) => cmd::gateway::run(&ctx, a),
        Command::Mcp(a) => cmd::mcp::run(&ctx, a),
        Command::Budget(c) => cmd::budget::run(&ctx, c),
        Command::Approvals(c) => cmd::approvals::run(&ctx, c),
        Command::Demo(a) => cmd::demo::run(&ctx, a),
        Command::Db(c) => cmd::db::run(&ctx, c),
        Command::Version(a) => cmd::version::run(&ctx, a),
        Command::Serve(a) => cmd::serve::run(&ctx, a),
        Command::Tenant(c) => {
            Ok(airlock_api::cli::tenant(&ctx, &ctx.load_config()?.audit, c).map(|()| 0)?)
        }
        Command::Token(c) => {
            let t = ctx
                .tenant
                .as_deref()
                .ok_or_else(|| anyhow::anyhow!("token: name the tenant with --tenant NAME"))?;
            Ok(airlock_api::cli::token(&ctx, &ctx.load_config()?.audit, t, c).map(|()| 0)?)
        }
    }
}

/// `--server URL`: the commands that make sense against a control-plane API.
fn remote(ctx: &Ctx, url: &str, command: Command) -> anyhow::Result<u8> {
    use cmd::{audit::AuditCmd, budget::BudgetCmd, secret::SecretCmd};
    let remote = Remote::new(url, &ctx.env)?;
    let request = match command {
        Command::Run(a) => RemoteCmd::Run {
            agent: a.agent,
            secrets: a.secrets,
            command: a.command,
            timeout: a.timeout,
        },
        Command::Audit(AuditCmd::Verify(a)) if a.proof.is_none() => RemoteCmd::AuditVerify,
        Command::Audit(AuditCmd::Tail(a)) => RemoteCmd::AuditTail { n: a.n },
        Command::Audit(AuditCmd::Export(a)) => RemoteCmd::AuditExport { from: a.from },
        Command::Audit(AuditCmd::Prove(a)) => RemoteCmd::AuditProve { index: a.index },
        Command::Approvals(c) => RemoteCmd::Approvals(c),
        Command::Budget(BudgetCmd::Set { scope, usd, period }) => {
            RemoteCmd::BudgetSet { scope, usd, period }
        }
        Command::Budget(_) => RemoteCmd::BudgetList,
        Command::Token(c) => RemoteCmd::Token(c),
        Command::Secret(SecretCmd::List { .. }) => RemoteCmd::SecretList,
        _ => anyhow::bail!(
            "--server: this command works on the local data directory only (with a server: run, audit verify|tail|export|prove, approvals, budget, token, secret list)"
        ),
    };
    Ok(airlock_api::client::run(
        &remote,
        request,
        &mut std::io::stdout().lock(),
    )?)
}
