//! Approvals and run taint: the words the approval service, the egress path
//! and the MCP gateway share, so none of them depends on another.
//!
//! An [`Approver`] is asked to approve exactly one call ([`Subject`]); it
//! proposes it (the canonical form of the subject, the policy version and
//! the run, hashed with SHA-256), waits for a reviewer's decision bound to
//! that hash, and answers with a [`Verdict`]. A [`TaintTracker`] keeps each
//! run's taint labels (the lethal-trifecta guard): once a run holds private
//! data *and* has read untrusted content, writes no rule allows become
//! approvals.

use crate::{Reason, RunContext};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// Exactly what will run if approved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Subject {
    /// An MCP tool call: the server, the tool and the arguments exactly as
    /// they will be sent.
    Tool {
        /// The configured server's name.
        server: String,
        /// The tool's name on that server (not namespaced).
        tool: String,
        /// The arguments object.
        arguments: serde_json::Value,
    },
    /// An egress request: method, full URL and the SHA-256 (lower-case hex)
    /// of its body (of the empty body when it has none).
    Egress {
        /// The method.
        method: String,
        /// The full URL (scheme, host, port, path, query).
        url: String,
        /// SHA-256 of the body, lower-case hex.
        body_sha256: String,
    },
}

/// One call put to an [`Approver`].
#[derive(Debug, Clone)]
pub struct ApprovalRequest {
    /// Whose call it is (the approval is bound to this run).
    pub context: RunContext,
    /// What will run.
    pub subject: Subject,
    /// The version (digest) of the policy that asked for approval.
    pub policy_version: String,
    /// Why approval is needed (`approval_required`, `lethal_trifecta`).
    pub reason: Reason,
    /// The run's taint labels when the call was made, for the reviewer.
    pub taint: TaintSet,
}

/// An [`Approver`]'s answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A reviewer approved exactly this call; it may run once. `sha256` is
    /// the hash they approved; `id` the approval's id.
    Approved {
        /// The approval's id.
        id: String,
        /// The SHA-256 (hex) the reviewer approved.
        sha256: String,
    },
    /// The call must not run: `reason` is `approval_denied`,
    /// `approval_expired`, or `check_failed` when the approval could not be
    /// recorded or waited for (fail closed).
    Refused {
        /// The approval's id, when one was proposed.
        id: Option<String>,
        /// Why.
        reason: Reason,
    },
}

/// What [`Approver::ask`] returns (boxed so the trait stays object-safe).
pub type AskFuture<'a> = Pin<Box<dyn Future<Output = Verdict> + Send + 'a>>;

/// Somewhere to ask for approval.
pub trait Approver: Send + Sync + fmt::Debug {
    /// Propose `request` and wait up to `wait` for a decision. An approval
    /// is single use: a `Verdict::Approved` has already been consumed for
    /// this call. Never errors: what cannot be done is a refusal.
    fn ask(&self, request: ApprovalRequest, wait: Duration) -> AskFuture<'_>;
}

/// An approver with no reviewer: every `ask` is refused with
/// `approval_required` (what `ask` meant before approvals existed).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoApprover;

impl Approver for NoApprover {
    fn ask(&self, _request: ApprovalRequest, _wait: Duration) -> AskFuture<'_> {
        Box::pin(async {
            Verdict::Refused {
                id: None,
                reason: Reason::ApprovalRequired,
            }
        })
    }
}

/// How much an agent may do without asking: its default approval mode.
/// Autonomy can only add approvals; it never removes a policy's deny.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Autonomy {
    /// Ask before every tool call and every egress write.
    AskAll,
    /// Ask before writes: tools labelled `writes` and egress write methods.
    AskWrites,
    /// Ask only where a rule says `ask` (or the trifecta guard does).
    #[default]
    AskNone,
}

impl Autonomy {
    /// Stable snake_case name (as written in config).
    pub fn as_str(self) -> &'static str {
        match self {
            Autonomy::AskAll => "ask_all",
            Autonomy::AskWrites => "ask_writes",
            Autonomy::AskNone => "ask_none",
        }
    }
}

/// A taint label a run can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaintLabel {
    /// The run read from a tool or host labelled private, or used a vault secret.
    PrivateData,
    /// The run received content from a tool or host labelled untrusted
    /// (by default: any public web read).
    UntrustedContent,
}

impl TaintLabel {
    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaintLabel::PrivateData => "private_data",
            TaintLabel::UntrustedContent => "untrusted_content",
        }
    }
}

/// The labels a run carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TaintSet {
    /// The run holds private data.
    pub private_data: bool,
    /// The run has read untrusted content.
    pub untrusted_content: bool,
}

impl TaintSet {
    /// With `label` added.
    pub fn with(mut self, label: TaintLabel) -> Self {
        match label {
            TaintLabel::PrivateData => self.private_data = true,
            TaintLabel::UntrustedContent => self.untrusted_content = true,
        }
        self
    }

    /// Both legs of the trifecta are present: writes need approval.
    pub fn is_trifecta(self) -> bool {
        self.private_data && self.untrusted_content
    }

    /// The labels present, by name (for audit records and messages).
    pub fn labels(self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.private_data {
            v.push(TaintLabel::PrivateData.as_str());
        }
        if self.untrusted_content {
            v.push(TaintLabel::UntrustedContent.as_str());
        }
        v
    }
}

/// The taint could not be read or recorded; callers fail closed (treat the
/// run as fully tainted, or refuse).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("run taint unavailable: {0}")]
pub struct TaintError(pub String);

/// Keeps each run's taint labels, shared by every front end serving the run
/// (egress hook, MCP gateway).
pub trait TaintTracker: Send + Sync + fmt::Debug {
    /// Record that the run received content with `label` from `source` (a
    /// namespaced tool or a host); returns the run's labels afterwards.
    fn mark(
        &self,
        ctx: &RunContext,
        label: TaintLabel,
        source: &str,
    ) -> Result<TaintSet, TaintError>;
    /// The run's labels now.
    fn labels(&self, ctx: &RunContext) -> Result<TaintSet, TaintError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trifecta_needs_both_labels() {
        let t = TaintSet::default().with(TaintLabel::PrivateData);
        assert!(!t.is_trifecta());
        let t = t.with(TaintLabel::UntrustedContent);
        assert!(t.is_trifecta());
        assert_eq!(t.labels(), vec!["private_data", "untrusted_content"]);
    }

    #[test]
    fn subject_serializes_with_its_kind() {
        let s = Subject::Egress {
            method: "POST".into(),
            url: "https://example.com/x".into(),
            body_sha256: "00".into(),
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["kind"], "egress");
    }
}
