//! Airlock's shared vocabulary.
//!
//! This crate holds the types every boundary speaks: identifiers
//! ([`TenantId`], [`AgentId`], [`RunId`], [`RequestId`]), whose they are
//! ([`RunContext`]), policy outcomes ([`Outcome`],
//! [`Decision`], [`Reason`]), the [`Secret`] wrapper, typed audit events
//! ([`AuditEvent`], whose [`Action`]s are a catalogue) and the [`EventSink`] trait through which every crate
//! reports what it decided.
//!
//! It does no I/O and has no knowledge of files, sockets or databases. It
//! trusts nothing and guarantees only that its types cannot print a secret by
//! accident: [`Secret`] renders as `[REDACTED]` in `Debug` and `Display` and is
//! zeroized on drop. It does *not* guarantee that a caller never copies the
//! exposed value elsewhere.
#![forbid(unsafe_code)]

mod action;
mod approval;
mod context;
mod decision;
mod event;
mod ids;
mod secret;
mod sink;

pub use action::Action;
pub use approval::{
    ApprovalRequest, Approver, AskFuture, Autonomy, NoApprover, Subject, TaintError, TaintLabel,
    TaintSet, TaintTracker, Verdict,
};
pub use context::RunContext;
pub use decision::{Decision, Outcome, Reason};
pub use event::{Actor, ActorKind, AuditEvent, EventResult, Timestamp};
pub use ids::{AgentId, IdError, RequestId, RunId, TenantId};
pub use secret::Secret;
pub use sink::{EventSink, MemorySink, NullSink, SinkError};
