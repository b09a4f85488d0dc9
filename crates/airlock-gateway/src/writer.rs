//! The gateway's store thread: every per-call store operation (virtual key
//! lookup, reservation, settlement) goes to one thread over a channel, and
//! the thread does everything that is waiting in one SQLite transaction
//! (group commit). Under load, concurrent calls share a commit instead of
//! taking turns on the store mutex with a commit each; alone, a call pays
//! one thread hand-off per operation, as it did with `spawn_blocking`.
//!
//! Guarantees are the store's ([`SqliteStore::gateway_batch`]): each
//! operation is done exactly as alone, and its answer is sent only after its
//! transaction committed — a reservation made there is in the database,
//! visible to every process, before its call is forwarded.
//!
//! **Draws without a write.** Most reservations need no transaction of
//! their own: when the store is free and this connection holds a lease
//! that covers the call, for a new idempotency key, under unchanged
//! budgets, `SqliteStore::gateway_draw` answers at once and the draw is
//! written by the next batch (the thread is told, and runs one within
//! [`SETTLE_WAIT`]). The lease was committed durably after checking every
//! budget and already counts as spent in every process, so budgets hold
//! as before; what waits is the call's own row (its idempotency key is
//! known to this process only until then). Everything else — a retry, a
//! replay, a key in flight, a new lease, a refusal — is decided as below.
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
//! **Settlements are not waited for, and share a commit.** A settlement
//! and its call's audit record are held ([`Writer::finish`]) and the answer
//! ends at once. The next operation takes what is held along into its own
//! transaction: a reservation done inline commits the held settlements in
//! front of it; anything sent to the thread sends them first; the thread
//! takes what is held once it has taken everything sent. So one FIFO order
//! holds — whatever this process does next (a retry with the same
//! idempotency key, the next reservation against the same budget) is
//! applied after the settlement — and a call costs one commit, not two.
//! What no operation takes along within [`SETTLE_WAIT`] the thread commits
//! alone. The record is emitted after the commit. Until then the store
//! holds the reservation, which is at least the settled cost: another
//! process may see more spent than the final figure for a moment, never
//! less. The last [`Writer`] to go joins the thread, so nothing held is
//! lost when the gateway is dropped (`airlock gateway` stopping, `airlock
//! run` ending).

use airlock_store::{
    CallBegin, CallEnd, CallScopes, GatewayDone, GatewayOp, KeyRow, NewCall, SqliteStore,
};
use airlock_types::{AuditEvent, EventSink, TenantId};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Most operations done in one transaction.
const MAX_BATCH: usize = 256;

/// How long held settlements wait for another operation to share its
/// commit before the thread commits them alone.
const SETTLE_WAIT: Duration = Duration::from_millis(2);

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
    /// Settlements are held: commit them within [`SETTLE_WAIT`] unless
    /// another operation takes them along first. Not counted in `queued`.
    Wake,
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
    /// A [`Job::Wake`] is on its way or the thread is waiting on one.
    armed: Arc<AtomicBool>,
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
        let held: Held = Arc::new(Mutex::new(Vec::new()));
        let armed = Arc::new(AtomicBool::new(false));
        let shared = Shared {
            store: store.clone(),
            queued: queued.clone(),
            held: held.clone(),
            armed: armed.clone(),
            sink: sink.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("airlock-gateway-store".into())
            .spawn(move || run(&shared, &rx))?;
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
            armed,
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

    /// [`Writer::alone`], except that settlements may be held (nothing is
    /// in the channel): they are taken out, to be committed with the
    /// caller's operation, in front of it.
    #[allow(clippy::vec_box)]
    fn alone_with_held(
        &self,
        open: usize,
    ) -> Option<(MutexGuard<'_, SqliteStore>, Vec<Box<Finish>>)> {
        if self.open.load(Ordering::Acquire) > open {
            return None;
        }
        let store = self.store.try_lock().ok()?;
        let mut held = self.held.lock().ok()?;
        // Every job counted as queued is held here (a job counts before it
        // is sent or held, and until it is done).
        if self.queued.load(Ordering::Acquire) != held.len() {
            return None;
        }
        Some((store, std::mem::take(&mut *held)))
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

    /// Have the thread commit what is held unless the next operation
    /// takes it along first.
    fn wake(&self) {
        if !self.armed.swap(true, Ordering::AcqRel) && self.tx.send(Job::Wake).is_err() {
            self.armed.store(false, Ordering::Release);
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
        // Drawn from a held lease without a write when the store can
        // (`SqliteStore::gateway_draw`): the draw is written by the next
        // batch, which the thread runs within SETTLE_WAIT.
        if let Ok(mut s) = self.store.try_lock()
            && let Ok(Some(d)) = s.gateway_draw(&b.tenant, &b.call())
        {
            drop(s);
            self.wake_soon();
            return Ok(begun(d));
        }
        // The caller's own call is counted ([`Writer::opened`] first).
        if let Some((mut s, held)) = self.alone_with_held(1) {
            if held.is_empty() {
                return begin_alone(&mut s, &b);
            }
            // The settlements held since the last call share this commit.
            let n = held.len();
            let (tx, mut rx) = oneshot::channel();
            let mut jobs: Vec<Job> = held.into_iter().map(Job::Finish).collect();
            jobs.push(Job::Begin(Box::new(b), tx));
            let mut done = Done::default();
            batch(&mut s, &mut jobs, &mut done);
            drop(s);
            self.emit_done(&mut done);
            self.queued.fetch_sub(n, Ordering::AcqRel);
            return rx
                .try_recv()
                .unwrap_or_else(|_| Err("unexpected store answer".to_string()));
        }
        let (tx, rx) = oneshot::channel();
        if !self.send(Job::Begin(Box::new(b), tx)) {
            return Err("gateway store thread gone".to_string());
        }
        rx.await
            .map_err(|_| "gateway store thread gone".to_string())?
    }

    /// Hold a settlement (see [`SqliteStore::gateway_finish`]) and the
    /// call's audit record, without waiting; the record is emitted once the
    /// settlement is committed. Never inline, so the answer does not wait
    /// for a commit. The next operation takes it along (see the module
    /// doc), else the thread commits it after [`SETTLE_WAIT`]. Ordering
    /// holds: `queued` counts it from here, so no operation is done inline
    /// or sent ahead of it. Until it commits, the store holds the
    /// reservation (≥ the settled cost): a reader sees too much spent,
    /// never too little.
    ///
    /// The thread is told later ([`Writer::wake_later`]).
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
            // The thread was already told.
            return;
        }
        self.wake_later();
    }

    /// [`Writer::wake`] from a task spawned on the caller's runtime, which
    /// runs once the caller's task has yielded (after the answer's last
    /// bytes are written, or while the provider is asked): told at once,
    /// the thread woke on the same core ahead of them.
    fn wake_later(&self) {
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let w = self.clone();
                drop(rt.spawn(async move { w.wake() }));
            }
            Err(_) => self.wake(),
        }
    }

    /// Have draws written within [`SETTLE_WAIT`] unless the thread is
    /// already told.
    fn wake_soon(&self) {
        if !self.armed.load(Ordering::Acquire) {
            self.wake_later();
        }
    }

    /// Emit the audit records of settlements just committed.
    fn emit_done(&self, done: &mut Done) {
        for e in done.events.drain(..) {
            if let Err(err) = self.sink.emit(e) {
                tracing::error!(error = %err, "gateway audit record refused");
            }
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

/// A reservation's answer for the caller.
fn begun(b: CallBegin) -> Begun {
    match b {
        CallBegin::KeyRevoked => Begun::KeyRevoked,
        b => Begun::Store(b),
    }
}

/// A reservation done inline, as the batch does each (the call's virtual
/// key is checked in the same transaction).
fn begin_alone(s: &mut SqliteStore, b: &Begin) -> JobResult<Begun> {
    s.gateway_begin(&b.tenant, &b.call())
        .map(begun)
        .map_err(|e| e.to_string())
}

/// What the store thread shares with the [`Writer`]s.
struct Shared {
    store: Arc<Mutex<SqliteStore>>,
    queued: Arc<AtomicUsize>,
    held: Held,
    armed: Arc<AtomicBool>,
    sink: Arc<dyn EventSink>,
}

fn run(sh: &Shared, rx: &mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    let mut live = true;
    while live {
        match rx.recv() {
            Ok(Job::Wake) => {
                // Settlements are held: give the next operation a moment to
                // take them along (one commit for both) before doing them alone.
                let deadline = Instant::now() + SETTLE_WAIT;
                loop {
                    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                        Ok(Job::Wake) => {}
                        Ok(j) => {
                            jobs.push(j);
                            break;
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) => break,
                        Err(mpsc::RecvTimeoutError::Disconnected) => {
                            live = false;
                            break;
                        }
                    }
                }
            }
            Ok(j) => jobs.push(j),
            Err(_) => break,
        }
        // Everything sent, then (once the channel is empty) what is held:
        // held settlements are newer than anything sent, which sends the
        // held ones first under the same lock (`Writer::send`).
        if let Ok(mut held) = sh.held.lock() {
            let mut drained = false;
            while jobs.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(Job::Wake) => {}
                    Ok(j) => jobs.push(j),
                    Err(_) => {
                        drained = true;
                        break;
                    }
                }
            }
            if drained {
                sh.armed.store(false, Ordering::Release);
                jobs.extend(held.drain(..).map(Job::Finish));
            }
        }
        let n = jobs.len();
        let mut done = Done::default();
        match sh.store.lock() {
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
            if let Err(err) = sh.sink.emit(e) {
                tracing::error!(error = %err, "gateway audit record refused");
            }
        }
        sh.queued.fetch_sub(n, Ordering::AcqRel);
        for tx in done.flushes.drain(..) {
            let _ = tx.send(());
        }
    }
    // Every Writer is gone: what was drawn is written, and what the leases
    // still hold is given back, before the thread ends.
    if let Ok(mut s) = sh.store.lock()
        && let Err(e) = s.gateway_release_leases(None)
    {
        tracing::error!(error = %e, "gateway leases not released; they count until they expire");
    }
}

/// What a batch leaves to do after its transaction.
#[derive(Default)]
struct Done {
    events: Vec<AuditEvent>,
    flushes: Vec<mpsc::Sender<()>>,
}

fn batch(s: &mut SqliteStore, jobs: &mut Vec<Job>, done: &mut Done) {
    // Key lookups first: reads, no transaction needed. (A call whose key
    // was revoked since it was looked up is refused by its reservation.)
    let mut writes = Vec::with_capacity(jobs.len());
    for j in jobs.drain(..) {
        match j {
            Job::Key(k, tx) => {
                let _ = tx.send(crate::keys::verify_key(s, &k).ok().flatten());
            }
            Job::Flush(tx) => done.flushes.push(tx),
            Job::Wake => {}
            w => writes.push(w),
        }
    }
    if writes.is_empty() {
        // Draws answered without a write are written now.
        if let Err(e) = s.gateway_flush() {
            tracing::error!(error = %e, "gateway draws not written; their leases keep the amounts");
        }
        return;
    }
    let ops: Vec<GatewayOp<'_>> = writes
        .iter()
        .filter_map(|j| match j {
            Job::Begin(b, _) => Some(GatewayOp::Begin(&b.tenant, b.call())),
            Job::Finish(f) => Some(GatewayOp::Finish(f.id, f.settled, &f.end, f.now)),
            Job::Key(..) | Job::Flush(_) | Job::Wake => None,
        })
        .collect();
    let results = s.gateway_batch(&ops);
    drop(ops);
    match results {
        Ok(results) => {
            for (j, r) in writes.into_iter().zip(results) {
                match (j, r) {
                    (Job::Begin(_, tx), Ok(GatewayDone::Begin(b))) => {
                        let _ = tx.send(Ok(begun(b)));
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
                    (Job::Key(..) | Job::Flush(_) | Job::Wake, _) => {}
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
                    Job::Key(..) | Job::Flush(_) | Job::Wake => {}
                }
            }
        }
    }
}

fn err_text(e: Option<airlock_store::StoreError>) -> String {
    e.map_or_else(|| "unexpected store answer".to_string(), |e| e.to_string())
}
