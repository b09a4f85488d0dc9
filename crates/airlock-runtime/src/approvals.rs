//! Approvals for a home: the approver and taint tracker every front end of
//! a run is handed ([`for_home`]), the egress hook a run's proxy gets
//! ([`egress_guard`]), and the reviewer's commands (`airlock approvals`,
//! [`command`]).

use crate::settings::approvals::ApprovalsSettings;
use crate::{AuditSettings, Home, RuntimeError};
pub use airlock_approval::ApprovalServices;
use airlock_approval::{ApprovalSettings, EgressGuard, EgressGuardConfig, HostLabel, Review};
use airlock_policy::EgressPolicy;
use airlock_store::SqliteStore;
use airlock_types::{EventSink, RunContext, TenantId};
use std::fmt::Write as _;
use std::sync::Arc;

/// The approver (proposals in the home's database, decided by `airlock
/// approvals approve`) and the taint tracker (the runs' labels in the same
/// database) for a home, recording to `sink` (the tenant's audit log).
/// Hand both to every front end serving a run — the egress hook and the
/// MCP gateway — so they share the run's approvals and taint.
pub fn for_home(
    home: &Home,
    sink: Arc<dyn EventSink>,
    settings: &ApprovalsSettings,
) -> Result<ApprovalServices, RuntimeError> {
    home.require_initialized()?;
    airlock_approval::for_database(
        &home.db_path(),
        sink,
        ApprovalSettings {
            ttl: settings.ttl,
            ..ApprovalSettings::default()
        },
    )
    .map_err(|e| RuntimeError::Invalid(format!("cannot open approvals: {e}")))
}

/// The version approvals are bound to: SHA-256 of the compiled policy.
pub fn policy_version(policy: &EgressPolicy) -> String {
    format!(
        "sha256:{}",
        airlock_approval::sha256_hex(policy.fingerprint().as_bytes())
    )
}

/// The approvals hook for one run's proxy. `policy` must be the run's
/// policy (with approvals on).
pub fn egress_guard(
    services: &ApprovalServices,
    policy: Arc<EgressPolicy>,
    sink: Arc<dyn EventSink>,
    settings: &ApprovalsSettings,
    ctx: &RunContext,
) -> EgressGuard {
    let cfg = EgressGuardConfig {
        autonomy: settings.autonomy_for(ctx.agent.as_ref()),
        private_hosts: settings
            .private_hosts
            .iter()
            .map(|h| HostLabel::new(h))
            .collect(),
        untrusted_hosts: settings
            .untrusted_hosts
            .iter()
            .map(|h| HostLabel::new(h))
            .collect(),
        trifecta: settings.trifecta,
        max_body: settings.max_body_bytes,
        wait: settings.wait,
        policy_version: policy_version(&policy),
    };
    EgressGuard::new(
        services.approver.clone(),
        services.taint.clone(),
        policy,
        sink,
        cfg,
    )
}

/// A reviewer's command (`airlock approvals …`; with the `cli` feature it
/// is the clap subcommand itself).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::Subcommand))]
pub enum Command {
    /// Calls waiting for approval (`--all`: decided ones too).
    List {
        /// A JSON array of objects (`id`, `sha256`, `state`, `subject`, …).
        #[cfg_attr(feature = "cli", arg(long))]
        json: bool,
        /// Include decided, expired and used approvals.
        #[cfg_attr(feature = "cli", arg(long))]
        all: bool,
    },
    /// The exact canonical call and its SHA-256.
    Show {
        /// The approval's id.
        id: String,
    },
    /// Approve ID, only if HEX is the SHA-256 of the pending call (as `show` printed it).
    Approve {
        /// The approval's id.
        id: String,
        /// The hash the reviewer saw.
        #[cfg_attr(feature = "cli", arg(long, value_name = "HEX"))]
        sha256: String,
    },
    /// Deny ID.
    Deny {
        /// The approval's id.
        id: String,
        /// Why (recorded with the decision).
        #[cfg_attr(feature = "cli", arg(long))]
        reason: Option<String>,
    },
}

/// Run a reviewer's command for `tenant`; returns what to print. Decisions
/// and refused attempts are recorded in the tenant's audit log (as the
/// operator the environment names) before this returns.
pub fn command(
    home: &Home,
    tenant: &TenantId,
    audit: &AuditSettings,
    cmd: Command,
) -> Result<String, RuntimeError> {
    home.require_initialized()?;
    let store = SqliteStore::open(&home.db_path())?;
    let needs_log = matches!(cmd, Command::Approve { .. } | Command::Deny { .. });
    let auditor = if needs_log {
        Some(crate::audit::open(home, tenant, audit)?)
    } else {
        None
    };
    let sink: Arc<dyn EventSink> = match &auditor {
        Some(a) => a.sink(),
        None => Arc::new(airlock_types::NullSink),
    };
    let review = Review::new(&store, sink.as_ref(), tenant, crate::audit::operator(home));
    let invalid = |e: airlock_approval::ReviewError| RuntimeError::Invalid(e.to_string());
    let result = match cmd {
        Command::List { json, all } => {
            let items = review.list(!all).map_err(invalid)?;
            if json {
                let mut s = serde_json::to_string_pretty(&items)
                    .map_err(|e| RuntimeError::Invalid(e.to_string()))?;
                s.push('\n');
                Ok(s)
            } else {
                let mut s = String::new();
                for v in &items {
                    let _ = writeln!(s, "{}", v.summary());
                }
                Ok(s)
            }
        }
        Command::Show { id } => {
            let v = review.show(&id).map_err(invalid)?;
            let mut s = format!("{}\n", v.summary());
            let _ = writeln!(s, "canonical: {}", v.canonical);
            let _ = writeln!(s, "sha256: {}", v.sha256);
            let _ = writeln!(s, "expires: {}", v.expires);
            Ok(s)
        }
        Command::Approve { id, sha256 } => review
            .approve(&id, &sha256)
            .map(|v| format!("approved {} (sha256 {})\n", v.id, v.sha256))
            .map_err(invalid),
        Command::Deny { id, reason } => review
            .deny(&id, reason.as_deref())
            .map(|v| format!("denied {}\n", v.id))
            .map_err(invalid),
    };
    drop(review);
    drop(sink);
    if let Some(a) = auditor {
        a.close()?;
    }
    result
}
