//! Airlock's secrets at rest: the encrypted vault and master-key resolution.
//!
//! **What it enforces.** Secret values exist in clear only in memory, inside
//! [`Secret`](airlock_types::Secret) (zeroized, never printed). At rest they
//! are sealed with AES-256-GCM (aws-lc-rs) in an envelope: a master
//! key-encryption key from a [`KeySource`] (key file, `AIRLOCK_MASTER_KEY`,
//! or an Argon2id-stretched passphrase) wraps one data key per tenant, which
//! seals each secret with a fresh random 96-bit nonce and associated data
//! binding tenant, name, version, data-key version and the clear-text
//! binding. A flipped bit, a row moved to another name, an edited binding or
//! the wrong master key is an error, never garbage. [`Vault::grant`] hands a
//! run's secrets to the credential broker (`airlock-broker`, which owns
//! [`Binding`](airlock_broker::Binding) and the handles) as
//! [`Grant`](airlock_broker::Grant)s; the vault itself never sees a handle.
//!
//! **What it trusts.** aws-lc-rs and the `argon2` crate; the system random
//! generator; the storage to return what was stored (tampering is detected,
//! not prevented); the caller to pass the real environment to the master-key
//! resolver.
//!
//! **What it does NOT guarantee.** It does not protect values from a process
//! that can read Airlock's memory, nor the master key from anyone who can
//! read the key file or the environment. A rolled-back database (an older
//! but authentic row) is not detected.
#![forbid(unsafe_code)]

mod crypto;
mod keysource;
mod resolve;
mod vault;

pub use crypto::KEY_LEN;
pub use keysource::{
    ENV_MASTER_KEY, ENV_PASSPHRASE, EXAMPLE_MASTER_KEY, KdfParams, KeyFile, KeySource, Lock,
    MasterKey, Passphrase, RawKey, is_weak_master_key, parse_master_key,
};
pub use resolve::{KeyResolution, env_secret, env_supplies_key, resolve_key_source};
pub use vault::{SecretInfo, SetOutcome, Vault, list_secrets, lock_state, remove_secret};

use airlock_types::{RunId, TenantId};
use std::path::PathBuf;

/// A vault operation failed. Messages name what and where, never a secret
/// value, key or handle.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The key file could not be read.
    #[error("{}: cannot read master key file: {source}", path.display())]
    ReadKeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The key file is needed (no key in the environment) and missing.
    #[error(
        "{}: no vault master key; run `airlock keys init`, or set {ENV_MASTER_KEY} or {ENV_PASSPHRASE}",
        path.display()
    )]
    NoMasterKey { path: PathBuf },
    /// The key file could not be written.
    #[error("{}: cannot write master key file: {source}", path.display())]
    WriteKeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A raw key or passphrase was unusable.
    #[error("{origin}: malformed master key: {detail}")]
    MalformedKey {
        origin: String,
        detail: &'static str,
    },
    /// The source cannot unlock this kind of vault.
    #[error("{source_desc} cannot unlock this vault: it is locked with {lock}")]
    WrongKeyKind {
        source_desc: String,
        lock: &'static str,
    },
    /// The key does not open the vault's check value.
    #[error(
        "master key does not match this vault ({source_desc}): wrong key or passphrase, or a vault created with another master key"
    )]
    WrongMasterKey { source_desc: String },
    /// The stored Argon2id parameters are unusable.
    #[error("vault passphrase parameters are invalid: {detail}")]
    BadKdfParams { detail: String },
    /// Argon2id failed.
    #[error("cannot stretch the passphrase: {detail}")]
    Kdf { detail: String },
    /// A tenant's data key did not unwrap under the (correct) master key.
    #[error(
        "data key of tenant {tenant} cannot be unwrapped: the vault row was altered or is corrupt"
    )]
    CorruptDataKey { tenant: TenantId },
    /// A secret did not decrypt.
    #[error(
        "secret {name} of tenant {tenant} cannot be decrypted: its ciphertext, binding or version was altered, or the row is corrupt"
    )]
    Decrypt { tenant: TenantId, name: String },
    /// A stored binding does not parse.
    #[error("secret {name}: stored binding is corrupt: {detail}")]
    CorruptBinding { name: String, detail: String },
    /// No such secret.
    #[error("no secret named {name} in tenant {tenant}")]
    NotFound { tenant: TenantId, name: String },
    /// A secret name is not acceptable.
    #[error(
        "invalid secret name {name:?}: use 1-64 characters of [A-Za-z0-9_.-], starting with a letter or digit"
    )]
    InvalidName { name: String },
    /// A secret value is not acceptable (the value itself is never shown).
    #[error("invalid secret value: {detail}")]
    InvalidValue { detail: &'static str },
    /// A binding is not acceptable.
    #[error("invalid binding: {field}: {detail}")]
    InvalidBinding { field: &'static str, detail: String },
    /// The storage failed.
    #[error("cannot {what}: {source}")]
    Store {
        what: &'static str,
        source: Box<airlock_store::StoreError>,
    },
    /// The system random generator failed.
    #[error("system random generator failed")]
    Random,
    /// An AEAD operation failed where it cannot (key setup, sealing).
    #[error("cryptographic failure: {what}")]
    Crypto { what: &'static str },
    /// A run already holds handles.
    #[error("run {run} already has credential handles")]
    RunExists { run: RunId },
}

/// Binding and name checks live in the broker; the vault reports them as its
/// own, with the same variants and messages.
impl From<airlock_broker::BrokerError> for VaultError {
    fn from(e: airlock_broker::BrokerError) -> VaultError {
        use airlock_broker::BrokerError as B;
        match e {
            B::InvalidName { name } => VaultError::InvalidName { name },
            B::InvalidValue { detail } => VaultError::InvalidValue { detail },
            B::InvalidBinding { field, detail } => VaultError::InvalidBinding { field, detail },
            B::Random => VaultError::Random,
            B::RunExists { run } => VaultError::RunExists { run },
        }
    }
}

#[cfg(test)]
mod tests;
