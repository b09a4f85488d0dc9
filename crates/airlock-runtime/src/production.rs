//! Production mode (`AIRLOCK_ENV=production`): one validation pass that refuses
//! to start on insecure settings. Each boundary adds its checks here.

use crate::master_key::MIN_PRODUCTION_PASSPHRASE;
use crate::{Home, RuntimeError};
use airlock_store::SqliteStore;
use airlock_vault::{ENV_MASTER_KEY, ENV_PASSPHRASE, KeyFile, Lock, RawKey, lock_state};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// One reason production mode refuses to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is insecure.
    pub what: String,
    /// How to fix it.
    pub fix: String,
}

/// Every problem found; empty means the settings are acceptable.
pub fn check(ctx: &Home) -> Vec<Problem> {
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
    problems.extend(master_key_problems(ctx));
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
pub fn enforce(ctx: &Home) -> Result<(), RuntimeError> {
    let problems = check(ctx);
    if problems.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = problems
        .iter()
        .map(|p| format!("{} (fix: {})", p.what, p.fix))
        .collect();
    Err(RuntimeError::Production(list.join("; ")))
}

/// `airlock run --dangerously-allow-weaker-sandbox` is for development only:
/// production mode refuses it outright.
pub fn refuse_weaker_sandbox() -> RuntimeError {
    RuntimeError::Production(
        "--dangerously-allow-weaker-sandbox would run without Landlock or cgroups (fix: remove the flag, or fix the missing control)".into(),
    )
}

/// Production rules for the vault's master key: it must exist, not be an
/// example or weak key, and its file must not be readable by others.
fn master_key_problems(ctx: &Home) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let Some(k) = ctx.env_secret(ENV_MASTER_KEY) {
        match RawKey::parse(&k, ENV_MASTER_KEY) {
            Ok(raw) if raw.is_weak() => problems.push(Problem {
                what: format!("{ENV_MASTER_KEY} is a weak or example key"),
                fix: "generate one with `head -c 32 /dev/urandom | base64`".into(),
            }),
            Ok(_) => {}
            Err(e) => problems.push(Problem {
                what: e.to_string(),
                fix: "set a 32-byte key, base64 or hex".into(),
            }),
        }
        return problems;
    }
    if let Some(p) = ctx.env_secret(ENV_PASSPHRASE) {
        if p.expose().chars().count() < MIN_PRODUCTION_PASSPHRASE {
            problems.push(Problem {
                what: format!(
                    "{ENV_PASSPHRASE} is shorter than {MIN_PRODUCTION_PASSPHRASE} characters"
                ),
                fix: "use a longer passphrase, or a key file".into(),
            });
        }
        return problems;
    }
    let path = ctx.master_key_path();
    let kf = KeyFile::new(&path);
    match kf.mode() {
        Err(_) => {
            // A passphrase-locked vault prompts instead; anything else needs the file.
            let passphrase_vault = SqliteStore::open_read_only(&ctx.db_path())
                .ok()
                .and_then(|s| lock_state(&s).ok())
                .is_some_and(|l| matches!(l, Lock::Passphrase(_)));
            if !passphrase_vault {
                problems.push(Problem {
                    what: format!("vault master key {} is missing", path.display()),
                    fix: format!(
                        "run `airlock keys init`, or set {ENV_MASTER_KEY} or {ENV_PASSPHRASE}"
                    ),
                });
            }
        }
        Ok(mode) => {
            if mode & 0o077 != 0 {
                problems.push(Problem {
                    what: format!(
                        "vault master key {} is readable by other users (mode {:o})",
                        path.display(),
                        mode & 0o777
                    ),
                    fix: format!("chmod 600 {}", path.display()),
                });
            }
            match kf.read() {
                Ok(k) if airlock_vault::is_weak_master_key(k.expose()) => problems.push(Problem {
                    what: format!(
                        "vault master key {} is a weak or example key",
                        path.display()
                    ),
                    fix: "rotate it: `airlock keys rotate`".into(),
                }),
                Ok(_) => {}
                Err(e) => problems.push(Problem {
                    what: e.to_string(),
                    fix: "restore the key file".into(),
                }),
            }
        }
    }
    problems
}
