//! Re-reading the stored log when a writer opens it. The writer refuses to
//! append to a log that disagrees with its own checkpoints: appending would
//! bury the evidence under new records.

use crate::checkpoint::Checkpoint;
use crate::error::AuditError;
use crate::files::FileCheckpoint;
use crate::merkle::{Frontier, Hash};
use crate::verify::{Source, Target, scan};
use airlock_store::AuditStore;
use airlock_types::TenantId;

/// Where the next append continues.
pub(crate) struct Head {
    pub count: u64,
    pub chain: Hash,
    pub frontier: Frontier,
    pub next_seq: u64,
    pub checkpointed: u64,
}

pub(crate) fn recover(
    store: &mut dyn AuditStore,
    tenant: &TenantId,
    file: &[FileCheckpoint],
) -> Result<Head, AuditError> {
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
    let s = scan(&*store, tenant, &targets)?;
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
    let next_seq = targets.iter().map(|t| t.cp.seq + 1).max().unwrap_or(0);
    let checkpointed = targets.iter().map(|t| t.cp.size).max().unwrap_or(0);
    Ok(Head {
        count: s.count,
        chain: s.chain,
        frontier: s.frontier,
        next_seq,
        checkpointed,
    })
}
