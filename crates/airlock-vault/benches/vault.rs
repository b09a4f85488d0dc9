//! Vault and broker timings (no criterion: a plain timing loop).
//!
//! `cargo bench -p airlock-vault --bench vault` (pin with `taskset -c 1`).
//! Prints: Argon2id unlock time at the default cost; key-file unlock time;
//! per-request cost of handle lookup + injection on a header carrying a
//! handle, against the same call on a header without one (what every
//! request without credentials pays).

use airlock_broker::{Binding, Broker, Destination, Grant, RunLimits};
use airlock_store::SqliteStore;
use airlock_types::{RunId, Secret, TenantId};
use airlock_vault::{KdfParams, KeyFile, Passphrase, Vault};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn per_op(iters: u32, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed() / iters
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");

    // --- unlock -----------------------------------------------------------
    let p = KdfParams::generate_default().expect("params");
    println!(
        "argon2id params: m={} KiB, t={}, p={}, salt 16 bytes, output 32 bytes",
        p.m_kib, p.t, p.p
    );
    let db = dir.path().join("pass.db");
    let pass = || {
        Passphrase::new(
            Secret::new("correct horse battery staple".to_owned()),
            "bench",
        )
        .expect("pass")
    };
    drop(Vault::unlock(SqliteStore::open(&db).expect("open"), &pass()).expect("create"));
    let unlock_pass: Vec<Duration> = (0..5)
        .map(|_| {
            let t = Instant::now();
            black_box(
                Vault::unlock(SqliteStore::open(&db).expect("open"), &pass()).expect("unlock"),
            );
            t.elapsed()
        })
        .collect();
    println!(
        "unlock with passphrase (argon2id default, incl. SQLite open): median {:?} of 5",
        median(unlock_pass)
    );

    let kdb = dir.path().join("key.db");
    let kf = KeyFile::new(dir.path().join("master.key"));
    kf.create().expect("key file");
    drop(Vault::unlock(SqliteStore::open(&kdb).expect("open"), &kf).expect("create"));
    let unlock_key: Vec<Duration> = (0..20)
        .map(|_| {
            let t = Instant::now();
            black_box(Vault::unlock(SqliteStore::open(&kdb).expect("open"), &kf).expect("unlock"));
            t.elapsed()
        })
        .collect();
    println!(
        "unlock with key file (incl. SQLite open): median {:?} of 20",
        median(unlock_key)
    );

    let mut v = Vault::unlock(SqliteStore::open(&kdb).expect("open"), &kf).expect("unlock");
    let tenant = TenantId::default_tenant();
    let b = Binding::new(
        "T",
        vec!["api.github.com".into()],
        None,
        None,
        vec![],
        vec!["/repos/*".into()],
        None,
    )
    .expect("binding");
    v.set(
        &tenant,
        "T",
        &Secret::new("ghp_0123456789abcdefghijklmnopqrstuvwxyz".into()),
        &b,
    )
    .expect("set");
    let get = median(
        (0..5)
            .map(|_| per_op(2000, || drop(black_box(v.get(&tenant, "T").expect("get")))))
            .collect(),
    );
    println!("vault get (SQLite read + unwrap data key + open secret): {get:?}/op");

    // --- broker -----------------------------------------------------------
    let broker = Broker::new();
    // 1000 other live handles, so the lookup is not into a tiny map.
    for i in 0..100 {
        let grants = (0..10)
            .map(|j| {
                Grant::new(
                    &format!("S{j}"),
                    b.clone(),
                    Secret::new(format!("value-{i}-{j}")),
                )
            })
            .collect();
        broker
            .start_run(
                &RunId::new(format!("other-{i}")).expect("id"),
                grants,
                RunLimits::default(),
            )
            .expect("start");
    }
    let grant = Grant::new(
        "T",
        b.clone(),
        Secret::new("ghp_0123456789abcdefghijklmnopqrstuvwxyz".into()),
    );
    let minted = broker
        .start_run(
            &RunId::new("run").expect("id"),
            vec![grant],
            RunLimits::default(),
        )
        .expect("start");
    let handle = minted[0].handle.expose().clone();
    let d = Destination {
        scheme: "https",
        host: "api.github.com",
        port: 443,
        method: "GET",
        path: "/repos/a/b",
    };
    let with = format!("Bearer {handle}");
    let without = "Bearer ghp_notahandle0123456789abcdefghijklmn".to_owned();
    let iters = 200_000;
    let mut rows = Vec::new();
    for (label, value) in [("with handle", &with), ("without handle", &without)] {
        let t = median(
            (0..5)
                .map(|_| {
                    per_op(iters, || {
                        drop(black_box(broker.inject_header(
                            "Authorization",
                            black_box(value),
                            &d,
                        )))
                    })
                })
                .collect(),
        );
        rows.push((label, t));
    }
    let redeem = median(
        (0..5)
            .map(|_| {
                per_op(iters, || {
                    drop(black_box(broker.redeem(black_box(&handle), &d)))
                })
            })
            .collect(),
    );
    for (label, t) in &rows {
        println!("inject_header, Authorization {label}: {t:?}/request (median of 5 x {iters})");
    }
    println!("redeem (lookup + caveats, 1001 live handles): {redeem:?}/op");
}
