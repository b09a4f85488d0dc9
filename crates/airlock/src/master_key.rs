//! The vault's master key as every command finds it: the key file's place,
//! creating it on first use, unlocking the vault (prompting for a passphrase
//! when the environment has none) and production mode's rules for it.
//!
//! Key source, in order (decided by [`airlock_vault::resolve_key_source`]
//! over the environment captured in [`Ctx`]): `AIRLOCK_MASTER_KEY` (32 bytes,
//! base64 or hex); for a vault locked with a passphrase, `AIRLOCK_PASSPHRASE`
//! or a prompt on the terminal; for a new vault, `AIRLOCK_PASSPHRASE` if set;
//! otherwise the key file `<data-dir>/keys/master.key` (mode 0600).

use crate::ctx::Ctx;
use airlock_store::SqliteStore;
use airlock_types::Secret;
use airlock_vault::{
    ENV_PASSPHRASE, KeyFile, KeyResolution, KeySource, Lock, Passphrase, Vault, lock_state,
    resolve_key_source,
};
use anyhow::Context as _;
use std::io::{BufRead as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;

/// Production mode refuses shorter passphrases.
pub const MIN_PRODUCTION_PASSPHRASE: usize = 12;

pub fn master_key_path(ctx: &Ctx) -> PathBuf {
    ctx.path("keys/master.key")
}

/// Create the master key file when the vault has no key yet and no key comes
/// from the environment. Returns the path when it created the file. Meant
/// for `airlock init` too.
pub fn ensure_master_key(ctx: &Ctx) -> anyhow::Result<Option<PathBuf>> {
    if airlock_vault::env_supplies_key(&ctx.env) {
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

/// The key source for a vault locked as `lock` (order: see the module doc);
/// prompts on the terminal for a passphrase the environment does not give.
pub fn key_source(ctx: &Ctx, lock: &Lock) -> anyhow::Result<Box<dyn KeySource>> {
    match resolve_key_source(&master_key_path(ctx), &ctx.env, lock)? {
        KeyResolution::Source(s) => Ok(s),
        KeyResolution::AskPassphrase => {
            let p = prompt_hidden("Vault passphrase: ").with_context(|| {
                format!(
                    "the vault is locked with a passphrase: set {ENV_PASSPHRASE} or run on a terminal"
                )
            })?;
            Ok(Box::new(Passphrase::new(p, "terminal prompt")?))
        }
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
