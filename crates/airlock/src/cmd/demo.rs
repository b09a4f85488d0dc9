//! `airlock demo`: every layer working in one offline command.
//!
//! In a temporary data directory (or `--dir`), the demo runs the same
//! commands a user would — `airlock init`, `airlock secret set`, `airlock
//! run`, `airlock audit verify` — as child processes of this binary, against
//! a local HTTPS upstream and DNS responder (`airlock_fixtures::demo`, which
//! also holds the script and its checks). It exits 0 only if every step
//! behaved as expected.

use crate::ctx::{Ctx, EXIT_OK};
use anyhow::Context as _;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Work in this directory (created if missing; must be empty) instead of a temporary one; it is kept.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Keep the temporary directory (data dir, config, policy) and print where it is.
    #[arg(long)]
    pub keep: bool,
}

pub fn run(_ctx: &Ctx, args: DemoArgs) -> anyhow::Result<u8> {
    let exe = std::env::current_exe().context("cannot find this binary")?;
    let passed =
        airlock_fixtures::demo::play(&exe, args.dir.as_deref(), args.keep, &mut std::io::stdout())?;
    Ok(if passed { EXIT_OK } else { 1 })
}
