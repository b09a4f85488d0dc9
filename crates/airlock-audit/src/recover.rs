//! Re-reading the stored log when a writer opens it. The writer refuses to
//! append to a log that disagrees with its own checkpoints: appending would
//! bury the evidence under new records.

use crate::checkpoint::Checkpoint;
use crate::error::AuditError;
use crate::merkle::{Frontier, Hash};
use crate::shared::CheckpointFile;
use crate::verify::{Source, Target, scan};
use airlock_store::AuditStore;
use airlock_types::TenantId;

/// Where the next append continues (as far as this writer knows: other
/// writers may append after it).
pub(crate) struct Head {
    pub count: u64,
    pub chain: Hash,
    pub frontier: Frontier,
    /// Records covered by the latest checkpoint.
    pub checkpointed: u64,
}

/// Check the stored log against its checkpoints, reading the database and the
/// checkpoint file at one moment (other processes may be appending).
pub(crate) fn recover(
    store: &dyn AuditStore,
    tenant: &TenantId,
    cp_file: &mut CheckpointFile,
) -> Result<Head, AuditError> {
    let (_snapshot, file) = cp_file.snapshot_and_read(store, tenant)?;
    let file = &file;
    let db_rows = store.checkpoints(tenant)?;
    let mut db_cps = Vec::with_capacity(db_rows.len());
    for row in &db_rows {
        let cp = Checkpoint::parse(&row.body).map_err(|d| AuditError::Damaged {
            detail: format!("checkpoint {} in the database: {d}", row.seq),
        })?;
        db_cps.push(cp);
    }
    let mut targets: Vec<Target<'_>> = db_cps
        .iter()
        .map(|cp| Target {
            cp,
            source: Source::Database,
        })
        .collect();
    targets.extend(file.iter().map(|f| Target {
        cp: &f.checkpoint,
        source: Source::File { line: f.line },
    }));
    if let Some(t) = targets.iter().find(|t| t.cp.tenant != *tenant) {
        return Err(AuditError::Damaged {
            detail: format!(
                "checkpoint {} ({}) belongs to tenant {}",
                t.cp.seq, t.source, t.cp.tenant
            ),
        });
    }
    let s = scan(store, tenant, &targets)?;
    if let Some(p) = s.bad_record {
        return Err(AuditError::Damaged {
            detail: p.to_string(),
        });
    }
    if let Some(&i) = s.mismatched.first().or(s.unreached.first()) {
        let t = &targets[i];
        let what = if t.cp.size > s.count {
            format!(
                "covers {} records but only {} are stored",
                t.cp.size, s.count
            )
        } else {
            "does not match the stored records".to_owned()
        };
        return Err(AuditError::Damaged {
            detail: format!("checkpoint {} ({}) {what}", t.cp.seq, t.source),
        });
    }
    let checkpointed = targets.iter().map(|t| t.cp.size).max().unwrap_or(0);
    Ok(Head {
        count: s.count,
        chain: s.chain,
        frontier: s.frontier,
        checkpointed,
    })
}
