//! End-to-end tests of the audit trail through the real `airlock` binary:
//! init (twice), verify, tail, export, prove, and an attacker with file
//! access editing or truncating the log.

use airlock_audit::{AuditLog, LogOptions, Signer};
use airlock_store::SqliteStore;
use airlock_types::{Actor, ActorKind, AuditEvent, EventResult, Reason, TenantId};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn airlock(dir: &Path, args: &[&str]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("AIRLOCK_ENV")
        .env_remove("AIRLOCK_CONFIG")
        .output()
        .expect("run airlock");
    let o = Out {
        code: out.status.code().expect("exit code, not a signal"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        !o.stderr.contains("panicked"),
        "airlock panicked: {}",
        o.stderr
    );
    o
}

/// A fresh data dir after `airlock init`.
fn initialized() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let o = airlock(&dir, &["init"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    (tmp, dir)
}

/// Append events the way a running proxy would (through the library), so
/// there are enough records to tamper with.
fn add_events(dir: &Path, n: u64, every: u64) {
    let key =
        airlock_types::Secret::new(std::fs::read(dir.join("keys/audit-signing.key")).expect("key"));
    let signer = Signer::from_pkcs8(&key).expect("key");
    let mut o = LogOptions::new(TenantId::default_tenant(), dir.join("audit.checkpoints"));
    o.checkpoint_every = every;
    let log = AuditLog::open(
        Box::new(SqliteStore::open(&dir.join("airlock.db")).expect("db")),
        signer,
        o,
    )
    .expect("log");
    for i in 0..n {
        let e = AuditEvent::new(
            TenantId::default_tenant(),
            Actor::new(ActorKind::Agent, "run-1"),
            airlock_types::Action::EgressRequest,
            format!("https://example.com/{i}"),
            Reason::RuleAllow,
            EventResult::Success,
        );
        log.append(&e).expect("append");
    }
    log.close().expect("close");
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn one_line(s: &str) -> &str {
    let t = s.trim_end();
    assert_eq!(t.lines().count(), 1, "expected a one-line error, got: {s}");
    t
}

#[test]
fn init_twice_changes_nothing_and_the_log_verifies() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let first = airlock(&dir, &["init"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(
        first.stdout.contains("keys/audit-signing.key"),
        "{}",
        first.stdout
    );
    assert!(
        first
            .stdout
            .contains("recorded audit event cli.init (index 0)"),
        "{}",
        first.stdout
    );
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("keys/audit-signing.key")), 0o600);
    assert_eq!(mode(&dir.join("airlock.db")), 0o600);
    let snapshot = |d: &Path| -> Vec<(String, Vec<u8>)> {
        [
            "airlock.toml",
            "airlock.db",
            "audit.checkpoints",
            "keys/audit-signing.key",
            "keys/audit-signing.pub",
        ]
        .iter()
        .map(|f| ((*f).to_owned(), std::fs::read(d.join(f)).expect(f)))
        .collect()
    };
    let before = snapshot(&dir);

    let second = airlock(&dir, &["init", "--json"]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    let v = json(&second.stdout);
    assert_eq!(v["changed"], false);
    assert_eq!(v["created"], serde_json::json!([]));
    assert_eq!(
        airlock(&dir, &["init"]).stdout.trim_end(),
        format!("{}: already initialized; nothing changed", dir.display())
    );
    assert_eq!(snapshot(&dir), before, "a second init changed files");

    let ok = airlock(&dir, &["audit", "verify", "--json"]);
    assert_eq!(ok.code, 0, "{} {}", ok.stdout, ok.stderr);
    let v = json(&ok.stdout);
    assert_eq!(
        (
            v["ok"].clone(),
            v["records"].clone(),
            v["signed_records"].clone()
        ),
        (true.into(), 1.into(), 1.into())
    );
    // Reading changed nothing either.
    for args in [
        &["audit", "verify"][..],
        &["audit", "tail"],
        &["audit", "export", "--format", "jsonl"],
        &["audit", "prove", "--index", "0"],
    ] {
        assert_eq!(airlock(&dir, args).code, 0, "{args:?}");
    }
    assert_eq!(snapshot(&dir), before, "a read-only command changed files");
}

#[test]
fn tail_and_export_show_the_init_event() {
    let (_tmp, dir) = initialized();
    add_events(&dir, 3, 1000);
    let tail = airlock(&dir, &["audit", "tail", "-n", "2", "--json"]);
    assert_eq!(tail.code, 0, "{}", tail.stderr);
    let lines: Vec<serde_json::Value> = tail.stdout.lines().map(json).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["index"], 3);
    assert_eq!(lines[1]["event"]["resource"], "https://example.com/2");

    let text = airlock(&dir, &["audit", "tail"]);
    assert_eq!(text.stdout.lines().count(), 4);
    assert!(
        text.stdout
            .lines()
            .next()
            .expect("line")
            .contains(" cli.init "),
        "{}",
        text.stdout
    );

    let export = airlock(&dir, &["audit", "export", "--format", "jsonl"]);
    assert_eq!(export.code, 0, "{}", export.stderr);
    let recs: Vec<serde_json::Value> = export.stdout.lines().map(json).collect();
    assert_eq!(recs.len(), 4);
    assert_eq!(recs[0]["class_uid"], 6003);
    assert_eq!(recs[0]["activity_name"], "cli.init");
    assert_eq!(recs[0]["status_code"], "recorded");
    assert_eq!(recs[2]["metadata"]["uid"], "2");
    assert_eq!(recs[2]["disposition"], "Unknown");
    assert_eq!(
        recs[2]["unmapped"]["airlock"]["event"]["actor"]["id"],
        "run-1"
    );
}

#[test]
fn an_edited_row_is_reported_with_its_index() {
    let (_tmp, dir) = initialized();
    add_events(&dir, 20, 8);
    let db = rusqlite::Connection::open(dir.join("airlock.db")).expect("attacker opens the db");
    let refused = db.execute(
        "UPDATE audit_records SET body = body || ' ' WHERE idx = 9",
        [],
    );
    assert!(refused.is_err(), "trigger must refuse the edit");
    db.execute_batch("DROP TRIGGER audit_records_no_update")
        .expect("drop trigger");
    db.execute(
        "UPDATE audit_records SET body = CAST(replace(CAST(body AS TEXT), 'rule_allow', 'rule_deny') AS BLOB) WHERE idx = 9",
        [],
    )
    .expect("edit");
    drop(db);

    let o = airlock(&dir, &["audit", "verify"]);
    assert_eq!(o.code, 1, "{} {}", o.stdout, o.stderr);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines[0], "audit log FAILED verification (9 records read):");
    assert_eq!(
        lines[1],
        "  record 9: hash does not match its contents (the record was altered)"
    );
    let j = json(&airlock(&dir, &["audit", "verify", "--json"]).stdout);
    assert_eq!(
        j["problems"][0],
        serde_json::json!({"kind": "record_hash", "index": 9})
    );
}

#[test]
fn a_deleted_tail_is_detected() {
    let (_tmp, dir) = initialized();
    add_events(&dir, 30, 10);
    let db = rusqlite::Connection::open(dir.join("airlock.db")).expect("attacker opens the db");
    db.execute_batch(
        "DROP TRIGGER audit_records_no_delete; DROP TRIGGER audit_checkpoints_no_delete;
         DELETE FROM audit_records WHERE idx >= 26; DELETE FROM audit_checkpoints WHERE tree_size > 26;",
    )
    .expect("delete the tail");
    drop(db);
    let o = airlock(&dir, &["audit", "verify"]);
    assert_eq!(o.code, 1, "{} {}", o.stdout, o.stderr);
    assert!(
        o.stdout.contains("records from index 26 on were deleted"),
        "{}",
        o.stdout
    );
    // Writers refuse to append on top of the damage: with its config file
    // gone, init has something to record and must open the log.
    std::fs::remove_file(dir.join("airlock.toml")).expect("rm config");
    let again = airlock(&dir, &["init"]);
    assert_eq!(again.code, 2, "{}", again.stdout);
    assert!(
        one_line(&again.stderr).contains("audit log is damaged"),
        "{}",
        again.stderr
    );
    assert_eq!(
        airlock(&dir, &["audit", "verify", "--json"])
            .stdout
            .matches("\"truncated\"")
            .count(),
        1
    );
}

#[test]
fn bad_checkpoint_file_key_or_database_is_a_clear_error() {
    let (_tmp, dir) = initialized();
    let cps = dir.join("audit.checkpoints");
    let good = std::fs::read(&cps).expect("read");

    std::fs::write(&cps, b"this is not a checkpoint\n").expect("garbage");
    let o = airlock(&dir, &["audit", "verify"]);
    assert_eq!(o.code, 2);
    assert!(
        one_line(&o.stderr).contains("audit.checkpoints:1: not a valid checkpoint"),
        "{}",
        o.stderr
    );
    std::fs::write(&cps, &good).expect("restore");

    // Missing public key: usage error. Someone else's key: verification fails.
    let o = airlock(
        &dir,
        &["audit", "verify", "--pubkey", "/nonexistent/key.pub"],
    );
    assert_eq!(o.code, 2);
    assert!(
        one_line(&o.stderr).contains("/nonexistent/key.pub: cannot read audit public key"),
        "{}",
        o.stderr
    );
    let other = dir.join("other.pub");
    let pk = Signer::from_pkcs8(&Signer::generate_pkcs8().expect("gen"))
        .expect("key")
        .public_key();
    std::fs::write(&other, pk.to_text()).expect("write");
    let o = airlock(
        &dir,
        &["audit", "verify", "--pubkey", other.to_str().expect("utf8")],
    );
    assert_eq!(o.code, 1);
    assert!(
        o.stdout
            .contains("signature does not verify with the public key"),
        "{}",
        o.stdout
    );

    // A missing signing key is refused before anything is written.
    std::fs::rename(dir.join("keys/audit-signing.key"), dir.join("keys/moved")).expect("move key");
    let o = airlock(&dir, &["init"]);
    assert_eq!(o.code, 2);
    assert!(
        one_line(&o.stderr).contains("audit signing key is missing"),
        "{}",
        o.stderr
    );
    std::fs::rename(dir.join("keys/moved"), dir.join("keys/audit-signing.key"))
        .expect("restore key");

    // A database that is not one, and a truncated one.
    let db = dir.join("airlock.db");
    let real = std::fs::read(&db).expect("read db");
    std::fs::write(&db, vec![0x5a; 4096]).expect("garbage db");
    let o = airlock(&dir, &["audit", "verify"]);
    assert_eq!(o.code, 2);
    assert!(
        one_line(&o.stderr).contains("not a usable Airlock database"),
        "{}",
        o.stderr
    );
    std::fs::write(&db, &real[..real.len() / 2]).expect("truncated db");
    for args in [
        &["audit", "verify"][..],
        &["audit", "tail"],
        &["audit", "export"],
    ] {
        let o = airlock(&dir, args);
        assert!(
            o.code == 2 || o.code == 1,
            "{args:?}: {} {}",
            o.code,
            o.stderr
        );
        if o.code == 2 {
            one_line(&o.stderr);
        }
    }
}

#[test]
fn proofs_verify_offline_and_forgeries_fail() {
    let (tmp, dir) = initialized();
    add_events(&dir, 12, 5);
    let o = airlock(&dir, &["audit", "prove", "--index", "7"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let proof = tmp.path().join("proof.json");
    std::fs::write(&proof, &o.stdout).expect("write proof");
    // Offline: only the proof and the public key, no data dir.
    let pubkey = tmp.path().join("audit.pub");
    std::fs::copy(dir.join("keys/audit-signing.pub"), &pubkey).expect("copy key");
    let nowhere = tmp.path().join("nowhere");
    let args = [
        "audit",
        "verify",
        "--proof",
        proof.to_str().expect("utf8"),
        "--pubkey",
        pubkey.to_str().expect("utf8"),
    ];
    let ok = airlock(&nowhere, &args);
    assert_eq!(ok.code, 0, "{} {}", ok.stdout, ok.stderr);
    assert!(
        ok.stdout
            .starts_with("proof ok: record 7 is in the signed tree of 13 records"),
        "{}",
        ok.stdout
    );

    let forged = o.stdout.replace("example.com/6", "example.com/X");
    assert_ne!(forged, o.stdout);
    std::fs::write(&proof, forged).expect("write forged");
    let bad = airlock(&nowhere, &args);
    assert_eq!(bad.code, 1, "{}", bad.stdout);
    assert!(
        bad.stdout.contains("record 7 is not included"),
        "{}",
        bad.stdout
    );

    std::fs::write(&proof, "{not json").expect("garbage");
    let o = airlock(&nowhere, &args);
    assert_eq!(o.code, 2);
    assert!(
        one_line(&o.stderr).contains("not an Airlock inclusion proof"),
        "{}",
        o.stderr
    );

    let o = airlock(&dir, &["audit", "prove", "--index", "99"]);
    assert_eq!(o.code, 2);
    assert!(
        one_line(&o.stderr).contains("record 99 does not exist (the log has 13 records)"),
        "{}",
        o.stderr
    );
}
