//! Airlock's storage boundary.
//!
//! This crate owns the database: opening it, migrating its schema, and the
//! queries the rest of Airlock needs. Today that is SQLite (bundled, WAL
//! journal, `synchronous=FULL`, so a committed transaction is on disk when
//! `commit` returns). The API is the [`AuditStore`] trait, and every query
//! takes the [`TenantId`] it concerns, so a PostgreSQL backend can follow
//! without touching callers. Migrations are versioned per backend in a
//! `schema_migrations` table. Several processes may use one database: every
//! write is its own short `BEGIN IMMEDIATE` transaction, audit appends are a
//! compare-and-swap on the log's length, and a connection waits up to 30 s
//! for another's write lock rather than failing.
//!
//! It also holds [`read_limited`], the bounded read of a file that
//! configuration or a flag names, shared by every crate that reads one.
//!
//! It trusts its callers (the audit writer) to hand it well-formed records and
//! trusts the SQLite library. It does NOT guarantee that the file it reads was
//! not edited behind its back: an attacker with file access can drop the
//! append-only triggers and rewrite rows. Detecting that is the audit crate's
//! job (hash chain, Merkle tree, signed checkpoints); this crate only makes
//! honest mistakes fail loudly and opens the file read-only when asked.
#![forbid(unsafe_code)]

mod accounts;
mod approvals;
mod budget;
mod control;
mod control_sqlite;
mod gateway;
mod limited;
mod mcp;
mod postgres;
mod secrets;
mod sqlite;

pub use accounts::{AccountStore, SessionRow, UserDeleted, UserRow};
pub use approvals::{ApprovalRow, ApprovalState, NewApproval, TaintRow};
pub use budget::{BudgetState, BudgetStore, Reserve};
pub use control::{
    AgentRow, ApiTokenRow, ControlStore, PolicyVersionRow, RunRow, RunState, TeamRow, TenantRow,
};
pub use gateway::{
    BudgetRow, BudgetSpend, BudgetUsage, CallBegin, CallEnd, CallScopes, GatewayDone, GatewayOp,
    KeyRow, NewCall, StoredResponse,
};
pub use limited::read_limited;
pub use mcp::{PinStamp, ToolPin};
pub use postgres::{LATEST_PG_VERSION, PgBudget, PgConnectOptions, PgStore, migrate as pg_migrate};
pub use secrets::{DataKeyRow, MasterRow, SecretRow, SecretStore};
pub use sqlite::SqliteStore;

use airlock_types::TenantId;
use std::ops::ControlFlow;
use std::path::PathBuf;

/// The database engine's own error, kept opaque so that callers do not
/// depend on which engine (SQLite today, PostgreSQL next) produced it. Its
/// message is the engine's; its source chain is the engine's.
#[derive(Debug)]
pub struct DbError(pub(crate) Box<dyn std::error::Error + Send + Sync + 'static>);

impl DbError {
    pub(crate) fn sqlite(e: rusqlite::Error) -> DbError {
        DbError(Box::new(e))
    }
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for DbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// A storage operation failed. Each variant names the operation and where.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened.
    #[error("{}: cannot open database: {source}", path.display())]
    Open { path: PathBuf, source: DbError },
    /// The file is not a usable Airlock database (corrupt, truncated, wrong file).
    #[error("{}: not a usable Airlock database: {detail}", path.display())]
    Corrupt { path: PathBuf, detail: String },
    /// A pragma (journal mode, synchronous, ...) could not be set.
    #[error("{}: cannot configure database ({what}): {source}", path.display())]
    Configure {
        path: PathBuf,
        what: &'static str,
        source: DbError,
    },
    /// A schema migration failed.
    #[error("{}: migration {version} ({name}) failed: {source}", path.display())]
    Migrate {
        path: PathBuf,
        version: u32,
        name: &'static str,
        source: DbError,
    },
    /// The schema is older or newer than this build knows.
    #[error("{}: database schema is at version {found}, this build expects {expected}{hint}", path.display())]
    SchemaVersion {
        path: PathBuf,
        found: u32,
        expected: u32,
        hint: &'static str,
    },
    /// Appending audit records failed; nothing of the batch was stored.
    #[error("{}: cannot append audit records: {source}", path.display())]
    AppendRecords { path: PathBuf, source: DbError },
    /// Appending a checkpoint failed.
    #[error("{}: cannot append audit checkpoint: {source}", path.display())]
    AppendCheckpoint { path: PathBuf, source: DbError },
    /// A read query failed.
    #[error("{}: cannot read {what}: {source}", path.display())]
    Read {
        path: PathBuf,
        what: &'static str,
        source: DbError,
    },
    /// A stored value has the wrong shape (negative index, wrong hash length).
    #[error("{}: {what} at index {index} is malformed: {detail}", path.display())]
    Malformed {
        path: PathBuf,
        what: &'static str,
        index: i64,
        detail: String,
    },
    /// A write was attempted on a store opened read-only.
    #[error("{}: store is open read-only", path.display())]
    ReadOnly { path: PathBuf },
    /// Writing a vault record (master record, data key, secret) failed.
    #[error("{}: cannot write {what}: {source}", path.display())]
    WriteVault {
        path: PathBuf,
        what: &'static str,
        source: DbError,
    },
    /// A vault record changed between read and write (a concurrent change).
    #[error("{}: {what} changed concurrently; nothing was written, retry", path.display())]
    VaultConflict { path: PathBuf, what: &'static str },
    /// Another writer appended first: the batch was to start at `expected`
    /// but the log already holds `found` records. Nothing was written; the
    /// caller reads the new records and retries after them.
    #[error("{}: audit log moved on (batch starts at record {expected}, the log holds {found}); nothing was written", path.display())]
    HeadMoved {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    /// A read snapshot could not be started or ended.
    #[error("{}: cannot {what} a read snapshot: {source}", path.display())]
    Snapshot {
        path: PathBuf,
        what: &'static str,
        source: DbError,
    },
    /// An approvals or run-taint query failed.
    #[error("{}: approvals {what} failed: {source}", path.display())]
    Approvals {
        path: PathBuf,
        what: &'static str,
        source: DbError,
    },
    /// A gateway query (budgets, calls, virtual keys) failed.
    #[error("{}: gateway {what} failed: {source}", path.display())]
    Gateway {
        path: PathBuf,
        what: &'static str,
        source: DbError,
    },
    /// A control-plane query (tenants, teams, agents, policies, tokens, runs) failed.
    #[error("{}: control {what} failed: {source}", path.display())]
    Control {
        path: PathBuf,
        what: &'static str,
        source: DbError,
    },
    /// A budget period this backend cannot keep.
    #[error("budget period {period:?}: this database keeps `total` budgets only")]
    BudgetPeriod { period: String },
    /// The PostgreSQL connection settings are unusable (bad URL, TLS
    /// settings, a remote database without `sslmode=require`). Never holds
    /// the password.
    #[error("PostgreSQL settings: {detail}")]
    PgConfig { detail: String },
    /// The database cannot be reached or cannot serve now (connection
    /// refused or lost, shutting down, too many connections). Nothing of
    /// the operation was written; retry later (an API answers 503).
    #[error("{}: database unavailable ({what}): {source}", path.display())]
    Unavailable {
        path: PathBuf,
        what: &'static str,
        source: DbError,
    },
    /// A PostgreSQL statement failed; nothing of its transaction was written.
    #[error("{}: {what} failed: {source}", path.display())]
    Postgres {
        path: PathBuf,
        what: &'static str,
        source: DbError,
    },
    /// The PostgreSQL role Airlock connected as could bypass row-level
    /// security (superuser, BYPASSRLS, table owner): refused to serve.
    #[error("{}: refusing to serve as role {role:?}: {detail}", path.display())]
    UnsafeRole {
        path: PathBuf,
        role: String,
        detail: String,
    },
    /// A write was attempted inside a read snapshot.
    #[error("{}: cannot {what} inside a read snapshot", path.display())]
    PgSnapshotWrite { path: PathBuf, what: &'static str },
    /// The store was called again from inside one of its own callbacks.
    #[error("{}: store called re-entrantly", path.display())]
    Reentered { path: PathBuf },
    /// An MCP gateway query (tool pins) failed.
    #[error("{}: MCP {what} failed: {source}", path.display())]
    Mcp {
        path: PathBuf,
        what: &'static str,
        source: DbError,
    },
    /// The tool pins' change stamp (a file beside the database) could not
    /// be read or written.
    #[error("{}: MCP pin change stamp: {source}", path.display())]
    PinStamp {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One audit record to append. `index` must be the next index of the tenant's log.
#[derive(Debug, Clone, Copy)]
pub struct NewRecord<'a> {
    /// Position in the tenant's log (0-based, contiguous).
    pub index: u64,
    /// The canonical encoding of the event (opaque to the store).
    pub body: &'a [u8],
    /// The chain hash ending at this record.
    pub chain: [u8; 32],
}

/// One stored audit record, borrowed from the database row.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    /// Position in the tenant's log.
    pub index: u64,
    /// The canonical encoding of the event.
    pub body: &'a [u8],
    /// The stored chain hash (not yet verified).
    pub chain: &'a [u8],
}

/// One stored checkpoint: its sequence number, the tree size it covers and its
/// signed body (opaque to the store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRow {
    /// 0-based sequence number of the checkpoint in the tenant's log.
    pub seq: u64,
    /// Number of records it covers.
    pub tree_size: u64,
    /// The signed checkpoint as text.
    pub body: String,
}

/// The audit log's storage. Appends are durable when they return `Ok`.
///
/// Implementations must make each call atomic: either the whole batch is
/// stored or none of it. Several writers (threads or processes, each with its
/// own store) may append to one log: an append is a compare-and-swap on the
/// log's length, so a writer that missed another's records is told
/// ([`StoreError::HeadMoved`]) instead of forking or overwriting the chain.
pub trait AuditStore: Send + std::fmt::Debug {
    /// Append a batch of contiguous records in one durable transaction, only
    /// if the first one's index is the log's current length (checked inside
    /// the same write transaction); otherwise [`StoreError::HeadMoved`] and
    /// nothing is written.
    fn append_records(
        &mut self,
        tenant: &TenantId,
        records: &[NewRecord<'_>],
    ) -> Result<(), StoreError>;
    /// Append one checkpoint durably.
    fn append_checkpoint(
        &mut self,
        tenant: &TenantId,
        cp: &CheckpointRow,
    ) -> Result<(), StoreError>;
    /// Number of records in the tenant's log (the highest index plus one, or 0).
    fn record_count(&self, tenant: &TenantId) -> Result<u64, StoreError>;
    /// Visit the tenant's records with `index >= from` in index order until
    /// `visit` breaks.
    fn for_each_record(
        &self,
        tenant: &TenantId,
        from: u64,
        visit: &mut dyn FnMut(RecordRef<'_>) -> ControlFlow<()>,
    ) -> Result<(), StoreError>;
    /// All of the tenant's checkpoints, in sequence order.
    fn checkpoints(&self, tenant: &TenantId) -> Result<Vec<CheckpointRow>, StoreError>;
    /// The tenant's checkpoint with the highest sequence number.
    fn last_checkpoint(&self, tenant: &TenantId) -> Result<Option<CheckpointRow>, StoreError> {
        Ok(self.checkpoints(tenant)?.pop())
    }
    /// Start a read snapshot: until [`AuditStore::end_snapshot`], every read
    /// through this store sees the database as it was when this returned,
    /// whatever other writers commit meanwhile. Appends are refused inside.
    fn begin_snapshot(&self) -> Result<(), StoreError>;
    /// End the read snapshot (a no-op when none is open).
    fn end_snapshot(&self) -> Result<(), StoreError>;
    /// Names of append-only guards (triggers) that are expected but missing.
    fn missing_guards(&self) -> Result<Vec<String>, StoreError>;

    /// Whether several nodes, each with its own checkpoint file, append to
    /// this log (a database server shared by replicas): a checkpoint another
    /// node wrote is then in the database but not in this node's file.
    fn shared_by_nodes(&self) -> bool {
        false
    }
}
