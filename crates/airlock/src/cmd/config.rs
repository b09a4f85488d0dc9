//! `airlock config check|schema`.

use crate::config;
use crate::ctx::{Ctx, EXIT_OK};

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCmd {
    /// Validate the configuration file (and, with AIRLOCK_ENV=production, the production rules).
    Check {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON schema of the configuration file.
    Schema,
}

pub fn run(ctx: &Ctx, cmd: ConfigCmd) -> anyhow::Result<u8> {
    match cmd {
        ConfigCmd::Check { json } => {
            let cfg = ctx.load_checked_config()?;
            if json {
                let v = serde_json::json!({
                    "ok": true,
                    "config": cfg.origin,
                    "production": ctx.production,
                });
                println!("{v}");
            } else {
                let mode = if ctx.production {
                    " (production rules applied)"
                } else {
                    ""
                };
                println!("{}: ok{mode}", cfg.origin);
            }
            Ok(EXIT_OK)
        }
        ConfigCmd::Schema => {
            print!("{}", config::schema_json());
            Ok(EXIT_OK)
        }
    }
}
