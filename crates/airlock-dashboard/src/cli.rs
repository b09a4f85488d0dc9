//! `airlock serve` with the dashboard: the binary's arguments
//! (`--init-admin`) and the glue, so the binary stays thin.

use airlock_api::RunDefaults;
use airlock_runtime::settings::serve::ServeSettings;
use airlock_runtime::{AuditSettings, Home};
use airlock_store::{ControlStore, SqliteStore};
use airlock_types::{Action, AuditEvent, EventResult, Reason, TenantId, Timestamp};

/// A command failed; the message is for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CliError(String);

fn err(e: impl std::fmt::Display) -> CliError {
    CliError(e.to_string())
}

/// `airlock serve`.
#[derive(Debug, clap::Args)]
pub struct ServeCmd {
    #[command(flatten)]
    pub api: airlock_api::cli::ServeArgs,
    /// Create the first dashboard admin of the tenant (`--tenant`, default
    /// `default`; created if missing) and print its username and a
    /// one-time password, then serve.
    #[arg(long)]
    pub init_admin: bool,
}

fn record(home: &Home, audit: &AuditSettings, ev: AuditEvent) -> Result<(), CliError> {
    let a = airlock_runtime::audit::open(home, &ev.tenant, audit).map_err(|e| err(e.chain()))?;
    a.record(ev).map_err(|e| err(e.chain()))?;
    a.close().map_err(|e| err(e.chain()))
}

/// `--init-admin`: the tenant (created if missing), then `admin@TENANT`.
fn init_admin(
    home: &Home,
    audit: &AuditSettings,
    accounts: &mut dyn ControlStore,
    tenant: &str,
) -> Result<(), CliError> {
    let t = TenantId::new(tenant).map_err(err)?;
    let op = airlock_runtime::audit::operator(home);
    let now = Timestamp::now().as_micros();
    if accounts.tenant(&t).map_err(err)?.is_none() {
        record(
            home,
            audit,
            AuditEvent::new(
                t.clone(),
                op.clone(),
                Action::TenantCreated,
                format!("tenant:{t}"),
                Reason::Recorded,
                EventResult::Success,
            ),
        )?;
        accounts.tenant_create(&t, now).map_err(err)?;
    }
    let username = format!("admin@{t}");
    if accounts.user(&username).map_err(err)?.is_some() {
        return Err(CliError(format!("dashboard user {username} exists")));
    }
    record(
        home,
        audit,
        AuditEvent::new(
            t.clone(),
            op,
            Action::UserCreated,
            format!("user:{username}"),
            Reason::Recorded,
            EventResult::Success,
        )
        .with_detail("admin", true),
    )?;
    let (username, password) = crate::init_admin(accounts, &t, now).map_err(err)?;
    eprintln!("created dashboard admin (the password is shown once; only its hash is stored)");
    println!("username: {username}");
    println!("password: {}", password.expose());
    Ok(())
}

/// `airlock serve`: the API, and the dashboard next to it (accounts live in
/// the control store, SQLite or PostgreSQL).
pub fn serve(
    home: &Home,
    settings: &ServeSettings,
    tenant: Option<&str>,
    args: ServeCmd,
    audit: AuditSettings,
    defaults: RunDefaults,
) -> Result<(), CliError> {
    if args.api.print_openapi {
        return airlock_api::cli::serve(home, settings, args.api, audit, defaults).map_err(err);
    }
    home.require_initialized().map_err(|e| err(e.chain()))?;
    // Accounts live in the control store: PostgreSQL when one is
    // configured (then the inbox, which reads this node's SQLite
    // approvals, is not served, and the budgets page shows the shared
    // budgets), else SQLite.
    let (mut accounts, approvals): (Box<dyn ControlStore>, _) =
        match airlock_runtime::audit::open_pg(&audit.store).map_err(|e| err(e.chain()))? {
            Some(pg) => (Box::new(pg), None),
            None => (
                Box::new(SqliteStore::open(&home.db_path()).map_err(err)?),
                Some(SqliteStore::open(&home.db_path()).map_err(err)?),
            ),
        };
    if args.init_admin {
        init_admin(home, &audit, accounts.as_mut(), tenant.unwrap_or("default"))?;
    }
    let mount = {
        let listen = args.api.listen.unwrap_or(settings.listen);
        let oidc = settings.oidc.clone();
        if let Some(o) = &oidc {
            let tls = !(args.api.dangerously_plain_http || settings.plain_http);
            let url = o.redirect_url_for(listen, tls).map_err(CliError)?;
            eprintln!(
                "airlock: dashboard SSO through {} (redirect URL {url})",
                o.issuer
            );
        }
        let front = move |st, tls| {
            let oidc = oidc.and_then(|o| match o.redirect_url_for(listen, tls) {
                Ok(u) => Some((o, u)),
                Err(e) => {
                    // Checked before serving (below); unreachable here.
                    tracing::error!(error = %e, "SSO not served");
                    None
                }
            });
            crate::router(
                st,
                accounts,
                approvals,
                tls,
                crate::SessionLimits::default(),
                oidc,
            )
        };
        Some((Box::new(front) as _, "/login"))
    };
    airlock_api::cli::serve_with(home, settings, args.api, audit, defaults, mount).map_err(err)
}
