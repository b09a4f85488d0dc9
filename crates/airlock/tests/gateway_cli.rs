//! The LLM gateway through the real `airlock` binary: `gateway key
//! create|list|revoke`, `budget set|list|usage`, and `airlock gateway`
//! serving a local provider with the real key from the vault, PII masked,
//! answers restored, and every call in the audit log.

use airlock_testkit::{LlmUpstream, spawn_and_read_line};
use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const PROVIDER_KEY: &str = "sk-proj-VaultHeldProviderKey0123456789abcdef";
const EMAIL: &str = "jane.doe@example.org";

fn airlock(dir: &Path, config: &Path, args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_airlock"));
    c.arg("--data-dir")
        .arg(dir)
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("AIRLOCK_ENV")
        .env_remove("AIRLOCK_MASTER_KEY")
        .env_remove("AIRLOCK_PASSPHRASE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("run airlock");
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes());
    let out = child.wait_with_output().expect("wait");
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        !o.contains(PROVIDER_KEY) && !e.contains(PROVIDER_KEY),
        "provider key printed"
    );
    (out.status.code().unwrap_or(-1), o, e)
}

fn ok(r: (i32, String, String)) -> String {
    assert_eq!(r.0, 0, "stdout: {}\nstderr: {}", r.1, r.2);
    r.1
}

/// A plain HTTP/1.1 POST over a socket; returns status line and body.
fn post(addr: &str, key: &str, body: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(s, "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let status = out.lines().next().unwrap_or("").to_string();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_cli_serves_with_vault_key_virtual_keys_and_budgets() {
    let up = LlmUpstream::start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let config = tmp.path().join("airlock.toml");
    std::fs::write(&config, format!("[gateway.providers.openai]\nkind = \"openai\"\nbase_url = \"{}\"\nsecret = \"openai\"\n", up.url())).expect("config");
    ok(airlock(&dir, &config, &["init"], ""));
    ok(airlock(
        &dir,
        &config,
        &["secret", "set", "openai", "--host", "api.openai.com"],
        &format!("{PROVIDER_KEY}\n"),
    ));
    let created = ok(airlock(
        &dir,
        &config,
        &[
            "gateway",
            "key",
            "create",
            "--agent",
            "billing-bot",
            "--team",
            "ops",
            "--budget-usd",
            "1",
        ],
        "",
    ));
    let key = created.lines().next().expect("key line").to_string();
    assert!(key.starts_with("alk_") && key.len() == 68, "{created}");
    let id = created
        .split_whitespace()
        .find(|w| w.starts_with("key_"))
        .expect("id")
        .to_string();
    ok(airlock(
        &dir,
        &config,
        &[
            "budget",
            "set",
            "agent:billing-bot",
            "--usd",
            "0.5",
            "--period",
            "day",
        ],
        "",
    ));
    let list = ok(airlock(&dir, &config, &["budget", "list"], ""));
    assert!(
        list.contains("agent:billing-bot\tday\t0.500000\t0.000000"),
        "{list}"
    );
    assert!(
        list.contains(&format!("key:{id}\ttotal\t1.000000")),
        "{list}"
    );

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_airlock"));
    cmd.arg("--data-dir")
        .arg(&dir)
        .arg("--config")
        .arg(&config)
        .args(["gateway", "--listen", "127.0.0.1:0"])
        .env_remove("AIRLOCK_ENV");
    let (guard, line) = tokio::task::spawn_blocking(move || {
        spawn_and_read_line(cmd, "listening on", Duration::from_secs(30))
    })
    .await
    .expect("spawn");
    let addr = line.rsplit(' ').next().expect("addr").to_string();
    let body = format!(
        "{{\"model\":\"gpt-4o-mini\",\"max_tokens\":50,\"messages\":[{{\"role\":\"user\",\"content\":\"mail {EMAIL}\"}}]}}"
    );
    let (a, k, b) = (addr.clone(), key.clone(), body.clone());
    let (status, resp) = tokio::task::spawn_blocking(move || post(&a, &k, &b))
        .await
        .expect("post");
    assert!(status.contains(" 200 "), "{status} {resp}");
    assert!(resp.contains(&format!("echo: mail {EMAIL}")), "{resp}");
    let got = up.received();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].header("authorization"),
        Some(format!("Bearer {PROVIDER_KEY}").as_str())
    );
    assert!(!String::from_utf8_lossy(&got[0].body).contains(EMAIL));

    let usage = ok(airlock(&dir, &config, &["budget", "usage"], ""));
    assert!(
        !usage.contains("agent:billing-bot\tday\t0.500000\t0.000000"),
        "usage not charged: {usage}"
    );
    ok(airlock(
        &dir,
        &config,
        &["gateway", "key", "revoke", &id],
        "",
    ));
    assert!(
        ok(airlock(&dir, &config, &["gateway", "key", "list"], ""))
            .contains(&format!("{id}\tbilling-bot\tops\trevoked"))
    );
    let (a, k) = (addr.clone(), key.clone());
    let (status, resp) = tokio::task::spawn_blocking(move || post(&a, &k, &body))
        .await
        .expect("post");
    assert!(status.contains(" 401 "), "{status}");
    assert!(resp.contains("virtual_key_invalid"), "{resp}");
    // SIGTERM: the gateway stops and closes its audit log cleanly.
    let mut guard = guard;
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(guard.child.id().to_string())
        .status();
    let _ = guard.child.wait();
    let audit = ok(airlock(
        &dir,
        &config,
        &["audit", "tail", "-n", "50", "--json"],
        "",
    ));
    assert!(audit.contains("\"gateway.call\""), "{audit}");
    assert!(audit.contains("virtual_key_invalid"));
    assert!(!audit.contains(EMAIL) && !audit.contains("echo"));
}
