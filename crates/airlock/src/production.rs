//! Production mode (`AIRLOCK_ENV=production`): one validation pass that refuses
//! to start on insecure settings. Each boundary adds its checks here.

use crate::config::Config;
use crate::ctx::Ctx;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// One reason production mode refuses to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub what: String,
    pub fix: String,
}

/// Every problem found; empty means the settings are acceptable.
pub fn check(ctx: &Ctx, _cfg: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    match std::fs::metadata(&ctx.data_dir) {
        Ok(m) if m.permissions().mode() & 0o077 != 0 => problems.push(Problem {
            what: format!(
                "data directory {} is accessible to other users (mode {:o})",
                ctx.data_dir.display(),
                m.permissions().mode() & 0o777
            ),
            fix: format!("chmod 700 {}", ctx.data_dir.display()),
        }),
        Ok(_) => {}
        Err(_) => problems.push(Problem {
            what: format!("data directory {} does not exist", ctx.data_dir.display()),
            fix: "run `airlock init`".into(),
        }),
    }
    key_file(&ctx.audit_key_path(), "audit signing key", &mut problems);
    problems.extend(crate::cmd::keys::production_problems(ctx));
    problems
}

fn key_file(path: &Path, what: &str, problems: &mut Vec<Problem>) {
    match std::fs::metadata(path) {
        Ok(m) if m.permissions().mode() & 0o077 != 0 => problems.push(Problem {
            what: format!(
                "{what} {} is readable by other users (mode {:o})",
                path.display(),
                m.permissions().mode() & 0o777
            ),
            fix: format!("chmod 600 {}", path.display()),
        }),
        Ok(_) => {}
        Err(_) => problems.push(Problem {
            what: format!("{what} {} is missing", path.display()),
            fix: "run `airlock init`".into(),
        }),
    }
}

/// Refuse to go on when anything is insecure.
pub fn enforce(ctx: &Ctx, cfg: &Config) -> anyhow::Result<()> {
    let problems = check(ctx, cfg);
    if problems.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = problems
        .iter()
        .map(|p| format!("{} (fix: {})", p.what, p.fix))
        .collect();
    anyhow::bail!("production mode refuses to start: {}", list.join("; "))
}

/// `airlock run --dangerously-allow-weaker-sandbox` is for development only:
/// production mode refuses it outright.
pub fn refuse_weaker_sandbox() -> anyhow::Result<()> {
    anyhow::bail!(
        "production mode refuses to start: --dangerously-allow-weaker-sandbox would run without Landlock or cgroups (fix: remove the flag, or fix the missing control)"
    )
}
