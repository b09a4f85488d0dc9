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

/// A budget's current period split into what was settled and what is
/// still reserved by calls in flight (their sum is [`BudgetUsage::used_micros`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetSpend {
    /// The budget.
    pub budget: BudgetRow,
    /// Settled charges in the current period, micro-USD.
    pub spent_micros: i64,
    /// Open reservations (calls not yet settled) in the current period, micro-USD.
    pub reserved_micros: i64,
}

/// Who a call is charged to (every level that may have a budget).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
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
    /// The call's virtual key (`scopes.key`) is revoked or gone: nothing
    /// was reserved. Checked in the reservation's own transaction, so a
    /// key revoked by another process before it commits lets nothing
    /// through.
    KeyRevoked,
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

/// Spending counted against `scope` since `since`: calls (settled, else
/// reserved; `except` left out), plus, with `leases: Some(now)`, what
/// leases taken since then and within [`LEASE_TTL`] of `now` still hold.
fn used(
    tx: &rusqlite::Connection,
    tenant: &str,
    scope: &str,
    since: i64,
    except: i64,
    leases: Option<i64>,
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
    let lsql = match scope.split_once(':') {
        None => {
            "SELECT coalesce(sum(remaining), 0) FROM gateway_leases WHERE tenant = ?1 AND created >= ?2"
        }
        Some(("team", _)) => {
            "SELECT coalesce(sum(remaining), 0) FROM gateway_leases WHERE tenant = ?1 AND created >= ?2 AND team = ?3"
        }
        Some(("agent", _)) => {
            "SELECT coalesce(sum(remaining), 0) FROM gateway_leases WHERE tenant = ?1 AND created >= ?2 AND agent = ?3"
        }
        Some(("run", _)) => {
            "SELECT coalesce(sum(remaining), 0) FROM gateway_leases WHERE tenant = ?1 AND created >= ?2 AND run = ?3"
        }
        Some(_) => {
            "SELECT coalesce(sum(remaining), 0) FROM gateway_leases WHERE tenant = ?1 AND created >= ?2 AND vkey = ?3"
        }
    };
    let mut st = tx.prepare_cached(sql)?;
    let calls: i64 = match name {
        None => st.query_row(params![tenant, since, except], |r| r.get(0))?,
        Some(n) => st.query_row(params![tenant, since, except, n], |r| r.get(0))?,
    };
    let Some(now) = leases else {
        return Ok(calls);
    };
    // A lease older than LEASE_TTL is not drawn from any more (its holder
    // takes a new one well before), so what it still holds is a dead
    // process's and no longer counts.
    let lsince = since.max(now.saturating_sub(LEASE_TTL));
    let mut st = tx.prepare_cached(lsql)?;
    let leased: i64 = match name {
        None => st.query_row(params![tenant, lsince], |r| r.get(0))?,
        Some(n) => st.query_row(params![tenant, lsince, n], |r| r.get(0))?,
    };
    Ok(calls.saturating_add(leased))
}

/// A lease this process holds for one set of scopes.
#[derive(Debug, Clone)]
struct Lease {
    id: i64,
    /// The UTC day it was taken (draws only the same day, so it is counted
    /// in every period window its draws fall in).
    day: i64,
    /// The budgets that applied when it was taken; any change ends it.
    budgets: Vec<BudgetRow>,
    /// When it was taken (microseconds): drawn from only until
    /// [`LEASE_REUSE`] later.
    taken: i64,
    /// What is left to draw, as this connection counts it: lowered by
    /// every draw, deferred ones included, before they are written (so it
    /// is never above the row's `remaining` once they are).
    avail: i64,
}

/// A reservation drawn from a held lease and answered before it was
/// written ([`SqliteStore::gateway_draw`]): the next gateway write of the
/// connection writes it first, in its own transaction.
#[derive(Debug)]
struct Deferred {
    handle: i64,
    tenant: String,
    idem_key: String,
    body_hash: String,
    scopes: CallScopes,
    amount: i64,
    now: i64,
    lease: i64,
}

/// The gateway's per-connection state: leases held, draws not yet
/// written, and the rows of written draws until they are settled.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    held: std::collections::HashMap<(String, CallScopes), Lease>,
    deferred: Vec<Deferred>,
    /// Row id of each written deferred draw, by its handle (< 0), until
    /// its settlement.
    rows: std::collections::HashMap<i64, i64>,
    /// The last handle given out (handles count down from -1).
    last_handle: i64,
}

/// Most draws waiting to be written; past it reservations are written
/// before they are answered, as without deferral.
const MAX_DEFERRED: usize = 1024;

/// Most written draws awaiting their settlement. Past it the map is
/// cleared: those settlements are skipped and their rows stay at the
/// worst-case reservation (over-counted, never under-counted).
const MAX_ROWS: usize = 65_536;

/// Most leases one connection keeps (one per tenant and scopes: per run).
/// Past it they are dropped; their remainders stay counted (over-counting).
const MAX_LEASES: usize = 4096;

/// How long a lease counts as spent in budget checks (microseconds). A
/// process releases its leases when its gateway stops and a run's when the
/// run ends; this bounds what a process that died holding one keeps
/// counted.
const LEASE_TTL: i64 = 15 * 60 * 1_000_000;

/// How long after it was taken a lease is drawn from; then a new one is
/// taken (well inside [`LEASE_TTL`], so a lease being drawn from always
/// counts).
const LEASE_REUSE: i64 = LEASE_TTL / 3;

/// How many worst-case calls one lease covers at most.
const LEASE_CALLS: i64 = 32;

/// Largest share of the tightest budget's headroom one lease takes, so
/// other processes sharing the database keep room (1/LEASE_SHARE).
const LEASE_SHARE: i64 = 4;

const DAY_MICROS: i64 = 86_400_000_000;

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

/// The budgets that apply to a call's scopes, in checking order (org >
/// team > agent > run > key).
fn budgets_for(
    conn: &rusqlite::Connection,
    tenant: &str,
    scopes: &CallScopes,
) -> rusqlite::Result<Vec<BudgetRow>> {
    let mut budgets = budgets_of(conn, tenant)?;
    budgets.retain(|b| scopes.applies(&b.scope));
    budgets.sort_by_key(|b| level(&b.scope));
    Ok(budgets)
}

/// Whether the virtual key with this id exists and is not revoked.
fn key_live(conn: &rusqlite::Connection, id: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM gateway_keys WHERE id = ?1 AND revoked IS NULL")?
        .exists([id])
}

/// Insert a new call's row, pending at its reservation; returns its id.
fn insert_call(
    tx: &rusqlite::Connection,
    tenant: &str,
    idem_key: &str,
    body_hash: &str,
    s: &CallScopes,
    amount: i64,
    now: i64,
) -> rusqlite::Result<i64> {
    tx.prepare_cached(
        "INSERT INTO gateway_calls (tenant, idem_key, body_hash, team, agent, run, vkey, reserved, state, created, updated)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', ?9, ?9)",
    )?
    .execute(params![tenant, idem_key, body_hash, s.team, s.agent, s.run, s.key, amount, now])?;
    Ok(tx.last_insert_rowid())
}

impl Lease {
    /// Whether a call of `amount` at `now`, under `budgets` (those that
    /// apply now, in checking order), may draw from this lease: taken
    /// today and less than [`LEASE_REUSE`] ago, against the same budgets,
    /// with enough left.
    fn covers(&self, now: i64, budgets: &[BudgetRow], amount: i64) -> bool {
        self.day == now.div_euclid(DAY_MICROS)
            && now.saturating_sub(self.taken) < LEASE_REUSE
            && self.budgets == budgets
            && self.avail >= amount
    }
}

/// An `IMMEDIATE` transaction opened and ended by cached prepared
/// statements. rusqlite's `Transaction` runs `BEGIN`/`COMMIT` through
/// `execute_batch`, which parses them again on every call, on the
/// gateway's per-call path. Same semantics: dropped without a successful
/// commit, it rolls back.
struct ImmediateTx<'c>(&'c rusqlite::Connection);

impl<'c> ImmediateTx<'c> {
    fn begin(conn: &'c rusqlite::Connection) -> rusqlite::Result<Self> {
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        Ok(Self(conn))
    }

    /// Commit; on failure the transaction is rolled back when dropped.
    fn commit(self) -> rusqlite::Result<()> {
        self.0.prepare_cached("COMMIT")?.execute([]).map(|_| ())
    }
}

impl std::ops::Deref for ImmediateTx<'_> {
    type Target = rusqlite::Connection;
    fn deref(&self) -> &rusqlite::Connection {
        self.0
    }
}

impl Drop for ImmediateTx<'_> {
    fn drop(&mut self) {
        // Still inside the transaction: not committed (an error on the way,
        // or COMMIT failed). As rusqlite's `Transaction` does on drop.
        if !self.0.is_autocommit() {
            let _ = self
                .0
                .prepare_cached("ROLLBACK")
                .and_then(|mut st| st.execute([]));
        }
    }
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

/// One reservation attempt. `acquire`: may take a new lease (the caller
/// runs it with `synchronous=FULL`); without it, `Ok(None)` when the held
/// lease does not cover the call (nothing was changed).
fn begin_inner(
    conn: &mut rusqlite::Connection,
    leases: &mut Leases,
    tenant: &TenantId,
    call: &NewCall<'_>,
    acquire: bool,
) -> rusqlite::Result<Option<CallBegin>> {
    let tx = ImmediateTx::begin(conn)?;
    let flushed = flush_in(&tx, leases)?;
    let (begin, taken) = begin_in(&tx, leases, tenant, call, acquire)?;
    // Commit also when refused (Exceeded): the old lease's release stands.
    tx.commit()?;
    leases.written(flushed);
    if let Some((lkey, l)) = taken {
        if leases.held.len() >= MAX_LEASES {
            leases.held.clear();
        }
        leases.held.insert(lkey, l);
    }
    Ok(begin)
}

/// A lease taken by [`begin_in`], to be held once its transaction commits.
type Taken = Option<((String, CallScopes), Lease)>;

/// The body of one reservation attempt, inside a transaction the caller
/// opened (IMMEDIATE) and commits. Changes nothing in `leases` unless
/// `acquire` (then it may drop the old lease; the new one is returned).
fn begin_in(
    tx: &rusqlite::Connection,
    leases: &mut Leases,
    tenant: &TenantId,
    call: &NewCall<'_>,
    acquire: bool,
) -> rusqlite::Result<(Option<CallBegin>, Taken)> {
    let t = tenant.as_str();
    if let Some(key) = &call.scopes.key
        && !key_live(tx, key)?
    {
        return Ok((Some(CallBegin::KeyRevoked), None));
    }
    let earlier: Option<Earlier> = tx
        .prepare_cached(
            "SELECT id, body_hash, state, status, content_type, response, updated FROM gateway_calls
             WHERE tenant = ?1 AND idem_key = ?2 AND created >= ?3 ORDER BY id DESC LIMIT 1",
        )?
        .query_row(
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
        .optional()?;
    let mut retry_of = None;
    if let Some((id, hash, state, status, ctype, body, updated)) = earlier {
        if hash != call.body_hash {
            return Ok((Some(CallBegin::KeyReused), None));
        }
        match state.as_str() {
            "done" => {
                return Ok((
                    Some(CallBegin::Replay(StoredResponse {
                        status: status.unwrap_or(200),
                        content_type: ctype.unwrap_or_default(),
                        body: body.unwrap_or_default(),
                    })),
                    None,
                ));
            }
            // A call whose end was never recorded (its process died, or
            // the answer never came back) stops blocking its key after
            // STALE_PENDING; its reservation is taken over, not added.
            "pending" if updated >= call.now - STALE_PENDING => {
                return Ok((Some(CallBegin::InFlight), None));
            }
            _ => retry_of = Some(id),
        }
    }
    let budgets = budgets_for(tx, t, call.scopes)?;
    let day = call.now.div_euclid(DAY_MICROS);
    let lkey = (t.to_string(), call.scopes.clone());
    let amount = call.reserve_micros;
    // Draw from the held lease when it is today's, the budgets are the ones
    // it was checked against, and it covers the call.
    let mut drawn = false;
    if let Some(l) = leases.held.get_mut(&lkey)
        && l.covers(call.now, &budgets, amount)
    {
        drawn = tx.prepare_cached("UPDATE gateway_leases SET remaining = remaining - ?2 WHERE id = ?1 AND remaining >= ?2")?.execute(
            params![l.id, amount],
        )? == 1;
        if drawn {
            // Lowered before the commit: if it fails, this connection
            // counts less left than there is (never more).
            l.avail -= amount;
        }
    }
    let mut taken = None;
    if !drawn {
        if !acquire {
            return Ok((None, None));
        }
        // Release what is left of the old lease, then check every budget
        // (leases included) and take a new one.
        if let Some(old) = leases.held.remove(&lkey) {
            tx.prepare_cached("UPDATE gateway_leases SET remaining = 0 WHERE id = ?1")?
                .execute([old.id])?;
        }
        let mut headroom = i64::MAX;
        for b in &budgets {
            let spent = used(
                tx,
                t,
                &b.scope,
                period_start(&b.period, call.now),
                retry_of.unwrap_or(-1),
                Some(call.now),
            )?;
            let room = b.limit_micros.saturating_sub(spent);
            if room < amount {
                // Nothing was reserved (the caller commits the release).
                return Ok((
                    Some(CallBegin::Exceeded {
                        scope: b.scope.clone(),
                    }),
                    None,
                ));
            }
            headroom = headroom.min(room);
        }
        let chunk = amount
            .saturating_mul(LEASE_CALLS)
            .min(headroom / LEASE_SHARE)
            .max(amount);
        if chunk > amount {
            let s = call.scopes;
            tx.prepare_cached("INSERT INTO gateway_leases (tenant, team, agent, run, vkey, remaining, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?.execute(
                params![t, s.team, s.agent, s.run, s.key, chunk - amount, call.now],
            )?;
            taken = Some((
                lkey,
                Lease {
                    id: tx.last_insert_rowid(),
                    day,
                    budgets,
                    taken: call.now,
                    avail: chunk - amount,
                },
            ));
        }
    }
    let s = call.scopes;
    let begin = match retry_of {
        Some(id) => {
            tx.prepare_cached("UPDATE gateway_calls SET reserved = ?2, settled = NULL, state = 'pending', updated = ?3 WHERE id = ?1")?.execute(
                params![id, amount, call.now],
            )?;
            CallBegin::Reserved { id, retry: true }
        }
        None => CallBegin::Reserved {
            id: insert_call(tx, t, call.idem_key, call.body_hash, s, amount, call.now)?,
            retry: false,
        },
    };
    Ok((Some(begin), taken))
}

/// Settle one call's row (inside or outside a transaction).
fn finish_in(
    conn: &rusqlite::Connection,
    id: i64,
    settled_micros: i64,
    end: &CallEnd,
    now: i64,
) -> rusqlite::Result<usize> {
    match end {
        CallEnd::Done(r) => conn.prepare_cached(
            "UPDATE gateway_calls SET settled = ?2, state = 'done', status = ?3, content_type = ?4, response = ?5, updated = ?6 WHERE id = ?1",
        ).and_then(|mut st| st.execute(
            params![
                id,
                settled_micros,
                r.status,
                r.content_type,
                // An empty answer is none kept (strict privacy).
                (!r.body.is_empty()).then_some(&r.body),
                now
            ],
        )),
        CallEnd::Failed => conn.prepare_cached(
            "UPDATE gateway_calls SET settled = ?2, state = 'failed', updated = ?3 WHERE id = ?1",
        ).and_then(|mut st| st.execute(
            params![id, settled_micros, now],
        )),
    }
}

impl Leases {
    /// Record the rows of draws written by a transaction that committed.
    fn written(&mut self, rows: Vec<(i64, i64)>) {
        if rows.is_empty() {
            return;
        }
        if self.rows.len() + rows.len() > MAX_ROWS {
            self.rows.clear();
        }
        self.rows.extend(rows);
    }

    /// The row a settlement is for: `id` itself, or the row of a deferred
    /// draw's handle (written by the current transaction, in `flushed`, or
    /// by an earlier one). `None`: that draw was never written (it was
    /// lost with a transaction that failed).
    fn resolve(&mut self, id: i64, flushed: &mut Vec<(i64, i64)>) -> Option<i64> {
        if id >= 0 {
            return Some(id);
        }
        if let Some(i) = flushed.iter().position(|(h, _)| *h == id) {
            return Some(flushed.swap_remove(i).1);
        }
        self.rows.remove(&id)
    }
}

/// Write every deferred draw inside the caller's transaction, ahead of its
/// own operations (so one order holds). Returns each draw's handle and row,
/// to be recorded with [`Leases::written`] once the transaction commits; if
/// it does not, the draws are lost with it and their leases' rows still
/// hold their amounts (over-counted, never under-counted).
fn flush_in(tx: &rusqlite::Connection, leases: &mut Leases) -> rusqlite::Result<Vec<(i64, i64)>> {
    if leases.deferred.is_empty() {
        return Ok(Vec::new());
    }
    let deferred = std::mem::take(&mut leases.deferred);
    let mut rows = Vec::with_capacity(deferred.len());
    let mut lower = tx.prepare_cached(
        "UPDATE gateway_leases SET remaining = max(remaining - ?2, 0) WHERE id = ?1",
    )?;
    for d in &deferred {
        let row = insert_call(
            tx,
            &d.tenant,
            &d.idem_key,
            &d.body_hash,
            &d.scopes,
            d.amount,
            d.now,
        )?;
        rows.push((d.handle, row));
        lower.execute(params![d.lease, d.amount])?;
    }
    Ok(rows)
}

/// [`SqliteStore::gateway_draw`]: reads only; changes `leases` only when
/// it answers `Some`.
fn draw(
    conn: &rusqlite::Connection,
    leases: &mut Leases,
    tenant: &TenantId,
    call: &NewCall<'_>,
) -> rusqlite::Result<Option<CallBegin>> {
    let t = tenant.as_str();
    let amount = call.reserve_micros;
    let lkey = (t.to_string(), call.scopes.clone());
    let Some(l) = leases.held.get(&lkey) else {
        return Ok(None);
    };
    // Checked again below against the budgets as they are now.
    if amount < 0
        || !l.covers(call.now, &l.budgets, amount)
        || leases.deferred.len() >= MAX_DEFERRED
        || leases
            .deferred
            .iter()
            .any(|d| d.idem_key == call.idem_key && d.tenant == t)
    {
        return Ok(None);
    }
    if let Some(key) = &call.scopes.key
        && !key_live(conn, key)?
    {
        return Ok(None);
    }
    if conn
        .prepare_cached(
            "SELECT 1 FROM gateway_calls WHERE tenant = ?1 AND idem_key = ?2 AND created >= ?3",
        )?
        .exists(params![t, call.idem_key, call.window_start])?
    {
        return Ok(None);
    }
    if budgets_for(conn, t, call.scopes)? != l.budgets {
        return Ok(None);
    }
    let lease = l.id;
    if let Some(l) = leases.held.get_mut(&lkey) {
        l.avail -= amount;
    }
    leases.last_handle -= 1;
    let handle = leases.last_handle;
    let (tenant, scopes) = lkey;
    leases.deferred.push(Deferred {
        handle,
        tenant,
        idem_key: call.idem_key.to_string(),
        body_hash: call.body_hash.to_string(),
        scopes,
        amount,
        now: call.now,
        lease,
    });
    Ok(Some(CallBegin::Reserved {
        id: handle,
        retry: false,
    }))
}

/// One piece of work for [`SqliteStore::gateway_batch`].
#[derive(Debug)]
pub enum GatewayOp<'a> {
    /// What [`SqliteStore::gateway_begin`] does.
    Begin(&'a TenantId, NewCall<'a>),
    /// What [`SqliteStore::gateway_finish`] does: row, settled micro-USD,
    /// how it ended, now.
    Finish(i64, i64, &'a CallEnd, i64),
}

/// The result of one [`GatewayOp`], in the same order.
#[derive(Debug)]
pub enum GatewayDone {
    /// A `Begin`'s decision.
    Begin(CallBegin),
    /// A `Finish` was recorded.
    Finished,
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

    /// Every budget of the tenant with what its current period used (its
    /// calls; unused lease headroom is counted only by the budget checks).
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
                    None,
                )
                .map_err(self.gw_err("budget usage"))?;
                Ok(BudgetUsage {
                    budget: b,
                    used_micros,
                })
            })
            .collect()
    }

    /// Every budget of the tenant with its current period's settled
    /// charges and open reservations apart (for display; the budget checks
    /// use their sum, plus unused lease headroom).
    pub fn gateway_budget_spend(
        &self,
        tenant: &TenantId,
        now: i64,
    ) -> Result<Vec<BudgetSpend>, StoreError> {
        let conn = self.conn();
        let rows = budgets_of(conn, tenant.as_str()).map_err(self.gw_err("budget list"))?;
        rows.into_iter()
            .map(|b| {
                // The column a scope is charged to; names are fixed here,
                // never taken from the scope.
                let (col, name) = match b.scope.split_once(':') {
                    None => ("'org'", "org"),
                    Some(("team", n)) => ("team", n),
                    Some(("agent", n)) => ("agent", n),
                    Some(("run", n)) => ("run", n),
                    Some((_, n)) => ("vkey", n),
                };
                let sql = format!(
                    "SELECT coalesce(sum(settled), 0), coalesce(sum(CASE WHEN settled IS NULL THEN reserved ELSE 0 END), 0) \
                     FROM gateway_calls WHERE tenant = ?1 AND created >= ?2 AND {col} = ?3"
                );
                let (spent_micros, reserved_micros) = conn
                    .prepare_cached(&sql)
                    .and_then(|mut st| {
                        st.query_row(
                            params![tenant.as_str(), period_start(&b.period, now), name],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                    })
                    .map_err(self.gw_err("budget spend"))?;
                Ok(BudgetSpend {
                    budget: b,
                    spent_micros,
                    reserved_micros,
                })
            })
            .collect()
    }

    /// The tenant's charges (settled, else reserved) per UTC day since
    /// `since`: (the day's start in microseconds, micro-USD), oldest first;
    /// days without calls are absent.
    pub fn gateway_daily_spend(
        &self,
        tenant: &TenantId,
        since: i64,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        const DAY: i64 = 86_400_000_000;
        let mut st = self
            .conn()
            .prepare_cached(
                "SELECT created / ?3 AS day, coalesce(sum(coalesce(settled, reserved)), 0) \
                 FROM gateway_calls WHERE tenant = ?1 AND created >= ?2 GROUP BY day ORDER BY day",
            )
            .map_err(self.gw_err("daily spend"))?;
        st.query_map(params![tenant.as_str(), since, DAY], |r| {
            Ok((r.get::<_, i64>(0)?.saturating_mul(DAY), r.get(1)?))
        })
        .and_then(|rows| rows.collect())
        .map_err(self.gw_err("daily spend"))
    }

    /// Look up the key, check every budget that applies and reserve, all in
    /// one IMMEDIATE transaction. See [`CallBegin`].
    ///
    /// Reservations are drawn from a *lease*: headroom this connection
    /// reserved earlier in one durable (`synchronous=FULL`) transaction that
    /// checked every budget, recorded in `gateway_leases` where every
    /// process's budget checks count it. A draw (the call's row inserted and
    /// the lease lowered by the same amount) is one transaction committed
    /// with `synchronous=NORMAL`: an OS crash may lose it, but then the
    /// lease still holds the amount, so spending is over-counted, never
    /// under-counted. When the lease is short (or the day or the budgets
    /// changed) its remainder is released and a new one is taken, at most
    /// `LEASE_CALLS` worst-case calls and `1/LEASE_SHARE` of the tightest
    /// headroom, never less than this call; a call that does not fit the
    /// headroom is refused exactly as before.
    pub fn gateway_begin(
        &mut self,
        tenant: &TenantId,
        call: &NewCall<'_>,
    ) -> Result<CallBegin, StoreError> {
        self.writable_relaxed()?;
        let path = self.path().to_owned();
        let err = move |source| StoreError::Gateway {
            path: path.clone(),
            what: "call reservation",
            source: DbError::sqlite(source),
        };
        let held = self
            .leases
            .held
            .contains_key(&(tenant.as_str().to_string(), call.scopes.clone()));
        if held {
            self.sync_normal().map_err(&err)?;
            let (conn, leases) = self.conn_and_leases();
            if let Some(b) = begin_inner(conn, leases, tenant, call, false).map_err(&err)? {
                return Ok(b);
            }
        }
        // A new lease is durable before anything is drawn from it.
        self.sync_full().map_err(&err)?;
        let (conn, leases) = self.conn_and_leases();
        begin_inner(conn, leases, tenant, call, true)
            .map_err(&err)?
            .ok_or_else(|| err(rusqlite::Error::InvalidQuery))
    }

    /// Settle a call to `settled_micros` and record how it ended.
    pub fn gateway_finish(
        &mut self,
        id: i64,
        settled_micros: i64,
        end: &CallEnd,
        now: i64,
    ) -> Result<(), StoreError> {
        self.writable_relaxed()?;
        let path = self.path().to_owned();
        let err = move |source| StoreError::Gateway {
            path: path.clone(),
            what: "call settlement",
            source: DbError::sqlite(source),
        };
        // Settlements are committed without waiting for the disk
        // (`synchronous=NORMAL`; WAL keeps commit order). A process crash
        // loses nothing; an OS crash or power loss may lose the last
        // settlements but never a lease (taken with `FULL`, and a `FULL`
        // commit makes every earlier one durable too). A lost settlement
        // leaves its row pending at its worst-case reservation, so spending
        // is over-counted, never under-counted.
        self.sync_normal().map_err(&err)?;
        let (conn, leases) = self.conn_and_leases();
        if id >= 0 && leases.deferred.is_empty() {
            finish_in(conn, id, settled_micros, end, now).map_err(err)?;
            return Ok(());
        }
        // Deferred draws are written first, in the same transaction.
        let tx = ImmediateTx::begin(conn).map_err(&err)?;
        let mut flushed = flush_in(&tx, leases).map_err(&err)?;
        if let Some(row) = leases.resolve(id, &mut flushed) {
            finish_in(&tx, row, settled_micros, end, now).map_err(&err)?;
        }
        tx.commit().map_err(&err)?;
        leases.written(flushed);
        Ok(())
    }

    /// Reserve without writing, when that is safe: this connection holds a
    /// lease for the call's scopes that covers it (taken today, against
    /// the budgets that apply now), the idempotency key is new (no row, no
    /// draw waiting) and the virtual key, if any, is live. The answer is
    /// `Reserved` with a handle (< 0) that settles the call like a row id;
    /// the draw is written by this connection's next gateway write
    /// ([`SqliteStore::gateway_flush`], a batch, a reservation, a
    /// settlement), ahead of it. `None`: not so (nothing changed) — reserve
    /// with [`SqliteStore::gateway_begin`] or a batch, which decide every
    /// other case.
    ///
    /// Budgets hold across processes as with a written draw: the lease's
    /// amount already counts as spent in every process's budget checks,
    /// and a draw only moves part of it to the call's row. Until the draw
    /// is written, other processes see the lease instead of the row (the
    /// same total), the idempotency key is known to this connection only,
    /// and a crash loses the row while the lease keeps the amount
    /// (over-counted, never under-counted).
    pub fn gateway_draw(
        &mut self,
        tenant: &TenantId,
        call: &NewCall<'_>,
    ) -> Result<Option<CallBegin>, StoreError> {
        self.writable_relaxed()?;
        let (conn, leases) = self.conn_and_leases();
        draw(conn, leases, tenant, call).map_err(self.gw_err("call reservation"))
    }

    /// Write the draws [`SqliteStore::gateway_draw`] deferred, in one
    /// transaction (`synchronous=NORMAL`); returns how many.
    pub fn gateway_flush(&mut self) -> Result<usize, StoreError> {
        self.write_and_release("draw write", |_| false)
            .map(|(written, _)| written)
    }

    /// Give back what this connection's leases still hold — every lease,
    /// or those of one run — after writing the deferred draws: called when
    /// a gateway stops (and fit for when a run ends), so an unused
    /// remainder is not counted as spent for the 15 minutes a lease counts.
    /// Returns how many leases.
    pub fn gateway_release_leases(&mut self, run: Option<&str>) -> Result<usize, StoreError> {
        self.write_and_release("lease release", |s| {
            run.is_none() || s.run.as_deref() == run
        })
        .map(|(_, released)| released)
    }

    /// One transaction (`synchronous=NORMAL`) that writes the deferred
    /// draws, then gives back the held leases whose scopes `release`
    /// picks. Returns (draws written, leases released).
    fn write_and_release(
        &mut self,
        what: &'static str,
        release: impl Fn(&CallScopes) -> bool,
    ) -> Result<(usize, usize), StoreError> {
        if self.leases.deferred.is_empty() && !self.leases.held.keys().any(|(_, s)| release(s)) {
            return Ok((0, 0));
        }
        self.writable_relaxed()?;
        let path = self.path().to_owned();
        let err = move |source| StoreError::Gateway {
            path: path.clone(),
            what,
            source: DbError::sqlite(source),
        };
        self.sync_normal().map_err(&err)?;
        let (conn, leases) = self.conn_and_leases();
        let tx = ImmediateTx::begin(conn).map_err(&err)?;
        let rows = flush_in(&tx, leases).map_err(&err)?;
        let given: Vec<((String, CallScopes), i64)> = leases
            .held
            .iter()
            .filter(|((_, s), _)| release(s))
            .map(|(k, l)| (k.clone(), l.id))
            .collect();
        for (_, id) in &given {
            tx.prepare_cached("UPDATE gateway_leases SET remaining = 0 WHERE id = ?1")
                .and_then(|mut st| st.execute([id]))
                .map_err(&err)?;
        }
        tx.commit().map_err(&err)?;
        let written = rows.len();
        leases.written(rows);
        for (k, _) in &given {
            leases.held.remove(k);
        }
        Ok((written, given.len()))
    }

    /// Do many reservations and settlements (of concurrent calls) in one
    /// transaction, so they share one commit: each op exactly as
    /// [`SqliteStore::gateway_begin`] / [`SqliteStore::gateway_finish`]
    /// would do it alone, in order (a later op sees an earlier one's
    /// writes: two `Begin`s with one key make the second `InFlight`), each
    /// `Begin` in its own savepoint and each `Finish` a single statement,
    /// so a failing op leaves the others standing.
    ///
    /// The batch commits with `synchronous=NORMAL`, which is what a lone
    /// draw from a held lease and a lone settlement use; a `Begin` that
    /// its lease does not cover is done after the batch, alone, with a
    /// `FULL` commit (it takes a new lease, checking every budget; the
    /// next ones short of a lease draw from that one). Draws that
    /// [`SqliteStore::gateway_draw`] answered without a write are written
    /// first, in the same transaction. Every result is returned only after
    /// its commit, so a reservation made here is visible to every process
    /// before its caller goes on. If the commit fails, the whole batch is
    /// `Err` (nothing of it was written).
    pub fn gateway_batch(
        &mut self,
        ops: &[GatewayOp<'_>],
    ) -> Result<Vec<Result<GatewayDone, StoreError>>, StoreError> {
        let path = self.path().to_owned();
        let err = |what: &'static str| {
            let path = path.clone();
            move |source| StoreError::Gateway {
                path: path.clone(),
                what,
                source: DbError::sqlite(source),
            }
        };
        self.writable_relaxed()?;
        self.sync_normal().map_err(err("call batch"))?;
        let (conn, leases) = self.conn_and_leases();
        // None: not done yet (a Begin whose lease is short).
        let mut out: Vec<Option<Result<GatewayDone, StoreError>>> = Vec::with_capacity(ops.len());
        let mut flushed = Vec::new();
        let batch = (|| -> rusqlite::Result<()> {
            let tx = ImmediateTx::begin(conn)?;
            flushed = flush_in(&tx, leases)?;
            for op in ops {
                // A settlement is one UPDATE, which SQLite applies whole or
                // not at all: it needs no savepoint of its own.
                let own_savepoint = matches!(op, GatewayOp::Begin(..));
                if own_savepoint {
                    tx.prepare_cached("SAVEPOINT gw_op")?.execute([])?;
                }
                let r = match op {
                    GatewayOp::Begin(tenant, call) => begin_in(&tx, leases, tenant, call, false)
                        .map(|(b, _)| b.map(GatewayDone::Begin))
                        .map_err(err("call reservation")),
                    GatewayOp::Finish(id, settled, end, now) => {
                        match leases.resolve(*id, &mut flushed) {
                            Some(row) => finish_in(&tx, row, *settled, end, *now)
                                .map(|_| Some(GatewayDone::Finished))
                                .map_err(err("call settlement")),
                            // Its draw was lost with a failed transaction:
                            // nothing to settle (its lease keeps the amount).
                            None => Ok(Some(GatewayDone::Finished)),
                        }
                    }
                };
                if own_savepoint {
                    if !matches!(r, Ok(Some(_))) {
                        tx.prepare_cached("ROLLBACK TO gw_op")?.execute([])?;
                    }
                    tx.prepare_cached("RELEASE gw_op")?.execute([])?;
                }
                out.push(r.transpose());
            }
            tx.commit()
        })();
        batch.map_err(err("call batch"))?;
        self.leases.written(flushed);
        Ok(ops
            .iter()
            .zip(out)
            .map(|(op, r)| match (op, r) {
                (_, Some(r)) => r,
                // Alone, as gateway_begin does it: the first takes a new
                // lease (FULL), the next ones draw from it (NORMAL).
                (GatewayOp::Begin(tenant, call), None) => {
                    self.gateway_begin(tenant, call).map(GatewayDone::Begin)
                }
                (GatewayOp::Finish(..), None) => {
                    Err(err("call settlement")(rusqlite::Error::InvalidQuery))
                }
            })
            .collect())
    }

    /// Forget the stored answers of calls last updated before `before`
    /// (microseconds since the epoch), of every tenant; returns how many.
    /// Their rows stay (budgets and idempotency still count them); a retry
    /// of such a call finds no answer to replay.
    pub fn gateway_purge_responses(&mut self, before: i64) -> Result<usize, StoreError> {
        self.writable()?;
        let r = self.conn_mut().execute(
            "UPDATE gateway_calls SET response = NULL WHERE response IS NOT NULL AND updated < ?1",
            [before],
        );
        r.map_err(self.gw_err("replay purge"))
    }

    /// How many calls keep an answer for replay (every tenant).
    pub fn gateway_stored_answers(&self) -> Result<i64, StoreError> {
        self.conn()
            .query_row(
                "SELECT count(*) FROM gateway_calls WHERE response IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .map_err(self.gw_err("stored answers"))
    }

    /// Settled plus reserved charges of every call of the tenant since `since`
    /// (unused lease headroom is not spending and is not included here; the
    /// budget checks count it).
    pub fn gateway_spent(&self, tenant: &TenantId, since: i64) -> Result<i64, StoreError> {
        used(self.conn(), tenant.as_str(), "org", since, -1, None).map_err(self.gw_err("spend"))
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
            .prepare_cached(
                "SELECT id, sha256, agent, team, created, revoked, tenant FROM gateway_keys WHERE sha256 = ?1 AND revoked IS NULL",
            )
            .and_then(|mut st| {
                st.query_row([sha256], |r| Ok((r.get(6)?, key_row(r)?)))
                    .optional()
            })
            .map_err(self.gw_err("key lookup"))
    }

    /// Whether the key with this id exists and is not revoked.
    pub fn gateway_key_live(&self, id: &str) -> Result<bool, StoreError> {
        key_live(self.conn(), id).map_err(self.gw_err("key check"))
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

/// The gateway's budgets through the control plane. A reservation is a
/// pending row in `gateway_calls` (marked by its `api-reservation:` key and
/// charged to the scope's column), so the gateway's own checks count it;
/// reserving checks the scope's and the org's budget in the same IMMEDIATE
/// transaction that inserts it.
impl crate::BudgetStore for SqliteStore {
    fn budget_list(
        &self,
        tenant: &TenantId,
        now: i64,
    ) -> Result<Vec<crate::BudgetState>, StoreError> {
        Ok(self
            .gateway_budget_usage(tenant, now)?
            .into_iter()
            .map(|u| crate::BudgetState {
                scope: u.budget.scope,
                period: u.budget.period,
                limit_micros: u.budget.limit_micros,
                used_micros: u.used_micros,
            })
            .collect())
    }

    fn budget_put(
        &mut self,
        tenant: &TenantId,
        scope: &str,
        period: &str,
        limit_micros: i64,
    ) -> Result<(), StoreError> {
        self.gateway_set_budget(
            tenant,
            &BudgetRow {
                scope: scope.to_owned(),
                period: period.to_owned(),
                limit_micros,
            },
        )
    }

    fn budget_reserve(
        &mut self,
        tenant: &TenantId,
        scope: &str,
        micros: i64,
        now: i64,
    ) -> Result<crate::Reserve, StoreError> {
        self.writable()?;
        let path = self.path().to_owned();
        let err = move |source| StoreError::Gateway {
            path: path.clone(),
            what: "budget reserve",
            source: DbError::sqlite(source),
        };
        let t = tenant.as_str();
        let conn = self.conn_mut();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let budgets = budgets_of(&tx, t).map_err(&err)?;
        let Some(own) = budgets.iter().find(|b| b.scope == scope).cloned() else {
            return Ok(crate::Reserve::NoBudget);
        };
        let state = |b: &BudgetRow, used: i64| crate::BudgetState {
            scope: b.scope.clone(),
            period: b.period.clone(),
            limit_micros: b.limit_micros,
            used_micros: used,
        };
        for b in budgets
            .iter()
            .filter(|b| b.scope == scope || b.scope == "org")
        {
            let used = used(
                &tx,
                t,
                &b.scope,
                period_start(&b.period, now),
                -1,
                Some(now),
            )
            .map_err(&err)?;
            if used.saturating_add(micros) > b.limit_micros {
                return Ok(crate::Reserve::Exceeded(state(b, used)));
            }
        }
        let (kind, name) = scope.split_once(':').unwrap_or(("org", ""));
        let col = |k: &str| (kind == k).then_some(name);
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let key = format!(
            "api-reservation:{now}:{}:{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        tx.execute(
            "INSERT INTO gateway_calls (tenant, idem_key, body_hash, team, agent, run, vkey, reserved, state, created, updated)
             VALUES (?1, ?2, '', ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?8)",
            params![t, key, col("team"), col("agent").unwrap_or(""), col("run"), col("key"), micros, now],
        )
        .map_err(&err)?;
        let id = tx.last_insert_rowid();
        let after =
            used(&tx, t, scope, period_start(&own.period, now), -1, Some(now)).map_err(&err)?;
        tx.commit().map_err(&err)?;
        Ok(crate::Reserve::Reserved {
            id,
            budget: state(&own, after),
        })
    }

    fn budget_settle(
        &mut self,
        tenant: &TenantId,
        id: i64,
        actual: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.writable()?;
        let n = self
            .conn_mut()
            .execute(
                "UPDATE gateway_calls SET settled = ?3, state = 'done', updated = ?4
                 WHERE tenant = ?1 AND id = ?2 AND state = 'pending' AND idem_key LIKE 'api-reservation:%'",
                params![tenant.as_str(), id, actual.max(0), now],
            )
            .map_err(self.gw_err("budget settle"))?;
        Ok(n == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let d = tempfile::tempdir().expect("tempdir");
        let s = SqliteStore::open(&d.path().join("db")).expect("open");
        (d, s)
    }

    /// The cached-statement transaction keeps `Transaction`'s contract: a
    /// commit is durable, and one dropped uncommitted (an error on the way)
    /// leaves nothing behind and the connection usable.
    #[test]
    fn immediate_tx_commits_or_rolls_back_when_dropped() {
        let (_d, mut s) = store();
        let conn = s.conn_mut();
        let budgets = |c: &rusqlite::Connection| -> i64 {
            c.query_row("SELECT count(*) FROM gateway_budgets", [], |r| r.get(0))
                .expect("count")
        };
        let insert = |c: &rusqlite::Connection, scope: &str| {
            c.execute(
                "INSERT INTO gateway_budgets (tenant, scope, period, limit_micros) VALUES ('default', ?1, 'day', 1)",
                [scope],
            )
            .expect("insert");
        };
        {
            let tx = ImmediateTx::begin(conn).expect("begin");
            insert(&tx, "org");
            assert!(!tx.is_autocommit());
        }
        assert!(conn.is_autocommit());
        assert_eq!(budgets(conn), 0);
        let tx = ImmediateTx::begin(conn).expect("begin again");
        insert(&tx, "org");
        tx.commit().expect("commit");
        assert!(conn.is_autocommit());
        assert_eq!(budgets(conn), 1);
    }

    /// A gateway operation leaves its connection at `synchronous=NORMAL`
    /// (switching costs a parse each time), a new lease is committed at
    /// `FULL`, and any other write makes the connection durable again
    /// before it writes.
    #[test]
    fn only_the_gateways_own_writes_skip_the_disk_wait() {
        let (_d, mut s) = store();
        let t = TenantId::default_tenant();
        let sync = |s: &SqliteStore| -> i64 {
            s.conn()
                .query_row("PRAGMA synchronous", [], |r| r.get(0))
                .expect("pragma")
        };
        const FULL: i64 = 2;
        const NORMAL: i64 = 1;
        assert_eq!(sync(&s), FULL);
        s.gateway_set_budget(
            &t,
            &BudgetRow {
                scope: "org".into(),
                period: "day".into(),
                limit_micros: 1_000_000,
            },
        )
        .expect("budget");
        let scopes = CallScopes::default();
        let call = |k: &'static str| NewCall {
            idem_key: k,
            body_hash: "h",
            scopes: &scopes,
            reserve_micros: 10,
            now: 5,
            window_start: 0,
        };
        // The first call takes a lease: committed at FULL.
        let CallBegin::Reserved { id, .. } = s.gateway_begin(&t, &call("k1")).expect("b") else {
            panic!("reserves")
        };
        assert_eq!(sync(&s), FULL, "a lease is taken durably");
        s.gateway_finish(id, 5, &CallEnd::Failed, 6)
            .expect("settle");
        assert_eq!(sync(&s), NORMAL);
        // The next draws from it and stays relaxed.
        assert!(matches!(
            s.gateway_begin(&t, &call("k2")).expect("b"),
            CallBegin::Reserved { .. }
        ));
        assert_eq!(sync(&s), NORMAL);
        // Any other write restores FULL first.
        s.gateway_set_budget(
            &t,
            &BudgetRow {
                scope: "agent:a".into(),
                period: "day".into(),
                limit_micros: 5,
            },
        )
        .expect("budget");
        assert_eq!(sync(&s), FULL);
    }

    #[test]
    fn budget_spend_splits_settled_from_reserved_and_sums_per_day() {
        let (_d, mut s) = store();
        let t = TenantId::default_tenant();
        let budget = BudgetRow {
            scope: "agent:a".into(),
            period: "day".into(),
            limit_micros: 100,
        };
        s.gateway_set_budget(&t, &budget).expect("set");
        let scopes = CallScopes {
            agent: "a".into(),
            ..Default::default()
        };
        const DAY: i64 = 86_400_000_000;
        let call = |k: &'static str, amount, now| NewCall {
            idem_key: k,
            body_hash: "h",
            scopes: &scopes,
            reserve_micros: amount,
            now,
            window_start: 0,
        };
        let CallBegin::Reserved { id, .. } =
            s.gateway_begin(&t, &call("k1", 60, DAY + 5)).expect("b")
        else {
            panic!("reserves")
        };
        s.gateway_finish(id, 30, &CallEnd::Failed, DAY + 6)
            .expect("settle");
        assert!(matches!(
            s.gateway_begin(&t, &call("k2", 50, DAY + 7)).expect("b"),
            CallBegin::Reserved { .. }
        ));
        assert_eq!(
            s.gateway_budget_spend(&t, DAY + 8).expect("spend"),
            vec![BudgetSpend {
                budget,
                spent_micros: 30,
                reserved_micros: 50,
            }]
        );
        assert_eq!(
            s.gateway_daily_spend(&t, 0).expect("daily"),
            vec![(DAY, 80)]
        );
        assert_eq!(
            s.gateway_daily_spend(&TenantId::new("other").expect("t"), 0)
                .expect("daily"),
            vec![]
        );
        assert_eq!(
            s.gateway_budget_spend(&t, 3 * DAY).expect("spend")[0].spent_micros,
            0,
            "a new day"
        );
    }

    /// A batch does each op as alone, in order: two calls with one key,
    /// the second is in flight; a settlement in the batch lets the same
    /// key replay in the next; calls past the lease get one and none goes
    /// over the budget; another connection sees every reservation.
    #[test]
    fn a_batch_is_its_ops_done_one_after_another() {
        let (d, mut s) = store();
        let t = TenantId::default_tenant();
        s.gateway_set_budget(
            &t,
            &BudgetRow {
                scope: "agent:a".into(),
                period: "total".into(),
                limit_micros: 1000,
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
            now: 10,
            window_start: 0,
        };
        let r = s
            .gateway_batch(&[
                GatewayOp::Begin(&t, call("k1", 10)),
                GatewayOp::Begin(&t, call("k1", 10)),
            ])
            .expect("batch");
        let Ok(GatewayDone::Begin(CallBegin::Reserved { id, retry: false })) = r[0] else {
            panic!("first reserves: {r:?}")
        };
        assert!(matches!(r[1], Ok(GatewayDone::Begin(CallBegin::InFlight))));
        let done = CallEnd::Done(StoredResponse {
            status: 200,
            content_type: "application/json".into(),
            body: b"{}".to_vec(),
        });
        let r = s
            .gateway_batch(&[
                GatewayOp::Finish(id, 4, &done, 11),
                GatewayOp::Begin(&t, call("k1", 10)),
            ])
            .expect("batch");
        assert!(matches!(r[0], Ok(GatewayDone::Finished)));
        assert!(
            matches!(&r[1], Ok(GatewayDone::Begin(CallBegin::Replay(a))) if a.body == b"{}"),
            "{r:?}"
        );
        // 200 calls of 10 against what is left (996): 99 fit, leases or not.
        let keys: Vec<String> = (0..200).map(|i| format!("many{i}")).collect();
        let ops: Vec<GatewayOp<'_>> = keys
            .iter()
            .map(|k| {
                GatewayOp::Begin(
                    &t,
                    NewCall {
                        idem_key: k,
                        body_hash: "h",
                        scopes: &scopes,
                        reserve_micros: 10,
                        now: 12,
                        window_start: 0,
                    },
                )
            })
            .collect();
        let r = s.gateway_batch(&ops).expect("batch");
        let reserved = r
            .iter()
            .filter(|x| matches!(x, Ok(GatewayDone::Begin(CallBegin::Reserved { .. }))))
            .count();
        let exceeded = r
            .iter()
            .filter(|x| matches!(x, Ok(GatewayDone::Begin(CallBegin::Exceeded { .. }))))
            .count();
        assert_eq!((reserved, exceeded), (99, 101), "{r:?}");
        let other = SqliteStore::open(&d.path().join("db")).expect("reopen");
        assert_eq!(other.gateway_spent(&t, 0).expect("spent"), 4 + 99 * 10);
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
    fn leases_shared_by_two_connections_never_overspend() {
        // Two connections on one file stand for two gateway processes.
        let d = tempfile::tempdir().expect("tempdir");
        let path = d.path().join("db");
        let mut a = SqliteStore::open(&path).expect("open a");
        let mut b = SqliteStore::open(&path).expect("open b");
        let t = TenantId::default_tenant();
        a.gateway_set_budget(
            &t,
            &BudgetRow {
                scope: "org".into(),
                period: "total".into(),
                limit_micros: 10_000,
            },
        )
        .expect("set");
        let scopes = CallScopes {
            agent: "a".into(),
            ..Default::default()
        };
        let mut reserved = 0;
        let mut ids = Vec::new();
        for i in 0..400 {
            let key = format!("k{i}");
            let s = if i % 2 == 0 { &mut a } else { &mut b };
            let call = NewCall {
                idem_key: &key,
                body_hash: "h",
                scopes: &scopes,
                reserve_micros: 37,
                now: 1_000_000 + i,
                window_start: 0,
            };
            // `a` draws without writing where it can, and writes its draws
            // every few calls, as the gateway's store thread does.
            let drawn = if i % 2 == 0 {
                s.gateway_draw(&t, &call).expect("draw")
            } else {
                None
            };
            if i % 14 == 0 {
                s.gateway_flush().expect("flush");
            }
            let begun = match drawn {
                Some(b) => b,
                None => s.gateway_begin(&t, &call).expect("begin"),
            };
            match begun {
                CallBegin::Reserved { id, .. } => {
                    reserved += 37;
                    ids.push((i % 2, id));
                }
                CallBegin::Exceeded { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
            // Counted spending (calls + leases) never exceeds the limit,
            // seen from either connection.
            for s in [&a, &b] {
                let counted = used(s.conn(), t.as_str(), "org", 0, -1, Some(0)).expect("used");
                assert!(counted <= 10_000, "counted {counted}");
            }
        }
        assert!(reserved <= 10_000, "reserved {reserved}");
        // Nearly all the budget was usable despite the leases.
        assert!(reserved > 10_000 - 2 * 37 * 32, "reserved {reserved}");
        // Settling below the reservation frees headroom for both.
        for (who, id) in ids {
            let s = if who == 0 { &mut a } else { &mut b };
            s.gateway_finish(id, 1, &CallEnd::Failed, 5)
                .expect("finish");
        }
        let call = NewCall {
            idem_key: "after",
            body_hash: "h",
            scopes: &scopes,
            reserve_micros: 37,
            now: 2_000_000,
            window_start: 0,
        };
        assert!(matches!(
            b.gateway_begin(&t, &call).expect("begin"),
            CallBegin::Reserved { .. }
        ));
    }

    fn budget(s: &mut SqliteStore, limit_micros: i64) {
        s.gateway_set_budget(
            &TenantId::default_tenant(),
            &BudgetRow {
                scope: "org".into(),
                period: "total".into(),
                limit_micros,
            },
        )
        .expect("set");
    }

    /// Two connections to one new database (two processes), the first
    /// having set an org budget.
    fn two_with_budget(limit_micros: i64) -> (tempfile::TempDir, SqliteStore, SqliteStore) {
        let d = tempfile::tempdir().expect("tempdir");
        let path = d.path().join("db");
        let mut a = SqliteStore::open(&path).expect("open a");
        let b = SqliteStore::open(&path).expect("open b");
        budget(&mut a, limit_micros);
        (d, a, b)
    }

    fn new_call<'a>(key: &'a str, scopes: &'a CallScopes, now: i64) -> NewCall<'a> {
        NewCall {
            idem_key: key,
            body_hash: "h",
            scopes,
            reserve_micros: 100,
            now,
            window_start: 0,
        }
    }

    fn row_of(s: &SqliteStore, key: &str) -> Option<(String, i64, Option<i64>)> {
        s.conn()
            .query_row(
                "SELECT state, reserved, settled FROM gateway_calls WHERE idem_key = ?1",
                [key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .expect("row")
    }

    /// A draw is answered before it is written: another connection sees
    /// the lease, not the row, and the same total counted against the
    /// budget; the next write (here a flush) writes it, and its handle
    /// settles it like a row id. A retry of its key is decided by the
    /// full reservation, which sees it.
    #[test]
    fn a_draw_is_written_by_the_next_write_and_settled_by_its_handle() {
        let (_d, mut a, b) = two_with_budget(1_000_000);
        let t = TenantId::default_tenant();
        let scopes = CallScopes {
            agent: "a".into(),
            ..Default::default()
        };
        let now = 1_000_000;
        // No lease yet: nothing is drawn; the reservation takes one.
        assert_eq!(
            a.gateway_draw(&t, &new_call("k1", &scopes, now))
                .expect("draw"),
            None
        );
        assert!(matches!(
            a.gateway_begin(&t, &new_call("k1", &scopes, now)).expect("begin"),
            CallBegin::Reserved { id, retry: false } if id > 0
        ));
        let counted =
            |s: &SqliteStore| used(s.conn(), t.as_str(), "org", 0, -1, Some(0)).expect("used");
        let before = counted(&b);
        let Some(CallBegin::Reserved {
            id: handle,
            retry: false,
        }) = a
            .gateway_draw(&t, &new_call("k2", &scopes, now + 1))
            .expect("draw")
        else {
            panic!("not drawn");
        };
        assert!(handle < 0);
        assert_eq!(row_of(&b, "k2"), None, "written before the next write");
        assert_eq!(counted(&b), before, "the lease already counts it");
        // The same key again is not drawn (the full path says in flight).
        assert_eq!(
            a.gateway_draw(&t, &new_call("k2", &scopes, now + 2))
                .expect("draw"),
            None
        );
        assert_eq!(a.gateway_flush().expect("flush"), 1);
        assert_eq!(row_of(&b, "k2"), Some(("pending".into(), 100, None)));
        assert_eq!(counted(&b), before, "moved from the lease to the row");
        assert_eq!(
            a.gateway_begin(&t, &new_call("k2", &scopes, now + 2))
                .expect("begin"),
            CallBegin::InFlight
        );
        let answer = StoredResponse {
            status: 200,
            content_type: "application/json".into(),
            body: b"{}".to_vec(),
        };
        a.gateway_finish(handle, 40, &CallEnd::Done(answer.clone()), now + 3)
            .expect("finish");
        assert_eq!(row_of(&b, "k2"), Some(("done".into(), 100, Some(40))));
        assert_eq!(counted(&b), before - 60, "settled below the reservation");
        assert_eq!(
            a.gateway_begin(&t, &new_call("k2", &scopes, now + 4))
                .expect("begin"),
            CallBegin::Replay(answer)
        );
    }

    /// A batch writes what was drawn before its own operations, so a
    /// settlement by handle in the same batch finds the row.
    #[test]
    fn a_batch_writes_draws_first() {
        let (_d, mut s) = store();
        budget(&mut s, 1_000_000);
        let t = TenantId::default_tenant();
        let scopes = CallScopes {
            agent: "a".into(),
            ..Default::default()
        };
        s.gateway_begin(&t, &new_call("k1", &scopes, 10))
            .expect("begin");
        let Some(CallBegin::Reserved { id: handle, .. }) = s
            .gateway_draw(&t, &new_call("k2", &scopes, 11))
            .expect("draw")
        else {
            panic!("not drawn");
        };
        let end = CallEnd::Failed;
        let done = s
            .gateway_batch(&[GatewayOp::Finish(handle, 7, &end, 12)])
            .expect("batch");
        assert!(matches!(done[..], [Ok(GatewayDone::Finished)]));
        assert_eq!(row_of(&s, "k2"), Some(("failed".into(), 100, Some(7))));
        // A retry takes the failed row over (charged once).
        let Some(row) = s
            .conn()
            .query_row(
                "SELECT id FROM gateway_calls WHERE idem_key = 'k2'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .expect("id")
        else {
            panic!("no row");
        };
        assert_eq!(
            s.gateway_begin(&t, &new_call("k2", &scopes, 13))
                .expect("begin"),
            CallBegin::Reserved {
                id: row,
                retry: true
            }
        );
    }

    /// Anything a draw cannot decide alone goes to the full reservation:
    /// no lease for these scopes, a changed budget, a lease that does not
    /// cover the call, a revoked virtual key.
    #[test]
    fn a_draw_declines_what_it_cannot_decide() {
        let (_d, mut s) = store();
        budget(&mut s, 1_000_000);
        let t = TenantId::default_tenant();
        let a = CallScopes {
            agent: "a".into(),
            ..Default::default()
        };
        s.gateway_begin(&t, &new_call("k1", &a, 10)).expect("begin");
        let other = CallScopes {
            agent: "b".into(),
            ..Default::default()
        };
        assert_eq!(
            s.gateway_draw(&t, &new_call("k2", &other, 11))
                .expect("draw"),
            None
        );
        let mut big = new_call("k3", &a, 11);
        big.reserve_micros = 1_000_000;
        assert_eq!(s.gateway_draw(&t, &big).expect("draw"), None);
        budget(&mut s, 2_000_000);
        assert_eq!(
            s.gateway_draw(&t, &new_call("k4", &a, 11)).expect("draw"),
            None
        );
        // With a virtual key: drawn while it is live, not once revoked.
        let key = KeyRow {
            id: "vk1".into(),
            sha256: "00".into(),
            agent: "a".into(),
            team: None,
            created: 1,
            revoked: None,
        };
        s.gateway_create_key(&t, &key).expect("key");
        let k = CallScopes {
            agent: "a".into(),
            key: Some("vk1".into()),
            ..Default::default()
        };
        s.gateway_begin(&t, &new_call("k5", &k, 12)).expect("begin");
        assert!(
            s.gateway_draw(&t, &new_call("k6", &k, 13))
                .expect("draw")
                .is_some()
        );
        s.conn()
            .execute("UPDATE gateway_keys SET revoked = 1 WHERE id = 'vk1'", [])
            .expect("revoke");
        assert_eq!(
            s.gateway_draw(&t, &new_call("k7", &k, 14)).expect("draw"),
            None
        );
        assert_eq!(
            s.gateway_begin(&t, &new_call("k7", &k, 14)).expect("begin"),
            CallBegin::KeyRevoked
        );
    }

    /// What a lease still holds stops counting as spent when its holder
    /// gives it back (a gateway stopping, a run ending) or, for a holder
    /// that died, once LEASE_TTL has passed; a lease is drawn from for
    /// LEASE_REUSE only, then given back and replaced.
    #[test]
    fn leases_are_given_back_or_expire() {
        let (_d, mut a, b) = two_with_budget(1_000_000);
        let t = TenantId::default_tenant();
        let run = |r: &str| CallScopes {
            agent: "a".into(),
            run: Some(r.into()),
            ..Default::default()
        };
        let (r1, r2) = (run("r1"), run("r2"));
        let now = 1_000_000;
        let counted = |at: i64| used(b.conn(), t.as_str(), "org", 0, -1, Some(at)).expect("used");
        let held = |r: &str| -> i64 {
            b.conn()
                .query_row(
                    "SELECT coalesce(sum(remaining), 0) FROM gateway_leases WHERE run = ?1",
                    [r],
                    |x| x.get(0),
                )
                .expect("leases")
        };
        a.gateway_begin(&t, &new_call("k1", &r1, now))
            .expect("begin");
        a.gateway_begin(&t, &new_call("k2", &r2, now))
            .expect("begin");
        assert!(held("r1") > 0 && held("r2") > 0);
        assert!(counted(now) > 200);
        assert!(
            a.gateway_draw(&t, &new_call("k3", &r1, now + 1))
                .expect("draw")
                .is_some()
        );
        // One run's leases: the draw is written first, then r1's lease
        // gives back what it holds; r2's still counts.
        assert_eq!(a.gateway_release_leases(Some("r1")).expect("release"), 1);
        assert_eq!(row_of(&b, "k3"), Some(("pending".into(), 100, None)));
        assert_eq!(held("r1"), 0);
        assert!(held("r2") > 0);
        // All of them: only the calls count.
        assert_eq!(a.gateway_release_leases(None).expect("release"), 1);
        assert_eq!(counted(now + 1), 300);
        // A lease never given back (its process died) counts until it
        // expires.
        a.gateway_begin(&t, &new_call("k4", &r1, now + 2))
            .expect("begin");
        assert!(counted(now + 2) > 400);
        assert_eq!(counted(now + 2 + LEASE_TTL + 1), 400);
        // Past LEASE_REUSE a lease is not drawn from: the next reservation
        // gives it back and takes a new one.
        let later = now + 2 + LEASE_REUSE;
        assert_eq!(
            a.gateway_draw(&t, &new_call("k5", &r1, later))
                .expect("draw"),
            None
        );
        a.gateway_begin(&t, &new_call("k5", &r1, later))
            .expect("begin");
        let live: i64 = b
            .conn()
            .query_row(
                "SELECT count(*) FROM gateway_leases WHERE remaining > 0",
                [],
                |x| x.get(0),
            )
            .expect("count");
        assert_eq!(live, 1);
        assert!(
            a.gateway_draw(&t, &new_call("k6", &r1, later + 1))
                .expect("draw")
                .is_some()
        );
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
