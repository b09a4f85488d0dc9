//! Logs go to stderr, in the format asked for, and never change stdout.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn airlock(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_airlock"));
    cmd.args(args)
        .env("AIRLOCK_DATA_DIR", dir.path())
        .env_remove("AIRLOCK_CONFIG")
        .env_remove("AIRLOCK_ENV")
        .env_remove("AIRLOCK_LOG_FORMAT")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn airlock");
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait");
    writer.join().expect("writer");
    out
}

/// A credential-shaped value (AWS's documented example key id) that must
/// never reach a log line.
const VALUE: &str = "AKIAIOSFODNN7EXAMPLE";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn debug_json_logs_go_to_stderr_and_stdout_is_unchanged() {
    let input = format!("key {VALUE}\n");
    let plain = airlock(&["scan"], &[], input.as_bytes());
    let logged = airlock(
        &["--log-format", "json", "scan"],
        &[("RUST_LOG", "debug")],
        input.as_bytes(),
    );
    assert_eq!(logged.status.code(), plain.status.code());
    assert_eq!(text(&logged.stdout), text(&plain.stdout));

    let base: Vec<String> = text(&plain.stderr).lines().map(str::to_owned).collect();
    let stderr = text(&logged.stderr);
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| !base.iter().any(|b| b == l))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["level"] == "DEBUG" && e["fields"]["message"] == "airlock starting"),
        "no start event in {stderr}"
    );
    assert!(!stderr.contains(VALUE), "a value reached the log: {stderr}");
}

#[test]
fn env_selects_the_format_and_the_default_level_prints_nothing_new() {
    let quiet = airlock(&["version"], &[], b"");
    assert_eq!(quiet.status.code(), Some(0));
    assert_eq!(text(&quiet.stderr), "");

    let json = airlock(
        &["version"],
        &[("RUST_LOG", "debug"), ("AIRLOCK_LOG_FORMAT", "json")],
        b"",
    );
    assert_eq!(text(&json.stdout), text(&quiet.stdout));
    let stderr = text(&json.stderr);
    assert!(!stderr.is_empty());
    for l in stderr.lines() {
        serde_json::from_str::<serde_json::Value>(l)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
    }

    let plain = airlock(
        &["--log-format", "text", "version"],
        &[("RUST_LOG", "debug")],
        b"",
    );
    assert_eq!(text(&plain.stdout), text(&quiet.stdout));
    let stderr = text(&plain.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("DEBUG") && l.contains("airlock starting")),
        "{stderr}"
    );
}

/// A library's event (the proxy's, at debug level) reaches stderr as JSON
/// when the binary runs as `airlock proxy`; stdout keeps only its own line.
#[test]
fn proxy_library_events_reach_stderr_as_json() {
    use std::io::{BufRead, BufReader, Read};
    use std::net::{TcpListener, TcpStream};

    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let init = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .arg("--data-dir")
        .arg(&data)
        .arg("init")
        .env_remove("AIRLOCK_ENV")
        .env_remove("AIRLOCK_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .expect("init");
    assert!(init.status.success(), "{}", text(&init.stderr));
    // The CONNECT target: a local listener the policy allows.
    let target = TcpListener::bind("127.0.0.1:0").expect("bind target");
    let port = target.local_addr().expect("addr").port();
    let policy = tmp.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "allow_private = [\"127.0.0.1/32\"]\n\n[[rules]]\nhosts = [\"127.0.0.1\"]\nports = [{port}]\naction = \"allow\"\n"
        ),
    )
    .expect("policy");
    let stderr_path = tmp.path().join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .arg("--data-dir")
        .arg(&data)
        .args([
            "--log-format",
            "json",
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--policy",
        ])
        .arg(&policy)
        .env_remove("AIRLOCK_ENV")
        .env_remove("AIRLOCK_CONFIG")
        .env_remove("AIRLOCK_LOG_FORMAT")
        .env("RUST_LOG", "airlock_proxy=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .expect("spawn proxy");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("listening line");
    let addr = line
        .trim()
        .strip_prefix("airlock proxy listening on ")
        .unwrap_or_else(|| panic!("unexpected stdout: {line:?}"))
        .to_owned();

    // CONNECT, read the answer, then close before sending any byte.
    let mut s = TcpStream::connect(&addr).expect("connect proxy");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(
        format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes(),
    )
    .expect("send");
    let mut answer = [0u8; 512];
    let n = s.read(&mut answer).expect("answer");
    assert!(
        text(&answer[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        text(&answer[..n])
    );
    drop(s);

    let wanted = "client closed the tunnel before sending anything";
    let mut log = String::new();
    for _ in 0..200 {
        log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        if log.contains(wanted) {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let _ = child.kill();
    let _ = child.wait();
    let mut rest = String::new();
    let _ = stdout.read_to_string(&mut rest);
    assert_eq!(rest, "", "stdout holds only the listening line");
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        events.iter().any(|e| e["level"] == "DEBUG"
            && e["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("airlock_proxy::server"))
            && e["fields"]["message"] == wanted),
        "{log}"
    );
}
