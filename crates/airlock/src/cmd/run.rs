//! `airlock run -- CMD`: run a command in the sandbox with network only
//! through the embedded egress proxy.
//!
//! Order: load config (production rules) → open the audit log → resolve the
//! inputs (workspace, policy, environment) → grant the `--secret`s (handles
//! into the environment; a guard revokes them when the run returns) → start
//! the proxy (its CA goes into the sandbox's trust bundle; with credentials
//! it gets the broker and intercepts every CONNECT) → build the plan
//! (`--explain` stops here) → preflight → start the sandbox → attest → serve the proxy on the listener
//! the init bound inside the sandbox, pump output, enforce timeouts, forward
//! signals → record the end. Any refusal is audited and exits 2.

use crate::auditing::{self, Auditor};
use crate::config::ProxySettings;
use crate::ctx::{Ctx, EXIT_OK};
use airlock_proxy::Proxy;
use airlock_sandbox::{HostFacts, PlanInput, SandboxPlan, Signal, Timeouts};
use airlock_types::{Actor, ActorKind, AuditEvent, EventResult, Reason, RunId};
use anyhow::Context as _;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Exit status when a timeout ended the run (as timeout(1) does).
const EXIT_TIMEOUT: u8 = 124;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Egress policy file (replaces the configuration's `[policy]`; default policy: read_public).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Directory mounted read-write at /workspace [default: the current directory].
    #[arg(long, value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// Pass an environment variable to the command: NAME (its value here) or NAME=VALUE. Repeatable.
    #[arg(long = "env", value_name = "NAME[=VALUE]")]
    pub env: Vec<String>,
    /// Grant the run this vault secret (repeatable): the command gets an `alh_…` handle in the secret's `--env` variable, and the proxy swaps in the real value only for the hosts the secret is bound to.
    #[arg(long = "secret", value_name = "NAME")]
    pub secrets: Vec<String>,
    /// End the run after this long (`90s`, `10m`, `2h`, or seconds).
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// End the run after this long without output [default: sandbox.idle_timeout_secs, 30m].
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,
    /// Print the sandbox plan and exit without running anything.
    #[arg(long)]
    pub explain: bool,
    /// With --explain: print the plan as JSON.
    #[arg(long, requires = "explain")]
    pub json: bool,
    /// Give the command Airlock's terminal as its standard input. Without it, a terminal on stdin is replaced by /dev/null (a pipe or file is always passed).
    #[arg(long)]
    pub interactive: bool,
    /// Copy the command's output to a terminal byte for byte. Without it, when stdout/stderr is a terminal, escape sequences and other control characters in the command's output are shown (`^[`) instead of sent.
    #[arg(long)]
    pub raw_output: bool,
    /// DEVELOPMENT ONLY: run even when Landlock or cgroups are unavailable (recorded in the attestation). Refused in production mode.
    #[arg(long)]
    pub dangerously_allow_weaker_sandbox: bool,
    /// The command and its arguments (after `--`).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1),
        Some((i, 'm')) => (&s[..i], 60),
        Some((i, 'h')) => (&s[..i], 3600),
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (use e.g. 90s, 10m, 2h)"))?;
    if n == 0 {
        return Err("must be greater than zero".into());
    }
    Ok(Duration::from_secs(n.saturating_mul(mult)))
}

fn event(
    run: &RunId,
    action: &str,
    resource: impl Into<String>,
    reason: Reason,
    result: EventResult,
) -> AuditEvent {
    AuditEvent::new(
        auditing::tenant(),
        Actor::new(ActorKind::Operator, "cli"),
        action,
        resource,
        reason,
        result,
    )
    .with_run(run.clone())
}

/// Audit a refusal and turn it into the command's error (exit 2).
fn refuse(auditor: &Auditor, run: &RunId, control: &str, msg: String) -> anyhow::Error {
    let ev = event(
        run,
        "sandbox.refused",
        control,
        Reason::SandboxControlFailed,
        EventResult::Failure,
    )
    .with_detail("control", control)
    .with_detail("error", msg.clone());
    if let Err(e) = auditor.record(ev) {
        return e.context(msg);
    }
    anyhow::anyhow!("refusing to run: {msg}")
}

fn new_run_id() -> RunId {
    let micros = airlock_types::Timestamp::now().as_micros();
    RunId::new(format!("run-{micros}-{}", std::process::id()))
        .expect("invariant: digits and dashes form a valid id")
}

fn resolve_workspace(arg: Option<&Path>) -> Result<PathBuf, String> {
    let raw = match arg {
        Some(p) => p.to_owned(),
        None => std::env::current_dir()
            .map_err(|e| format!("workspace: cannot read the current directory: {e}"))?,
    };
    let canon = std::fs::canonicalize(&raw).map_err(|e| {
        format!(
            "workspace {}: {e} (pass an existing directory with --workspace)",
            raw.display()
        )
    })?;
    if !canon.is_dir() {
        return Err(format!(
            "workspace {}: not a directory (pass a directory with --workspace)",
            raw.display()
        ));
    }
    Ok(canon)
}

/// First use just works: on a data directory `airlock init` never set up,
/// set it up as `init` would, saying so on stderr. Production mode expects
/// explicit set-up (a missing data directory there is more likely a volume
/// that did not mount than a first run) and keeps refusing; so does a
/// configuration file the user named that does not exist.
fn first_use(ctx: &Ctx) -> anyhow::Result<()> {
    if ctx.production
        || ctx.db_path().exists()
        || (ctx.config_explicit && !ctx.config_path.exists())
    {
        return Ok(());
    }
    eprintln!(
        "airlock: {}: not initialized; initializing it as `airlock init` would",
        ctx.data_dir.display()
    );
    // An empty directory made for Airlock (`mkdir`, umask 022) becomes
    // private like one init creates; a directory with anything in it is left
    // as it is (production mode's check names it).
    let empty = std::fs::read_dir(&ctx.data_dir).is_ok_and(|mut d| d.next().is_none());
    if empty {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&ctx.data_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("{}: cannot set mode 0700", ctx.data_dir.display()))?;
    }
    let done = crate::datadir::initialize(ctx)?;
    for c in &done.created {
        eprintln!("airlock: created {c}");
    }
    Ok(())
}

/// Refuse a workspace that is `/`, a system or shared directory, a home, or
/// that contains (or lies inside) what Airlock depends on: the data
/// directory, the configuration, the policy file, key files, the upstream CA
/// file, the `airlock` binary itself.
fn check_workspace(ctx: &Ctx, args: &RunArgs, ws: PathBuf) -> Result<PathBuf, String> {
    let master_key = crate::master_key::master_key_path(ctx);
    let audit_key = ctx.audit_key_path();
    let upstream_ca = configured_upstream_ca(&ctx.config_path);
    let exe = std::env::current_exe().ok();
    let mut paths: Vec<(&str, &Path)> = vec![
        ("the Airlock data directory", &ctx.data_dir),
        ("the configuration file", &ctx.config_path),
        ("the vault master key", &master_key),
        ("the audit signing key", &audit_key),
    ];
    if let Some(p) = &args.policy {
        paths.push(("the policy file", p));
    }
    if let Some(p) = &upstream_ca {
        paths.push(("the upstream CA file", p));
    }
    if let Some(p) = &exe {
        paths.push(("the airlock binary", p));
    }
    let protected = airlock_sandbox::workspace::Protected::gather(&paths);
    airlock_sandbox::workspace::check(&ws, &protected).map_err(|e| e.to_string())?;
    Ok(ws)
}

/// `proxy.upstream_ca_file` as written in the configuration file, if any
/// (the validated settings keep only the certificates it held).
fn configured_upstream_ca(config: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(config).ok()?;
    let table: toml::Table = toml::from_str(&text).ok()?;
    let path = table.get("proxy")?.get("upstream_ca_file")?.as_str()?;
    Some(PathBuf::from(path))
}

fn resolve_env(args: &[String], passthrough: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for name in passthrough {
        if let Ok(v) = std::env::var(name) {
            out.push((name.clone(), v));
        }
    }
    for a in args {
        match a.split_once('=') {
            Some((k, v)) => out.push((k.to_owned(), v.to_owned())),
            None => match std::env::var(a) {
                Ok(v) => out.push((a.clone(), v)),
                Err(_) => {
                    return Err(format!(
                        "--env {a}: not set in this environment (use --env {a}=VALUE)"
                    ));
                }
            },
        }
    }
    Ok(out)
}

pub fn run(ctx: &Ctx, args: RunArgs) -> anyhow::Result<u8> {
    first_use(ctx)?;
    let cfg = crate::production::load_checked_config(ctx)?;
    if ctx.production && args.dangerously_allow_weaker_sandbox {
        crate::production::refuse_weaker_sandbox()?;
    }
    let auditor = auditing::open(ctx, &cfg)?;
    let run_id = new_run_id();
    let sb = &cfg.sandbox;

    let workspace = resolve_workspace(args.workspace.as_deref())
        .and_then(|ws| check_workspace(ctx, &args, ws))
        .map_err(|m| refuse(&auditor, &run_id, "workspace", m))?;
    // The extra paths the configuration grants are held to the same rules.
    for p in sb.read_only.iter().chain(&sb.read_write) {
        let resolved = airlock_sandbox::workspace::resolve(p);
        check_workspace(ctx, &args, resolved).map_err(|m| {
            let m = m
                .replacen(
                    "workspace ",
                    &format!("sandbox extra path {} -> ", p.display()),
                    1,
                )
                .replace(
                    "run from a project directory or pass --workspace DIR",
                    "remove it from sandbox.read_only / sandbox.read_write",
                );
            refuse(&auditor, &run_id, "workspace", m)
        })?;
    }
    if let Some(p) = &args.policy
        && !p.is_file()
    {
        let msg = format!(
            "policy file {}: does not exist (check the path given to --policy)",
            p.display()
        );
        return Err(refuse(&auditor, &run_id, "policy", msg));
    }
    let policy = ProxySettings::policy(&cfg.policy, args.policy.as_deref())
        .map_err(|e| refuse(&auditor, &run_id, "policy", e.to_string()))?;
    let mut extra_env = resolve_env(&args.env, &sb.env_passthrough)
        .map_err(|m| refuse(&auditor, &run_id, "environment", m))?;
    // Credentials: the run holds handles, never values. The guard revokes
    // every handle when `run` returns, on every path.
    let creds = grant_secrets(ctx, &args.secrets, &run_id)
        .map_err(|e| refuse(&auditor, &run_id, "secrets", format!("{e:#}")))?;
    let mut granted_names = Vec::new();
    if let Some((_, _, minted)) = &creds {
        for m in minted {
            granted_names.push(m.name.clone());
            if let Some(var) = &m.env {
                extra_env.retain(|(k, _)| k != var);
                extra_env.push((var.clone(), m.handle.expose().clone()));
            }
        }
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let policy = Arc::new(policy);
    let (proxy, out_scrubber) = match &creds {
        None => (
            Proxy::new(
                cfg.proxy.proxy.clone(),
                policy,
                auditor.sink(),
                Some(run_id.clone()),
            )
            .context("cannot start the egress proxy")?,
            None,
        ),
        Some((broker, _, _)) => {
            // A handle in a blind tunnel would go out unchecked: with
            // credentials, every allowed CONNECT is intercepted.
            let mut pcfg = cfg.proxy.proxy.clone();
            pcfg.intercept_all = true;
            let proxy = Proxy::with_credentials(
                pcfg,
                policy,
                auditor.sink(),
                run_id.clone(),
                broker.clone(),
            )
            .context("cannot start the egress proxy")?;
            let mut b = airlock_scrub::Scrubber::builder().only(airlock_scrub::Category::Secret);
            for k in broker.run_secrets(&run_id) {
                b = b.known_secret(&k.name, &k.value);
            }
            let scrubber = b
                .build()
                .context("cannot build the output scrubber for the run's secrets")?;
            (proxy, Some(scrubber))
        }
    };

    let input = PlanInput {
        run_id: run_id.to_string(),
        argv: args.command.clone(),
        workspace,
        extra_env,
        extra_ro: sb.read_only.clone(),
        extra_rw: sb.read_write.clone(),
        min_landlock_abi: sb.min_landlock_abi,
        proxy_port: sb.proxy_port,
        proxy_ca_pem: proxy.ca_cert_pem(),
        cgroup: airlock_sandbox::CgroupLimits {
            memory_bytes: sb.memory_bytes,
            pids_max: sb.pids_max,
            cpu_percent: sb.cpu_percent,
        },
        timeouts: Timeouts {
            wall_secs: args.timeout.or(sb.timeout).map_or(0, |d| d.as_secs()),
            idle_secs: args
                .idle_timeout
                .or(sb.idle_timeout)
                .map_or(0, |d| d.as_secs()),
        },
        max_file_bytes: sb.max_file_bytes,
        max_open_files: sb.max_open_files,
        tmpfs_bytes: sb.tmpfs_bytes,
        max_write_bytes: sb.max_write_bytes,
        host_uid: sb.host_uid,
        host_gid: sb.host_gid,
        interactive: args.interactive,
        allow_weaker: args.dangerously_allow_weaker_sandbox,
    };
    let mut facts = HostFacts::probe();
    facts.probe_owners(
        std::iter::once(input.workspace.as_path())
            .chain(input.extra_rw.iter().map(PathBuf::as_path)),
    );
    let plan = SandboxPlan::build(&input, &facts).map_err(|e| {
        let control = if matches!(e, airlock_sandbox::PlanError::NoCommand) {
            "command"
        } else {
            "plan"
        };
        refuse(&auditor, &run_id, control, e.to_string())
    })?;
    if args.explain {
        if args.json {
            println!("{}", plan.to_json_pretty());
        } else {
            print!("{plan}");
        }
        drop(rt);
        auditor.close()?;
        return Ok(EXIT_OK);
    }

    let pre = airlock_sandbox::preflight(&plan)
        .map_err(|e| refuse(&auditor, &run_id, e.control(), e.to_string()))?;
    let write_watch = airlock_sandbox::WriteWatch::new(&plan)
        .map_err(|e| refuse(&auditor, &run_id, e.control(), e.to_string()))?;
    let exe = PathBuf::from("/proc/self/exe");
    let mut running = airlock_sandbox::start(&plan, &exe, &pre)
        .map_err(|e| refuse(&auditor, &run_id, e.control(), e.to_string()))?;
    let attestation =
        serde_json::to_value(running.attestation()).context("cannot encode the attestation")?;
    let attest_event = event(
        &run_id,
        "sandbox.attestation",
        &plan.argv[0],
        Reason::Recorded,
        EventResult::Success,
    );
    let attest_event = match attestation {
        serde_json::Value::Object(map) => AuditEvent {
            details: map,
            ..attest_event
        },
        _ => attest_event,
    };
    // Only the program name and argument count: arguments may carry secrets.
    let start_event = event(
        &run_id,
        "run.start",
        &plan.argv[0],
        Reason::RunStarted,
        EventResult::Success,
    )
    .with_detail("argc", plan.argv.len())
    .with_detail("workspace", plan.workspace.display().to_string())
    .with_detail("secrets", granted_names);
    if let Err(e) = auditor
        .record(attest_event)
        .and_then(|_| auditor.record(start_event))
    {
        running.kill();
        let _ = running.wait();
        return Err(e.context("refusing to run: the audit log cannot record the run"));
    }

    let listener = running
        .take_listener()
        .context("invariant: the sandbox passes its proxy listener")?;
    let stdout = running.take_stdout();
    let stderr = running.take_stderr();
    let pid = running.pid();
    let started = Instant::now();
    let (outcome, ended_by) = rt.block_on(supervise(SuperviseParts {
        proxy: &proxy,
        listener,
        stdout,
        stderr,
        scrubber: out_scrubber,
        running,
        pid,
        write_watch,
        terminal_out: !args.raw_output && std::io::stdout().is_terminal(),
        terminal_err: !args.raw_output && std::io::stderr().is_terminal(),
        wall: (plan.timeouts.wall_secs > 0).then(|| Duration::from_secs(plan.timeouts.wall_secs)),
        idle: (plan.timeouts.idle_secs > 0).then(|| Duration::from_secs(plan.timeouts.idle_secs)),
    }))?;
    drop(rt);
    // The run is over: revoke its handles before recording the end.
    drop(creds);

    let (reason, result) = match ended_by {
        EndedBy::Exit => (Reason::RunEnded, EventResult::Success),
        EndedBy::WallTimeout | EndedBy::IdleTimeout => (Reason::RunTimeout, EventResult::Failure),
        EndedBy::WriteLimit => (Reason::LimitExceeded, EventResult::Failure),
    };
    let mut end = event(&run_id, "run.end", &plan.argv[0], reason, result)
        .with_detail("exit_status", outcome.exit_code)
        .with_detail("duration_ms", outcome.duration_ms)
        .with_detail("ended_by", ended_by.as_str())
        .with_detail("max_rss_kib", outcome.max_rss_kib)
        .with_detail("cpu_ms", outcome.cpu_ms);
    if let Some(m) = outcome.peaks.memory_bytes {
        end = end.with_detail("memory_peak_bytes", m);
    }
    if let Some(p) = outcome.peaks.pids {
        end = end.with_detail("pids_peak", p);
    }
    auditor.record(end)?;
    auditor.close()?;
    match ended_by {
        EndedBy::Exit => Ok(outcome.exit_code),
        EndedBy::WallTimeout => {
            eprintln!(
                "airlock: run {run_id} ended: timeout after {}s",
                started.elapsed().as_secs()
            );
            Ok(EXIT_TIMEOUT)
        }
        EndedBy::IdleTimeout => {
            eprintln!(
                "airlock: run {run_id} ended: no output for {}s",
                plan.timeouts.idle_secs
            );
            Ok(EXIT_TIMEOUT)
        }
        EndedBy::WriteLimit => {
            eprintln!(
                "airlock: run {run_id} ended: it wrote more than sandbox.max_write_mib ({} MiB)",
                plan.write_limit_bytes >> 20
            );
            Ok(outcome.exit_code)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndedBy {
    Exit,
    WallTimeout,
    IdleTimeout,
    WriteLimit,
}

impl EndedBy {
    fn as_str(self) -> &'static str {
        match self {
            EndedBy::Exit => "exit",
            EndedBy::WallTimeout => "timeout",
            EndedBy::IdleTimeout => "idle_timeout",
            EndedBy::WriteLimit => "write_limit",
        }
    }
}

struct SuperviseParts<'a> {
    proxy: &'a Proxy,
    listener: std::net::TcpListener,
    stdout: Option<std::process::ChildStdout>,
    stderr: Option<std::process::ChildStderr>,
    scrubber: Option<airlock_scrub::Scrubber>,
    running: airlock_sandbox::Running,
    pid: u32,
    write_watch: airlock_sandbox::WriteWatch,
    terminal_out: bool,
    terminal_err: bool,
    wall: Option<Duration>,
    idle: Option<Duration>,
}

/// How long output may sit in the scrubber's hold-back before it is flushed
/// (by ending the scrub stream and starting a new one). A match split across
/// such a pause is not seen; see `grant_secrets`.
const SCRUB_FLUSH_AFTER: Duration = Duration::from_millis(150);

/// How often the supervisor measures what the run wrote to disk.
const WRITE_POLL: Duration = Duration::from_millis(100);

/// Copy one output stream of the agent to ours, noting when output last
/// came; through `scrubber` when the run holds secrets, then, when `terminal`
/// (ours is a terminal and `--raw-output` was not given), through a filter
/// that shows control characters instead of sending them. A scrubber failure
/// stops the copy (fail closed).
async fn pump<R, W>(
    mut from: R,
    mut to: W,
    last: Arc<AtomicU64>,
    origin: Instant,
    scrubber: Option<airlock_scrub::Scrubber>,
    terminal: bool,
) where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    let mut stream = scrubber.as_ref().map(|s| s.stream());
    let mut pending = false;
    let mut filter = terminal.then(airlock_sandbox::terminal::TerminalFilter::new);
    let mut show = |bytes: Vec<u8>| match filter.as_mut() {
        Some(f) => f.push(&bytes),
        None => bytes,
    };
    loop {
        let read = if pending {
            tokio::time::timeout(SCRUB_FLUSH_AFTER, from.read(&mut buf))
                .await
                .ok()
        } else {
            Some(from.read(&mut buf).await)
        };
        let n = match read {
            // Quiet: flush what the scrubber holds back.
            None => {
                pending = false;
                let (Some(s), Some(sc)) = (stream.take(), scrubber.as_ref()) else {
                    continue;
                };
                stream = Some(sc.stream());
                match s.finish() {
                    Ok((out, _)) => {
                        let out = show(out);
                        if to.write_all(&out).await.is_err() || to.flush().await.is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                }
                continue;
            }
            Some(Ok(0)) | Some(Err(_)) => break,
            Some(Ok(n)) => n,
        };
        last.store(
            u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let out = match stream.as_mut() {
            None => buf[..n].to_vec(),
            Some(s) => match s.push(&buf[..n]) {
                Ok(out) => {
                    pending = true;
                    out
                }
                Err(_) => return,
            },
        };
        let out = show(out);
        if to.write_all(&out).await.is_err() || to.flush().await.is_err() {
            return;
        }
    }
    let mut tail = Vec::new();
    if let Some(s) = stream
        && let Ok((out, _)) = s.finish()
    {
        tail = show(out);
    }
    if let Some(f) = filter {
        tail.extend(f.finish());
    }
    let _ = to.write_all(&tail).await;
    let _ = to.flush().await;
}

/// A run's credentials: the broker, the guard that revokes the handles when
/// dropped, and the handles.
type Creds = (
    Arc<airlock_broker::Broker>,
    airlock_broker::RunGuard,
    Vec<airlock_broker::MintedHandle>,
);

/// Grant the run the secrets named with `--secret`: each must exist in the
/// vault and have an environment variable to carry its handle. Returns the
/// broker, the guard that revokes the handles when dropped, and the handles.
///
/// Rule: a run gets exactly the secrets named on its command line, nothing
/// by default; the agent sees only handles. The agent's stdout and stderr
/// then pass through a scrubber with the real values and the built-in
/// credential rules (no PII). Output is flushed after a pause of
/// `SCRUB_FLUSH_AFTER`, so a match that the agent splits across such a pause
/// is not masked — the agent never receives real values (the proxy scrubs
/// responses), so this is defence in depth only.
fn grant_secrets(ctx: &Ctx, names: &[String], run: &RunId) -> anyhow::Result<Option<Creds>> {
    if names.is_empty() {
        return Ok(None);
    }
    ctx.require_initialized()?;
    let mut unique: Vec<&str> = Vec::new();
    for n in names {
        airlock_broker::validate_name(n)?;
        if !unique.contains(&n.as_str()) {
            unique.push(n);
        }
    }
    let mut vault = crate::master_key::open_vault(ctx)?;
    let grants = vault
        .grants(&auditing::tenant(), &unique)
        .context("--secret: cannot grant the run its secrets (see `airlock secret list`)")?;
    for g in &grants {
        if g.binding().env.is_none() {
            anyhow::bail!(
                "--secret {}: the secret has no environment variable for its handle (set one with `airlock secret set {} --env VAR ...`)",
                g.name(),
                g.name()
            );
        }
    }
    let broker = Arc::new(airlock_broker::Broker::new());
    let (guard, minted) = broker
        .start_run_guarded(run, grants, airlock_broker::RunLimits::default())
        .context("cannot mint credential handles")?;
    Ok(Some((broker, guard, minted)))
}

async fn supervise(
    p: SuperviseParts<'_>,
) -> anyhow::Result<(airlock_sandbox::RunOutcome, EndedBy)> {
    let origin = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    p.listener
        .set_nonblocking(true)
        .context("cannot configure the proxy listener")?;
    let listener =
        tokio::net::TcpListener::from_std(p.listener).context("cannot adopt the proxy listener")?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serve = p.proxy.serve(listener, async {
        let _ = stop_rx.await;
    });
    let mut pumps = Vec::new();
    if let Some(out) = p.stdout {
        let out = tokio::process::ChildStdout::from_std(out)
            .context("cannot adopt the command's stdout")?;
        pumps.push(tokio::spawn(pump(
            out,
            tokio::io::stdout(),
            last.clone(),
            origin,
            p.scrubber.clone(),
            p.terminal_out,
        )));
    }
    if let Some(err) = p.stderr {
        let err = tokio::process::ChildStderr::from_std(err)
            .context("cannot adopt the command's stderr")?;
        pumps.push(tokio::spawn(pump(
            err,
            tokio::io::stderr(),
            last.clone(),
            origin,
            p.scrubber.clone(),
            p.terminal_err,
        )));
    }
    let running = p.running;
    let mut wait = tokio::task::spawn_blocking(move || running.wait());
    let mut sigs = Vec::new();
    for (kind, sig) in [
        (tokio::signal::unix::SignalKind::interrupt(), Signal::SIGINT),
        (
            tokio::signal::unix::SignalKind::terminate(),
            Signal::SIGTERM,
        ),
        (tokio::signal::unix::SignalKind::hangup(), Signal::SIGHUP),
        (tokio::signal::unix::SignalKind::quit(), Signal::SIGQUIT),
    ] {
        let s = tokio::signal::unix::signal(kind).context("cannot install signal handlers")?;
        sigs.push((s, sig));
    }
    let (sig_tx, mut sig_rx) = tokio::sync::mpsc::channel::<Signal>(8);
    for (mut s, sig) in sigs {
        let tx = sig_tx.clone();
        tokio::spawn(async move {
            while s.recv().await.is_some() {
                if tx.send(sig).await.is_err() {
                    break;
                }
            }
        });
    }
    let wall = async {
        match p.wall {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(wall);
    tokio::pin!(serve);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut disk_tick = tokio::time::interval(WRITE_POLL);
    let mut ended_by = EndedBy::Exit;
    let mut serving = true;
    let outcome = loop {
        tokio::select! {
            r = &mut wait => break r.context("the sandbox waiter failed")??,
            () = &mut wall, if ended_by == EndedBy::Exit => {
                ended_by = EndedBy::WallTimeout;
                airlock_sandbox::signal(p.pid, Signal::SIGKILL);
            }
            _ = tick.tick(), if ended_by == EndedBy::Exit && p.idle.is_some() => {
                let idle = p.idle.unwrap_or(Duration::MAX);
                let quiet = origin.elapsed().saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
                if quiet >= idle {
                    ended_by = EndedBy::IdleTimeout;
                    airlock_sandbox::signal(p.pid, Signal::SIGKILL);
                }
            }
            _ = disk_tick.tick(), if ended_by == EndedBy::Exit => {
                if p.write_watch.exceeded() {
                    ended_by = EndedBy::WriteLimit;
                    airlock_sandbox::signal(p.pid, Signal::SIGKILL);
                }
            }
            Some(sig) = sig_rx.recv() => airlock_sandbox::signal(p.pid, sig),
            r = &mut serve, if serving => {
                serving = false;
                if let Err(e) = r {
                    eprintln!("airlock: egress proxy stopped: {e}; the sandbox has no network now");
                }
            }
        }
    };
    let _ = stop_tx.send(());
    if serving {
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut serve).await;
    }
    for pump in pumps {
        let _ = tokio::time::timeout(Duration::from_secs(2), pump).await;
    }
    Ok((outcome, ended_by))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("0s").is_err());
    }
}
