//! Virtual keys: `alk_…` bearer keys for the gateway's own listener. Only
//! the SHA-256 of a key is stored; the key is shown once at creation.

use airlock_store::{KeyRow, SqliteStore, StoreError};
use airlock_types::{Secret, TenantId, Timestamp};

/// The prefix of every virtual key.
pub const KEY_PREFIX: &str = "alk_";

/// Hex SHA-256 of a key.
pub fn key_hash(key: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes()).as_ref())
}

fn random_hex(n: usize) -> Result<String, StoreError> {
    let mut b = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| StoreError::Corrupt {
        path: "(random)".into(),
        detail: "random generator failed".into(),
    })?;
    Ok(hex::encode(b))
}

/// Create and store a key for `agent`; returns the key (to print once) and
/// its stored row.
pub fn create_key(
    store: &mut SqliteStore,
    tenant: &TenantId,
    agent: &str,
    team: Option<&str>,
) -> Result<(Secret<String>, KeyRow), StoreError> {
    let key = format!("{KEY_PREFIX}{}", random_hex(32)?);
    let row = KeyRow {
        id: format!("key_{}", random_hex(6)?),
        sha256: key_hash(&key),
        agent: agent.to_string(),
        team: team.map(str::to_string),
        created: Timestamp::now().as_micros(),
        revoked: None,
    };
    store.gateway_create_key(tenant, &row)?;
    Ok((Secret::new(key), row))
}

/// The live key row for a presented key, comparing the stored hash in
/// constant time. Returns the tenant and the row.
pub fn verify_key(
    store: &SqliteStore,
    presented: &str,
) -> Result<Option<(String, KeyRow)>, StoreError> {
    if !presented.starts_with(KEY_PREFIX) {
        return Ok(None);
    }
    let h = key_hash(presented);
    Ok(store.gateway_key_by_hash(&h)?.filter(|(_, row)| {
        aws_lc_rs::constant_time::verify_slices_are_equal(row.sha256.as_bytes(), h.as_bytes())
            .is_ok()
    }))
}
