//! Connects the event-sink trait to the audit log. The only place that does.
//!
//! [`open`] starts the durable `airlock-audit` writer on the data directory's
//! database, signing key and checkpoint file. Library crates get
//! [`Auditor::sink`] (queues without waiting for the disk, refuses rather
//! than drops); commands call [`Auditor::record`], which returns only once the
//! event is on disk, and [`Auditor::close`], which writes the final signed
//! checkpoint. Several processes (a proxy, runs, CLI commands) may have the
//! same data directory's log open at once; `airlock-audit` orders their
//! appends and checkpoints.

use crate::config::Config;
use crate::ctx::Ctx;
use airlock_audit::{AuditLog, LogOptions};
use airlock_store::SqliteStore;
use airlock_types::{Actor, ActorKind, AuditEvent, EventSink, TenantId};
use anyhow::Context as _;
use std::sync::Arc;

/// An open audit log for one command's lifetime.
#[derive(Debug)]
pub struct Auditor {
    log: AuditLog,
}

impl Auditor {
    /// A sink to hand to library crates.
    pub fn sink(&self) -> Arc<dyn EventSink> {
        self.log.sink()
    }

    /// Record one event and wait until it is durable. Returns its index.
    pub fn record(&self, event: AuditEvent) -> anyhow::Result<u64> {
        let action = event.action.clone();
        self.log
            .append(&event)
            .with_context(|| format!("cannot record audit event {action}"))
    }

    /// Flush, write a final checkpoint and close.
    pub fn close(self) -> anyhow::Result<()> {
        self.log.close().context("cannot close the audit log")
    }
}

/// The tenant whose log the embedded single-user setup writes.
pub fn tenant() -> TenantId {
    TenantId::default_tenant()
}

/// The person running the command, as far as the environment says.
pub fn operator() -> Actor {
    let name = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "operator".to_owned());
    Actor::new(ActorKind::Operator, name)
}

/// Open the audit log of the data directory.
pub fn open(ctx: &Ctx, cfg: &Config) -> anyhow::Result<Auditor> {
    ctx.require_initialized()?;
    let signer = airlock_audit::load_signer(&ctx.audit_key_path())?;
    let store = SqliteStore::open(&ctx.db_path())?;
    let mut opts = LogOptions::new(tenant(), ctx.checkpoint_path());
    opts.checkpoint_every = cfg.audit.checkpoint_every;
    opts.checkpoint_interval = cfg.audit.checkpoint_interval;
    let log = AuditLog::open(Box::new(store), signer, opts)?;
    Ok(Auditor { log })
}
