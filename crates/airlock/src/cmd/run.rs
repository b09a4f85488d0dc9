//! `airlock run`. (Stub: filled in by its issue's work.)

use crate::ctx::Ctx;

#[derive(Debug, clap::Args)]
pub struct RunArgs {}

pub fn run(_ctx: &Ctx, _args: RunArgs) -> anyhow::Result<u8> {
    anyhow::bail!("`airlock run` is not built yet")
}
