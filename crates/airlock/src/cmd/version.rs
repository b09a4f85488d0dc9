//! `airlock version`.

use crate::ctx::{Ctx, EXIT_OK};

#[derive(Debug, clap::Args)]
pub struct VersionArgs {
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_ctx: &Ctx, args: VersionArgs) -> anyhow::Result<u8> {
    let version = env!("CARGO_PKG_VERSION");
    if args.json {
        let v = serde_json::json!({
            "name": "airlock",
            "version": version,
            "target_os": std::env::consts::OS,
            "target_arch": std::env::consts::ARCH,
        });
        println!("{v}");
    } else {
        println!(
            "airlock {version} ({}-{})",
            std::env::consts::ARCH,
            std::env::consts::OS
        );
    }
    Ok(EXIT_OK)
}
