//! Dashboard accounts on PostgreSQL (migration 0004), as SQLite's
//! `accounts.rs`: the lookups made before the tenant is known go through
//! the owner's `SECURITY DEFINER` functions, which act on one row only;
//! everything else runs under the tenant's row-level security.

use super::{PgStore, TxError, tenant_eq};
use crate::{AccountStore, SessionRow, StoreError, UserDeleted, UserRow};
use airlock_types::TenantId;
use postgres::Row;

const USER_COLS: &str = "username, tenant, password_hash, admin, must_change_password, created_at";
const SESSION_COLS: &str =
    "sha256, tenant, username, created_at, last_seen_at, expires_at, revoked_at";

fn user_row(store: &PgStore, r: &Row) -> Result<UserRow, TxError> {
    Ok(UserRow {
        username: r.try_get(0)?,
        tenant: super::control::tenant_id(store, r.try_get(1)?)?,
        password_hash: r.try_get(2)?,
        admin: r.try_get(3)?,
        must_change_password: r.try_get(4)?,
        created_at: r.try_get(5)?,
    })
}

fn session_row(store: &PgStore, r: &Row) -> Result<SessionRow, TxError> {
    let hash: Vec<u8> = r.try_get(0)?;
    let Ok(sha256) = <[u8; 32]>::try_from(hash.as_slice()) else {
        return Err(super::control::malformed(
            store,
            "session",
            format!("session hash of {} bytes", hash.len()),
        ));
    };
    Ok(SessionRow {
        sha256,
        tenant: super::control::tenant_id(store, r.try_get(1)?)?,
        username: r.try_get(2)?,
        created_at: r.try_get(3)?,
        last_seen_at: r.try_get(4)?,
        expires_at: r.try_get(5)?,
        revoked_at: r.try_get(6)?,
    })
}

impl AccountStore for PgStore {
    fn user_create(&mut self, row: &UserRow) -> Result<bool, StoreError> {
        self.tx(Some(&row.tenant), true, "user create", |c| {
            let n = c.execute(
                "INSERT INTO dashboard_users (username, tenant, password_hash, admin, \
                   must_change_password, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT DO NOTHING",
                &[
                    &row.username,
                    &row.tenant.as_str(),
                    &row.password_hash,
                    &row.admin,
                    &row.must_change_password,
                    &row.created_at,
                ],
            )?;
            Ok(n == 1)
        })
    }

    fn user(&self, username: &str) -> Result<Option<UserRow>, StoreError> {
        self.tx(None, false, "user", |c| {
            c.query_opt(
                &format!("SELECT {USER_COLS} FROM airlock_user_by_name($1)"),
                &[&username],
            )?
            .map(|r| user_row(self, &r))
            .transpose()
        })
    }

    fn users(&self, tenant: &TenantId) -> Result<Vec<UserRow>, StoreError> {
        self.tx(Some(tenant), false, "users", |c| {
            c.query(
                &format!(
                    "SELECT {USER_COLS} FROM dashboard_users WHERE {} ORDER BY username",
                    tenant_eq!("tenant", "$1")
                ),
                &[&tenant.as_str()],
            )?
            .iter()
            .map(|r| user_row(self, r))
            .collect()
        })
    }

    fn user_delete(
        &mut self,
        tenant: &TenantId,
        username: &str,
        now: i64,
    ) -> Result<UserDeleted, StoreError> {
        self.tx(Some(tenant), true, "user delete", |c| {
            // Lock the tenant's administrators (and the user) before
            // counting: a concurrent deletion waits here, then sees this
            // one's result, so the last two cannot both go.
            let rows = c.query(
                concat!(
                    "SELECT username, admin FROM dashboard_users WHERE ",
                    tenant_eq!("tenant", "$1"),
                    " AND (admin OR username = $2) FOR UPDATE"
                ),
                &[&tenant.as_str(), &username],
            )?;
            let Some(me) = rows.iter().find(|r| r.get::<_, String>(0) == username) else {
                return Ok(UserDeleted::NotFound);
            };
            let admins = rows.iter().filter(|r| r.get::<_, bool>(1)).count();
            if me.get::<_, bool>(1) && admins <= 1 {
                return Ok(UserDeleted::LastAdmin);
            }
            c.execute(
                concat!(
                    "UPDATE dashboard_sessions SET revoked_at = $3 WHERE ",
                    tenant_eq!("tenant", "$1"),
                    " AND username = $2 AND revoked_at IS NULL"
                ),
                &[&tenant.as_str(), &username, &now],
            )?;
            c.execute(
                concat!(
                    "DELETE FROM dashboard_users WHERE ",
                    tenant_eq!("tenant", "$1"),
                    " AND username = $2"
                ),
                &[&tenant.as_str(), &username],
            )?;
            Ok(UserDeleted::Deleted)
        })
    }

    fn user_set_password(
        &mut self,
        tenant: &TenantId,
        username: &str,
        password_hash: &str,
    ) -> Result<bool, StoreError> {
        self.tx(Some(tenant), true, "user set password", |c| {
            let n = c.execute(
                concat!(
                    "UPDATE dashboard_users SET password_hash = $3, must_change_password = false WHERE ",
                    tenant_eq!("tenant", "$1"),
                    " AND username = $2"
                ),
                &[&tenant.as_str(), &username, &password_hash],
            )?;
            Ok(n == 1)
        })
    }

    fn session_insert(&mut self, row: &SessionRow) -> Result<(), StoreError> {
        self.tx(Some(&row.tenant), true, "session insert", |c| {
            c.execute(
                &format!(
                    "INSERT INTO dashboard_sessions ({SESSION_COLS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)"
                ),
                &[
                    &&row.sha256[..],
                    &row.tenant.as_str(),
                    &row.username,
                    &row.created_at,
                    &row.last_seen_at,
                    &row.expires_at,
                    &row.revoked_at,
                ],
            )?;
            Ok(())
        })
    }

    fn session_by_hash(&self, sha256: &[u8; 32]) -> Result<Option<SessionRow>, StoreError> {
        self.tx(None, false, "session", |c| {
            c.query_opt(
                &format!("SELECT {SESSION_COLS} FROM airlock_session_by_hash($1)"),
                &[&&sha256[..]],
            )?
            .map(|r| session_row(self, &r))
            .transpose()
        })
    }

    fn session_touch(&mut self, sha256: &[u8; 32], now: i64) -> Result<(), StoreError> {
        self.tx(None, true, "session touch", |c| {
            c.execute(
                "SELECT airlock_session_touch($1, $2)",
                &[&&sha256[..], &now],
            )?;
            Ok(())
        })
    }

    fn session_revoke(&mut self, sha256: &[u8; 32], now: i64) -> Result<bool, StoreError> {
        self.tx(None, true, "session revoke", |c| {
            let n: i64 = c
                .query_one(
                    "SELECT airlock_session_revoke($1, $2)",
                    &[&&sha256[..], &now],
                )?
                .try_get(0)?;
            Ok(n == 1)
        })
    }
}
