//! The audit log on PostgreSQL: the real writer appends through a
//! `PgStore`, and replicas (threads with their own connections, and
//! separate processes) append to one tenant's chain at once. Every record
//! lands once and the audit crate's verifier accepts the chain.

#[path = "../../airlock-store/tests/pg_support/mod.rs"]
mod pg_support;

use airlock_audit::{AuditLog, LogOptions, Signer, verify_log};
use airlock_store::{AuditStore, PgStore};
use airlock_types::{Actor, AuditEvent, EventResult, Reason, Secret, TenantId};
use pg_support::{TestDb, admin_url};
use std::collections::HashSet;
use std::ops::ControlFlow;
use std::path::Path;
use std::process::Command;

fn tenant() -> TenantId {
    TenantId::new("acme").expect("tenant")
}

fn event(resource: &str) -> AuditEvent {
    AuditEvent::new(
        tenant(),
        Actor::system(),
        airlock_types::Action::CliInit,
        resource,
        Reason::Recorded,
        EventResult::Success,
    )
}

/// One replica: its own connection and writer, `n` events named `who-i`.
fn replica(url: &str, key: &Secret<Vec<u8>>, cps: &Path, who: &str, n: usize) {
    let opts = airlock_store::PgConnectOptions::new(url, None).expect("options");
    let store = PgStore::connect(&opts).expect("connect");
    let signer = Signer::from_pkcs8(key).expect("key");
    let mut o = LogOptions::new(tenant(), cps.to_owned());
    o.checkpoint_every = 50;
    let log = AuditLog::open(Box::new(store), signer, o).expect("open log");
    for i in 0..n {
        if i % 3 == 0 {
            log.append(&event(&format!("{who}-{i}"))).expect("append");
        } else {
            let t = log.submit(&event(&format!("{who}-{i}"))).expect("submit");
            log.wait_durable(t).expect("durable");
        }
    }
    log.close().expect("close");
}

/// Every resource in the tenant's log, checking each appears once.
fn resources(store: &PgStore) -> HashSet<String> {
    let mut seen = HashSet::new();
    let mut dups = Vec::new();
    store
        .for_each_record(&tenant(), 0, &mut |r| {
            let text = String::from_utf8_lossy(r.body).into_owned();
            if !seen.insert(text.clone()) {
                dups.push(r.index);
            }
            ControlFlow::Continue(())
        })
        .expect("read");
    assert!(dups.is_empty(), "records stored twice at {dups:?}");
    seen
}

fn check(db: &TestDb, key: &Secret<Vec<u8>>, cps: &Path, expect: usize) {
    let store = db.app();
    let public = Signer::from_pkcs8(key).expect("key").public_key();
    let report = verify_log(&store, &tenant(), &public, cps).expect("verify runs");
    assert!(report.ok(), "chain does not verify: {:?}", report.problems);
    assert_eq!(report.records, expect as u64);
    assert_eq!(
        report.signed_records, expect as u64,
        "the final checkpoint covers all"
    );
    assert_eq!(resources(&store).len(), expect);
}

#[test]
fn writer_on_postgres_verifies() {
    let Some(admin) = admin_url() else { return };
    let db = TestDb::new(&admin, "audit_writer");
    let dir = tempfile::tempdir().expect("tempdir");
    let cps = dir.path().join("audit.checkpoints");
    let key = Signer::generate_pkcs8().expect("keygen");
    replica(&db.url(pg_support::APP), &key, &cps, "solo", 120);
    // Reopening recovers the head from PostgreSQL and appends after it.
    replica(&db.url(pg_support::APP), &key, &cps, "again", 30);
    check(&db, &key, &cps, 150);
}

#[test]
fn three_replicas_in_threads_share_one_chain() {
    let Some(admin) = admin_url() else { return };
    let db = TestDb::new(&admin, "audit_threads");
    let dir = tempfile::tempdir().expect("tempdir");
    let cps = dir.path().join("audit.checkpoints");
    let key = Signer::generate_pkcs8().expect("keygen");
    let url = db.url(pg_support::APP);
    std::thread::scope(|s| {
        for r in 0..3 {
            let (url, key, cps) = (&url, &key, &cps);
            s.spawn(move || replica(url, key, cps, &format!("t{r}"), 150));
        }
    });
    check(&db, &key, &cps, 450);
}

/// Three processes (this test binary re-run as a child) append at once.
#[test]
fn three_replica_processes_share_one_chain() {
    let Some(admin) = admin_url() else { return };
    let db = TestDb::new(&admin, "audit_procs");
    let dir = tempfile::tempdir().expect("tempdir");
    let cps = dir.path().join("audit.checkpoints");
    let key = Signer::generate_pkcs8().expect("keygen");
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, key.expose()).expect("key file");
    let exe = std::env::current_exe().expect("exe");
    let children: Vec<_> = (0..3)
        .map(|r| {
            Command::new(&exe)
                .args(["--exact", "replica_child", "--test-threads=1"])
                // The children's own "test result" lines stay out of ours.
                .stdout(std::process::Stdio::null())
                .env("AIRLOCK_PG_REPLICA_URL", db.url(pg_support::APP))
                .env("AIRLOCK_PG_REPLICA_KEY", &key_file)
                .env("AIRLOCK_PG_REPLICA_CPS", &cps)
                .env("AIRLOCK_PG_REPLICA_NAME", format!("p{r}"))
                .spawn()
                .expect("spawn replica")
        })
        .collect();
    for mut c in children {
        assert!(
            c.wait().expect("wait").success(),
            "a replica process failed"
        );
    }
    check(&db, &key, &cps, 600);
}

/// The child side of `three_replica_processes_share_one_chain`; does
/// nothing when run by the test harness on its own.
#[test]
fn replica_child() {
    let Ok(url) = std::env::var("AIRLOCK_PG_REPLICA_URL") else {
        return;
    };
    let env = |k: &str| std::env::var(k).expect(k);
    let key = Secret::new(std::fs::read(env("AIRLOCK_PG_REPLICA_KEY")).expect("key"));
    let cps = std::path::PathBuf::from(env("AIRLOCK_PG_REPLICA_CPS"));
    replica(&url, &key, &cps, &env("AIRLOCK_PG_REPLICA_NAME"), 200);
}

/// Each node keeps its own checkpoint file: a node whose file starts at a
/// later checkpoint (the earlier ones were made by another node, and are
/// in the database) verifies, and a checkpoint missing everywhere is found.
#[test]
fn a_node_verifies_checkpoints_other_nodes_made() {
    let Some(admin) = admin_url() else { return };
    let db = TestDb::new(&admin, "audit_two_files");
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (
        dir.path().join("a.checkpoints"),
        dir.path().join("b.checkpoints"),
    );
    let key = Signer::generate_pkcs8().expect("keygen");
    let url = db.url(pg_support::APP);
    replica(&url, &key, &a, "first", 120);
    replica(&url, &key, &b, "second", 120);
    let a_text = std::fs::read_to_string(&a).expect("a's file");
    assert!(!a_text.is_empty() && !std::fs::read_to_string(&b).expect("b's file").is_empty());
    check(&db, &key, &b, 240);
    check(&db, &key, &a, 240);
}
