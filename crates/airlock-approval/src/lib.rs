//! Approvals bound to the exact call, and the run taint behind the
//! lethal-trifecta guard.
//!
//! **Boundary.** A call that needs a person's approval (an `ask` rule, an
//! agent's autonomy level, or a tainted run's write) is *proposed*: the
//! RFC 8785 canonical JSON of `{subject, policy_version, tenant, run,
//! agent}` is stored with its SHA-256 ([`canonical`]), a reviewer in
//! another process approves that hash — not an id — (`airlock approvals
//! approve ID --sha256 HEX`, [`Review`]), and the waiting call consumes the
//! approval once ([`Approvals`], an `airlock_types::Approver`). Proposal,
//! decision (who, when), execution and result are separate audit records
//! linked by the hash. [`StoreTaint`] keeps each run's taint labels in the
//! store, shared by every front end serving the run; [`EgressGuard`] is the
//! hook on the egress path that holds requests for approval and marks taint.
//!
//! **What it trusts.** The store (SQLite: state changes are single guarded
//! `UPDATE`s, so an approval is decided once and consumed once across
//! threads and processes), the audit sink, the proxy's decision in
//! `RequestCtx`, and the reviewer's judgement of what `show` printed.
//!
//! **What it does not guarantee.** That the reviewer read what they
//! approved. An egress body is bound by its digest: the reviewer sees the
//! method, URL and digest, not the body itself. A request held for approval
//! has its body buffered (bounded by `max_body`). Taint is marked when a
//! request leaves (conservatively, before its answer is read), by host and
//! by credential handles the request carries; content that reaches the run
//! some other way is not seen. Anything it cannot do — store, audit,
//! canonical form — refuses the call (`check_failed`, `audit_unavailable`).
#![forbid(unsafe_code)]

pub mod canonical;
mod egress;
mod review;
mod service;

pub use canonical::{Canonical, CanonicalError, proposal, sha256_hex};
pub use egress::{EgressGuard, EgressGuardConfig, HostLabel};
pub use review::{ApprovalView, Review, ReviewError};
pub use service::{ApprovalError, ApprovalSettings, Approvals, StoreTaint};

use airlock_types::{Approver, EventSink, TaintTracker};
use std::path::Path;
use std::sync::Arc;

/// What every front end serving a run (the egress hook, the MCP gateway)
/// is handed: one approver and one taint tracker over the same database.
#[derive(Debug, Clone)]
pub struct ApprovalServices {
    /// Proposes calls and waits for a reviewer's decision bound to the hash.
    pub approver: Arc<dyn Approver>,
    /// The runs' taint labels.
    pub taint: Arc<dyn TaintTracker>,
}

/// The approver and the taint tracker over the database at `db`, recording
/// to `sink`.
pub fn for_database(
    db: &Path,
    sink: Arc<dyn EventSink>,
    settings: ApprovalSettings,
) -> Result<ApprovalServices, ApprovalError> {
    let approvals = Approvals::open(db, sink.clone(), settings)?;
    let taint = StoreTaint::open(db, sink)?;
    Ok(ApprovalServices {
        approver: Arc::new(approvals),
        taint: Arc::new(taint),
    })
}
