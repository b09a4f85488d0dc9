//! `airlock budget set|list|usage`: the LLM gateway's spending limits.

use crate::ctx::{Ctx, EXIT_OK};
use airlock_store::{BudgetRow, SqliteStore};
use airlock_types::Timestamp;
use std::io::Write as _;

#[derive(Debug, clap::Subcommand)]
pub enum BudgetCmd {
    /// Set a budget: SCOPE is `org`, `team:NAME`, `agent:NAME`, `run:ID` or `key:ID`.
    Set {
        scope: String,
        /// The limit in USD.
        #[arg(long, value_name = "USD")]
        usd: f64,
        /// The window the limit applies to.
        #[arg(long, value_parser = ["day", "month", "total"], default_value = "month")]
        period: String,
    },
    /// List budgets.
    List,
    /// Budgets with what the current period used.
    Usage,
}

fn valid_scope(s: &str) -> bool {
    s == "org"
        || s.split_once(':')
            .is_some_and(|(k, n)| matches!(k, "team" | "agent" | "run" | "key") && !n.is_empty())
}

pub fn run(ctx: &Ctx, cmd: BudgetCmd) -> anyhow::Result<u8> {
    ctx.require_initialized()?;
    let mut store = SqliteStore::open(&ctx.db_path())?;
    let tenant = crate::ctx::tenant();
    let mut out = std::io::stdout().lock();
    match cmd {
        BudgetCmd::Set { scope, usd, period } => {
            anyhow::ensure!(
                valid_scope(&scope),
                "scope must be org, team:NAME, agent:NAME, run:ID or key:ID"
            );
            let limit_micros = super::gateway::usd_to_micros(usd)?;
            store.gateway_set_budget(
                &tenant,
                &BudgetRow {
                    scope: scope.clone(),
                    period: period.clone(),
                    limit_micros,
                },
            )?;
            writeln!(out, "budget {scope}: {usd:.6} USD per {period}")?;
        }
        BudgetCmd::List | BudgetCmd::Usage => {
            for u in store.gateway_budget_usage(&tenant, Timestamp::now().as_micros())? {
                let b = &u.budget;
                writeln!(
                    out,
                    "{}\t{}\t{:.6}\t{:.6}",
                    b.scope,
                    b.period,
                    b.limit_micros as f64 / 1e6,
                    u.used_micros as f64 / 1e6
                )?;
            }
        }
    }
    Ok(EXIT_OK)
}
