//! `airlock keys init|rotate|status`: the vault's master key. How every
//! command finds the key lives in [`crate::master_key`].

use crate::ctx::{Ctx, EXIT_OK};
use crate::master_key::{MIN_PRODUCTION_PASSPHRASE, ensure_master_key, open_vault, prompt_hidden};
use airlock_types::{AuditEvent, EventResult, Reason};
use airlock_vault::{ENV_MASTER_KEY, ENV_PASSPHRASE, Lock, Passphrase, RawKey, lock_state};
use anyhow::Context as _;

/// The environment variable holding the new raw key for `keys rotate --to env`.
pub const ENV_NEW_MASTER_KEY: &str = "AIRLOCK_NEW_MASTER_KEY";
/// The environment variable holding the new passphrase for `keys rotate --to passphrase`.
pub const ENV_NEW_PASSPHRASE: &str = "AIRLOCK_NEW_PASSPHRASE";

#[derive(Debug, clap::Subcommand)]
pub enum KeysCmd {
    /// Create the vault's master key file (<data-dir>/keys/master.key, mode 0600) unless the vault already has a key.
    Init,
    /// Show how the vault is locked and which key source would be used (no key material).
    Status {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-wrap every data key under a new master key (secrets are not re-encrypted).
    Rotate {
        /// Where the new master key lives [default: the same kind as now].
        /// `key-file`: a fresh random key replaces keys/master.key.
        /// `env`: the new key is read from AIRLOCK_NEW_MASTER_KEY.
        /// `passphrase`: from AIRLOCK_NEW_PASSPHRASE or a terminal prompt.
        #[arg(long, value_enum)]
        to: Option<KeyKind>,
    },
}

/// Where a master key lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyKind {
    KeyFile,
    Env,
    Passphrase,
}

fn new_passphrase(ctx: &Ctx) -> anyhow::Result<Passphrase> {
    if let Some(p) = ctx.env_secret(ENV_NEW_PASSPHRASE) {
        return Ok(Passphrase::new(p, ENV_NEW_PASSPHRASE)?);
    }
    let a = prompt_hidden("New vault passphrase: ")
        .with_context(|| format!("set {ENV_NEW_PASSPHRASE} or run on a terminal"))?;
    let b = prompt_hidden("Repeat the new passphrase: ")?;
    if a.expose() != b.expose() {
        anyhow::bail!("the passphrases do not match; nothing changed");
    }
    Ok(Passphrase::new(a, "terminal prompt")?)
}

pub fn run(ctx: &Ctx, cmd: KeysCmd) -> anyhow::Result<u8> {
    let cfg = ctx.load_checked_config()?;
    match cmd {
        KeysCmd::Init => {
            ctx.require_initialized()?;
            let auditor = ctx.auditor(&cfg)?;
            match ensure_master_key(ctx)? {
                Some(path) => {
                    let ev = AuditEvent::new(
                        crate::ctx::tenant(),
                        airlock_runtime::audit::operator(ctx),
                        airlock_types::Action::VaultKeysInit,
                        path.display().to_string(),
                        Reason::Recorded,
                        EventResult::Success,
                    );
                    auditor.record(ev)?;
                    println!("created {} (mode 0600)", path.display());
                }
                None => println!("the vault already has a master key source; nothing changed"),
            }
            auditor.close()?;
            Ok(EXIT_OK)
        }
        KeysCmd::Rotate { to } => rotate(ctx, &cfg, to),
        KeysCmd::Status { json } => status(ctx, json),
    }
}

fn rotate(ctx: &Ctx, cfg: &crate::config::Config, to: Option<KeyKind>) -> anyhow::Result<u8> {
    let auditor = ctx.auditor(cfg)?;
    let mut vault = open_vault(ctx)?;
    let from = vault.source().to_owned();
    let current = match lock_state(vault.store())? {
        Lock::Passphrase(_) => KeyKind::Passphrase,
        _ if ctx.env_secret(ENV_MASTER_KEY).is_some() => KeyKind::Env,
        _ => KeyKind::KeyFile,
    };
    let to = to.unwrap_or(current);
    let key_path = ctx.master_key_path();
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
            std::fs::rename(&staged, &key_path).with_context(|| {
                format!(
                    "the vault was rotated but {} could not be renamed to {}: rename it by hand",
                    staged.display(),
                    key_path.display()
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
            let text = ctx.env_secret(ENV_NEW_MASTER_KEY).with_context(|| {
                format!(
                    "--to env needs the new key in {ENV_NEW_MASTER_KEY} (32 bytes, base64 or hex)"
                )
            })?;
            let new = RawKey::parse(&text, ENV_NEW_MASTER_KEY)?;
            if new.is_weak() {
                anyhow::bail!(
                    "{ENV_NEW_MASTER_KEY}: refusing a weak or example key; generate one with `head -c 32 /dev/urandom | base64`"
                );
            }
            let n = vault.rotate_master(&new)?;
            notes.push(format!(
                "set {ENV_MASTER_KEY} to the value of {ENV_NEW_MASTER_KEY} from now on"
            ));
            n
        }
        KeyKind::Passphrase => {
            let new = new_passphrase(ctx)?;
            if ctx.production && new.len() < MIN_PRODUCTION_PASSPHRASE {
                anyhow::bail!(
                    "production mode refuses a passphrase shorter than {MIN_PRODUCTION_PASSPHRASE} characters"
                );
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
            .with_context(|| format!("{}: cannot remove the retired key", key_path.display()))?;
        notes.push(format!(
            "removed the retired key file {}",
            key_path.display()
        ));
    }
    let ev = AuditEvent::new(
        crate::ctx::tenant(),
        airlock_runtime::audit::operator(ctx),
        airlock_types::Action::VaultKeysRotate,
        "master key",
        Reason::Recorded,
        EventResult::Success,
    )
    .with_detail("from", from.clone())
    .with_detail("to", vault.source().to_owned())
    .with_detail("data_keys", rewrapped);
    auditor.record(ev)?;
    auditor.close()?;
    println!(
        "rotated the master key ({from} -> {}); re-wrapped {rewrapped} data key(s)",
        vault.source()
    );
    for n in notes {
        println!("note: {n}");
    }
    Ok(EXIT_OK)
}

fn status(ctx: &Ctx, json: bool) -> anyhow::Result<u8> {
    let airlock_runtime::master_key::KeyStatus { lock, kdf, source } =
        airlock_runtime::master_key::status(ctx)?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "lock": lock, "kdf": kdf, "source": source })
        );
    } else {
        println!("vault lock: {lock}");
        if let Some(k) = kdf {
            println!("kdf: {k}");
        }
        println!("key source: {source}");
    }
    Ok(EXIT_OK)
}
