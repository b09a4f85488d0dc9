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

/// Where a master key lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A fresh random key in `<data-dir>/keys/master.key`.
    KeyFile,
    /// A raw key the environment gives (`AIRLOCK_MASTER_KEY`).
    Env,
    /// A passphrase (Argon2id).
    Passphrase,
}

/// The environment variable holding the new raw key for a rotation to `env`.
pub const ENV_NEW_MASTER_KEY: &str = "AIRLOCK_NEW_MASTER_KEY";
/// The environment variable holding the new passphrase for a rotation to a passphrase.
pub const ENV_NEW_PASSPHRASE: &str = "AIRLOCK_NEW_PASSPHRASE";

/// What a rotation did.
#[derive(Debug)]
pub struct Rotated {
    /// The key source before.
    pub from: String,
    /// The key source now.
    pub to: String,
    /// How many data keys were re-wrapped.
    pub rewrapped: usize,
    /// What the operator has to do now (environment variables to change).
    pub notes: Vec<String>,
}

/// Re-wrap every data key under a new master key of kind `to` (default:
/// the kind in use). A new key file is staged and renamed into place only
/// after the database holds the re-wrapped keys; a retired key file is
/// removed. `new_passphrase` asks for a new passphrase when the
/// environment does not give one; `prompt` unlocks the vault as it is.
pub fn rotate(
    home: &Home,
    to: Option<KeyKind>,
    production: bool,
    prompt: Prompt<'_>,
    new_passphrase: Prompt<'_>,
) -> Result<Rotated, RuntimeError> {
    use airlock_vault::{ENV_MASTER_KEY, ENV_PASSPHRASE, RawKey};
    let mut vault = open_vault(home, prompt)?;
    let from = vault.source().to_owned();
    let current = match lock_state(vault.store())? {
        Lock::Passphrase(_) => KeyKind::Passphrase,
        _ if home.env_secret(ENV_MASTER_KEY).is_some() => KeyKind::Env,
        _ => KeyKind::KeyFile,
    };
    let to = to.unwrap_or(current);
    let key_path = home.master_key_path();
    let mut notes = Vec::new();
    let rewrapped = match to {
        KeyKind::KeyFile => {
            let new = RawKey::generate(&format!("key file {}", key_path.display()))?;
            let staged = key_path.with_extension("key.new");
            new.write_to(&staged)?;
            let n = match vault.rotate_master(&new) {
                Ok(n) => n,
                Err(e) => {
                    let _ = std::fs::remove_file(&staged);
                    return Err(e.into());
                }
            };
            // The database now needs the new key: put it in place atomically.
            std::fs::rename(&staged, &key_path).map_err(|source| {
                RuntimeError::io(
                    &staged,
                    "the vault was rotated but this staged key could not be renamed to keys/master.key: rename it by hand",
                    source,
                )
            })?;
            if let Some(dir) = key_path.parent() {
                std::fs::File::open(dir).and_then(|d| d.sync_all()).ok();
            }
            if current == KeyKind::Env {
                notes.push(format!(
                    "unset {ENV_MASTER_KEY}: the vault now uses {}",
                    key_path.display()
                ));
            }
            n
        }
        KeyKind::Env => {
            let text = home.env_secret(ENV_NEW_MASTER_KEY).ok_or_else(|| {
                RuntimeError::Prompt(format!(
                    "--to env needs the new key in {ENV_NEW_MASTER_KEY} (32 bytes, base64 or hex)"
                ))
            })?;
            let new = RawKey::parse(&text, ENV_NEW_MASTER_KEY)?;
            if new.is_weak() {
                return Err(RuntimeError::Prompt(format!(
                    "{ENV_NEW_MASTER_KEY}: refusing a weak or example key; generate one with `head -c 32 /dev/urandom | base64`"
                )));
            }
            let n = vault.rotate_master(&new)?;
            notes.push(format!(
                "set {ENV_MASTER_KEY} to the value of {ENV_NEW_MASTER_KEY} from now on"
            ));
            n
        }
        KeyKind::Passphrase => {
            let new = match home.env_secret(ENV_NEW_PASSPHRASE) {
                Some(p) => Passphrase::new(p, ENV_NEW_PASSPHRASE)?,
                None => Passphrase::new(
                    new_passphrase().map_err(RuntimeError::Prompt)?,
                    "terminal prompt",
                )?,
            };
            if production && new.len() < MIN_PRODUCTION_PASSPHRASE {
                return Err(RuntimeError::Prompt(format!(
                    "production mode refuses a passphrase shorter than {MIN_PRODUCTION_PASSPHRASE} characters"
                )));
            }
            let n = vault.rotate_master(&new)?;
            if current == KeyKind::Env {
                notes.push(format!(
                    "unset {ENV_MASTER_KEY} and set {ENV_PASSPHRASE} (or enter it when prompted)"
                ));
            }
            n
        }
    };
    if to != KeyKind::KeyFile && key_path.exists() {
        // The old key no longer opens this vault; leaving it would only confuse.
        std::fs::remove_file(&key_path)
            .map_err(|e| RuntimeError::io(&key_path, "cannot remove the retired key", e))?;
        notes.push(format!(
            "removed the retired key file {}",
            key_path.display()
        ));
    }
    Ok(Rotated {
        from,
        to: vault.source().to_owned(),
        rewrapped,
        notes,
    })
}
