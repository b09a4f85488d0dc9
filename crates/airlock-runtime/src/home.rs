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
