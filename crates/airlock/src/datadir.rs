//! The data directory: creating it and everything in it. Idempotent. Used by
//! `airlock init` and, on first use, by `airlock run`.

use crate::auditing;
use crate::config::DEFAULT_TOML;
use crate::ctx::Ctx;
use airlock_audit::Signer;
use airlock_store::SqliteStore;
use airlock_types::{AuditEvent, EventResult, Reason};
use anyhow::Context as _;
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

/// Create the data directory (0700), its key directory, the configuration,
/// the audit signing key and database, and the vault's master key file,
/// whichever are missing; record what was created as `cli.init`.
pub fn initialize(ctx: &Ctx) -> anyhow::Result<Initialized> {
    let mut created: Vec<String> = Vec::new();

    if !ctx.data_dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&ctx.data_dir)
            .with_context(|| format!("{}: cannot create data directory", ctx.data_dir.display()))?;
        // The parent dirs get the umask's mode; the data dir itself must be 0700.
        fs::set_permissions(&ctx.data_dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("{}: cannot set mode 0700", ctx.data_dir.display()))?;
        created.push(ctx.data_dir.display().to_string());
    } else if !ctx.data_dir.is_dir() {
        anyhow::bail!("{}: exists and is not a directory", ctx.data_dir.display());
    }

    let keys = ctx.path("keys");
    if !keys.exists() {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&keys)
            .with_context(|| format!("{}: cannot create key directory", keys.display()))?;
        created.push(keys.display().to_string());
    }

    if write_new(&ctx.config_path, DEFAULT_TOML.as_bytes(), 0o600)? {
        created.push(ctx.config_path.display().to_string());
    }

    init_audit(ctx, &mut created)?;
    if let Some(key) = crate::master_key::ensure_master_key(ctx)? {
        created.push(key.display().to_string());
    }

    let mut index = None;
    if !created.is_empty() {
        // Record what init did, durably, and close with a signed checkpoint.
        let cfg = ctx.load_config()?;
        let auditor = auditing::open(ctx, &cfg)?;
        let event = AuditEvent::new(
            auditing::tenant(),
            auditing::operator(),
            "cli.init",
            ctx.data_dir.display().to_string(),
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

/// The signing key (0600), its public key (0644) and the database.
fn init_audit(ctx: &Ctx, created: &mut Vec<String>) -> anyhow::Result<()> {
    let key_path = ctx.audit_key_path();
    let pub_path = ctx.audit_pubkey_path();
    let db_path = ctx.db_path();
    if !key_path.exists() {
        // A new key cannot sign for an existing log: its old checkpoints would
        // no longer verify. Refuse rather than paper over a lost key.
        if db_path.exists() || pub_path.exists() {
            anyhow::bail!(
                "{}: audit signing key is missing but the audit log already exists; restore the key (a new key would orphan the signed history)",
                key_path.display()
            );
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
            anyhow::bail!(
                "{}: does not match the audit signing key {}",
                pub_path.display(),
                key_path.display()
            );
        }
    }
    let existed = db_path.exists();
    drop(SqliteStore::open(&db_path)?);
    if !existed {
        // Readable by the owner only; SQLite gives its -wal/-shm files the same mode.
        fs::set_permissions(&db_path, fs::Permissions::from_mode(0o600))
            .with_context(|| format!("{}: cannot set mode 0600", db_path.display()))?;
        created.push(db_path.display().to_string());
    }
    Ok(())
}

/// Create `path` with `contents` and `mode` unless it exists. Returns whether it was created.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<bool> {
    let mut f = match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot create", path.display())),
    };
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(true)
}
