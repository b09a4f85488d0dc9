//! Several `airlock` processes on one data directory (review finding 7), and
//! files named by configuration or flags that must be read bounded (finding
//! 8, part): the real binary, a real proxy with a local upstream speaking
//! HTTP/1.1, real sandboxed runs.

use airlock_testkit::{DnsAnswer, DnsResponder, ProcessGuard, Upstream, spawn_and_read_line};
use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn airlock(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_airlock"));
    c.arg("--data-dir")
        .arg(dir)
        .env_remove("AIRLOCK_ENV")
        .env_remove("AIRLOCK_CONFIG");
    c
}

/// Run to completion, killing the process if it takes longer than `limit`
/// (a read that blocks on a FIFO or never ends on `/dev/zero` would).
fn bounded(mut cmd: Command, stdin: &[u8], limit: Duration) -> (Output, Duration) {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn airlock");
    if let Some(mut i) = child.stdin.take() {
        i.write_all(stdin).expect("stdin");
    }
    loop {
        if child.try_wait().expect("wait").is_some() {
            let out = child.wait_with_output().expect("output");
            return (out, start.elapsed());
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "airlock did not finish within {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn lo(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// One absolute-form HTTP/1.1 request through the proxy; returns the status.
fn get_through(proxy: &str, url: &str, host: &str) -> u16 {
    let mut s = TcpStream::connect(proxy).expect("connect to the proxy");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    write!(
        s,
        "GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let head = text(&resp);
    head.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head:?}"))
}

fn events(dir: &Path) -> Vec<serde_json::Value> {
    let out = airlock(dir)
        .args(["audit", "tail", "-n", "100000", "--json"])
        .output()
        .expect("tail");
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"))
        })
        .collect()
}

fn verify(dir: &Path) -> Output {
    airlock(dir)
        .args(["audit", "verify", "--json"])
        .output()
        .expect("verify")
}

/// Review finding 7: with `airlock proxy` serving requests, several `airlock
/// run`s, `airlock secret set`s and `airlock audit verify`s run at once on
/// the same data directory. Before, the proxy's audit writer died on a
/// UNIQUE constraint (every later request was refused), all but one run
/// refused to start, and verify failed for good ("checkpoint appears
/// twice"). Now every process appends, every request is served and
/// audited, every verification passes — during and after — and the log
/// holds exactly the events of every process, each once.
#[test]
fn proxy_runs_and_cli_commands_append_to_one_log_at_once() {
    let dns = DnsResponder::start();
    let upstream = Upstream::http(lo(41));
    dns.set("plain.test", DnsAnswer::Fixed(vec![lo(41)]));
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let init = airlock(&data).arg("init").output().expect("init");
    assert!(init.status.success(), "{}", text(&init.stderr));
    let cfg = tmp.path().join("proxy.toml");
    std::fs::write(
        &cfg,
        format!(
            "[proxy]\nnameservers = [\"{}\"]\n\n[audit]\ncheckpoint_every = 7\n",
            dns.addr()
        ),
    )
    .expect("config");
    let pol = tmp.path().join("policy.toml");
    std::fs::write(
        &pol,
        format!(
            "mode = \"read_public\"\nallow_private = [\"127.0.0.0/8\"]\n\n\
             [[rules]]\nhosts = [\"plain.test\"]\nmethods = [\"GET\"]\nports = [{}]\naction = \"allow\"\n",
            upstream.port()
        ),
    )
    .expect("policy");
    let mut cmd = airlock(&data);
    cmd.arg("--config")
        .arg(&cfg)
        .args(["proxy", "--listen", "127.0.0.1:0", "--policy"])
        .arg(&pol);
    let (mut proxy, line): (ProcessGuard, String) =
        spawn_and_read_line(cmd, "listening on", Duration::from_secs(30));
    let addr = line.rsplit(' ').next().expect("address").to_owned();
    let host = format!("plain.test:{}", upstream.port());

    let requests = 60;
    let hammer = {
        let (addr, host) = (addr.clone(), host.clone());
        std::thread::spawn(move || {
            (0..requests)
                .map(|i| get_through(&addr, &format!("http://{host}/r{i}"), &host))
                .collect::<Vec<u16>>()
        })
    };
    let runs: Vec<_> = (0..3)
        .map(|_| {
            let mut c = airlock(&data);
            c.args(["run", "--", "true"]);
            std::thread::spawn(move || bounded(c, b"", Duration::from_secs(120)).0)
        })
        .collect();
    let secrets: Vec<_> = (0..3)
        .map(|i| {
            let mut c = airlock(&data);
            c.args([
                "secret",
                "set",
                &format!("TOKEN_{i}"),
                "--host",
                "api.example.com",
            ]);
            std::thread::spawn(move || bounded(c, b"value\n", Duration::from_secs(120)).0)
        })
        .collect();
    let verifies: Vec<_> = (0..3)
        .map(|_| {
            let data = data.clone();
            std::thread::spawn(move || verify(&data))
        })
        .collect();
    for (what, handles) in [("run", runs), ("secret set", secrets), ("verify", verifies)] {
        for h in handles {
            let out = h.join().expect("thread");
            assert!(
                out.status.success(),
                "{what}: {}{}",
                text(&out.stdout),
                text(&out.stderr)
            );
        }
    }
    let codes = hammer.join().expect("hammer");
    assert_eq!(codes, vec![200; requests], "every request served");
    // The proxy's writer is still alive after all of that.
    assert_eq!(
        get_through(&addr, &format!("http://{host}/last"), &host),
        200
    );
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(proxy.child.id().to_string())
        .status();
    let _ = proxy.child.wait();

    let out = verify(&data);
    assert!(out.status.success(), "{}", text(&out.stdout));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["ok"], true);

    let evs = events(&data);
    let indexes: Vec<u64> = evs.iter().filter_map(|e| e["index"].as_u64()).collect();
    assert_eq!(indexes, (0..evs.len() as u64).collect::<Vec<_>>());
    let mut by_action: BTreeMap<String, usize> = BTreeMap::new();
    for e in &evs {
        *by_action
            .entry(e["event"]["action"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = [
        ("cli.init", 1),
        ("egress.request", requests + 1),
        ("proxy.start", 1),
        ("proxy.stop", 1),
        ("run.end", 3),
        ("run.start", 3),
        ("sandbox.attestation", 3),
        ("vault.secret_set", 3),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(by_action, expected);
    assert_eq!(report["records"], evs.len());
    // Each request is recorded exactly once.
    let mut paths: Vec<String> = evs
        .iter()
        .filter(|e| e["event"]["action"] == "egress.request")
        .map(|e| e["event"]["resource"].as_str().unwrap_or("?").to_owned())
        .collect();
    paths.sort();
    let mut want: Vec<String> = (0..requests)
        .map(|i| format!("http://{host}/r{i}"))
        .chain([format!("http://{host}/last")])
        .collect();
    want.sort();
    assert_eq!(paths, want);
}

/// Files named by configuration and flags are read bounded: `/dev/zero`
/// (endless) and a FIFO (blocks at open) are refused at once, naming the
/// file and the setting, instead of reading until memory runs out or
/// hanging; so is an oversized file.
#[test]
fn dev_zero_fifo_and_oversized_files_named_by_config_are_refused_fast() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let init = airlock(&data).arg("init").output().expect("init");
    assert!(init.status.success(), "{}", text(&init.stderr));
    let fifo = tmp.path().join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let big = tmp.path().join("big.toml");
    std::fs::write(&big, vec![b'#'; (1 << 20) + 1]).expect("big");
    let fifo_s = fifo.display().to_string();
    let big_s = big.display().to_string();
    let limit = Duration::from_secs(15);

    let expect_error = |args: &[&str], config: Option<&Path>, want: String| {
        let mut c = airlock(&data);
        if let Some(cfg) = config {
            c.arg("--config").arg(cfg);
        }
        c.args(args);
        let (out, took) = bounded(c, b"", limit);
        assert_eq!(
            (out.status.code(), text(&out.stderr)),
            (Some(2), format!("airlock: error: {want}\n")),
            "airlock {args:?}"
        );
        assert!(took < Duration::from_secs(10), "{args:?} took {took:?}");
    };

    // proxy.upstream_ca_file = "/dev/zero" (the review's case), a FIFO, a
    // file too large.
    for (target, what) in [
        ("/dev/zero", "not a regular file (a character device)"),
        (fifo_s.as_str(), "not a regular file (a FIFO)"),
        (big_s.as_str(), "larger than the 1 MiB allowed"),
    ] {
        let cfg = tmp.path().join("ca.toml");
        std::fs::write(&cfg, format!("[proxy]\nupstream_ca_file = {target:?}\n")).expect("cfg");
        expect_error(
            &["config", "check"],
            Some(&cfg),
            format!(
                "{}:2:20: proxy.upstream_ca_file: cannot read {target}: {what}",
                cfg.display()
            ),
        );
    }
    // --config and --policy naming /dev/zero, a FIFO, a file too large.
    for (target, what) in [
        (
            Path::new("/dev/zero"),
            "not a regular file (a character device)",
        ),
        (fifo.as_path(), "not a regular file (a FIFO)"),
        (big.as_path(), "larger than the 1 MiB allowed"),
    ] {
        expect_error(
            &["config", "check"],
            Some(target),
            format!("{}: cannot read configuration: {what}", target.display()),
        );
        expect_error(
            &[
                "policy",
                "check",
                "--policy",
                &target.display().to_string(),
                "--method",
                "GET",
                "--url",
                "https://example.com/",
            ],
            None,
            format!("{}: cannot read configuration: {what}", target.display()),
        );
    }
    // `audit verify --pubkey` naming /dev/zero or a FIFO.
    for (target, what) in [
        ("/dev/zero", "not a regular file (a character device)"),
        (fifo_s.as_str(), "not a regular file (a FIFO)"),
    ] {
        expect_error(
            &["audit", "verify", "--pubkey", target],
            None,
            format!("{target}: cannot read audit public key: {what}"),
        );
    }
    // The master key file replaced by a FIFO: refused, not waited on.
    let key = data.join("keys/master.key");
    std::fs::remove_file(&key).expect("rm key");
    let made = Command::new("mkfifo").arg(&key).status().expect("mkfifo");
    assert!(made.success());
    let mut c = airlock(&data);
    c.args(["secret", "set", "T", "--host", "api.example.com"]);
    let (out, took) = bounded(c, b"value", limit);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!(
            "{}: cannot read master key file: not a regular file (a FIFO)",
            key.display()
        )),
        "{}",
        text(&out.stderr)
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

/// The legitimate cases still work: a real CA bundle file and a policy file.
#[test]
fn regular_config_files_are_still_read() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let init = airlock(&data).arg("init").output().expect("init");
    assert!(init.status.success(), "{}", text(&init.stderr));
    let ca = airlock_testkit::TestCa::new();
    let pem: PathBuf = ca.write_pem(tmp.path(), "ca.pem");
    let cfg = tmp.path().join("ok.toml");
    std::fs::write(
        &cfg,
        format!(
            "[proxy]\nupstream_ca_file = {:?}\n",
            pem.display().to_string()
        ),
    )
    .expect("cfg");
    let out = airlock(&data)
        .arg("--config")
        .arg(&cfg)
        .args(["config", "check"])
        .output()
        .expect("check");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pol = tmp.path().join("p.toml");
    std::fs::write(&pol, "mode = \"deny_all\"\n").expect("pol");
    let out = airlock(&data)
        .args(["policy", "check", "--policy"])
        .arg(&pol)
        .args(["--method", "GET", "--url", "https://example.com/"])
        .output()
        .expect("policy check");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
}
