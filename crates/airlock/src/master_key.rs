//! The vault's master key as the CLI finds it: the runtime resolves the
//! source (see `airlock_runtime::master_key`); this module adds the
//! terminal prompt for a passphrase the environment does not give.

use crate::ctx::Ctx;
use airlock_store::SqliteStore;
use airlock_types::Secret;
use airlock_vault::{ENV_PASSPHRASE, Vault};
use anyhow::Context as _;
use std::io::{BufRead as _, Write as _};

pub use airlock_runtime::master_key::ensure_master_key;

/// The passphrase prompt on the terminal, for the runtime.
pub fn prompt() -> Result<Secret<String>, String> {
    prompt_hidden("Vault passphrase: ").map_err(|e| {
        format!(
            "the vault is locked with a passphrase: set {ENV_PASSPHRASE} or run on a terminal: {e:#}"
        )
    })
}

/// Open and unlock the data directory's vault.
pub fn open_vault(ctx: &Ctx) -> anyhow::Result<Vault<SqliteStore>> {
    Ok(airlock_runtime::master_key::open_vault(ctx, &prompt)?)
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
