//! Persistence of the vault (`airlock-vault`): the master-key record, one
//! wrapped data key per tenant, and the sealed secrets with their bindings.
//!
//! The store never sees a secret value or a key: it keeps opaque ciphertext
//! blobs and the clear-text names and bindings. Writes are compare-and-swap
//! against the version the caller read, so a concurrent `secret set` and
//! `secret reencrypt` cannot leave a secret sealed under a discarded key.

use crate::{DbError, SqliteStore, StoreError};
use airlock_types::TenantId;
use rusqlite::{OptionalExtension, TransactionBehavior, params};

/// The installation-wide master-key record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterRow {
    /// How the master key is derived from a passphrase (JSON), or `None` when
    /// it is a raw key (key file, environment, later a KMS).
    pub kdf: Option<String>,
    /// A fixed value sealed under the master key, to recognise the right key.
    pub check: Vec<u8>,
}

/// A tenant's data key, sealed under the master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataKeyRow {
    /// Starts at 1; goes up each time the data key is replaced.
    pub version: u32,
    /// nonce || ciphertext || tag.
    pub wrapped: Vec<u8>,
}

/// One stored secret: clear-text name and binding, sealed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRow {
    /// The secret's name (unique per tenant).
    pub name: String,
    /// Starts at 1; goes up on every `set`.
    pub version: u32,
    /// The data key version the value is sealed under.
    pub key_version: u32,
    /// The binding (hosts, header, format, ...) as JSON, in clear.
    pub binding: String,
    /// nonce || ciphertext || tag.
    pub sealed: Vec<u8>,
    /// Microseconds since the Unix epoch of the last change.
    pub updated_at: i64,
}

/// The vault's storage. Every call about secrets or data keys takes the
/// tenant; the master record and master rotation are installation-wide.
pub trait SecretStore: Send + std::fmt::Debug {
    /// The master-key record, if the vault has been initialised.
    fn vault_master(&self) -> Result<Option<MasterRow>, StoreError>;
    /// Store the master record unless one exists. Returns whether it was stored.
    fn create_vault_master(&mut self, row: &MasterRow) -> Result<bool, StoreError>;
    /// The tenant's wrapped data key, if it has one.
    fn data_key(&self, tenant: &TenantId) -> Result<Option<DataKeyRow>, StoreError>;
    /// Store the tenant's first data key unless one exists. Returns whether it was stored.
    fn create_data_key(&mut self, tenant: &TenantId, row: &DataKeyRow) -> Result<bool, StoreError>;
    /// One secret.
    fn secret(&self, tenant: &TenantId, name: &str) -> Result<Option<SecretRow>, StoreError>;
    /// All of the tenant's secrets, ordered by name.
    fn secrets(&self, tenant: &TenantId) -> Result<Vec<SecretRow>, StoreError>;
    /// Insert (when `row.version == 1`) or replace version `row.version - 1`
    /// of a secret, provided the data key it is sealed under is still the
    /// tenant's current one. Anything else is [`StoreError::VaultConflict`].
    fn put_secret(&mut self, tenant: &TenantId, row: &SecretRow) -> Result<(), StoreError>;
    /// Remove a secret. Returns whether it existed.
    fn delete_secret(&mut self, tenant: &TenantId, name: &str) -> Result<bool, StoreError>;
    /// Every tenant's wrapped data key, ordered by tenant.
    fn all_data_keys(&self) -> Result<Vec<(TenantId, DataKeyRow)>, StoreError>;
    /// Replace the master record and re-wrapped data keys in one transaction.
    /// `old_check` must still be the stored check value and `keys` must cover
    /// exactly the stored data keys at their current versions.
    fn replace_master(
        &mut self,
        old_check: &[u8],
        master: &MasterRow,
        keys: &[(TenantId, DataKeyRow)],
    ) -> Result<(), StoreError>;
    /// Replace a tenant's data key (version `old_version`) and re-sealed
    /// secrets in one transaction. `secrets` must cover exactly the stored
    /// secrets at their current versions.
    fn replace_data_key(
        &mut self,
        tenant: &TenantId,
        old_version: u32,
        key: &DataKeyRow,
        secrets: &[SecretRow],
    ) -> Result<(), StoreError>;
}

fn u32_col(v: i64) -> Result<u32, rusqlite::Error> {
    u32::try_from(v).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Integer, Box::new(e))
    })
}

fn secret_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SecretRow> {
    Ok(SecretRow {
        name: r.get(0)?,
        version: u32_col(r.get(1)?)?,
        key_version: u32_col(r.get(2)?)?,
        binding: r.get(3)?,
        sealed: r.get(4)?,
        updated_at: r.get(5)?,
    })
}

impl SqliteStore {
    fn vault_write_error(&self, what: &'static str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source: rusqlite::Error| StoreError::WriteVault {
            path: self.path().to_owned(),
            what,
            source: DbError::sqlite(source),
        }
    }

    fn vault_conflict(&self, what: &'static str) -> StoreError {
        StoreError::VaultConflict {
            path: self.path().to_owned(),
            what,
        }
    }
}

impl SecretStore for SqliteStore {
    fn vault_master(&self) -> Result<Option<MasterRow>, StoreError> {
        self.conn()
            .prepare_cached("SELECT kdf, check_v FROM vault_master WHERE id = 1")
            .and_then(|mut s| {
                s.query_row([], |r| {
                    Ok(MasterRow {
                        kdf: r.get(0)?,
                        check: r.get(1)?,
                    })
                })
                .optional()
            })
            .map_err(|e| self.read_error("vault master record", e))
    }

    fn create_vault_master(&mut self, row: &MasterRow) -> Result<bool, StoreError> {
        self.writable()?;
        let n = self
            .conn()
            .execute(
                "INSERT INTO vault_master (id, kdf, check_v) VALUES (1, ?1, ?2) ON CONFLICT (id) DO NOTHING",
                params![row.kdf, row.check],
            )
            .map_err(self.vault_write_error("vault master record"))?;
        Ok(n == 1)
    }

    fn data_key(&self, tenant: &TenantId) -> Result<Option<DataKeyRow>, StoreError> {
        self.conn()
            .prepare_cached("SELECT version, wrapped FROM vault_data_keys WHERE tenant = ?1")
            .and_then(|mut s| {
                s.query_row([tenant.as_str()], |r| {
                    Ok(DataKeyRow {
                        version: u32_col(r.get(0)?)?,
                        wrapped: r.get(1)?,
                    })
                })
                .optional()
            })
            .map_err(|e| self.read_error("vault data key", e))
    }

    fn create_data_key(&mut self, tenant: &TenantId, row: &DataKeyRow) -> Result<bool, StoreError> {
        self.writable()?;
        let n = self
            .conn()
            .execute(
                "INSERT INTO vault_data_keys (tenant, version, wrapped) VALUES (?1, ?2, ?3) ON CONFLICT (tenant) DO NOTHING",
                params![tenant.as_str(), row.version, row.wrapped],
            )
            .map_err(self.vault_write_error("vault data key"))?;
        Ok(n == 1)
    }

    fn secret(&self, tenant: &TenantId, name: &str) -> Result<Option<SecretRow>, StoreError> {
        self.conn()
            .prepare_cached(
                "SELECT name, version, key_version, binding, sealed, updated_at FROM vault_secrets
                 WHERE tenant = ?1 AND name = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![tenant.as_str(), name], secret_from_row)
                    .optional()
            })
            .map_err(|e| self.read_error("vault secret", e))
    }

    fn secrets(&self, tenant: &TenantId) -> Result<Vec<SecretRow>, StoreError> {
        self.conn()
            .prepare_cached(
                "SELECT name, version, key_version, binding, sealed, updated_at FROM vault_secrets
                 WHERE tenant = ?1 ORDER BY name",
            )
            .and_then(|mut s| s.query_map([tenant.as_str()], secret_from_row)?.collect())
            .map_err(|e| self.read_error("vault secrets", e))
    }

    fn put_secret(&mut self, tenant: &TenantId, row: &SecretRow) -> Result<(), StoreError> {
        self.writable()?;
        let err = self.vault_write_error("vault secret");
        // Only if the data key the value is sealed under is still current, and
        // only over the version the caller read (or as a new secret).
        let n = self
            .conn()
            .execute(
                "INSERT INTO vault_secrets (tenant, name, version, key_version, binding, sealed, updated_at)
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7
                 WHERE EXISTS (SELECT 1 FROM vault_data_keys WHERE tenant = ?1 AND version = ?4)
                 ON CONFLICT (tenant, name) DO UPDATE SET
                    version = excluded.version, key_version = excluded.key_version,
                    binding = excluded.binding, sealed = excluded.sealed, updated_at = excluded.updated_at
                 WHERE vault_secrets.version = excluded.version - 1",
                params![tenant.as_str(), row.name, row.version, row.key_version, row.binding, row.sealed, row.updated_at],
            )
            .map_err(err)?;
        if n != 1 {
            return Err(self.vault_conflict("vault secret"));
        }
        Ok(())
    }

    fn delete_secret(&mut self, tenant: &TenantId, name: &str) -> Result<bool, StoreError> {
        self.writable()?;
        let n = self
            .conn()
            .execute(
                "DELETE FROM vault_secrets WHERE tenant = ?1 AND name = ?2",
                params![tenant.as_str(), name],
            )
            .map_err(self.vault_write_error("vault secret"))?;
        Ok(n == 1)
    }

    fn all_data_keys(&self) -> Result<Vec<(TenantId, DataKeyRow)>, StoreError> {
        let rows: Vec<(String, i64, Vec<u8>)> = self
            .conn()
            .prepare_cached("SELECT tenant, version, wrapped FROM vault_data_keys ORDER BY tenant")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect()
            })
            .map_err(|e| self.read_error("vault data keys", e))?;
        rows.into_iter()
            .map(|(t, v, wrapped)| {
                let bad = |detail: String| StoreError::Corrupt {
                    path: self.path().to_owned(),
                    detail,
                };
                let tenant = TenantId::new(t).map_err(|e| bad(format!("vault_data_keys: {e}")))?;
                let version = u32::try_from(v)
                    .map_err(|_| bad(format!("vault_data_keys: impossible version {v}")))?;
                Ok((tenant, DataKeyRow { version, wrapped }))
            })
            .collect()
    }

    fn replace_master(
        &mut self,
        old_check: &[u8],
        master: &MasterRow,
        keys: &[(TenantId, DataKeyRow)],
    ) -> Result<(), StoreError> {
        self.writable()?;
        let path = self.path().to_owned();
        let err = |source: rusqlite::Error| StoreError::WriteVault {
            path: path.clone(),
            what: "vault master rotation",
            source: DbError::sqlite(source),
        };
        let conflict = || StoreError::VaultConflict {
            path: path.clone(),
            what: "vault master rotation",
        };
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let n = tx
            .execute(
                "UPDATE vault_master SET kdf = ?1, check_v = ?2 WHERE id = 1 AND check_v = ?3",
                params![master.kdf, master.check, old_check],
            )
            .map_err(err)?;
        if n != 1 {
            return Err(conflict());
        }
        let stored: i64 = tx
            .query_row("SELECT count(*) FROM vault_data_keys", [], |r| r.get(0))
            .map_err(err)?;
        if usize::try_from(stored).ok() != Some(keys.len()) {
            return Err(conflict());
        }
        for (tenant, k) in keys {
            // Re-wrapping keeps the version: the data key itself is unchanged.
            let n = tx
                .execute(
                    "UPDATE vault_data_keys SET wrapped = ?1 WHERE tenant = ?2 AND version = ?3",
                    params![k.wrapped, tenant.as_str(), k.version],
                )
                .map_err(err)?;
            if n != 1 {
                return Err(conflict());
            }
        }
        tx.commit().map_err(err)
    }

    fn replace_data_key(
        &mut self,
        tenant: &TenantId,
        old_version: u32,
        key: &DataKeyRow,
        secrets: &[SecretRow],
    ) -> Result<(), StoreError> {
        self.writable()?;
        let path = self.path().to_owned();
        let err = |source: rusqlite::Error| StoreError::WriteVault {
            path: path.clone(),
            what: "vault data key rotation",
            source: DbError::sqlite(source),
        };
        let conflict = || StoreError::VaultConflict {
            path: path.clone(),
            what: "vault data key rotation",
        };
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let n = tx
            .execute("UPDATE vault_data_keys SET version = ?1, wrapped = ?2 WHERE tenant = ?3 AND version = ?4", params![
                key.version,
                key.wrapped,
                tenant.as_str(),
                old_version
            ])
            .map_err(err)?;
        if n != 1 {
            return Err(conflict());
        }
        let stored: i64 = tx
            .query_row(
                "SELECT count(*) FROM vault_secrets WHERE tenant = ?1",
                [tenant.as_str()],
                |r| r.get(0),
            )
            .map_err(err)?;
        if usize::try_from(stored).ok() != Some(secrets.len()) {
            return Err(conflict());
        }
        for s in secrets {
            // The secret's own version is kept: its value is unchanged.
            let n = tx
                .execute(
                    "UPDATE vault_secrets SET key_version = ?1, sealed = ?2
                     WHERE tenant = ?3 AND name = ?4 AND version = ?5 AND key_version = ?6",
                    params![
                        key.version,
                        s.sealed,
                        tenant.as_str(),
                        s.name,
                        s.version,
                        old_version
                    ],
                )
                .map_err(err)?;
            if n != 1 {
                return Err(conflict());
            }
        }
        tx.commit().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = SqliteStore::open(&dir.path().join("a.db")).expect("open");
        (dir, s)
    }

    fn row(name: &str, version: u32, key_version: u32) -> SecretRow {
        SecretRow {
            name: name.into(),
            version,
            key_version,
            binding: "{}".into(),
            sealed: vec![version as u8; 40],
            updated_at: 1,
        }
    }

    #[test]
    fn secrets_are_tenant_scoped_and_versioned() {
        let (_d, mut s) = open();
        let t = TenantId::default_tenant();
        let other = TenantId::new("acme").expect("id");
        assert!(s.vault_master().expect("read").is_none());
        assert!(
            s.create_vault_master(&MasterRow {
                kdf: None,
                check: vec![1]
            })
            .expect("create")
        );
        assert!(
            !s.create_vault_master(&MasterRow {
                kdf: None,
                check: vec![2]
            })
            .expect("create again")
        );
        assert_eq!(s.vault_master().expect("read").expect("row").check, vec![1]);

        // No data key yet: a secret cannot be stored.
        assert!(matches!(
            s.put_secret(&t, &row("A", 1, 1)),
            Err(StoreError::VaultConflict { .. })
        ));
        assert!(
            s.create_data_key(
                &t,
                &DataKeyRow {
                    version: 1,
                    wrapped: vec![9]
                }
            )
            .expect("dk")
        );
        s.put_secret(&t, &row("A", 1, 1)).expect("put v1");
        // Re-inserting version 1 or skipping a version is a conflict.
        assert!(matches!(
            s.put_secret(&t, &row("A", 1, 1)),
            Err(StoreError::VaultConflict { .. })
        ));
        assert!(matches!(
            s.put_secret(&t, &row("A", 3, 1)),
            Err(StoreError::VaultConflict { .. })
        ));
        s.put_secret(&t, &row("A", 2, 1)).expect("put v2");
        assert_eq!(s.secret(&t, "A").expect("get"), Some(row("A", 2, 1)));
        assert_eq!(s.secret(&other, "A").expect("get other"), None);
        assert!(s.secrets(&other).expect("list").is_empty());

        // Rotating the data key re-seals every secret, atomically.
        let k2 = DataKeyRow {
            version: 2,
            wrapped: vec![8],
        };
        assert!(matches!(
            s.replace_data_key(&t, 1, &k2, &[]),
            Err(StoreError::VaultConflict { .. })
        ));
        assert_eq!(
            s.data_key(&t).expect("dk"),
            Some(DataKeyRow {
                version: 1,
                wrapped: vec![9]
            })
        );
        s.replace_data_key(&t, 1, &k2, &[row("A", 2, 2)])
            .expect("rotate");
        assert_eq!(
            s.secret(&t, "A").expect("get").map(|r| r.key_version),
            Some(2)
        );
        // A write sealed under the discarded key is refused.
        assert!(matches!(
            s.put_secret(&t, &row("A", 3, 1)),
            Err(StoreError::VaultConflict { .. })
        ));

        assert!(s.delete_secret(&t, "A").expect("rm"));
        assert!(!s.delete_secret(&t, "A").expect("rm again"));
    }

    #[test]
    fn master_rotation_is_compare_and_swap() {
        let (_d, mut s) = open();
        let t = TenantId::default_tenant();
        s.create_vault_master(&MasterRow {
            kdf: None,
            check: vec![1],
        })
        .expect("create");
        s.create_data_key(
            &t,
            &DataKeyRow {
                version: 1,
                wrapped: vec![9],
            },
        )
        .expect("dk");
        let new = MasterRow {
            kdf: Some("{}".into()),
            check: vec![2],
        };
        let keys = vec![(
            t.clone(),
            DataKeyRow {
                version: 1,
                wrapped: vec![7],
            },
        )];
        assert!(matches!(
            s.replace_master(&[5], &new, &keys),
            Err(StoreError::VaultConflict { .. })
        ));
        assert!(matches!(
            s.replace_master(&[1], &new, &[]),
            Err(StoreError::VaultConflict { .. })
        ));
        s.replace_master(&[1], &new, &keys).expect("rotate");
        assert_eq!(s.vault_master().expect("read"), Some(new));
        assert_eq!(s.all_data_keys().expect("keys"), keys);
    }
}
