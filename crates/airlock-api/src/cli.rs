//! The binary's `serve`, `tenant` and `token` commands (clap derives
//! behind the `cli` feature). The logic is here so the binary stays thin.

use crate::auth::{Scope, TokenSpec};
use crate::{AppState, RunDefaults, Stores, TlsMode};
use airlock_runtime::settings::serve::ServeSettings;
use airlock_runtime::settings::store::StoreSettings;
use airlock_runtime::{AuditSettings, Home};
use airlock_store::{ControlStore, SqliteStore};
use airlock_types::{Action, AuditEvent, EventResult, Reason, TenantId, Timestamp};
use std::net::SocketAddr;
use std::sync::Arc;

/// A command failed; the message is for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CliError(String);

fn err(e: impl std::fmt::Display) -> CliError {
    CliError(e.to_string())
}

/// `airlock serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on [default: serve.listen, 127.0.0.1:8443].
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// DEVELOPMENT ONLY: plain HTTP, on a loopback address only. Refused in production mode.
    #[arg(long)]
    pub dangerously_plain_http: bool,
    /// Print the API's OpenAPI 3.1 document and exit.
    #[arg(long)]
    pub print_openapi: bool,
}

/// `airlock tenant …`.
#[derive(Debug, clap::Subcommand)]
pub enum TenantCmd {
    /// Create a tenant (organization).
    Create {
        /// Its name (A-Z a-z 0-9 - _ .).
        name: String,
    },
    /// List the tenants.
    List,
}

/// `airlock --tenant NAME token …`.
#[derive(Debug, clap::Subcommand)]
pub enum TokenCmd {
    /// Create an API token and print it once.
    Create {
        /// A scope (repeatable): runs:read, runs:write, audit:read, approvals:read, approvals:decide, secrets:read, secrets:write, policies:read, policies:write, agents:read, agents:write, tokens:write, budgets:read, budgets:write, admin.
        #[arg(long = "scope", value_name = "SCOPE", required = true)]
        scopes: Vec<Scope>,
        /// Limit the token to this agent (repeatable).
        #[arg(long = "agent", value_name = "AGENT")]
        agents: Vec<String>,
        /// Limit the token to this node (repeatable).
        #[arg(long = "node", value_name = "NODE")]
        nodes: Vec<String>,
        /// Expire after this long (`90s`, `30m`, `12h`, `30d`).
        #[arg(long, value_name = "DUR")]
        expires: Option<String>,
        /// A label.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List the tenant's tokens (never their text).
    List,
    /// Revoke a token by id (`tok_…`).
    Revoke {
        /// The token's id.
        id: String,
    },
}

/// Connections a server keeps to a PostgreSQL control store.
const CONTROL_CONNECTIONS: usize = 4;

/// Open the stores a server uses: PostgreSQL when `[store] database_url`
/// (or `AIRLOCK_DATABASE_URL`) names one, else SQLite in the data directory.
/// (Audit appends pick the same way, in `airlock_runtime::audit`.)
pub fn open_stores(home: &Home, store: &StoreSettings) -> Result<Stores, CliError> {
    home.require_initialized().map_err(|e| err(e.chain()))?;
    let pg = || airlock_runtime::audit::open_pg(store).map_err(|e| err(e.chain()));
    if let (Some(control), Some(audit_reader)) = (pg()?, pg()?) {
        let mut more_control: Vec<Box<dyn ControlStore>> = Vec::new();
        for _ in 1..CONTROL_CONNECTIONS {
            if let Some(c) = pg()? {
                more_control.push(Box::new(c));
            }
        }
        return Ok(Stores {
            control: Box::new(control),
            more_control,
            audit_reader: Box::new(audit_reader),
        });
    }
    // One SQLite connection: SQLite serializes writers anyway, and several
    // connections waiting on its lock only lengthen the tail (measured).
    let sqlite = || SqliteStore::open(&home.db_path()).map_err(err);
    Ok(Stores {
        control: Box::new(sqlite()?),
        more_control: Vec::new(),
        audit_reader: Box::new(sqlite()?),
    })
}

pub(crate) fn parse_duration_secs(s: &str) -> Result<u64, CliError> {
    let (num, mult) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1),
        Some((i, 'm')) => (&s[..i], 60),
        Some((i, 'h')) => (&s[..i], 3600),
        Some((i, 'd')) => (&s[..i], 86_400),
        _ => (s, 1),
    };
    match num.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n.saturating_mul(mult)),
        _ => Err(CliError(format!(
            "--expires {s:?}: use e.g. 90s, 30m, 12h, 30d"
        ))),
    }
}

fn record(home: &Home, audit: &AuditSettings, ev: AuditEvent) -> Result<(), CliError> {
    let a = airlock_runtime::audit::open(home, &ev.tenant, audit).map_err(|e| err(e.chain()))?;
    a.record(ev).map_err(|e| err(e.chain()))?;
    a.close().map_err(|e| err(e.chain()))
}

/// `airlock tenant …`.
pub fn tenant(home: &Home, audit: &AuditSettings, cmd: TenantCmd) -> Result<(), CliError> {
    let mut store = open_stores(home, &audit.store)?.control;
    match cmd {
        TenantCmd::Create { name } => {
            crate::handlers::valid_name("tenant", &name).map_err(err)?;
            let t = TenantId::new(name).map_err(err)?;
            if store.tenant(&t).map_err(err)?.is_some() {
                return Err(CliError(format!("tenant {t} exists")));
            }
            let op = airlock_runtime::audit::operator(home);
            record(
                home,
                audit,
                AuditEvent::new(
                    t.clone(),
                    op,
                    Action::TenantCreated,
                    format!("tenant:{t}"),
                    Reason::Recorded,
                    EventResult::Success,
                ),
            )?;
            store
                .tenant_create(&t, Timestamp::now().as_micros())
                .map_err(err)?;
            println!("created tenant {t}");
        }
        TenantCmd::List => {
            for t in store.tenants().map_err(err)? {
                println!("{}", t.id);
            }
        }
    }
    Ok(())
}

/// `airlock --tenant NAME token …`.
pub fn token(
    home: &Home,
    audit: &AuditSettings,
    tenant: &str,
    cmd: TokenCmd,
) -> Result<(), CliError> {
    let t = TenantId::new(tenant).map_err(err)?;
    let mut store = open_stores(home, &audit.store)?.control;
    if store.tenant(&t).map_err(err)?.is_none() {
        return Err(CliError(format!(
            "no tenant {t} (create it with `airlock tenant create {t}`)"
        )));
    }
    let op = airlock_runtime::audit::operator(home);
    let now = Timestamp::now().as_micros();
    match cmd {
        TokenCmd::Create {
            scopes,
            agents,
            nodes,
            expires,
            description,
        } => {
            for n in agents.iter().chain(&nodes) {
                crate::handlers::valid_name("--agent/--node", n).map_err(err)?;
            }
            let expires_at = match expires {
                None => None,
                Some(s) => Some(
                    now.saturating_add(
                        i64::try_from(parse_duration_secs(&s)?.saturating_mul(1_000_000))
                            .unwrap_or(i64::MAX),
                    ),
                ),
            };
            let minted = crate::auth::mint(
                &t,
                &TokenSpec {
                    scopes,
                    agents,
                    nodes,
                    description,
                    expires_at,
                },
                now,
            )
            .map_err(err)?;
            record(
                home,
                audit,
                AuditEvent::new(
                    t.clone(),
                    op,
                    Action::TokenCreated,
                    format!("token:{}", minted.row.id),
                    Reason::Recorded,
                    EventResult::Success,
                )
                .with_detail("scopes", minted.row.scopes.clone())
                .with_detail("agents", minted.row.agents.clone()),
            )?;
            store.token_insert(&minted.row).map_err(err)?;
            eprintln!(
                "created token {} for tenant {t} (shown once; store it now)",
                minted.row.id
            );
            println!("{}", minted.token.expose());
        }
        TokenCmd::List => {
            for r in store.tokens(&t).map_err(err)? {
                let state = if r.revoked_at.is_some() {
                    "revoked"
                } else if r.expires_at.is_some_and(|e| e <= now) {
                    "expired"
                } else {
                    "active"
                };
                println!(
                    "{}\t{}\t{}\t{}",
                    r.id,
                    state,
                    r.scopes.join(","),
                    r.agents.join(",")
                );
            }
        }
        TokenCmd::Revoke { id } => {
            crate::handlers::valid_name("id", &id).map_err(err)?;
            if !store
                .tokens(&t)
                .map_err(err)?
                .iter()
                .any(|r| r.id == id && r.revoked_at.is_none())
            {
                return Err(CliError(format!("no active token {id} in tenant {t}")));
            }
            record(
                home,
                audit,
                AuditEvent::new(
                    t.clone(),
                    op,
                    Action::TokenRevoked,
                    format!("token:{id}"),
                    Reason::Recorded,
                    EventResult::Success,
                ),
            )?;
            store.token_revoke(&t, &id, now).map_err(err)?;
            println!("revoked {id}");
        }
    }
    Ok(())
}

/// `airlock serve`: run the API until SIGINT or SIGTERM.
pub fn serve(
    home: &Home,
    settings: &ServeSettings,
    args: ServeArgs,
    audit: AuditSettings,
    defaults: RunDefaults,
) -> Result<(), CliError> {
    serve_with(home, settings, args, audit, defaults, None)
}

/// A front end served next to `/v1` (the dashboard): given the API's state
/// and whether the server speaks TLS, its routes (none under `/v1`, no
/// fallback), and the path to print as its address.
pub type Mount = (
    Box<dyn FnOnce(Arc<AppState>, bool) -> axum::Router + Send>,
    &'static str,
);

/// `airlock serve` with another front end mounted next to the API.
pub fn serve_with(
    home: &Home,
    settings: &ServeSettings,
    args: ServeArgs,
    audit: AuditSettings,
    defaults: RunDefaults,
    mount: Option<Mount>,
) -> Result<(), CliError> {
    if args.print_openapi {
        print!("{}", crate::openapi_json());
        return Ok(());
    }
    let listen = args.listen.unwrap_or(settings.listen);
    let plain = args.dangerously_plain_http || settings.plain_http;
    let mode = match (&settings.tls_files, plain) {
        (_, true) => TlsMode::Plain,
        (Some((c, k)), false) => TlsMode::Files(c.clone(), k.clone()),
        (None, false) => TlsMode::SelfSigned(home.path("api-dev-cert.pem")),
    };
    if home.production && !matches!(mode, TlsMode::Files(..)) {
        return Err(CliError("production mode: configure serve.tls_cert_file and serve.tls_key_file (no plain HTTP, no self-signed certificate)".into()));
    }
    let stores = open_stores(home, &audit.store)?;
    let state = Arc::new(AppState::new(
        home.clone(),
        settings.node.clone(),
        stores,
        audit,
        defaults,
    ));
    let tls = !matches!(mode, TlsMode::Plain);
    let mut app = crate::router(state.clone(), settings.max_body_bytes, tls);
    let mut also = String::new();
    if let Some((front, path)) = mount {
        app = app.merge(front(state.clone(), tls));
        also = path.to_owned();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(err)?;
    let scheme = if matches!(mode, TlsMode::Plain) {
        "http"
    } else {
        "https"
    };
    let note = match &mode {
        TlsMode::SelfSigned(p) => format!(" (development certificate: {})", p.display()),
        _ => String::new(),
    };
    let res = rt.block_on(crate::serve(
        app,
        listen,
        mode,
        |addr| {
            eprintln!("airlock: API listening on {scheme}://{addr}/v1{note}");
            if !also.is_empty() {
                eprintln!("airlock: dashboard at {scheme}://{addr}{also}");
            }
        },
        async {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => return std::future::pending().await,
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        },
    ));
    state.close();
    res.map_err(err)
}
