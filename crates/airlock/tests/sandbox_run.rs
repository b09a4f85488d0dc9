//! `airlock run` positive cases and bad input: real tools (curl, Python,
//! git, pip, Node) reach an allowed local upstream only through the proxy;
//! exit codes, signals and output pass through; timeouts end runs; refusals
//! are one line, exit 2 and audited; `--explain` shows the plan.

#[path = "sandbox_support.rs"]
mod support;

use airlock_testkit::{TestCa, Upstream};
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::{Env, run_bounded};

const UPSTREAM_IP: &str = "127.0.0.2";

fn ip() -> IpAddr {
    UPSTREAM_IP.parse().expect("ip")
}

/// A policy that allows exactly the test upstream (a loopback address, so it
/// must also be exempted from the private-address guard).
fn allow_upstream_policy(env: &Env, inspect: bool, port: u16) -> String {
    let path = env.dir.path().join("policy.toml");
    std::fs::write(
        &path,
        format!(
            "mode = \"deny_all\"\ninspect_all = {inspect}\nallow_private = [\"{UPSTREAM_IP}/32\"]\n\n\
             [[rules]]\nhosts = [\"{UPSTREAM_IP}\"]\nports = [{port}]\naction = \"allow\"\n"
        ),
    )
    .expect("policy");
    path.to_str().expect("utf-8").to_owned()
}

#[test]
fn curl_and_python_reach_an_allowed_upstream_through_the_proxy() {
    let env = Env::new();
    let up = Upstream::http(ip());
    let policy = allow_upstream_policy(&env, false, up.port());
    let url = format!("http://{UPSTREAM_IP}:{}/hello?x=1", up.port());
    let out = env.run(
        &["--policy", &policy],
        &[
            "/bin/sh",
            "-c",
            &format!(
                "curl -sS --max-time 10 '{url}'; echo; python3 -c \"import urllib.request; print(urllib.request.urlopen('{url}', timeout=10).read().decode())\""
            ),
        ],
    );
    assert_eq!(out.code(), 0, "{out:?}");
    let lines: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(lines.len(), 2, "{out:?}");
    for v in &lines {
        assert_eq!(v["path"], "/hello", "{out:?}");
        assert_eq!(v["method"], "GET", "{out:?}");
    }
    assert_eq!(up.hits(), 2);
    // The proxy recorded both allowed requests under this run.
    let allowed: Vec<_> = env
        .audit_tail(40)
        .into_iter()
        .map(|r| r["event"].clone())
        .filter(|e| e["action"] == "egress.request" && e["result"] == "success")
        .collect();
    assert_eq!(allowed.len(), 2, "{allowed:#?}");
    assert!(
        allowed
            .iter()
            .all(|e| e["run_id"].as_str().is_some_and(|r| r.starts_with("run-")))
    );
}

#[test]
fn https_tools_trust_the_sandbox_bundle_through_interception() {
    let ca = TestCa::new();
    let base = Env::new();
    let ca_path = ca.write_pem(base.dir.path(), "upstream-ca.pem");
    let env = base.with_config(&format!(
        "[proxy]\nupstream_ca_file = \"{}\"\n",
        ca_path.display()
    ));
    let up = Upstream::https(ip(), &ca, &[UPSTREAM_IP]);
    let policy = allow_upstream_policy(&env, true, up.port());
    let base_url = format!("https://{UPSTREAM_IP}:{}", up.port());
    let script = format!(
        "set -e\n\
         curl -sS --max-time 10 '{base_url}/curl'; echo\n\
         python3 -c \"import urllib.request; print(urllib.request.urlopen('{base_url}/python', timeout=10).read().decode())\"\n\
         git ls-remote '{base_url}/repo.git' >/dev/null 2>git.err || true\n\
         pip download --no-deps -q --index-url '{base_url}/simple/' -d /tmp/dl airlock-nothing >/dev/null 2>pip.err || true\n\
         ! grep -i -E 'ssl|certificate|proxy' git.err pip.err\n"
    );
    let out = env.run(&["--policy", &policy], &["/bin/sh", "-c", &script]);
    assert_eq!(out.code(), 0, "{out:?}");
    let lines: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(lines.len(), 2, "{out:?}");
    assert_eq!(lines[0]["path"], "/curl");
    assert_eq!(lines[0]["scheme"], "https");
    assert_eq!(lines[1]["path"], "/python");
    // git and pip got through TLS and the proxy to the upstream (which is not
    // a git server or package index, so they then fail on the content).
    assert!(
        up.hits() >= 4,
        "upstream saw {} requests: {out:?}",
        up.hits()
    );
}

#[test]
fn node_reaches_an_allowed_upstream_through_the_proxy() {
    let env = Env::new();
    let up = Upstream::http(ip());
    let policy = allow_upstream_policy(&env, false, up.port());
    let js = format!(
        "const u = new URL(process.env.HTTP_PROXY);\n\
         require('http').get({{host: u.hostname, port: u.port, path: 'http://{UPSTREAM_IP}:{}/node'}}, r => {{\n\
           let b = ''; r.on('data', d => b += d); r.on('end', () => console.log(b));\n\
         }}).on('error', e => {{ console.log('ERR', e.message); process.exit(3); }});",
        up.port()
    );
    let out = env.run(&["--policy", &policy], &["node", "-e", &js]);
    assert_eq!(out.code(), 0, "{out:?}");
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("json");
    assert_eq!(v["path"], "/node");
    assert_eq!(up.hits(), 1);
}

#[test]
fn a_host_outside_the_policy_is_denied_and_audited() {
    let env = Env::new();
    let up = Upstream::http("127.0.0.3".parse().expect("ip"));
    let policy = allow_upstream_policy(&env, false, up.port());
    let out = env.run(
        &["--policy", &policy],
        &[
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://127.0.0.3:{}/", up.port()),
        ],
    );
    assert_eq!(out.stdout, "403", "{out:?}");
    assert_eq!(up.hits(), 0);
    let denied: Vec<_> = env
        .audit_tail(20)
        .into_iter()
        .map(|r| r["event"].clone())
        .filter(|e| e["action"] == "egress.request" && e["result"] == "denied")
        .collect();
    assert_eq!(denied.len(), 1, "{denied:#?}");
}

#[test]
fn exit_codes_pass_through() {
    let env = Env::new();
    assert_eq!(env.sh("exit 0").code(), 0);
    assert_eq!(env.sh("exit 42").code(), 42);
    assert_eq!(env.run(&[], &["false"]).code(), 1);
}

#[test]
fn death_by_signal_is_128_plus_the_signal() {
    let env = Env::new();
    assert_eq!(env.sh("kill -TERM $$").code(), 143);
    assert_eq!(env.sh("kill -KILL $$").code(), 137);
    assert_eq!(env.sh("kill -SEGV $$").code(), 139);
}

#[test]
fn sigterm_to_airlock_reaches_the_command() {
    let env = Env::new();
    let mut cmd = env.command(&[
        "run",
        "--timeout",
        "60s",
        "--",
        "python3",
        "-u",
        "-c",
        "import signal, sys, time\n\
         signal.signal(signal.SIGTERM, lambda *a: (print('got TERM'), sys.exit(7)))\n\
         print('ready')\ntime.sleep(30)\n",
    ]);
    cmd.stderr(Stdio::inherit());
    let mut child = cmd.spawn().expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().and_then(Result::ok);
    assert_eq!(first.as_deref(), Some("ready"));
    let start = Instant::now();
    airlock_sandbox::signal(child.id(), airlock_sandbox::Signal::SIGTERM);
    let second = lines.next().and_then(Result::ok);
    let status = child.wait().expect("wait");
    assert_eq!(second.as_deref(), Some("got TERM"));
    assert_eq!(status.code(), Some(7));
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn stdin_stdout_and_stderr_pass_through() {
    let env = Env::new();
    let mut cmd = env.command(&[
        "run",
        "--",
        "/bin/sh",
        "-c",
        "tr a-z A-Z; echo to-stderr >&2",
    ]);
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"hello sandbox\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "HELLO SANDBOX\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "to-stderr\n");
    assert!(out.status.success());
}

#[test]
fn workspace_is_the_only_writable_host_directory() {
    let env = Env::new();
    std::fs::write(env.ws.join("input.txt"), "data").expect("input");
    let out = env.sh("cat input.txt > /workspace/copy.txt && pwd");
    assert_eq!(out.stdout, "/workspace\n", "{out:?}");
    assert_eq!(
        std::fs::read_to_string(env.ws.join("copy.txt")).expect("copy"),
        "data"
    );
    let other = env.dir.path().join("other");
    std::fs::create_dir_all(other.join("sub")).expect("other");
    let out = env.run(
        &["--workspace", support::path_str(&other)],
        &["ls", "/workspace"],
    );
    assert_eq!(out.stdout, "sub\n", "--workspace was not used: {out:?}");
}

#[test]
fn the_agent_creates_edits_and_deletes_files_and_they_stay_the_owners() {
    let env = Env::new();
    std::fs::write(env.ws.join("keep.txt"), "v1\n").expect("keep");
    std::fs::write(env.ws.join("gone.txt"), "x").expect("gone");
    let out = env.sh(
        "echo v2 >> keep.txt && mkdir -p src/deep && echo new > src/deep/new.txt \
         && mv src/deep/new.txt src/moved.txt && rm gone.txt && rmdir src/deep \
         && chmod 600 src/moved.txt && stat -c '%u %g' keep.txt",
    );
    assert!(out.status.success(), "{out:?}");
    // Inside, the workspace owner's files are the agent's own.
    assert_eq!(out.stdout, "1000 1000\n", "{out:?}");
    assert_eq!(
        std::fs::read_to_string(env.ws.join("keep.txt")).expect("keep"),
        "v1\nv2\n"
    );
    assert!(!env.ws.join("gone.txt").exists());
    // On the host, what the agent made belongs to the workspace's owner.
    use std::os::unix::fs::MetadataExt;
    let ws = std::fs::metadata(&env.ws).expect("ws");
    let moved = std::fs::metadata(env.ws.join("src/moved.txt")).expect("moved");
    assert_eq!((moved.uid(), moved.gid()), (ws.uid(), ws.gid()));
    assert_eq!(moved.mode() & 0o7777, 0o600);
}

#[test]
fn explain_shows_the_identity_the_mounts_and_the_limits() {
    let env = Env::new();
    let out = env.airlock(&["run", "--explain", "--", "true"]);
    assert_eq!(out.code(), 0, "{out:?}");
    let ws = std::fs::canonicalize(&env.ws).expect("ws");
    let want_attach = if support::is_root() {
        format!(
            "    attach   /workspace <- {} (read-write, nosuid, nodev, no symlinks followed; id-mapped: host uid 0 gid 0 <-> agent uid 65534 gid 65534 on the host)\n",
            ws.display()
        )
    } else {
        format!(
            "    attach   /workspace <- {} (read-write, nosuid, nodev, no symlinks followed; the agent acts as the caller)\n",
            ws.display()
        )
    };
    assert!(out.stdout.contains(&want_attach), "{out:?}");
    if support::is_root() {
        assert!(
            out.stdout
                .contains("  identity:    uid 1000 gid 1000 inside = uid 65534 gid 65534 outside;"),
            "{out:?}"
        );
    }
    assert!(
        out.stdout
            .contains("  stdin:       inherited from airlock (not a terminal, or --interactive)\n"),
        "{out:?}"
    );
    assert!(
        out.stdout
            .contains("  writes:      at most 10240 MiB added"),
        "{out:?}"
    );
    assert!(out.stdout.contains("chmod(S_ISUID|S_ISGID)"), "{out:?}");
}

#[test]
fn wall_clock_timeout_ends_the_run_and_is_audited() {
    let env = Env::new();
    let start = Instant::now();
    let out = env.airlock(&["run", "--timeout", "1s", "--", "sleep", "30"]);
    assert_eq!(out.code(), 124, "{out:?}");
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(out.stderr.contains("timeout after"), "{out:?}");
    let end = env.audited("run.end", 3);
    assert_eq!(
        end.last().map(|e| e["reason"].clone()),
        Some("run_timeout".into())
    );
}

#[test]
fn idle_timeout_ends_a_silent_run() {
    let env = Env::new();
    let start = Instant::now();
    let out = env.airlock(&[
        "run",
        "--idle-timeout",
        "1s",
        "--",
        "/bin/sh",
        "-c",
        "echo started; sleep 30",
    ]);
    assert_eq!(out.code(), 124, "{out:?}");
    assert_eq!(out.stdout, "started\n");
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn env_flag_passes_named_variables_only() {
    let env = Env::new();
    let mut cmd = env.command(&[
        "run",
        "--env",
        "GREETING=hi",
        "--env",
        "FROM_HOST",
        "--",
        "/bin/sh",
        "-c",
        "echo $GREETING $FROM_HOST ${OTHER_HOST:-unset}",
    ]);
    cmd.env("FROM_HOST", "passed").env("OTHER_HOST", "leak");
    let out = run_bounded(cmd);
    assert_eq!(out.stdout, "hi passed unset\n", "{out:?}");
    let out = env.airlock(&["run", "--env", "HTTPS_PROXY=http://evil", "--", "true"]);
    assert_eq!(out.code(), 2, "{out:?}");
    assert!(out.stderr.contains("HTTPS_PROXY"), "{out:?}");
}

#[test]
fn explain_prints_the_plan_and_runs_nothing() {
    let env = Env::new();
    let out = env.airlock(&["run", "--explain", "--", "touch", "/workspace/ran"]);
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(
        out.stdout.starts_with("sandbox plan for run run-"),
        "{out:?}"
    );
    for needle in [
        "namespaces:  user, mount, pid, ipc, uts, cgroup, net",
        "tcp connect only to ports [3128]",
        "seccomp:",
    ] {
        assert!(out.stdout.contains(needle), "missing {needle:?}: {out:?}");
    }
    assert!(!env.ws.join("ran").exists(), "--explain ran the command");
    let out = env.airlock(&["run", "--explain", "--json", "--", "true"]);
    let plan: airlock_sandbox::SandboxPlan = serde_json::from_str(&out.stdout).expect("plan json");
    assert_eq!(plan.argv, vec!["true".to_owned()]);
    assert_eq!(plan.landlock.connect_tcp, vec![3128]);
}

#[test]
fn attestation_records_what_applied() {
    let env = Env::new();
    let out = env.airlock(&["run", "--explain", "--json", "--", "true"]);
    let plan: airlock_sandbox::SandboxPlan = serde_json::from_str(&out.stdout).expect("plan json");
    assert_eq!(env.run(&[], &["true"]).code(), 0);
    let att = env
        .audited("sandbox.attestation", 5)
        .pop()
        .expect("attestation event");
    let d = &att["details"];
    assert_eq!(d["init"]["seccomp"]["digest"], plan.seccomp_digest.as_str());
    assert_eq!(d["init"]["landlock"]["status"], "fully_enforced");
    assert_eq!(
        d["init"]["landlock"]["connect_tcp"],
        serde_json::json!([3128])
    );
    assert_eq!(d["init"]["capabilities"]["bounding"], serde_json::json!([]));
    assert_eq!(d["init"]["no_new_privs"], true);
    assert_eq!(d["init"]["namespaces"].as_array().map(Vec::len), Some(7));
    assert!(
        d["cgroup"]["dirs"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{att:#}"
    );
    assert_eq!(d["skipped"], serde_json::json!([]));
    let end = env.audited("run.end", 5).pop().expect("run.end");
    assert_eq!(end["details"]["exit_status"], 0);
    assert!(end["details"]["pids_peak"].as_u64().is_some(), "{end:#}");
}

/// A refusal: one line on stderr, exit 2, a `sandbox.refused` audit record naming the control.
#[track_caller]
fn assert_refused(env: &Env, out: &support::Out, control: &str, needle: &str) {
    assert_eq!(out.code(), 2, "{out:?}");
    assert_eq!(
        out.stderr.trim_end().lines().count(),
        1,
        "not one line: {out:?}"
    );
    assert!(out.stderr.contains(needle), "{out:?}");
    let refused = env
        .audited("sandbox.refused", 3)
        .pop()
        .expect("refusal audited");
    assert_eq!(refused["details"]["control"], control, "{refused:#}");
    assert_eq!(refused["reason"], "sandbox_control_failed");
}

#[test]
fn missing_command_is_refused() {
    let env = Env::new();
    let out = env.airlock(&["run"]);
    assert_refused(&env, &out, "command", "no command given");
}

#[test]
fn command_that_does_not_exist_is_refused() {
    let env = Env::new();
    let out = env.airlock(&["run", "--", "no-such-command-xyz"]);
    assert_refused(
        &env,
        &out,
        "command",
        "\"no-such-command-xyz\" could not be started",
    );
}

#[test]
fn workspace_that_is_not_a_directory_is_refused() {
    let env = Env::new();
    let file = env.dir.path().join("file.txt");
    std::fs::write(&file, "x").expect("file");
    let out = env.airlock(&["run", "--workspace", support::path_str(&file), "--", "true"]);
    assert_refused(&env, &out, "workspace", "not a directory");
    let out = env.airlock(&["run", "--workspace", "/nonexistent/dir", "--", "true"]);
    assert_refused(&env, &out, "workspace", "No such file or directory");
}

#[test]
fn home_directory_workspace_is_refused_with_a_hint() {
    let env = Env::new();
    let mut cmd = env.command(&["run", "--", "true"]);
    cmd.current_dir(&env.home);
    let out = run_bounded(cmd);
    let home = std::fs::canonicalize(&env.home).expect("home");
    assert_refused(
        &env,
        &out,
        "workspace",
        &format!(
            "refusing to run: workspace {0}: is the home directory {0} (the agent would read ~/.ssh, Airlock's data and everything else there); run from a project directory or pass --workspace DIR",
            home.display()
        ),
    );
}

#[test]
fn root_directory_workspace_is_refused_with_a_hint() {
    let env = Env::new();
    let mut cmd = env.command(&["run", "--", "true"]);
    cmd.current_dir("/");
    let out = run_bounded(cmd);
    assert_refused(
        &env,
        &out,
        "workspace",
        "refusing to run: workspace /: the agent would read and write the whole host; run from a project directory or pass --workspace DIR",
    );
}

#[test]
fn a_pipe_on_stdin_is_still_passed() {
    let env = Env::new();
    let mut cmd = env.command(&["run", "--", "cat"]);
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"x\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "x\n");
    assert!(out.status.success());
}

#[test]
fn output_to_a_pipe_is_passed_byte_for_byte() {
    let env = Env::new();
    let out = env.sh("printf 'a\\033[31mb\\007\\n'");
    assert_eq!(out.stdout, "a\u{1b}[31mb\u{7}\n", "{out:?}");
}

#[test]
fn missing_policy_file_is_refused() {
    let env = Env::new();
    let out = env.airlock(&["run", "--policy", "/nonexistent/policy.toml", "--", "true"]);
    assert_refused(
        &env,
        &out,
        "policy",
        "/nonexistent/policy.toml: does not exist",
    );
}

#[test]
fn production_mode_refuses_the_weaker_sandbox_flag() {
    let env = Env::new();
    let mut cmd = env.command(&["run", "--dangerously-allow-weaker-sandbox", "--", "true"]);
    cmd.env("AIRLOCK_ENV", "production");
    let out = run_bounded(cmd);
    assert_eq!(out.code(), 2, "{out:?}");
    assert!(out.stderr.contains("production mode refuses"), "{out:?}");
}

#[test]
fn killing_airlock_kills_the_whole_sandbox() {
    // If the supervisor dies (and with it the proxy listener), nothing it
    // started may live on: stage 1 and pid 1 die with their parent, and the
    // PID namespace dies with pid 1.
    let env = Env::new();
    let marker = format!("{}.{}", 40 + std::process::id() % 50, std::process::id());
    let mut cmd = env.command(&[
        "run",
        "--",
        "/bin/sh",
        "-c",
        &format!("sleep {marker} & echo ready; wait"),
    ]);
    cmd.stderr(Stdio::inherit());
    let mut child = cmd.spawn().expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("ready"));
    let alive = || {
        std::fs::read_dir("/proc")
            .expect("proc")
            .filter_map(Result::ok)
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .any(|c| String::from_utf8_lossy(&c).contains(&marker))
    };
    assert!(alive(), "test setup: the sleep is not running");
    child.kill().expect("kill airlock");
    let _ = child.wait();
    let start = Instant::now();
    while alive() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(), "a sandboxed process outlived airlock");
    // A killed supervisor cannot remove its (now empty) cgroups: do it here.
    let att = env
        .audited("sandbox.attestation", 5)
        .pop()
        .expect("attestation");
    for dir in att["details"]["cgroup"]["dirs"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let _ = std::fs::remove_dir(dir.as_str().unwrap_or_default());
    }
}

#[test]
fn first_run_without_init_initializes_a_private_data_directory() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let env = Env {
        data: dir.path().join("never-initialized"),
        ws: dir.path().join("ws"),
        home: dir.path().join("home"),
        config: None,
        dir,
    };
    std::fs::create_dir_all(&env.ws).expect("ws");
    std::fs::create_dir_all(&env.home).expect("home");
    assert!(!env.data.exists());

    let out = env.run(&[], &["true"]);
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(
        out.stderr
            .contains("not initialized; initializing it as `airlock init` would"),
        "{out:?}"
    );
    let mode = |p: &str| {
        std::fs::metadata(env.data.join(p))
            .unwrap_or_else(|e| panic!("{p}: {e}"))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(""), 0o700, "data directory");
    assert_eq!(mode("keys"), 0o700, "key directory");
    assert_eq!(mode("airlock.db"), 0o600, "database");
    assert_eq!(mode("airlock.toml"), 0o600, "configuration");
    assert_eq!(mode("keys/audit-signing.key"), 0o600, "audit signing key");
    assert_eq!(mode("keys/master.key"), 0o600, "vault master key");

    // Initialized as `init` leaves it: init has nothing left to do, the log
    // verifies, and it holds the init record and the run.
    let again = env.airlock(&["init"]);
    assert!(
        again
            .stdout
            .contains("already initialized; nothing changed"),
        "{again:?}"
    );
    let verify = env.airlock(&["audit", "verify"]);
    assert_eq!(verify.code(), 0, "{verify:?}");
    assert_eq!(env.audited("cli.init", 50).len(), 1);
    assert_eq!(env.audited("run.start", 50).len(), 1);

    // A second run finds it initialized and says nothing about it.
    let second = env.run(&[], &["true"]);
    assert_eq!(second.code(), 0, "{second:?}");
    assert!(!second.stderr.contains("initializing"), "{second:?}");

    // An empty directory made for it (mode 0755 from `mkdir`) works the same
    // and ends up private.
    let made = env.dir.path().join("made-by-mkdir");
    std::fs::create_dir(&made).expect("mkdir");
    std::fs::set_permissions(&made, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut cmd = env.command(&["run", "--timeout", "60s", "--", "true"]);
    cmd.env("AIRLOCK_DATA_DIR", &made);
    let out = support::run_bounded(cmd);
    assert_eq!(out.code(), 0, "{out:?}");
    let mode = std::fs::metadata(&made).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{out:?}");
    assert!(made.join("airlock.db").exists() && made.join("keys/master.key").exists());
}
