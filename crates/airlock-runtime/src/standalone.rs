//! The egress proxy on its own (`airlock proxy`): serve one tenant's
//! traffic on a listener until a shutdown signal, then drain and record.

use crate::RuntimeError;
use crate::audit::Auditor;
use airlock_policy::EgressPolicy;
use airlock_proxy::{Proxy, ProxyConfig, Scope};
use airlock_types::{Actor, ActorKind, AuditEvent, EventResult, Reason, TenantId};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Longest a stopping proxy waits for requests in flight.
pub const DRAIN_GRACE: Duration = Duration::from_secs(10);

/// What a standalone proxy serves.
#[derive(Debug)]
pub struct ProxyService {
    /// Whose traffic it is.
    pub tenant: TenantId,
    /// The proxy's configuration.
    pub proxy: ProxyConfig,
    /// The policy it enforces.
    pub policy: EgressPolicy,
    /// Where the policy came from (recorded with `proxy.start`).
    pub policy_source: String,
    /// Where to listen.
    pub listen: SocketAddr,
    /// Async worker threads (`None`: one per CPU).
    pub workers: Option<usize>,
    /// Write the interception CA certificate (public part) here.
    pub ca_cert_out: Option<PathBuf>,
}

fn io(what: &'static str) -> impl Fn(std::io::Error) -> RuntimeError {
    move |source| RuntimeError::Supervise { what, source }
}

/// Serve until `shutdown` resolves: record `proxy.start`, call `listening`
/// with the bound address, serve, drain for up to [`DRAIN_GRACE`] (idle
/// connections close at once), record `proxy.stop` with how many
/// connections had to be cut, close the log.
pub fn serve(
    svc: ProxyService,
    auditor: Auditor,
    listening: impl FnOnce(SocketAddr) -> std::io::Result<()>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RuntimeError> {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = svc.workers {
        rt.worker_threads(n);
    }
    let rt = rt
        .enable_all()
        .build()
        .map_err(io("cannot start the async runtime"))?;
    let proxy = Proxy::new(
        svc.proxy,
        Arc::new(svc.policy),
        auditor.sink(),
        Scope::Tenant(svc.tenant.clone()),
    )
    .map_err(RuntimeError::Proxy)?;
    if let Some(path) = &svc.ca_cert_out {
        std::fs::write(path, proxy.ca_cert_pem())
            .map_err(|e| RuntimeError::io(path, "cannot write the CA certificate", e))?;
    }
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(svc.listen))
        .map_err(|source| RuntimeError::Listen {
            addr: svc.listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(io("cannot read the listening address"))?;
    auditor.record(
        AuditEvent::new(
            svc.tenant.clone(),
            Actor::system(),
            airlock_types::Action::ProxyStart,
            addr.to_string(),
            Reason::Recorded,
            EventResult::Success,
        )
        .with_detail("policy", svc.policy_source),
    )?;
    listening(addr).map_err(io("cannot say where the proxy listens"))?;
    rt.block_on(proxy.serve(listener, shutdown))
        .map_err(RuntimeError::Serve)?;
    let cut = rt.block_on(proxy.drain(DRAIN_GRACE));
    auditor.record(
        AuditEvent::new(
            svc.tenant,
            Actor::new(ActorKind::System, "airlock"),
            airlock_types::Action::ProxyStop,
            addr.to_string(),
            Reason::Recorded,
            EventResult::Success,
        )
        .with_detail("connections_cut", cut),
    )?;
    drop(rt);
    auditor.close()
}

/// Resolves on SIGINT or SIGTERM: when a listener a front end serves
/// (`airlock proxy`, `airlock gateway`) should stop.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = term => {},
    }
}
