//! `airlock demo`: every layer working in one offline command.
//!
//! In a temporary data directory (or `--data-dir`), the demo runs the same
//! commands a user would — `airlock init`, `airlock secret set`, `airlock
//! run`, `airlock audit verify` — as child processes of this binary, against
//! a local HTTPS upstream and a DNS responder served from this process on
//! 127.0.0.1 (an ephemeral CA made here signs the upstream's certificate) —
//! the same fixtures the tests use (`airlock-fixtures`). The agent is a short
//! `sh` + `curl` script. The demo exits 0 only if every step behaved as
//! expected.

use crate::ctx::{Ctx, EXIT_OK};
use airlock_fixtures::demo::{API, DEMO_VALUE, EVIL, Scene};
use anyhow::Context as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Work in this directory (created if missing; must be empty) instead of a temporary one; it is kept.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Keep the temporary directory (data dir, config, policy) and print where it is.
    #[arg(long)]
    pub keep: bool,
}

pub fn run(_ctx: &Ctx, args: DemoArgs) -> anyhow::Result<u8> {
    let keep = args.keep || args.dir.is_some();
    let tmp = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            let empty = std::fs::read_dir(d)
                .with_context(|| format!("cannot read {}", d.display()))?
                .next()
                .is_none();
            if !empty {
                anyhow::bail!(
                    "--dir {}: not empty (the demo needs a fresh directory)",
                    d.display()
                );
            }
            d.canonicalize()
                .with_context(|| format!("cannot resolve {}", d.display()))?
        }
        None => tempdir()?,
    };
    let data = tmp.join("data");
    let scene = Scene::start(&tmp).context("cannot set up the demo's upstream, DNS and files")?;
    let (up_port, seen, config, policy) = (
        scene.port,
        scene.seen.clone(),
        scene.config.clone(),
        scene.policy.clone(),
    );
    let ws = tmp.join("workspace");
    std::fs::create_dir_all(&ws).context("cannot create the demo workspace")?;
    let airlock = Airlock {
        exe: std::env::current_exe().context("cannot find this binary")?,
        data: data.clone(),
        config,
        ws,
    };

    println!("Airlock demo — everything runs locally, nothing leaves this machine.");
    println!("  data dir: {}", data.display());
    println!(
        "  upstream: https://{API}:{up_port} and https://{EVIL}:{up_port} (127.0.0.1, demo CA)"
    );
    println!();
    let mut failures = 0usize;
    let mut check = |ok: bool, what: &str| {
        println!("  {} {what}", if ok { "✔" } else { "✘" });
        if !ok {
            failures += 1;
        }
    };

    println!("1. airlock init");
    let out = airlock.cmd(&["init"], None)?;
    check(out.ok, "data directory, audit log and keys created");

    println!("2. airlock secret set DEMO_TOKEN --host {API}:{up_port}   (value piped on stdin)");
    let out = airlock.cmd(
        &[
            "secret",
            "set",
            "DEMO_TOKEN",
            "--host",
            &format!("{API}:{up_port}"),
            "--env",
            "DEMO_TOKEN",
        ],
        Some(DEMO_VALUE),
    )?;
    check(out.ok, "secret stored encrypted; bound to one host");

    println!("3. airlock run --policy policy.toml --secret DEMO_TOKEN -- sh agent.sh");
    let script = scene.agent_script();
    let policy_s = policy.display().to_string();
    let out = airlock.cmd(
        &[
            "run",
            "--timeout",
            "60s",
            "--policy",
            &policy_s,
            "--secret",
            "DEMO_TOKEN",
            "--",
            "/bin/sh",
            "-c",
            &script,
        ],
        None,
    )?;
    let lines: Vec<&str> = out.stdout.lines().collect();
    let field = |key: &str| -> String {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(&format!("{key} ")))
            .unwrap_or("")
            .to_owned()
    };
    let handle = field("handle");
    println!("   the agent holds DEMO_TOKEN={handle}");
    check(
        handle.starts_with("alh_") && !out.stdout.contains(DEMO_VALUE),
        "the agent sees only an opaque handle, never the value",
    );
    let read = field("read");
    println!("   GET  https://{API}/repos/demo          -> {read}");
    check(read == "200 -", "allowed read reaches the upstream");
    let write = field("write");
    println!("   POST https://{API}/repos/demo/issues   -> {write}");
    check(
        write.starts_with("403 ") && seen.writes() == 0,
        "write denied by the policy before reaching the upstream",
    );
    let inject = field("inject");
    println!("   GET  https://{API}/user  (Bearer $DEMO_TOKEN) -> {inject}");
    check(
        inject == "200 -" && seen.real_token() && !seen.handle_seen(),
        "the proxy swapped the handle for the real token; the upstream got the value",
    );
    let exfil = field("exfil");
    println!("   GET  https://{EVIL}/collect (Bearer $DEMO_TOKEN) -> {exfil}");
    check(
        exfil == "403 credential_host_mismatch",
        "handle sent to a host it is not bound to: refused and audited",
    );
    let echo = field("echo");
    println!("   GET  https://{API}/echo → upstream echoes the token: {echo:?}");
    check(
        echo.contains("[SECRET:DEMO_TOKEN]") && !echo.contains(DEMO_VALUE),
        "the echoed real value reached the agent only as a placeholder",
    );
    check(out.ok, "the run ended normally");

    println!("4. airlock audit verify");
    let out = airlock.cmd(&["audit", "verify"], None)?;
    check(out.ok, "audit log hash chain and signed checkpoint verify");
    let tail = airlock.cmd(&["audit", "tail", "--json", "-n", "200"], None)?;
    let denied_cred = tail
        .stdout
        .lines()
        .filter(|l| l.contains("\"credential.denied\"") && l.contains("credential_host_mismatch"))
        .count();
    check(
        denied_cred == 1 && !tail.stdout.contains(DEMO_VALUE),
        "the audit trail records the exfiltration attempt by secret name, never the value",
    );
    println!();
    drop(scene);
    if keep {
        println!("kept {}", tmp.display());
    } else {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    if failures == 0 {
        println!("demo passed: every layer behaved as expected.");
        Ok(EXIT_OK)
    } else {
        println!("demo FAILED: {failures} check(s) did not hold (see ✘ above).");
        Ok(1)
    }
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let base = std::env::temp_dir();
    for i in 0..100u32 {
        let micros = airlock_types::Timestamp::now().as_micros();
        let p = base.join(format!("airlock-demo-{}-{micros}-{i}", std::process::id()));
        match std::fs::create_dir(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", p.display())),
        }
    }
    anyhow::bail!(
        "cannot create a temporary directory under {}",
        base.display()
    )
}

struct Airlock {
    exe: PathBuf,
    data: PathBuf,
    config: PathBuf,
    ws: PathBuf,
}

struct CmdOut {
    ok: bool,
    stdout: String,
}

impl Airlock {
    fn cmd(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<CmdOut> {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("--data-dir")
            .arg(&self.data)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .current_dir(&self.ws)
            .env_remove("AIRLOCK_ENV")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start airlock {}", args.join(" ")))?;
        if let (Some(v), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(v.as_bytes())
                .context("cannot pipe the demo secret")?;
        }
        let out = child
            .wait_with_output()
            .with_context(|| format!("airlock {}", args.join(" ")))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            for l in stderr.lines() {
                println!("   | {l}");
            }
        }
        Ok(CmdOut {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        })
    }
}
