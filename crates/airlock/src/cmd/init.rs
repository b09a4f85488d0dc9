//! `airlock init`: create the data directory and everything in it. Idempotent.

use crate::ctx::{Ctx, EXIT_OK};
use std::path::Path;

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Print what was done as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, args: InitArgs) -> anyhow::Result<u8> {
    let done = airlock_runtime::init::initialize(
        ctx,
        &airlock_types::TenantId::default_tenant(),
        crate::config::DEFAULT_TOML,
        || ctx.audit_settings(),
    )?;
    report(args.json, &ctx.data_dir, &done.created, done.audit_index);
    Ok(EXIT_OK)
}

fn report(json: bool, data_dir: &Path, created: &[String], audit_index: Option<u64>) {
    if json {
        let v = serde_json::json!({
            "data_dir": data_dir.display().to_string(),
            "created": created,
            "changed": !created.is_empty(),
            "audit_index": audit_index,
        });
        println!("{v}");
    } else if created.is_empty() {
        println!(
            "{}: already initialized; nothing changed",
            data_dir.display()
        );
    } else {
        for c in created {
            println!("created {c}");
        }
        if let Some(i) = audit_index {
            println!("recorded audit event cli.init (index {i})");
        }
    }
}
