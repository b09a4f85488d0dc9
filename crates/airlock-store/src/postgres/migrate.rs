//! Versioned PostgreSQL migrations, numbered on their own from 0001, run as
//! the owner role in one transaction under an advisory lock, so replicas
//! starting together migrate once and never half.

use super::{PgConnectOptions, pg_error};
use crate::StoreError;
use postgres::Client;

/// (version, name, SQL), in order. Never edit one that has shipped: add the next.
const MIGRATIONS: &[(u32, &str, &str)] = &[
    (1, "control_audit", include_str!("0001_control_audit.sql")),
    (2, "budgets", include_str!("0002_budgets.sql")),
    (
        3,
        "budget_reservations",
        include_str!("0003_budget_reservations.sql"),
    ),
    (4, "accounts", include_str!("0004_accounts.sql")),
];

/// The schema version this build expects.
pub const LATEST_PG_VERSION: u32 = 4;

/// The advisory lock key all migrating processes take ("airlock" in ASCII).
const LOCK_KEY: i64 = 0x0061_6972_6c6f_636b;

/// Bring the database's schema to [`LATEST_PG_VERSION`], connected as the
/// owner role (it will own every table; serve as another role). Returns the
/// versions applied (empty when it was current). A database newer than this
/// build is refused.
pub fn migrate(opts: &PgConnectOptions) -> Result<Vec<u32>, StoreError> {
    let label = opts.label().to_owned();
    let mut client = opts.open()?;
    let err = |what: &'static str| {
        let label = label.clone();
        move |e: postgres::Error| pg_error(&label, what, e)
    };
    let mut tx = client.transaction().map_err(err("migrate"))?;
    // Held to the end of the transaction: a second replica waits here and
    // then finds the work done.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .map_err(err("migrate"))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    integer     PRIMARY KEY,
             name       text        NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .map_err(err("migrate"))?;
    let found: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .and_then(|r| r.try_get(0))
        .map_err(err("migrate"))?;
    let found = u32::try_from(found).unwrap_or(0);
    if found > LATEST_PG_VERSION {
        return Err(StoreError::SchemaVersion {
            path: label,
            found,
            expected: LATEST_PG_VERSION,
            hint: " (this build is older than the database)",
        });
    }
    let mut applied = Vec::new();
    for &(version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > found) {
        tx.batch_execute(sql).map_err(|e| StoreError::Migrate {
            path: label.clone(),
            version,
            name,
            source: super::db_error(e),
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&(version as i32), &name],
        )
        .map_err(err("migrate"))?;
        applied.push(version);
    }
    tx.commit().map_err(err("migrate"))?;
    Ok(applied)
}

/// The schema version as the app role sees it (0 before any migration).
pub(crate) fn current_version(label: &std::path::Path, c: &mut Client) -> Result<u32, StoreError> {
    let exists: bool = c
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .and_then(|r| r.try_get(0))
        .map_err(|e| pg_error(label, "schema version", e))?;
    if !exists {
        return Ok(0);
    }
    let v: i32 = c
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .and_then(|r| r.try_get(0))
        .map_err(|e| pg_error(label, "schema version", e))?;
    Ok(u32::try_from(v).unwrap_or(0))
}
