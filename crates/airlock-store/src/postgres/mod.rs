//! The PostgreSQL backend: [`PgStore`] implements [`crate::ControlStore`]
//! and [`crate::AuditStore`] on one PostgreSQL database that several
//! replicas share.
//!
//! **Two roles.** Migrations ([`migrate`]) run as the *owner* role, which
//! owns every table (the admin URL). Airlock *serves* ([`PgStore::connect`])
//! as a login role that is a member of the group role `airlock_app`; at every
//! connect it checks that this role is no superuser, has no `BYPASSRLS`, is
//! not a member of any role that is or has, and is not a member of the role
//! that owns any Airlock table, and refuses to serve otherwise
//! ([`StoreError::UnsafeRole`]). So row-level security always applies.
//!
//! **Row-level security.** Every tenant table has `ENABLE` and `FORCE ROW
//! LEVEL SECURITY` and a policy `USING` and `WITH CHECK` on
//! `current_setting('airlock.tenant', true)`, which each transaction sets
//! with `set_config('airlock.tenant', $1, true)` (local to the transaction,
//! so a pooled or reused connection never carries a tenant over). The
//! application filters by tenant as well; RLS is the second wall.
//! The token lookup by hash runs before the tenant is known: it calls a
//! `SECURITY DEFINER` function owned by the owner role that returns only the
//! row with that hash (see `0001_control_audit.sql`).
//!
//! **Calling it.** The client is the synchronous `postgres` crate, which
//! drives its connection on a private single-threaded tokio runtime. Like
//! the SQLite store, call it from a plain thread or from
//! `tokio::task::spawn_blocking`, never directly from an async task: a
//! blocking call on a tokio worker thread panics in the client ("Cannot
//! start a runtime from within a runtime"). One `PgStore` is one connection;
//! open one per worker thread. A connection that was lost is re-opened on
//! the next call.
//!
//! **TLS** is rustls (aws-lc-rs) with the Mozilla roots plus an optional CA
//! file, chosen by the URL's `sslmode` (`disable`, `prefer`, `require`;
//! with `require` the server's certificate and name are verified). A
//! database that is not on loopback or a Unix socket must use
//! `sslmode=require`: anything else is refused.

mod accounts;
mod audit;
mod budget;
mod control;
mod migrate;

pub use budget::PgBudget;
pub use migrate::{LATEST_PG_VERSION, migrate};

use crate::{DbError, StoreError};
use airlock_types::TenantId;
use postgres::config::{Host, SslMode};
use postgres::{Client, Config};
use std::cell::RefCell;
use std::path::PathBuf;
use std::str::FromStr as _;
use std::time::Duration;

#[cfg(all(feature = "test-no-app-filter", not(debug_assertions)))]
compile_error!("the test-no-app-filter feature is for tests only and never in release builds");

/// `tenant = $n`, the application's tenant filter, in a query. With the
/// `test-no-app-filter` feature (tests only) it matches every row, so that
/// only row-level security stands between tenants; the parameter is still
/// used, so the statement's parameters do not change.
#[cfg(not(feature = "test-no-app-filter"))]
macro_rules! tenant_eq {
    ($col:literal, $p:literal) => {
        concat!($col, " = ", $p)
    };
}
#[cfg(feature = "test-no-app-filter")]
macro_rules! tenant_eq {
    ($col:literal, $p:literal) => {
        concat!("(", $p, "::text IS NOT NULL)")
    };
}
pub(crate) use tenant_eq;

/// The tables under row-level security (every one that holds tenant data).
pub(crate) const TENANT_TABLES: &[&str] = &[
    "tenants",
    "teams",
    "agents",
    "policy_versions",
    "api_tokens",
    "runs",
    "audit_heads",
    "audit_records",
    "audit_checkpoints",
    "budgets",
    "budget_reservations",
    "dashboard_users",
    "dashboard_sessions",
];

/// How to reach the database: a `postgres://` URL (which may hold a
/// password: it is never printed) and an optional extra CA certificate.
#[derive(Clone)]
pub struct PgConnectOptions {
    config: Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    label: PathBuf,
}

impl std::fmt::Debug for PgConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The Config holds the password: show only host, port and database.
        f.debug_struct("PgConnectOptions")
            .field("database", &self.label)
            .finish_non_exhaustive()
    }
}

impl PgConnectOptions {
    /// Parse a `postgres://user[:password]@host[:port]/db?sslmode=…` URL
    /// (or a `key=value` connection string). `ca_pem` is an extra CA
    /// certificate (PEM) trusted besides the Mozilla roots.
    pub fn new(url: &str, ca_pem: Option<&[u8]>) -> Result<PgConnectOptions, StoreError> {
        let mut config = Config::from_str(url).map_err(|e| StoreError::PgConfig {
            // The parser's messages name the option, never its value.
            detail: e.to_string(),
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("airlock");
        }
        let remote = config.get_hosts().iter().any(|h| match h {
            Host::Tcp(name) => !is_loopback(name),
            Host::Unix(_) => false,
        });
        if remote && config.get_ssl_mode() != SslMode::Require {
            return Err(StoreError::PgConfig {
                detail: "a database that is not on loopback needs sslmode=require".into(),
            });
        }
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(pem) = ca_pem {
            use rustls_pki_types::pem::PemObject as _;
            let mut n = 0;
            for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| StoreError::PgConfig {
                    detail: format!("CA file: {e}"),
                })?;
                roots.add(cert).map_err(|e| StoreError::PgConfig {
                    detail: format!("CA file: {e}"),
                })?;
                n += 1;
            }
            if n == 0 {
                return Err(StoreError::PgConfig {
                    detail: "CA file holds no certificate".into(),
                });
            }
        }
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError::PgConfig {
                detail: format!("TLS: {e}"),
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let label = label(&config);
        Ok(PgConnectOptions {
            config,
            tls: tokio_postgres_rustls::MakeRustlsConnect::new(tls),
            label,
        })
    }

    /// `postgres://host:port/db`: where, without user or password (for
    /// errors and logs).
    pub fn label(&self) -> &std::path::Path {
        &self.label
    }

    pub(crate) fn open(&self) -> Result<Client, StoreError> {
        self.config
            .connect(self.tls.clone())
            .map_err(|e| pg_error(&self.label, "connect", e))
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn label(config: &Config) -> PathBuf {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or("");
    PathBuf::from(format!("postgres://{host}:{port}/{db}"))
}

/// Map a client error: connection failures and the server's "cannot serve
/// now" codes are [`StoreError::Unavailable`] (an API answers 503); the rest
/// is [`StoreError::Postgres`] naming the operation.
pub(crate) fn pg_error(
    label: &std::path::Path,
    what: &'static str,
    e: postgres::Error,
) -> StoreError {
    let unavailable = match e.code() {
        Some(code) => {
            let c = code.code();
            // 08: connection exception; 57P01-03: shutdown / cannot connect
            // now; 53: insufficient resources (too many connections, disk full).
            c.starts_with("08") || c.starts_with("57P") || c.starts_with("53")
        }
        None => {
            e.is_closed()
                || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>())
                || e.to_string().starts_with("error connecting")
                || e.to_string().contains("timeout")
        }
    };
    let source = db_error(e);
    if unavailable {
        StoreError::Unavailable {
            path: label.to_owned(),
            what,
            source,
        }
    } else {
        StoreError::Postgres {
            path: label.to_owned(),
            what,
            source,
        }
    }
}

/// The client's own Display of a server error says only "db error": keep
/// the server's severity, message and SQLSTATE in ours.
pub(crate) fn db_error(e: postgres::Error) -> DbError {
    match e.as_db_error() {
        Some(db) => DbError(Box::new(ServerError {
            text: format!("{}: {} ({})", db.severity(), db.message(), db.code().code()),
            inner: e,
        })),
        None => DbError(Box::new(e)),
    }
}

/// A server-side error: the server's severity, message and SQLSTATE.
#[derive(Debug)]
struct ServerError {
    text: String,
    inner: postgres::Error,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.inner)
    }
}

struct Conn {
    client: Client,
    /// A REPEATABLE READ read-only transaction is open (begin_snapshot).
    snapshot: bool,
}

/// Airlock's store on PostgreSQL, serving as the app role: one connection.
/// See the module docs for roles, row-level security and how to call it.
pub struct PgStore {
    opts: PgConnectOptions,
    conn: RefCell<Conn>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("database", &self.opts.label)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connect as the app role, check that the role cannot bypass
    /// row-level security ([`StoreError::UnsafeRole`] otherwise) and that
    /// the schema is at this build's version ([`StoreError::SchemaVersion`]:
    /// run `airlock db migrate` with the owner's URL first).
    pub fn connect(opts: &PgConnectOptions) -> Result<PgStore, StoreError> {
        let mut client = opts.open()?;
        check_role(&opts.label, &mut client)?;
        let found = migrate::current_version(&opts.label, &mut client)?;
        if found != LATEST_PG_VERSION {
            return Err(StoreError::SchemaVersion {
                path: opts.label.clone(),
                found,
                expected: LATEST_PG_VERSION,
                hint: if found < LATEST_PG_VERSION {
                    " (run `airlock db migrate` with the owner role's URL)"
                } else {
                    " (this build is older than the database)"
                },
            });
        }
        Ok(PgStore {
            opts: opts.clone(),
            conn: RefCell::new(Conn {
                client,
                snapshot: false,
            }),
        })
    }

    /// Another connection to the same database, as the same role (checked again).
    pub fn try_clone(&self) -> Result<PgStore, StoreError> {
        PgStore::connect(&self.opts)
    }

    /// Where this store is (`postgres://host:port/db`).
    pub fn label(&self) -> &std::path::Path {
        &self.opts.label
    }

    pub(crate) fn err(&self, what: &'static str, e: postgres::Error) -> StoreError {
        pg_error(&self.opts.label, what, e)
    }

    fn borrow(&self) -> Result<std::cell::RefMut<'_, Conn>, StoreError> {
        self.conn
            .try_borrow_mut()
            .map_err(|_| StoreError::Reentered {
                path: self.opts.label.clone(),
            })
    }

    /// Run `f` in one transaction scoped to `tenant` (none: no tenant, so
    /// RLS shows no row), committed when `f` succeeds and rolled back
    /// otherwise. Inside a read snapshot, reads run in the snapshot's
    /// transaction and writes are refused.
    pub(crate) fn tx<T>(
        &self,
        tenant: Option<&TenantId>,
        write: bool,
        what: &'static str,
        f: impl FnOnce(&mut Client) -> Result<T, TxError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.borrow()?;
        if conn.snapshot {
            if write {
                return Err(StoreError::PgSnapshotWrite {
                    path: self.opts.label.clone(),
                    what,
                });
            }
            let c = &mut conn.client;
            set_tenant(c, tenant).map_err(|e| self.err(what, e))?;
            return f(c).map_err(|e| e.into_store(self, what));
        }
        if conn.client.is_closed() {
            // The connection was lost (server restart, network): reconnect.
            // The role was checked when the store was opened; a database
            // whose roles changed since is re-checked here too.
            let mut client = self.opts.open()?;
            check_role(&self.opts.label, &mut client)?;
            conn.client = client;
        }
        let c = &mut conn.client;
        c.batch_execute("BEGIN").map_err(|e| self.err(what, e))?;
        let res = set_tenant(c, tenant)
            .map_err(TxError::Pg)
            .and_then(|()| f(c))
            .and_then(|v| c.batch_execute("COMMIT").map(|()| v).map_err(TxError::Pg));
        match res {
            Ok(v) => Ok(v),
            Err(e) => {
                // Nothing of a failed transaction stays; a dead connection
                // rolled back on the server already.
                let _ = c.batch_execute("ROLLBACK");
                Err(e.into_store(self, what))
            }
        }
    }
}

fn set_tenant(c: &mut Client, tenant: Option<&TenantId>) -> Result<(), postgres::Error> {
    if let Some(t) = tenant {
        c.execute(
            "SELECT set_config('airlock.tenant', $1, true)",
            &[&t.as_str()],
        )?;
    }
    Ok(())
}

/// An error inside a transaction: the client's, or a store error already made.
#[derive(Debug)]
pub(crate) enum TxError {
    Pg(postgres::Error),
    Store(StoreError),
}

impl From<postgres::Error> for TxError {
    fn from(e: postgres::Error) -> Self {
        TxError::Pg(e)
    }
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        TxError::Store(e)
    }
}

impl TxError {
    fn into_store(self, store: &PgStore, what: &'static str) -> StoreError {
        match self {
            TxError::Pg(e) => store.err(what, e),
            TxError::Store(e) => e,
        }
    }
}

/// Refuse a role that could bypass row-level security: a superuser, a role
/// with BYPASSRLS, a member of such a role, or a member of the role that
/// owns an Airlock table (owners can turn RLS off).
fn check_role(label: &std::path::Path, c: &mut Client) -> Result<(), StoreError> {
    let who: String = c
        .query_one("SELECT current_user::text", &[])
        .and_then(|r| r.try_get(0))
        .map_err(|e| pg_error(label, "role check", e))?;
    let unsafe_role = |detail: String| StoreError::UnsafeRole {
        path: label.to_owned(),
        role: who.clone(),
        detail,
    };
    let strong = c
        .query(
            "SELECT rolname::text, rolsuper, rolbypassrls FROM pg_roles \
             WHERE pg_has_role(current_user, oid, 'MEMBER') AND (rolsuper OR rolbypassrls)",
            &[],
        )
        .map_err(|e| pg_error(label, "role check", e))?;
    if let Some(r) = strong.first() {
        let name: String = r.try_get(0).map_err(|e| pg_error(label, "role check", e))?;
        let sup: bool = r.try_get(1).map_err(|e| pg_error(label, "role check", e))?;
        let what = if sup { "SUPERUSER" } else { "BYPASSRLS" };
        return Err(unsafe_role(if name == who {
            format!("the role has {what}")
        } else {
            format!("the role is a member of {name}, which has {what}")
        }));
    }
    let tables: Vec<String> = TENANT_TABLES.iter().map(|s| (*s).to_owned()).collect();
    let rows = c
        .query(
            "SELECT c.relname::text, pg_has_role(current_user, c.relowner, 'MEMBER'), \
                    c.relrowsecurity AND c.relforcerowsecurity \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relname = ANY($1)",
            &[&tables],
        )
        .map_err(|e| pg_error(label, "role check", e))?;
    for r in &rows {
        let name: String = r.try_get(0).map_err(|e| pg_error(label, "role check", e))?;
        let owns: bool = r.try_get(1).map_err(|e| pg_error(label, "role check", e))?;
        let forced: bool = r.try_get(2).map_err(|e| pg_error(label, "role check", e))?;
        if owns {
            return Err(unsafe_role(format!(
                "the role owns (or is a member of the owner of) table {name}; serve as a role \
                 that owns nothing and is a member of airlock_app"
            )));
        }
        if !forced {
            return Err(unsafe_role(format!(
                "row-level security is not enabled and forced on table {name}"
            )));
        }
    }
    Ok(())
}

pub(crate) fn to_i64(
    label: &std::path::Path,
    what: &'static str,
    v: u64,
) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Malformed {
        path: label.to_owned(),
        what,
        index: i64::MAX,
        detail: format!("{v} does not fit a signed 64-bit integer"),
    })
}
