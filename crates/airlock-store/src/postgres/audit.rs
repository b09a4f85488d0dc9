//! [`AuditStore`] on PostgreSQL: each tenant's log is one chain that every
//! replica appends to. An append locks the tenant's row in `audit_heads`
//! (`SELECT … FOR UPDATE`), so appends of one tenant are serialized across
//! connections and processes; under that lock it compares the log's length
//! with the batch's first index (a compare-and-swap: [`StoreError::HeadMoved`]
//! when another writer got there first) and inserts the batch, all in one
//! transaction.

use super::{PgStore, TxError, tenant_eq, to_i64};
use crate::{AuditStore, CheckpointRow, NewRecord, RecordRef, StoreError};
use airlock_types::TenantId;
use std::ops::ControlFlow;

/// The append-only triggers `missing_guards` expects, with their tables.
const GUARDS: &[(&str, &str)] = &[
    ("audit_records", "audit_records_no_update"),
    ("audit_records", "audit_records_no_delete"),
    ("audit_records", "audit_records_no_truncate"),
    ("audit_checkpoints", "audit_checkpoints_no_update"),
    ("audit_checkpoints", "audit_checkpoints_no_delete"),
    ("audit_checkpoints", "audit_checkpoints_no_truncate"),
];

/// Records read per round trip by `for_each_record`.
const PAGE: i64 = 1000;

impl PgStore {
    fn count(&self, c: &mut postgres::Client, tenant: &TenantId) -> Result<u64, TxError> {
        let n: i64 = c
            .query_one(
                concat!(
                    "SELECT coalesce(max(idx) + 1, 0) FROM audit_records WHERE ",
                    tenant_eq!("tenant", "$1")
                ),
                &[&tenant.as_str()],
            )?
            .try_get(0)?;
        u64::try_from(n).map_err(|_| {
            TxError::Store(StoreError::Malformed {
                path: self.label().to_owned(),
                what: "record",
                index: n,
                detail: "negative index".into(),
            })
        })
    }

    fn checkpoint_row(&self, seq: i64, size: i64, body: String) -> Result<CheckpointRow, TxError> {
        let bad = |detail: &str| {
            TxError::Store(StoreError::Malformed {
                path: self.label().to_owned(),
                what: "checkpoint",
                index: seq,
                detail: detail.into(),
            })
        };
        Ok(CheckpointRow {
            seq: u64::try_from(seq).map_err(|_| bad("negative sequence number"))?,
            tree_size: u64::try_from(size).map_err(|_| bad("negative tree size"))?,
            body,
        })
    }
}

impl AuditStore for PgStore {
    fn append_records(
        &mut self,
        tenant: &TenantId,
        records: &[NewRecord<'_>],
    ) -> Result<(), StoreError> {
        let Some(first) = records.first() else {
            return Ok(());
        };
        let idx: Vec<i64> = records
            .iter()
            .map(|r| to_i64(self.label(), "record", r.index))
            .collect::<Result<_, _>>()?;
        let bodies: Vec<&[u8]> = records.iter().map(|r| r.body).collect();
        let chains: Vec<&[u8]> = records.iter().map(|r| &r.chain[..]).collect();
        self.tx(Some(tenant), true, "audit append", |c| {
            c.execute(
                "INSERT INTO audit_heads (tenant) VALUES ($1) ON CONFLICT DO NOTHING",
                &[&tenant.as_str()],
            )?;
            // The chain head's row lock: held to commit, so no other
            // connection appends to this tenant's log in between. The next
            // statement (READ COMMITTED) sees everything committed before.
            c.query_one(
                concat!(
                    "SELECT tenant FROM audit_heads WHERE ",
                    tenant_eq!("tenant", "$1"),
                    " FOR UPDATE"
                ),
                &[&tenant.as_str()],
            )?;
            let found = self.count(c, tenant)?;
            if found != first.index {
                return Err(TxError::Store(StoreError::HeadMoved {
                    path: self.label().to_owned(),
                    expected: first.index,
                    found,
                }));
            }
            // One statement for the whole batch.
            c.execute(
                "INSERT INTO audit_records (tenant, idx, body, chain) \
                 SELECT $1, i, b, c FROM unnest($2::bigint[], $3::bytea[], $4::bytea[]) AS u(i, b, c)",
                &[&tenant.as_str(), &idx, &bodies, &chains],
            )?;
            Ok(())
        })
    }

    fn append_checkpoint(
        &mut self,
        tenant: &TenantId,
        cp: &CheckpointRow,
    ) -> Result<(), StoreError> {
        let seq = to_i64(self.label(), "checkpoint", cp.seq)?;
        let size = to_i64(self.label(), "checkpoint", cp.tree_size)?;
        self.tx(Some(tenant), true, "audit checkpoint append", |c| {
            c.execute(
                "INSERT INTO audit_checkpoints (tenant, seq, tree_size, body) VALUES ($1, $2, $3, $4)",
                &[&tenant.as_str(), &seq, &size, &cp.body],
            )?;
            Ok(())
        })
    }

    fn record_count(&self, tenant: &TenantId) -> Result<u64, StoreError> {
        self.tx(Some(tenant), false, "audit record count", |c| {
            self.count(c, tenant)
        })
    }

    fn for_each_record(
        &self,
        tenant: &TenantId,
        from: u64,
        visit: &mut dyn FnMut(RecordRef<'_>) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        let mut next = to_i64(self.label(), "record", from)?;
        // Page by index; outside a snapshot each page is its own
        // transaction, which is fine for an append-only log read in order.
        loop {
            let rows = self.tx(Some(tenant), false, "audit records", |c| {
                Ok(c.query(
                    concat!(
                        "SELECT idx, body, chain FROM audit_records WHERE ",
                        tenant_eq!("tenant", "$1"),
                        " AND idx >= $2 ORDER BY idx LIMIT $3"
                    ),
                    &[&tenant.as_str(), &next, &PAGE],
                )?)
            })?;
            let full = rows.len() as i64 == PAGE;
            for row in &rows {
                let idx: i64 = row.try_get(0).map_err(|e| self.err("audit records", e))?;
                let body: &[u8] = row.try_get(1).map_err(|e| self.err("audit records", e))?;
                let chain: &[u8] = row.try_get(2).map_err(|e| self.err("audit records", e))?;
                let index = u64::try_from(idx).map_err(|_| StoreError::Malformed {
                    path: self.label().to_owned(),
                    what: "record",
                    index: idx,
                    detail: "negative index".into(),
                })?;
                if visit(RecordRef { index, body, chain }).is_break() {
                    return Ok(());
                }
                next = idx + 1;
            }
            if !full {
                return Ok(());
            }
        }
    }

    fn checkpoints(&self, tenant: &TenantId) -> Result<Vec<CheckpointRow>, StoreError> {
        self.tx(Some(tenant), false, "audit checkpoints", |c| {
            c.query(
                concat!(
                    "SELECT seq, tree_size, body FROM audit_checkpoints WHERE ",
                    tenant_eq!("tenant", "$1"),
                    " ORDER BY seq"
                ),
                &[&tenant.as_str()],
            )?
            .iter()
            .map(|r| self.checkpoint_row(r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))
            .collect()
        })
    }

    fn last_checkpoint(&self, tenant: &TenantId) -> Result<Option<CheckpointRow>, StoreError> {
        self.tx(Some(tenant), false, "audit checkpoints", |c| {
            c.query_opt(
                concat!(
                    "SELECT seq, tree_size, body FROM audit_checkpoints WHERE ",
                    tenant_eq!("tenant", "$1"),
                    " ORDER BY seq DESC LIMIT 1"
                ),
                &[&tenant.as_str()],
            )?
            .map(|r| self.checkpoint_row(r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))
            .transpose()
        })
    }

    fn begin_snapshot(&self) -> Result<(), StoreError> {
        let mut conn = self.borrow()?;
        if conn.snapshot {
            return Ok(());
        }
        let c = &mut conn.client;
        let res = c
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            // The snapshot is taken at the transaction's first statement.
            .and_then(|()| c.batch_execute("SELECT 1"));
        if let Err(e) = res {
            let _ = c.batch_execute("ROLLBACK");
            return Err(StoreError::Snapshot {
                path: self.label().to_owned(),
                what: "begin",
                source: super::db_error(e),
            });
        }
        conn.snapshot = true;
        Ok(())
    }

    fn end_snapshot(&self) -> Result<(), StoreError> {
        let mut conn = self.borrow()?;
        if !conn.snapshot {
            return Ok(());
        }
        conn.snapshot = false;
        conn.client
            .batch_execute("ROLLBACK")
            .map_err(|e| StoreError::Snapshot {
                path: self.label().to_owned(),
                what: "end",
                source: super::db_error(e),
            })
    }

    fn missing_guards(&self) -> Result<Vec<String>, StoreError> {
        self.tx(None, false, "audit guards", |c| {
            let mut missing = Vec::new();
            for (table, name) in GUARDS {
                let present: bool = c
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM pg_trigger t \
                           JOIN pg_class r ON r.oid = t.tgrelid \
                           JOIN pg_namespace n ON n.oid = r.relnamespace \
                           WHERE n.nspname = current_schema() AND r.relname = $1 \
                             AND t.tgname = $2 AND t.tgenabled <> 'D')",
                        &[table, name],
                    )?
                    .try_get(0)?;
                if !present {
                    missing.push((*name).to_owned());
                }
            }
            Ok(missing)
        })
    }

    fn shared_by_nodes(&self) -> bool {
        true
    }
}
