//! The data directory: creating it and everything in it. Idempotent. Used by
//! `airlock init` and, on first use, by a run.

use crate::{AuditSettings, Home, RuntimeError, audit};
use airlock_audit::Signer;
use airlock_store::SqliteStore;
use airlock_types::{AuditEvent, EventResult, Reason, TenantId};
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// What [`initialize`] did.
#[derive(Debug)]
pub struct Initialized {
    /// Every path created, in order; empty when nothing changed.
    pub created: Vec<String>,
    /// The index of the `cli.init` audit event, when one was recorded.
    pub audit_index: Option<u64>,
}

/// Create the data directory (0700), its key directory, the configuration
/// (`default_config`), the audit signing key and database, and the vault's
/// master key file, whichever are missing; record what was created as
/// `cli.init` in `tenant`'s log. `audit_settings` is called once the
/// configuration file exists (it may be the one just written).
pub fn initialize(
    home: &Home,
    tenant: &TenantId,
    default_config: &str,
    audit_settings: impl FnOnce() -> Result<AuditSettings, String>,
) -> Result<Initialized, RuntimeError> {
    let mut created: Vec<String> = Vec::new();
    let dir = &home.data_dir;

    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| RuntimeError::io(dir, "cannot create data directory", e))?;
        // The parent dirs get the umask's mode; the data dir itself must be 0700.
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| RuntimeError::io(dir, "cannot set mode 0700", e))?;
        created.push(dir.display().to_string());
    } else if !dir.is_dir() {
        return Err(RuntimeError::DataDir(format!(
            "{}: exists and is not a directory",
            dir.display()
        )));
    }

    let keys = home.path("keys");
    if !keys.exists() {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&keys)
            .map_err(|e| RuntimeError::io(&keys, "cannot create key directory", e))?;
        created.push(keys.display().to_string());
    }

    if write_new(&home.config_path, default_config.as_bytes(), 0o600)? {
        created.push(home.config_path.display().to_string());
    }

    init_audit(home, &mut created)?;
    if let Some(key) = crate::master_key::ensure_master_key(home)? {
        created.push(key.display().to_string());
    }

    let mut index = None;
    if !created.is_empty() {
        // Record what init did, durably, and close with a signed checkpoint.
        let settings = audit_settings().map_err(RuntimeError::DataDir)?;
        let auditor = audit::open(home, tenant, &settings)?;
        let event = AuditEvent::new(
            tenant.clone(),
            audit::operator(home),
            airlock_types::Action::CliInit,
            home.data_dir.display().to_string(),
            Reason::Recorded,
            EventResult::Success,
        )
        .with_detail("created", created.clone());
        index = Some(auditor.record(event)?);
        auditor.close()?;
    }

    Ok(Initialized {
        created,
        audit_index: index,
    })
}

/// First use just works: a data directory `airlock init` never set up is
/// set up as `init` would, on `note` (the front end says so). Production
/// mode expects explicit set-up (a missing data directory there is more
/// likely a volume that did not mount than a first run) and keeps refusing;
/// so does a configuration file the user named that does not exist.
/// Returns whether it initialized.
pub fn first_use(
    home: &Home,
    tenant: &TenantId,
    default_config: &str,
    audit_settings: impl FnOnce() -> Result<AuditSettings, String>,
    mut note: impl FnMut(&str),
) -> Result<bool, RuntimeError> {
    if home.production
        || home.db_path().exists()
        || (home.config_explicit && !home.config_path.exists())
    {
        return Ok(false);
    }
    note(&format!(
        "{}: not initialized; initializing it as `airlock init` would",
        home.data_dir.display()
    ));
    // An empty directory made for Airlock (`mkdir`, umask 022) becomes
    // private like one init creates; a directory with anything in it is left
    // as it is (production mode's check names it).
    let empty = fs::read_dir(&home.data_dir).is_ok_and(|mut d| d.next().is_none());
    if empty {
        fs::set_permissions(&home.data_dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| RuntimeError::io(&home.data_dir, "cannot set mode 0700", e))?;
    }
    let done = initialize(home, tenant, default_config, audit_settings)?;
    for c in &done.created {
        note(&format!("created {c}"));
    }
    Ok(true)
}

/// The signing key (0600), its public key (0644) and the database.
fn init_audit(home: &Home, created: &mut Vec<String>) -> Result<(), RuntimeError> {
    let key_path = home.audit_key_path();
    let pub_path = home.audit_pubkey_path();
    let db_path = home.db_path();
    if !key_path.exists() {
        // A new key cannot sign for an existing log: its old checkpoints would
        // no longer verify. Refuse rather than paper over a lost key.
        if db_path.exists() || pub_path.exists() {
            return Err(RuntimeError::DataDir(format!(
                "{}: audit signing key is missing but the audit log already exists; restore the key (a new key would orphan the signed history)",
                key_path.display()
            )));
        }
        let pkcs8 = Signer::generate_pkcs8().map_err(airlock_audit::AuditError::KeyGenerate)?;
        if write_new(&key_path, pkcs8.expose(), 0o600)? {
            created.push(key_path.display().to_string());
        }
    }
    let signer = airlock_audit::load_signer(&key_path)?;
    let public = signer.public_key();
    if write_new(&pub_path, public.to_text().as_bytes(), 0o644)? {
        created.push(pub_path.display().to_string());
    } else {
        let on_disk = airlock_audit::load_public_key(&pub_path)?;
        if on_disk != public {
            return Err(RuntimeError::DataDir(format!(
                "{}: does not match the audit signing key {}",
                pub_path.display(),
                key_path.display()
            )));
        }
    }
    let existed = db_path.exists();
    drop(SqliteStore::open(&db_path)?);
    if !existed {
        // Readable by the owner only; SQLite gives its -wal/-shm files the same mode.
        fs::set_permissions(&db_path, fs::Permissions::from_mode(0o600))
            .map_err(|e| RuntimeError::io(&db_path, "cannot set mode 0600", e))?;
        created.push(db_path.display().to_string());
    }
    Ok(())
}

/// Create `path` with `contents` and `mode` unless it exists. Returns whether it was created.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<bool, RuntimeError> {
    let mut f = match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(RuntimeError::io(path, "cannot create", e)),
    };
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .map_err(|e| RuntimeError::io(path, "cannot write", e))?;
    Ok(true)
}
