//! `airlock approvals list|show|approve|deny`: review held calls by their hash.

use crate::ctx::{Ctx, EXIT_OK};

pub fn run(ctx: &Ctx, cmd: airlock_runtime::approvals::Command) -> anyhow::Result<u8> {
    let audit = ctx.load_config()?.audit;
    print!(
        "{}",
        airlock_runtime::approvals::command(ctx, &ctx.tenant_id()?, &audit, cmd)?
    );
    Ok(EXIT_OK)
}
