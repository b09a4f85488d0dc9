//! `airlock policy`. (Stub: filled in by its issue's work.)

use crate::ctx::Ctx;

#[derive(Debug, clap::Args)]
pub struct PolicyArgs {}

pub fn run(_ctx: &Ctx, _args: PolicyArgs) -> anyhow::Result<u8> {
    anyhow::bail!("`airlock policy` is not built yet")
}
