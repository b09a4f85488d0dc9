//! `--server URL`: the commands that make sense against a control-plane API.

use crate::cli::Command;
use crate::cmd::{audit::AuditCmd, budget::BudgetCmd};
use airlock_api::client::{self, Remote, RemoteCmd};

pub fn run(ctx: &crate::ctx::Ctx, url: &str, cmd: Command) -> anyhow::Result<u8> {
    let remote = Remote::new(url, &ctx.env)?;
    let cmd = match cmd {
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
        Command::Secret(crate::cmd::secret::SecretCmd::List { .. }) => RemoteCmd::SecretList,
        _ => anyhow::bail!(
            "--server: this command works on the local data directory only (with a server: run, audit verify|tail|export|prove, approvals, budget, token, secret list)"
        ),
    };
    Ok(client::run(&remote, cmd, &mut std::io::stdout().lock())?)
}
