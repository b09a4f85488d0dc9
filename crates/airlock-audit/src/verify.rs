//! Recomputing the log: chain, Merkle tree and checkpoint signatures.

use crate::checkpoint::{Checkpoint, PublicKey};
use crate::error::AuditError;
use crate::files::FileCheckpoint;
use crate::merkle::{CHAIN_START, Frontier, Hash, chain_hash, empty_root, leaf_hash};
use airlock_store::AuditStore;
use airlock_types::TenantId;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::ControlFlow;

/// Where a checkpoint came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "in", rename_all = "snake_case")]
pub enum Source {
    /// The `audit_checkpoints` table.
    Database,
    /// The checkpoint file, at this 1-based line.
    File { line: usize },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Database => f.write_str("in the database"),
            Source::File { line } => write!(f, "at checkpoint file line {line}"),
        }
    }
}

/// One way the log fails verification. The first record problem names the
/// first bad index; later records are not checked past it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// A record index is missing (the row was deleted).
    RecordMissing { index: u64 },
    /// A record's stored hash does not match its contents and predecessor
    /// (the row, or one before it, was edited).
    RecordHash { index: u64 },
    /// A checkpoint's signature does not verify with the public key.
    CheckpointSignature { seq: u64, source: Source },
    /// A checkpoint's root or chain value disagrees with the records it covers.
    CheckpointMismatch { seq: u64, size: u64, source: Source },
    /// A checkpoint covers more records than the log holds: the tail was deleted.
    Truncated {
        seq: u64,
        size: u64,
        records: u64,
        source: Source,
    },
    /// The database and the file hold different checkpoints under one sequence number.
    CheckpointConflict { seq: u64 },
    /// A checkpoint in the database is missing from the checkpoint file.
    CheckpointMissingFromFile { seq: u64 },
    /// A checkpoint is missing from both places (sequence numbers skip it).
    CheckpointMissing { seq: u64 },
    /// A checkpoint is malformed or belongs to another tenant.
    CheckpointMalformed {
        seq: u64,
        source: Source,
        detail: String,
    },
    /// A checkpoint covers fewer records than the one before it.
    CheckpointShrinks { seq: u64, source: Source },
    /// An append-only trigger was dropped.
    GuardMissing { name: String },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::RecordMissing { index } => write!(f, "record {index}: missing (deleted)"),
            Problem::RecordHash { index } => {
                write!(
                    f,
                    "record {index}: hash does not match its contents (the record was altered)"
                )
            }
            Problem::CheckpointSignature { seq, source } => {
                write!(
                    f,
                    "checkpoint {seq} ({source}): signature does not verify with the public key"
                )
            }
            Problem::CheckpointMismatch { seq, size, source } => write!(
                f,
                "checkpoint {seq} ({source}): signed root over {size} records does not match the stored records"
            ),
            Problem::Truncated {
                seq,
                size,
                records,
                source,
            } => write!(
                f,
                "checkpoint {seq} ({source}) covers {size} records but the log holds {records}: records from index {records} on were deleted"
            ),
            Problem::CheckpointConflict { seq } => {
                write!(
                    f,
                    "checkpoint {seq}: the database and the checkpoint file disagree"
                )
            }
            Problem::CheckpointMissingFromFile { seq } => {
                write!(
                    f,
                    "checkpoint {seq}: in the database but missing from the checkpoint file"
                )
            }
            Problem::CheckpointMissing { seq } => write!(
                f,
                "checkpoint {seq}: missing from both the database and the file"
            ),
            Problem::CheckpointMalformed {
                seq,
                source,
                detail,
            } => write!(f, "checkpoint {seq} ({source}): {detail}"),
            Problem::CheckpointShrinks { seq, source } => {
                write!(
                    f,
                    "checkpoint {seq} ({source}) covers fewer records than the checkpoint before it"
                )
            }
            Problem::GuardMissing { name } => write!(f, "append-only trigger {name} was dropped"),
        }
    }
}

/// The result of verifying a log.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Records read and checked.
    pub records: u64,
    /// Distinct checkpoints checked.
    pub checkpoints: u64,
    /// Records covered by the latest checkpoint.
    pub signed_records: u64,
    /// Merkle root of all records read (hex).
    pub root: String,
    /// Everything wrong, most important first; empty means the log verifies.
    pub problems: Vec<Problem>,
}

impl Report {
    /// True when nothing is wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A checkpoint to compare against while scanning.
pub(crate) struct Target<'a> {
    pub cp: &'a Checkpoint,
    pub source: Source,
}

/// The outcome of streaming the records once.
pub(crate) struct Scan {
    pub count: u64,
    pub chain: Hash,
    pub frontier: Frontier,
    /// The first bad record, if any (scanning stopped there).
    pub bad_record: Option<Problem>,
    /// Targets whose root/chain disagree with the records.
    pub mismatched: Vec<usize>,
    /// Targets never reached (they cover more records than were read).
    pub unreached: Vec<usize>,
}

/// Records handed from the reading thread to the hashing thread at a time.
const CHUNK: usize = 4096;

/// A run of records copied out of the database.
#[derive(Default)]
struct Chunk {
    indexes: Vec<u64>,
    /// Concatenated bodies; record `i` is `bodies[ends[i-1]..ends[i]]`.
    bodies: Vec<u8>,
    ends: Vec<usize>,
    /// Stored chain values; `None` when the column is not 32 bytes.
    chains: Vec<Option<Hash>>,
}

/// Stream the tenant's records once, checking the chain and comparing every
/// target checkpoint when the tree reaches its size.
///
/// Two stages on two threads: this thread steps through SQLite and copies
/// rows into chunks; a scoped worker does all the hashing in order. Reading
/// and hashing cost about the same per record, so this nearly doubles the
/// rate on a machine with a spare core, and costs nothing without one.
pub(crate) fn scan(
    store: &dyn AuditStore,
    tenant: &TenantId,
    targets: &[Target<'_>],
) -> Result<Scan, AuditError> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk>(4);
    let (recycle_tx, recycle_rx) = std::sync::mpsc::channel::<Chunk>();
    std::thread::scope(|s| {
        let worker = s.spawn(move || hash_stage(targets, rx, recycle_tx));
        let mut chunk = Chunk::default();
        let mut stopped = false;
        let read = store.for_each_record(tenant, 0, &mut |r| {
            chunk.indexes.push(r.index);
            chunk.bodies.extend_from_slice(r.body);
            chunk.ends.push(chunk.bodies.len());
            chunk.chains.push(<[u8; 32]>::try_from(r.chain).ok());
            if chunk.indexes.len() >= CHUNK {
                let next = recycle_rx.try_recv().unwrap_or_default();
                if tx.send(std::mem::replace(&mut chunk, next)).is_err() {
                    // The worker stopped at a bad record; no need to read on.
                    stopped = true;
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        });
        if !stopped && !chunk.indexes.is_empty() {
            let _ = tx.send(chunk);
        }
        drop(tx);
        let scan = worker.join().map_err(|_| AuditError::Damaged {
            detail: "verification worker panicked".into(),
        })?;
        read?;
        Ok(scan)
    })
}

fn hash_stage(
    targets: &[Target<'_>],
    rx: std::sync::mpsc::Receiver<Chunk>,
    recycle: std::sync::mpsc::Sender<Chunk>,
) -> Scan {
    let mut order: Vec<usize> = (0..targets.len()).collect();
    order.sort_by_key(|&i| targets[i].cp.size);
    let mut next = 0;
    let mut mismatched = Vec::new();
    let mut check = |next: &mut usize, size: u64, root: &Hash, chain: &Hash| {
        while *next < order.len() && targets[order[*next]].cp.size == size {
            let cp = targets[order[*next]].cp;
            if cp.root != *root || cp.chain != *chain {
                mismatched.push(order[*next]);
            }
            *next += 1;
        }
    };
    check(&mut next, 0, &empty_root(), &CHAIN_START);
    let mut count = 0u64;
    let mut chain = CHAIN_START;
    let mut frontier = Frontier::new();
    let mut bad_record = None;
    let mut want_root_at = order.get(next).map(|&i| targets[i].cp.size);
    'chunks: for mut c in rx {
        let mut start = 0;
        for i in 0..c.indexes.len() {
            let body = &c.bodies[start..c.ends[i]];
            start = c.ends[i];
            if c.indexes[i] != count {
                bad_record = Some(Problem::RecordMissing { index: count });
                break 'chunks;
            }
            let leaf = leaf_hash(body);
            chain = chain_hash(&chain, &leaf);
            if c.chains[i] != Some(chain) {
                bad_record = Some(Problem::RecordHash { index: count });
                break 'chunks;
            }
            frontier.push(leaf);
            count += 1;
            if want_root_at == Some(count) {
                check(&mut next, count, &frontier.root(), &chain);
                want_root_at = order.get(next).map(|&i| targets[i].cp.size);
            }
        }
        c.indexes.clear();
        c.bodies.clear();
        c.ends.clear();
        c.chains.clear();
        let _ = recycle.send(c);
    }
    let unreached = order[next..].to_vec();
    Scan {
        count,
        chain,
        frontier,
        bad_record,
        mismatched,
        unreached,
    }
}

/// Verify the tenant's log: every record's chain hash, the Merkle root at
/// every checkpoint, every checkpoint's signature, that the database and the
/// checkpoint file agree, and that the append-only triggers are in place.
///
/// `Err` means the input could not be read at all; a log that was tampered
/// with gives `Ok` with problems.
pub fn verify(
    store: &dyn AuditStore,
    tenant: &TenantId,
    key: &PublicKey,
    file: &[FileCheckpoint],
) -> Result<Report, AuditError> {
    let mut problems = Vec::new();
    for name in store.missing_guards()? {
        problems.push(Problem::GuardMissing { name });
    }

    // Gather checkpoints from both places, keyed by sequence number.
    let db_rows = store.checkpoints(tenant)?;
    let mut db: BTreeMap<u64, Checkpoint> = BTreeMap::new();
    for row in &db_rows {
        match Checkpoint::parse(&row.body) {
            Ok(cp) if cp.seq == row.seq && cp.size == row.tree_size => {
                db.insert(row.seq, cp);
            }
            Ok(_) => problems.push(Problem::CheckpointMalformed {
                seq: row.seq,
                source: Source::Database,
                detail: "row columns disagree with the signed body".into(),
            }),
            Err(detail) => problems.push(Problem::CheckpointMalformed {
                seq: row.seq,
                source: Source::Database,
                detail,
            }),
        }
    }
    let mut merged: BTreeMap<u64, (&Checkpoint, Source)> = BTreeMap::new();
    for f in file {
        let seq = f.checkpoint.seq;
        if merged
            .insert(seq, (&f.checkpoint, Source::File { line: f.line }))
            .is_some()
        {
            problems.push(Problem::CheckpointMalformed {
                seq,
                source: Source::File { line: f.line },
                detail: "sequence number appears twice in the file".into(),
            });
        }
    }
    for (seq, cp) in &db {
        match merged.get(seq) {
            Some((fcp, _)) if *fcp != cp => {
                problems.push(Problem::CheckpointConflict { seq: *seq })
            }
            Some(_) => {}
            // Another node's checkpoint (checked against the records and
            // the key like every other); this node's file has only its own.
            None if store.shared_by_nodes() => {
                merged.insert(*seq, (cp, Source::Database));
            }
            None => {
                problems.push(Problem::CheckpointMissingFromFile { seq: *seq });
                merged.insert(*seq, (cp, Source::Database));
            }
        }
    }

    // Each checkpoint on its own: tenant, signature, order.
    let mut targets = Vec::new();
    let mut expected_seq = 0u64;
    let mut prev_size = 0u64;
    for (seq, (cp, source)) in &merged {
        for missing in expected_seq..*seq {
            problems.push(Problem::CheckpointMissing { seq: missing });
        }
        expected_seq = seq + 1;
        if cp.tenant != *tenant {
            problems.push(Problem::CheckpointMalformed {
                seq: *seq,
                source: *source,
                detail: format!("belongs to tenant {}, not {tenant}", cp.tenant),
            });
            continue;
        }
        if !key.verifies(cp) {
            problems.push(Problem::CheckpointSignature {
                seq: *seq,
                source: *source,
            });
            continue;
        }
        if cp.size < prev_size {
            problems.push(Problem::CheckpointShrinks {
                seq: *seq,
                source: *source,
            });
        }
        prev_size = prev_size.max(cp.size);
        targets.push(Target {
            cp,
            source: *source,
        });
    }

    let scan = scan(store, tenant, &targets)?;
    let record_problem = scan.bad_record.is_some();
    if let Some(p) = scan.bad_record {
        problems.insert(0, p);
    }
    for &i in &scan.mismatched {
        let t = &targets[i];
        problems.push(Problem::CheckpointMismatch {
            seq: t.cp.seq,
            size: t.cp.size,
            source: t.source,
        });
    }
    // A checkpoint beyond the records read: when every record read was fine,
    // the rest of the log is gone. Name the smallest such checkpoint.
    if !record_problem && let Some(&i) = scan.unreached.first() {
        let t = &targets[i];
        problems.push(Problem::Truncated {
            seq: t.cp.seq,
            size: t.cp.size,
            records: scan.count,
            source: t.source,
        });
    }
    let signed_records = targets
        .iter()
        .map(|t| t.cp.size)
        .max()
        .unwrap_or(0)
        .min(scan.count);
    Ok(Report {
        records: scan.count,
        checkpoints: merged.len() as u64,
        signed_records,
        root: hex::encode(scan.frontier.root()),
        problems,
    })
}

/// Verify the tenant's log while other processes may be appending to it:
/// the database is read in one snapshot, and the checkpoint file at `path`
/// is read at the moment that snapshot starts (under the checkpoint file's
/// shared lock), so a checkpoint being written concurrently is seen in both
/// places or in neither. Same report as [`verify`].
pub fn verify_log(
    store: &dyn AuditStore,
    tenant: &TenantId,
    key: &PublicKey,
    path: &std::path::Path,
) -> Result<Report, AuditError> {
    let (_snapshot, file) = crate::shared::consistent_read(store, path)?;
    verify(store, tenant, key, &file)
}
