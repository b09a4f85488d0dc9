//! `airlock mcp`: the MCP gateway; the work is in `airlock-runtime::mcp`.

use crate::ctx::{Ctx, EXIT_OK};
use airlock_runtime::mcp::{self, McpAction, McpSetup};

/// `serve` (stdio; streamable HTTP with --listen ADDR), `tools [--json]`, `pin SERVER.TOOL [--sha256 HEX]`.
#[derive(Debug, clap::Args)]
pub struct McpArgs {
    #[arg(value_parser = ["serve", "tools", "pin"])]
    name: String,
    tool: Option<String>,
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    #[arg(long)]
    agent: Option<String>,
    #[arg(long)]
    run: Option<String>,
    #[arg(long)]
    json: bool,
    #[arg(long)]
    sha256: Option<String>,
}

pub fn run(ctx: &Ctx, a: McpArgs) -> anyhow::Result<u8> {
    let (c, tenant) = (ctx.load_checked_config()?, ctx.tenant_id()?);
    let auditor = ctx.auditor(&c)?;
    let setup = McpSetup::new(ctx, tenant, c.mcp, c.sandbox, c.proxy.proxy, c.audit);
    let action = McpAction::new(a.name, a.tool, a.listen, a.agent, a.run, a.json, a.sha256);
    let svc = airlock_runtime::approvals::for_home(ctx, auditor.sink(), &c.approvals)?;
    let (approver, taint) = (svc.approver, svc.taint);
    let (sink, note) = (auditor.sink(), |m: &str| eprintln!("{m}"));
    for line in mcp::command(ctx, setup, sink, action, approver, taint, &note)? {
        println!("{line}");
    }
    auditor.close()?;
    Ok(EXIT_OK)
}
