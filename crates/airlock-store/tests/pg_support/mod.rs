//! Test databases on the throwaway cluster that `scripts/test` starts
//! (`scripts/pg-cluster`; its admin URL in `AIRLOCK_TEST_PG_URL`). Shared by
//! the store's and the audit crate's PostgreSQL tests (`#[path]`).
//!
//! Each test gets its own database owned by `airlock_test_owner` (a plain
//! login role, no superuser), migrated as that owner, and serves as
//! `airlock_test_app` (a login member of `airlock_app`): the roles a real
//! installation uses.
#![allow(dead_code)]

use airlock_store::{PgConnectOptions, PgStore};
use std::str::FromStr as _;

pub const OWNER: &str = "airlock_test_owner";
pub const APP: &str = "airlock_test_app";

/// The cluster's admin URL, or `None` (skip) when not running under
/// `scripts/test`; in CI (`AIRLOCK_REQUIRE_SDK_TESTS`) its absence fails.
pub fn admin_url() -> Option<String> {
    match std::env::var("AIRLOCK_TEST_PG_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(
                std::env::var_os("AIRLOCK_REQUIRE_SDK_TESTS").is_none(),
                "AIRLOCK_REQUIRE_SDK_TESTS is set but AIRLOCK_TEST_PG_URL is not \
                 (scripts/test starts a PostgreSQL cluster with scripts/pg-cluster)"
            );
            eprintln!("*** SKIPPED: AIRLOCK_TEST_PG_URL is not set (scripts/test sets it)");
            None
        }
    }
}

/// `postgres://ROLE@host:port/DB` on the same cluster as `admin`.
pub fn url_as(admin: &str, role: &str, db: &str) -> String {
    let cfg = postgres::Config::from_str(admin).expect("admin URL");
    let host = match &cfg.get_hosts()[0] {
        postgres::config::Host::Tcp(h) => h.clone(),
        postgres::config::Host::Unix(p) => p.display().to_string(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    format!("postgres://{role}@{host}:{port}/{db}?sslmode=disable")
}

pub fn admin_client(admin: &str) -> postgres::Client {
    postgres::Client::connect(admin, postgres::NoTls).expect("admin connect")
}

/// Run SQL as the cluster's superuser, tolerating another test creating
/// the same role at the same moment.
fn ensure_roles(admin: &str) {
    let mut c = admin_client(admin);
    for sql in [
        "CREATE ROLE airlock_app NOLOGIN".to_owned(),
        format!("CREATE ROLE {OWNER} LOGIN"),
        format!("CREATE ROLE {APP} LOGIN IN ROLE airlock_app"),
    ] {
        let _ = c.batch_execute(&format!(
            "DO $$ BEGIN {sql}; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
        ));
    }
}

/// A fresh database for one test.
#[derive(Debug, Clone)]
pub struct TestDb {
    pub admin: String,
    pub name: String,
}

impl TestDb {
    /// A new, migrated database named after the test (and this process).
    pub fn new(admin: &str, test: &str) -> TestDb {
        let db = TestDb::unmigrated(admin, test);
        airlock_store::pg_migrate(&db.opts(OWNER)).expect("migrate");
        db
    }

    /// A new database without any migration.
    pub fn unmigrated(admin: &str, test: &str) -> TestDb {
        ensure_roles(admin);
        let name = format!("airlock_{test}_{}", std::process::id());
        let mut c = admin_client(admin);
        c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .expect("drop db");
        c.batch_execute(&format!("CREATE DATABASE {name} OWNER {OWNER}"))
            .expect("create db");
        TestDb {
            admin: admin.to_owned(),
            name,
        }
    }

    pub fn url(&self, role: &str) -> String {
        url_as(&self.admin, role, &self.name)
    }

    pub fn opts(&self, role: &str) -> PgConnectOptions {
        PgConnectOptions::new(&self.url(role), None).expect("options")
    }

    /// A store serving as the app role.
    pub fn app(&self) -> PgStore {
        PgStore::connect(&self.opts(APP)).expect("connect as app role")
    }

    /// A raw client as `role` on this database.
    pub fn raw(&self, role: &str) -> postgres::Client {
        postgres::Client::connect(&self.url(role), postgres::NoTls).expect("raw connect")
    }

    /// The superuser on this database.
    pub fn superuser(&self) -> postgres::Client {
        let cfg = postgres::Config::from_str(&self.admin).expect("admin URL");
        let user = cfg.get_user().unwrap_or("postgres").to_owned();
        self.raw(&user)
    }
}
