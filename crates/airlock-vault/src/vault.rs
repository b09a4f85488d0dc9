//! The vault: envelope encryption over a [`SecretStore`].
//!
//! master key (KEK) ──wraps──▶ tenant data key ──seals──▶ each secret value.

use crate::VaultError;
use crate::crypto::{self, KEY_LEN, Key, MASTER_CHECK};
use crate::keysource::{KdfParams, KeySource, Lock, MasterKey};
use airlock_broker::{Binding, Grant, validate_name, validate_value};
use airlock_store::{DataKeyRow, MasterRow, SecretRow, SecretStore};
use airlock_types::{Secret, TenantId, Timestamp};

/// A secret's clear-text description: what `airlock secret list` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretInfo {
    /// Its name.
    pub name: String,
    /// How many times it has been set.
    pub version: u32,
    /// Where and how it may be used.
    pub binding: Binding,
    /// When it last changed.
    pub updated_at: Timestamp,
}

/// What [`Vault::set`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetOutcome {
    /// The secret's new version (1 when it was created).
    pub version: u32,
    /// Whether an earlier version was replaced.
    pub replaced: bool,
}

/// How the vault in `store` is locked: tells the caller which key source to
/// use (for example, whether to prompt for a passphrase). Needs no key.
pub fn lock_state<S: SecretStore>(store: &S) -> Result<Lock, VaultError> {
    let row = store
        .vault_master()
        .map_err(store_err("read the vault master record"))?;
    Ok(match row {
        None => Lock::New,
        Some(MasterRow { kdf: None, .. }) => Lock::RawKey,
        Some(MasterRow {
            kdf: Some(json), ..
        }) => Lock::Passphrase(KdfParams::from_json(&json)?),
    })
}

/// The tenant's secrets, names and bindings only, ordered by name. Needs no key.
pub fn list_secrets<S: SecretStore>(
    store: &S,
    tenant: &TenantId,
) -> Result<Vec<SecretInfo>, VaultError> {
    let rows = store.secrets(tenant).map_err(store_err("list secrets"))?;
    rows.into_iter()
        .map(|r| {
            Ok(SecretInfo {
                binding: parse_binding(&r.name, &r.binding)?,
                name: r.name,
                version: r.version,
                updated_at: Timestamp(r.updated_at),
            })
        })
        .collect()
}

/// Remove a secret. Returns whether it existed. Needs no key.
pub fn remove_secret<S: SecretStore>(
    store: &mut S,
    tenant: &TenantId,
    name: &str,
) -> Result<bool, VaultError> {
    validate_name(name)?;
    store
        .delete_secret(tenant, name)
        .map_err(store_err("remove the secret"))
}

fn store_err(what: &'static str) -> impl FnOnce(airlock_store::StoreError) -> VaultError {
    move |source| VaultError::Store {
        what,
        source: Box::new(source),
    }
}

fn parse_binding(name: &str, json: &str) -> Result<Binding, VaultError> {
    let b: Binding = serde_json::from_str(json).map_err(|e| VaultError::CorruptBinding {
        name: name.to_owned(),
        detail: e.to_string(),
    })?;
    b.validate().map_err(|e| VaultError::CorruptBinding {
        name: name.to_owned(),
        detail: e.to_string(),
    })?;
    Ok(b)
}

/// An unlocked vault.
#[derive(Debug)]
pub struct Vault<S: SecretStore> {
    store: S,
    master: Key,
    check: Vec<u8>,
    source: String,
}

impl<S: SecretStore> Vault<S> {
    /// Unlock the vault in `store` with `source`. A vault that does not exist
    /// yet is created, locked by this source. The wrong key is
    /// [`VaultError::WrongMasterKey`], never garbage.
    pub fn unlock(mut store: S, source: &dyn KeySource) -> Result<Vault<S>, VaultError> {
        let lock = lock_state(&store)?;
        let MasterKey { key, kdf } = source.master_key(&lock)?;
        let row = match store
            .vault_master()
            .map_err(store_err("read the vault master record"))?
        {
            Some(row) => row,
            None => {
                let row = MasterRow {
                    kdf: kdf.as_ref().map(KdfParams::to_json),
                    check: key.seal(&crypto::master_check_aad(), MASTER_CHECK)?,
                };
                store
                    .create_vault_master(&row)
                    .map_err(store_err("create the vault"))?;
                // Another process may have won the race: check against what is stored.
                store
                    .vault_master()
                    .map_err(store_err("read the vault master record"))?
                    .ok_or(VaultError::Crypto {
                        what: "vault master record vanished",
                    })?
            }
        };
        match key.open(&crypto::master_check_aad(), &row.check) {
            Some(v) if v.as_slice() == MASTER_CHECK => {}
            _ => {
                return Err(VaultError::WrongMasterKey {
                    source_desc: source.describe(),
                });
            }
        }
        Ok(Vault {
            store,
            master: key,
            check: row.check,
            source: source.describe(),
        })
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The underlying store, mutably (for key-less operations such as
    /// [`remove_secret`]).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// What unlocked this vault.
    pub fn source(&self) -> &str {
        &self.source
    }

    fn unwrap_data_key(&self, tenant: &TenantId, row: &DataKeyRow) -> Result<Key, VaultError> {
        let bytes = self
            .master
            .open(&crypto::data_key_aad(tenant, row.version), &row.wrapped)
            .ok_or_else(|| VaultError::CorruptDataKey {
                tenant: tenant.clone(),
            })?;
        let arr: [u8; KEY_LEN] =
            bytes
                .as_slice()
                .try_into()
                .map_err(|_| VaultError::CorruptDataKey {
                    tenant: tenant.clone(),
                })?;
        Ok(Key::from_bytes(arr))
    }

    fn new_data_key(
        &self,
        tenant: &TenantId,
        version: u32,
    ) -> Result<(Key, DataKeyRow), VaultError> {
        let key = Key::generate()?;
        let wrapped = self
            .master
            .seal(&crypto::data_key_aad(tenant, version), key.bytes())?;
        Ok((key, DataKeyRow { version, wrapped }))
    }

    /// The tenant's data key and its version; created when `create` and missing.
    fn data_key(
        &mut self,
        tenant: &TenantId,
        create: bool,
    ) -> Result<Option<(Key, u32)>, VaultError> {
        let read = |s: &S| s.data_key(tenant).map_err(store_err("read the data key"));
        let row = match read(&self.store)? {
            Some(r) => r,
            None if !create => return Ok(None),
            None => {
                let (_, row) = self.new_data_key(tenant, 1)?;
                self.store
                    .create_data_key(tenant, &row)
                    .map_err(store_err("create the data key"))?;
                read(&self.store)?.ok_or(VaultError::Crypto {
                    what: "data key vanished",
                })?
            }
        };
        Ok(Some((self.unwrap_data_key(tenant, &row)?, row.version)))
    }

    /// Store (or replace) a secret with its binding. The value is sealed
    /// under the tenant's data key; the binding is bound into the seal.
    pub fn set(
        &mut self,
        tenant: &TenantId,
        name: &str,
        value: &Secret<String>,
        binding: &Binding,
    ) -> Result<SetOutcome, VaultError> {
        validate_name(name)?;
        validate_value(value.expose())?;
        binding.validate()?;
        let (dk, key_version) = self.data_key(tenant, true)?.ok_or(VaultError::Crypto {
            what: "no data key",
        })?;
        let prev = self
            .store
            .secret(tenant, name)
            .map_err(store_err("read the secret"))?;
        let version = prev
            .as_ref()
            .map(|r| r.version.saturating_add(1))
            .unwrap_or(1);
        let binding_json = serde_json::to_string(binding).expect("invariant: Binding serializes");
        let sealed = dk.seal(
            &crypto::secret_aad(tenant, name, version, key_version, &binding_json),
            value.expose().as_bytes(),
        )?;
        let row = SecretRow {
            name: name.to_owned(),
            version,
            key_version,
            binding: binding_json,
            sealed,
            updated_at: Timestamp::now().as_micros(),
        };
        self.store
            .put_secret(tenant, &row)
            .map_err(store_err("store the secret"))?;
        Ok(SetOutcome {
            version,
            replaced: prev.is_some(),
        })
    }

    fn open_row(
        &self,
        tenant: &TenantId,
        dk: &Key,
        row: &SecretRow,
    ) -> Result<Secret<String>, VaultError> {
        let corrupt = || VaultError::Decrypt {
            tenant: tenant.clone(),
            name: row.name.clone(),
        };
        let aad = crypto::secret_aad(
            tenant,
            &row.name,
            row.version,
            row.key_version,
            &row.binding,
        );
        let mut plain = dk.open(&aad, &row.sealed).ok_or_else(corrupt)?;
        let value = String::from_utf8(std::mem::take(&mut *plain)).map_err(|e| {
            let mut bytes = e.into_bytes();
            zeroize::Zeroize::zeroize(&mut bytes);
            corrupt()
        })?;
        Ok(Secret::new(value))
    }

    /// Read and decrypt one secret with its binding.
    pub fn get(
        &mut self,
        tenant: &TenantId,
        name: &str,
    ) -> Result<(Secret<String>, Binding), VaultError> {
        validate_name(name)?;
        let row = self
            .store
            .secret(tenant, name)
            .map_err(store_err("read the secret"))?
            .ok_or_else(|| VaultError::NotFound {
                tenant: tenant.clone(),
                name: name.to_owned(),
            })?;
        let (dk, key_version) =
            self.data_key(tenant, false)?
                .ok_or_else(|| VaultError::CorruptDataKey {
                    tenant: tenant.clone(),
                })?;
        if key_version != row.key_version {
            return Err(VaultError::Decrypt {
                tenant: tenant.clone(),
                name: name.to_owned(),
            });
        }
        let value = self.open_row(tenant, &dk, &row)?;
        let binding = parse_binding(name, &row.binding)?;
        Ok((value, binding))
    }

    /// A grant of one secret, for the broker (`airlock_broker::Broker`) to mint a handle for.
    pub fn grant(&mut self, tenant: &TenantId, name: &str) -> Result<Grant, VaultError> {
        let (value, binding) = self.get(tenant, name)?;
        Ok(Grant::new(name, binding, value))
    }

    /// Grants for the secrets a run may use, in the order given. Fails on
    /// the first name that is missing or does not decrypt, naming it, so a
    /// run never starts with fewer credentials than its policy grants.
    pub fn grants(&mut self, tenant: &TenantId, names: &[&str]) -> Result<Vec<Grant>, VaultError> {
        names.iter().map(|n| self.grant(tenant, n)).collect()
    }

    /// Re-wrap every tenant's data key under a new master key from `new`,
    /// in one transaction. Secrets are not re-encrypted. Returns how many
    /// data keys were re-wrapped.
    pub fn rotate_master(&mut self, new: &dyn KeySource) -> Result<usize, VaultError> {
        let MasterKey { key: new_key, kdf } = new.master_key(&Lock::New)?;
        let rows = self
            .store
            .all_data_keys()
            .map_err(store_err("read the data keys"))?;
        let mut rewrapped = Vec::with_capacity(rows.len());
        for (tenant, row) in rows {
            let dk = self.unwrap_data_key(&tenant, &row)?;
            let wrapped = new_key.seal(&crypto::data_key_aad(&tenant, row.version), dk.bytes())?;
            rewrapped.push((
                tenant,
                DataKeyRow {
                    version: row.version,
                    wrapped,
                },
            ));
        }
        let master = MasterRow {
            kdf: kdf.as_ref().map(KdfParams::to_json),
            check: new_key.seal(&crypto::master_check_aad(), MASTER_CHECK)?,
        };
        self.store
            .replace_master(&self.check, &master, &rewrapped)
            .map_err(store_err("rotate the master key"))?;
        self.master = new_key;
        self.check = master.check;
        self.source = new.describe();
        Ok(rewrapped.len())
    }

    /// Replace the tenant's data key and re-encrypt all its secrets under the
    /// new one, in one transaction. Returns how many secrets were re-encrypted.
    pub fn reencrypt(&mut self, tenant: &TenantId) -> Result<usize, VaultError> {
        let Some((old, old_version)) = self.data_key(tenant, false)? else {
            return Ok(0);
        };
        let new_version = old_version.checked_add(1).ok_or(VaultError::Crypto {
            what: "data key version overflow",
        })?;
        let (new_key, new_row) = self.new_data_key(tenant, new_version)?;
        let rows = self
            .store
            .secrets(tenant)
            .map_err(store_err("read the secrets"))?;
        let mut resealed = Vec::with_capacity(rows.len());
        for row in rows {
            if row.key_version != old_version {
                return Err(VaultError::Decrypt {
                    tenant: tenant.clone(),
                    name: row.name.clone(),
                });
            }
            let value = self.open_row(tenant, &old, &row)?;
            let aad = crypto::secret_aad(tenant, &row.name, row.version, new_version, &row.binding);
            let sealed = new_key.seal(&aad, value.expose().as_bytes())?;
            resealed.push(SecretRow {
                key_version: new_version,
                sealed,
                ..row
            });
        }
        self.store
            .replace_data_key(tenant, old_version, &new_row, &resealed)
            .map_err(store_err("replace the data key"))?;
        Ok(resealed.len())
    }
}
