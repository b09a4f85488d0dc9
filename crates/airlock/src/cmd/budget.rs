//! `airlock budget set|list|usage`: the LLM gateway's spending limits.

use crate::ctx::{Ctx, EXIT_OK};
use airlock_store::SqliteStore;
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

pub fn run(ctx: &Ctx, cmd: BudgetCmd) -> anyhow::Result<u8> {
    let tenant = ctx.tenant_id()?;
    let mut out = std::io::stdout().lock();
    match cmd {
        BudgetCmd::Set { scope, usd, period } => {
            airlock_runtime::gateway::set_budget(ctx, &tenant, &scope, &period, usd)?;
            writeln!(out, "budget {scope}: {usd:.6} USD per {period}")?;
        }
        BudgetCmd::List | BudgetCmd::Usage => {
            ctx.require_initialized()?;
            let store = SqliteStore::open(&ctx.db_path())?;
            for u in store.gateway_budget_usage(&tenant, Timestamp::now().as_micros())? {
                let b = &u.budget;
                let (limit, used) = (b.limit_micros as f64 / 1e6, u.used_micros as f64 / 1e6);
                writeln!(out, "{}\t{}\t{limit:.6}\t{used:.6}", b.scope, b.period)?;
            }
        }
    }
    Ok(EXIT_OK)
}
