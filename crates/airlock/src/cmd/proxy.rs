//! `airlock proxy`: run the egress proxy on its own.
//!
//! Loads the configuration (and `--policy FILE` if given; otherwise the
//! `[policy]` section, which defaults to `read_public`), opens the audit log,
//! binds the listener, prints `airlock proxy listening on ADDR` on stdout, and
//! serves until SIGINT or SIGTERM. Then it stops accepting, lets requests in
//! flight finish for up to `airlock_runtime::standalone::DRAIN_GRACE` (idle connections close at once),
//! records `proxy.stop` with how many connections had to be cut, and exits.

use crate::config::ProxySettings;
use crate::ctx::{Ctx, EXIT_OK};
use airlock_runtime::standalone::{self, ProxyService};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

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
    if let Some(n) = args.workers {
        anyhow::ensure!(n >= 1, "--workers: must be at least 1");
    }
    let svc = ProxyService {
        tenant: ctx.tenant_id()?,
        proxy: cfg.proxy.proxy.clone(),
        policy,
        policy_source: args
            .policy
            .as_ref()
            .map_or_else(|| cfg.origin.clone(), |p| p.display().to_string()),
        listen: args.listen,
        workers: args.workers,
        ca_cert_out: args.ca_cert_out,
    };
    let listening = |addr: SocketAddr| {
        let mut out = std::io::stdout().lock();
        writeln!(out, "airlock proxy listening on {addr}")?;
        out.flush()
    };
    standalone::serve(svc, auditor, listening, standalone::shutdown_signal())?;
    Ok(EXIT_OK)
}
