//! Connects the event-sink trait to the audit log. The only place that does.
//!
//! [`open`] starts the durable `airlock-audit` writer on the data directory's
//! database, signing key and checkpoint file, for one tenant. Library crates
//! get [`Auditor::sink`] (queues without waiting for the disk, refuses rather
//! than drops); callers use [`Auditor::record`], which returns only once the
//! event is on disk, and [`Auditor::close`], which writes the final signed
//! checkpoint. Several processes and several runs in one process may have
//! the same data directory's log open at once; `airlock-audit` orders their
//! appends and checkpoints.

use crate::{AuditSettings, Home, RuntimeError};
use airlock_audit::{AuditLog, LogOptions};
use airlock_store::SqliteStore;
use airlock_types::{Actor, ActorKind, AuditEvent, EventSink, TenantId};
use std::sync::Arc;

/// An open audit log for one tenant, for one command's or run's lifetime.
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
    pub fn record(&self, event: AuditEvent) -> Result<u64, RuntimeError> {
        self.log
            .append(&event)
            .map_err(|source| RuntimeError::Record {
                action: event.action.to_string(),
                source,
            })
    }

    /// Flush, write a final checkpoint and close.
    pub fn close(self) -> Result<(), RuntimeError> {
        self.log.close().map_err(RuntimeError::Close)
    }
}

/// The person running a command, as far as the environment says.
pub fn operator(home: &Home) -> Actor {
    let name = home
        .env
        .get("USER")
        .filter(|u| !u.is_empty())
        .cloned()
        .unwrap_or_else(|| "operator".to_owned());
    Actor::new(ActorKind::Operator, name)
}

/// Open `tenant`'s audit log in the data directory.
pub fn open(
    home: &Home,
    tenant: &TenantId,
    settings: &AuditSettings,
) -> Result<Auditor, RuntimeError> {
    home.require_initialized()?;
    let signer = airlock_audit::load_signer(&home.audit_key_path())?;
    let store = open_store(home, &settings.store)?;
    let mut opts = LogOptions::new(
        tenant.clone(),
        checkpoint_path(home, tenant, &settings.store),
    );
    opts.checkpoint_every = settings.checkpoint_every;
    opts.checkpoint_interval = settings.checkpoint_interval;
    let log = AuditLog::open(store, signer, opts)?;
    Ok(Auditor { log })
}

/// The file of `tenant`'s signed checkpoints in this data directory. A log
/// in PostgreSQL has its own files, named after the database (host, port
/// and name; never the credentials): the embedded database's checkpoints
/// describe another log.
pub fn checkpoint_path(
    home: &Home,
    tenant: &TenantId,
    store: &crate::settings::store::StoreSettings,
) -> std::path::PathBuf {
    let local = home.checkpoint_path_for(tenant);
    let Some(url) = store.effective_url() else {
        return local;
    };
    let url = url.expose();
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let place = rest.split(['?', '#']).next().unwrap_or_default();
    let digest = airlock_approval::canonical::sha256_hex(place.as_bytes());
    let name = local
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    local.with_file_name(format!("{name}.pg-{}", &digest[..16]))
}

/// The store the audit log and the control plane live in: PostgreSQL when
/// `[store]` (or `AIRLOCK_DATABASE_URL`) names one, else the data
/// directory's SQLite database. Blocking: call off async worker threads.
pub fn open_store(
    home: &Home,
    store: &crate::settings::store::StoreSettings,
) -> Result<Box<dyn airlock_store::AuditStore>, RuntimeError> {
    Ok(match open_pg(store)? {
        Some(pg) => Box::new(pg),
        None => Box::new(SqliteStore::open(&home.db_path())?),
    })
}

/// The PostgreSQL store when one is configured.
pub fn open_pg(
    store: &crate::settings::store::StoreSettings,
) -> Result<Option<airlock_store::PgStore>, RuntimeError> {
    store.open_pg().map_err(|e| match e {
        crate::settings::store::OpenStoreError::Store(e) => RuntimeError::Store(e),
        other => RuntimeError::DataDir(other.to_string()),
    })
}
