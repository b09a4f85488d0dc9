//! `airlock proxy`: run the egress proxy on its own.
//!
//! Loads the configuration (and `--policy FILE` if given; otherwise the
//! `[policy]` section, which defaults to `read_public`), opens the audit log,
//! binds the listener, prints `airlock proxy listening on ADDR` on stdout, and
//! serves until SIGINT or SIGTERM. Then it stops accepting, lets requests in
//! flight finish for up to [`DRAIN_GRACE`] (idle connections close at once),
//! records `proxy.stop` with how many connections had to be cut, and exits.

use crate::config::ProxySettings;
use crate::ctx::{Ctx, EXIT_OK};
use airlock_proxy::Proxy;
use airlock_types::{Actor, ActorKind, AuditEvent, EventResult, Reason};
use anyhow::Context as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Longest a stopping proxy waits for requests in flight.
pub const DRAIN_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, clap::Args)]
pub struct ProxyArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:3128")]
    pub listen: SocketAddr,
    /// A policy file to enforce instead of the configuration's `[policy]` section.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Write the interception CA certificate (PEM, public part only) here, for clients to trust.
    #[arg(long, value_name = "FILE")]
    pub ca_cert_out: Option<PathBuf>,
    /// Runtime worker threads (default: one per CPU).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
}

pub fn run(ctx: &Ctx, args: ProxyArgs) -> anyhow::Result<u8> {
    let cfg = ctx.load_checked_config()?;
    let policy = ProxySettings::policy(&cfg.policy, args.policy.as_deref())?;
    let auditor = ctx.auditor(&cfg)?;
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.workers {
        anyhow::ensure!(n >= 1, "--workers: must be at least 1");
        rt.worker_threads(n);
    }
    let rt = rt
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let proxy = Proxy::new(
        cfg.proxy.proxy.clone(),
        Arc::new(policy),
        auditor.sink(),
        airlock_proxy::Scope::Tenant(crate::ctx::tenant()),
    )
    .context("cannot start the egress proxy")?;
    if let Some(path) = &args.ca_cert_out {
        std::fs::write(path, proxy.ca_cert_pem())
            .with_context(|| format!("{}: cannot write the CA certificate", path.display()))?;
    }
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(args.listen))
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener
        .local_addr()
        .context("cannot read the listening address")?;
    let source = args
        .policy
        .as_ref()
        .map_or_else(|| cfg.origin.clone(), |p| p.display().to_string());
    auditor.record(
        AuditEvent::new(
            crate::ctx::tenant(),
            Actor::system(),
            "proxy.start",
            addr.to_string(),
            Reason::Recorded,
            EventResult::Success,
        )
        .with_detail("policy", source),
    )?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "airlock proxy listening on {addr}")?;
        out.flush()?;
    }
    rt.block_on(proxy.serve(listener, shutdown_signal()))
        .context("egress proxy failed")?;
    let cut = rt.block_on(proxy.drain(DRAIN_GRACE));
    auditor.record(
        AuditEvent::new(
            crate::ctx::tenant(),
            Actor::new(ActorKind::System, "airlock"),
            "proxy.stop",
            addr.to_string(),
            Reason::Recorded,
            EventResult::Success,
        )
        .with_detail("connections_cut", cut),
    )?;
    drop(rt);
    auditor.close()?;
    Ok(EXIT_OK)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
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
