//! The writer: one thread owns the store and appends in group commits.
//!
//! Producers encode their event (canonically) on their own thread and put the
//! bytes in a bounded queue. The writer thread takes everything queued, hashes
//! it into the chain and the Merkle frontier, and stores the whole batch in
//! one transaction, which is one fsync. Only then does it advance the
//! "durable" counter and wake the producers waiting in [`AuditLog::append`].
//! Many concurrent producers therefore share one fsync, and no producer is
//! told "done" before its record is on disk.
//!
//! Records queued through the sink (whose producers do not wait for the
//! disk) are gathered for at most `LINGER` (2 ms) before the commit, or until
//! `FLUSH_AT` are queued, so a steady stream of single events costs one
//! transaction per few milliseconds rather than one per event. As soon as
//! any producer waits for durability ([`AuditLog::append`],
//! [`AuditLog::wait_durable`]) or the log closes, the writer commits at once.
//!
//! Several logs (in one process or several) may be open on one database and
//! checkpoint file; see [`crate::shared`] for how they take turns. A record's
//! index is therefore known only once it is stored.

use crate::checkpoint::{Checkpoint, Signer};
use crate::error::AuditError;
use crate::merkle::{Frontier, Hash, chain_hash, leaf_hash};
use crate::shared::CheckpointFile;
use crate::{canonical, recover};
use airlock_store::{AuditStore, CheckpointRow, NewRecord, StoreError};
use airlock_types::{AuditEvent, EventSink, SinkError, TenantId, Timestamp};
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How a log is opened.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Whose log this is (every stored row carries it).
    pub tenant: TenantId,
    /// Write a checkpoint after this many new records (counting those other
    /// writers of the same log stored, as far as this writer has seen them).
    pub checkpoint_every: u64,
    /// Write a checkpoint at least this often while this writer appends
    /// (none when another writer's checkpoint already covers the log).
    pub checkpoint_interval: Duration,
    /// Most events waiting for the writer; beyond it `emit` says `Overloaded`
    /// and `append` waits.
    pub queue_capacity: usize,
    /// The plain-text checkpoint file (appended to, one line per checkpoint).
    pub checkpoint_file: PathBuf,
}

impl LogOptions {
    /// Defaults: a checkpoint every 1000 records or 10 s, a 64k-event queue.
    pub fn new(tenant: TenantId, checkpoint_file: PathBuf) -> Self {
        LogOptions {
            tenant,
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(10),
            queue_capacity: 65_536,
            checkpoint_file,
        }
    }
}

/// Longest a queued record waits for company before the writer commits it,
/// when nobody is waiting for it to be durable.
const LINGER: Duration = Duration::from_millis(2);
/// Commit without lingering once this many records are queued.
const FLUSH_AT: usize = 512;
/// Most times one batch is retried after other writers appended first
/// (each retry means another writer made progress).
const MAX_OVERTAKEN: usize = 10_000;

/// A queued event's place in this log's queue, from [`AuditLog::submit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(u64);

#[derive(Debug, Default)]
struct State {
    pending: Vec<Vec<u8>>,
    /// Tickets among `pending` whose producer waits to learn the index.
    want_index: Vec<u64>,
    /// Stored indexes of those tickets, until their producer takes them.
    indexes: HashMap<u64, u64>,
    /// Producers blocked in `wait_durable`: the writer must not linger.
    waiters: usize,
    /// Tickets handed out (events accepted).
    enqueued: u64,
    /// Tickets durable on disk.
    durable: u64,
    closing: bool,
    failed: Option<String>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// The writer waits here for work.
    work: Condvar,
    /// Producers wait here for durability.
    done: Condvar,
    /// Producers wait here for queue space.
    space: Condvar,
    capacity: usize,
}

enum Refused {
    Closed,
    Overloaded,
    Failed(String),
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is plain counters and a queue; a panic elsewhere while
        // holding the lock cannot leave it half-updated in a harmful way.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue one encoded record; returns its ticket. With `wait`, blocks while
    /// the queue is full instead of refusing. With `want_index`, the writer
    /// keeps the record's index for [`Shared::take_index`].
    fn enqueue(&self, body: Vec<u8>, wait: bool, want_index: bool) -> Result<u64, Refused> {
        let mut st = self.lock();
        loop {
            if let Some(f) = &st.failed {
                return Err(Refused::Failed(f.clone()));
            }
            if st.closing {
                return Err(Refused::Closed);
            }
            if st.pending.len() < self.capacity {
                break;
            }
            if !wait {
                return Err(Refused::Overloaded);
            }
            st = self.space.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        st.pending.push(body);
        let ticket = st.enqueued;
        st.enqueued += 1;
        if want_index {
            st.want_index.push(ticket);
        }
        // Wake the writer for the first record of a batch (it then lingers),
        // when a batch is full, or when someone waits for the disk; records
        // in between join the batch without a wake-up each.
        let full = st.pending.len() >= FLUSH_AT.min(self.capacity);
        let wake = st.pending.len() == 1 || full || st.waiters > 0;
        drop(st);
        if wake {
            self.work.notify_one();
        }
        Ok(ticket)
    }

    fn wait_durable(&self, ticket: u64) -> Result<(), AuditError> {
        let mut st = self.lock();
        if st.durable > ticket {
            return Ok(());
        }
        // A waiter cuts the writer's linger short.
        st.waiters += 1;
        self.work.notify_one();
        let result = loop {
            if st.durable > ticket {
                break Ok(());
            }
            if let Some(f) = &st.failed {
                break Err(AuditError::WriterFailed(f.clone()));
            }
            st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
        };
        st.waiters -= 1;
        result
    }

    /// The index of a durable record queued with `want_index`.
    fn take_index(&self, ticket: u64) -> Result<u64, AuditError> {
        self.lock().indexes.remove(&ticket).ok_or_else(|| {
            AuditError::WriterFailed(format!(
                "invariant: the index of queued record {ticket} was not kept"
            ))
        })
    }
}

/// An open audit log with its writer thread. Dropping it closes it (without
/// reporting errors; call [`AuditLog::close`] to see them).
#[derive(Debug)]
pub struct AuditLog {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<Result<(), AuditError>>>,
}

impl AuditLog {
    /// Open the log stored in `store`, check that it agrees with its
    /// checkpoints (refusing to append to a damaged log), and start the
    /// writer. Other logs may be open on the same database and checkpoint
    /// file, in this process or others.
    pub fn open(
        store: Box<dyn AuditStore>,
        signer: Signer,
        opts: LogOptions,
    ) -> Result<AuditLog, AuditError> {
        let mut cp_file = CheckpointFile::open(&opts.checkpoint_file)?;
        let head = recover::recover(store.as_ref(), &opts.tenant, &mut cp_file)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            done: Condvar::new(),
            space: Condvar::new(),
            capacity: opts.queue_capacity.max(1),
        });
        let writer = Writer {
            store,
            signer,
            tenant: opts.tenant,
            count: head.count,
            chain: head.chain,
            frontier: head.frontier,
            checkpointed: head.checkpointed,
            last_checkpoint: Instant::now(),
            every: opts.checkpoint_every.max(1),
            interval: opts.checkpoint_interval,
            cp_file,
        };
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("airlock-audit-writer".into())
            .spawn(move || writer.run(&sh))
            .map_err(AuditError::Spawn)?;
        Ok(AuditLog {
            shared,
            thread: Some(thread),
        })
    }

    /// Append one event and return its index once it is durable on disk.
    /// Waits while the queue is full.
    pub fn append(&self, event: &AuditEvent) -> Result<u64, AuditError> {
        let body = canonical::encode(event).map_err(AuditError::Encode)?;
        let ticket = self.shared.enqueue(body, true, true).map_err(refused)?;
        self.shared.wait_durable(ticket)?;
        self.shared.take_index(ticket)
    }

    /// Queue one event without waiting for the disk; refuses with
    /// `Overloaded` when the queue is full. Pair with
    /// [`AuditLog::wait_durable`] to pipeline many events per fsync.
    pub fn submit(&self, event: &AuditEvent) -> Result<Ticket, AuditError> {
        let body = canonical::encode(event).map_err(AuditError::Encode)?;
        let ticket = self.shared.enqueue(body, false, false).map_err(refused)?;
        Ok(Ticket(ticket))
    }

    /// Wait until the event behind `ticket` (from [`AuditLog::submit`]) is
    /// durable on disk.
    pub fn wait_durable(&self, ticket: Ticket) -> Result<(), AuditError> {
        self.shared.wait_durable(ticket.0)
    }

    /// A sink for library crates: `emit` queues without waiting for the disk
    /// and refuses (`Overloaded`, `Closed`, `Failed`) rather than drop.
    pub fn sink(&self) -> Arc<dyn EventSink> {
        Arc::new(LogSink {
            shared: self.shared.clone(),
        })
    }

    /// Stop accepting events, write everything queued, write a final
    /// checkpoint, and stop the writer.
    pub fn close(mut self) -> Result<(), AuditError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), AuditError> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        self.shared.lock().closing = true;
        self.shared.work.notify_one();
        self.shared.space.notify_all();
        match thread.join() {
            Ok(r) => r,
            Err(_) => Err(AuditError::WriterFailed("writer thread panicked".into())),
        }
    }
}

fn refused(r: Refused) -> AuditError {
    match r {
        Refused::Closed => AuditError::Closed,
        Refused::Overloaded => AuditError::Overloaded,
        Refused::Failed(f) => AuditError::WriterFailed(f),
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

#[derive(Debug)]
struct LogSink {
    shared: Arc<Shared>,
}

impl EventSink for LogSink {
    fn emit(&self, event: AuditEvent) -> Result<(), SinkError> {
        let body = canonical::encode(&event)
            .map_err(|e| SinkError::Failed(format!("cannot encode event: {e}")))?;
        match self.shared.enqueue(body, false, false) {
            Ok(_) => Ok(()),
            Err(Refused::Closed) => Err(SinkError::Closed),
            Err(Refused::Overloaded) => Err(SinkError::Overloaded),
            Err(Refused::Failed(f)) => Err(SinkError::Failed(f)),
        }
    }
}

struct Writer {
    store: Box<dyn AuditStore>,
    signer: Signer,
    tenant: TenantId,
    /// The log as far as this writer has read or written it.
    count: u64,
    chain: Hash,
    frontier: Frontier,
    /// Records covered by the latest checkpoint this writer knows of.
    checkpointed: u64,
    last_checkpoint: Instant,
    every: u64,
    interval: Duration,
    cp_file: CheckpointFile,
}

impl Writer {
    fn run(mut self, shared: &Shared) -> Result<(), AuditError> {
        let mut batch: Vec<Vec<u8>> = Vec::new();
        let mut want: Vec<u64> = Vec::new();
        loop {
            let closing = {
                let mut st = shared.lock();
                loop {
                    if !st.pending.is_empty() || st.closing {
                        break;
                    }
                    if self.count > self.checkpointed {
                        let deadline = self.last_checkpoint + self.interval;
                        let now = Instant::now();
                        if now >= deadline {
                            break;
                        }
                        st = shared
                            .work
                            .wait_timeout(st, deadline - now)
                            .unwrap_or_else(|p| p.into_inner())
                            .0;
                    } else {
                        st = shared.work.wait(st).unwrap_or_else(|p| p.into_inner());
                    }
                }
                // Linger for more records unless someone waits for these.
                let linger_until = Instant::now() + LINGER;
                while !st.closing
                    && !st.pending.is_empty()
                    && st.waiters == 0
                    && st.pending.len() < FLUSH_AT.min(shared.capacity)
                {
                    let now = Instant::now();
                    if now >= linger_until {
                        break;
                    }
                    st = shared
                        .work
                        .wait_timeout(st, linger_until - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                std::mem::swap(&mut st.pending, &mut batch);
                std::mem::swap(&mut st.want_index, &mut want);
                st.closing
            };
            shared.space.notify_all();
            if !batch.is_empty() {
                let n = batch.len() as u64;
                let res = self.commit(&batch);
                batch.clear();
                let mut st = shared.lock();
                match res {
                    Ok(first_index) => {
                        // Batches are taken in ticket order and each is
                        // durable before the next: this one starts at `durable`.
                        let first_ticket = st.durable;
                        for t in want.drain(..) {
                            st.indexes.insert(t, first_index + (t - first_ticket));
                        }
                        st.durable += n;
                    }
                    Err(e) => {
                        st.failed = Some(e.to_string());
                        drop(st);
                        shared.done.notify_all();
                        return Err(e);
                    }
                }
                drop(st);
                shared.done.notify_all();
            }
            let pending = self.count.saturating_sub(self.checkpointed);
            let due = pending > 0
                && (closing
                    || pending >= self.every
                    || self.last_checkpoint.elapsed() >= self.interval);
            if due && let Err(e) = self.checkpoint() {
                shared.lock().failed = Some(e.to_string());
                shared.done.notify_all();
                return Err(e);
            }
            if closing {
                return Ok(());
            }
        }
    }

    /// Hash and store one batch in one transaction; returns the index of its
    /// first record. The in-memory head only moves once the batch is durable.
    /// When another writer appended first, read its records and go again.
    fn commit(&mut self, bodies: &[Vec<u8>]) -> Result<u64, AuditError> {
        for _ in 0..MAX_OVERTAKEN {
            let mut chain = self.chain;
            let mut leaves = Vec::with_capacity(bodies.len());
            let mut rows = Vec::with_capacity(bodies.len());
            for (i, body) in bodies.iter().enumerate() {
                let leaf = leaf_hash(body);
                chain = chain_hash(&chain, &leaf);
                leaves.push(leaf);
                rows.push(NewRecord {
                    index: self.count + i as u64,
                    body,
                    chain,
                });
            }
            match self.store.append_records(&self.tenant, &rows) {
                Ok(()) => {}
                Err(StoreError::HeadMoved { found, .. }) if found > self.count => {
                    self.catch_up()?;
                    continue;
                }
                Err(StoreError::HeadMoved { found, .. }) => {
                    return Err(AuditError::Damaged {
                        detail: format!(
                            "the log holds {found} records but {} were stored before: records were removed",
                            self.count
                        ),
                    });
                }
                Err(e) => return Err(e.into()),
            }
            let first = self.count;
            for leaf in leaves {
                self.frontier.push(leaf);
            }
            self.chain = chain;
            self.count += bodies.len() as u64;
            return Ok(first);
        }
        Err(AuditError::WriterFailed(format!(
            "other writers appended first {MAX_OVERTAKEN} times in a row"
        )))
    }

    /// Read the records other writers stored after this writer's head,
    /// checking that each extends the chain this writer knows.
    fn catch_up(&mut self) -> Result<(), AuditError> {
        let Writer {
            store,
            tenant,
            count,
            chain,
            frontier,
            ..
        } = self;
        let mut problem = None;
        store.for_each_record(tenant, *count, &mut |r| {
            if r.index != *count {
                problem = Some(format!("record {count} is missing"));
                return ControlFlow::Break(());
            }
            let leaf = leaf_hash(r.body);
            let next = chain_hash(chain, &leaf);
            if r.chain != next {
                problem = Some(format!(
                    "record {count}: hash does not match its contents (the record was altered)"
                ));
                return ControlFlow::Break(());
            }
            frontier.push(leaf);
            *chain = next;
            *count += 1;
            ControlFlow::Continue(())
        })?;
        match problem {
            Some(detail) => Err(AuditError::Damaged { detail }),
            None => Ok(()),
        }
    }

    /// Sign a checkpoint over everything stored so far, unless another writer
    /// already covered it; append it to the checkpoint file (fsynced) first,
    /// then to the database, both under the checkpoint file's lock.
    fn checkpoint(&mut self) -> Result<(), AuditError> {
        self.cp_file.lock()?;
        let res = self.checkpoint_locked();
        let unlocked = self.cp_file.unlock();
        res?;
        unlocked?;
        self.last_checkpoint = Instant::now();
        Ok(())
    }

    fn checkpoint_locked(&mut self) -> Result<(), AuditError> {
        self.catch_up()?;
        let file = &mut self.cp_file;
        file.read_new(&self.tenant)?;
        let db = self.store.last_checkpoint(&self.tenant)?;
        let next_seq = file
            .last_seq
            .max(db.as_ref().map(|r| r.seq))
            .map_or(0, |s| s + 1);
        let covered = file.max_size.max(db.as_ref().map_or(0, |r| r.tree_size));
        if covered > self.count {
            return Err(AuditError::Damaged {
                detail: format!(
                    "a checkpoint covers {covered} records but only {} are stored",
                    self.count
                ),
            });
        }
        if covered == self.count {
            // Another writer's checkpoint already covers everything stored.
            self.checkpointed = covered;
            return Ok(());
        }
        let mut cp = Checkpoint {
            v: 1,
            tenant: self.tenant.clone(),
            seq: next_seq,
            size: self.count,
            root: self.frontier.root(),
            chain: self.chain,
            time: Timestamp::now().as_micros(),
            sig: Vec::new(),
        };
        self.signer.sign(&mut cp);
        file.append(&cp)?;
        self.store.append_checkpoint(
            &self.tenant,
            &CheckpointRow {
                seq: cp.seq,
                tree_size: cp.size,
                body: cp.to_line(),
            },
        )?;
        self.checkpointed = self.count;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_store::{RecordRef, SqliteStore};
    use airlock_types::{Actor, EventResult, Reason};
    use std::ops::ControlFlow;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A real SQLite store that counts its transactions.
    #[derive(Debug)]
    struct Counting {
        inner: SqliteStore,
        commits: Arc<AtomicUsize>,
    }

    impl AuditStore for Counting {
        fn append_records(
            &mut self,
            t: &TenantId,
            r: &[NewRecord<'_>],
        ) -> Result<(), airlock_store::StoreError> {
            self.commits.fetch_add(1, Ordering::SeqCst);
            self.inner.append_records(t, r)
        }
        fn append_checkpoint(
            &mut self,
            t: &TenantId,
            cp: &CheckpointRow,
        ) -> Result<(), StoreError> {
            self.inner.append_checkpoint(t, cp)
        }
        fn record_count(&self, t: &TenantId) -> Result<u64, StoreError> {
            self.inner.record_count(t)
        }
        fn for_each_record(
            &self,
            t: &TenantId,
            from: u64,
            v: &mut dyn FnMut(RecordRef<'_>) -> ControlFlow<()>,
        ) -> Result<(), StoreError> {
            self.inner.for_each_record(t, from, v)
        }
        fn checkpoints(&self, t: &TenantId) -> Result<Vec<CheckpointRow>, StoreError> {
            self.inner.checkpoints(t)
        }
        fn begin_snapshot(&self) -> Result<(), StoreError> {
            self.inner.begin_snapshot()
        }
        fn end_snapshot(&self) -> Result<(), StoreError> {
            self.inner.end_snapshot()
        }
        fn missing_guards(&self) -> Result<Vec<String>, StoreError> {
            self.inner.missing_guards()
        }
    }

    fn event(i: usize) -> AuditEvent {
        AuditEvent::new(
            TenantId::default_tenant(),
            Actor::system(),
            airlock_types::Action::CliInit,
            format!("r{i}"),
            Reason::Recorded,
            EventResult::Success,
        )
    }

    fn open(dir: &std::path::Path, commits: Arc<AtomicUsize>) -> AuditLog {
        let store = Counting {
            inner: SqliteStore::open(&dir.join("a.db")).expect("store"),
            commits,
        };
        let signer = Signer::from_pkcs8(&Signer::generate_pkcs8().expect("keygen")).expect("key");
        let opts = LogOptions::new(TenantId::default_tenant(), dir.join("cps"));
        AuditLog::open(Box::new(store), signer, opts).expect("open")
    }

    /// A paced stream of sink events (one every ~100 µs, as a busy proxy
    /// sends them) shares transactions instead of paying one each, and is
    /// durable by itself, without anyone waiting.
    #[test]
    fn sink_events_share_transactions_and_commit_without_a_waiter() {
        let dir = tempfile::tempdir().expect("tempdir");
        let commits = Arc::new(AtomicUsize::new(0));
        let log = open(dir.path(), commits.clone());
        let sink = log.sink();
        let n = 100;
        let start = Instant::now();
        for i in 0..n {
            sink.emit(event(i)).expect("emit");
            std::thread::sleep(Duration::from_micros(100));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while log.shared.lock().durable < n as u64 {
            assert!(
                Instant::now() < deadline,
                "sink events never became durable"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let elapsed = start.elapsed();
        let txns = commits.load(Ordering::SeqCst);
        let bound = usize::try_from(elapsed.as_millis() / LINGER.as_millis()).unwrap_or(n) + 2;
        assert!(
            txns <= bound.min(n / 4),
            "{txns} transactions for {n} events in {elapsed:?}"
        );
        log.close().expect("close");
    }

    /// A producer that waits for the disk gets its own commit: `append`
    /// returns each time, with each event in its own transaction.
    #[test]
    fn append_commits_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let commits = Arc::new(AtomicUsize::new(0));
        let log = open(dir.path(), commits.clone());
        for i in 0..20 {
            assert_eq!(log.append(&event(i)).expect("append"), i as u64);
            assert_eq!(commits.load(Ordering::SeqCst), i + 1);
        }
        log.close().expect("close");
    }
}
