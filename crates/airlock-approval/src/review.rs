//! The reviewer's side: list, show, approve by hash, deny. Every decision
//! (and every refused attempt) is audited as `approval.decided` with who
//! and when.

use airlock_store::{ApprovalRow, ApprovalState, SqliteStore, StoreError};
use airlock_types::{
    Action, Actor, AgentId, AuditEvent, EventResult, EventSink, Reason, RunId, TenantId, Timestamp,
};
use serde::Serialize;

/// One approval as a reviewer sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApprovalView {
    /// The id.
    pub id: String,
    /// SHA-256 of `canonical`: what `approve --sha256` must be given.
    pub sha256: String,
    /// `pending`, `approved`, `denied`, `expired` or `consumed`.
    pub state: &'static str,
    /// Why approval was asked (`approval_required`, `lethal_trifecta`).
    pub reason: String,
    /// The run's taint labels when it was asked.
    pub taint: Vec<String>,
    /// The run it is bound to.
    pub run: String,
    /// The agent, if any.
    pub agent: Option<String>,
    /// The policy version that asked.
    pub policy_version: String,
    /// What will run: the canonical proposal, parsed.
    pub subject: serde_json::Value,
    /// The exact canonical text that was hashed.
    pub canonical: String,
    /// Created, RFC 3339.
    pub created: String,
    /// Expires, RFC 3339.
    pub expires: String,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When, RFC 3339.
    pub decided_at: Option<String>,
    /// The reviewer's note.
    pub note: Option<String>,
}

fn rfc3339(micros: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| micros.to_string())
}

impl ApprovalView {
    fn from_row(r: ApprovalRow) -> Self {
        let subject = serde_json::from_str(&r.subject).unwrap_or(serde_json::Value::Null);
        ApprovalView {
            id: r.id,
            sha256: r.sha256,
            state: r.state.as_str(),
            reason: r.reason,
            taint: r
                .taint
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            run: r.run,
            agent: r.agent,
            policy_version: r.policy_version,
            subject,
            canonical: r.subject,
            created: rfc3339(r.created),
            expires: rfc3339(r.expires),
            decided_by: r.decided_by,
            decided_at: r.decided_at.map(rfc3339),
            note: r.note,
        }
    }

    /// One line: id, state, reason, what, hash.
    pub fn summary(&self) -> String {
        let s = &self.subject["subject"];
        let what = match s["kind"].as_str() {
            Some("egress") => format!(
                "{} {}",
                s["method"].as_str().unwrap_or("?"),
                s["url"].as_str().unwrap_or("?")
            ),
            Some("tool") => format!(
                "{}.{}",
                s["server"].as_str().unwrap_or("?"),
                s["tool"].as_str().unwrap_or("?")
            ),
            _ => "?".to_owned(),
        };
        let taint = if self.taint.is_empty() {
            String::new()
        } else {
            format!(" [{}]", self.taint.join(","))
        };
        format!(
            "{}  {}  {}{}  {}  sha256={}",
            self.id, self.state, self.reason, taint, what, self.sha256
        )
    }
}

/// A reviewer's command failed.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No approval with that id (for this tenant).
    #[error("approval {0}: no such approval")]
    NotFound(String),
    /// The hash given is not the pending call's.
    #[error(
        "approval {id}: the SHA-256 given does not match the pending call; nothing was approved (run `airlock approvals show {id}` and approve the hash of what it shows)"
    )]
    HashMismatch {
        /// The approval.
        id: String,
    },
    /// Already decided, used or expired.
    #[error("approval {id} is {state}, not pending: nothing was changed")]
    NotPending {
        /// The approval.
        id: String,
        /// Its state.
        state: &'static str,
    },
    /// The approval expired before it was decided.
    #[error("approval {0} expired before it was decided")]
    Expired(String),
    /// The decision could not be audited (an approval is then revoked).
    #[error("approval {0}: the decision could not be audited ({1}); nothing was approved")]
    AuditUnavailable(String, String),
}

/// A reviewer acting on one tenant's approvals, recording to `sink`.
#[derive(Debug)]
pub struct Review<'a> {
    store: &'a SqliteStore,
    sink: &'a dyn EventSink,
    tenant: &'a TenantId,
    actor: Actor,
}

impl<'a> Review<'a> {
    /// A reviewer `actor` over `tenant`'s approvals.
    pub fn new(
        store: &'a SqliteStore,
        sink: &'a dyn EventSink,
        tenant: &'a TenantId,
        actor: Actor,
    ) -> Self {
        Review {
            store,
            sink,
            tenant,
            actor,
        }
    }

    /// The approvals, oldest first (`pending_only`: only those waiting).
    pub fn list(&self, pending_only: bool) -> Result<Vec<ApprovalView>, ReviewError> {
        let filter = pending_only.then_some(ApprovalState::Pending);
        Ok(self
            .store
            .approvals(self.tenant, filter)?
            .into_iter()
            .map(ApprovalView::from_row)
            .collect())
    }

    /// One approval.
    pub fn show(&self, id: &str) -> Result<ApprovalView, ReviewError> {
        self.store
            .approval(self.tenant, id)?
            .map(ApprovalView::from_row)
            .ok_or_else(|| ReviewError::NotFound(id.to_owned()))
    }

    fn decided(&self, row: &ApprovalRow, reason: Reason, result: EventResult) -> AuditEvent {
        let mut ev = AuditEvent::new(
            self.tenant.clone(),
            self.actor.clone(),
            Action::ApprovalDecided,
            row.id.as_str(),
            reason,
            result,
        )
        .with_detail("sha256", row.sha256.as_str())
        .with_detail("decided_by", self.actor.id.as_str())
        .with_detail("decided_at", Timestamp::now().as_micros());
        if let Ok(run) = RunId::new(&row.run) {
            ev = ev.with_run(run);
        }
        if let Some(a) = row.agent.as_deref().and_then(|a| AgentId::new(a).ok()) {
            ev = ev.with_agent(a);
        }
        ev
    }

    fn refused_attempt(&self, row: &ApprovalRow, what: &str, given: Option<&str>) {
        let mut ev = self
            .decided(row, Reason::CheckFailed, EventResult::Denied)
            .with_detail("refused", what);
        if let Some(g) = given {
            // A hash is not a secret; bounded in case of garbage.
            ev = ev.with_detail("sha256_given", g.chars().take(80).collect::<String>());
        }
        if let Err(e) = self.sink.emit(ev) {
            tracing::error!(error = %e, "audit refused a refused approval attempt");
        }
    }

    fn pending_row(&self, id: &str) -> Result<ApprovalRow, ReviewError> {
        let row = self
            .store
            .approval(self.tenant, id)?
            .ok_or_else(|| ReviewError::NotFound(id.to_owned()))?;
        if row.state != ApprovalState::Pending {
            self.refused_attempt(&row, "not_pending", None);
            return Err(ReviewError::NotPending {
                id: id.to_owned(),
                state: row.state.as_str(),
            });
        }
        let now = Timestamp::now().as_micros();
        if row.expires <= now {
            if self.store.approval_expire(self.tenant, id, now)? {
                let ev = self.decided(&row, Reason::ApprovalExpired, EventResult::Denied);
                let _ = self.sink.emit(ev);
            }
            return Err(ReviewError::Expired(id.to_owned()));
        }
        Ok(row)
    }

    /// Approve `id`, only if `sha256` is the hash of the pending call.
    pub fn approve(&self, id: &str, sha256: &str) -> Result<ApprovalView, ReviewError> {
        let row = self.pending_row(id)?;
        let given = sha256.trim().to_ascii_lowercase();
        if given != row.sha256 {
            self.refused_attempt(&row, "hash_mismatch", Some(sha256));
            return Err(ReviewError::HashMismatch { id: id.to_owned() });
        }
        let now = Timestamp::now().as_micros();
        if !self
            .store
            .approval_approve(self.tenant, id, &given, &self.actor.id, now)?
        {
            // Decided, or expired, between the read and the update.
            return Err(self.raced(id)?);
        }
        let ev = self.decided(&row, Reason::ApprovalGranted, EventResult::Success);
        if let Err(e) = self.sink.emit(ev) {
            let _ = self.store.approval_deny(
                self.tenant,
                id,
                &self.actor.id,
                now,
                Some("decision could not be audited"),
            );
            return Err(ReviewError::AuditUnavailable(id.to_owned(), e.to_string()));
        }
        self.show(id)
    }

    /// Deny `id` (pending only), with an optional note.
    pub fn deny(&self, id: &str, note: Option<&str>) -> Result<ApprovalView, ReviewError> {
        let row = self.pending_row(id)?;
        let now = Timestamp::now().as_micros();
        let note: Option<String> = note.map(|n| n.chars().take(500).collect());
        if !self
            .store
            .approval_deny(self.tenant, id, &self.actor.id, now, note.as_deref())?
        {
            return Err(self.raced(id)?);
        }
        let mut ev = self.decided(&row, Reason::ApprovalDenied, EventResult::Denied);
        if let Some(n) = &note {
            ev = ev.with_detail("note", n.as_str());
        }
        self.sink
            .emit(ev)
            .map_err(|e| ReviewError::AuditUnavailable(id.to_owned(), e.to_string()))?;
        self.show(id)
    }

    fn raced(&self, id: &str) -> Result<ReviewError, ReviewError> {
        let v = self.show(id)?;
        Ok(ReviewError::NotPending {
            id: id.to_owned(),
            state: v.state,
        })
    }
}
