//! Dashboard accounts: local users (Argon2id password hashes, PHC strings)
//! and their browser sessions (migration 0008, SQLite).
//!
//! A username is unique in the installation and belongs to one tenant. A
//! session is stored only as the SHA-256 of its cookie value; the caller
//! checks expiry and revocation (it knows its limits). Times are
//! microseconds since the Unix epoch. PostgreSQL implements the same trait
//! (`postgres/accounts.rs`, migration 0004) under row-level security.

use crate::DbError;
use crate::control_sqlite::tenant_of;
use crate::{SqliteStore, StoreError};
use airlock_types::TenantId;
use rusqlite::{OptionalExtension, params};

/// One local dashboard user.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRow {
    /// The login name, unique in the installation.
    pub username: String,
    /// The tenant the user acts for.
    pub tenant: TenantId,
    /// The Argon2id hash of the password, as a PHC string.
    pub password_hash: String,
    /// Whether the user administers the tenant.
    pub admin: bool,
    /// The password was issued, not chosen: it must be changed before
    /// anything else.
    pub must_change_password: bool,
    /// When it was created.
    pub created_at: i64,
}

impl std::fmt::Debug for UserRow {
    // The hash stays out of logs: it is enough to guess passwords offline.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRow")
            .field("username", &self.username)
            .field("tenant", &self.tenant)
            .field("admin", &self.admin)
            .field("must_change_password", &self.must_change_password)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// One browser session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// SHA-256 of the cookie value (the value itself is never stored).
    pub sha256: [u8; 32],
    /// The user's tenant.
    pub tenant: TenantId,
    /// The user.
    pub username: String,
    /// When it was created (login).
    pub created_at: i64,
    /// When it was last used.
    pub last_seen_at: i64,
    /// Its absolute end.
    pub expires_at: i64,
    /// When it was revoked (logout, or a later login), if it was.
    pub revoked_at: Option<i64>,
}

/// What [`AccountStore::user_delete`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserDeleted {
    /// The user and its sessions are gone.
    Deleted,
    /// No such user in the tenant.
    NotFound,
    /// The user is the tenant's last administrator: nothing was changed.
    LastAdmin,
}

/// Storage of dashboard users and sessions. Each write is one transaction.
pub trait AccountStore: Send + std::fmt::Debug {
    /// Create a user; `Ok(false)` when the username is taken.
    fn user_create(&mut self, row: &UserRow) -> Result<bool, StoreError>;
    /// A user by login name (any tenant: the login form names no tenant).
    fn user(&self, username: &str) -> Result<Option<UserRow>, StoreError>;
    /// The tenant's users, by name.
    fn users(&self, tenant: &TenantId) -> Result<Vec<UserRow>, StoreError>;
    /// Delete the tenant's user `username` and revoke its sessions at
    /// `now`, unless it is the tenant's last administrator. One
    /// transaction that holds the tenant's administrators still while it
    /// counts them, so two concurrent deletions of the last two
    /// administrators cannot both succeed.
    fn user_delete(
        &mut self,
        tenant: &TenantId,
        username: &str,
        now: i64,
    ) -> Result<UserDeleted, StoreError>;
    /// Replace the user's password hash (and clear `must_change_password`);
    /// `Ok(false)` when there is no such user in `tenant`.
    fn user_set_password(
        &mut self,
        tenant: &TenantId,
        username: &str,
        password_hash: &str,
    ) -> Result<bool, StoreError>;
    /// Store a new session.
    fn session_insert(&mut self, row: &SessionRow) -> Result<(), StoreError>;
    /// A session by the hash of its cookie value.
    fn session_by_hash(&self, sha256: &[u8; 32]) -> Result<Option<SessionRow>, StoreError>;
    /// Record a use of a live session.
    fn session_touch(&mut self, sha256: &[u8; 32], now: i64) -> Result<(), StoreError>;
    /// Revoke a session; `Ok(false)` when it was already revoked or unknown.
    fn session_revoke(&mut self, sha256: &[u8; 32], now: i64) -> Result<bool, StoreError>;
}

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRow> {
    let admin: i64 = r.get(3)?;
    let must: i64 = r.get(5)?;
    Ok(UserRow {
        username: r.get(0)?,
        tenant: tenant_of(r, 1)?,
        password_hash: r.get(2)?,
        admin: admin != 0,
        created_at: r.get(4)?,
        must_change_password: must != 0,
    })
}

fn session_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRow> {
    let hash: Vec<u8> = r.get(0)?;
    let Ok(sha256) = <[u8; 32]>::try_from(hash.as_slice()) else {
        return Err(rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Blob,
            format!("session hash of {} bytes", hash.len()).into(),
        ));
    };
    Ok(SessionRow {
        sha256,
        tenant: tenant_of(r, 1)?,
        username: r.get(2)?,
        created_at: r.get(3)?,
        last_seen_at: r.get(4)?,
        expires_at: r.get(5)?,
        revoked_at: r.get(6)?,
    })
}

impl AccountStore for SqliteStore {
    fn user_create(&mut self, row: &UserRow) -> Result<bool, StoreError> {
        self.ctl_exec(
            "user create",
            "INSERT OR IGNORE INTO dashboard_users (username, tenant, password_hash, admin, created_at, must_change_password) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                row.username,
                row.tenant.as_str(),
                row.password_hash,
                i64::from(row.admin),
                row.created_at,
                i64::from(row.must_change_password)
            ],
        )
    }

    fn user(&self, username: &str) -> Result<Option<UserRow>, StoreError> {
        self.ctl_one(
            "user",
            "SELECT username, tenant, password_hash, admin, created_at, must_change_password FROM dashboard_users WHERE username = ?1",
            params![username],
            user_row,
        )
    }

    fn users(&self, tenant: &TenantId) -> Result<Vec<UserRow>, StoreError> {
        self.ctl_list(
            "users",
            "SELECT username, tenant, password_hash, admin, created_at, must_change_password FROM dashboard_users WHERE tenant = ?1 ORDER BY username",
            params![tenant.as_str()],
            user_row,
        )
    }

    fn user_delete(
        &mut self,
        tenant: &TenantId,
        username: &str,
        now: i64,
    ) -> Result<UserDeleted, StoreError> {
        self.writable()?;
        let path = self.path().to_owned();
        let err = move |source| StoreError::Control {
            path: path.clone(),
            what: "user delete",
            source: DbError::sqlite(source),
        };
        // IMMEDIATE: the write lock is taken before the count, so no other
        // deletion can change the administrators in between.
        let tx = self
            .conn_mut()
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&err)?;
        let t = tenant.as_str();
        let admin: Option<i64> = tx
            .query_row(
                "SELECT admin FROM dashboard_users WHERE tenant = ?1 AND username = ?2",
                params![t, username],
                |r| r.get(0),
            )
            .optional()
            .map_err(&err)?;
        let Some(admin) = admin else {
            return Ok(UserDeleted::NotFound);
        };
        if admin != 0 {
            let admins: i64 = tx
                .query_row(
                    "SELECT count(*) FROM dashboard_users WHERE tenant = ?1 AND admin = 1",
                    params![t],
                    |r| r.get(0),
                )
                .map_err(&err)?;
            if admins <= 1 {
                return Ok(UserDeleted::LastAdmin);
            }
        }
        tx.execute(
            "UPDATE dashboard_sessions SET revoked_at = ?3 WHERE tenant = ?1 AND username = ?2 AND revoked_at IS NULL",
            params![t, username, now],
        )
        .map_err(&err)?;
        tx.execute(
            "DELETE FROM dashboard_users WHERE tenant = ?1 AND username = ?2",
            params![t, username],
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)?;
        Ok(UserDeleted::Deleted)
    }

    fn user_set_password(
        &mut self,
        tenant: &TenantId,
        username: &str,
        password_hash: &str,
    ) -> Result<bool, StoreError> {
        self.ctl_exec(
            "user set password",
            "UPDATE dashboard_users SET password_hash = ?3, must_change_password = 0 WHERE tenant = ?1 AND username = ?2",
            params![tenant.as_str(), username, password_hash],
        )
    }

    fn session_insert(&mut self, row: &SessionRow) -> Result<(), StoreError> {
        self.ctl_exec(
            "session insert",
            "INSERT INTO dashboard_sessions (sha256, tenant, username, created_at, last_seen_at, expires_at, revoked_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                row.sha256.as_slice(),
                row.tenant.as_str(),
                row.username,
                row.created_at,
                row.last_seen_at,
                row.expires_at,
                row.revoked_at
            ],
        )
        .map(|_| ())
    }

    fn session_by_hash(&self, sha256: &[u8; 32]) -> Result<Option<SessionRow>, StoreError> {
        self.ctl_one(
            "session",
            "SELECT sha256, tenant, username, created_at, last_seen_at, expires_at, revoked_at FROM dashboard_sessions WHERE sha256 = ?1",
            params![sha256.as_slice()],
            session_row,
        )
    }

    fn session_touch(&mut self, sha256: &[u8; 32], now: i64) -> Result<(), StoreError> {
        self.ctl_exec(
            "session touch",
            "UPDATE dashboard_sessions SET last_seen_at = max(last_seen_at, ?2) WHERE sha256 = ?1 AND revoked_at IS NULL",
            params![sha256.as_slice(), now],
        )
        .map(|_| ())
    }

    fn session_revoke(&mut self, sha256: &[u8; 32], now: i64) -> Result<bool, StoreError> {
        self.ctl_exec(
            "session revoke",
            "UPDATE dashboard_sessions SET revoked_at = ?2 WHERE sha256 = ?1 AND revoked_at IS NULL",
            params![sha256.as_slice(), now],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> TenantId {
        TenantId::new(s).expect("tenant")
    }

    #[test]
    fn users_are_unique_and_sessions_are_revoked_once() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut s = SqliteStore::open(&dir.path().join("a.db")).expect("open");
        let u = UserRow {
            username: "admin@acme".into(),
            tenant: t("acme"),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            admin: true,
            created_at: 1,
            must_change_password: true,
        };
        assert!(s.user_create(&u).expect("create"));
        let mut other = u.clone();
        other.tenant = t("globex");
        assert!(
            !s.user_create(&other).expect("taken"),
            "a username is unique"
        );
        assert_eq!(s.user("admin@acme").expect("user"), Some(u.clone()));
        assert_eq!(s.user("nobody").expect("user"), None);
        assert!(
            !s.user_set_password(&t("globex"), "admin@acme", "x")
                .expect("set"),
            "another tenant's user"
        );
        assert!(
            s.user_set_password(&t("acme"), "admin@acme", "new")
                .expect("set")
        );
        let changed = s.user("admin@acme").expect("user").expect("exists");
        assert_eq!(
            (changed.password_hash.as_str(), changed.must_change_password),
            ("new", false)
        );
        assert!(!format!("{u:?}").contains("argon2id"), "no hash in Debug");
        let row = SessionRow {
            sha256: [7; 32],
            tenant: t("acme"),
            username: "admin@acme".into(),
            created_at: 10,
            last_seen_at: 10,
            expires_at: 100,
            revoked_at: None,
        };
        s.session_insert(&row).expect("insert");
        s.session_touch(&[7; 32], 20).expect("touch");
        assert_eq!(
            s.session_by_hash(&[7; 32])
                .expect("get")
                .map(|r| r.last_seen_at),
            Some(20)
        );
        assert!(s.session_revoke(&[7; 32], 30).expect("revoke"));
        assert!(!s.session_revoke(&[7; 32], 31).expect("again"));
        assert_eq!(
            s.session_by_hash(&[7; 32])
                .expect("get")
                .and_then(|r| r.revoked_at),
            Some(30)
        );
        assert_eq!(s.session_by_hash(&[8; 32]).expect("get"), None);
    }

    #[test]
    fn a_deleted_user_is_gone_with_its_sessions_and_only_in_its_tenant() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut s = SqliteStore::open(&dir.path().join("a.db")).expect("open");
        for (name, tenant) in [
            ("b@acme", "acme"),
            ("a@acme", "acme"),
            ("c@globex", "globex"),
        ] {
            let u = UserRow {
                username: name.into(),
                tenant: t(tenant),
                password_hash: "h".into(),
                admin: false,
                created_at: 1,
                must_change_password: false,
            };
            assert!(s.user_create(&u).expect("create"));
        }
        let names = |s: &SqliteStore, t: &TenantId| -> Vec<String> {
            s.users(t)
                .expect("users")
                .into_iter()
                .map(|u| u.username)
                .collect()
        };
        assert_eq!(names(&s, &t("acme")), ["a@acme", "b@acme"]);
        let live = SessionRow {
            sha256: [1; 32],
            tenant: t("acme"),
            username: "a@acme".into(),
            created_at: 1,
            last_seen_at: 1,
            expires_at: 100,
            revoked_at: None,
        };
        s.session_insert(&live).expect("insert");
        assert_eq!(
            s.user_delete(&t("globex"), "a@acme", 5).expect("delete"),
            UserDeleted::NotFound,
            "another tenant's user stays"
        );
        assert_eq!(
            s.session_by_hash(&[1; 32])
                .expect("get")
                .and_then(|r| r.revoked_at),
            None
        );
        assert_eq!(
            s.user_delete(&t("acme"), "a@acme", 5).expect("delete"),
            UserDeleted::Deleted
        );
        assert_eq!(
            s.user_delete(&t("acme"), "a@acme", 6).expect("again"),
            UserDeleted::NotFound
        );
        assert_eq!(names(&s, &t("acme")), ["b@acme"]);
        assert_eq!(names(&s, &t("globex")), ["c@globex"]);
        assert_eq!(
            s.session_by_hash(&[1; 32])
                .expect("get")
                .and_then(|r| r.revoked_at),
            Some(5),
            "its sessions end with it"
        );
    }

    #[test]
    fn the_last_administrator_is_kept_and_sessions_stay() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut s = SqliteStore::open(&dir.path().join("a.db")).expect("open");
        for (name, admin) in [("root@acme", true), ("ops@acme", true), ("dev@acme", false)] {
            let u = UserRow {
                username: name.into(),
                tenant: t("acme"),
                password_hash: "h".into(),
                admin,
                created_at: 1,
                must_change_password: false,
            };
            assert!(s.user_create(&u).expect("create"));
        }
        let live = SessionRow {
            sha256: [2; 32],
            tenant: t("acme"),
            username: "root@acme".into(),
            created_at: 1,
            last_seen_at: 1,
            expires_at: 100,
            revoked_at: None,
        };
        s.session_insert(&live).expect("insert");
        let del = |s: &mut SqliteStore, u: &str| s.user_delete(&t("acme"), u, 5).expect("delete");
        assert_eq!(del(&mut s, "ops@acme"), UserDeleted::Deleted);
        assert_eq!(del(&mut s, "root@acme"), UserDeleted::LastAdmin);
        assert_eq!(
            s.session_by_hash(&[2; 32])
                .expect("get")
                .and_then(|r| r.revoked_at),
            None,
            "a refused deletion ends no session"
        );
        assert_eq!(del(&mut s, "dev@acme"), UserDeleted::Deleted);
        assert_eq!(del(&mut s, "root@acme"), UserDeleted::LastAdmin);
    }
}
