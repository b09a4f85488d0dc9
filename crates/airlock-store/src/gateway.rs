//! The LLM gateway's tables: budgets, calls and virtual keys.
//!
//! A call's reservation, settlement and idempotency record are one row, and
//! every change to it is one `BEGIN IMMEDIATE` transaction, so checking all
//! budgets and reserving is atomic across threads and processes: two calls
//! can never both see the same headroom.

use crate::{DbError, SqliteStore, StoreError};
use airlock_types::TenantId;
use rusqlite::{OptionalExtension as _, TransactionBehavior, params};

/// A budget: a spending limit for one scope over one period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetRow {
    /// `org`, `team:NAME`, `agent:NAME`, `run:ID` or `key:ID`.
    pub scope: String,
    /// `day`, `month` or `total` (UTC).
    pub period: String,
    /// The limit in micro-USD.
    pub limit_micros: i64,
}

/// A budget and what its current period has used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetUsage {
    /// The budget.
    pub budget: BudgetRow,
    /// Settled charges plus open reservations in the current period, micro-USD.
    pub used_micros: i64,
}

/// Who a call is charged to (every level that may have a budget).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CallScopes {
    /// The team, if the agent has one.
    pub team: Option<String>,
    /// The agent.
    pub agent: String,
    /// The run, when the call comes from one.
    pub run: Option<String>,
    /// The virtual key's id, when the call came with one.
    pub key: Option<String>,
}

impl CallScopes {
    fn applies(&self, scope: &str) -> bool {
        if scope == "org" {
            return true;
        }
        let Some((kind, name)) = scope.split_once(':') else {
            return false;
        };
        let mine = match kind {
            "team" => self.team.as_deref(),
            "agent" => Some(self.agent.as_str()),
            "run" => self.run.as_deref(),
            "key" => self.key.as_deref(),
            _ => None,
        };
        mine == Some(name)
    }
}

/// A call about to start.
#[derive(Debug, Clone)]
pub struct NewCall<'a> {
    /// The idempotency key (derived or the caller's).
    pub idem_key: &'a str,
    /// Hash of the canonical request body.
    pub body_hash: &'a str,
    /// Who pays.
    pub scopes: &'a CallScopes,
    /// The worst-case cost, micro-USD.
    pub reserve_micros: i64,
    /// Now, microseconds since the epoch.
    pub now: i64,
    /// An earlier call with the same key counts only if created at or after this.
    pub window_start: i64,
}

/// A completed call's stored answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// HTTP status.
    pub status: u16,
    /// Content type.
    pub content_type: String,
    /// The upstream's body as received (placeholders, not values).
    pub body: Vec<u8>,
}

/// What [`SqliteStore::gateway_begin`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallBegin {
    /// Reserved; go ahead. `retry` when an earlier attempt of the same key
    /// failed and this one takes over its row (charged once).
    Reserved {
        /// The call's row id.
        id: i64,
        /// Whether this is a retry of a failed attempt.
        retry: bool,
    },
    /// The same key already completed: replay this.
    Replay(StoredResponse),
    /// The same key is in flight right now.
    InFlight,
    /// The same key was used with a different body.
    KeyReused,
    /// A budget would go over: nothing was reserved.
    Exceeded {
        /// The scope whose budget would be exceeded.
        scope: String,
    },
}

/// How a call ended.
#[derive(Debug, Clone)]
pub enum CallEnd {
    /// Success: store the answer for replay.
    Done(StoredResponse),
    /// Failure: a retry with the same key may take the row over.
    Failed,
}

/// An earlier call with the same key: id, body hash, state, status,
/// content type, stored answer, last update.
type Earlier = (
    i64,
    String,
    String,
    Option<u16>,
    Option<String>,
    Option<Vec<u8>>,
    i64,
);

/// How long a call may stay pending before a retry may take its row over
/// (microseconds).
const STALE_PENDING: i64 = 15 * 60 * 1_000_000;

/// Start of the current period for `now` (microseconds, UTC).
fn period_start(period: &str, now: i64) -> i64 {
    const DAY: i64 = 86_400_000_000;
    match period {
        "day" => now - now.rem_euclid(DAY),
        "month" => {
            let days = now.div_euclid(DAY);
            let date =
                time::Date::from_julian_day(i32::try_from(days + 2_440_588).unwrap_or(2_440_588))
                    .unwrap_or(time::Date::MIN);
            let first = date.replace_day(1).unwrap_or(date);
            (i64::from(first.to_julian_day()) - 2_440_588) * DAY
        }
        _ => i64::MIN,
    }
}

fn used(
    tx: &rusqlite::Connection,
    tenant: &str,
    scope: &str,
    since: i64,
    except: i64,
) -> rusqlite::Result<i64> {
    let (sql, name): (&str, Option<&str>) = match scope.split_once(':') {
        None => (
            "SELECT coalesce(sum(coalesce(settled, reserved)), 0) FROM gateway_calls WHERE tenant = ?1 AND created >= ?2 AND id != ?3",
            None,
        ),
        Some(("team", n)) => (
            "SELECT coalesce(sum(coalesce(settled, reserved)), 0) FROM gateway_calls WHERE tenant = ?1 AND created >= ?2 AND id != ?3 AND team = ?4",
            Some(n),
        ),
        Some(("agent", n)) => (
            "SELECT coalesce(sum(coalesce(settled, reserved)), 0) FROM gateway_calls WHERE tenant = ?1 AND created >= ?2 AND id != ?3 AND agent = ?4",
            Some(n),
        ),
        Some(("run", n)) => (
            "SELECT coalesce(sum(coalesce(settled, reserved)), 0) FROM gateway_calls WHERE tenant = ?1 AND created >= ?2 AND id != ?3 AND run = ?4",
            Some(n),
        ),
        Some((_, n)) => (
            "SELECT coalesce(sum(coalesce(settled, reserved)), 0) FROM gateway_calls WHERE tenant = ?1 AND created >= ?2 AND id != ?3 AND vkey = ?4",
            Some(n),
        ),
    };
    let mut st = tx.prepare_cached(sql)?;
    match name {
        None => st.query_row(params![tenant, since, except], |r| r.get(0)),
        Some(n) => st.query_row(params![tenant, since, except, n], |r| r.get(0)),
    }
}

fn budgets_of(tx: &rusqlite::Connection, tenant: &str) -> rusqlite::Result<Vec<BudgetRow>> {
    let mut st = tx.prepare_cached(
        "SELECT scope, period, limit_micros FROM gateway_budgets WHERE tenant = ?1 ORDER BY scope",
    )?;
    st.query_map([tenant], |r| {
        Ok(BudgetRow {
            scope: r.get(0)?,
            period: r.get(1)?,
            limit_micros: r.get(2)?,
        })
    })?
    .collect()
}

/// Order of levels for checking: org > team > agent > run > key.
fn level(scope: &str) -> u8 {
    match scope.split_once(':').map(|x| x.0) {
        None => 0,
        Some("team") => 1,
        Some("agent") => 2,
        Some("run") => 3,
        _ => 4,
    }
}

impl SqliteStore {
    fn gw_err(&self, what: &'static str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Gateway {
            path: self.path().to_owned(),
            what,
            source: DbError::sqlite(source),
        }
    }

    /// Set (or replace) the budget of `scope`.
    pub fn gateway_set_budget(
        &mut self,
        tenant: &TenantId,
        budget: &BudgetRow,
    ) -> Result<(), StoreError> {
        self.writable()?;
        let path = self.path().to_owned();
        let err = move |source| StoreError::Gateway {
            path: path.clone(),
            what: "budget set",
            source: DbError::sqlite(source),
        };
        self.conn_mut()
            .execute(
                "INSERT INTO gateway_budgets (tenant, scope, period, limit_micros) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (tenant, scope) DO UPDATE SET period = excluded.period, limit_micros = excluded.limit_micros",
                params![tenant.as_str(), budget.scope, budget.period, budget.limit_micros],
            )
            .map_err(err)?;
        Ok(())
    }

    /// Every budget of the tenant with what its current period used.
    pub fn gateway_budget_usage(
        &self,
        tenant: &TenantId,
        now: i64,
    ) -> Result<Vec<BudgetUsage>, StoreError> {
        let conn = self.conn();
        let rows = budgets_of(conn, tenant.as_str()).map_err(self.gw_err("budget list"))?;
        rows.into_iter()
            .map(|b| {
                let used_micros = used(
                    conn,
                    tenant.as_str(),
                    &b.scope,
                    period_start(&b.period, now),
                    -1,
                )
                .map_err(self.gw_err("budget usage"))?;
                Ok(BudgetUsage {
                    budget: b,
                    used_micros,
                })
            })
            .collect()
    }

    /// Look up the key, check every budget that applies and reserve, all in
    /// one IMMEDIATE transaction. See [`CallBegin`].
    pub fn gateway_begin(
        &mut self,
        tenant: &TenantId,
        call: &NewCall<'_>,
    ) -> Result<CallBegin, StoreError> {
        self.writable()?;
        let path = self.path().to_owned();
        let err = move |source| StoreError::Gateway {
            path: path.clone(),
            what: "call reservation",
            source: DbError::sqlite(source),
        };
        let t = tenant.as_str();
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let earlier: Option<Earlier> = tx
            .query_row(
                "SELECT id, body_hash, state, status, content_type, response, updated FROM gateway_calls
                 WHERE tenant = ?1 AND idem_key = ?2 AND created >= ?3 ORDER BY id DESC LIMIT 1",
                params![t, call.idem_key, call.window_start],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ))
                },
            )
            .optional()
            .map_err(&err)?;
        let mut retry_of = None;
        if let Some((id, hash, state, status, ctype, body, updated)) = earlier {
            if hash != call.body_hash {
                return Ok(CallBegin::KeyReused);
            }
            match state.as_str() {
                "done" => {
                    return Ok(CallBegin::Replay(StoredResponse {
                        status: status.unwrap_or(200),
                        content_type: ctype.unwrap_or_default(),
                        body: body.unwrap_or_default(),
                    }));
                }
                // A call whose end was never recorded (its process died, or
                // the answer never came back) stops blocking its key after
                // STALE_PENDING; its reservation is taken over, not added.
                "pending" if updated >= call.now - STALE_PENDING => return Ok(CallBegin::InFlight),
                _ => retry_of = Some(id),
            }
        }
        let mut budgets = budgets_of(&tx, t).map_err(&err)?;
        budgets.sort_by_key(|b| level(&b.scope));
        for b in budgets.iter().filter(|b| call.scopes.applies(&b.scope)) {
            let spent = used(
                &tx,
                t,
                &b.scope,
                period_start(&b.period, call.now),
                retry_of.unwrap_or(-1),
            )
            .map_err(&err)?;
            if spent.saturating_add(call.reserve_micros) > b.limit_micros {
                return Ok(CallBegin::Exceeded {
                    scope: b.scope.clone(),
                });
            }
        }
        let s = call.scopes;
        let begin = match retry_of {
            Some(id) => {
                tx.execute(
                    "UPDATE gateway_calls SET reserved = ?2, settled = NULL, state = 'pending', updated = ?3 WHERE id = ?1",
                    params![id, call.reserve_micros, call.now],
                )
                .map_err(&err)?;
                CallBegin::Reserved { id, retry: true }
            }
            None => {
                tx.execute(
                    "INSERT INTO gateway_calls (tenant, idem_key, body_hash, team, agent, run, vkey, reserved, state, created, updated)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', ?9, ?9)",
                    params![t, call.idem_key, call.body_hash, s.team, s.agent, s.run, s.key, call.reserve_micros, call.now],
                )
                .map_err(&err)?;
                CallBegin::Reserved {
                    id: tx.last_insert_rowid(),
                    retry: false,
                }
            }
        };
        tx.commit().map_err(&err)?;
        Ok(begin)
    }

    /// Settle a call to `settled_micros` and record how it ended.
    pub fn gateway_finish(
        &mut self,
        id: i64,
        settled_micros: i64,
        end: &CallEnd,
        now: i64,
    ) -> Result<(), StoreError> {
        self.writable()?;
        let path = self.path().to_owned();
        let err = move |source| StoreError::Gateway {
            path: path.clone(),
            what: "call settlement",
            source: DbError::sqlite(source),
        };
        let conn = self.conn_mut();
        // Settlements are committed without waiting for the disk
        // (`synchronous=NORMAL` for this one transaction; WAL keeps commit
        // order). A process crash loses nothing; an OS crash or power loss
        // may lose the last settlements but never a reservation (those stay
        // `FULL`, and a `FULL` commit makes every earlier one durable too).
        // A lost settlement leaves its row pending at its worst-case
        // reservation, so spending is over-counted, never under-counted.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(&err)?;
        let r = match end {
            CallEnd::Done(r) => conn.execute(
                "UPDATE gateway_calls SET settled = ?2, state = 'done', status = ?3, content_type = ?4, response = ?5, updated = ?6 WHERE id = ?1",
                params![id, settled_micros, r.status, r.content_type, r.body, now],
            ),
            CallEnd::Failed => conn.execute(
                "UPDATE gateway_calls SET settled = ?2, state = 'failed', updated = ?3 WHERE id = ?1",
                params![id, settled_micros, now],
            ),
        };
        let restored = conn.pragma_update(None, "synchronous", "FULL");
        r.map_err(&err)?;
        restored.map_err(err)?;
        Ok(())
    }

    /// Settled plus reserved charges of every call of the tenant since `since`.
    pub fn gateway_spent(&self, tenant: &TenantId, since: i64) -> Result<i64, StoreError> {
        used(self.conn(), tenant.as_str(), "org", since, -1).map_err(self.gw_err("spend"))
    }

    /// Store a new virtual key (its SHA-256 only).
    pub fn gateway_create_key(
        &mut self,
        tenant: &TenantId,
        key: &KeyRow,
    ) -> Result<(), StoreError> {
        self.writable()?;
        let path = self.path().to_owned();
        self.conn_mut()
            .execute(
                "INSERT INTO gateway_keys (id, tenant, sha256, agent, team, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![key.id, tenant.as_str(), key.sha256, key.agent, key.team, key.created],
            )
            .map_err(move |source| StoreError::Gateway {
                path,
                what: "key create",
                source: DbError::sqlite(source),
            })?;
        Ok(())
    }

    /// The tenant's virtual keys (revoked ones included).
    pub fn gateway_keys(&self, tenant: &TenantId) -> Result<Vec<KeyRow>, StoreError> {
        let mut st = self
            .conn()
            .prepare_cached(
                "SELECT id, sha256, agent, team, created, revoked FROM gateway_keys WHERE tenant = ?1 ORDER BY created, id",
            )
            .map_err(self.gw_err("key list"))?;
        st.query_map([tenant.as_str()], key_row)
            .and_then(|r| r.collect())
            .map_err(self.gw_err("key list"))
    }

    /// The live (not revoked) key whose SHA-256 is `sha256`, with its tenant.
    pub fn gateway_key_by_hash(
        &self,
        sha256: &str,
    ) -> Result<Option<(String, KeyRow)>, StoreError> {
        self.conn()
            .query_row(
                "SELECT id, sha256, agent, team, created, revoked, tenant FROM gateway_keys WHERE sha256 = ?1 AND revoked IS NULL",
                [sha256],
                |r| Ok((r.get(6)?, key_row(r)?)),
            )
            .optional()
            .map_err(self.gw_err("key lookup"))
    }

    /// Revoke a key; `false` if there was no live key with that id.
    pub fn gateway_revoke_key(
        &mut self,
        tenant: &TenantId,
        id: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.writable()?;
        let path = self.path().to_owned();
        let n = self
            .conn_mut()
            .execute(
                "UPDATE gateway_keys SET revoked = ?3 WHERE tenant = ?1 AND id = ?2 AND revoked IS NULL",
                params![tenant.as_str(), id, now],
            )
            .map_err(move |source| StoreError::Gateway {
                path,
                what: "key revoke",
                source: DbError::sqlite(source),
            })?;
        Ok(n == 1)
    }
}

/// A virtual key as stored: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    /// Public id (`key_…`).
    pub id: String,
    /// Hex SHA-256 of the key.
    pub sha256: String,
    /// The agent it authenticates.
    pub agent: String,
    /// The agent's team.
    pub team: Option<String>,
    /// Created, microseconds since the epoch.
    pub created: i64,
    /// Revoked at, if revoked.
    pub revoked: Option<i64>,
}

fn key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyRow> {
    Ok(KeyRow {
        id: r.get(0)?,
        sha256: r.get(1)?,
        agent: r.get(2)?,
        team: r.get(3)?,
        created: r.get(4)?,
        revoked: r.get(5)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let d = tempfile::tempdir().expect("tempdir");
        let s = SqliteStore::open(&d.path().join("db")).expect("open");
        (d, s)
    }

    #[test]
    fn reservations_never_exceed_any_level_and_retries_share_a_row() {
        let (_d, mut s) = store();
        let t = TenantId::default_tenant();
        s.gateway_set_budget(
            &t,
            &BudgetRow {
                scope: "agent:a".into(),
                period: "day".into(),
                limit_micros: 100,
            },
        )
        .expect("set");
        let scopes = CallScopes {
            agent: "a".into(),
            ..Default::default()
        };
        let call = |k: &'static str, amount| NewCall {
            idem_key: k,
            body_hash: "h",
            scopes: &scopes,
            reserve_micros: amount,
            now: 1_000_000,
            window_start: 0,
        };
        let CallBegin::Reserved { id, retry: false } =
            s.gateway_begin(&t, &call("k1", 60)).expect("b")
        else {
            panic!("first call reserves")
        };
        assert_eq!(
            s.gateway_begin(&t, &call("k2", 60)).expect("b"),
            CallBegin::Exceeded {
                scope: "agent:a".into()
            }
        );
        assert_eq!(
            s.gateway_begin(&t, &call("k1", 60)).expect("b"),
            CallBegin::InFlight
        );
        s.gateway_finish(id, 0, &CallEnd::Failed, 2).expect("fail");
        assert_eq!(
            s.gateway_begin(&t, &call("k1", 60)).expect("b"),
            CallBegin::Reserved { id, retry: true }
        );
        let done = StoredResponse {
            status: 200,
            content_type: "application/json".into(),
            body: b"{}".to_vec(),
        };
        s.gateway_finish(id, 30, &CallEnd::Done(done.clone()), 3)
            .expect("done");
        assert_eq!(
            s.gateway_begin(&t, &call("k1", 60)).expect("b"),
            CallBegin::Replay(done)
        );
        assert_eq!(s.gateway_spent(&t, 0).expect("spent"), 30);
        let usage = s.gateway_budget_usage(&t, 1_000_000).expect("usage");
        assert_eq!(usage[0].used_micros, 30);
    }

    #[test]
    fn month_starts_on_the_first() {
        // 2026-12-15T12:00:00Z -> 2026-12-01T00:00:00Z
        assert_eq!(
            period_start("month", 1_797_336_000_000_000),
            1_796_083_200_000_000
        );
        assert_eq!(
            period_start("day", 1_797_336_000_000_000),
            1_797_292_800_000_000
        );
    }
}
