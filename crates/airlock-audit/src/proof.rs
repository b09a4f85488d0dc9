//! Inclusion proofs: one record, its audit path, and the signed checkpoint
//! whose root the path leads to. Checkable offline with only the public key.

use crate::checkpoint::{Checkpoint, PublicKey};
use crate::error::AuditError;
use crate::files::FileCheckpoint;
use crate::merkle::{Hash, inclusion_path, leaf_hash, root_from_path};
use airlock_store::AuditStore;
use airlock_types::TenantId;
use serde::{Deserialize, Serialize};
use std::ops::ControlFlow;

/// The `format` of a proof document.
pub const PROOF_FORMAT: &str = "airlock-audit-inclusion-proof/v1";

/// An inclusion proof, as printed by `airlock audit prove`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// Always [`PROOF_FORMAT`].
    pub format: String,
    /// The record's index (its leaf position).
    pub index: u64,
    /// The record exactly as stored (canonical JSON); its leaf hash is
    /// `SHA-256(0x00 || record)`.
    pub record: String,
    /// The RFC 6962 audit path, bottom up, as hex.
    pub path: Vec<String>,
    /// The signed checkpoint whose root the path leads to.
    pub checkpoint: Checkpoint,
}

/// Why a proof does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The document is not a proof of this format.
    #[error("not an Airlock inclusion proof: {0}")]
    Format(String),
    /// The checkpoint's signature does not verify with the key.
    #[error("checkpoint signature does not verify with the public key")]
    Signature,
    /// The path does not lead from the record to the signed root.
    #[error(
        "record {index} is not included in the signed tree of {size} records (path does not lead to the root)"
    )]
    NotIncluded { index: u64, size: u64 },
}

/// The checkpoint with the highest sequence number among the database and
/// the file (the file wins a tie: it is what the writer writes first).
pub fn latest_checkpoint(
    store: &dyn AuditStore,
    tenant: &TenantId,
    file: &[FileCheckpoint],
) -> Result<Option<Checkpoint>, AuditError> {
    let mut best: Option<Checkpoint> = file
        .iter()
        .map(|f| f.checkpoint.clone())
        .max_by_key(|c| c.seq);
    for row in store.checkpoints(tenant)? {
        if best.as_ref().is_none_or(|b| row.seq > b.seq)
            && let Ok(cp) = Checkpoint::parse(&row.body)
        {
            best = Some(cp);
        }
    }
    Ok(best)
}

/// Build the inclusion proof of record `index` against `checkpoint`.
pub fn prove(
    store: &dyn AuditStore,
    tenant: &TenantId,
    index: u64,
    checkpoint: &Checkpoint,
) -> Result<InclusionProof, AuditError> {
    if index >= checkpoint.size {
        let count = store.record_count(tenant)?;
        if index >= count {
            return Err(AuditError::NoSuchRecord { index, count });
        }
        return Err(AuditError::NotCovered {
            index,
            covered: checkpoint.size,
        });
    }
    let mut leaves: Vec<Hash> = Vec::new();
    let mut record: Option<Vec<u8>> = None;
    let mut gap = None;
    store.for_each_record(tenant, 0, &mut |r| {
        if r.index != leaves.len() as u64 {
            gap = Some(leaves.len() as u64);
            return ControlFlow::Break(());
        }
        if r.index == index {
            record = Some(r.body.to_vec());
        }
        leaves.push(leaf_hash(r.body));
        if leaves.len() as u64 == checkpoint.size {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    if let Some(g) = gap {
        return Err(AuditError::Damaged {
            detail: format!("record {g} is missing"),
        });
    }
    if (leaves.len() as u64) < checkpoint.size {
        return Err(AuditError::Damaged {
            detail: format!(
                "checkpoint {} covers {} records but only {} are stored",
                checkpoint.seq,
                checkpoint.size,
                leaves.len()
            ),
        });
    }
    let body = record.ok_or(AuditError::NoSuchRecord {
        index,
        count: leaves.len() as u64,
    })?;
    let i = usize::try_from(index).map_err(|_| AuditError::NoSuchRecord {
        index,
        count: leaves.len() as u64,
    })?;
    let path = inclusion_path(&leaves, i).ok_or(AuditError::NoSuchRecord {
        index,
        count: leaves.len() as u64,
    })?;
    let leaf = leaves[i];
    if root_from_path(index, checkpoint.size, &leaf, &path) != Some(checkpoint.root) {
        return Err(AuditError::Damaged {
            detail: format!("stored records do not match checkpoint {}", checkpoint.seq),
        });
    }
    let record = String::from_utf8(body).map_err(|_| AuditError::RecordDecode {
        index,
        detail: "not UTF-8".into(),
    })?;
    Ok(InclusionProof {
        format: PROOF_FORMAT.to_owned(),
        index,
        record,
        path: path.iter().map(hex::encode).collect(),
        checkpoint: checkpoint.clone(),
    })
}

/// Check a proof offline: the checkpoint is signed by `key`, and the record
/// with its path leads to the checkpoint's root.
pub fn verify_proof(proof: &InclusionProof, key: &PublicKey) -> Result<(), ProofError> {
    if proof.format != PROOF_FORMAT {
        return Err(ProofError::Format(format!(
            "format is {:?}, expected {PROOF_FORMAT:?}",
            proof.format
        )));
    }
    let mut path = Vec::with_capacity(proof.path.len());
    for (i, h) in proof.path.iter().enumerate() {
        let mut out = [0u8; 32];
        hex::decode_to_slice(h, &mut out)
            .map_err(|e| ProofError::Format(format!("path[{i}]: {e}")))?;
        path.push(out);
    }
    if !key.verifies(&proof.checkpoint) {
        return Err(ProofError::Signature);
    }
    let leaf = leaf_hash(proof.record.as_bytes());
    let size = proof.checkpoint.size;
    match root_from_path(proof.index, size, &leaf, &path) {
        Some(r) if r == proof.checkpoint.root => Ok(()),
        _ => Err(ProofError::NotIncluded {
            index: proof.index,
            size,
        }),
    }
}
