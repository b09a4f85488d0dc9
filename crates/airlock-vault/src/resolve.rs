//! Which master-key source a vault uses, decided from an environment the
//! caller passes in (never `std::env` here), so a server can resolve keys for
//! a tenant from its own settings and tests need no process environment.
//!
//! Order: [`ENV_MASTER_KEY`] (32 bytes, base64 or hex); for a vault locked
//! with a passphrase, [`ENV_PASSPHRASE`] or else a passphrase the caller must
//! ask for; for a new vault, [`ENV_PASSPHRASE`] if set; otherwise the key
//! file. An empty variable counts as unset.

use crate::VaultError;
use crate::keysource::{
    ENV_MASTER_KEY, ENV_PASSPHRASE, KeyFile, KeySource, Lock, Passphrase, RawKey,
};
use airlock_types::Secret;
use std::collections::HashMap;
use std::path::Path;

/// The outcome of [`resolve_key_source`].
#[derive(Debug)]
pub enum KeyResolution {
    /// Use this source.
    Source(Box<dyn KeySource>),
    /// The vault needs a passphrase and the environment has none: the caller
    /// asks for one (a terminal prompt) and builds a [`Passphrase`].
    AskPassphrase,
}

/// A variable's value, `None` when unset or empty.
pub fn env_secret(env: &HashMap<String, String>, var: &str) -> Option<Secret<String>> {
    env.get(var)
        .filter(|v| !v.is_empty())
        .map(|v| Secret::new(v.clone()))
}

/// Whether the environment supplies the master key itself (a raw key or a
/// passphrase), so no key file is needed.
pub fn env_supplies_key(env: &HashMap<String, String>) -> bool {
    env_secret(env, ENV_MASTER_KEY).is_some() || env_secret(env, ENV_PASSPHRASE).is_some()
}

/// The key source for a vault locked as `lock`, given the key file's path
/// and the environment. Fails when the raw key or passphrase in the
/// environment is malformed, or when the key file is needed and missing.
pub fn resolve_key_source(
    key_file: &Path,
    env: &HashMap<String, String>,
    lock: &Lock,
) -> Result<KeyResolution, VaultError> {
    if let Some(k) = env_secret(env, ENV_MASTER_KEY) {
        return Ok(KeyResolution::Source(Box::new(RawKey::parse(
            &k,
            ENV_MASTER_KEY,
        )?)));
    }
    let passphrase = || -> Result<KeyResolution, VaultError> {
        match env_secret(env, ENV_PASSPHRASE) {
            Some(p) => Ok(KeyResolution::Source(Box::new(Passphrase::new(
                p,
                ENV_PASSPHRASE,
            )?))),
            None => Ok(KeyResolution::AskPassphrase),
        }
    };
    match lock {
        Lock::Passphrase(_) => passphrase(),
        Lock::New if env_secret(env, ENV_PASSPHRASE).is_some() => passphrase(),
        // A future KMS lock needs its source here.
        Lock::New | Lock::RawKey => {
            if !key_file.exists() {
                return Err(VaultError::NoMasterKey {
                    path: key_file.to_owned(),
                });
            }
            Ok(KeyResolution::Source(Box::new(KeyFile::new(key_file))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn describe(r: KeyResolution) -> String {
        match r {
            KeyResolution::Source(s) => s.describe(),
            KeyResolution::AskPassphrase => "ask".to_owned(),
        }
    }

    #[test]
    fn order_raw_key_then_passphrase_then_key_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kf = dir.path().join("master.key");
        let raw = env(&[
            (ENV_MASTER_KEY, crate::EXAMPLE_MASTER_KEY),
            (ENV_PASSPHRASE, "correct horse"),
        ]);
        let got = resolve_key_source(&kf, &raw, &Lock::RawKey).expect("raw");
        assert_eq!(describe(got), ENV_MASTER_KEY);
        let pass = env(&[(ENV_MASTER_KEY, ""), (ENV_PASSPHRASE, "correct horse")]);
        let got = resolve_key_source(&kf, &pass, &Lock::New).expect("new");
        assert_eq!(describe(got), format!("passphrase from {ENV_PASSPHRASE}"));
        let none = env(&[(ENV_PASSPHRASE, "")]);
        assert!(!env_supplies_key(&none));
        let err = resolve_key_source(&kf, &none, &Lock::New).expect_err("no key file");
        assert!(matches!(err, VaultError::NoMasterKey { .. }), "{err}");
        KeyFile::new(&kf).create().expect("create");
        let got = resolve_key_source(&kf, &none, &Lock::RawKey).expect("file");
        assert_eq!(describe(got), format!("key file {}", kf.display()));
    }

    #[test]
    fn a_passphrase_vault_without_a_passphrase_asks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lock = Lock::Passphrase(crate::KdfParams::generate(8 * 1024, 1, 1).expect("params"));
        let got = resolve_key_source(&dir.path().join("k"), &env(&[]), &lock).expect("ask");
        assert_eq!(describe(got), "ask");
    }

    #[test]
    fn a_malformed_raw_key_is_an_error_without_the_value() {
        let e = env(&[(ENV_MASTER_KEY, "not-a-key-value-xyz")]);
        let err = resolve_key_source(Path::new("/nonexistent"), &e, &Lock::New).expect_err("bad");
        assert!(!err.to_string().contains("not-a-key-value-xyz"), "{err}");
    }
}
