//! A data directory and the environment a front end captured.

use crate::RuntimeError;
use airlock_types::{Secret, TenantId};
use std::collections::HashMap;
use std::path::PathBuf;

/// One Airlock data directory, its configuration file, and the process
/// environment as the front end read it once. Libraries get this map, never
/// `std::env`.
#[derive(Debug, Clone)]
pub struct Home {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The configuration file.
    pub config_path: PathBuf,
    /// The user named the configuration file explicitly (so a missing file
    /// is an error).
    pub config_explicit: bool,
    /// `AIRLOCK_ENV=production`.
    pub production: bool,
    /// The environment (variables whose name or value is not UTF-8 left out).
    pub env: HashMap<String, String>,
}

impl Home {
    /// The home a front end names: `data_dir` (default
    /// `$XDG_DATA_HOME/airlock`, else `$HOME/.local/share/airlock`), `config`
    /// (default `<data-dir>/airlock.toml`), and `AIRLOCK_ENV` (`production`,
    /// `development` or unset), all read from `env`.
    pub fn resolve(
        data_dir: Option<PathBuf>,
        config: Option<PathBuf>,
        env: HashMap<String, String>,
    ) -> Result<Home, RuntimeError> {
        let var = |k: &str| env.get(k).filter(|v| !v.is_empty());
        let data_dir = match (data_dir, var("XDG_DATA_HOME"), var("HOME")) {
            (Some(d), _, _) => d,
            (None, Some(x), _) => PathBuf::from(x).join("airlock"),
            (None, None, Some(h)) => PathBuf::from(h).join(".local/share/airlock"),
            (None, None, None) => {
                return Err(RuntimeError::Invalid(
                    "cannot find a data directory: set --data-dir, AIRLOCK_DATA_DIR, XDG_DATA_HOME or HOME".into(),
                ));
            }
        };
        let production = match env.get("AIRLOCK_ENV").map(String::as_str) {
            Some("production") => true,
            None | Some("" | "development") => false,
            Some(v) => {
                return Err(RuntimeError::Invalid(format!(
                    "AIRLOCK_ENV: unknown value {v:?} (expected \"production\" or \"development\")"
                )));
            }
        };
        Ok(Home {
            config_explicit: config.is_some(),
            config_path: config.unwrap_or_else(|| data_dir.join("airlock.toml")),
            data_dir,
            production,
            env,
        })
    }

    /// An environment variable as a secret, `None` when unset or empty.
    pub fn env_secret(&self, var: &str) -> Option<Secret<String>> {
        airlock_vault::env_secret(&self.env, var)
    }

    /// A path inside the data directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.data_dir.join(rel)
    }

    /// Fail with a clear message when `airlock init` has not been run.
    pub fn require_initialized(&self) -> Result<(), RuntimeError> {
        let db = self.db_path();
        if !db.exists() {
            return Err(RuntimeError::NotInitialized(db));
        }
        Ok(())
    }

    /// The SQLite database.
    pub fn db_path(&self) -> PathBuf {
        self.path("airlock.db")
    }
    /// The audit log's signing key.
    pub fn audit_key_path(&self) -> PathBuf {
        self.path("keys/audit-signing.key")
    }
    /// The audit log's public key.
    pub fn audit_pubkey_path(&self) -> PathBuf {
        self.path("keys/audit-signing.pub")
    }
    /// The plain file of the single-user tenant's signed checkpoints.
    pub fn checkpoint_path(&self) -> PathBuf {
        self.path("audit.checkpoints")
    }

    /// The plain file of `tenant`'s signed checkpoints: one file per tenant
    /// (a file holds one log's checkpoints). The single-user CLI's tenant
    /// keeps `audit.checkpoints`, as before tenants; any other tenant's is
    /// `audit.checkpoints.<tenant>` (a tenant id is `[A-Za-z0-9_.:-]`, and
    /// as a suffix it cannot name another directory).
    pub fn checkpoint_path_for(&self, tenant: &TenantId) -> PathBuf {
        if *tenant == TenantId::default_tenant() {
            self.checkpoint_path()
        } else {
            self.path(&format!("audit.checkpoints.{tenant}"))
        }
    }
    /// The vault's master key file.
    pub fn master_key_path(&self) -> PathBuf {
        self.path("keys/master.key")
    }
}
