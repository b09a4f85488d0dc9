//! The vault's master key as every front end finds it: the key file's place,
//! creating it on first use, unlocking the vault, and production mode's
//! minimum passphrase length.
//!
//! Key source, in order (decided by [`airlock_vault::resolve_key_source`]
//! over the environment captured in [`Home`]): `AIRLOCK_MASTER_KEY` (32
//! bytes, base64 or hex); for a vault locked with a passphrase,
//! `AIRLOCK_PASSPHRASE` or the front end's prompt; for a new vault,
//! `AIRLOCK_PASSPHRASE` if set; otherwise the key file
//! `<data-dir>/keys/master.key` (mode 0600).

use crate::{Home, RuntimeError};
use airlock_store::SqliteStore;
use airlock_types::Secret;
use airlock_vault::{
    KeyFile, KeyResolution, KeySource, Lock, Passphrase, Vault, lock_state, resolve_key_source,
};
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;

/// Production mode refuses shorter passphrases.
pub const MIN_PRODUCTION_PASSPHRASE: usize = 12;

/// How a front end asks for a passphrase the environment does not give (a
/// terminal prompt; a server has none and returns an error).
pub type Prompt<'a> = &'a dyn Fn() -> Result<Secret<String>, String>;

/// Create the master key file when the vault has no key yet and no key comes
/// from the environment. Returns the path when it created the file.
pub fn ensure_master_key(home: &Home) -> Result<Option<PathBuf>, RuntimeError> {
    if airlock_vault::env_supplies_key(&home.env) {
        return Ok(None);
    }
    if home.db_path().exists() {
        let store = SqliteStore::open(&home.db_path())?;
        if lock_state(&store)? != Lock::New {
            return Ok(None);
        }
    }
    let path = home.master_key_path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| RuntimeError::io(dir, "cannot create key directory", e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| RuntimeError::io(dir, "cannot set mode 0700", e))?;
    }
    Ok(KeyFile::new(&path).create()?.then_some(path))
}

/// The key source for a vault locked as `lock` (order: see the module doc);
/// asks `prompt` for a passphrase the environment does not give.
pub fn key_source(
    home: &Home,
    lock: &Lock,
    prompt: Prompt<'_>,
) -> Result<Box<dyn KeySource>, RuntimeError> {
    match resolve_key_source(&home.master_key_path(), &home.env, lock)? {
        KeyResolution::Source(s) => Ok(s),
        KeyResolution::AskPassphrase => {
            let p = prompt().map_err(RuntimeError::Prompt)?;
            Ok(Box::new(Passphrase::new(p, "terminal prompt")?))
        }
    }
}

/// Open and unlock the data directory's vault.
pub fn open_vault(home: &Home, prompt: Prompt<'_>) -> Result<Vault<SqliteStore>, RuntimeError> {
    home.require_initialized()?;
    let store = SqliteStore::open(&home.db_path())?;
    let lock = lock_state(&store)?;
    let source = key_source(home, &lock, prompt)?;
    Ok(Vault::unlock(store, source.as_ref())?)
}

/// How the vault is locked and which key source would be used (no key
/// material), for `airlock keys status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatus {
    /// `none (no secret stored yet)`, `raw key` or `passphrase`.
    pub lock: &'static str,
    /// The passphrase's key derivation, when locked with one.
    pub kdf: Option<String>,
    /// The key source: a variable's name, `terminal prompt` or `key file PATH`.
    pub source: String,
}

/// Describe the vault's lock and key source (order: see the module doc).
pub fn status(home: &Home) -> Result<KeyStatus, RuntimeError> {
    use airlock_vault::{ENV_MASTER_KEY, ENV_PASSPHRASE};
    home.require_initialized()?;
    let store = SqliteStore::open_read_only(&home.db_path())?;
    let (lock, kdf) = match lock_state(&store)? {
        Lock::New => ("none (no secret stored yet)", None),
        Lock::RawKey => ("raw key", None),
        Lock::Passphrase(p) => (
            "passphrase",
            Some(format!("argon2id m={}KiB t={} p={}", p.m_kib, p.t, p.p)),
        ),
    };
    let source = if home.env_secret(ENV_MASTER_KEY).is_some() {
        ENV_MASTER_KEY.to_owned()
    } else if kdf.is_some()
        || (lock.starts_with("none") && home.env_secret(ENV_PASSPHRASE).is_some())
    {
        if home.env_secret(ENV_PASSPHRASE).is_some() {
            ENV_PASSPHRASE.to_owned()
        } else {
            "terminal prompt".to_owned()
        }
    } else {
        format!("key file {}", home.master_key_path().display())
    };
    Ok(KeyStatus { lock, kdf, source })
}
