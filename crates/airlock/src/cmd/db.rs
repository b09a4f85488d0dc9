//! `airlock db migrate`: the PostgreSQL schema, as the owner role.
use crate::ctx::{Ctx, EXIT_OK};

#[derive(Debug, clap::Subcommand)]
pub enum DbCmd {
    /// Migrate the PostgreSQL schema as the tables' owner (URL in AIRLOCK_DATABASE_ADMIN_URL).
    Migrate {
        #[arg(
            long,
            env = "AIRLOCK_DATABASE_ADMIN_URL",
            hide_env_values = true,
            hide = true
        )]
        admin_url: String,
    },
}

pub fn run(ctx: &Ctx, DbCmd::Migrate { admin_url }: DbCmd) -> anyhow::Result<u8> {
    let applied = ctx.load_config()?.store.migrate_pg(&admin_url)?;
    println!("PostgreSQL schema current; applied: {applied:?}");
    Ok(EXIT_OK)
}
