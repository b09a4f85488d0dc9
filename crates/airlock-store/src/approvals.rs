//! Approvals and run taint.
//!
//! An approval row is proposed `pending`; a reviewer moves it to `approved`
//! (only with the hash of what they were shown, and only before it
//! expires) or `denied`; the waiting call moves an `approved` row to
//! `consumed` (it runs once), or a `pending` one to `expired`. Each change
//! is one `UPDATE … WHERE state = <the state it leaves>`, atomic in SQLite
//! across connections and processes: of two consumers, exactly one sees
//! its update change a row.

use crate::{DbError, SqliteStore, StoreError};
use airlock_types::TenantId;
use rusqlite::{OptionalExtension as _, params};

/// Where an approval is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApprovalState {
    /// Proposed, waiting for a reviewer.
    Pending,
    /// Approved by a reviewer, not used yet.
    Approved,
    /// Refused by a reviewer.
    Denied,
    /// Not decided in time.
    Expired,
    /// Approved and used (once).
    Consumed,
}

impl ApprovalState {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Denied => "denied",
            ApprovalState::Expired => "expired",
            ApprovalState::Consumed => "consumed",
        }
    }

    /// The state named `s`.
    pub fn parse(s: &str) -> Option<ApprovalState> {
        Some(match s {
            "pending" => ApprovalState::Pending,
            "approved" => ApprovalState::Approved,
            "denied" => ApprovalState::Denied,
            "expired" => ApprovalState::Expired,
            "consumed" => ApprovalState::Consumed,
            _ => return None,
        })
    }
}

/// A call proposed for approval.
#[derive(Debug, Clone)]
pub struct NewApproval<'a> {
    /// The approval's id (unique per tenant).
    pub id: &'a str,
    /// The run it is bound to.
    pub run: &'a str,
    /// The agent, if the run has one.
    pub agent: Option<&'a str>,
    /// The canonical JSON that was hashed (what the reviewer is shown).
    pub subject: &'a str,
    /// SHA-256 (lower-case hex) of `subject`.
    pub sha256: &'a str,
    /// The policy version that asked.
    pub policy_version: &'a str,
    /// Why approval is needed (a reason code).
    pub reason: &'a str,
    /// The run's taint labels, comma-separated.
    pub taint: &'a str,
    /// Now, microseconds since the epoch.
    pub created: i64,
    /// When it expires, microseconds since the epoch.
    pub expires: i64,
}

/// An approval as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRow {
    /// The id.
    pub id: String,
    /// The run it is bound to.
    pub run: String,
    /// The agent, if any.
    pub agent: Option<String>,
    /// The canonical JSON that was hashed.
    pub subject: String,
    /// Its SHA-256, lower-case hex.
    pub sha256: String,
    /// The policy version that asked.
    pub policy_version: String,
    /// Why approval is needed (a reason code).
    pub reason: String,
    /// Taint labels, comma-separated.
    pub taint: String,
    /// The state.
    pub state: ApprovalState,
    /// Created, microseconds since the epoch.
    pub created: i64,
    /// Expires, microseconds since the epoch.
    pub expires: i64,
    /// Who decided, when decided.
    pub decided_by: Option<String>,
    /// When decided (microseconds).
    pub decided_at: Option<i64>,
    /// The reviewer's note (a denial's reason).
    pub note: Option<String>,
}

/// One taint label of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaintRow {
    /// The label (`private_data`, `untrusted_content`).
    pub label: String,
    /// What first set it (a host or a namespaced tool).
    pub source: String,
    /// When (microseconds).
    pub at: i64,
}

const COLUMNS: &str = "id, run, agent, subject, sha256, policy_version, reason, taint, state, created, expires, decided_by, decided_at, note";

fn approval_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApprovalRow> {
    let state: String = r.get(8)?;
    let state = ApprovalState::parse(&state).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            8,
            rusqlite::types::Type::Text,
            format!("unknown approval state {state:?}").into(),
        )
    })?;
    Ok(ApprovalRow {
        id: r.get(0)?,
        run: r.get(1)?,
        agent: r.get(2)?,
        subject: r.get(3)?,
        sha256: r.get(4)?,
        policy_version: r.get(5)?,
        reason: r.get(6)?,
        taint: r.get(7)?,
        state,
        created: r.get(9)?,
        expires: r.get(10)?,
        decided_by: r.get(11)?,
        decided_at: r.get(12)?,
        note: r.get(13)?,
    })
}

impl SqliteStore {
    fn ap_err(&self, what: &'static str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Approvals {
            path: self.path().to_owned(),
            what,
            source: DbError::sqlite(source),
        }
    }

    /// Record a proposed call, `pending`.
    pub fn approval_insert(
        &self,
        tenant: &TenantId,
        a: &NewApproval<'_>,
    ) -> Result<(), StoreError> {
        self.writable()?;
        self.conn()
            .prepare_cached(
                "INSERT INTO approvals (tenant, id, run, agent, subject, sha256, policy_version, reason, taint, state, created, expires)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'pending', ?10, ?11)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    tenant.as_str(),
                    a.id,
                    a.run,
                    a.agent,
                    a.subject,
                    a.sha256,
                    a.policy_version,
                    a.reason,
                    a.taint,
                    a.created,
                    a.expires
                ])
            })
            .map(|_| ())
            .map_err(self.ap_err("insert"))
    }

    /// One approval.
    pub fn approval(&self, tenant: &TenantId, id: &str) -> Result<Option<ApprovalRow>, StoreError> {
        self.conn()
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM approvals WHERE tenant = ?1 AND id = ?2"
            ))
            .and_then(|mut st| {
                st.query_row(params![tenant.as_str(), id], approval_row)
                    .optional()
            })
            .map_err(self.ap_err("read"))
    }

    /// The tenant's approvals, oldest first; `state` filters.
    pub fn approvals(
        &self,
        tenant: &TenantId,
        state: Option<ApprovalState>,
    ) -> Result<Vec<ApprovalRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM approvals WHERE tenant = ?1 AND (?2 IS NULL OR state = ?2) ORDER BY created, id"
        );
        self.conn()
            .prepare_cached(&sql)
            .and_then(|mut st| {
                st.query_map(
                    params![tenant.as_str(), state.map(ApprovalState::as_str)],
                    approval_row,
                )?
                .collect()
            })
            .map_err(self.ap_err("list"))
    }

    /// Approve a pending, unexpired approval whose hash is `sha256`. `true`
    /// when this call approved it; `false` when nothing matched (wrong
    /// hash, already decided, expired, unknown).
    pub fn approval_approve(
        &self,
        tenant: &TenantId,
        id: &str,
        sha256: &str,
        by: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.writable()?;
        self.conn()
            .prepare_cached(
                "UPDATE approvals SET state = 'approved', decided_by = ?4, decided_at = ?5
                 WHERE tenant = ?1 AND id = ?2 AND state = 'pending' AND sha256 = ?3 AND expires > ?5",
            )
            .and_then(|mut st| st.execute(params![tenant.as_str(), id, sha256, by, now]))
            .map(|n| n == 1)
            .map_err(self.ap_err("approve"))
    }

    /// Deny a pending approval. `true` when this call denied it.
    pub fn approval_deny(
        &self,
        tenant: &TenantId,
        id: &str,
        by: &str,
        now: i64,
        note: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.writable()?;
        self.conn()
            .prepare_cached(
                "UPDATE approvals SET state = 'denied', decided_by = ?3, decided_at = ?4, note = ?5
                 WHERE tenant = ?1 AND id = ?2 AND state = 'pending'",
            )
            .and_then(|mut st| st.execute(params![tenant.as_str(), id, by, now, note]))
            .map(|n| n == 1)
            .map_err(self.ap_err("deny"))
    }

    /// Mark a still-pending approval expired (its waiter gave up, or its
    /// time passed). `true` when this call expired it.
    pub fn approval_expire(
        &self,
        tenant: &TenantId,
        id: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.writable()?;
        self.conn()
            .prepare_cached(
                "UPDATE approvals SET state = 'expired', decided_at = ?3
                 WHERE tenant = ?1 AND id = ?2 AND state = 'pending'",
            )
            .and_then(|mut st| st.execute(params![tenant.as_str(), id, now]))
            .map(|n| n == 1)
            .map_err(self.ap_err("expire"))
    }

    /// Use an approved approval whose hash is `sha256`, once. `true` for
    /// exactly one caller.
    pub fn approval_consume(
        &self,
        tenant: &TenantId,
        id: &str,
        sha256: &str,
    ) -> Result<bool, StoreError> {
        self.writable()?;
        self.conn()
            .prepare_cached(
                "UPDATE approvals SET state = 'consumed'
                 WHERE tenant = ?1 AND id = ?2 AND state = 'approved' AND sha256 = ?3",
            )
            .and_then(|mut st| st.execute(params![tenant.as_str(), id, sha256]))
            .map(|n| n == 1)
            .map_err(self.ap_err("consume"))
    }

    /// Set `label` on a run unless it is set. `true` when this call set it
    /// (the first source).
    pub fn taint_mark(
        &self,
        tenant: &TenantId,
        run: &str,
        label: &str,
        source: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.writable()?;
        self.conn()
            .prepare_cached(
                "INSERT INTO run_taint (tenant, run, label, source, at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (tenant, run, label) DO NOTHING",
            )
            .and_then(|mut st| st.execute(params![tenant.as_str(), run, label, source, now]))
            .map(|n| n == 1)
            .map_err(self.ap_err("taint mark"))
    }

    /// A run's taint labels.
    pub fn taint_labels(&self, tenant: &TenantId, run: &str) -> Result<Vec<TaintRow>, StoreError> {
        self.conn()
            .prepare_cached(
                "SELECT label, source, at FROM run_taint WHERE tenant = ?1 AND run = ?2 ORDER BY at, label",
            )
            .and_then(|mut st| {
                st.query_map(params![tenant.as_str(), run], |r| {
                    Ok(TaintRow {
                        label: r.get(0)?,
                        source: r.get(1)?,
                        at: r.get(2)?,
                    })
                })?
                .collect()
            })
            .map_err(self.ap_err("taint read"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> TenantId {
        TenantId::new("t1").expect("invariant: valid tenant")
    }

    fn propose(s: &SqliteStore, id: &str, expires: i64) {
        s.approval_insert(
            &tenant(),
            &NewApproval {
                id,
                run: "r1",
                agent: None,
                subject: "{}",
                sha256: "aa",
                policy_version: "p",
                reason: "approval_required",
                taint: "",
                created: 1,
                expires,
            },
        )
        .expect("insert");
    }

    #[test]
    fn approve_needs_the_hash_and_time_and_consume_is_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = SqliteStore::open(&dir.path().join("db")).expect("open");
        propose(&s, "a1", 100);
        let t = tenant();
        assert!(
            !s.approval_approve(&t, "a1", "bb", "op", 10)
                .expect("approve")
        );
        assert!(
            !s.approval_approve(&t, "a1", "aa", "op", 100)
                .expect("approve")
        );
        assert!(!s.approval_consume(&t, "a1", "aa").expect("consume"));
        assert!(
            s.approval_approve(&t, "a1", "aa", "op", 10)
                .expect("approve")
        );
        assert!(
            !s.approval_approve(&t, "a1", "aa", "op", 10)
                .expect("approve")
        );
        assert!(!s.approval_deny(&t, "a1", "op", 11, None).expect("deny"));
        assert!(!s.approval_consume(&t, "a1", "bb").expect("consume"));
        assert!(s.approval_consume(&t, "a1", "aa").expect("consume"));
        assert!(!s.approval_consume(&t, "a1", "aa").expect("consume"));
        let row = s.approval(&t, "a1").expect("read").expect("row");
        assert_eq!(row.state, ApprovalState::Consumed);
        assert_eq!(row.decided_by.as_deref(), Some("op"));
        // Another tenant sees nothing.
        let other = TenantId::new("t2").expect("invariant: valid tenant");
        assert_eq!(s.approval(&other, "a1").expect("read"), None);
    }

    #[test]
    fn concurrent_consumers_in_two_connections_exactly_one_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        let s = SqliteStore::open(&path).expect("open");
        let t = tenant();
        for i in 0..20 {
            let id = format!("a{i}");
            propose(&s, &id, 100);
            assert!(
                s.approval_approve(&t, &id, "aa", "op", 10)
                    .expect("approve")
            );
        }
        let wins: Vec<usize> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let path = path.clone();
                    sc.spawn(move || {
                        let s = SqliteStore::open(&path).expect("open");
                        (0..20)
                            .filter(|i| {
                                s.approval_consume(&tenant(), &format!("a{i}"), "aa")
                                    .expect("consume")
                            })
                            .count()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().expect("join")).collect()
        });
        assert_eq!(wins.iter().sum::<usize>(), 20);
    }

    #[test]
    fn deny_and_expire_only_from_pending_and_taint_keeps_the_first_source() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = SqliteStore::open(&dir.path().join("db")).expect("open");
        let t = tenant();
        propose(&s, "d", 100);
        propose(&s, "e", 100);
        assert!(s.approval_deny(&t, "d", "op", 5, Some("no")).expect("deny"));
        assert!(!s.approval_expire(&t, "d", 6).expect("expire"));
        assert!(s.approval_expire(&t, "e", 6).expect("expire"));
        assert!(!s.approval_approve(&t, "e", "aa", "op", 7).expect("approve"));
        let pending = s.approvals(&t, Some(ApprovalState::Pending)).expect("list");
        assert!(pending.is_empty());
        assert_eq!(s.approvals(&t, None).expect("list").len(), 2);

        assert!(
            s.taint_mark(&t, "r1", "private_data", "vault", 1)
                .expect("mark")
        );
        assert!(
            !s.taint_mark(&t, "r1", "private_data", "other", 2)
                .expect("mark")
        );
        let rows = s.taint_labels(&t, "r1").expect("labels");
        assert_eq!(
            rows,
            vec![TaintRow {
                label: "private_data".into(),
                source: "vault".into(),
                at: 1
            }]
        );
        assert!(s.taint_labels(&t, "r2").expect("labels").is_empty());
    }
}
