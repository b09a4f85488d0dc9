//! `airlock keys init|rotate|status`: the vault's master key. How every
//! command finds the key lives in [`crate::master_key`].

use crate::ctx::{Ctx, EXIT_OK};
use crate::master_key::{ensure_master_key, prompt, prompt_hidden};
use airlock_runtime::master_key::{self, ENV_NEW_PASSPHRASE};
use airlock_types::{AuditEvent, EventResult, Reason, Secret};
use anyhow::Context as _;

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

/// Ask twice on the terminal for a new passphrase.
fn new_passphrase() -> Result<Secret<String>, String> {
    let asked = || -> anyhow::Result<Secret<String>> {
        let a = prompt_hidden("New vault passphrase: ")
            .with_context(|| format!("set {ENV_NEW_PASSPHRASE} or run on a terminal"))?;
        let b = prompt_hidden("Repeat the new passphrase: ")?;
        anyhow::ensure!(
            a.expose() == b.expose(),
            "the passphrases do not match; nothing changed"
        );
        Ok(a)
    };
    asked().map_err(|e| format!("{e:#}"))
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
                        airlock_types::TenantId::default_tenant(),
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
    let to = to.map(|k| match k {
        KeyKind::KeyFile => master_key::KeyKind::KeyFile,
        KeyKind::Env => master_key::KeyKind::Env,
        KeyKind::Passphrase => master_key::KeyKind::Passphrase,
    });
    let r = master_key::rotate(ctx, to, ctx.production, &prompt, &new_passphrase)?;
    let ev = AuditEvent::new(
        airlock_types::TenantId::default_tenant(),
        airlock_runtime::audit::operator(ctx),
        airlock_types::Action::VaultKeysRotate,
        "master key",
        Reason::Recorded,
        EventResult::Success,
    )
    .with_detail("from", r.from.clone())
    .with_detail("to", r.to.clone())
    .with_detail("data_keys", r.rewrapped);
    auditor.record(ev)?;
    auditor.close()?;
    let (from, to, n) = (r.from, r.to, r.rewrapped);
    println!("rotated the master key ({from} -> {to}); re-wrapped {n} data key(s)");
    for n in r.notes {
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
