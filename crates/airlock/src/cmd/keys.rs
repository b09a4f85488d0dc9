//! `airlock keys init|rotate`: the vault's master key, and how every command
//! finds it.
//!
//! Key source, in order: `AIRLOCK_MASTER_KEY` (32 bytes, base64 or hex); for
//! a vault locked with a passphrase, `AIRLOCK_PASSPHRASE` or a prompt on the
//! terminal; for a new vault, `AIRLOCK_PASSPHRASE` if set; otherwise the key
//! file `<data-dir>/keys/master.key` (mode 0600).

use crate::auditing;
use crate::cmd::init::operator;
use crate::ctx::{Ctx, EXIT_OK};
use crate::production::Problem;
use airlock_store::SqliteStore;
use airlock_types::{AuditEvent, EventResult, Reason, Secret};
use airlock_vault::{
    ENV_MASTER_KEY, ENV_PASSPHRASE, KeyFile, KeySource, Lock, Passphrase, RawKey, Vault, lock_state,
};
use anyhow::Context as _;
use std::io::{BufRead as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;

/// The environment variable holding the new raw key for `keys rotate --to env`.
pub const ENV_NEW_MASTER_KEY: &str = "AIRLOCK_NEW_MASTER_KEY";
/// The environment variable holding the new passphrase for `keys rotate --to passphrase`.
pub const ENV_NEW_PASSPHRASE: &str = "AIRLOCK_NEW_PASSPHRASE";
/// Production mode refuses shorter passphrases.
const MIN_PRODUCTION_PASSPHRASE: usize = 12;

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

pub fn master_key_path(ctx: &Ctx) -> PathBuf {
    ctx.path("keys/master.key")
}

fn env_secret(var: &str) -> Option<Secret<String>> {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .map(Secret::new)
}

/// Create the master key file when the vault has no key yet and no key comes
/// from the environment. Returns the path when it created the file. Meant
/// for `airlock init` too.
pub fn ensure_master_key(ctx: &Ctx) -> anyhow::Result<Option<PathBuf>> {
    if env_secret(ENV_MASTER_KEY).is_some() || env_secret(ENV_PASSPHRASE).is_some() {
        return Ok(None);
    }
    if ctx.db_path().exists() {
        let store = SqliteStore::open(&ctx.db_path())?;
        if lock_state(&store)? != Lock::New {
            return Ok(None);
        }
    }
    let path = master_key_path(ctx);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create key directory", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("{}: cannot set mode 0700", dir.display()))?;
    }
    Ok(KeyFile::new(&path).create()?.then_some(path))
}

/// The key source for the vault in `store`, per the order in the module doc.
pub fn key_source(ctx: &Ctx, lock: &Lock) -> anyhow::Result<Box<dyn KeySource>> {
    if let Some(k) = env_secret(ENV_MASTER_KEY) {
        return Ok(Box::new(RawKey::parse(&k, ENV_MASTER_KEY)?));
    }
    let passphrase = || -> anyhow::Result<Box<dyn KeySource>> {
        if let Some(p) = env_secret(ENV_PASSPHRASE) {
            return Ok(Box::new(Passphrase::new(p, ENV_PASSPHRASE)?));
        }
        let p = prompt_hidden("Vault passphrase: ").with_context(|| {
            format!(
                "the vault is locked with a passphrase: set {ENV_PASSPHRASE} or run on a terminal"
            )
        })?;
        Ok(Box::new(Passphrase::new(p, "terminal prompt")?))
    };
    match lock {
        Lock::Passphrase(_) => passphrase(),
        Lock::New if env_secret(ENV_PASSPHRASE).is_some() => passphrase(),
        Lock::New | Lock::RawKey => {
            let path = master_key_path(ctx);
            if !path.exists() {
                anyhow::bail!(
                    "{}: no vault master key; run `airlock keys init`, or set {ENV_MASTER_KEY} or {ENV_PASSPHRASE}",
                    path.display()
                );
            }
            Ok(Box::new(KeyFile::new(path)))
        } // `Lock` is non-exhaustive in spirit: a future KMS lock needs its source here.
    }
}

/// Open and unlock the data directory's vault.
pub fn open_vault(ctx: &Ctx) -> anyhow::Result<Vault<SqliteStore>> {
    ctx.require_initialized()?;
    let store = SqliteStore::open(&ctx.db_path())?;
    let lock = lock_state(&store)?;
    let source = key_source(ctx, &lock)?;
    Ok(Vault::unlock(store, source.as_ref())?)
}

/// Read a line from the terminal without echo. Fails when there is no terminal.
pub fn prompt_hidden(prompt: &str) -> anyhow::Result<Secret<String>> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .context("no terminal to prompt on")?;
    let orig = tcgetattr(&tty).context("/dev/tty: not a terminal")?;
    let mut quiet = orig.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    tcsetattr(&tty, SetArg::TCSAFLUSH, &quiet).context("/dev/tty: cannot turn echo off")?;
    let mut line = Secret::new(String::with_capacity(airlock_broker::MAX_VALUE_LEN + 2));
    let read = (&tty)
        .write_all(prompt.as_bytes())
        .and_then(|()| std::io::BufReader::new(&tty).read_line(line.expose_mut()));
    // Restore echo whatever happened.
    let restored = tcsetattr(&tty, SetArg::TCSAFLUSH, &orig);
    read.context("/dev/tty: cannot read")?;
    restored.context("/dev/tty: cannot restore echo")?;
    let trimmed = line.expose().trim_end_matches(['\n', '\r']).len();
    line.expose_mut().truncate(trimmed);
    Ok(line)
}

fn new_passphrase() -> anyhow::Result<Passphrase> {
    if let Some(p) = env_secret(ENV_NEW_PASSPHRASE) {
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
            let auditor = auditing::open(ctx, &cfg)?;
            match ensure_master_key(ctx)? {
                Some(path) => {
                    let ev = AuditEvent::new(
                        auditing::tenant(),
                        operator(),
                        "vault.keys_init",
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
    let auditor = auditing::open(ctx, cfg)?;
    let mut vault = open_vault(ctx)?;
    let from = vault.source().to_owned();
    let current = match lock_state(vault.store())? {
        Lock::Passphrase(_) => KeyKind::Passphrase,
        _ if env_secret(ENV_MASTER_KEY).is_some() => KeyKind::Env,
        _ => KeyKind::KeyFile,
    };
    let to = to.unwrap_or(current);
    let key_path = master_key_path(ctx);
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
            let text = env_secret(ENV_NEW_MASTER_KEY).with_context(|| {
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
            let new = new_passphrase()?;
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
        auditing::tenant(),
        operator(),
        "vault.keys_rotate",
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
    ctx.require_initialized()?;
    let store = SqliteStore::open_read_only(&ctx.db_path())?;
    let (lock, kdf) = match lock_state(&store)? {
        Lock::New => ("none (no secret stored yet)", None),
        Lock::RawKey => ("raw key", None),
        Lock::Passphrase(p) => (
            "passphrase",
            Some(format!("argon2id m={}KiB t={} p={}", p.m_kib, p.t, p.p)),
        ),
    };
    let source = if env_secret(ENV_MASTER_KEY).is_some() {
        ENV_MASTER_KEY.to_owned()
    } else if kdf.is_some() || (lock.starts_with("none") && env_secret(ENV_PASSPHRASE).is_some()) {
        if env_secret(ENV_PASSPHRASE).is_some() {
            ENV_PASSPHRASE.to_owned()
        } else {
            "terminal prompt".to_owned()
        }
    } else {
        format!("key file {}", master_key_path(ctx).display())
    };
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

/// Production rules for the vault's master key: it must exist, not be an
/// example or weak key, and its file must not be readable by others.
pub fn production_problems(ctx: &Ctx) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let Some(k) = env_secret(ENV_MASTER_KEY) {
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
    if let Some(p) = env_secret(ENV_PASSPHRASE) {
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
    let path = master_key_path(ctx);
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
