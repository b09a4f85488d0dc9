//! Unit tests of the vault over a real SQLite store in a temporary directory,
//! and of the broker's caveats. Tampering is done the way an attacker would:
//! by editing the database file with a second connection.

use super::*;
use airlock_broker::{Binding, Broker, Destination, Grant, RunLimits};
use airlock_store::{SecretStore, SqliteStore};
use airlock_types::RunId;
use airlock_types::Secret;
use std::path::{Path, PathBuf};

const VALUE: &str = "ghp_R3alT0kenValue0123456789abcdefXYZ";

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }
    fn db(&self) -> PathBuf {
        self.dir.path().join("airlock.db")
    }
    fn store(&self) -> SqliteStore {
        SqliteStore::open(&self.db()).expect("open store")
    }
    fn key_file(&self) -> KeyFile {
        let kf = KeyFile::new(self.dir.path().join("master.key"));
        kf.create().expect("create key file");
        kf
    }
    fn sql(&self, sql: &str) {
        let c = rusqlite::Connection::open(self.db()).expect("attacker connection");
        let n = c.execute(sql, []).expect("tamper");
        assert!(n >= 1, "{sql} changed nothing");
    }
}

fn tenant() -> TenantId {
    TenantId::default_tenant()
}

fn binding(hosts: &[&str]) -> Binding {
    Binding::new(
        "GITHUB_TOKEN",
        hosts.iter().map(|s| s.to_string()).collect(),
        None,
        None,
        vec![],
        vec![],
        None,
    )
    .expect("binding")
}

fn secret(v: &str) -> Secret<String> {
    Secret::new(v.to_owned())
}

fn cheap_passphrase(p: &str) -> Passphrase {
    Passphrase::new(secret(p), "test")
        .expect("passphrase")
        .with_new_params(KdfParams::generate(8 * 1024, 1, 1).expect("params"))
}

fn file_contains(path: &Path, needle: &[u8]) -> bool {
    std::fs::read(path)
        .map(|b| b.windows(needle.len()).any(|w| w == needle))
        .unwrap_or(false)
}

#[test]
fn round_trip_list_and_remove() {
    let env = Env::new();
    let kf = env.key_file();
    let mut v = Vault::unlock(env.store(), &kf).expect("unlock new vault");
    let b = binding(&["api.github.com"]);
    assert_eq!(
        v.set(&tenant(), "GITHUB_TOKEN", &secret(VALUE), &b)
            .expect("set"),
        SetOutcome {
            version: 1,
            replaced: false
        }
    );
    let (got, got_b) = v.get(&tenant(), "GITHUB_TOKEN").expect("get");
    assert_eq!(got.expose(), VALUE);
    assert_eq!(got_b, b);
    assert_eq!(
        v.set(&tenant(), "GITHUB_TOKEN", &secret("second"), &b)
            .expect("set again"),
        SetOutcome {
            version: 2,
            replaced: true
        }
    );
    assert_eq!(
        v.get(&tenant(), "GITHUB_TOKEN").expect("get").0.expose(),
        "second"
    );

    // Reopening with the same key file reads the same secret.
    drop(v);
    let mut v = Vault::unlock(env.store(), &kf).expect("reopen");
    assert_eq!(
        v.get(&tenant(), "GITHUB_TOKEN").expect("get").0.expose(),
        "second"
    );

    let list = list_secrets(v.store(), &tenant()).expect("list");
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0].name.as_str(), list[0].version, &list[0].binding),
        ("GITHUB_TOKEN", 2, &b)
    );
    // Other tenants see nothing.
    let other = TenantId::new("acme").expect("id");
    assert!(list_secrets(v.store(), &other).expect("list").is_empty());
    assert!(matches!(
        v.get(&other, "GITHUB_TOKEN"),
        Err(VaultError::NotFound { .. })
    ));

    assert!(remove_secret(v.store_mut(), &tenant(), "GITHUB_TOKEN").expect("rm"));
    assert!(!remove_secret(v.store_mut(), &tenant(), "GITHUB_TOKEN").expect("rm again"));
    assert_eq!(
        v.get(&tenant(), "GITHUB_TOKEN")
            .expect_err("must fail")
            .to_string(),
        "no secret named GITHUB_TOKEN in tenant default"
    );
}

#[test]
fn values_never_reach_the_database_file_in_clear() {
    let env = Env::new();
    let mut v = Vault::unlock(env.store(), &env.key_file()).expect("unlock");
    v.set(
        &tenant(),
        "GITHUB_TOKEN",
        &secret(VALUE),
        &binding(&["api.github.com"]),
    )
    .expect("set");
    let mut checked = 0;
    for e in std::fs::read_dir(env.dir.path())
        .expect("readdir")
        .flatten()
    {
        if e.path()
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("airlock.db"))
        {
            checked += 1;
            assert!(
                !file_contains(&e.path(), VALUE.as_bytes()),
                "{} holds the value",
                e.path().display()
            );
            assert!(
                !file_contains(&e.path(), &VALUE.as_bytes()[..12]),
                "{} holds part of the value",
                e.path().display()
            );
        }
    }
    assert!(checked >= 1);
    // The name and binding are in clear, by design.
    let both = ["airlock.db", "airlock.db-wal"]
        .iter()
        .any(|f| file_contains(&env.dir.path().join(f), b"api.github.com"));
    assert!(both, "binding should be stored in clear");
}

#[test]
fn a_flipped_ciphertext_bit_is_a_decryption_error() {
    let env = Env::new();
    let mut v = Vault::unlock(env.store(), &env.key_file()).expect("unlock");
    v.set(
        &tenant(),
        "GITHUB_TOKEN",
        &secret(VALUE),
        &binding(&["api.github.com"]),
    )
    .expect("set");
    // Flip one bit in the middle of the sealed value, as an attacker editing the file would.
    let c = rusqlite::Connection::open(env.db()).expect("attacker connection");
    let mut sealed: Vec<u8> = c
        .query_row(
            "SELECT sealed FROM vault_secrets WHERE name = 'GITHUB_TOKEN'",
            [],
            |r| r.get(0),
        )
        .expect("read");
    sealed[20] ^= 0x04;
    c.execute(
        "UPDATE vault_secrets SET sealed = ?1 WHERE name = 'GITHUB_TOKEN'",
        [&sealed],
    )
    .expect("tamper");
    let err = v.get(&tenant(), "GITHUB_TOKEN").expect_err("must fail");
    assert!(matches!(err, VaultError::Decrypt { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "secret GITHUB_TOKEN of tenant default cannot be decrypted: its ciphertext, binding or version was altered, or the row is corrupt"
    );
}

#[test]
fn ciphertext_moved_to_another_name_or_tenant_or_binding_edited_is_refused() {
    let env = Env::new();
    let mut v = Vault::unlock(env.store(), &env.key_file()).expect("unlock");
    let b = binding(&["api.github.com"]);
    v.set(&tenant(), "A", &secret("value-a"), &b)
        .expect("set a");
    v.set(&tenant(), "B", &secret("value-b"), &b)
        .expect("set b");
    env.sql("UPDATE vault_secrets SET sealed = (SELECT sealed FROM vault_secrets WHERE name = 'A') WHERE name = 'B'");
    assert!(matches!(
        v.get(&tenant(), "B"),
        Err(VaultError::Decrypt { .. })
    ));
    assert_eq!(
        v.get(&tenant(), "A").expect("a still fine").0.expose(),
        "value-a"
    );

    // Redirecting a secret to an attacker's host by editing its clear binding.
    env.sql("UPDATE vault_secrets SET binding = replace(binding, 'api.github.com', 'evil.test') WHERE name = 'A'");
    assert!(matches!(
        v.get(&tenant(), "A"),
        Err(VaultError::Decrypt { .. })
    ));

    // Moving a row to another tenant (which has its own data key).
    let acme = TenantId::new("acme").expect("id");
    v.set(&acme, "Z", &secret("value-z"), &b).expect("set acme");
    v.set(&tenant(), "M", &secret("value-m"), &b)
        .expect("set m");
    env.sql("UPDATE vault_secrets SET tenant = 'acme' WHERE tenant = 'default' AND name = 'M'");
    assert!(matches!(v.get(&acme, "M"), Err(VaultError::Decrypt { .. })));
    assert_eq!(
        v.get(&acme, "Z").expect("z still fine").0.expose(),
        "value-z"
    );

    // Rolling the version number forward.
    let mut v2 = Vault::unlock(env.store(), &env.key_file_existing()).expect("unlock");
    v2.set(&tenant(), "C", &secret("value-c"), &b)
        .expect("set c");
    env.sql("UPDATE vault_secrets SET version = 7 WHERE name = 'C'");
    assert!(matches!(
        v2.get(&tenant(), "C"),
        Err(VaultError::Decrypt { .. })
    ));
}

impl Env {
    fn key_file_existing(&self) -> KeyFile {
        KeyFile::new(self.dir.path().join("master.key"))
    }
}

#[test]
fn wrong_master_key_and_wrong_passphrase_are_clear_errors() {
    let env = Env::new();
    let kf = env.key_file();
    let mut v = Vault::unlock(env.store(), &kf).expect("unlock");
    v.set(&tenant(), "A", &secret("value-a"), &binding(&["h.test"]))
        .expect("set");
    drop(v);

    let other = RawKey::generate("AIRLOCK_MASTER_KEY").expect("key");
    let err = Vault::unlock(env.store(), &other).expect_err("must fail");
    assert_eq!(
        err.to_string(),
        "master key does not match this vault (AIRLOCK_MASTER_KEY): wrong key or passphrase, or a vault created with another master key"
    );
    let err = Vault::unlock(env.store(), &cheap_passphrase("pw")).expect_err("must fail");
    assert!(matches!(err, VaultError::WrongKeyKind { .. }), "{err}");

    // A passphrase vault.
    let env2 = Env::new();
    let mut v = Vault::unlock(
        env2.store(),
        &cheap_passphrase("correct horse battery staple"),
    )
    .expect("create");
    v.set(&tenant(), "A", &secret("value-a"), &binding(&["h.test"]))
        .expect("set");
    drop(v);
    assert!(matches!(
        lock_state(&env2.store()).expect("lock"),
        Lock::Passphrase(_)
    ));
    let err = Vault::unlock(
        env2.store(),
        &cheap_passphrase("correct horse battery stapler"),
    )
    .expect_err("must fail");
    assert!(matches!(err, VaultError::WrongMasterKey { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("master key does not match this vault (passphrase from test)"),
        "{err}"
    );
    let err = Vault::unlock(env2.store(), &kf).expect_err("must fail");
    assert_eq!(
        err.to_string(),
        format!(
            "key file {} cannot unlock this vault: it is locked with a passphrase",
            kf.path().display()
        )
    );
    let mut v = Vault::unlock(
        env2.store(),
        &cheap_passphrase("correct horse battery staple"),
    )
    .expect("right passphrase");
    assert_eq!(v.get(&tenant(), "A").expect("get").0.expose(), "value-a");
}

#[test]
fn corrupt_data_key_row_is_an_error_and_leaves_the_vault_untouched() {
    let env = Env::new();
    let mut v = Vault::unlock(env.store(), &env.key_file()).expect("unlock");
    v.set(&tenant(), "A", &secret("value-a"), &binding(&["h.test"]))
        .expect("set");
    env.sql("UPDATE vault_data_keys SET wrapped = zeroblob(60)");
    let err = v.get(&tenant(), "A").expect_err("must fail");
    assert_eq!(
        err.to_string(),
        "data key of tenant default cannot be unwrapped: the vault row was altered or is corrupt"
    );
    assert!(
        v.set(&tenant(), "B", &secret("value-b"), &binding(&["h.test"]))
            .is_err()
    );
    assert_eq!(list_secrets(v.store(), &tenant()).expect("list").len(), 1);
}

#[test]
fn master_rotation_rewraps_without_reencrypting_and_keeps_secrets_readable() {
    let env = Env::new();
    let kf = env.key_file();
    let mut v = Vault::unlock(env.store(), &kf).expect("unlock");
    let acme = TenantId::new("acme").expect("id");
    v.set(&tenant(), "A", &secret("value-a"), &binding(&["h.test"]))
        .expect("set");
    v.set(&acme, "B", &secret("value-b"), &binding(&["h.test"]))
        .expect("set");
    let sealed_before = v
        .store()
        .secret(&tenant(), "A")
        .expect("row")
        .expect("row")
        .sealed;

    let new = RawKey::generate("new key").expect("key");
    assert_eq!(v.rotate_master(&new).expect("rotate"), 2);
    assert_eq!(v.get(&acme, "B").expect("get").0.expose(), "value-b");
    drop(v);
    // The old key no longer opens the vault; the new one does, and the
    // secrets themselves were not re-encrypted.
    assert!(matches!(
        Vault::unlock(env.store(), &kf),
        Err(VaultError::WrongMasterKey { .. })
    ));
    let mut v = Vault::unlock(env.store(), &new).expect("new key unlocks");
    assert_eq!(v.get(&tenant(), "A").expect("get").0.expose(), "value-a");
    assert_eq!(
        v.store()
            .secret(&tenant(), "A")
            .expect("row")
            .expect("row")
            .sealed,
        sealed_before
    );

    // Rotating to a passphrase.
    v.rotate_master(&cheap_passphrase("a long enough passphrase"))
        .expect("to passphrase");
    drop(v);
    let mut v = Vault::unlock(env.store(), &cheap_passphrase("a long enough passphrase"))
        .expect("passphrase unlocks");
    assert_eq!(v.get(&acme, "B").expect("get").0.expose(), "value-b");
}

#[test]
fn reencrypt_rotates_the_data_key_and_keeps_secrets_readable() {
    let env = Env::new();
    let mut v = Vault::unlock(env.store(), &env.key_file()).expect("unlock");
    v.set(&tenant(), "A", &secret("value-a"), &binding(&["h.test"]))
        .expect("set");
    v.set(&tenant(), "B", &secret("value-b"), &binding(&["h.test"]))
        .expect("set");
    let before = v.store().secret(&tenant(), "A").expect("row").expect("row");
    let dk_before = v.store().data_key(&tenant()).expect("dk").expect("dk");
    assert_eq!(v.reencrypt(&tenant()).expect("reencrypt"), 2);
    let after = v.store().secret(&tenant(), "A").expect("row").expect("row");
    let dk_after = v.store().data_key(&tenant()).expect("dk").expect("dk");
    assert_eq!((dk_before.version, dk_after.version), (1, 2));
    assert_ne!(dk_before.wrapped, dk_after.wrapped);
    assert_eq!((after.version, after.key_version), (before.version, 2));
    assert_ne!(after.sealed, before.sealed);
    assert_eq!(v.get(&tenant(), "A").expect("get").0.expose(), "value-a");
    assert_eq!(v.get(&tenant(), "B").expect("get").0.expose(), "value-b");
    assert_eq!(
        v.reencrypt(&TenantId::new("empty").expect("id"))
            .expect("nothing"),
        0
    );
}

#[test]
fn bad_names_values_and_bindings_are_refused_before_storing() {
    let env = Env::new();
    let mut v = Vault::unlock(env.store(), &env.key_file()).expect("unlock");
    let b = binding(&["h.test"]);
    assert!(matches!(
        v.set(&tenant(), "../x", &secret("v"), &b),
        Err(VaultError::InvalidName { .. })
    ));
    let err = v
        .set(&tenant(), "A", &secret("line1\nline2"), &b)
        .expect_err("must fail")
        .to_string();
    assert!(!err.contains("line1"), "{err}");
    let mut bad = b.clone();
    bad.hosts.clear();
    assert!(matches!(
        v.set(&tenant(), "A", &secret("v"), &bad),
        Err(VaultError::InvalidBinding { .. })
    ));
    assert!(list_secrets(v.store(), &tenant()).expect("list").is_empty());
}

fn dest<'a>(host: &'a str, method: &'a str, path: &'a str) -> Destination<'a> {
    Destination {
        scheme: "https",
        host,
        port: 443,
        method,
        path,
    }
}

#[test]
fn vault_grant_feeds_the_broker() {
    let env = Env::new();
    let mut v = Vault::unlock(env.store(), &env.key_file()).expect("unlock");
    v.set(
        &tenant(),
        "GITHUB_TOKEN",
        &secret(VALUE),
        &binding(&["api.github.com"]),
    )
    .expect("set");
    let grant = v.grant(&tenant(), "GITHUB_TOKEN").expect("grant");
    assert!(!format!("{grant:?}").contains(VALUE));
    let broker = Broker::new();
    let minted = broker
        .start_run(
            &RunId::new("r").expect("id"),
            vec![grant],
            RunLimits::default(),
        )
        .expect("start");
    let got = broker
        .redeem(
            minted[0].handle.expose(),
            &dest("api.github.com", "GET", "/"),
        )
        .expect("redeem");
    assert_eq!(got.expose(), &format!("Bearer {VALUE}"));
}

#[test]
fn grants_for_a_run_fail_on_the_first_missing_name() {
    let env = Env::new();
    let mut v = Vault::unlock(env.store(), &env.key_file()).expect("unlock");
    v.set(&tenant(), "A", &secret("value-a"), &binding(&["h.test"]))
        .expect("set");
    v.set(&tenant(), "B", &secret("value-b"), &binding(&["h.test"]))
        .expect("set");
    let g = v.grants(&tenant(), &["B", "A"]).expect("grants");
    assert_eq!(
        g.iter().map(Grant::name).collect::<Vec<_>>(),
        vec!["B", "A"]
    );
    let err = v.grants(&tenant(), &["A", "NOPE"]).expect_err("must fail");
    assert_eq!(err.to_string(), "no secret named NOPE in tenant default");
}
