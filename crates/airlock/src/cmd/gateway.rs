//! `airlock gateway`: the LLM gateway's own listener, and its virtual keys.
//! The work is in `airlock-gateway` and `airlock-runtime::gateway`; this
//! parses arguments and prints.

use crate::ctx::{Ctx, EXIT_OK};
use airlock_runtime::gateway;
use airlock_store::SqliteStore;
use airlock_types::Timestamp;
use std::io::Write as _;
use std::net::SocketAddr;

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct GatewayArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4000")]
    pub listen: SocketAddr,
    #[command(subcommand)]
    pub cmd: Option<GatewayCmd>,
}

#[derive(Debug, clap::Subcommand)]
pub enum GatewayCmd {
    /// Manage virtual keys (`alk_…`) for the gateway's listener.
    #[command(subcommand)]
    Key(KeyCmd),
}

#[derive(Debug, clap::Subcommand)]
pub enum KeyCmd {
    /// Create a key for an agent; the key is printed once, only its SHA-256 is stored.
    Create {
        #[arg(long, value_name = "NAME")]
        agent: String,
        #[arg(long, value_name = "TEAM")]
        team: Option<String>,
        /// A total budget for this key, in USD.
        #[arg(long, value_name = "USD")]
        budget_usd: Option<f64>,
    },
    /// List keys (ids, agents, state; never the keys).
    List,
    /// Revoke a key by id.
    Revoke { id: String },
}

pub fn run(ctx: &Ctx, args: GatewayArgs) -> anyhow::Result<u8> {
    match args.cmd {
        Some(GatewayCmd::Key(k)) => key(ctx, k),
        None => serve(ctx, args.listen),
    }
}

fn key(ctx: &Ctx, cmd: KeyCmd) -> anyhow::Result<u8> {
    let tenant = ctx.tenant_id()?;
    let mut out = std::io::stdout().lock();
    match cmd {
        KeyCmd::Create {
            agent,
            team,
            budget_usd,
        } => {
            let (key, row) =
                gateway::create_key(ctx, &tenant, &agent, team.as_deref(), budget_usd)?;
            writeln!(out, "{}", key.expose())?;
            writeln!(
                out,
                "# id {} (agent {agent}); this key is shown once",
                row.id
            )?;
        }
        KeyCmd::List => {
            ctx.require_initialized()?;
            for k in SqliteStore::open(&ctx.db_path())?.gateway_keys(&tenant)? {
                let state = if k.revoked.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                let team = k.team.as_deref().unwrap_or("-");
                writeln!(out, "{}\t{}\t{team}\t{state}", k.id, k.agent)?;
            }
        }
        KeyCmd::Revoke { id } => {
            ctx.require_initialized()?;
            let mut store = SqliteStore::open(&ctx.db_path())?;
            let now = Timestamp::now().as_micros();
            anyhow::ensure!(
                store.gateway_revoke_key(&tenant, &id, now)?,
                "no active key {id}"
            );
            writeln!(out, "revoked {id}")?;
        }
    }
    Ok(EXIT_OK)
}

fn serve(ctx: &Ctx, listen: SocketAddr) -> anyhow::Result<u8> {
    let cfg = ctx.load_checked_config()?;
    let tenant = ctx.tenant_id()?;
    let auditor = ctx.auditor(&cfg)?;
    let gw = gateway::standalone(
        ctx,
        &cfg.gateway,
        &tenant,
        auditor.sink(),
        &crate::master_key::prompt,
    )?;
    gateway::serve(gw, listen, &auditor, &tenant, |addr| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "airlock gateway listening on {addr}");
        let _ = out.flush();
    })?;
    auditor.close()?;
    Ok(EXIT_OK)
}
