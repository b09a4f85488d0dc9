//! One run: grant, proxy, plan, start, supervise, record.
//!
//! Order: open the tenant's audit log → resolve the inputs (workspace,
//! policy, environment) → grant the secrets (handles into the environment;
//! a guard revokes them when the run ends) → start the proxy (its CA goes
//! into the sandbox's trust bundle; with credentials it gets the broker and
//! intercepts every CONNECT; the caller's hooks run before the credentials
//! hook) → build the plan ([`Prepared::plan`] for `--explain`) → preflight →
//! start the sandbox → attest and record `run.start` ([`Started`]) → serve
//! the proxy on the listener the init bound inside the sandbox, pump output,
//! enforce timeouts, pass signals on → revoke, record `run.end`
//! ([`Ended`]). Every refusal is recorded as `sandbox.refused`.

use crate::audit::{self, Auditor};
use crate::settings::approvals::ApprovalsSettings;
use crate::settings::gateway::GatewaySettings;
pub use crate::supervise::EndedBy;
use crate::supervise::{self, Notice, Out, SuperviseParts};
use crate::{Home, RuntimeError};
use airlock_hook::Hook;
use airlock_policy::EgressPolicy;
use airlock_proxy::{Proxy, ProxyConfig, Scope};
use airlock_sandbox::{HostFacts, PlanInput, SandboxPlan, Signal, Timeouts};
use airlock_types::{Action, AuditEvent, EventResult, Reason, RunContext, RunId};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The audit log's checkpoint settings and where its records live.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// A signed checkpoint every this many records.
    pub checkpoint_every: u64,
    /// And at least this often.
    pub checkpoint_interval: Duration,
    /// The store (`[store]`): PostgreSQL when configured, else the data
    /// directory's SQLite database.
    pub store: crate::settings::store::StoreSettings,
}

/// The sandbox a run gets, validated (the CLI reads it from `[sandbox]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSettings {
    /// Extra paths mounted read-only.
    pub read_only: Vec<PathBuf>,
    /// Extra paths mounted read-write.
    pub read_write: Vec<PathBuf>,
    /// Environment variables passed through from the front end's environment.
    pub env_passthrough: Vec<String>,
    /// cgroup memory limit.
    pub memory_bytes: u64,
    /// cgroup process limit.
    pub pids_max: u64,
    /// cgroup CPU share.
    pub cpu_percent: u32,
    /// Largest file the command may write.
    pub max_file_bytes: u64,
    /// Most open files.
    pub max_open_files: u64,
    /// Size of the private /tmp.
    pub tmpfs_bytes: u64,
    /// Most the run may write to disk in total.
    pub max_write_bytes: u64,
    /// The uid the command's files belong to on the host.
    pub host_uid: u32,
    /// The gid the command's files belong to on the host.
    pub host_gid: u32,
    /// Lowest Landlock ABI accepted.
    pub min_landlock_abi: u8,
    /// The proxy's port inside the sandbox.
    pub proxy_port: u16,
    /// Default wall-clock timeout.
    pub timeout: Option<Duration>,
    /// Default idle timeout.
    pub idle_timeout: Option<Duration>,
}

/// Everything a run needs, as the front end resolved it.
pub struct RunSpec {
    /// Whose run it is; stamped on every audit event of the run.
    pub context: RunContext,
    /// The command and its arguments.
    pub argv: Vec<String>,
    /// The directory mounted read-write at /workspace; `None`: `cwd`.
    pub workspace: Option<PathBuf>,
    /// The front end's current directory.
    pub cwd: Option<PathBuf>,
    /// The policy, or why it could not be loaded (refused as `policy`).
    pub policy: Result<EgressPolicy, String>,
    /// The policy file, when one was named (the workspace may not hold it).
    pub policy_file: Option<PathBuf>,
    /// Other files the workspace may not contain (the configuration's
    /// upstream CA file, the front end's own binary), each with its name.
    pub protected: Vec<(String, PathBuf)>,
    /// Variables for the command: `NAME` (its value in [`Home::env`]) or `NAME=VALUE`.
    pub env: Vec<String>,
    /// The vault secrets to grant (as handles).
    pub secrets: Vec<String>,
    /// Wall-clock timeout (else the sandbox settings').
    pub timeout: Option<Duration>,
    /// Idle timeout (else the sandbox settings').
    pub idle_timeout: Option<Duration>,
    /// Give the command the front end's terminal as stdin.
    pub interactive: bool,
    /// Run without Landlock or cgroups when they are missing (development).
    pub allow_weaker: bool,
    /// The proxy's configuration.
    pub proxy: ProxyConfig,
    /// The sandbox's settings.
    pub sandbox: SandboxSettings,
    /// The audit log's settings.
    pub audit: AuditSettings,
    /// Hooks on the run's intercepted HTTP path, in order, before the
    /// credentials hook (an LLM gateway adds its own here).
    pub hooks: Vec<Arc<dyn Hook>>,
    /// The LLM gateway's settings: requests to its providers' hosts go
    /// through the gateway engine (redaction, budgets, idempotency) ahead
    /// of every other hook. `None`: no gateway on this run's path.
    pub gateway: Option<GatewaySettings>,
    /// Approvals: how long proposals live and wait, the agent's autonomy,
    /// the lethal-trifecta guard's labels. Every run's proxy gets the
    /// approvals hook (just before the credentials hook).
    pub approvals: ApprovalsSettings,
    /// The program the sandbox re-executes as its init: one that calls
    /// `airlock_sandbox::init_entry()` first thing (the `airlock` binary).
    pub init_exe: PathBuf,
}

impl std::fmt::Debug for RunSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunSpec")
            .field("context", &self.context)
            .field("argc", &self.argv.len())
            .field("workspace", &self.workspace)
            .field("secrets", &self.secrets)
            .field("hooks", &self.hooks.len())
            .finish_non_exhaustive()
    }
}

/// Where a run's output goes and how it is shown.
pub struct RunIo {
    /// The command's stdout goes here.
    pub stdout: Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
    /// The command's stderr goes here.
    pub stderr: Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
    /// Show control characters in stdout instead of sending them (a terminal).
    pub terminal_out: bool,
    /// The same for stderr.
    pub terminal_err: bool,
    /// Pass this process's SIGINT, SIGTERM, SIGHUP and SIGQUIT to the run
    /// (the CLI). A server leaves this off and uses [`Started::signals`].
    pub forward_process_signals: bool,
    /// Messages for the operator (the CLI prints them on stderr).
    pub notice: Notice,
}

impl std::fmt::Debug for RunIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunIo")
            .field("terminal_out", &self.terminal_out)
            .field("terminal_err", &self.terminal_err)
            .field("forward_process_signals", &self.forward_process_signals)
            .finish_non_exhaustive()
    }
}

/// A run's credentials: the broker, the guard that revokes the handles when
/// dropped, and the handles.
type Creds = (
    Arc<airlock_broker::Broker>,
    airlock_broker::RunGuard,
    Vec<airlock_broker::MintedHandle>,
);

/// Starts runs. Rule for secrets: a run gets exactly the secrets its spec
/// names, nothing by default; the agent sees only handles. The agent's
/// stdout and stderr then pass through a scrubber with the real values and
/// the built-in credential rules (no PII). Output is flushed after a pause
/// of 150 ms, so a match that the agent splits across such a pause is not
/// masked — the agent never receives real values (the proxy scrubs
/// responses), so this is defence in depth only.
#[derive(Debug)]
pub struct Run;

/// A run whose inputs are checked, secrets granted, proxy built and plan made.
pub struct Prepared {
    ctx: RunContext,
    auditor: Auditor,
    plan: SandboxPlan,
    proxy: Proxy,
    creds: Option<Creds>,
    scrubber: Option<airlock_scrub::Scrubber>,
    granted: Vec<String>,
    init_exe: PathBuf,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("ctx", &self.ctx)
            .field("granted", &self.granted)
            .finish_non_exhaustive()
    }
}

/// A running sandbox whose start is recorded.
pub struct Started {
    prepared: Prepared,
    running: airlock_sandbox::Running,
    write_watch: airlock_sandbox::WriteWatch,
    signals: (
        tokio::sync::mpsc::Sender<Signal>,
        tokio::sync::mpsc::Receiver<Signal>,
    ),
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started")
            .field("prepared", &self.prepared)
            .field("pid", &self.running.pid())
            .finish_non_exhaustive()
    }
}

/// How a run ended (its `run.end` is recorded).
#[derive(Debug, Clone)]
pub struct Ended {
    /// The run.
    pub run: RunId,
    /// What ended it.
    pub ended_by: EndedBy,
    /// The command's exit status (128 + signal when killed).
    pub exit_code: u8,
    /// How long it ran.
    pub elapsed: Duration,
    /// The idle timeout in force, in seconds (0: none).
    pub idle_secs: u64,
    /// The write limit in force, in bytes.
    pub write_limit_bytes: u64,
}

/// A new run id: `run-<micros>-<pid>-<random>`. The random part (from the
/// standard library's per-instance hash keys, no global state) keeps two
/// runs started in the same microsecond by one process apart.
pub fn new_run_id() -> RunId {
    use std::hash::{BuildHasher as _, Hasher as _};
    let micros = airlock_types::Timestamp::now().as_micros();
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    RunId::new(format!(
        "run-{micros}-{}-{:08x}",
        std::process::id(),
        random as u32
    ))
    .expect("invariant: digits, hex and dashes form a valid id")
}

fn event(
    ctx: &RunContext,
    action: Action,
    resource: impl Into<String>,
    reason: Reason,
    result: EventResult,
) -> AuditEvent {
    AuditEvent::new(
        ctx.tenant.clone(),
        ctx.actor.clone(),
        action,
        resource,
        reason,
        result,
    )
    .with_context(ctx)
}

/// Audit a refusal and turn it into the run's error.
fn refuse(auditor: &Auditor, ctx: &RunContext, control: &str, msg: String) -> RuntimeError {
    let ev = event(
        ctx,
        Action::SandboxRefused,
        control,
        Reason::SandboxControlFailed,
        EventResult::Failure,
    )
    .with_detail("control", control)
    .with_detail("error", msg.clone());
    if let Err(e) = auditor.record(ev) {
        return RuntimeError::RefusedUnrecorded {
            message: msg,
            source: Box::new(e),
        };
    }
    RuntimeError::Refused(msg)
}

fn resolve_workspace(arg: Option<&Path>, cwd: Option<&Path>) -> Result<PathBuf, String> {
    let raw = match (arg, cwd) {
        (Some(p), _) => p.to_owned(),
        (None, Some(c)) => c.to_owned(),
        (None, None) => {
            return Err("workspace: cannot read the current directory".into());
        }
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

/// Refuse a workspace that is `/`, a system or shared directory, a home, or
/// that contains (or lies inside) what Airlock depends on: the data
/// directory, the configuration, the policy file, key files, and what the
/// front end names (the upstream CA file, the `airlock` binary itself).
fn check_workspace(home: &Home, spec: &RunSpec, ws: PathBuf) -> Result<PathBuf, String> {
    let master_key = home.master_key_path();
    let audit_key = home.audit_key_path();
    let mut paths: Vec<(&str, &Path)> = vec![
        ("the Airlock data directory", &home.data_dir),
        ("the configuration file", &home.config_path),
        ("the vault master key", &master_key),
        ("the audit signing key", &audit_key),
    ];
    if let Some(p) = &spec.policy_file {
        paths.push(("the policy file", p));
    }
    for (name, p) in &spec.protected {
        paths.push((name, p));
    }
    let protected = airlock_sandbox::workspace::Protected::gather(&paths);
    airlock_sandbox::workspace::check(&ws, &protected).map_err(|e| e.to_string())?;
    Ok(ws)
}

fn resolve_env(
    env: &std::collections::HashMap<String, String>,
    args: &[String],
    passthrough: &[String],
) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for name in passthrough {
        if let Some(v) = env.get(name) {
            out.push((name.clone(), v.clone()));
        }
    }
    for a in args {
        match a.split_once('=') {
            Some((k, v)) => out.push((k.to_owned(), v.to_owned())),
            None => match env.get(a) {
                Some(v) => out.push((a.clone(), v.clone())),
                None => {
                    return Err(format!(
                        "--env {a}: not set in this environment (use --env {a}=VALUE)"
                    ));
                }
            },
        }
    }
    Ok(out)
}

/// Grant the run the named secrets: each must exist in the vault and have
/// an environment variable to carry its handle.
fn grant_secrets(
    home: &Home,
    ctx: &RunContext,
    names: &[String],
    prompt: crate::master_key::Prompt<'_>,
) -> Result<Option<Creds>, String> {
    if names.is_empty() {
        return Ok(None);
    }
    home.require_initialized().map_err(|e| e.chain())?;
    let mut unique: Vec<&str> = Vec::new();
    for n in names {
        airlock_broker::validate_name(n).map_err(|e| e.to_string())?;
        if !unique.contains(&n.as_str()) {
            unique.push(n);
        }
    }
    let mut vault = crate::master_key::open_vault(home, prompt).map_err(|e| e.chain())?;
    let grants = vault.grants(&ctx.tenant, &unique).map_err(|e| {
        format!("--secret: cannot grant the run its secrets (see `airlock secret list`): {e}")
    })?;
    for g in &grants {
        if g.binding().env.is_none() {
            return Err(format!(
                "--secret {}: the secret has no environment variable for its handle (set one with `airlock secret set {} --env VAR ...`)",
                g.name(),
                g.name()
            ));
        }
    }
    let broker = Arc::new(airlock_broker::Broker::new());
    let (guard, minted) = broker
        .start_run_guarded(&ctx.run, grants, airlock_broker::RunLimits::default())
        .map_err(|e| format!("cannot mint credential handles: {e}"))?;
    Ok(Some((broker, guard, minted)))
}

impl Run {
    /// Check the inputs, grant the secrets, build the proxy and the plan.
    /// `prompt` asks for the vault's passphrase when the environment does
    /// not give it. Nothing runs yet.
    pub fn prepare(
        home: &Home,
        mut spec: RunSpec,
        prompt: crate::master_key::Prompt<'_>,
    ) -> Result<Prepared, RuntimeError> {
        let ctx = spec.context.clone();
        let auditor = audit::open(home, &ctx.tenant, &spec.audit)?;
        let sb = spec.sandbox.clone();
        let refuse = |control: &str, m: String| refuse(&auditor, &ctx, control, m);

        let workspace = resolve_workspace(spec.workspace.as_deref(), spec.cwd.as_deref())
            .and_then(|ws| check_workspace(home, &spec, ws))
            .map_err(|m| refuse("workspace", m))?;
        // The extra paths the configuration grants are held to the same rules.
        for p in sb.read_only.iter().chain(&sb.read_write) {
            let resolved = airlock_sandbox::workspace::resolve(p);
            check_workspace(home, &spec, resolved).map_err(|m| {
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
                refuse("workspace", m)
            })?;
        }
        let policy = std::mem::replace(&mut spec.policy, Err(String::new()))
            .map_err(|m| refuse("policy", m))?;
        let mut extra_env = resolve_env(&home.env, &spec.env, &sb.env_passthrough)
            .map_err(|m| refuse("environment", m))?;
        // Credentials: the run holds handles, never values. The guard
        // revokes every handle when the run ends, on every path.
        let creds =
            grant_secrets(home, &ctx, &spec.secrets, prompt).map_err(|m| refuse("secrets", m))?;
        let mut granted = Vec::new();
        if let Some((_, _, minted)) = &creds {
            for m in minted {
                granted.push(m.name.clone());
                if let Some(var) = &m.env {
                    extra_env.retain(|(k, _)| k != var);
                    extra_env.push((var.clone(), m.handle.expose().clone()));
                }
            }
        }

        // The LLM gateway sits first on the path, when the policy lets the
        // run reach one of its providers at all.
        if let Some(g) = &spec.gateway {
            let hook = crate::gateway::run_hook(home, g, &policy, &ctx, auditor.sink())
                .map_err(|e| refuse("gateway", e.chain()))?;
            if let Some(h) = hook {
                spec.hooks.insert(0, h);
            }
        }
        // Approvals: an `ask` is held for a reviewer, and the autonomy and
        // lethal-trifecta checks run on every request, just before the
        // credentials hook (the reviewer sees handles, never values).
        let services = crate::approvals::for_home(home, auditor.sink(), &spec.approvals)
            .map_err(|e| refuse("approvals", e.chain()))?;
        let policy = Arc::new(policy.with_approvals(true));
        let guard = crate::approvals::egress_guard(
            &services,
            policy.clone(),
            auditor.sink(),
            &spec.approvals,
            &ctx,
        );
        spec.hooks.push(Arc::new(guard));
        // A hook must see every request it may act on: no blind tunnels.
        if !spec.hooks.is_empty() {
            spec.proxy.intercept_all = true;
        }
        let (mut proxy, scrubber) = match &creds {
            None => (
                Proxy::new(
                    spec.proxy.clone(),
                    policy,
                    auditor.sink(),
                    Scope::Run(ctx.clone()),
                )
                .map_err(RuntimeError::Proxy)?,
                None,
            ),
            Some((broker, _, _)) => {
                // A handle in a blind tunnel would go out unchecked: with
                // credentials, every allowed CONNECT is intercepted.
                let mut pcfg = spec.proxy.clone();
                pcfg.intercept_all = true;
                let proxy = Proxy::with_credentials(
                    pcfg,
                    policy,
                    auditor.sink(),
                    ctx.clone(),
                    broker.clone(),
                )
                .map_err(RuntimeError::Proxy)?;
                let mut b =
                    airlock_scrub::Scrubber::builder().only(airlock_scrub::Category::Secret);
                for k in broker.run_secrets(&ctx.run) {
                    b = b.known_secret(&k.name, &k.value);
                }
                (proxy, Some(b.build().map_err(RuntimeError::Scrubber)?))
            }
        };
        for h in std::mem::take(&mut spec.hooks) {
            proxy = proxy.with_hook(h).map_err(RuntimeError::Hook)?;
        }

        let input = PlanInput {
            run_id: ctx.run.to_string(),
            argv: spec.argv.clone(),
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
                wall_secs: spec.timeout.or(sb.timeout).map_or(0, |d| d.as_secs()),
                idle_secs: spec
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
            interactive: spec.interactive,
            allow_weaker: spec.allow_weaker,
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
            refuse(control, e.to_string())
        })?;
        Ok(Prepared {
            ctx,
            auditor,
            plan,
            proxy,
            creds,
            scrubber,
            granted,
            init_exe: spec.init_exe,
        })
    }
}

impl Prepared {
    /// The sandbox plan (what `--explain` prints).
    pub fn plan(&self) -> &SandboxPlan {
        &self.plan
    }

    /// Speak to the command over its stdin and stdout (an MCP tool server):
    /// stdin becomes a pipe and stdout is handed to the caller by
    /// [`Started::take_stdio`] instead of being pumped, so it is not
    /// scrubbed here. Returns the run's secrets (name and value) for the
    /// caller's own scrubbing of what it reads.
    pub fn pipe_stdio(&mut self) -> Vec<(String, airlock_types::Secret<String>)> {
        self.plan.stdin = airlock_sandbox::StdinSource::Piped;
        self.scrubber = None;
        match &self.creds {
            Some((broker, _, _)) => broker
                .run_secrets(&self.ctx.run)
                .into_iter()
                .map(|k| (k.name, k.value))
                .collect(),
            None => Vec::new(),
        }
    }

    /// Stop here without running anything: revoke, close the audit log.
    pub fn close(self) -> Result<(), RuntimeError> {
        drop(self.creds);
        self.auditor.close()
    }

    /// Preflight, start the sandbox, record the attestation and `run.start`.
    /// A run whose start cannot be recorded is killed.
    pub fn start(self) -> Result<Started, RuntimeError> {
        let refuse = |control: &str, m: String| refuse(&self.auditor, &self.ctx, control, m);
        let pre = airlock_sandbox::preflight(&self.plan)
            .map_err(|e| refuse(e.control(), e.to_string()))?;
        let write_watch = airlock_sandbox::WriteWatch::new(&self.plan)
            .map_err(|e| refuse(e.control(), e.to_string()))?;
        let mut running = airlock_sandbox::start(&self.plan, &self.init_exe, &pre)
            .map_err(|e| refuse(e.control(), e.to_string()))?;
        let attestation = match serde_json::to_value(running.attestation()) {
            Ok(a) => a,
            Err(e) => {
                running.kill();
                let _ = running.wait();
                return Err(RuntimeError::Attestation(e));
            }
        };
        let argv0 = self.plan.argv[0].clone();
        let attest_event = event(
            &self.ctx,
            Action::SandboxAttestation,
            &argv0,
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
            &self.ctx,
            Action::RunStart,
            &argv0,
            Reason::RunStarted,
            EventResult::Success,
        )
        .with_detail("argc", self.plan.argv.len())
        .with_detail("workspace", self.plan.workspace.display().to_string())
        .with_detail("secrets", self.granted.clone());
        if let Err(e) = self
            .auditor
            .record(attest_event)
            .and_then(|_| self.auditor.record(start_event))
        {
            running.kill();
            let _ = running.wait();
            return Err(RuntimeError::StartUnrecorded(Box::new(e)));
        }
        Ok(Started {
            prepared: self,
            running,
            write_watch,
            signals: tokio::sync::mpsc::channel(8),
        })
    }
}

impl Started {
    /// The run's context.
    pub fn context(&self) -> &RunContext {
        &self.prepared.ctx
    }

    /// The command's stdin and stdout, after [`Prepared::pipe_stdio`]
    /// (then [`Started::wait`] supervises it without pumping stdout).
    pub fn take_stdio(
        &mut self,
    ) -> (
        Option<std::process::ChildStdin>,
        Option<std::process::ChildStdout>,
    ) {
        (self.running.take_stdin(), self.running.take_stdout())
    }

    /// A channel to signal the run's command (a server's "stop" button).
    pub fn signals(&self) -> tokio::sync::mpsc::Sender<Signal> {
        self.signals.0.clone()
    }

    /// Supervise the run to its end on its own async runtime (blocking the
    /// calling thread), then revoke its handles and record `run.end`.
    pub fn wait(self, io: RunIo) -> Result<Ended, RuntimeError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|source| RuntimeError::Supervise {
                what: "cannot start the async runtime",
                source,
            })?;
        let Started {
            prepared,
            mut running,
            write_watch,
            signals: (_tx, rx),
        } = self;
        let p = &prepared;
        let Some(listener) = running.take_listener() else {
            running.kill();
            let _ = running.wait();
            return Err(RuntimeError::Supervise {
                what: "invariant: the sandbox passes its proxy listener",
                source: std::io::Error::other("no listener"),
            });
        };
        let stdout = running.take_stdout();
        let stderr = running.take_stderr();
        let pid = running.pid();
        let started = Instant::now();
        let plan = &p.plan;
        let (outcome, ended_by) = rt.block_on(supervise::supervise(SuperviseParts {
            proxy: &p.proxy,
            listener,
            stdout,
            stderr,
            scrubber: p.scrubber.clone(),
            running,
            pid,
            write_watch,
            out: io.stdout as Out,
            err: io.stderr as Out,
            terminal_out: io.terminal_out,
            terminal_err: io.terminal_err,
            wall: (plan.timeouts.wall_secs > 0)
                .then(|| Duration::from_secs(plan.timeouts.wall_secs)),
            idle: (plan.timeouts.idle_secs > 0)
                .then(|| Duration::from_secs(plan.timeouts.idle_secs)),
            signals: rx,
            process_signals: io.forward_process_signals,
            notice: io.notice,
        }))?;
        drop(rt);
        let Prepared {
            ctx,
            auditor,
            plan,
            creds,
            ..
        } = prepared;
        // The run is over: revoke its handles before recording the end.
        drop(creds);

        let (reason, result) = match ended_by {
            EndedBy::Exit => (Reason::RunEnded, EventResult::Success),
            EndedBy::WallTimeout | EndedBy::IdleTimeout => {
                (Reason::RunTimeout, EventResult::Failure)
            }
            EndedBy::WriteLimit => (Reason::LimitExceeded, EventResult::Failure),
        };
        let mut end = event(&ctx, Action::RunEnd, &plan.argv[0], reason, result)
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
        Ok(Ended {
            run: ctx.run,
            ended_by,
            exit_code: outcome.exit_code,
            elapsed: started.elapsed(),
            idle_secs: plan.timeouts.idle_secs,
            write_limit_bytes: plan.write_limit_bytes,
        })
    }
}
