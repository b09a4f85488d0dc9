//! The gateway's store thread: every per-call store operation (virtual key
//! lookup, reservation, settlement) goes to one thread over a channel, and
//! the thread does everything that is waiting in one SQLite transaction
//! (group commit). Under load, concurrent calls share a commit instead of
//! taking turns on the store mutex with a commit each; alone, a call pays
//! one thread hand-off per operation, as it did with `spawn_blocking`.
//!
//! Guarantees are the store's ([`SqliteStore::gateway_batch`]): each
//! operation is done exactly as alone, and its answer is sent only after its
//! transaction committed — a reservation is in the database, visible to
//! every process, before its call is forwarded.
//!
//! **Alone, inline.** When no other call holds a reservation, nothing is
//! waiting for the thread and the store is free, an operation is done
//! right on the caller's thread instead
//! (`SqliteStore::gateway_begin` / the key lookup: the
//! same code the batch runs per operation, so the same guarantees): one
//! call at a time has nothing to batch with, and the two thread hand-offs
//! per operation (a channel send, a wake-up on another core, a oneshot
//! back) were a third of its added latency. Such an operation holds the
//! async thread for one SQLite commit (tens of microseconds; the lease's
//! FULL commit, ≈ 3 ms, once per lease) — only when no other call is
//! between its reservation and its settlement ([`Open`]), so under load
//! every operation still goes to the thread and its group commit.
//!
//! **Settlements are not waited for.** A settlement and its call's audit
//! record are queued ([`Writer::finish`]) and the answer ends at once; the
//! thread commits, then emits the record. The queue is one FIFO and the
//! inline path is taken only when it is empty, so whatever this process does
//! next (a retry with the same idempotency key, the next reservation against
//! the same budget) is applied after the settlement. Until then the store
//! holds the reservation, which is at least the settled cost: another
//! process may see more spent than the final figure for a moment, never
//! less. The last [`Writer`] to go joins the thread, so nothing queued is
//! lost when the gateway is dropped (`airlock gateway` stopping, `airlock
//! run` ending).

use airlock_store::{
    CallBegin, CallEnd, CallScopes, GatewayDone, GatewayOp, KeyRow, NewCall, SqliteStore,
};
use airlock_types::{AuditEvent, EventSink, TenantId};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// Most operations done in one transaction.
const MAX_BATCH: usize = 256;

/// A reservation to make (owned [`NewCall`]).
pub(crate) struct Begin {
    pub tenant: TenantId,
    pub idem_key: String,
    pub body_hash: String,
    pub scopes: CallScopes,
    pub reserve_micros: i64,
    pub now: i64,
    pub window_start: i64,
}

impl Begin {
    /// The store's view of the reservation.
    fn call(&self) -> NewCall<'_> {
        NewCall {
            idem_key: &self.idem_key,
            body_hash: &self.body_hash,
            scopes: &self.scopes,
            reserve_micros: self.reserve_micros,
            now: self.now,
            window_start: self.window_start,
        }
    }
}

/// A failure, as text (the store's error names the database and the step).
pub(crate) type JobResult<T> = Result<T, String>;

/// What a reservation came to.
#[derive(Debug)]
pub(crate) enum Begun {
    /// The store's decision.
    Store(CallBegin),
    /// The call's virtual key (`scopes.key`) is revoked or gone: nothing
    /// was reserved.
    KeyRevoked,
}

/// A settlement to commit, and the call's audit record to emit once it is
/// committed.
pub(crate) struct Finish {
    pub id: i64,
    pub settled: i64,
    pub end: CallEnd,
    pub now: i64,
    pub event: AuditEvent,
}

enum Job {
    Key(String, oneshot::Sender<Option<(String, KeyRow)>>),
    Begin(Box<Begin>, oneshot::Sender<JobResult<Begun>>),
    Finish(Box<Finish>),
    /// Answered once every job queued before it is done.
    Flush(mpsc::Sender<()>),
}

/// Settlements handed to [`Writer::finish`] and not yet sent to the
/// thread (see there).
type Held = Arc<Mutex<Vec<Box<Finish>>>>;

/// Joins the store thread when the last [`Writer`] is dropped, after
/// sending it what is still held, so that every settlement is committed
/// and audited before the gateway is gone (e.g. before `airlock gateway`
/// or `airlock run` exits).
struct Joiner {
    held: Held,
    tx: Option<mpsc::Sender<Job>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Joiner {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let held = match self.held.lock() {
                Ok(mut h) => std::mem::take(&mut *h),
                Err(p) => std::mem::take(&mut *p.into_inner()),
            };
            for f in held {
                let _ = tx.send(Job::Finish(f));
            }
        }
        if let Some(h) = self.handle.take()
            && h.thread().id() != std::thread::current().id()
        {
            let _ = h.join();
        }
    }
}

/// The sending side; the thread ends when every clone of it is dropped
/// (and the last clone waits for it: [`Joiner`]).
#[derive(Clone)]
pub(crate) struct Writer {
    tx: mpsc::Sender<Job>,
    held: Held,
    _thread: Arc<Joiner>,
    sink: Arc<dyn EventSink>,
    store: Arc<Mutex<SqliteStore>>,
    /// Jobs sent to the thread or held for it, and not yet answered.
    queued: Arc<AtomicUsize>,
    /// Calls holding a reservation not yet settled (or dropped).
    open: Arc<AtomicUsize>,
}

/// A call between its reservation and its end: counted while it lives.
pub(crate) struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for Open {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Open")
    }
}

impl Writer {
    /// Start the thread for `store`; it emits settled calls' audit
    /// records to `sink`.
    pub fn start(
        store: Arc<Mutex<SqliteStore>>,
        sink: Arc<dyn EventSink>,
    ) -> std::io::Result<Writer> {
        let (tx, rx) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let (s, q) = (store.clone(), queued.clone());
        let handle = std::thread::Builder::new()
            .name("airlock-gateway-store".into())
            .spawn({
                let sink = sink.clone();
                move || run(&s, &rx, &q, sink.as_ref())
            })?;
        let held: Held = Arc::new(Mutex::new(Vec::new()));
        Ok(Writer {
            tx: tx.clone(),
            held: held.clone(),
            _thread: Arc::new(Joiner {
                held,
                tx: Some(tx),
                handle: Some(handle),
            }),
            sink,
            store,
            queued,
            open: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Count a call as holding a reservation until the result is dropped.
    pub fn opened(&self) -> Open {
        self.open.fetch_add(1, Ordering::AcqRel);
        Open(self.open.clone())
    }

    /// The store, when an operation may be done inline: at most `open`
    /// calls hold a reservation (the caller's own included), nothing is
    /// queued for the thread and no one holds the store.
    fn alone(&self, open: usize) -> Option<MutexGuard<'_, SqliteStore>> {
        if self.open.load(Ordering::Acquire) > open || self.queued.load(Ordering::Acquire) != 0 {
            return None;
        }
        // Poisoned or busy: the thread's path decides (and reports).
        self.store.try_lock().ok()
    }

    /// Send `job` to the thread, after every settlement held so far (one
    /// order: held settlements first).
    fn send(&self, job: Job) -> bool {
        self.queued.fetch_add(1, Ordering::AcqRel);
        let sent = match self.held.lock() {
            Ok(mut held) => {
                self.release_locked(&mut held);
                self.tx.send(job).is_ok()
            }
            // Poisoned: nothing can be ordered after what it holds.
            Err(_) => false,
        };
        if !sent {
            self.queued.fetch_sub(1, Ordering::AcqRel);
        }
        sent
    }

    /// Send every held settlement to the thread, in order.
    fn release(&self) {
        if let Ok(mut held) = self.held.lock() {
            self.release_locked(&mut held);
        }
    }

    // Boxed as `Job::Finish` carries them: moved in without a copy.
    #[allow(clippy::vec_box)]
    fn release_locked(&self, held: &mut Vec<Box<Finish>>) {
        for f in held.drain(..) {
            if let Err(mpsc::SendError(job)) = self.tx.send(Job::Finish(f)) {
                self.queued.fetch_sub(1, Ordering::AcqRel);
                tracing::error!("gateway store thread gone; the reservation stands");
                if let Job::Finish(f) = job {
                    self.emit_lost(f.event);
                }
            }
        }
    }

    /// The live key row for a presented key (`None`: unknown, revoked, or
    /// the lookup failed — the caller refuses).
    pub async fn key(&self, presented: String) -> Option<(String, KeyRow)> {
        if let Some(s) = self.alone(0) {
            return crate::keys::verify_key(&s, &presented).ok().flatten();
        }
        let (tx, rx) = oneshot::channel();
        if !self.send(Job::Key(presented, tx)) {
            return None;
        }
        rx.await.ok().flatten()
    }

    /// Reserve (see [`SqliteStore::gateway_begin`]), after checking again
    /// that the call's virtual key, if it has one, is live.
    pub async fn begin(&self, b: Begin) -> JobResult<Begun> {
        // The caller's own call is counted ([`Writer::opened`] first).
        if let Some(mut s) = self.alone(1) {
            return begin_alone(&mut s, &b);
        }
        let (tx, rx) = oneshot::channel();
        if !self.send(Job::Begin(Box::new(b), tx)) {
            return Err("gateway store thread gone".to_string());
        }
        rx.await
            .map_err(|_| "gateway store thread gone".to_string())?
    }

    /// Queue a settlement (see [`SqliteStore::gateway_finish`]) and the
    /// call's audit record, without waiting: the store thread commits the
    /// settlement, then emits the record. Never inline, so the answer does
    /// not wait for a commit. Ordering holds all the same: the channel is
    /// one FIFO queue and an operation is done inline only when nothing is
    /// queued ([`Writer::alone`]), so the next reservation of this process
    /// (a retry with the same idempotency key, the next call against the
    /// same budget) is applied after this settlement. Until it commits, the
    /// store holds the reservation (≥ the settled cost): a reader sees too
    /// much spent, never too little.
    ///
    /// Held, then sent: the settlement is held here and handed to the
    /// thread by a task spawned on the caller's runtime, which runs once
    /// the caller's task has yielded — after the answer's last bytes are
    /// written. Sent at once, the thread woke on the same core and often
    /// ran the commit before them. Any operation sent meanwhile sends the
    /// held settlements first, and `queued` counts them from here, so
    /// nothing is done inline or ahead of them.
    pub fn finish(&self, f: Finish) {
        self.queued.fetch_add(1, Ordering::AcqRel);
        let first = match self.held.lock() {
            Ok(mut held) => {
                held.push(Box::new(f));
                held.len() == 1
            }
            Err(_) => {
                self.queued.fetch_sub(1, Ordering::AcqRel);
                tracing::error!("gateway settlement queue poisoned; the reservation stands");
                self.emit_lost(f.event);
                return;
            }
        };
        if !first {
            // A release is already on its way.
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let w = self.clone();
                drop(rt.spawn(async move { w.release() }));
            }
            Err(_) => self.release(),
        }
    }

    /// The thread is gone: the record is still emitted (the settlement is
    /// not, so the reservation stands — too much charged, never too little).
    fn emit_lost(&self, event: AuditEvent) {
        if let Err(err) = self.sink.emit(event) {
            tracing::error!(error = %err, "gateway audit record refused");
        }
    }

    /// Wait (blocking the caller) until every operation queued so far is
    /// done: settlements committed and their audit records emitted.
    pub fn flush(&self) {
        let (tx, rx) = mpsc::channel();
        if self.send(Job::Flush(tx)) {
            let _ = rx.recv();
        }
    }
}

/// The answer for a reservation whose virtual key is no longer live (or
/// could not be checked); `None` when it may go on.
fn key_refusal(s: &SqliteStore, b: &Begin) -> Option<JobResult<Begun>> {
    match b.scopes.key.as_deref().map(|id| s.gateway_key_live(id)) {
        None | Some(Ok(true)) => None,
        Some(Ok(false)) => Some(Ok(Begun::KeyRevoked)),
        Some(Err(e)) => Some(Err(e.to_string())),
    }
}

/// A reservation done inline: the key check, then the reservation, as the
/// batch does each.
fn begin_alone(s: &mut SqliteStore, b: &Begin) -> JobResult<Begun> {
    if let Some(refused) = key_refusal(s, b) {
        return refused;
    }
    s.gateway_begin(&b.tenant, &b.call())
        .map(Begun::Store)
        .map_err(|e| e.to_string())
}

fn run(
    store: &Mutex<SqliteStore>,
    rx: &mpsc::Receiver<Job>,
    queued: &AtomicUsize,
    sink: &dyn EventSink,
) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        jobs.push(first);
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let n = jobs.len();
        let mut done = Done::default();
        match store.lock() {
            Ok(mut s) => batch(&mut s, &mut jobs, &mut done),
            // Poisoned: every job fails (dropping its sender says so); the
            // reservations stand and the calls are still audited.
            Err(_) => {
                for j in jobs.drain(..) {
                    match j {
                        Job::Finish(f) => {
                            tracing::error!("gateway store unavailable; the reservation stands");
                            done.events.push(f.event);
                        }
                        Job::Flush(tx) => done.flushes.push(tx),
                        _ => {}
                    }
                }
            }
        }
        // Committed (or failed and logged): now the audit records.
        for e in done.events.drain(..) {
            if let Err(err) = sink.emit(e) {
                tracing::error!(error = %err, "gateway audit record refused");
            }
        }
        queued.fetch_sub(n, Ordering::AcqRel);
        for tx in done.flushes.drain(..) {
            let _ = tx.send(());
        }
    }
}

/// What a batch leaves to do after its transaction.
#[derive(Default)]
struct Done {
    events: Vec<AuditEvent>,
    flushes: Vec<mpsc::Sender<()>>,
}

fn batch(s: &mut SqliteStore, jobs: &mut Vec<Job>, done: &mut Done) {
    // Key lookups and key checks first: reads, no transaction needed. A
    // call whose key was revoked since it was looked up reserves nothing.
    let mut writes = Vec::with_capacity(jobs.len());
    for j in jobs.drain(..) {
        match j {
            Job::Key(k, tx) => {
                let _ = tx.send(crate::keys::verify_key(s, &k).ok().flatten());
            }
            Job::Begin(b, tx) => match key_refusal(s, &b) {
                None => writes.push(Job::Begin(b, tx)),
                Some(refused) => {
                    let _ = tx.send(refused);
                }
            },
            Job::Flush(tx) => done.flushes.push(tx),
            w => writes.push(w),
        }
    }
    if writes.is_empty() {
        return;
    }
    let ops: Vec<GatewayOp<'_>> = writes
        .iter()
        .filter_map(|j| match j {
            Job::Begin(b, _) => Some(GatewayOp::Begin(&b.tenant, b.call())),
            Job::Finish(f) => Some(GatewayOp::Finish(f.id, f.settled, &f.end, f.now)),
            Job::Key(..) | Job::Flush(_) => None,
        })
        .collect();
    let results = s.gateway_batch(&ops);
    drop(ops);
    match results {
        Ok(results) => {
            for (j, r) in writes.into_iter().zip(results) {
                match (j, r) {
                    (Job::Begin(_, tx), Ok(GatewayDone::Begin(b))) => {
                        let _ = tx.send(Ok(Begun::Store(b)));
                    }
                    (Job::Finish(f), Ok(GatewayDone::Finished)) => done.events.push(f.event),
                    (Job::Begin(_, tx), r) => {
                        let _ = tx.send(Err(err_text(r.err())));
                    }
                    (Job::Finish(f), r) => {
                        let e = err_text(r.err());
                        tracing::error!(error = %e, "gateway settlement failed; the reservation stands");
                        done.events.push(f.event);
                    }
                    (Job::Key(..) | Job::Flush(_), _) => {}
                }
            }
        }
        Err(e) => {
            let e = e.to_string();
            for j in writes {
                match j {
                    Job::Begin(_, tx) => {
                        let _ = tx.send(Err(e.clone()));
                    }
                    Job::Finish(f) => {
                        tracing::error!(error = %e, "gateway settlement failed; the reservation stands");
                        done.events.push(f.event);
                    }
                    Job::Key(..) | Job::Flush(_) => {}
                }
            }
        }
    }
}

fn err_text(e: Option<airlock_store::StoreError>) -> String {
    e.map_or_else(|| "unexpected store answer".to_string(), |e| e.to_string())
}
