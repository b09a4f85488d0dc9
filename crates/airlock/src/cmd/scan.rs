//! `airlock scan`. (Stub: filled in by its issue's work.)

use crate::ctx::Ctx;

#[derive(Debug, clap::Args)]
pub struct ScanArgs {}

pub fn run(_ctx: &Ctx, _args: ScanArgs) -> anyhow::Result<u8> {
    anyhow::bail!("`airlock scan` is not built yet")
}
