//! The SQLite backend: WAL journal, `synchronous=FULL`, one writer connection.

use crate::{AuditStore, CheckpointRow, DbError, NewRecord, RecordRef, StoreError};
use airlock_types::TenantId;
use rusqlite::{
    Connection, ErrorCode, OpenFlags, OptionalExtension as _, TransactionBehavior, params,
};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

/// One schema migration of one backend.
#[derive(Debug)]
struct Migration {
    version: u32,
    name: &'static str,
    sql: &'static str,
}

/// The backend name recorded in `schema_migrations`. A PostgreSQL backend
/// keeps its own list under its own name.
const BACKEND: &str = "sqlite";

/// SQLite migrations, in order. Append only; never edit a released one.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "audit_log",
        sql: include_str!("sqlite/0001_audit.sql"),
    },
    Migration {
        version: 2,
        name: "vault",
        sql: include_str!("sqlite/0002_vault.sql"),
    },
    Migration {
        version: 3,
        name: "gateway",
        sql: include_str!("sqlite/0003_gateway.sql"),
    },
    Migration {
        version: 4,
        name: "gateway_leases",
        sql: include_str!("sqlite/0004_gateway_leases.sql"),
    },
    Migration {
        version: 5,
        name: "approvals",
        sql: include_str!("sqlite/0005_approvals.sql"),
    },
    Migration {
        version: 6,
        name: "mcp_tool_pins",
        sql: include_str!("sqlite/0006_mcp.sql"),
    },
    Migration {
        version: 7,
        name: "control",
        sql: include_str!("sqlite/0007_control.sql"),
    },
    Migration {
        version: 8,
        name: "dashboard_accounts",
        sql: include_str!("sqlite/0008_accounts.sql"),
    },
];

/// How long a connection waits for another connection's write lock before
/// an operation fails. Several processes share one database (a proxy, runs,
/// CLI commands); each holds the lock for one short transaction, so waiting
/// is normal and failing (which stops an audit writer for good) is not.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The append-only triggers the schema creates.
const GUARDS: &[&str] = &[
    "audit_records_no_update",
    "audit_records_no_delete",
    "audit_checkpoints_no_update",
    "audit_checkpoints_no_delete",
];

fn latest_version() -> u32 {
    MIGRATIONS.last().map(|m| m.version).unwrap_or(0)
}

/// An Airlock database in one SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    read_only: bool,
    /// The gateway's budget leases held by this connection.
    pub(crate) leases: crate::gateway::Leases,
    /// The connection was left at `synchronous=NORMAL` by a gateway
    /// operation ([`SqliteStore::sync_normal`]); the next write of any
    /// other kind restores `FULL` first ([`SqliteStore::writable`]).
    relaxed: std::cell::Cell<bool>,
}

impl SqliteStore {
    /// Open (creating if needed) the database for writing and bring its schema
    /// up to date. Commits are durable (WAL, `synchronous=FULL`).
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn =
            Connection::open_with_flags(path, flags).map_err(|source: rusqlite::Error| {
                StoreError::Open {
                    path: path.to_owned(),
                    source: DbError::sqlite(source),
                }
            })?;
        let mut store = SqliteStore {
            conn,
            path: path.to_owned(),
            read_only: false,
            leases: Default::default(),
            relaxed: Default::default(),
        };
        store.configure()?;
        // Switching a fresh file to WAL needs an exclusive lock, and SQLite
        // can answer SQLITE_BUSY here without calling the busy handler while
        // another connection switches or migrates: retry within the same
        // 30 s budget the busy timeout gives every other statement.
        let started = std::time::Instant::now();
        let mode: String = loop {
            match store
                .conn
                .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            {
                Ok(m) => break m,
                Err(rusqlite::Error::SqliteFailure(f, _))
                    if f.code == rusqlite::ErrorCode::DatabaseBusy
                        && started.elapsed() < BUSY_TIMEOUT =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => return Err(store.configure_error("journal_mode=WAL", e)),
            }
        };
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt {
                path: store.path.clone(),
                detail: format!("cannot switch to WAL journal mode (got {mode})"),
            });
        }
        store
            .conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(|e| store.configure_error("synchronous=FULL", e))?;
        store.migrate()?;
        Ok(store)
    }

    /// Open an existing database read-only. Nothing is created or migrated;
    /// the schema must be exactly the version this build knows.
    pub fn open_read_only(path: &Path) -> Result<SqliteStore, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn =
            Connection::open_with_flags(path, flags).map_err(|source: rusqlite::Error| {
                StoreError::Open {
                    path: path.to_owned(),
                    source: DbError::sqlite(source),
                }
            })?;
        let store = SqliteStore {
            conn,
            path: path.to_owned(),
            read_only: true,
            leases: Default::default(),
            relaxed: Default::default(),
        };
        store.configure()?;
        let found = store.schema_version()?;
        let expected = latest_version();
        if found != expected {
            let hint = if found < expected {
                " (run `airlock init` to upgrade it)"
            } else {
                " (written by a newer Airlock)"
            };
            return Err(StoreError::SchemaVersion {
                path: store.path.clone(),
                found,
                expected,
                hint,
            });
        }
        Ok(store)
    }

    /// The file this store reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection, for the sibling `secrets` module.
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The connection for a transaction, for the sibling `secrets` module.
    pub(crate) fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// The connection and the gateway's leases, borrowed apart.
    pub(crate) fn conn_and_leases(&mut self) -> (&mut Connection, &mut crate::gateway::Leases) {
        (&mut self.conn, &mut self.leases)
    }

    /// Settings for every connection. `trusted_schema=OFF` because the file
    /// may have been edited by someone we do not trust.
    fn configure(&self) -> Result<(), StoreError> {
        self.conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| self.configure_error("busy_timeout", e))?;
        self.conn
            .pragma_update(None, "trusted_schema", "OFF")
            .map_err(|e| self.configure_error("trusted_schema=OFF", e))?;
        // Reading the schema is the first thing that touches the file's
        // contents: a non-database or a truncated header fails here.
        self.conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(|e| self.read_error("schema", e))?;
        Ok(())
    }

    fn configure_error(&self, what: &'static str, e: rusqlite::Error) -> StoreError {
        match corruption(&e) {
            Some(detail) => StoreError::Corrupt {
                path: self.path.clone(),
                detail,
            },
            None => StoreError::Configure {
                path: self.path.clone(),
                what,
                source: DbError::sqlite(e),
            },
        }
    }

    pub(crate) fn read_error(&self, what: &'static str, e: rusqlite::Error) -> StoreError {
        match corruption(&e) {
            Some(detail) => StoreError::Corrupt {
                path: self.path.clone(),
                detail,
            },
            None => StoreError::Read {
                path: self.path.clone(),
                what,
                source: DbError::sqlite(e),
            },
        }
    }

    fn schema_version(&self) -> Result<u32, StoreError> {
        let has_table: bool = self
            .conn
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations')",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.read_error("schema", e))?;
        if !has_table {
            return Ok(0);
        }
        let v: i64 = self
            .conn
            .query_row(
                "SELECT coalesce(max(version), 0) FROM schema_migrations WHERE backend = ?1",
                [BACKEND],
                |r| r.get(0),
            )
            .map_err(|e| self.read_error("schema_migrations", e))?;
        u32::try_from(v).map_err(|_| StoreError::Corrupt {
            path: self.path.clone(),
            detail: format!("schema_migrations holds an impossible version {v}"),
        })
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let expected = latest_version();
        // The common case, without taking the write lock: up to date.
        let found = self.schema_version()?;
        if found == expected {
            return Ok(());
        }
        if found > expected {
            return Err(StoreError::SchemaVersion {
                path: self.path.clone(),
                found,
                expected,
                hint: " (written by a newer Airlock)",
            });
        }
        let path = self.path.clone();
        let mig_err = |m: &Migration, source: rusqlite::Error| StoreError::Migrate {
            path: path.clone(),
            version: m.version,
            name: m.name,
            source: DbError::sqlite(source),
        };
        // One IMMEDIATE transaction for the whole upgrade: two processes
        // opening a fresh or old database at once take turns, and the second
        // finds the schema already current.
        let conn = &mut self.conn;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|source: rusqlite::Error| StoreError::Configure {
                path: path.clone(),
                what: "schema_migrations",
                source: DbError::sqlite(source),
            })?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                backend    TEXT    NOT NULL,
                version    INTEGER NOT NULL,
                name       TEXT    NOT NULL,
                applied_at INTEGER NOT NULL,
                PRIMARY KEY (backend, version)
             )",
        )
        .map_err(|source: rusqlite::Error| StoreError::Configure {
            path: path.clone(),
            what: "schema_migrations",
            source: DbError::sqlite(source),
        })?;
        let v: i64 = tx
            .query_row(
                "SELECT coalesce(max(version), 0) FROM schema_migrations WHERE backend = ?1",
                [BACKEND],
                |r| r.get(0),
            )
            .map_err(|source: rusqlite::Error| StoreError::Read {
                path: path.clone(),
                what: "schema_migrations",
                source: DbError::sqlite(source),
            })?;
        let found = u32::try_from(v).map_err(|_| StoreError::Corrupt {
            path: path.clone(),
            detail: format!("schema_migrations holds an impossible version {v}"),
        })?;
        if found > expected {
            return Err(StoreError::SchemaVersion {
                path: path.clone(),
                found,
                expected,
                hint: " (written by a newer Airlock)",
            });
        }
        for m in MIGRATIONS.iter().filter(|m| m.version > found) {
            tx.execute_batch(m.sql).map_err(|e| mig_err(m, e))?;
            tx.execute(
                "INSERT INTO schema_migrations (backend, version, name, applied_at) VALUES (?1, ?2, ?3, unixepoch())",
                params![BACKEND, m.version, m.name],
            )
            .map_err(|e| mig_err(m, e))?;
        }
        tx.commit()
            .map_err(|source: rusqlite::Error| StoreError::Configure {
                path: path.clone(),
                what: "schema migration commit",
                source: DbError::sqlite(source),
            })
    }

    fn checkpoint_row(
        &self,
        seq: i64,
        size: i64,
        body: String,
    ) -> Result<CheckpointRow, StoreError> {
        let bad = |detail: &str| StoreError::Malformed {
            path: self.path.clone(),
            what: "checkpoint",
            index: seq,
            detail: detail.into(),
        };
        Ok(CheckpointRow {
            seq: u64::try_from(seq).map_err(|_| bad("negative sequence number"))?,
            tree_size: u64::try_from(size).map_err(|_| bad("negative tree size"))?,
            body,
        })
    }

    /// Every write method calls this first: refused on a read-only store,
    /// and a connection a gateway operation left at `synchronous=NORMAL`
    /// is made durable (`FULL`) again before anything else is written.
    pub(crate) fn writable(&self) -> Result<(), StoreError> {
        self.writable_relaxed()?;
        self.sync_full()
            .map_err(|e| self.configure_error("synchronous=FULL", e))
    }

    /// [`SqliteStore::writable`] for the gateway's own operations, which
    /// choose `synchronous` themselves.
    pub(crate) fn writable_relaxed(&self) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly {
                path: self.path.clone(),
            });
        }
        Ok(())
    }

    /// Commits from here on wait for the disk (`synchronous=FULL`, the
    /// store's default). A no-op unless [`SqliteStore::sync_normal`] left
    /// the connection relaxed: `PRAGMA synchronous` is parsed again on
    /// every run, so it is switched only when it changes.
    pub(crate) fn sync_full(&self) -> rusqlite::Result<()> {
        if self.relaxed.get() {
            self.conn.execute_batch("PRAGMA synchronous = FULL")?;
            self.relaxed.set(false);
        }
        Ok(())
    }

    /// Commits from here on do not wait for the disk
    /// (`synchronous=NORMAL`; WAL keeps their order), for the gateway's
    /// draws and settlements, until [`SqliteStore::sync_full`] or the next
    /// other write. Left so between gateway operations.
    pub(crate) fn sync_normal(&self) -> rusqlite::Result<()> {
        if !self.relaxed.get() {
            self.conn.execute_batch("PRAGMA synchronous = NORMAL")?;
            self.relaxed.set(true);
        }
        Ok(())
    }
}

/// A human description when the error means the file itself is damaged.
fn corruption(e: &rusqlite::Error) -> Option<String> {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => Some("file is not a SQLite database".into()),
        Some(ErrorCode::DatabaseCorrupt) => Some("database file is corrupt or truncated".into()),
        _ => None,
    }
}

fn to_i64(path: &Path, what: &'static str, v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Malformed {
        path: path.to_owned(),
        what,
        index: i64::MAX,
        detail: format!("{v} does not fit a signed 64-bit integer"),
    })
}

impl AuditStore for SqliteStore {
    fn append_records(
        &mut self,
        tenant: &TenantId,
        records: &[NewRecord<'_>],
    ) -> Result<(), StoreError> {
        self.writable()?;
        let Some(first) = records.first() else {
            return Ok(());
        };
        let path = self.path.clone();
        let err = |source: rusqlite::Error| StoreError::AppendRecords {
            path: path.clone(),
            source: DbError::sqlite(source),
        };
        // IMMEDIATE: take the write lock before reading the log's length, so
        // no other connection (thread or process) can append between the
        // check and the inserts. Waits up to the busy timeout for the lock.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let count: i64 = tx
            .prepare_cached("SELECT coalesce(max(idx) + 1, 0) FROM audit_records WHERE tenant = ?1")
            .and_then(|mut s| s.query_row([tenant.as_str()], |r| r.get(0)))
            .map_err(err)?;
        let found = u64::try_from(count).map_err(|_| StoreError::Malformed {
            path: path.clone(),
            what: "record",
            index: count,
            detail: "negative index".into(),
        })?;
        if found != first.index {
            return Err(StoreError::HeadMoved {
                path,
                expected: first.index,
                found,
            });
        }
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO audit_records (tenant, idx, body, chain) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(err)?;
            for r in records {
                let idx = to_i64(&path, "record", r.index)?;
                stmt.execute(params![tenant.as_str(), idx, r.body, &r.chain[..]])
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    fn append_checkpoint(
        &mut self,
        tenant: &TenantId,
        cp: &CheckpointRow,
    ) -> Result<(), StoreError> {
        self.writable()?;
        let seq = to_i64(&self.path, "checkpoint", cp.seq)?;
        let size = to_i64(&self.path, "checkpoint", cp.tree_size)?;
        let path = self.path.clone();
        let err = |source: rusqlite::Error| StoreError::AppendCheckpoint {
            path: path.clone(),
            source: DbError::sqlite(source),
        };
        // Its own write transaction (an error inside a read snapshot, rather
        // than an insert that the snapshot's end would roll back).
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        tx.prepare_cached(
            "INSERT INTO audit_checkpoints (tenant, seq, tree_size, body) VALUES (?1, ?2, ?3, ?4)",
        )
        .and_then(|mut s| s.execute(params![tenant.as_str(), seq, size, cp.body]))
        .map_err(err)?;
        tx.commit().map_err(err)
    }

    fn record_count(&self, tenant: &TenantId) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn
            .prepare_cached("SELECT coalesce(max(idx) + 1, 0) FROM audit_records WHERE tenant = ?1")
            .and_then(|mut s| s.query_row([tenant.as_str()], |r| r.get(0)))
            .map_err(|e| self.read_error("audit record count", e))?;
        u64::try_from(n).map_err(|_| StoreError::Malformed {
            path: self.path.clone(),
            what: "record",
            index: n,
            detail: "negative index".into(),
        })
    }

    fn for_each_record(
        &self,
        tenant: &TenantId,
        from: u64,
        visit: &mut dyn FnMut(RecordRef<'_>) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        let from = to_i64(&self.path, "record", from)?;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT idx, body, chain FROM audit_records WHERE tenant = ?1 AND idx >= ?2 ORDER BY idx")
            .map_err(|e| self.read_error("audit records", e))?;
        let mut rows = stmt
            .query(params![tenant.as_str(), from])
            .map_err(|e| self.read_error("audit records", e))?;
        while let Some(row) = rows
            .next()
            .map_err(|e| self.read_error("audit records", e))?
        {
            let idx: i64 = row
                .get(0)
                .map_err(|e| self.read_error("audit record index", e))?;
            let malformed = |detail: String| StoreError::Malformed {
                path: self.path.clone(),
                what: "record",
                index: idx,
                detail,
            };
            let index = u64::try_from(idx).map_err(|_| malformed("negative index".into()))?;
            let body = row
                .get_ref(1)
                .map_err(|e| self.read_error("audit record body", e))?
                .as_blob()
                .map_err(|e| malformed(format!("body: {e}")))?;
            let chain = row
                .get_ref(2)
                .map_err(|e| self.read_error("audit record chain", e))?
                .as_blob()
                .map_err(|e| malformed(format!("chain: {e}")))?;
            if visit(RecordRef { index, body, chain }).is_break() {
                break;
            }
        }
        Ok(())
    }

    fn checkpoints(&self, tenant: &TenantId) -> Result<Vec<CheckpointRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, tree_size, body FROM audit_checkpoints WHERE tenant = ?1 ORDER BY seq",
            )
            .map_err(|e| self.read_error("audit checkpoints", e))?;
        let rows = stmt
            .query_map([tenant.as_str()], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(|e| self.read_error("audit checkpoints", e))?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, size, body) = row.map_err(|e| self.read_error("audit checkpoints", e))?;
            out.push(self.checkpoint_row(seq, size, body)?);
        }
        Ok(out)
    }

    fn last_checkpoint(&self, tenant: &TenantId) -> Result<Option<CheckpointRow>, StoreError> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT seq, tree_size, body FROM audit_checkpoints WHERE tenant = ?1 ORDER BY seq DESC LIMIT 1",
            )
            .and_then(|mut s| {
                s.query_row([tenant.as_str()], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })
                .optional()
            })
            .map_err(|e| self.read_error("audit checkpoints", e))?;
        row.map(|(seq, size, body)| self.checkpoint_row(seq, size, body))
            .transpose()
    }

    fn begin_snapshot(&self) -> Result<(), StoreError> {
        let err = |what: &'static str, source: rusqlite::Error| StoreError::Snapshot {
            path: self.path.clone(),
            what,
            source: DbError::sqlite(source),
        };
        self.conn
            .execute_batch("BEGIN DEFERRED")
            .map_err(|e| err("begin", e))?;
        // A deferred transaction takes its snapshot at its first read.
        if let Err(e) = self
            .conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
                r.get::<_, i64>(0)
            })
        {
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(self.read_error("schema", e));
        }
        Ok(())
    }

    fn end_snapshot(&self) -> Result<(), StoreError> {
        if self.conn.is_autocommit() {
            return Ok(());
        }
        self.conn
            .execute_batch("ROLLBACK")
            .map_err(|source: rusqlite::Error| StoreError::Snapshot {
                path: self.path.clone(),
                what: "end",
                source: DbError::sqlite(source),
            })
    }

    fn missing_guards(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT EXISTS(SELECT 1 FROM sqlite_schema WHERE type = 'trigger' AND name = ?1)",
            )
            .map_err(|e| self.read_error("schema", e))?;
        let mut missing = Vec::new();
        for g in GUARDS {
            let present: bool = stmt
                .query_row([g], |r| r.get(0))
                .map_err(|e| self.read_error("schema", e))?;
            if !present {
                missing.push((*g).to_owned());
            }
        }
        Ok(missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> TenantId {
        TenantId::default_tenant()
    }

    fn rec(index: u64, body: &[u8]) -> NewRecord<'_> {
        NewRecord {
            index,
            body,
            chain: [index as u8; 32],
        }
    }

    #[test]
    fn migrations_are_recorded_and_idempotent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.db");
        drop(SqliteStore::open(&path).expect("first open"));
        let s = SqliteStore::open(&path).expect("second open");
        let rows: Vec<(String, i64)> = s
            .conn
            .prepare("SELECT backend, version FROM schema_migrations ORDER BY version")
            .and_then(|mut st| st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .expect("query");
        assert_eq!(
            rows,
            vec![
                ("sqlite".to_owned(), 1),
                ("sqlite".to_owned(), 2),
                ("sqlite".to_owned(), 3),
                ("sqlite".to_owned(), 4),
                ("sqlite".to_owned(), 5),
                ("sqlite".to_owned(), 6),
                ("sqlite".to_owned(), 7),
                ("sqlite".to_owned(), 8)
            ]
        );
        let mode: String = s
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("mode");
        assert_eq!(mode, "wal");
        let sync: i64 = s
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .expect("sync");
        assert_eq!(sync, 2, "synchronous must be FULL");
    }

    #[test]
    fn records_are_tenant_scoped_and_append_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.db");
        let mut s = SqliteStore::open(&path).expect("open");
        let other = TenantId::new("acme").expect("id");
        s.append_records(&tenant(), &[rec(0, b"a"), rec(1, b"b")])
            .expect("append");
        s.append_records(&other, &[rec(0, b"x")])
            .expect("append other");
        assert_eq!(s.record_count(&tenant()).expect("count"), 2);
        assert_eq!(s.record_count(&other).expect("count"), 1);

        let mut seen = Vec::new();
        s.for_each_record(&tenant(), 1, &mut |r| {
            seen.push((r.index, r.body.to_vec()));
            ControlFlow::Continue(())
        })
        .expect("read");
        assert_eq!(seen, vec![(1, b"b".to_vec())]);

        // A duplicate index fails and the whole batch is rolled back.
        let err = s
            .append_records(&tenant(), &[rec(2, b"c"), rec(1, b"dup")])
            .expect_err("must fail");
        assert!(matches!(err, StoreError::AppendRecords { .. }), "{err}");
        assert_eq!(s.record_count(&tenant()).expect("count"), 2);

        for sql in [
            "UPDATE audit_records SET body = x'00'",
            "DELETE FROM audit_records WHERE idx = 1",
        ] {
            let e = s.conn.execute(sql, []).expect_err("must fail");
            assert!(e.to_string().contains("append-only"), "{sql}: {e}");
        }
        s.append_checkpoint(
            &tenant(),
            &CheckpointRow {
                seq: 0,
                tree_size: 2,
                body: "cp".into(),
            },
        )
        .expect("cp");
        let e = s
            .conn
            .execute("DELETE FROM audit_checkpoints", [])
            .expect_err("must fail");
        assert!(e.to_string().contains("append-only"), "{e}");
        assert!(s.missing_guards().expect("guards").is_empty());
        s.conn
            .execute_batch("DROP TRIGGER audit_records_no_update")
            .expect("drop");
        assert_eq!(
            s.missing_guards().expect("guards"),
            vec!["audit_records_no_update".to_owned()]
        );
    }

    /// Two connections (as two processes would have): a batch that does not
    /// start at the log's current length is refused whole, naming both.
    #[test]
    fn append_after_another_writer_is_refused_and_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.db");
        let mut a = SqliteStore::open(&path).expect("a");
        let mut b = SqliteStore::open(&path).expect("b");
        a.append_records(&tenant(), &[rec(0, b"a0")]).expect("a0");
        b.append_records(&tenant(), &[rec(1, b"b1"), rec(2, b"b2")])
            .expect("b continues after a");
        let err = a
            .append_records(&tenant(), &[rec(1, b"stale"), rec(2, b"stale")])
            .expect_err("a is behind");
        match err {
            StoreError::HeadMoved {
                expected, found, ..
            } => assert_eq!((expected, found), (1, 3)),
            other => panic!("{other}"),
        }
        // A batch that would leave a gap is refused too.
        assert!(matches!(
            a.append_records(&tenant(), &[rec(5, b"gap")]),
            Err(StoreError::HeadMoved {
                expected: 5,
                found: 3,
                ..
            })
        ));
        assert_eq!(a.record_count(&tenant()).expect("count"), 3);
        a.append_records(&tenant(), &[rec(3, b"a3")]).expect("a3");
    }

    /// A read snapshot sees the database as it was when it began, whatever
    /// another connection commits meanwhile; appending inside one fails.
    #[test]
    fn snapshot_is_isolated_from_later_commits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.db");
        let mut w = SqliteStore::open(&path).expect("writer");
        w.append_records(&tenant(), &[rec(0, b"a")]).expect("a");
        let cp = |seq| CheckpointRow {
            seq,
            tree_size: seq + 1,
            body: format!("cp{seq}"),
        };
        w.append_checkpoint(&tenant(), &cp(0)).expect("cp0");
        let mut r = SqliteStore::open(&path).expect("reader");
        r.begin_snapshot().expect("begin");
        w.append_records(&tenant(), &[rec(1, b"b")]).expect("b");
        w.append_checkpoint(&tenant(), &cp(1)).expect("cp1");
        assert_eq!(r.record_count(&tenant()).expect("count"), 1);
        assert_eq!(r.checkpoints(&tenant()).expect("cps"), vec![cp(0)]);
        assert_eq!(r.last_checkpoint(&tenant()).expect("last"), Some(cp(0)));
        assert!(r.append_checkpoint(&tenant(), &cp(2)).is_err());
        r.end_snapshot().expect("end");
        r.end_snapshot().expect("ending twice is a no-op");
        assert_eq!(r.record_count(&tenant()).expect("count"), 2);
        assert_eq!(r.last_checkpoint(&tenant()).expect("last"), Some(cp(1)));
    }

    /// Several processes opening a fresh database at once all succeed: the
    /// migrations run once, in one write transaction.
    #[test]
    fn concurrent_first_opens_migrate_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.db");
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || SqliteStore::open(&path).map(drop))
            })
            .collect();
        for t in threads {
            t.join().expect("thread").expect("open");
        }
        let s = SqliteStore::open_read_only(&path).expect("ro");
        assert_eq!(s.schema_version().expect("version"), latest_version());
    }

    #[test]
    fn read_only_open_refuses_writes_and_garbage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.db");
        drop(SqliteStore::open(&path).expect("open"));
        let mut ro = SqliteStore::open_read_only(&path).expect("ro");
        assert!(matches!(
            ro.append_records(&tenant(), &[rec(0, b"a")]),
            Err(StoreError::ReadOnly { .. })
        ));

        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, vec![b'x'; 8192]).expect("write");
        let err = SqliteStore::open_read_only(&junk).expect_err("must fail");
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert!(
            err.to_string()
                .ends_with("not a usable Airlock database: file is not a SQLite database"),
            "{err}"
        );
    }
}
