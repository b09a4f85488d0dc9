//! Airlock's secrets boundary: the encrypted vault and the credential broker.
//!
//! **What it enforces.** Secret values exist in clear only in memory, inside
//! [`Secret`](airlock_types::Secret) (zeroized, never printed). At rest they
//! are sealed with AES-256-GCM (aws-lc-rs) in an envelope: a master
//! key-encryption key from a [`KeySource`] (key file, `AIRLOCK_MASTER_KEY`,
//! or an Argon2id-stretched passphrase) wraps one data key per tenant, which
//! seals each secret with a fresh random 96-bit nonce and associated data
//! binding tenant, name, version, data-key version and the clear-text
//! binding. A flipped bit, a row moved to another name, an edited binding or
//! the wrong master key is an error, never garbage. The [`Broker`] gives a
//! run opaque handles (`alh_` + 200 random bits) instead of values, and
//! redeems one only for a destination inside every caveat of its binding
//! (HTTPS, host and port, method, path) and of the run (expiry, uses), until
//! the run ends, and only where the binding places the value: one header
//! (with its format), the password of Basic credentials in one header, or
//! one query parameter. A handle anywhere else is refused
//! (`credential_wrong_location`). Every swap is reported as a [`Use`] (secret
//! name and place, never the value) for the caller to audit.
//!
//! **What it trusts.** aws-lc-rs and the `argon2` crate; the system random
//! generator; the caller to hand [`Broker`] the *real* destination (the
//! proxy's pinned connection, not what the agent wrote); the storage to
//! return what was stored (tampering is detected, not prevented).
//!
//! **What it does NOT guarantee.** It does not protect values from a process
//! that can read Airlock's memory, nor the master key from anyone who can
//! read the key file or the environment. A rolled-back database (an older
//! but authentic row) is not detected. Handles are bearer tokens for this
//! broker: anyone inside the run's sandbox may use them within their caveats.
#![forbid(unsafe_code)]

mod binding;
mod broker;
mod crypto;
mod handle;
mod keysource;
mod vault;

pub use binding::{
    Binding, DEFAULT_FORMAT, DEFAULT_HEADER, MAX_VALUE_LEN, validate_name, validate_value,
};
pub use broker::{
    Broker, Denial, Destination, Found, Grant, Injection, KnownSecret, MAX_INSPECTED_LEN,
    MintedHandle, RunGuard, RunLimits, Use,
};
pub use crypto::KEY_LEN;
pub use handle::{
    HANDLE_LEN, HANDLE_PREFIX, find_handles, is_well_formed as is_well_formed_handle,
};
pub use keysource::{
    ENV_MASTER_KEY, ENV_PASSPHRASE, EXAMPLE_MASTER_KEY, KdfParams, KeyFile, KeySource, Lock,
    MasterKey, Passphrase, RawKey, is_weak_master_key, parse_master_key,
};
pub use vault::{SecretInfo, SetOutcome, Vault, list_secrets, lock_state, remove_secret};

use airlock_types::{RunId, TenantId};
use std::path::PathBuf;

/// A vault or broker operation failed. Messages name what and where, never a
/// secret value, key or handle.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The key file could not be read.
    #[error("{}: cannot read master key file: {source}", path.display())]
    ReadKeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
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

#[cfg(test)]
mod tests;
