//! `airlock demo` runs offline, passes every step, and leaves an audit trail
//! that verifies and records each layer's decision.

#[path = "sandbox_support.rs"]
mod support;

use support::{BIN, run_bounded};

#[test]
fn demo_passes_and_leaves_a_verifiable_audit_trail() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("demo");
    let mut cmd = std::process::Command::new(BIN);
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .env("HOME", tmp.path())
        .args(["demo", "--dir"])
        .arg(&dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let out = run_bounded(cmd);
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(
        out.stdout
            .contains("demo passed: every layer behaved as expected."),
        "{out:?}"
    );
    assert!(!out.stdout.contains('✘'), "{out:?}");
    assert_eq!(out.stdout.matches('✔').count(), 11, "{out:?}");

    // The kept data dir: the trail verifies on its own and holds each step.
    let data = dir.join("data");
    let airlock = |args: &[&str]| {
        let mut c = std::process::Command::new(BIN);
        c.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        run_bounded(c)
    };
    let verify = airlock(&["audit", "verify"]);
    assert_eq!(verify.code(), 0, "{verify:?}");
    let tail = airlock(&["audit", "tail", "--json", "-n", "200"]);
    assert_eq!(tail.code(), 0, "{tail:?}");
    let events: Vec<serde_json::Value> = tail
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|r| r["event"].clone())
        .collect();
    let has = |action: &str, reason: &str| {
        events
            .iter()
            .any(|e| e["action"] == action && e["reason"] == reason)
    };
    assert!(has("vault.secret_set", "recorded"), "{events:#?}");
    assert!(has("run.start", "run_started"), "{events:#?}");
    assert!(
        has("credential.denied", "credential_host_mismatch"),
        "{events:#?}"
    );
    assert!(
        events.iter().any(|e| e["action"] == "egress.request"
            && e["result"] == "denied"
            && e["resource"]
                .as_str()
                .is_some_and(|r| r.contains("/repos/demo/issues"))),
        "the denied write is not audited: {events:#?}"
    );
    assert!(has("run.end", "run_ended"), "{events:#?}");
    assert!(
        !tail.stdout.contains("demo-REAL-token"),
        "value in the audit log"
    );
}
