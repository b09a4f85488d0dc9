//! `airlock gateway`: the LLM gateway's own listener, and its virtual keys.
//! All the work is in `airlock-gateway`; this wires config, vault, store
//! and audit to it.

use crate::ctx::{Ctx, EXIT_OK};
use airlock_gateway::{Gateway, GatewayConfig, Provider};
use airlock_store::{BudgetRow, SqliteStore};
use airlock_types::{AuditEvent, EventResult, Reason, Secret, Timestamp};
use anyhow::Context as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

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
                writeln!(
                    out,
                    "{}\t{}\t{}\t{state}",
                    k.id,
                    k.agent,
                    k.team.as_deref().unwrap_or("-")
                )?;
            }
        }
        KeyCmd::Revoke { id } => {
            anyhow::ensure!(
                store.gateway_revoke_key(&tenant, &id, Timestamp::now().as_micros())?,
                "no active key {id}"
            );
            writeln!(out, "revoked {id}")?;
        }
    }
    Ok(EXIT_OK)
}

fn serve(ctx: &Ctx, listen: SocketAddr) -> anyhow::Result<u8> {
    let cfg = ctx.load_checked_config()?;
    ctx.require_initialized()?;
    let tenant = crate::ctx::tenant();
    let mut known = Vec::new();
    let mut providers = Vec::new();
    let needs_vault = cfg.gateway.providers.iter().any(|p| p.secret.is_some());
    let mut vault = if needs_vault {
        Some(crate::master_key::open_vault(ctx)?)
    } else {
        None
    };
    for p in &cfg.gateway.providers {
        let secret = match (&p.secret, vault.as_mut()) {
            (Some(name), Some(v)) => {
                let (value, _) = v.get(&tenant, name).with_context(|| {
                    format!("gateway.providers.{}: vault secret {name}", p.name)
                })?;
                known.push((name.clone(), Secret::new(value.expose().clone())));
                Some(Arc::new(value))
            }
            _ => None,
        };
        providers.push(Provider {
            name: p.name.clone(),
            kind: p.kind,
            base_url: p.base_url.clone(),
            secret,
        });
    }
    drop(vault);
    let mut gcfg = GatewayConfig::new(tenant.clone(), providers);
    gcfg.max_body_bytes = cfg.gateway.max_body_bytes;
    gcfg.redact_pii = cfg.gateway.redact_pii;
    for (m, p) in &cfg.gateway.prices {
        gcfg.prices.set(m, *p);
    }
    let auditor = ctx.auditor(&cfg)?;
    let store = SqliteStore::open(&ctx.db_path())?;
    let gw =
        Gateway::new(gcfg, &known, store, auditor.sink()).context("cannot start the gateway")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(listen))
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    auditor.record(AuditEvent::new(
        tenant,
        airlock_types::Actor::system(),
        airlock_types::Action::GatewayStart,
        addr.to_string(),
        Reason::Recorded,
        EventResult::Success,
    ))?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "airlock gateway listening on {addr}")?;
        out.flush()?;
    }
    rt.block_on(async {
        tokio::select! {
            r = airlock_gateway::serve(listener, gw) => r.context("gateway failed"),
            _ = stop() => Ok(()),
        }
    })?;
    drop(rt);
    auditor.close()?;
    Ok(EXIT_OK)
}

async fn stop() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
