//! The audit crate's error type: one variant per failing operation.

use airlock_store::StoreError;
use std::path::PathBuf;

/// An audit-log operation failed. Displays as one line with the file and
/// what went wrong; never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The signing key file could not be read.
    #[error("{}: cannot read audit signing key: {source}", path.display())]
    KeyRead {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The signing key file does not hold a usable key.
    #[error("{}: invalid audit signing key: {detail}", path.display())]
    KeyInvalid { path: PathBuf, detail: String },
    /// A new signing key could not be generated.
    #[error("cannot generate an audit signing key: {0}")]
    KeyGenerate(String),
    /// The public key file could not be read.
    #[error("{}: cannot read audit public key: {source}", path.display())]
    PubkeyRead {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The public key file does not hold a usable key.
    #[error("{}: invalid audit public key: {detail}", path.display())]
    PubkeyInvalid { path: PathBuf, detail: String },
    /// The checkpoint file could not be read.
    #[error("{}: cannot read checkpoint file: {source}", path.display())]
    CheckpointFileRead {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A line of the checkpoint file is not a checkpoint.
    #[error("{}:{line}: not a valid checkpoint: {detail}", path.display())]
    CheckpointFileInvalid {
        path: PathBuf,
        line: usize,
        detail: String,
    },
    /// Appending to the checkpoint file failed.
    #[error("{}: cannot append checkpoint: {source}", path.display())]
    CheckpointFileWrite {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The checkpoint file's lock (which orders checkpoints between
    /// processes) could not be taken or released.
    #[error("{}: cannot lock checkpoint file: {source}", path.display())]
    CheckpointFileLock {
        path: PathBuf,
        source: std::io::Error,
    },
    /// An event could not be encoded.
    #[error("cannot encode audit event: {0}")]
    Encode(serde_json::Error),
    /// The stored log disagrees with itself; the writer refuses to append.
    #[error("audit log is damaged ({detail}); run `airlock audit verify`")]
    Damaged { detail: String },
    /// The writer thread could not be started.
    #[error("cannot start the audit writer thread: {0}")]
    Spawn(std::io::Error),
    /// The log has been closed.
    #[error("audit log is closed")]
    Closed,
    /// The queue is full; the event was not accepted.
    #[error("audit queue is full; event not accepted")]
    Overloaded,
    /// The writer failed earlier and accepts nothing more (fail closed).
    #[error("audit writer stopped after an error: {0}")]
    WriterFailed(String),
    /// A record index past the end of the log.
    #[error("record {index} does not exist (the log has {count} records)")]
    NoSuchRecord { index: u64, count: u64 },
    /// No signed checkpoint covers the record yet.
    #[error("no signed checkpoint covers record {index} yet (the latest covers {covered} records)")]
    NotCovered { index: u64, covered: u64 },
    /// A stored record could not be decoded.
    #[error("record {index}: cannot decode: {detail}")]
    RecordDecode { index: u64, detail: String },
}
