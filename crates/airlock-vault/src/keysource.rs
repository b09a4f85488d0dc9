//! Where the master key-encryption key comes from.
//!
//! Three sources today — a key file, a raw key in the environment, a
//! passphrase stretched with Argon2id — behind the [`KeySource`] trait, so a
//! KMS or HSM backend can be added without touching the vault.

use crate::VaultError;
use crate::crypto::{KEY_LEN, Key};
use airlock_types::Secret;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use zeroize::{Zeroize, Zeroizing};

/// The environment variable holding a raw master key (32 bytes, base64 or hex).
pub const ENV_MASTER_KEY: &str = "AIRLOCK_MASTER_KEY";
/// The environment variable holding the vault passphrase.
pub const ENV_PASSPHRASE: &str = "AIRLOCK_PASSPHRASE";
/// The master key shown in the documentation. Production mode refuses it.
pub const EXAMPLE_MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// How an existing vault is locked, so the caller knows which source to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lock {
    /// No vault yet: the source creates the key (and, for a passphrase, fresh
    /// KDF parameters).
    New,
    /// The vault uses a raw 256-bit key (key file, environment, KMS).
    RawKey,
    /// The vault uses a passphrase with these stored parameters.
    Passphrase(KdfParams),
}

/// Argon2id parameters, stored with the salt in the vault's master record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfParams {
    /// Always `"argon2id"`.
    pub alg: String,
    /// Argon2 version (0x13 = 19).
    pub version: u32,
    /// Memory cost in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Lanes.
    pub p: u32,
    /// Random salt, standard base64.
    pub salt: String,
}

impl KdfParams {
    /// Default cost: 64 MiB, 3 passes, 1 lane (RFC 9106's second recommended
    /// setting with one lane, since we compute single-threaded). See
    /// `bench/RESULTS.md` (## Vault) for the unlock time this costs.
    pub const DEFAULT_M_KIB: u32 = 64 * 1024;
    /// Default iterations.
    pub const DEFAULT_T: u32 = 3;
    /// Default lanes.
    pub const DEFAULT_P: u32 = 1;

    /// Fresh parameters with a random 16-byte salt and the given cost.
    pub fn generate(m_kib: u32, t: u32, p: u32) -> Result<KdfParams, VaultError> {
        let mut salt = [0u8; 16];
        crate::crypto::random(&mut salt)?;
        let params = KdfParams {
            alg: "argon2id".into(),
            version: 0x13,
            m_kib,
            t,
            p,
            salt: base64::engine::general_purpose::STANDARD.encode(salt),
        };
        params.argon2()?;
        Ok(params)
    }

    /// Fresh parameters at the default cost.
    pub fn generate_default() -> Result<KdfParams, VaultError> {
        Self::generate(Self::DEFAULT_M_KIB, Self::DEFAULT_T, Self::DEFAULT_P)
    }

    /// Parse the stored JSON. Bounds keep a tampered record from asking for
    /// 100 GiB of memory.
    pub fn from_json(s: &str) -> Result<KdfParams, VaultError> {
        let p: KdfParams = serde_json::from_str(s).map_err(|e| VaultError::BadKdfParams {
            detail: format!("not valid JSON: {e}"),
        })?;
        p.argon2()?;
        Ok(p)
    }

    /// The JSON stored in the vault.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("invariant: KdfParams serializes")
    }

    fn salt_bytes(&self) -> Result<Vec<u8>, VaultError> {
        let salt = base64::engine::general_purpose::STANDARD
            .decode(&self.salt)
            .map_err(|_| VaultError::BadKdfParams {
                detail: "salt is not base64".into(),
            })?;
        if !(16..=64).contains(&salt.len()) {
            return Err(VaultError::BadKdfParams {
                detail: format!("salt must be 16-64 bytes, got {}", salt.len()),
            });
        }
        Ok(salt)
    }

    fn argon2(&self) -> Result<argon2::Argon2<'static>, VaultError> {
        let bad = |detail: String| VaultError::BadKdfParams { detail };
        if self.alg != "argon2id" {
            return Err(bad(format!(
                "unknown algorithm {:?} (expected \"argon2id\")",
                self.alg
            )));
        }
        if self.version != 0x13 {
            return Err(bad(format!("unknown Argon2 version {}", self.version)));
        }
        if !(8 * 1024..=1024 * 1024).contains(&self.m_kib)
            || !(1..=16).contains(&self.t)
            || !(1..=16).contains(&self.p)
        {
            return Err(bad(format!(
                "cost out of bounds (m_kib={} t={} p={}; allowed 8192-1048576, 1-16, 1-16)",
                self.m_kib, self.t, self.p
            )));
        }
        self.salt_bytes()?;
        let params = argon2::Params::new(self.m_kib, self.t, self.p, Some(KEY_LEN))
            .map_err(|e| bad(e.to_string()))?;
        Ok(argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            params,
        ))
    }

    /// Stretch a passphrase into a key.
    pub(crate) fn derive(&self, passphrase: &[u8]) -> Result<Key, VaultError> {
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        self.argon2()?
            .hash_password_into(passphrase, &self.salt_bytes()?, &mut out[..])
            .map_err(|e| VaultError::Kdf {
                detail: e.to_string(),
            })?;
        Ok(Key::from_bytes(*out))
    }
}

/// A master key as produced by a [`KeySource`], with the KDF parameters to
/// store when it came from a passphrase.
#[derive(Debug)]
pub struct MasterKey {
    pub(crate) key: Key,
    pub(crate) kdf: Option<KdfParams>,
}

/// A source of the master key-encryption key. Implement this for a KMS or
/// HSM: return a 256-bit key (or unwrap one remotely) for the vault's lock.
pub trait KeySource: std::fmt::Debug {
    /// What this source is, for messages: `key file /x/keys/master.key`.
    fn describe(&self) -> String;
    /// Produce the master key for a vault locked as `lock`. A source that
    /// cannot serve that kind of lock returns [`VaultError::WrongKeyKind`].
    fn master_key(&self, lock: &Lock) -> Result<MasterKey, VaultError>;
}

/// Parse a raw master key written as base64 (standard or URL-safe, padding
/// optional) or hex: it must be exactly 32 bytes.
pub fn parse_master_key(text: &str, origin: &str) -> Result<Secret<[u8; KEY_LEN]>, VaultError> {
    let t = text.trim();
    let malformed = || VaultError::MalformedKey {
        origin: origin.to_owned(),
        detail: "must be 32 bytes written as base64 (44 characters) or hex (64 characters)",
    };
    let mut bytes: Zeroizing<Vec<u8>> =
        if t.len() == 2 * KEY_LEN && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            Zeroizing::new(hex::decode(t).map_err(|_| malformed())?)
        } else {
            use base64::engine::general_purpose::{
                STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
            };
            let decoded = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
                .iter()
                .find_map(|e| e.decode(t).ok());
            Zeroizing::new(decoded.ok_or_else(malformed)?)
        };
    let arr: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| malformed())?;
    bytes.zeroize();
    Ok(Secret::new(arr))
}

/// True for keys nobody should use: the documented example, all bytes equal,
/// or a counting sequence. Production mode refuses them.
pub fn is_weak_master_key(key: &[u8; KEY_LEN]) -> bool {
    let all_same = key.iter().all(|b| *b == key[0]);
    let counting = key.windows(2).all(|w| w[1] == w[0].wrapping_add(1));
    let example = parse_master_key(EXAMPLE_MASTER_KEY, "example")
        .map(|k| k.expose() == key)
        .unwrap_or(false);
    all_same || counting || example
}

/// A 32-byte key in a file (base64), by default `<data-dir>/keys/master.key`,
/// mode 0600.
#[derive(Debug, Clone)]
pub struct KeyFile {
    path: PathBuf,
}

impl KeyFile {
    /// The key file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> KeyFile {
        KeyFile { path: path.into() }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Create the file with a fresh random key (mode 0600, synced). Returns
    /// `false` and leaves the file alone when it already exists.
    pub fn create(&self) -> Result<bool, VaultError> {
        let key = Key::generate()?;
        write_key_file(&self.path, &key, false)
    }

    /// Read and parse the key.
    pub fn read(&self) -> Result<Secret<[u8; KEY_LEN]>, VaultError> {
        // A regular file of at most 4 KiB (the key is 64 hex digits): a path
        // to `/dev/zero` or a FIFO is refused at once.
        let read_err = |source| VaultError::ReadKeyFile {
            path: self.path.clone(),
            source,
        };
        let bytes =
            Zeroizing::new(airlock_store::read_limited(&self.path, 4096).map_err(read_err)?);
        let text = std::str::from_utf8(&bytes).map_err(|_| {
            read_err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "not UTF-8 text",
            ))
        })?;
        parse_master_key(text, &self.path.display().to_string())
    }

    /// The file's permission bits, to check it is not readable by others.
    pub fn mode(&self) -> Result<u32, VaultError> {
        let m = std::fs::metadata(&self.path).map_err(|source| VaultError::ReadKeyFile {
            path: self.path.clone(),
            source,
        })?;
        Ok(m.permissions().mode() & 0o7777)
    }
}

/// Write a key as base64 to `path` with mode 0600 and fsync it. With
/// `replace`, an existing file is overwritten.
pub(crate) fn write_key_file(path: &Path, key: &Key, replace: bool) -> Result<bool, VaultError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).mode(0o600);
    if replace {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let mut f = match opts.open(path) {
        Ok(f) => f,
        Err(e) if !replace && e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(source) => {
            return Err(VaultError::WriteKeyFile {
                path: path.to_owned(),
                source,
            });
        }
    };
    let mut text = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(key.bytes()));
    text.push('\n');
    f.write_all(text.as_bytes())
        .and_then(|()| f.set_permissions(std::fs::Permissions::from_mode(0o600)))
        .and_then(|()| f.sync_all())
        .map_err(|source| VaultError::WriteKeyFile {
            path: path.to_owned(),
            source,
        })?;
    Ok(true)
}

impl KeySource for KeyFile {
    fn describe(&self) -> String {
        format!("key file {}", self.path.display())
    }

    fn master_key(&self, lock: &Lock) -> Result<MasterKey, VaultError> {
        if matches!(lock, Lock::Passphrase(_)) {
            return Err(VaultError::WrongKeyKind {
                source_desc: self.describe(),
                lock: "a passphrase",
            });
        }
        let k = self.read()?;
        Ok(MasterKey {
            key: Key::from_bytes(*k.expose()),
            kdf: None,
        })
    }
}

/// A raw 32-byte key handed over directly (from `AIRLOCK_MASTER_KEY`, or a
/// key a KMS unwrapped).
#[derive(Debug)]
pub struct RawKey {
    origin: String,
    key: Secret<[u8; KEY_LEN]>,
}

impl RawKey {
    /// Parse `text` (base64 or hex); `origin` names where it came from.
    pub fn parse(text: &Secret<String>, origin: &str) -> Result<RawKey, VaultError> {
        Ok(RawKey {
            origin: origin.to_owned(),
            key: parse_master_key(text.expose(), origin)?,
        })
    }

    /// A fresh random key (for `airlock keys rotate`), written out by the caller.
    pub fn generate(origin: &str) -> Result<RawKey, VaultError> {
        let k = Key::generate()?;
        Ok(RawKey {
            origin: origin.to_owned(),
            key: Secret::new(*k.bytes()),
        })
    }

    /// Write this key to a key file (mode 0600, replacing any file there).
    pub fn write_to(&self, path: &Path) -> Result<(), VaultError> {
        write_key_file(path, &Key::from_bytes(*self.key.expose()), true).map(|_| ())
    }

    /// True for a key production mode refuses (see [`is_weak_master_key`]).
    pub fn is_weak(&self) -> bool {
        is_weak_master_key(self.key.expose())
    }
}

impl KeySource for RawKey {
    fn describe(&self) -> String {
        self.origin.clone()
    }

    fn master_key(&self, lock: &Lock) -> Result<MasterKey, VaultError> {
        if matches!(lock, Lock::Passphrase(_)) {
            return Err(VaultError::WrongKeyKind {
                source_desc: self.describe(),
                lock: "a passphrase",
            });
        }
        Ok(MasterKey {
            key: Key::from_bytes(*self.key.expose()),
            kdf: None,
        })
    }
}

/// A passphrase, stretched with Argon2id. For a new vault, fresh parameters
/// (random salt, [`KdfParams::generate_default`] cost unless overridden) are
/// created and stored.
#[derive(Debug)]
pub struct Passphrase {
    origin: String,
    pass: Secret<String>,
    new_params: Option<KdfParams>,
}

impl Passphrase {
    /// A passphrase from `origin` (`AIRLOCK_PASSPHRASE`, `terminal prompt`).
    /// An empty passphrase is refused.
    pub fn new(pass: Secret<String>, origin: &str) -> Result<Passphrase, VaultError> {
        if pass.expose().is_empty() {
            return Err(VaultError::MalformedKey {
                origin: origin.to_owned(),
                detail: "passphrase is empty",
            });
        }
        Ok(Passphrase {
            origin: origin.to_owned(),
            pass,
            new_params: None,
        })
    }

    /// Use these parameters when this passphrase creates a vault or becomes
    /// its new passphrase (tests use a cheaper cost).
    pub fn with_new_params(mut self, params: KdfParams) -> Passphrase {
        self.new_params = Some(params);
        self
    }

    /// Length in characters, for production checks.
    pub fn len(&self) -> usize {
        self.pass.expose().chars().count()
    }

    /// Never true: [`Passphrase::new`] refuses an empty passphrase.
    pub fn is_empty(&self) -> bool {
        self.pass.expose().is_empty()
    }
}

impl KeySource for Passphrase {
    fn describe(&self) -> String {
        format!("passphrase from {}", self.origin)
    }

    fn master_key(&self, lock: &Lock) -> Result<MasterKey, VaultError> {
        let params = match lock {
            Lock::Passphrase(p) => p.clone(),
            Lock::New => match &self.new_params {
                Some(p) => p.clone(),
                None => KdfParams::generate_default()?,
            },
            Lock::RawKey => {
                return Err(VaultError::WrongKeyKind {
                    source_desc: self.describe(),
                    lock: "a raw key (key file or AIRLOCK_MASTER_KEY)",
                });
            }
        };
        let key = params.derive(self.pass.expose().as_bytes())?;
        Ok(MasterKey {
            key,
            kdf: Some(params),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_keys_parse_as_base64_or_hex_and_nothing_else() {
        let hex64 = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        assert_eq!(parse_master_key(hex64, "t").expect("hex").expose()[1], 0x11);
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert_eq!(
            parse_master_key(&format!(" {b64}\n"), "t")
                .expect("b64")
                .expose(),
            &[7u8; 32]
        );
        for bad in [
            "",
            "short",
            &hex64[..62],
            &base64::engine::general_purpose::STANDARD.encode([7u8; 31]),
        ] {
            let e = parse_master_key(bad, "AIRLOCK_MASTER_KEY")
                .expect_err("must fail")
                .to_string();
            assert_eq!(
                e,
                "AIRLOCK_MASTER_KEY: malformed master key: must be 32 bytes written as base64 (44 characters) or hex (64 characters)"
            );
        }
    }

    #[test]
    fn weak_keys_are_recognised() {
        assert!(is_weak_master_key(&[0u8; 32]));
        assert!(is_weak_master_key(
            parse_master_key(EXAMPLE_MASTER_KEY, "x")
                .expect("ex")
                .expose()
        ));
        let mut k = [0u8; 32];
        crate::crypto::random(&mut k).expect("rand");
        assert!(!is_weak_master_key(&k));
    }

    #[test]
    fn key_file_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kf = KeyFile::new(dir.path().join("master.key"));
        assert!(kf.create().expect("create"));
        let first = kf.read().expect("read");
        assert!(!kf.create().expect("create again"));
        assert_eq!(kf.read().expect("read").expose(), first.expose());
        assert_eq!(kf.mode().expect("mode"), 0o600);
    }

    #[test]
    fn kdf_params_are_bounded() {
        let p = KdfParams::generate(8 * 1024, 1, 1).expect("params");
        assert_eq!(KdfParams::from_json(&p.to_json()).expect("parse"), p);
        let huge = KdfParams {
            m_kib: u32::MAX,
            ..p.clone()
        };
        assert!(
            KdfParams::from_json(&huge.to_json())
                .expect_err("must fail")
                .to_string()
                .contains("cost out of bounds")
        );
        let weak_salt = KdfParams {
            salt: "AAAA".into(),
            ..p
        };
        assert!(
            KdfParams::from_json(&weak_salt.to_json())
                .expect_err("must fail")
                .to_string()
                .contains("salt must be 16-64 bytes")
        );
    }
}
