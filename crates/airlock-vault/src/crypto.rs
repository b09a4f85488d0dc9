//! AES-256-GCM sealing with aws-lc-rs, and the associated-data layouts.
//!
//! A sealed blob is `nonce (12) || ciphertext || tag (16)`. Every nonce is
//! fresh from the system random generator: with at most a few million
//! seals per key, the birthday bound of 96-bit random nonces stays far below
//! the 2^-32 collision budget NIST sets.

use crate::VaultError;
use airlock_types::{Secret, TenantId};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use zeroize::Zeroizing;

/// Length of an AES-256 key.
pub const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;

/// A 256-bit symmetric key, zeroized on drop and never printed.
pub(crate) struct Key(Secret<[u8; KEY_LEN]>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key([REDACTED])")
    }
}

impl Key {
    pub(crate) fn from_bytes(bytes: [u8; KEY_LEN]) -> Key {
        Key(Secret::new(bytes))
    }

    /// A fresh random key.
    pub(crate) fn generate() -> Result<Key, VaultError> {
        let mut k = [0u8; KEY_LEN];
        random(&mut k)?;
        let key = Key::from_bytes(k);
        zeroize::Zeroize::zeroize(&mut k);
        Ok(key)
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        self.0.expose()
    }

    fn aead(&self) -> Result<LessSafeKey, VaultError> {
        let unbound = UnboundKey::new(&AES_256_GCM, self.bytes())
            .map_err(|_| VaultError::Crypto { what: "key setup" })?;
        Ok(LessSafeKey::new(unbound))
    }

    /// Seal `plaintext` with a fresh random nonce, binding `aad`.
    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
        let mut nonce = [0u8; NONCE_LEN];
        random(&mut nonce)?;
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .aead()?
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut out[NONCE_LEN..],
            )
            .map_err(|_| VaultError::Crypto { what: "seal" })?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Open a sealed blob. `None` when the blob, the key or the associated
    /// data do not match: the caller turns that into an error naming what.
    pub(crate) fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = Zeroizing::new(body.to_vec());
        let n = self
            .aead()
            .ok()?
            .open_in_place(nonce, Aad::from(aad), &mut buf[..])
            .ok()?
            .len();
        buf.truncate(n);
        Some(buf)
    }
}

/// Fill `buf` from the system random generator.
pub(crate) fn random(buf: &mut [u8]) -> Result<(), VaultError> {
    aws_lc_rs::rand::fill(buf).map_err(|_| VaultError::Random)
}

/// Associated data: a domain tag, then each part length-prefixed, so no two
/// different (tenant, name, ...) tuples encode alike.
fn aad(domain: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(domain.as_bytes());
    for p in parts {
        out.extend_from_slice(&u32::try_from(p.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// The plaintext of the master-key check value.
pub(crate) const MASTER_CHECK: &[u8] = b"airlock-vault master key check v1";

pub(crate) fn master_check_aad() -> Vec<u8> {
    aad("airlock-vault/1/master-check", &[])
}

pub(crate) fn data_key_aad(tenant: &TenantId, version: u32) -> Vec<u8> {
    aad(
        "airlock-vault/1/data-key",
        &[tenant.as_str().as_bytes(), &version.to_be_bytes()],
    )
}

/// A secret's value is bound to its tenant, name, version, data key version
/// and binding: moving a ciphertext to another row, or editing the clear-text
/// binding (say, to add an attacker's host), makes it fail to open.
pub(crate) fn secret_aad(
    tenant: &TenantId,
    name: &str,
    version: u32,
    key_version: u32,
    binding: &str,
) -> Vec<u8> {
    aad(
        "airlock-vault/1/secret",
        &[
            tenant.as_str().as_bytes(),
            name.as_bytes(),
            &version.to_be_bytes(),
            &key_version.to_be_bytes(),
            binding.as_bytes(),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_every_tamper_fails() {
        let k = Key::generate().expect("key");
        let sealed = k.seal(b"ad", b"hello").expect("seal");
        assert_eq!(sealed.len(), NONCE_LEN + 5 + TAG_LEN);
        assert_eq!(
            k.open(b"ad", &sealed).as_deref().map(|v| v.as_slice()),
            Some(&b"hello"[..])
        );
        // Two seals of the same plaintext differ (fresh nonce).
        assert_ne!(k.seal(b"ad", b"hello").expect("seal"), sealed);
        for i in 0..sealed.len() {
            for bit in 0..8 {
                let mut t = sealed.clone();
                t[i] ^= 1 << bit;
                assert!(
                    k.open(b"ad", &t).is_none(),
                    "flipped bit {bit} of byte {i} was accepted"
                );
            }
        }
        assert!(k.open(b"other", &sealed).is_none());
        assert!(Key::generate().expect("key").open(b"ad", &sealed).is_none());
        assert!(k.open(b"ad", &sealed[..20]).is_none());
        assert!(k.open(b"ad", &[]).is_none());
    }

    #[test]
    fn aad_parts_cannot_be_shifted() {
        let t = TenantId::default_tenant();
        assert_ne!(
            secret_aad(&t, "AB", 1, 1, "C"),
            secret_aad(&t, "A", 1, 1, "BC")
        );
    }
}
