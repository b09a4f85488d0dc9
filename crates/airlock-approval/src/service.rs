//! The approval service ([`Approvals`], an [`Approver`]) and the run taint
//! kept in the store ([`StoreTaint`], a [`TaintTracker`]).

use crate::canonical::{self, Canonical};
use airlock_store::{ApprovalState, NewApproval, SqliteStore};
use airlock_types::{
    Action, Actor, ApprovalRequest, Approver, AskFuture, AuditEvent, Decision, EventResult,
    EventSink, Reason, RunContext, RunId, Subject, TaintError, TaintLabel, TaintSet, TaintTracker,
    TenantId, Timestamp, Verdict,
};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How approvals behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalSettings {
    /// How long a proposal may be decided (default 15 minutes).
    pub ttl: Duration,
    /// How often a waiting call looks for a decision made by another
    /// process (default 100 ms).
    pub poll: Duration,
}

impl Default for ApprovalSettings {
    fn default() -> Self {
        ApprovalSettings {
            ttl: Duration::from_secs(15 * 60),
            poll: Duration::from_millis(100),
        }
    }
}

/// The approval service could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// The database could not be opened.
    #[error("approvals: {0}")]
    Store(#[from] airlock_store::StoreError),
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// A fresh approval id: `apr_` and 64 random bits in hex.
fn new_id() -> Option<String> {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).ok()?;
    Some(format!("apr_{}", hex::encode(b)))
}

/// What the audit record says about a subject: never a body, never a
/// query's text, never tool arguments — their digests.
pub(crate) fn subject_details(subject: &Subject) -> Vec<(&'static str, serde_json::Value)> {
    match subject {
        Subject::Egress {
            method,
            url,
            body_sha256,
        } => {
            let (base, query) = match url.split_once('?') {
                Some((b, _)) => (b, true),
                None => (url.as_str(), false),
            };
            let mut v = vec![
                ("kind", "egress".into()),
                ("method", method.as_str().into()),
                ("url", base.into()),
                ("body_sha256", body_sha256.as_str().into()),
            ];
            if query {
                v.push(("query", true.into()));
            }
            v
        }
        Subject::Tool {
            server,
            tool,
            arguments,
        } => {
            let args = canonical::canonicalize(arguments)
                .map(|c| canonical::sha256_hex(c.as_bytes()))
                .unwrap_or_default();
            vec![
                ("kind", "tool".into()),
                ("server", server.as_str().into()),
                ("tool", tool.as_str().into()),
                ("arguments_sha256", args.into()),
            ]
        }
    }
}

/// Approvals kept in the store: an [`Approver`] that proposes each call
/// (audited `approval.proposed` with its hash), waits for a decision made
/// by a reviewer in another process (`airlock approvals approve ID
/// --sha256 HEX`), consumes it (single use, `approval.executed`) and
/// answers. Anything it cannot do (store, audit, canonical form) is a
/// refusal with `check_failed`.
#[derive(Debug)]
pub struct Approvals {
    store: Mutex<SqliteStore>,
    sink: Arc<dyn EventSink>,
    settings: ApprovalSettings,
}

impl Approvals {
    /// Over an open store, recording to `sink`.
    pub fn new(store: SqliteStore, sink: Arc<dyn EventSink>, settings: ApprovalSettings) -> Self {
        Approvals {
            store: Mutex::new(store),
            sink,
            settings,
        }
    }

    /// Over the database at `path`.
    pub fn open(
        path: &Path,
        sink: Arc<dyn EventSink>,
        settings: ApprovalSettings,
    ) -> Result<Self, ApprovalError> {
        Ok(Approvals::new(SqliteStore::open(path)?, sink, settings))
    }

    fn with_store<T>(
        &self,
        f: impl FnOnce(&SqliteStore) -> Result<T, airlock_store::StoreError>,
    ) -> Result<T, ()> {
        let guard = self.store.lock().map_err(|_| ())?;
        f(&guard).map_err(|e| tracing::error!(error = %e, "approvals store failed"))
    }

    fn event(&self, ctx: &RunContext, action: Action, id: &str, c: &Canonical) -> AuditEvent {
        AuditEvent::new(
            ctx.tenant.clone(),
            ctx.actor.clone(),
            action,
            id,
            Reason::Recorded,
            EventResult::Success,
        )
        .with_context(ctx)
        .with_detail("sha256", c.sha256.as_str())
    }

    async fn ask_inner(&self, request: ApprovalRequest, wait: Duration) -> Verdict {
        let refused = |id: Option<&str>, reason| Verdict::Refused {
            id: id.map(str::to_owned),
            reason,
        };
        let c = match canonical::proposal(&request) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "approval subject has no canonical form; refused");
                return refused(None, Reason::CheckFailed);
            }
        };
        let Some(id) = new_id() else {
            return refused(None, Reason::CheckFailed);
        };
        let ctx = &request.context;
        let tenant = &ctx.tenant;
        let now = Timestamp::now().as_micros();
        let expires = now.saturating_add(micros(self.settings.ttl));
        let labels = request.taint.labels();
        let inserted = self.with_store(|s| {
            s.approval_insert(
                tenant,
                &NewApproval {
                    id: &id,
                    run: ctx.run.as_str(),
                    agent: ctx.agent.as_ref().map(|a| a.as_str()),
                    subject: &c.json,
                    sha256: &c.sha256,
                    policy_version: &request.policy_version,
                    reason: request.reason.code(),
                    taint: &labels.join(","),
                    created: now,
                    expires,
                },
            )
        });
        if inserted.is_err() {
            return refused(None, Reason::CheckFailed);
        }
        let mut proposed = self
            .event(ctx, Action::ApprovalProposed, &id, &c)
            .with_decision(Decision::ask(request.reason))
            .with_detail("policy_version", request.policy_version.as_str())
            .with_detail("expires", expires)
            .with_detail("taint", labels.clone());
        for (k, v) in subject_details(&request.subject) {
            proposed = proposed.with_detail(k, v);
        }
        if let Err(e) = self.sink.emit(proposed) {
            tracing::error!(error = %e, "audit refused approval.proposed; refusing");
            let _ = self.with_store(|s| s.approval_expire(tenant, &id, now));
            return refused(Some(&id), Reason::AuditUnavailable);
        }
        tracing::info!(approval = %id, sha256 = %c.sha256, "approval pending");

        let deadline = Instant::now() + wait.min(self.settings.ttl);
        loop {
            let state = match self.with_store(|s| s.approval(tenant, &id)) {
                Ok(Some(row)) => row.state,
                Ok(None) | Err(()) => return refused(Some(&id), Reason::CheckFailed),
            };
            match state {
                ApprovalState::Pending => {}
                ApprovalState::Approved => return self.consume(ctx, &id, &c),
                ApprovalState::Denied => return refused(Some(&id), Reason::ApprovalDenied),
                ApprovalState::Expired => return refused(Some(&id), Reason::ApprovalExpired),
                ApprovalState::Consumed => return refused(Some(&id), Reason::CheckFailed),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            tokio::time::sleep(left.min(self.settings.poll)).await;
        }
        // Time is up: expire it unless a decision came in just now.
        let now = Timestamp::now().as_micros();
        match self.with_store(|s| s.approval_expire(tenant, &id, now)) {
            Ok(true) => {
                let ev = AuditEvent::new(
                    tenant.clone(),
                    Actor::system(),
                    Action::ApprovalDecided,
                    id.as_str(),
                    Reason::ApprovalExpired,
                    EventResult::Denied,
                )
                .with_context(ctx)
                .with_detail("sha256", c.sha256.as_str())
                .with_detail("state", "expired");
                if let Err(e) = self.sink.emit(ev) {
                    tracing::error!(error = %e, "audit refused an approval's expiry");
                }
                refused(Some(&id), Reason::ApprovalExpired)
            }
            Ok(false) => match self.with_store(|s| s.approval(tenant, &id)) {
                Ok(Some(row)) if row.state == ApprovalState::Approved => self.consume(ctx, &id, &c),
                Ok(Some(row)) if row.state == ApprovalState::Denied => {
                    refused(Some(&id), Reason::ApprovalDenied)
                }
                Ok(Some(row)) if row.state == ApprovalState::Expired => {
                    refused(Some(&id), Reason::ApprovalExpired)
                }
                _ => refused(Some(&id), Reason::CheckFailed),
            },
            Err(()) => refused(Some(&id), Reason::CheckFailed),
        }
    }

    /// Use the approval once; only the caller whose update changed the row
    /// may run the call.
    fn consume(&self, ctx: &RunContext, id: &str, c: &Canonical) -> Verdict {
        let refused = |reason| Verdict::Refused {
            id: Some(id.to_owned()),
            reason,
        };
        match self.with_store(|s| s.approval_consume(&ctx.tenant, id, &c.sha256)) {
            Ok(true) => {}
            Ok(false) | Err(()) => return refused(Reason::CheckFailed),
        }
        let ev = self
            .event(ctx, Action::ApprovalExecuted, id, c)
            .with_decision(Decision::allow(Reason::ApprovalGranted));
        if let Err(e) = self.sink.emit(ev) {
            tracing::error!(error = %e, "audit refused approval.executed; refusing");
            return refused(Reason::AuditUnavailable);
        }
        Verdict::Approved {
            id: id.to_owned(),
            sha256: c.sha256.clone(),
        }
    }
}

impl Approver for Approvals {
    fn ask(&self, request: ApprovalRequest, wait: Duration) -> AskFuture<'_> {
        Box::pin(self.ask_inner(request, wait))
    }
}

/// Run taint kept in the store, shared by every process serving a run (the
/// egress hook, the MCP gateway): `run.taint` is recorded when a label is
/// first set for a run. Labels only grow, so what this process has seen is
/// cached; a label another process set is read from the store.
#[derive(Debug)]
pub struct StoreTaint {
    store: Mutex<SqliteStore>,
    sink: Arc<dyn EventSink>,
    seen: Mutex<HashMap<(TenantId, RunId), TaintSet>>,
}

impl StoreTaint {
    /// Over an open store, recording to `sink`.
    pub fn new(store: SqliteStore, sink: Arc<dyn EventSink>) -> Self {
        StoreTaint {
            store: Mutex::new(store),
            sink,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Over the database at `path`.
    pub fn open(path: &Path, sink: Arc<dyn EventSink>) -> Result<Self, ApprovalError> {
        Ok(StoreTaint::new(SqliteStore::open(path)?, sink))
    }

    fn cached(&self, ctx: &RunContext) -> Result<TaintSet, TaintError> {
        let seen = self
            .seen
            .lock()
            .map_err(|_| TaintError("taint cache poisoned".into()))?;
        Ok(seen
            .get(&(ctx.tenant.clone(), ctx.run.clone()))
            .copied()
            .unwrap_or_default())
    }

    fn remember(&self, ctx: &RunContext, t: TaintSet) -> Result<TaintSet, TaintError> {
        let mut seen = self
            .seen
            .lock()
            .map_err(|_| TaintError("taint cache poisoned".into()))?;
        let e = seen
            .entry((ctx.tenant.clone(), ctx.run.clone()))
            .or_default();
        e.private_data |= t.private_data;
        e.untrusted_content |= t.untrusted_content;
        Ok(*e)
    }

    fn read(&self, ctx: &RunContext) -> Result<TaintSet, TaintError> {
        let store = self
            .store
            .lock()
            .map_err(|_| TaintError("taint store poisoned".into()))?;
        let rows = store
            .taint_labels(&ctx.tenant, ctx.run.as_str())
            .map_err(|e| TaintError(e.to_string()))?;
        let mut t = TaintSet::default();
        for r in rows {
            match r.label.as_str() {
                "private_data" => t = t.with(TaintLabel::PrivateData),
                "untrusted_content" => t = t.with(TaintLabel::UntrustedContent),
                _ => {}
            }
        }
        Ok(t)
    }
}

fn has(t: TaintSet, label: TaintLabel) -> bool {
    t.with(label) == t
}

impl TaintTracker for StoreTaint {
    fn mark(
        &self,
        ctx: &RunContext,
        label: TaintLabel,
        source: &str,
    ) -> Result<TaintSet, TaintError> {
        let known = self.cached(ctx)?;
        if has(known, label) {
            return Ok(known);
        }
        let first = {
            let store = self
                .store
                .lock()
                .map_err(|_| TaintError("taint store poisoned".into()))?;
            store
                .taint_mark(
                    &ctx.tenant,
                    ctx.run.as_str(),
                    label.as_str(),
                    source,
                    Timestamp::now().as_micros(),
                )
                .map_err(|e| TaintError(e.to_string()))?
        };
        if first {
            let ev = AuditEvent::new(
                ctx.tenant.clone(),
                ctx.actor.clone(),
                Action::RunTaint,
                ctx.run.as_str(),
                Reason::Recorded,
                EventResult::Success,
            )
            .with_context(ctx)
            .with_detail("label", label.as_str())
            .with_detail("source", source);
            self.sink
                .emit(ev)
                .map_err(|e| TaintError(format!("audit refused run.taint: {e}")))?;
        }
        let now = self.read(ctx)?.with(label);
        self.remember(ctx, now)
    }

    fn labels(&self, ctx: &RunContext) -> Result<TaintSet, TaintError> {
        let known = self.cached(ctx)?;
        if known.is_trifecta() {
            return Ok(known);
        }
        let now = self.read(ctx)?;
        self.remember(ctx, now)
    }
}
