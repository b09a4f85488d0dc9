//! `airlock proxy`. (Stub: filled in by its issue's work.)

use crate::ctx::Ctx;

#[derive(Debug, clap::Args)]
pub struct ProxyArgs {}

pub fn run(_ctx: &Ctx, _args: ProxyArgs) -> anyhow::Result<u8> {
    anyhow::bail!("`airlock proxy` is not built yet")
}
