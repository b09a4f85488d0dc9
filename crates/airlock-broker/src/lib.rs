//! Airlock's credential broker: per-run handles instead of secret values.
//!
//! **What it enforces.** The [`Broker`] gives a run opaque handles (`alh_` +
//! 200 random bits) instead of values, and redeems one only for a
//! destination inside every caveat of its [`Binding`] (HTTPS, host and port,
//! method, path) and of the run (expiry, uses), until the run ends, and only
//! where the binding places the value: one header (with its format), the
//! password of Basic credentials in one header, or one query parameter. A
//! handle anywhere else is refused (`credential_wrong_location`). Every swap
//! is reported as a [`Use`] (secret name and place, never the value) for the
//! caller to audit. Values are held only in
//! [`Secret`](airlock_types::Secret) (zeroized, never printed).
//!
//! **What it trusts.** The caller to hand it [`Grant`]s with the real values
//! (normally `airlock-vault`, which stores and decrypts them); the caller to
//! hand [`Broker`] the *real* destination (the proxy's pinned connection, not
//! what the agent wrote); the system random generator (aws-lc-rs).
//!
//! **What it does NOT guarantee.** It stores nothing and links no storage or
//! key derivation: a broker lives and dies with its process. It does not
//! protect values from a process that can read Airlock's memory. Handles are
//! bearer tokens for this broker: anyone inside the run's sandbox may use
//! them within their caveats.
#![forbid(unsafe_code)]

mod binding;
mod broker;
mod handle;

pub use binding::{
    Binding, DEFAULT_FORMAT, DEFAULT_HEADER, MAX_VALUE_LEN, validate_name, validate_value,
};
pub use broker::{
    Broker, Denial, Destination, Found, Grant, Injection, KnownSecret, MAX_INSPECTED_LEN,
    MintedHandle, RunGuard, RunLimits, Use,
};
pub use handle::{
    HANDLE_LEN, HANDLE_PREFIX, find_handles, is_well_formed as is_well_formed_handle,
};

use airlock_types::RunId;

/// A broker operation or a binding check failed. Messages name what and
/// where, never a secret value or handle.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
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
    /// The system random generator failed.
    #[error("system random generator failed")]
    Random,
    /// A run already holds handles.
    #[error("run {run} already has credential handles")]
    RunExists { run: RunId },
}

#[cfg(test)]
mod tests;
