//! `airlock serve`: the control-plane API and the dashboard (logic in
//! `airlock_api::cli` and `airlock_dashboard::cli`).

use crate::ctx::{Ctx, EXIT_OK};
use std::path::PathBuf;

pub fn run(ctx: &Ctx, args: airlock_dashboard::cli::ServeCmd) -> anyhow::Result<u8> {
    let cfg = ctx.load_checked_config()?;
    let mut protected = Vec::new();
    if let Ok(p) = std::env::current_exe() {
        protected.push(("the airlock binary".to_owned(), p));
    }
    let defaults = airlock_api::RunDefaults {
        proxy: cfg.proxy.proxy.clone(),
        sandbox: cfg.sandbox.clone(),
        audit: cfg.audit.clone(),
        gateway: Some(cfg.gateway.clone()),
        approvals: cfg.approvals.clone(),
        policy: cfg.policy.policy.clone(),
        protected,
        init_exe: PathBuf::from("/proc/self/exe"),
        workspace_root: std::env::temp_dir().join("airlock-api-runs"),
    };
    let tenant = ctx.tenant.as_deref();
    airlock_dashboard::cli::serve(ctx, &cfg.serve, tenant, args, cfg.audit.clone(), defaults)?;
    Ok(EXIT_OK)
}
