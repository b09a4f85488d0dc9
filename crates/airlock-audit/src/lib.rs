//! Airlock's tamper-evident audit log.
//!
//! The boundary: once an event is acknowledged, nobody — not the agent, not an
//! operator with write access to the data directory — can change or remove it
//! without `airlock audit verify` saying so and naming where.
//!
//! How: each event is encoded canonically ([`canonical`]) and appended by one
//! writer thread ([`AuditLog`]). Every record extends a hash chain and is a
//! leaf of an RFC 6962 Merkle tree ([`merkle`]). Every N records or T seconds,
//! and at clean shutdown, the writer signs a checkpoint (tree size, root, chain
//! value, time) with Ed25519 and appends it both to the database and to a plain
//! checkpoint file beside it, so deleting the tail of the table is detectable.
//! An append is acknowledged only after its transaction is durable; concurrent
//! producers share one fsync (group commit). [`verify`] recomputes everything;
//! [`prove`] and [`verify_proof`] give and check RFC 6962 inclusion proofs
//! offline.
//!
//! Several writers — `airlock proxy`, any number of `airlock run`s and CLI
//! commands, each its own process with its own [`AuditLog`] — may append to
//! one database and checkpoint file at once: a batch is stored only if it
//! starts at the log's current length (checked inside the store's write
//! transaction), an overtaken writer reads and checks the others' records
//! before retrying, and checkpoints are numbered and written under an `flock`
//! on the checkpoint file (module `shared`). [`verify_log`] reads the
//! database and the checkpoint file at one consistent moment, so a
//! concurrent append never makes verification fail.
//!
//! It trusts the signing key to be secret and the clock for checkpoint times.
//! It does NOT guarantee: that records after the last checkpoint are protected
//! against an attacker who also rewrites the chain (only the chain covers them
//! until the next checkpoint); that an attacker who holds the signing key, or
//! who truncates the database *and* the checkpoint file together, is detected
//! (publish checkpoints elsewhere for that); or that events are true — it
//! records what producers report.
//!
//! [`export`] streams records out as OCSF JSON lines, record JSON lines or
//! text ([`ExportFormat`]); it only reads.
#![forbid(unsafe_code)]

pub mod canonical;
mod checkpoint;
mod error;
mod export;
mod files;
mod log;
pub mod merkle;
mod proof;
mod recover;
mod shared;
mod verify;

pub use checkpoint::{Checkpoint, PublicKey, Signer};
pub use error::AuditError;
pub use export::{ExportError, ExportFormat, export, ocsf, rfc3339, text_line, write_record};
pub use files::{FileCheckpoint, load_public_key, load_signer, read_checkpoint_file};
pub use log::{AuditLog, LogOptions, Ticket};
pub use proof::{InclusionProof, PROOF_FORMAT, ProofError, latest_checkpoint, prove, verify_proof};
pub use verify::{Problem, Report, Source, verify, verify_log};
