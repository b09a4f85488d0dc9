//! The demo's script: the steps `airlock demo` plays, and the checks that
//! decide whether it passed. The binary only parses its arguments and calls
//! [`play`].

use super::{API, DEMO_VALUE, EVIL, Scene};
use crate::FixtureError;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Write one line of the demo's narrative (a closed stdout is not an error
/// worth stopping the demo for).
macro_rules! say {
    ($out:expr) => { let _ = writeln!($out); };
    ($out:expr, $($arg:tt)*) => { let _ = writeln!($out, $($arg)*); };
}

fn io(what: impl Into<String>, source: std::io::Error) -> FixtureError {
    FixtureError::Demo {
        what: what.into(),
        source,
    }
}

/// Play the demo with the `airlock` binary `exe`: in `dir` (created if
/// missing, must be empty, kept) or a fresh temporary directory (removed
/// unless `keep`), narrating to `out`. `Ok(true)` when every check held.
pub fn play(
    exe: &Path,
    dir: Option<&Path>,
    keep: bool,
    out: &mut dyn Write,
) -> Result<bool, FixtureError> {
    let keep = keep || dir.is_some();
    let tmp = match dir {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| io(format!("directory {}", d.display()), e))?;
            let empty = std::fs::read_dir(d)
                .map_err(|e| io(format!("directory {}", d.display()), e))?
                .next()
                .is_none();
            if !empty {
                return Err(FixtureError::DemoDirNotEmpty(d.to_path_buf()));
            }
            d.canonicalize()
                .map_err(|e| io(format!("directory {}", d.display()), e))?
        }
        None => tempdir()?,
    };
    let data = tmp.join("data");
    let scene = Scene::start(&tmp)?;
    let (up_port, seen, config, policy) = (
        scene.port,
        scene.seen.clone(),
        scene.config.clone(),
        scene.policy.clone(),
    );
    let ws = tmp.join("workspace");
    std::fs::create_dir_all(&ws).map_err(|e| io("demo workspace", e))?;
    let airlock = Airlock {
        exe: exe.to_path_buf(),
        data: data.clone(),
        config,
        ws,
    };
    say!(
        out,
        "Airlock demo — everything runs locally, nothing leaves this machine."
    );
    say!(out, "  data dir: {}", data.display());
    say!(
        out,
        "  upstream: https://{API}:{up_port} and https://{EVIL}:{up_port} (127.0.0.1, demo CA)"
    );
    say!(out);
    let mut failures = 0usize;
    let mut check = |out: &mut dyn Write, ok: bool, what: &str| {
        let _ = writeln!(out, "  {} {what}", if ok { "✔" } else { "✘" });
        if !ok {
            failures += 1;
        }
    };

    say!(out, "1. airlock init");
    let res = airlock.cmd(out, &["init"], None)?;
    check(out, res.ok, "data directory, audit log and keys created");

    say!(
        out,
        "2. airlock secret set DEMO_TOKEN --host {API}:{up_port}   (value piped on stdin)"
    );
    let res = airlock.cmd(
        out,
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
    check(out, res.ok, "secret stored encrypted; bound to one host");

    say!(
        out,
        "3. airlock run --policy policy.toml --secret DEMO_TOKEN -- sh agent.sh"
    );
    let script = scene.agent_script();
    let policy_s = policy.display().to_string();
    let res = airlock.cmd(
        out,
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
    let lines: Vec<&str> = res.stdout.lines().collect();
    let field = |key: &str| -> String {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(&format!("{key} ")))
            .unwrap_or("")
            .to_owned()
    };
    let handle = field("handle");
    say!(out, "   the agent holds DEMO_TOKEN={handle}");
    check(
        out,
        handle.starts_with("alh_") && !res.stdout.contains(DEMO_VALUE),
        "the agent sees only an opaque handle, never the value",
    );
    let read = field("read");
    say!(out, "   GET  https://{API}/repos/demo          -> {read}");
    check(out, read == "200 -", "allowed read reaches the upstream");
    let write = field("write");
    say!(out, "   POST https://{API}/repos/demo/issues   -> {write}");
    check(
        out,
        write.starts_with("403 ") && seen.writes() == 0,
        "write denied by the policy before reaching the upstream",
    );
    let inject = field("inject");
    say!(
        out,
        "   GET  https://{API}/user  (Bearer $DEMO_TOKEN) -> {inject}"
    );
    check(
        out,
        inject == "200 -" && seen.real_token() && !seen.handle_seen(),
        "the proxy swapped the handle for the real token; the upstream got the value",
    );
    let exfil = field("exfil");
    say!(
        out,
        "   GET  https://{EVIL}/collect (Bearer $DEMO_TOKEN) -> {exfil}"
    );
    check(
        out,
        exfil == "403 credential_host_mismatch",
        "handle sent to a host it is not bound to: refused and audited",
    );
    let echo = field("echo");
    say!(
        out,
        "   GET  https://{API}/echo → upstream echoes the token: {echo:?}"
    );
    check(
        out,
        echo.contains("[SECRET:DEMO_TOKEN]") && !echo.contains(DEMO_VALUE),
        "the echoed real value reached the agent only as a placeholder",
    );
    check(out, res.ok, "the run ended normally");

    say!(out, "4. airlock audit verify");
    let res = airlock.cmd(out, &["audit", "verify"], None)?;
    check(
        out,
        res.ok,
        "audit log hash chain and signed checkpoint verify",
    );
    let tail = airlock.cmd(out, &["audit", "tail", "--json", "-n", "200"], None)?;
    let denied_cred = tail
        .stdout
        .lines()
        .filter(|l| l.contains("\"credential.denied\"") && l.contains("credential_host_mismatch"))
        .count();
    check(
        out,
        denied_cred == 1 && !tail.stdout.contains(DEMO_VALUE),
        "the audit trail records the exfiltration attempt by secret name, never the value",
    );
    say!(out);
    drop(scene);
    if keep {
        say!(out, "kept {}", tmp.display());
        say!(
            out,
            "see its runs in the dashboard: airlock --data-dir {} serve --init-admin",
            data.display()
        );
    } else {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    if failures == 0 {
        say!(out, "demo passed: every layer behaved as expected.");
        Ok(true)
    } else {
        say!(
            out,
            "demo FAILED: {failures} check(s) did not hold (see ✘ above)."
        );
        Ok(false)
    }
}

fn tempdir() -> Result<PathBuf, FixtureError> {
    let base = std::env::temp_dir();
    for i in 0..100u32 {
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0);
        let p = base.join(format!("airlock-demo-{}-{micros}-{i}", std::process::id()));
        match std::fs::create_dir(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io(format!("directory {}", p.display()), e)),
        }
    }
    Err(io(
        format!("temporary directory under {}", base.display()),
        std::io::Error::from(std::io::ErrorKind::AlreadyExists),
    ))
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
    fn cmd(
        &self,
        out: &mut dyn Write,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<CmdOut, FixtureError> {
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
            .map_err(|e| io(format!("airlock {}", args.join(" ")), e))?;
        if let (Some(v), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(v.as_bytes())
                .map_err(|e| io("demo secret's pipe", e))?;
        }
        let done = child
            .wait_with_output()
            .map_err(|e| io(format!("airlock {}", args.join(" ")), e))?;
        if !done.status.success() {
            for l in String::from_utf8_lossy(&done.stderr).lines() {
                say!(out, "   | {l}");
            }
        }
        Ok(CmdOut {
            ok: done.status.success(),
            stdout: String::from_utf8_lossy(&done.stdout).into_owned(),
        })
    }
}
