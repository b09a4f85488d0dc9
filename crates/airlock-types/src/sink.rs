//! The event-sink trait: how every crate reports what it decided.
//!
//! Crates never depend on the audit log itself; they take an
//! `Arc<dyn EventSink>`. Only the `airlock` binary connects the trait to the
//! durable audit log.

use crate::AuditEvent;
use std::sync::Mutex;

/// The sink could not accept an event. Callers treat this as "the check could
/// not run" and fail closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The sink has shut down.
    #[error("audit sink is closed")]
    Closed,
    /// The sink's queue is full.
    #[error("audit sink is overloaded")]
    Overloaded,
    /// Writing failed.
    #[error("audit sink failed: {0}")]
    Failed(String),
}

/// Somewhere to send audit events.
pub trait EventSink: Send + Sync + std::fmt::Debug {
    /// Hand an event to the sink. Returns once the sink has accepted it
    /// (queued in order); durability is the sink's concern. An `Err` means
    /// the event will not be recorded and the caller must fail closed.
    fn emit(&self, event: AuditEvent) -> Result<(), SinkError>;
}

/// A sink that drops everything. For benchmarks and `--explain`-style dry runs only.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullSink;

impl EventSink for NullSink {
    fn emit(&self, _event: AuditEvent) -> Result<(), SinkError> {
        Ok(())
    }
}

/// A sink that keeps events in memory, for tests.
#[derive(Debug, Default)]
pub struct MemorySink {
    events: Mutex<Vec<AuditEvent>>,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }
    /// A copy of everything recorded so far.
    pub fn events(&self) -> Vec<AuditEvent> {
        self.events.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl EventSink for MemorySink {
    fn emit(&self, event: AuditEvent) -> Result<(), SinkError> {
        self.events
            .lock()
            .map_err(|_| SinkError::Failed("memory sink poisoned".into()))?
            .push(event);
        Ok(())
    }
}
