//! Shared helpers for the sandbox tests (`sandbox_escape.rs`, `sandbox_run.rs`):
//! a fresh data directory, a workspace, a fake home with credentials, and
//! `airlock run` with a bounded wait.
#![allow(dead_code, clippy::new_without_default)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_airlock");
/// A value only the host environment holds; it must never show up inside.
pub const CANARY: &str = "canary-7f3a9c1e-host-only";
/// Longest any single `airlock run` may take in a test.
const HARD_LIMIT: Duration = Duration::from_secs(90);

/// A test environment: data dir (initialized), workspace, fake home.
#[derive(Debug)]
pub struct Env {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    pub ws: PathBuf,
    pub home: PathBuf,
    pub config: Option<PathBuf>,
}

pub struct Out {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let ws = dir.path().join("ws");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&ws).expect("ws");
        std::fs::create_dir_all(home.join(".ssh")).expect("home");
        std::fs::create_dir_all(home.join(".aws")).expect("home");
        std::fs::write(
            home.join(".ssh/id_rsa"),
            "-----BEGIN OPENSSH PRIVATE KEY-----\nfake\n",
        )
        .expect("key");
        std::fs::write(
            home.join(".aws/credentials"),
            "[default]\naws_secret_access_key = fake\n",
        )
        .expect("aws");
        let env = Env {
            dir,
            data,
            ws,
            home,
            config: None,
        };
        let out = env.airlock(&["init"]);
        assert!(out.status.success(), "airlock init failed: {out:?}");
        env
    }

    /// Write a configuration file that every later command uses.
    pub fn with_config(mut self, toml: &str) -> Env {
        let path = self.dir.path().join("airlock.toml");
        std::fs::write(&path, toml).expect("config");
        self.config = Some(path);
        self
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("HOME", &self.home)
            .env("AIRLOCK_DATA_DIR", &self.data)
            .env("AIRLOCK_CANARY", CANARY)
            .current_dir(&self.ws)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(c) = &self.config {
            cmd.env("AIRLOCK_CONFIG", c);
        }
        cmd
    }

    pub fn airlock(&self, args: &[&str]) -> Out {
        run_bounded(self.command(args))
    }

    /// `airlock run --timeout 60s [extra...] -- argv...`
    pub fn run(&self, extra: &[&str], argv: &[&str]) -> Out {
        let mut args = vec!["run", "--timeout", "60s"];
        args.extend_from_slice(extra);
        args.push("--");
        args.extend_from_slice(argv);
        self.airlock(&args)
    }

    pub fn sh(&self, script: &str) -> Out {
        self.run(&[], &["/bin/sh", "-c", script])
    }

    pub fn py(&self, code: &str) -> Out {
        self.run(&[], &["python3", "-c", code])
    }

    /// Run `body` (Python, indented by four spaces inside a `try:`) and
    /// report `ESCAPED` if it finished, or `BLOCKED <errno>` if it raised.
    pub fn attempt(&self, prelude: &str, body: &str) -> Out {
        let indented: String = body.lines().map(|l| format!("    {l}\n")).collect();
        let code = format!(
            "import os, socket, ctypes, errno, sys\n\
             libc = ctypes.CDLL(None, use_errno=True)\n\
             def check(r):\n    \
                 if r == -1:\n        \
                     e = ctypes.get_errno(); raise OSError(e, os.strerror(e))\n    \
                 return r\n\
             {prelude}\n\
             try:\n{indented}    print('ESCAPED')\n\
             except socket.gaierror as e:\n    print('BLOCKED gai', e)\n\
             except OSError as e:\n    print('BLOCKED', errno.errorcode.get(e.errno, e.errno), e)\n"
        );
        self.py(&code)
    }

    /// The audit log's last `n` records as JSON values.
    pub fn audit_tail(&self, n: usize) -> Vec<serde_json::Value> {
        let out = self.airlock(&["audit", "tail", "--json", "-n", &n.to_string()]);
        assert!(out.status.success(), "audit tail: {out:?}");
        out.stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Events of the last `n` records with this action.
    pub fn audited(&self, action: &str, n: usize) -> Vec<serde_json::Value> {
        self.audit_tail(n)
            .into_iter()
            .map(|r| r["event"].clone())
            .filter(|e| e["action"] == action)
            .collect()
    }
}

/// Assert an attempt was blocked with one of the expected errno names.
#[track_caller]
pub fn assert_blocked(out: &Out, errnos: &[&str]) {
    assert_eq!(out.code(), 0, "the probe itself failed: {out:?}");
    let line = out.stdout.lines().last().unwrap_or("");
    assert!(!out.stdout.contains("ESCAPED"), "ESCAPED: {out:?}");
    let got = line.split_whitespace().nth(1).unwrap_or("");
    assert!(
        line.starts_with("BLOCKED") && errnos.contains(&got),
        "expected BLOCKED with one of {errnos:?}: {out:?}"
    );
}

/// Spawn, wait at most [`HARD_LIMIT`], collect output.
pub fn run_bounded(mut cmd: Command) -> Out {
    let mut child = cmd.spawn().expect("spawn airlock");
    let mut so = child.stdout.take().expect("stdout");
    let mut se = child.stderr.take().expect("stderr");
    let t1 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let t2 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if start.elapsed() > HARD_LIMIT {
            let _ = child.kill();
            break child.wait().expect("wait");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Out {
        status,
        stdout: t1.join().unwrap_or_default(),
        stderr: t2.join().unwrap_or_default(),
    }
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
