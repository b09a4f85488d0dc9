//! Audit log benchmark, side by side on the same disk in the same run:
//!
//! * `fdatasync`: append 256 bytes to a file and `fdatasync`, in a loop (the floor);
//! * `sqlite`:    one 256-byte row per transaction, WAL + `synchronous=FULL`;
//! * `audit-1`:   `AuditLog::append` from 1 producer (durable before it returns);
//! * `audit-32`:  the same from 32 concurrent producers (group commit);
//! * `audit-32p`: 32 producers that pipeline: `submit`, keeping up to 256
//!   events each in flight, and `wait_durable` on the oldest (ack latency is
//!   submit → seen durable);
//! * `verify`:    `airlock_audit::verify` over everything written.
//!
//! Opt-in CPU cases (`--cases encode`): `encode` is `canonical::encode` of a
//! proxy-like `egress.request` event in a loop (one thread, no I/O; reported
//! also as ns per event).
//!
//! Usage: cargo bench -p airlock-audit --bench audit -- [--dir DIR] [--secs N] [--runs N]
//! Prints one line per run and a median summary; `bench/audit.sh` wraps it.

use airlock_audit::{AuditLog, LogOptions, Signer, read_checkpoint_file, verify};
use airlock_store::SqliteStore;
use airlock_types::{Actor, ActorKind, AuditEvent, EventResult, Reason, RunId, TenantId};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

struct Args {
    dir: PathBuf,
    secs: f64,
    runs: usize,
    window: usize,
    cases: Vec<String>,
}

fn args() -> Args {
    let mut a = Args {
        // The workspace's target dir, whatever directory cargo runs us from.
        dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-audit"),
        secs: 10.0,
        runs: 3,
        window: 16,
        cases: [
            "fdatasync",
            "sqlite",
            "audit-1",
            "audit-32",
            "audit-32p",
            "verify",
        ]
        .map(String::from)
        .to_vec(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        match k.as_str() {
            "--dir" => a.dir = it.next().map(PathBuf::from).unwrap_or(a.dir),
            "--secs" => a.secs = it.next().and_then(|v| v.parse().ok()).unwrap_or(a.secs),
            "--runs" => a.runs = it.next().and_then(|v| v.parse().ok()).unwrap_or(a.runs),
            "--window" => a.window = it.next().and_then(|v| v.parse().ok()).unwrap_or(a.window),
            "--cases" => {
                a.cases = it
                    .next()
                    .map(|v| v.split(',').map(String::from).collect())
                    .unwrap_or(a.cases)
            }
            "--bench" => {}
            other => eprintln!("ignoring argument {other}"),
        }
    }
    a
}

#[derive(Clone, Copy)]
struct Run {
    ops: u64,
    secs: f64,
    p50_us: f64,
    p99_us: f64,
}

impl Run {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.secs
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i])
}

fn finish(ops: u64, secs: f64, mut lat: Vec<u32>) -> Run {
    lat.sort_unstable();
    Run {
        ops,
        secs,
        p50_us: percentile(&lat, 0.50),
        p99_us: percentile(&lat, 0.99),
    }
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

fn fresh(dir: &Path, name: &str) -> PathBuf {
    let d = dir.join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("bench dir");
    d
}

/// 256-byte records written in place into a preallocated 64 MiB file, each
/// followed by `fdatasync` — the steady state of a write-ahead log, whose
/// file is reused after each checkpoint (no size change, no metadata commit).
fn raw_fdatasync(dir: &Path, secs: f64) -> Run {
    use std::os::unix::fs::FileExt as _;
    let d = fresh(dir, "fdatasync");
    let f = std::fs::File::create(d.join("log")).expect("create");
    const SIZE: u64 = 64 << 20;
    let zeros = vec![0u8; 1 << 20];
    for i in 0..(SIZE >> 20) {
        f.write_all_at(&zeros, i << 20).expect("prealloc");
    }
    f.sync_all().expect("sync");
    let rec = [0x5au8; 256];
    let mut lat = Vec::new();
    let start = Instant::now();
    let mut ops: u64 = 0;
    while start.elapsed().as_secs_f64() < secs {
        let t = Instant::now();
        f.write_all_at(&rec, (ops * 256) % SIZE).expect("write");
        f.sync_data().expect("fdatasync");
        lat.push(micros(t.elapsed()));
        ops += 1;
    }
    finish(ops, start.elapsed().as_secs_f64(), lat)
}

/// 256-byte records appended to a growing file, each followed by `fdatasync`
/// (every sync also commits the file-size change to the filesystem journal).
fn raw_fdatasync_append(dir: &Path, secs: f64) -> Run {
    let d = fresh(dir, "fdatasync-append");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(d.join("log"))
        .expect("open");
    let rec = [0x5au8; 256];
    let mut lat = Vec::new();
    let start = Instant::now();
    let mut ops = 0;
    while start.elapsed().as_secs_f64() < secs {
        let t = Instant::now();
        f.write_all(&rec).expect("write");
        f.sync_data().expect("fdatasync");
        lat.push(micros(t.elapsed()));
        ops += 1;
    }
    finish(ops, start.elapsed().as_secs_f64(), lat)
}

fn sqlite_per_txn(dir: &Path, secs: f64) -> Run {
    let d = fresh(dir, "sqlite");
    let db = rusqlite::Connection::open(d.join("plain.db")).expect("open");
    let mode: String = db
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .expect("wal");
    assert_eq!(mode, "wal");
    db.pragma_update(None, "synchronous", "FULL").expect("sync");
    db.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
        .expect("create");
    let rec = vec![0x5au8; 256];
    let mut stmt = db
        .prepare("INSERT INTO t (body) VALUES (?1)")
        .expect("prepare");
    let mut lat = Vec::new();
    let start = Instant::now();
    let mut ops = 0;
    while start.elapsed().as_secs_f64() < secs {
        let t = Instant::now();
        // Autocommit: each INSERT is its own transaction.
        stmt.execute([&rec]).expect("insert");
        lat.push(micros(t.elapsed()));
        ops += 1;
    }
    finish(ops, start.elapsed().as_secs_f64(), lat)
}

fn event(i: u64) -> AuditEvent {
    // A realistic egress record: ~300 bytes canonical.
    AuditEvent::new(
        TenantId::default_tenant(),
        Actor::new(ActorKind::Agent, "run-4f2a9c"),
        airlock_types::Action::EgressRequest,
        format!("https://api.github.com/repos/acme/widgets/issues/{i}"),
        Reason::RuleAllow,
        EventResult::Success,
    )
    .with_run(RunId::new("run-4f2a9c").expect("id"))
    .with_detail("method", "GET")
    .with_detail("status", 200)
}

/// What the proxy records for a decided request: actor, run and request
/// ids, the URL, the decision and a details map.
fn egress_event() -> AuditEvent {
    let mut e = AuditEvent::new(
        TenantId::default_tenant(),
        Actor::new(ActorKind::Agent, "run-4f2a9c"),
        airlock_types::Action::EgressRequest,
        "https://api.github.com/repos/acme/widgets/issues/1234?state=open",
        Reason::RuleAllow,
        EventResult::Success,
    )
    .with_decision(airlock_types::Decision::allow(Reason::RuleAllow))
    .with_run(RunId::new("run-4f2a9c").expect("id"))
    .with_request(airlock_types::RequestId::new("req-000000000001a2b3").expect("id"))
    .with_detail("method", "GET")
    .with_detail("host", "api.github.com")
    .with_detail(
        "addresses",
        serde_json::json!(["140.82.121.6", "2606:50c0:8000::154"]),
    )
    .with_detail("port", 443)
    .with_detail("bytes_up", 512)
    .with_detail("bytes_down", 18_734)
    .with_detail("status", 200);
    e.time = airlock_types::Timestamp(1_795_000_000_123_456);
    e
}

/// `canonical::encode` alone, `secs` worth of it, one thread.
fn encode_rate(secs: f64) -> Run {
    let e = egress_event();
    let batch = 10_000u64;
    let start = Instant::now();
    let mut ops = 0u64;
    let mut bytes = 0usize;
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..batch {
            let body = airlock_audit::canonical::encode(std::hint::black_box(&e)).expect("encode");
            bytes += body.len();
        }
        ops += batch;
    }
    std::hint::black_box(bytes);
    Run {
        ops,
        secs: start.elapsed().as_secs_f64(),
        p50_us: 0.0,
        p99_us: 0.0,
    }
}

fn open_log(d: &Path, key: &airlock_types::Secret<Vec<u8>>) -> AuditLog {
    let store = SqliteStore::open(&d.join("airlock.db")).expect("store");
    let opts = LogOptions::new(TenantId::default_tenant(), d.join("audit.checkpoints"));
    AuditLog::open(Box::new(store), Signer::from_pkcs8(key).expect("key"), opts).expect("open log")
}

fn audit(
    dir: &Path,
    name: &str,
    key: &airlock_types::Secret<Vec<u8>>,
    producers: usize,
    secs: f64,
) -> Run {
    let d = fresh(dir, name);
    let log = Arc::new(open_log(&d, key));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let threads: Vec<_> = (0..producers)
        .map(|p| {
            let (log, stop) = (log.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut i = p as u64 * 1_000_000_000;
                while !stop.load(Ordering::Relaxed) {
                    let e = event(i);
                    let t = Instant::now();
                    log.append(&e).expect("append");
                    lat.push(micros(t.elapsed()));
                    i += 1;
                }
                lat
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let lat: Vec<u32> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("producer"))
        .collect();
    let elapsed = start.elapsed().as_secs_f64();
    let ops = lat.len() as u64;
    Arc::into_inner(log)
        .expect("sole owner")
        .close()
        .expect("close");
    finish(ops, elapsed, lat)
}

/// 32 producers that keep up to `window` events in flight each (submit, then
/// wait for the oldest to be durable), as a proxy emitting on its hot path
/// does. Ack latency is submit → the producer sees it durable.
fn audit_pipelined(
    dir: &Path,
    name: &str,
    key: &airlock_types::Secret<Vec<u8>>,
    producers: usize,
    window: usize,
    secs: f64,
) -> Run {
    let d = fresh(dir, name);
    let log = Arc::new(open_log(&d, key));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let threads: Vec<_> = (0..producers)
        .map(|p| {
            let (log, stop) = (log.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut inflight: std::collections::VecDeque<(airlock_audit::Ticket, Instant)> =
                    std::collections::VecDeque::new();
                let mut i = p as u64 * 1_000_000_000;
                while !stop.load(Ordering::Relaxed) {
                    let e = event(i);
                    let t = Instant::now();
                    match log.submit(&e) {
                        Ok(idx) => {
                            inflight.push_back((idx, t));
                            i += 1;
                        }
                        Err(airlock_audit::AuditError::Overloaded) => {}
                        Err(e) => panic!("submit: {e}"),
                    }
                    if inflight.len() >= window {
                        let (idx, t0) = inflight.pop_front().expect("non-empty");
                        log.wait_durable(idx).expect("durable");
                        lat.push(micros(t0.elapsed()));
                    }
                }
                for (idx, t0) in inflight {
                    log.wait_durable(idx).expect("durable");
                    lat.push(micros(t0.elapsed()));
                }
                lat
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let lat: Vec<u32> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("producer"))
        .collect();
    let elapsed = start.elapsed().as_secs_f64();
    let ops = lat.len() as u64;
    Arc::into_inner(log)
        .expect("sole owner")
        .close()
        .expect("close");
    finish(ops, elapsed, lat)
}

/// Leaf (350-byte record) + chain + one node hash per record: the hashing share of verify.
fn hash_rate() -> Run {
    use airlock_audit::merkle::{chain_hash, leaf_hash, node_hash};
    let body = vec![0x41u8; 350];
    let n = 1_000_000u64;
    let t = Instant::now();
    let mut acc = [0u8; 32];
    for _ in 0..n {
        let l = leaf_hash(&body);
        acc = chain_hash(&acc, &l);
        acc = node_hash(&acc, &l);
    }
    std::hint::black_box(acc);
    Run {
        ops: n,
        secs: t.elapsed().as_secs_f64(),
        p50_us: 0.0,
        p99_us: 0.0,
    }
}

/// Reading the records without hashing: the SQLite share of verify.
fn scan_rate(d: &Path) -> Run {
    use airlock_store::AuditStore as _;
    let store = SqliteStore::open_read_only(&d.join("airlock.db")).expect("ro");
    let t = Instant::now();
    let mut n = 0u64;
    let mut bytes = 0usize;
    store
        .for_each_record(&TenantId::default_tenant(), 0, &mut |r| {
            n += 1;
            bytes += r.body.len();
            std::ops::ControlFlow::Continue(())
        })
        .expect("scan");
    std::hint::black_box(bytes);
    Run {
        ops: n,
        secs: t.elapsed().as_secs_f64(),
        p50_us: 0.0,
        p99_us: 0.0,
    }
}

fn verify_rate(d: &Path, key: &airlock_types::Secret<Vec<u8>>) -> Run {
    let pk = Signer::from_pkcs8(key).expect("key").public_key();
    let store = SqliteStore::open_read_only(&d.join("airlock.db")).expect("ro");
    let t = Instant::now();
    let file = read_checkpoint_file(&d.join("audit.checkpoints")).expect("file");
    let r = verify(&store, &TenantId::default_tenant(), &pk, &file).expect("verify");
    let secs = t.elapsed().as_secs_f64();
    assert!(r.ok(), "{:?}", r.problems);
    Run {
        ops: r.records,
        secs,
        p50_us: 0.0,
        p99_us: 0.0,
    }
}

fn median(runs: &[Run], f: impl Fn(&Run) -> f64) -> (f64, f64, f64) {
    let mut v: Vec<f64> = runs.iter().map(f).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn main() {
    let a = args();
    std::fs::create_dir_all(&a.dir).expect("bench dir");
    // Kept beside the logs so a later `--cases verify` can check their signatures.
    let key_path = a.dir.join("bench-signing.key");
    let key = match std::fs::read(&key_path) {
        Ok(k) => airlock_types::Secret::new(k),
        Err(_) => {
            let k = Signer::generate_pkcs8().expect("key");
            std::fs::write(&key_path, k.expose()).expect("write key");
            k
        }
    };
    println!(
        "# audit bench: dir={} secs={} runs={}",
        a.dir.display(),
        a.secs,
        a.runs
    );
    if a.cases.iter().any(|c| c == "verify" || c == "scan")
        && !a.cases.iter().any(|c| c == "audit-32p")
    {
        assert!(
            a.dir.join("audit-32p/airlock.db").exists(),
            "verify reads the log audit-32p wrote; run that case first"
        );
    }
    // Round-robin: run i of every case before run i+1 of any, so a shared
    // disk's good and bad minutes fall on all cases alike.
    let mut all: Vec<(&str, Vec<Run>)> = a.cases.iter().map(|c| (c.as_str(), Vec::new())).collect();
    for i in 0..a.runs {
        for (name, runs) in all.iter_mut() {
            let name: &str = name;
            let r = match name {
                "fdatasync" => raw_fdatasync(&a.dir, a.secs),
                "sqlite" => sqlite_per_txn(&a.dir, a.secs),
                "audit-1" => audit(&a.dir, "audit-1", &key, 1, a.secs),
                "audit-32" => audit(&a.dir, "audit-32", &key, 32, a.secs),
                "audit-32p" => audit_pipelined(&a.dir, "audit-32p", &key, 32, a.window, a.secs),
                "fdatasync-append" => raw_fdatasync_append(&a.dir, a.secs),
                "scan" => scan_rate(&a.dir.join("audit-32p")),
                "hash" => hash_rate(),
                "encode" => encode_rate(a.secs),
                "verify" => verify_rate(&a.dir.join("audit-32p"), &key),
                other => {
                    eprintln!("unknown case {other}");
                    continue;
                }
            };
            println!(
                "{name:<16} run {i}: {:>9} ops in {:>6.2} s = {:>10.0}/s  p50 {:>7.0} us  p99 {:>7.0} us",
                r.ops,
                r.secs,
                r.rate(),
                r.p50_us,
                r.p99_us
            );
            if name == "encode" {
                println!("{name:<16} run {i}: {:.1} ns/event", 1e9 / r.rate());
            }
            runs.push(r);
        }
    }
    all.retain(|(_, runs)| !runs.is_empty());
    println!("\n| case | median rate (/s) | min–max | p50 ack (µs) | p99 ack (µs) |");
    println!("|---|---:|---:|---:|---:|");
    for (name, runs) in &all {
        let (m, lo, hi) = median(runs, Run::rate);
        let (p50, _, _) = median(runs, |r| r.p50_us);
        let (p99, _, _) = median(runs, |r| r.p99_us);
        println!("| {name} | {m:.0} | {lo:.0}–{hi:.0} | {p50:.0} | {p99:.0} |");
    }
    let rate = |n: &str| {
        all.iter()
            .find(|(k, _)| *k == n)
            .map(|(_, r)| median(r, Run::rate).0)
            .unwrap_or(0.0)
    };
    println!(
        "\nratios: audit-1 / fdatasync = {:.2} (target >= 0.8); audit-1 / sqlite = {:.2}; audit-32 = {:.0}/s, audit-32p = {:.0}/s (target >= 100000); verify = {:.0} records/s (target >= 1000000)",
        rate("audit-1") / rate("fdatasync"),
        rate("audit-1") / rate("sqlite"),
        rate("audit-32"),
        rate("audit-32p"),
        rate("verify")
    );
}
