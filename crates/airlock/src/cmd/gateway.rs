//! `airlock gateway`: the LLM gateway's own listener, and its virtual keys.
//! The work is in `airlock-gateway` and `airlock-runtime::gateway`; this
//! parses arguments and prints.

use crate::ctx::{Ctx, EXIT_OK};
use airlock_store::{BudgetRow, SqliteStore};
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

pub fn usd_to_micros(usd: f64) -> anyhow::Result<i64> {
    anyhow::ensure!(
        usd.is_finite() && usd >= 0.0,
        "budget must be a non-negative amount of USD"
    );
    Ok((usd * 1e6).floor() as i64)
}

fn key(ctx: &Ctx, cmd: KeyCmd) -> anyhow::Result<u8> {
    ctx.require_initialized()?;
    let mut store = SqliteStore::open(&ctx.db_path())?;
    let tenant = crate::ctx::tenant();
    let mut out = std::io::stdout().lock();
    match cmd {
        KeyCmd::Create {
            agent,
            team,
            budget_usd,
        } => {
            let (key, row) =
                airlock_gateway::create_key(&mut store, &tenant, &agent, team.as_deref())?;
            if let Some(usd) = budget_usd {
                let b = BudgetRow {
                    scope: format!("key:{}", row.id),
                    period: "total".into(),
                    limit_micros: usd_to_micros(usd)?,
                };
                store.gateway_set_budget(&tenant, &b)?;
            }
            writeln!(out, "{}", key.expose())?;
            writeln!(
                out,
                "# id {} (agent {agent}); this key is shown once",
                row.id
            )?;
        }
        KeyCmd::List => {
            for k in store.gateway_keys(&tenant)? {
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
    let tenant = crate::ctx::tenant();
    let auditor = ctx.auditor(&cfg)?;
    let gw = airlock_runtime::gateway::standalone(
        ctx,
        &cfg.gateway,
        &tenant,
        auditor.sink(),
        &crate::master_key::prompt,
    )?;
    airlock_runtime::gateway::serve(gw, listen, &auditor, &tenant, |addr| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "airlock gateway listening on {addr}");
        let _ = out.flush();
    })?;
    auditor.close()?;
    Ok(EXIT_OK)
}
