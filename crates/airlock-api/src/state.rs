//! What every handler shares: the stores, the audit logs, the node's runs.

use crate::ApiError;
use crate::runs::RunDefaults;
use airlock_runtime::audit::Auditor;
use airlock_runtime::{AuditSettings, Home};
use airlock_store::{AuditStore, ControlStore};
use airlock_types::{AuditEvent, TenantId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The server's shared state.
#[derive(Debug)]
pub struct AppState {
    pub(crate) home: Home,
    pub(crate) node: String,
    /// Connections to the control store; a request takes a free one.
    control: Vec<Mutex<Box<dyn ControlStore>>>,
    next: std::sync::atomic::AtomicUsize,
    pub(crate) audit_reader: Mutex<Box<dyn AuditStore>>,
    pub(crate) audit_settings: AuditSettings,
    auditors: Mutex<HashMap<TenantId, Arc<Auditor>>>,
    pub(crate) runs: crate::runs::Runs,
}

/// The stores a server uses: the control-plane records and a reader of
/// the audit log. (Audit appends go through `airlock_runtime::audit`.)
#[derive(Debug)]
pub struct Stores {
    /// Tenants, agents, policies, tokens, runs.
    pub control: Box<dyn ControlStore>,
    /// More connections to the same store, so requests need not wait for
    /// one another's round trips (may be empty).
    pub more_control: Vec<Box<dyn ControlStore>>,
    /// Reads the audit log (query, verify, proofs, streams).
    pub audit_reader: Box<dyn AuditStore>,
}

impl AppState {
    /// State for a server on `home` with these stores.
    pub fn new(
        home: Home,
        node: String,
        stores: Stores,
        audit_settings: AuditSettings,
        defaults: RunDefaults,
    ) -> AppState {
        AppState {
            home,
            node,
            control: std::iter::once(stores.control)
                .chain(stores.more_control)
                .map(Mutex::new)
                .collect(),
            next: std::sync::atomic::AtomicUsize::new(0),
            audit_reader: Mutex::new(stores.audit_reader),
            audit_settings,
            auditors: Mutex::new(HashMap::new()),
            runs: crate::runs::Runs::new(defaults),
        }
    }

    /// Run `f` on the control store, off the async threads.
    pub async fn db<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut dyn ControlStore) -> Result<T, airlock_store::StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = me.control()?;
            f(guard.as_mut()).map_err(ApiError::store)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("store task failed: {e}")))?
    }

    /// A free control-store connection (else wait for one). Blocking.
    pub(crate) fn control(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, Box<dyn ControlStore>>, ApiError> {
        let n = self.control.len();
        let start = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % n;
        for i in 0..n {
            if let Ok(g) = self.control[(start + i) % n].try_lock() {
                return Ok(g);
            }
        }
        self.control[start]
            .lock()
            .map_err(|_| ApiError::Internal("control store lock poisoned".into()))
    }

    /// Run `f` on the audit reader, off the async threads.
    pub async fn audit_read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&dyn AuditStore) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let guard = me
                .audit_reader
                .lock()
                .map_err(|_| ApiError::Internal("audit reader lock poisoned".into()))?;
            f(guard.as_ref())
        })
        .await
        .map_err(|e| ApiError::Internal(format!("audit task failed: {e}")))?
    }

    /// The tenant's audit log, opened once (the dashboard's approval
    /// decisions are recorded through its sink).
    pub fn auditor(&self, tenant: &TenantId) -> Result<Arc<Auditor>, ApiError> {
        let mut map = self
            .auditors
            .lock()
            .map_err(|_| ApiError::Internal("auditor lock poisoned".into()))?;
        if let Some(a) = map.get(tenant) {
            return Ok(a.clone());
        }
        let a = airlock_runtime::audit::open(&self.home, tenant, &self.audit_settings).map_err(
            |e| {
                tracing::error!(tenant = %tenant, error = %e.chain(), "cannot open the audit log");
                ApiError::AuditUnavailable
            },
        )?;
        let a = Arc::new(a);
        map.insert(tenant.clone(), a.clone());
        Ok(a)
    }

    /// Record `event` durably in its tenant's log; a failure refuses the request.
    pub async fn record(self: &Arc<Self>, event: AuditEvent) -> Result<u64, ApiError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let a = me.auditor(&event.tenant)?;
            let tenant = event.tenant.clone();
            a.record(event).map_err(|e| {
                tracing::error!(error = %e.chain(), "cannot record an API event");
                // A log that failed an append stays failed (it no longer
                // knows its chain's head): forget it, so the next request
                // reopens it from the store once the store is back.
                if let Ok(mut map) = me.auditors.lock()
                    && map.get(&tenant).is_some_and(|x| Arc::ptr_eq(x, &a))
                {
                    map.remove(&tenant);
                }
                ApiError::AuditUnavailable
            })
        })
        .await
        .map_err(|e| ApiError::Internal(format!("audit task failed: {e}")))?
    }

    /// The data directory the server runs on.
    pub fn home(&self) -> &Home {
        &self.home
    }

    /// The audit settings (where checkpoints and the store are).
    pub fn audit_settings(&self) -> &AuditSettings {
        &self.audit_settings
    }

    /// Close every audit log (final checkpoints).
    pub fn close(&self) {
        if let Ok(mut map) = self.auditors.lock() {
            for (_, a) in map.drain() {
                if let Ok(a) = Arc::try_unwrap(a)
                    && let Err(e) = a.close()
                {
                    tracing::warn!(error = %e.chain(), "closing an audit log");
                }
            }
        }
    }
}
