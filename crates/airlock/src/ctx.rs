//! Global options resolved into a context every command receives.

use crate::config::{self, Config};
use airlock_types::Secret;
use anyhow::Context as _;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Everything went fine.
pub const EXIT_OK: u8 = 0;
/// A check ran and failed (verification found tampering, a scan found secrets).
pub const EXIT_CHECK_FAILED: u8 = 1;
/// Usage or configuration error.
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, clap::Args)]
pub struct GlobalArgs {
    /// Data directory [default: $XDG_DATA_HOME/airlock or ~/.local/share/airlock].
    #[arg(long, global = true, env = "AIRLOCK_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Configuration file [default: <data-dir>/airlock.toml].
    #[arg(long, global = true, env = "AIRLOCK_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Resolved global context.
#[derive(Debug)]
pub struct Ctx {
    pub data_dir: PathBuf,
    pub config_path: PathBuf,
    /// The user named the config file explicitly (so a missing file is an error).
    pub config_explicit: bool,
    /// `AIRLOCK_ENV=production`.
    pub production: bool,
    /// The process environment, read once (variables whose name or value is
    /// not UTF-8 are left out). Libraries get this map, never `std::env`.
    pub env: HashMap<String, String>,
}

impl Ctx {
    pub fn resolve(g: GlobalArgs) -> anyhow::Result<Ctx> {
        let data_dir = match g.data_dir {
            Some(d) => d,
            None => default_data_dir()?,
        };
        let config_explicit = g.config.is_some();
        let config_path = g.config.unwrap_or_else(|| data_dir.join("airlock.toml"));
        let env: HashMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let production = match std::env::var("AIRLOCK_ENV") {
            Ok(v) if v == "production" => true,
            Ok(v) if v.is_empty() || v == "development" => false,
            Ok(v) => anyhow::bail!(
                "AIRLOCK_ENV: unknown value {v:?} (expected \"production\" or \"development\")"
            ),
            Err(_) => false,
        };
        Ok(Ctx {
            data_dir,
            config_path,
            config_explicit,
            production,
            env,
        })
    }

    /// Load and validate the configuration. A missing file at the default
    /// location means the built-in defaults; a missing file the user named is an
    /// error.
    pub fn load_config(&self) -> anyhow::Result<Config> {
        if !self.config_path.exists() && !self.config_explicit {
            return Ok(Config::builtin());
        }
        Ok(config::load(&self.config_path)?)
    }

    /// An environment variable as a secret, `None` when unset or empty.
    pub fn env_secret(&self, var: &str) -> Option<Secret<String>> {
        airlock_vault::env_secret(&self.env, var)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.data_dir.join(rel)
    }

    /// Fail with a clear message when `airlock init` has not been run.
    pub fn require_initialized(&self) -> anyhow::Result<()> {
        let db = self.db_path();
        if !db.exists() {
            anyhow::bail!(
                "{}: no Airlock database here; run `airlock init` first (or pass --data-dir)",
                db.display()
            );
        }
        Ok(())
    }

    pub fn db_path(&self) -> PathBuf {
        self.path("airlock.db")
    }
    pub fn audit_key_path(&self) -> PathBuf {
        self.path("keys/audit-signing.key")
    }
    pub fn audit_pubkey_path(&self) -> PathBuf {
        self.path("keys/audit-signing.pub")
    }
    pub fn checkpoint_path(&self) -> PathBuf {
        self.path("audit.checkpoints")
    }
}

fn default_data_dir() -> anyhow::Result<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(Path::new(&x).join("airlock"));
    }
    let home = std::env::var_os("HOME").filter(|v| !v.is_empty()).context(
        "cannot find a data directory: set --data-dir, AIRLOCK_DATA_DIR, XDG_DATA_HOME or HOME",
    )?;
    Ok(Path::new(&home).join(".local/share/airlock"))
}
