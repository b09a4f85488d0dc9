//! `airlock mcp`: the MCP gateway (`serve` over stdio or `--listen ADDR`),
//! its tools with their pins, and pinning. The work is in `airlock-mcp`
//! and `airlock-runtime::mcp`.

use crate::ctx::{Ctx, EXIT_OK};
use airlock_runtime::mcp::{self, SandboxLauncher, SessionOptions};
use std::sync::Arc;

#[derive(Debug, clap::Subcommand)]
pub enum McpCmd {
    /// Serve the gateway: stdio, or streamable HTTP with --listen.
    Serve {
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        #[arg(long, value_name = "NAME")]
        agent: Option<String>,
        #[arg(long, value_name = "ID")]
        run: Option<String>,
    },
    /// Each tool with its definition's SHA-256 and pin state.
    Tools {
        #[arg(long)]
        json: bool,
    },
    /// Pin SERVER.TOOL at its current definition (only if it hashes to --sha256).
    Pin {
        tool: String,
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
    },
}

pub fn run(ctx: &Ctx, cmd: McpCmd) -> anyhow::Result<u8> {
    let cfg = ctx.load_checked_config()?;
    let tenant = crate::ctx::tenant();
    let auditor = ctx.auditor(&cfg)?;
    let launcher: Arc<dyn airlock_mcp::Launcher> = Arc::new(SandboxLauncher {
        home: (**ctx).clone(),
        tenant: tenant.clone(),
        sandbox: cfg.sandbox.clone(),
        proxy: cfg.proxy.proxy.clone(),
        audit: cfg.audit.clone(),
        init_exe: "/proc/self/exe".into(),
    });
    let rt = tokio::runtime::Runtime::new()?;
    match cmd {
        McpCmd::Serve { listen, agent, run } => rt.block_on(async {
            let opts = SessionOptions {
                tenant: tenant.clone(),
                agent: agent.or(cfg.mcp.default_agent.clone()),
                run,
            };
            let (approver, taint) = (
                Arc::new(airlock_types::NoApprover),
                Arc::new(airlock_mcp::MemoryTaint::default()),
            );
            let gw = mcp::gateway(
                ctx,
                cfg.mcp.clone(),
                launcher,
                auditor.sink(),
                approver,
                taint,
                &tenant,
            )?;
            match listen {
                None => mcp::serve_stdio(gw, opts.context()?).await,
                Some(a) => {
                    let l = tokio::net::TcpListener::bind(a).await?;
                    eprintln!("airlock mcp listening on http://{}/mcp", l.local_addr()?);
                    mcp::serve_http(gw, l, opts).await
                }
            }
            anyhow::Ok(())
        })?,
        McpCmd::Tools { json } => {
            let tools = rt.block_on(mcp::tools(ctx, &cfg.mcp, launcher, &tenant))?;
            for t in &tools {
                match json {
                    true => println!("{}", serde_json::to_string(t)?),
                    false => println!("{}\t{}\t{}", t.name, t.state, t.sha256),
                }
            }
        }
        McpCmd::Pin { tool, sha256 } => {
            let sha = rt.block_on(mcp::pin(
                ctx,
                &cfg.mcp,
                launcher,
                auditor.sink(),
                &tenant,
                &tool,
                sha256.as_deref(),
            ))?;
            println!("pinned {tool} {sha}");
        }
    }
    drop(rt);
    auditor.close()?;
    Ok(EXIT_OK)
}
