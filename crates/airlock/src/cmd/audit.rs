//! `airlock audit verify|tail|export|prove`. (Filled in by the audit work.)

use crate::ctx::Ctx;

#[derive(Debug, clap::Subcommand)]
pub enum AuditCmd {
    /// Recompute the chain, Merkle tree and checkpoint signatures.
    Verify,
}

pub fn run(_ctx: &Ctx, _cmd: AuditCmd) -> anyhow::Result<u8> {
    anyhow::bail!("audit commands are not built yet")
}
