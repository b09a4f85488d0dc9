//! End-to-end tests of `airlock scan` through the real binary.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn airlock(args: &[&str], stdin: &[u8]) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(args)
        .env("AIRLOCK_DATA_DIR", dir.path())
        .env_remove("AIRLOCK_CONFIG")
        .env_remove("AIRLOCK_ENV")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn airlock");
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait");
    writer.join().expect("writer");
    out
}

/// A GitHub PAT-format token with a valid checksum, built at test time so
/// the repository holds no token-shaped strings.
fn github_pat() -> String {
    // CRC32 (IEEE) of the 30-char body, base62, left-padded to 6.
    let body = "EXAMPLE0000000000000000000TEST";
    let mut crc = 0xFFFF_FFFFu32;
    for &b in body.as_bytes() {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    let mut n = !crc;
    let alphabet = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut sum = [b'0'; 6];
    for slot in sum.iter_mut().rev() {
        *slot = alphabet[(n % 62) as usize];
        n /= 62;
    }
    format!("ghp_{body}{}", String::from_utf8_lossy(&sum))
}

#[test]
fn stdin_is_redacted_and_exit_code_reports_findings() {
    let pat = github_pat();
    let input = format!("deploy with {pat}\nmail ops@example.com\n");
    let out = airlock(&["scan"], input.as_bytes());
    assert_eq!(
        out.status.code(),
        Some(1),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "deploy with [SECRET:github_pat]\nmail [EMAIL_1]\n"
    );

    let clean = airlock(&["scan"], b"nothing to see here\n");
    assert_eq!(clean.status.code(), Some(0));
    assert_eq!(clean.stdout, b"nothing to see here\n");
}

#[test]
fn files_json_output_lists_findings_with_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a.env");
    std::fs::write(&a, format!("X=1\nGITHUB_TOKEN={}\n", github_pat())).expect("write");
    let b = dir.path().join("b.txt");
    std::fs::write(&b, "no secrets\n").expect("write");
    let out = airlock(
        &[
            "scan",
            "--json",
            a.to_str().expect("utf8"),
            b.to_str().expect("utf8"),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        v,
        serde_json::json!({"findings": [{
            "file": a.to_str().expect("utf8"), "line": 2, "start": 17, "end": 57,
            "value": github_pat(), "category": "secret", "type": "github_pat", "rule": "github_pat"
        }]})
    );
}

#[test]
fn jsonl_reports_per_line_findings() {
    let input =
        b"{\"text\":\"call +44 20 7946 0958 or mail a@example.org\"}\n{\"text\":\"clean\"}\n";
    let out = airlock(&["scan", "--jsonl", "--only", "pii"], input);
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(
        lines,
        [
            serde_json::json!({"findings": [
                {"start": 5, "end": 21, "value": "+44 20 7946 0958", "category": "pii", "type": "PHONE", "rule": "phone_international"},
                {"start": 30, "end": 43, "value": "a@example.org", "category": "pii", "type": "EMAIL", "rule": "email"}
            ]}),
            serde_json::json!({"findings": []}),
        ]
    );
}

#[test]
fn jsonl_with_redact_includes_masked_text_and_only_filters() {
    let input = format!("{{\"text\":\"{} a@example.org\"}}\n", github_pat());
    let out = airlock(
        &["scan", "--jsonl", "--redact", "--only", "secrets"],
        input.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["text"], "[SECRET:github_pat] a@example.org");
    assert_eq!(v["findings"].as_array().map(Vec::len), Some(1));
}

#[test]
fn bad_input_is_a_clear_error_with_exit_2() {
    let out = airlock(&["scan", "/nonexistent/file.txt"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "airlock: error: /nonexistent/file.txt: cannot open: No such file or directory (os error 2)"
    );
    let out = airlock(
        &["scan", "--jsonl"],
        b"{\"text\":\"ok\"}\n{\"nottext\":1}\n",
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "airlock: error: -:2: expected an object with a string \"text\" field"
    );
    let out = airlock(&["scan", "--json", "--jsonl"], b"");
    assert_eq!(
        out.status.code(),
        Some(2),
        "conflicting flags are a usage error"
    );
}

#[test]
fn binary_and_huge_single_line_input_pass_through() {
    let mut input: Vec<u8> = (0..=255u8).cycle().take(3 << 20).collect();
    input.extend_from_slice(b" ops@example.com ");
    input.extend(std::iter::repeat_n(b'x', 2 << 20));
    let out = airlock(&["scan"], &input);
    assert_eq!(out.status.code(), Some(1));
    let mut expected: Vec<u8> = (0..=255u8).cycle().take(3 << 20).collect();
    expected.extend_from_slice(b" [EMAIL_1] ");
    expected.extend(std::iter::repeat_n(b'x', 2 << 20));
    assert!(
        out.stdout == expected,
        "output differs ({} vs {} bytes)",
        out.stdout.len(),
        expected.len()
    );
}
