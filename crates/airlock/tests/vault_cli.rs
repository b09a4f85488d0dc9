//! End-to-end tests of the vault through the real `airlock` binary in a
//! temporary data directory: `secret set|list|rm|reencrypt`, `keys
//! init|rotate`, the audit trail they leave, what is (not) on disk, and the
//! errors a user sees for a wrong key, a tampered row and bad input.

use base64::Engine as _;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const VALUE: &str = "ghp_CliT3stValue9f8e7d6c5b4a3210ZYXWvuts";

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Run `airlock --data-dir DIR ARGS` with `stdin` piped in and `env` set.
fn airlock_with(dir: &Path, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_airlock"));
    cmd.arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("AIRLOCK_ENV")
        .env_remove("AIRLOCK_CONFIG")
        .env_remove("AIRLOCK_MASTER_KEY")
        .env_remove("AIRLOCK_PASSPHRASE")
        .env_remove("AIRLOCK_NEW_MASTER_KEY")
        .env_remove("AIRLOCK_NEW_PASSPHRASE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run airlock");
    // airlock may exit before reading stdin (a usage error): that is a broken pipe here.
    if let Err(e) = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
    {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "write stdin: {e}");
    }
    let out = child.wait_with_output().expect("wait");
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
    assert!(
        !o.stdout.contains(VALUE) && !o.stderr.contains(VALUE),
        "the secret value was printed"
    );
    o
}

fn airlock(dir: &Path, args: &[&str]) -> Out {
    airlock_with(dir, args, "", &[])
}

fn ok(o: Out) -> Out {
    assert_eq!(o.code, 0, "stdout: {}\nstderr: {}", o.stdout, o.stderr);
    o
}

fn initialized() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    ok(airlock(&dir, &["init"]));
    (tmp, dir)
}

fn set_github(dir: &Path, env: &[(&str, &str)]) -> Out {
    airlock_with(
        dir,
        &[
            "secret",
            "set",
            "GITHUB_TOKEN",
            "--host",
            "api.github.com,*.github.test",
        ],
        &format!("{VALUE}\n"),
        env,
    )
}

fn audit_actions(dir: &Path) -> Vec<(String, String)> {
    let o = ok(airlock(dir, &["audit", "tail", "-n", "100", "--json"]));
    o.stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).expect("audit tail prints JSON lines");
            let ev = if v.get("event").is_some() {
                &v["event"]
            } else {
                &v
            };
            (
                ev["action"].as_str().unwrap_or_default().to_owned(),
                ev["resource"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("readdir").flatten() {
        let p = e.path();
        if p.is_dir() {
            all_files(&p, out)
        } else {
            out.push(p)
        }
    }
}

/// `strings` over every file of the data dir (and a raw byte search, which
/// also catches values shorter than `strings` reports).
fn assert_value_nowhere_on_disk(dir: &Path) {
    let mut files = Vec::new();
    all_files(dir, &mut files);
    assert!(files.iter().any(|f| f.ends_with("airlock.db")), "{files:?}");
    for f in &files {
        let out = Command::new("strings")
            .args(["-a", "-n", "6"])
            .arg(f)
            .output()
            .expect("run strings (binutils)");
        assert!(out.status.success(), "strings {}", f.display());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !text.contains(VALUE),
            "strings finds the value in {}",
            f.display()
        );
        assert!(
            !text.contains(&VALUE[..16]),
            "strings finds part of the value in {}",
            f.display()
        );
        let bytes = std::fs::read(f).expect("read");
        assert!(
            !bytes.windows(VALUE.len()).any(|w| w == VALUE.as_bytes()),
            "{} holds the value",
            f.display()
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode(VALUE);
        assert!(
            !bytes.windows(b64.len()).any(|w| w == b64.as_bytes()),
            "{} holds the value in base64",
            f.display()
        );
    }
}

#[test]
fn set_list_rm_are_audited_by_name_and_never_show_the_value() {
    let (_tmp, dir) = initialized();
    let o = ok(set_github(&dir, &[]));
    assert_eq!(
        o.stdout,
        "stored secret GITHUB_TOKEN (version 1) for api.github.com, *.github.test\n"
    );
    // `airlock init` created the master key file; `secret set` used it.
    assert_eq!(o.stderr, "");
    let key = dir.join("keys/master.key");
    assert_eq!(
        std::fs::metadata(&key)
            .expect("key file")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    let o = ok(airlock_with(
        &dir,
        &[
            "secret",
            "set",
            "NPM",
            "--host",
            "registry.npmjs.org",
            "--methods",
            "get,head",
            "--paths",
            "/@acme/*",
            "--env",
            "NPM_TOKEN",
        ],
        "npm_value_123456",
        &[],
    ));
    assert_eq!(
        o.stdout,
        "stored secret NPM (version 1) for registry.npmjs.org\n"
    );
    let o = ok(set_github(&dir, &[]));
    assert_eq!(
        o.stdout,
        "updated secret GITHUB_TOKEN (version 2) for api.github.com, *.github.test\n"
    );

    let o = ok(airlock(&dir, &["secret", "list", "--json"]));
    let mut v: serde_json::Value = serde_json::from_str(&o.stdout).expect("json");
    for item in v.as_array_mut().expect("array") {
        assert!(item["updated_at_us"].as_i64().expect("time") > 0);
        item.as_object_mut()
            .expect("object")
            .remove("updated_at_us");
    }
    assert_eq!(
        v,
        serde_json::json!([
            {"name": "GITHUB_TOKEN", "version": 2, "hosts": ["api.github.com", "*.github.test"], "header": "Authorization",
             "format": "Bearer {}", "methods": [], "paths": [], "env": "GITHUB_TOKEN", "location": "header:Authorization"},
            {"name": "NPM", "version": 1, "hosts": ["registry.npmjs.org"], "header": "Authorization",
             "format": "Bearer {}", "methods": ["GET", "HEAD"], "paths": ["/@acme/*"], "env": "NPM_TOKEN",
             "location": "header:Authorization"},
        ])
    );
    let o = ok(airlock(&dir, &["secret", "list"]));
    assert!(o.stdout.starts_with("NAME"), "{}", o.stdout);
    assert!(
        o.stdout.contains("GITHUB_TOKEN") && o.stdout.contains("registry.npmjs.org"),
        "{}",
        o.stdout
    );

    assert_eq!(
        ok(airlock(&dir, &["secret", "rm", "NPM"])).stdout,
        "removed secret NPM\n"
    );
    let o = airlock(&dir, &["secret", "rm", "NPM"]);
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (2, "airlock: error: no secret named NPM\n")
    );

    let actions = audit_actions(&dir);
    let vault: Vec<(&str, &str)> = actions
        .iter()
        .filter(|(a, _)| a.starts_with("vault."))
        .map(|(a, r)| (a.as_str(), r.as_str()))
        .collect();
    assert_eq!(
        vault,
        vec![
            ("vault.secret_set", "GITHUB_TOKEN"),
            ("vault.secret_set", "NPM"),
            ("vault.secret_set", "GITHUB_TOKEN"),
            ("vault.secret_rm", "NPM"),
        ]
    );
    let export = ok(airlock(&dir, &["audit", "export"]));
    assert!(!export.stdout.contains(VALUE) && !export.stdout.contains("npm_value_123456"));
    ok(airlock(&dir, &["audit", "verify"]));
    assert_value_nowhere_on_disk(&dir);
}

/// A binding names one place for the value: `--query NAME` (a query
/// parameter) or `--basic` (the password of Basic credentials); they
/// exclude each other and `--format`.
#[test]
fn a_secret_can_be_bound_to_one_query_parameter_or_as_a_basic_password() {
    let (_tmp, dir) = initialized();
    ok(airlock_with(
        &dir,
        &[
            "secret",
            "set",
            "SLACK",
            "--host",
            "slack.com",
            "--query",
            "token",
        ],
        "xoxb-value-123456",
        &[],
    ));
    ok(airlock_with(
        &dir,
        &["secret", "set", "GIT", "--host", "github.com", "--basic"],
        "git-value-123456",
        &[],
    ));
    let o = ok(airlock(&dir, &["secret", "list", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&o.stdout).expect("json");
    let places: Vec<(&str, &str)> = v
        .as_array()
        .expect("array")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or(""),
                s["location"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        places,
        [("GIT", "basic:Authorization"), ("SLACK", "query:token")]
    );
    assert_eq!(
        (v[0]["basic"].as_bool(), v[1]["query"].as_str()),
        (Some(true), Some("token"))
    );
    let text = ok(airlock(&dir, &["secret", "list"])).stdout;
    assert!(
        text.contains("?token") && text.contains("Basic password"),
        "{text}"
    );
    for args in [
        &[
            "secret", "set", "X", "--host", "h.test", "--query", "t", "--header", "X-Key",
        ][..],
        &[
            "secret", "set", "X", "--host", "h.test", "--query", "t", "--basic",
        ][..],
        &[
            "secret", "set", "X", "--host", "h.test", "--basic", "--format", "Basic {}",
        ][..],
    ] {
        let o = airlock_with(&dir, args, "v", &[]);
        assert_eq!(o.code, 2, "{args:?}: {}", o.stderr);
        assert!(
            o.stderr.contains("cannot be used with"),
            "{args:?}: {}",
            o.stderr
        );
    }
    let o = airlock_with(
        &dir,
        &["secret", "set", "X", "--host", "h.test", "--query", "a&b"],
        "v",
        &[],
    );
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(
        o.stderr.starts_with(
            "airlock: error: invalid binding: query: \"a&b\" is not a query parameter name"
        ),
        "{}",
        o.stderr
    );
}

#[test]
fn values_are_never_taken_from_argv_and_bad_input_is_a_one_line_error() {
    let (_tmp, dir) = initialized();
    let o = airlock(
        &dir,
        &["secret", "set", "X", "--host", "h.test", "--value", "oops"],
    );
    assert_eq!(o.code, 2);
    assert!(
        o.stderr.contains("unexpected argument '--value'"),
        "{}",
        o.stderr
    );
    let o = airlock(&dir, &["secret", "set", "X", "--host", "h.test"]);
    assert_eq!(o.code, 2);
    assert!(
        o.stderr
            .starts_with("airlock: error: stdin: no secret value given"),
        "{}",
        o.stderr
    );

    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["secret", "set", "X", "--host", "a b"],
            "v",
            "airlock: error: invalid binding: hosts: \"a b\": not a valid host name",
        ),
        (
            &["secret", "set", "../x", "--host", "h.test"],
            "v",
            "airlock: error: invalid secret name \"../x\"",
        ),
        (
            &[
                "secret", "set", "X", "--host", "h.test", "--format", "Bearer",
            ],
            "v",
            "airlock: error: invalid binding: format: must contain `{}` exactly once",
        ),
        (
            &["secret", "set", "X", "--host", "h.test"],
            "a\r\nX-Injected: 1",
            "airlock: error: invalid secret value: the value contains control characters",
        ),
    ];
    for (args, stdin, want) in cases {
        let o = airlock_with(&dir, args, stdin, &[]);
        assert_eq!(o.code, 2, "{args:?}");
        assert!(o.stderr.starts_with(want), "{args:?}: {}", o.stderr);
        assert_eq!(o.stderr.lines().count(), 1, "{}", o.stderr);
    }
    let huge = "x".repeat(20_000);
    let o = airlock_with(
        &dir,
        &["secret", "set", "X", "--host", "h.test"],
        &huge,
        &[],
    );
    assert_eq!(
        o.stderr,
        "airlock: error: stdin: the secret value is longer than 16 KiB\n"
    );
    assert_eq!(
        ok(airlock(&dir, &["secret", "list"])).stdout,
        "no secrets\n"
    );
}

#[test]
fn wrong_master_key_is_a_clear_error() {
    let (_tmp, dir) = initialized();
    ok(set_github(&dir, &[]));
    let other = base64::engine::general_purpose::STANDARD.encode(
        [0x5au8; 31]
            .iter()
            .chain(&[1u8])
            .copied()
            .collect::<Vec<u8>>(),
    );
    let o = airlock_with(
        &dir,
        &["secret", "reencrypt"],
        "",
        &[("AIRLOCK_MASTER_KEY", &other)],
    );
    assert_eq!(o.code, 2);
    assert_eq!(
        o.stderr,
        "airlock: error: master key does not match this vault (AIRLOCK_MASTER_KEY): wrong key or passphrase, or a vault created with another master key\n"
    );
    let o = airlock_with(
        &dir,
        &["secret", "reencrypt"],
        "",
        &[("AIRLOCK_MASTER_KEY", "not-a-key")],
    );
    assert!(
        o.stderr
            .starts_with("airlock: error: AIRLOCK_MASTER_KEY: malformed master key"),
        "{}",
        o.stderr
    );
    // Listing needs no key at all.
    ok(airlock_with(
        &dir,
        &["secret", "list"],
        "",
        &[("AIRLOCK_MASTER_KEY", &other)],
    ));
}

#[test]
fn a_tampered_row_is_a_decryption_error_and_the_vault_is_left_alone() {
    let (_tmp, dir) = initialized();
    ok(set_github(&dir, &[]));
    let c = rusqlite::Connection::open(dir.join("airlock.db")).expect("attacker connection");
    let mut sealed: Vec<u8> = c
        .query_row(
            "SELECT sealed FROM vault_secrets WHERE name = 'GITHUB_TOKEN'",
            [],
            |r| r.get(0),
        )
        .expect("read");
    sealed[17] ^= 0x80;
    c.execute("UPDATE vault_secrets SET sealed = ?1", [&sealed])
        .expect("tamper");
    drop(c);
    let o = airlock(&dir, &["secret", "reencrypt"]);
    assert_eq!(
        o.stderr,
        "airlock: error: secret GITHUB_TOKEN of tenant default cannot be decrypted: its ciphertext, binding or version was altered, or the row is corrupt\n"
    );
    let c = rusqlite::Connection::open(dir.join("airlock.db")).expect("connection");
    let (now, kv): (Vec<u8>, i64) = c
        .query_row(
            "SELECT sealed, key_version FROM vault_secrets WHERE name = 'GITHUB_TOKEN'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("read");
    assert_eq!(
        (now, kv),
        (sealed, 1),
        "a failed re-encryption must not change the vault"
    );
}

#[test]
fn rotation_and_reencryption_keep_secrets_readable() {
    let (_tmp, dir) = initialized();
    ok(set_github(&dir, &[]));
    let key_path = dir.join("keys/master.key");
    let old_key = std::fs::read_to_string(&key_path).expect("key");

    let o = ok(airlock(&dir, &["keys", "status"]));
    assert_eq!(
        o.stdout,
        format!(
            "vault lock: raw key\nkey source: key file {}\n",
            key_path.display()
        )
    );
    let o = ok(airlock(&dir, &["secret", "reencrypt"]));
    assert_eq!(
        o.stdout,
        "replaced the data key of tenant default; re-encrypted 1 secret(s)\n"
    );

    let o = ok(airlock(&dir, &["keys", "rotate"]));
    assert!(
        o.stdout.starts_with("rotated the master key (key file "),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("re-wrapped 1 data key(s)"),
        "{}",
        o.stdout
    );
    let new_key = std::fs::read_to_string(&key_path).expect("key");
    assert_ne!(old_key, new_key);
    assert_eq!(
        std::fs::metadata(&key_path)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(!dir.join("keys/master.key.new").exists());

    // The new key decrypts everything (reencrypt opens every secret); the old one opens nothing.
    ok(airlock(&dir, &["secret", "reencrypt"]));
    let o = airlock_with(
        &dir,
        &["secret", "reencrypt"],
        "",
        &[("AIRLOCK_MASTER_KEY", old_key.trim())],
    );
    assert!(
        o.stderr
            .starts_with("airlock: error: master key does not match this vault"),
        "{}",
        o.stderr
    );

    // To a raw key held in the environment.
    let env_key =
        base64::engine::general_purpose::STANDARD.encode(*b"0123456789abcdef0123456789ABCDEF");
    let o = ok(airlock_with(
        &dir,
        &["keys", "rotate", "--to", "env"],
        "",
        &[("AIRLOCK_NEW_MASTER_KEY", &env_key)],
    ));
    assert!(
        o.stdout.contains("note: removed the retired key file"),
        "{}",
        o.stdout
    );
    assert!(!key_path.exists());
    ok(airlock_with(
        &dir,
        &["secret", "reencrypt"],
        "",
        &[("AIRLOCK_MASTER_KEY", &env_key)],
    ));
    let o = airlock(&dir, &["secret", "reencrypt"]);
    assert!(o.stderr.contains("no vault master key"), "{}", o.stderr);

    let actions = audit_actions(&dir);
    let n = |a: &str| actions.iter().filter(|(x, _)| x == a).count();
    assert_eq!(
        (n("vault.secret_reencrypt"), n("vault.keys_rotate")),
        (3, 2)
    );
    assert_value_nowhere_on_disk(&dir);
}

#[test]
fn passphrase_vault_wrong_passphrase_is_a_clear_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let pass = [("AIRLOCK_PASSPHRASE", "correct horse battery staple")];
    // With a passphrase in the environment, init creates no key file.
    ok(airlock_with(&dir, &["init"], "", &pass));
    ok(set_github(&dir, &pass));
    assert!(
        !dir.join("keys/master.key").exists(),
        "a passphrase vault needs no key file"
    );
    let o = airlock_with(
        &dir,
        &["secret", "reencrypt"],
        "",
        &[("AIRLOCK_PASSPHRASE", "correct horse battery stable")],
    );
    assert!(o.stderr.starts_with("airlock: error: master key does not match this vault (passphrase from AIRLOCK_PASSPHRASE)"), "{}", o.stderr);
    ok(airlock_with(&dir, &["secret", "reencrypt"], "", &pass));
    assert_value_nowhere_on_disk(&dir);
}

#[test]
fn production_refuses_weak_missing_or_exposed_master_keys() {
    let (_tmp, dir) = initialized();
    let prod = ("AIRLOCK_ENV", "production");
    std::fs::remove_file(dir.join("keys/master.key")).expect("rm key");
    let o = airlock_with(&dir, &["secret", "list"], "", &[prod]);
    assert!(
        o.stderr.contains("vault master key") && o.stderr.contains("is missing"),
        "{}",
        o.stderr
    );

    assert!(
        ok(airlock(&dir, &["keys", "init"]))
            .stdout
            .starts_with("created ")
    );
    assert_eq!(
        ok(airlock(&dir, &["keys", "init"])).stdout,
        "the vault already has a master key source; nothing changed\n"
    );
    ok(airlock_with(&dir, &["secret", "list"], "", &[prod]));
    let key = dir.join("keys/master.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let o = airlock_with(&dir, &["secret", "list"], "", &[prod]);
    assert!(
        o.stderr.contains("is readable by other users (mode 644)"),
        "{}",
        o.stderr
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");

    let o = airlock_with(
        &dir,
        &["secret", "list"],
        "",
        &[
            prod,
            ("AIRLOCK_MASTER_KEY", airlock_vault::EXAMPLE_MASTER_KEY),
        ],
    );
    assert!(
        o.stderr
            .contains("AIRLOCK_MASTER_KEY is a weak or example key"),
        "{}",
        o.stderr
    );
    let o = airlock_with(
        &dir,
        &["secret", "list"],
        "",
        &[prod, ("AIRLOCK_PASSPHRASE", "short")],
    );
    assert!(
        o.stderr
            .contains("AIRLOCK_PASSPHRASE is shorter than 12 characters"),
        "{}",
        o.stderr
    );
}

/// Run `airlock --data-dir DIR ARGS` in a pseudo-terminal (Python's `pty`):
/// wait for `prompt`, type `typed` and Enter, and return the exit code and
/// everything the terminal showed.
fn airlock_in_pty(dir: &Path, args: &[&str], prompt: &str, typed: &str) -> (i32, String) {
    let script = r#"
import os, pty, select, sys, time
exe, data, prompt, typed = sys.argv[1:5]
pid, fd = pty.fork()
if pid == 0:
    os.execv(exe, [exe, "--data-dir", data] + sys.argv[5:])
out = b""
def pump(until, secs):
    global out
    end = time.time() + secs
    while (until is None or until not in out) and time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                return
            if not chunk:
                return
            out += chunk
pump(prompt.encode(), 30)
os.write(fd, typed.encode() + b"\n")
pump(None, 60)
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode("utf-8", "replace"))
sys.exit(os.waitstatus_to_exitcode(status))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_airlock"))
        .arg(dir)
        .args([prompt, typed])
        .args(args)
        .env_remove("AIRLOCK_ENV")
        .env_remove("AIRLOCK_CONFIG")
        .env_remove("AIRLOCK_MASTER_KEY")
        .env_remove("AIRLOCK_PASSPHRASE")
        .output()
        .expect("run python3");
    let screen = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!screen.contains("panicked"), "{screen}");
    (out.status.code().unwrap_or(-1), screen)
}

/// On a terminal the value is prompted for with echo off: what was typed
/// never comes back on the screen.
#[test]
fn terminal_prompt_does_not_echo_the_value() {
    let (_tmp, dir) = initialized();
    let typed = "tty-typed-value-0123456789";
    let (code, screen) = airlock_in_pty(
        &dir,
        &["secret", "set", "TTY_SECRET", "--host", "h.test"],
        "Value for TTY_SECRET: ",
        typed,
    );
    assert_eq!(code, 0, "{screen}");
    assert!(screen.starts_with("Value for TTY_SECRET: "), "{screen}");
    assert!(
        screen.contains("stored secret TTY_SECRET (version 1) for h.test"),
        "{screen}"
    );
    assert!(
        !screen.contains(typed),
        "the typed value was echoed: {screen}"
    );
    let listed = ok(airlock(&dir, &["secret", "list", "--json"])).stdout;
    assert_eq!(listed.matches("TTY_SECRET").count(), 2, "{listed}");
}

/// A passphrase vault without AIRLOCK_PASSPHRASE asks on the terminal, without
/// echo; a wrong answer is a clear error and changes nothing.
#[test]
fn passphrase_is_prompted_on_the_terminal_without_echo() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let pass = "terminal passphrase 42";
    ok(airlock_with(
        &dir,
        &["init"],
        "",
        &[("AIRLOCK_PASSPHRASE", pass)],
    ));
    ok(set_github(&dir, &[("AIRLOCK_PASSPHRASE", pass)]));
    let st = ok(airlock(&dir, &["keys", "status", "--json"])).stdout;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&st).expect("json"),
        serde_json::json!({"lock": "passphrase", "kdf": "argon2id m=65536KiB t=3 p=1", "source": "terminal prompt"})
    );

    let (code, screen) = airlock_in_pty(&dir, &["secret", "reencrypt"], "Vault passphrase: ", pass);
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains("re-encrypted 1 secret(s)"), "{screen}");
    assert!(
        !screen.contains(pass),
        "the passphrase was echoed: {screen}"
    );

    let (code, screen) = airlock_in_pty(
        &dir,
        &["secret", "reencrypt"],
        "Vault passphrase: ",
        "not it",
    );
    assert_eq!(code, 2, "{screen}");
    assert!(
        screen.contains(
            "airlock: error: master key does not match this vault (passphrase from terminal prompt)"
        ),
        "{screen}"
    );
    // Without a terminal (a new session, so no controlling terminal even when
    // the tests run from one) or the variable, the error says what to do.
    let out = Command::new("setsid")
        .arg("--wait")
        .arg(env!("CARGO_BIN_EXE_airlock"))
        .arg("--data-dir")
        .arg(&dir)
        .args(["secret", "reencrypt"])
        .env_remove("AIRLOCK_PASSPHRASE")
        .env_remove("AIRLOCK_MASTER_KEY")
        .env_remove("AIRLOCK_ENV")
        .stdin(Stdio::null())
        .output()
        .expect("run setsid (util-linux)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("set AIRLOCK_PASSPHRASE or run on a terminal"),
        "{stderr}"
    );
}
