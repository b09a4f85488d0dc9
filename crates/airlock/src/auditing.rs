//! Connects the event-sink trait to the audit log. The only place that does.
//!
//! STUB: the audit-log work replaces this with the durable `airlock-audit`
//! log. Until then events go nowhere.

use crate::config::Config;
use crate::ctx::Ctx;
use airlock_types::{AuditEvent, EventSink, NullSink};
use std::sync::Arc;

/// An open audit log for one command's lifetime.
#[derive(Debug)]
pub struct Auditor {
    sink: Arc<dyn EventSink>,
}

impl Auditor {
    /// A sink to hand to library crates.
    pub fn sink(&self) -> Arc<dyn EventSink> {
        self.sink.clone()
    }

    /// Record one event and wait until it is durable.
    pub fn record(&self, event: AuditEvent) -> anyhow::Result<()> {
        self.sink.emit(event)?;
        Ok(())
    }

    /// Flush, write a final checkpoint and close.
    pub fn close(self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Open the audit log of the data directory.
pub fn open(_ctx: &Ctx, _cfg: &Config) -> anyhow::Result<Auditor> {
    Ok(Auditor { sink: Arc::new(NullSink) })
}
