//! Logs go to stderr, in the format asked for, and never change stdout.

use std::io::Write;
use std::process::{Command, Output, Stdio};

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
