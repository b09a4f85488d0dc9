//! Sharing one log between several writers (threads or processes, each with
//! its own [`crate::AuditLog`]) and readers.
//!
//! Records need no lock of ours: the store appends a batch only if it starts
//! at the log's current length, checked inside its write transaction, and a
//! writer that was overtaken reads the new records, checks that they extend
//! the chain it knows, and retries after them.
//!
//! Checkpoints go to two places, the checkpoint file and the database, and
//! both must list them in one order, each once. An advisory lock (`flock`)
//! on the checkpoint file itself orders that: a writer holds it exclusively
//! while it reads what others appended, picks the next sequence number,
//! appends its line and inserts the row. A reader (verify, a writer's
//! recovery) holds it shared only while it starts its database snapshot and
//! reads the file, so it sees the file and the database at one moment when
//! no writer is between the two, then verifies without holding anything.
//! The lock is released by the kernel when a process dies; a writer killed
//! between its file append and its insert leaves a checkpoint only in the
//! file, which verification accepts and the next writer numbers after.

use crate::checkpoint::Checkpoint;
use crate::error::AuditError;
use crate::files::{FileCheckpoint, parse_checkpoints};
use airlock_store::AuditStore;
use airlock_types::TenantId;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Longest a writer or reader waits for the checkpoint file's lock (the same
/// as the database's busy timeout): another Airlock process holds it for one
/// checkpoint at a time, so a longer wait means something else holds it, and
/// failing (closed) beats hanging.
const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// Take `file`'s `flock`, shared or exclusive, waiting at most [`LOCK_TIMEOUT`].
fn lock(file: &File, path: &Path, shared: bool) -> Result<(), AuditError> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        let r = if shared {
            file.try_lock_shared()
        } else {
            file.try_lock()
        };
        let source = match r {
            Ok(()) => return Ok(()),
            Err(TryLockError::Error(e)) => e,
            Err(TryLockError::WouldBlock) if start.elapsed() < LOCK_TIMEOUT => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
                continue;
            }
            Err(TryLockError::WouldBlock) => std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("still held by another process after {LOCK_TIMEOUT:?}"),
            ),
        };
        return Err(AuditError::CheckpointFileLock {
            path: path.to_owned(),
            source,
        });
    }
}

/// A read snapshot of a store, ended when dropped.
pub(crate) struct Snapshot<'a> {
    store: &'a dyn AuditStore,
}

impl Drop for Snapshot<'_> {
    fn drop(&mut self) {
        // Ending a read-only transaction cannot lose anything.
        let _ = self.store.end_snapshot();
    }
}

/// Read `file` from `offset` to its end.
fn read_from(file: &File, path: &Path, mut offset: u64) -> Result<Vec<u8>, AuditError> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read_at(&mut buf, offset) {
            Ok(0) => return Ok(out),
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                offset += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(AuditError::CheckpointFileRead {
                    path: path.to_owned(),
                    source,
                });
            }
        }
    }
}

/// Start a read snapshot of `store` and read all of `file`, at one moment when
/// no writer is between its checkpoint-file append and its database insert.
fn snapshot_and_read<'a>(
    store: &'a dyn AuditStore,
    file: &File,
    path: &Path,
) -> Result<(Snapshot<'a>, Vec<u8>), AuditError> {
    lock(file, path, true)?;
    let result = store
        .begin_snapshot()
        .map_err(AuditError::from)
        .map(|()| Snapshot { store })
        .and_then(|snap| Ok((snap, read_from(file, path, 0)?)));
    let unlocked = file
        .unlock()
        .map_err(|source| AuditError::CheckpointFileLock {
            path: path.to_owned(),
            source,
        });
    let (snap, bytes) = result?;
    unlocked?;
    Ok((snap, bytes))
}

/// The database snapshot and checkpoint file a verification reads, taken at
/// one consistent moment while other processes may be appending.
pub(crate) fn consistent_read<'a>(
    store: &'a dyn AuditStore,
    path: &Path,
) -> Result<(Snapshot<'a>, Vec<FileCheckpoint>), AuditError> {
    // A missing file reads as empty. Writers create it before their first
    // checkpoint; if it appears while the snapshot starts, start over so
    // the two agree.
    for _ in 0..3 {
        match File::open(path) {
            Ok(file) => {
                let (snap, bytes) = snapshot_and_read(store, &file, path)?;
                return Ok((snap, parse_checkpoints(path, &bytes, 0)?));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                store.begin_snapshot()?;
                let snap = Snapshot { store };
                if !path.exists() {
                    return Ok((snap, Vec::new()));
                }
            }
            Err(source) => {
                return Err(AuditError::CheckpointFileRead {
                    path: path.to_owned(),
                    source,
                });
            }
        }
    }
    Err(AuditError::CheckpointFileRead {
        path: path.to_owned(),
        source: std::io::Error::other("the file keeps appearing and disappearing"),
    })
}

/// A writer's handle on the checkpoint file: open for appending, with what it
/// has read of it so far.
#[derive(Debug)]
pub(crate) struct CheckpointFile {
    path: PathBuf,
    file: File,
    /// Bytes of the file read (and parsed) so far.
    read_to: u64,
    /// Lines read so far.
    lines: usize,
    /// The highest sequence number in the file so far and the largest size.
    pub last_seq: Option<u64>,
    pub max_size: u64,
}

impl CheckpointFile {
    /// Open (creating if needed) the checkpoint file for appending.
    pub fn open(path: &Path) -> Result<CheckpointFile, AuditError> {
        let existed = path.exists();
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(|source| AuditError::CheckpointFileWrite {
                path: path.to_owned(),
                source,
            })?;
        if !existed {
            sync_parent(path)?;
        }
        Ok(CheckpointFile {
            path: path.to_owned(),
            file,
            read_to: 0,
            lines: 0,
            last_seq: None,
            max_size: 0,
        })
    }

    /// Start a read snapshot of `store` and read the whole file at one
    /// consistent moment (see [`consistent_read`]); for recovery at open.
    pub fn snapshot_and_read<'a>(
        &mut self,
        store: &'a dyn AuditStore,
        tenant: &TenantId,
    ) -> Result<(Snapshot<'a>, Vec<FileCheckpoint>), AuditError> {
        let (snap, bytes) = snapshot_and_read(store, &self.file, &self.path)?;
        self.read_to = 0;
        self.lines = 0;
        self.last_seq = None;
        self.max_size = 0;
        let cps = self.take(&bytes, tenant)?;
        Ok((snap, cps))
    }

    /// Take the exclusive lock: until [`CheckpointFile::unlock`], no other
    /// writer appends a checkpoint and no reader starts a snapshot.
    pub fn lock(&self) -> Result<(), AuditError> {
        lock(&self.file, &self.path, false)
    }

    /// Release the lock.
    pub fn unlock(&self) -> Result<(), AuditError> {
        self.file
            .unlock()
            .map_err(|source| AuditError::CheckpointFileLock {
                path: self.path.clone(),
                source,
            })
    }

    /// Read the checkpoints other writers appended since the last read.
    /// Call with the lock held.
    pub fn read_new(&mut self, tenant: &TenantId) -> Result<(), AuditError> {
        let bytes = read_from(&self.file, &self.path, self.read_to)?;
        self.take(&bytes, tenant).map(drop)
    }

    /// Parse `bytes` (the file from `read_to` on) and account for them.
    fn take(&mut self, bytes: &[u8], tenant: &TenantId) -> Result<Vec<FileCheckpoint>, AuditError> {
        let cps = parse_checkpoints(&self.path, bytes, self.lines)?;
        for f in &cps {
            if f.checkpoint.tenant != *tenant {
                return Err(AuditError::Damaged {
                    detail: format!(
                        "checkpoint {} (at checkpoint file line {}) belongs to tenant {}",
                        f.checkpoint.seq, f.line, f.checkpoint.tenant
                    ),
                });
            }
            self.last_seq = self.last_seq.max(Some(f.checkpoint.seq));
            self.max_size = self.max_size.max(f.checkpoint.size);
        }
        self.read_to += bytes.len() as u64;
        self.lines += cps.len();
        Ok(cps)
    }

    /// Append one checkpoint line and make it durable. Call with the lock
    /// held, after [`CheckpointFile::read_new`].
    pub fn append(&mut self, cp: &Checkpoint) -> Result<(), AuditError> {
        let mut line = cp.to_line();
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|source| AuditError::CheckpointFileWrite {
                path: self.path.clone(),
                source,
            })?;
        self.read_to += line.len() as u64;
        self.lines += 1;
        self.last_seq = self.last_seq.max(Some(cp.seq));
        self.max_size = self.max_size.max(cp.size);
        Ok(())
    }
}

/// Make a newly created file's directory entry durable.
fn sync_parent(path: &Path) -> Result<(), AuditError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| AuditError::CheckpointFileWrite {
            path: path.to_owned(),
            source,
        })
}
