//! The MCP gateway's runtime side: each stdio tool server is its own
//! [`Run`] (its own sandbox, egress policy, granted handles and audit
//! records, under the gateway's tenant with the actor `mcp:SERVER`), with
//! stdin and stdout piped to the gateway; and the entry points that serve
//! the gateway over stdio or streamable HTTP.
//!
//! The approver and the taint tracker are parameters: the lead wires the
//! approval service and the store-backed tracker in by passing them here.

use crate::run::{AuditSettings, Run, RunIo, RunSpec, SandboxSettings, new_run_id};
use crate::{Home, RuntimeError};
use airlock_mcp::config::{McpConfig, ServerConfig, Transport};
use airlock_mcp::{Gateway, Launcher, Parts, Pipes, SqlitePins};
use airlock_proxy::ProxyConfig;
use airlock_types::{
    Actor, ActorKind, AgentId, Approver, EventSink, RunContext, RunId, TaintTracker, TenantId,
};
use std::path::PathBuf;
use std::sync::Arc;

/// Starts stdio tool servers, each in its own sandboxed run.
#[derive(Debug, Clone)]
pub struct SandboxLauncher {
    /// The data directory and environment.
    pub home: Home,
    /// The tenant the servers' runs belong to.
    pub tenant: TenantId,
    /// The sandbox settings (timeouts are cleared: a server lives as long
    /// as the gateway uses it).
    pub sandbox: SandboxSettings,
    /// The proxy configuration.
    pub proxy: ProxyConfig,
    /// The audit settings.
    pub audit: AuditSettings,
    /// The program the sandbox re-executes as its init (`/proc/self/exe`).
    pub init_exe: PathBuf,
}

impl Launcher for SandboxLauncher {
    fn launch(&self, server: &ServerConfig) -> Result<Pipes, String> {
        let Transport::Stdio {
            command,
            workspace,
            env,
        } = &server.transport
        else {
            return Err("not a stdio server".into());
        };
        let workspace = match workspace {
            Some(w) => w.clone(),
            None => {
                let d = std::env::temp_dir().join(format!(
                    "airlock-mcp-{}-{}",
                    server.name,
                    std::process::id()
                ));
                std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
                d
            }
        };
        let mut sandbox = self.sandbox.clone();
        sandbox.timeout = None;
        sandbox.idle_timeout = None;
        let ctx = RunContext::new(
            self.tenant.clone(),
            new_run_id(),
            Actor::new(ActorKind::System, format!("mcp:{}", server.name)),
        );
        let spec = RunSpec {
            context: ctx,
            argv: command.clone(),
            workspace: Some(workspace),
            cwd: None,
            policy: Ok(server.policy.clone()),
            policy_file: None,
            protected: Vec::new(),
            env: env.clone(),
            secrets: server.secrets.clone(),
            timeout: None,
            idle_timeout: None,
            interactive: false,
            allow_weaker: false,
            proxy: self.proxy.clone(),
            sandbox,
            audit: self.audit.clone(),
            hooks: Vec::new(),
            gateway: None,
            // A tool server is its own run: an `ask` in its policy is held
            // for a reviewer like any run's (default lifetimes, no autonomy).
            approvals: Default::default(),
            init_exe: self.init_exe.clone(),
        };
        // No terminal to ask on (stdin may be the protocol): the vault's
        // passphrase must come from the environment.
        let prompt = || Err("no terminal: set AIRLOCK_PASSPHRASE or use a key file".to_owned());
        let mut prepared = Run::prepare(&self.home, spec, &prompt).map_err(|e| e.to_string())?;
        let known_secrets = prepared.pipe_stdio();
        let mut started = prepared.start().map_err(|e| e.to_string())?;
        let (stdin, stdout) = started.take_stdio();
        let (Some(stdin), Some(stdout)) = (stdin, stdout) else {
            return Err("invariant: the sandbox pipes stdin and stdout".into());
        };
        let signals = started.signals();
        let name = server.name.clone();
        std::thread::Builder::new()
            .name(format!("mcp-{name}"))
            .spawn(move || {
                let io = RunIo {
                    stdout: Box::new(tokio::io::sink()),
                    stderr: Box::new(tokio::io::stderr()),
                    terminal_out: false,
                    terminal_err: false,
                    forward_process_signals: false,
                    notice: Arc::new(move |m: &str| tracing::info!(server = name, "{m}")),
                };
                if let Err(e) = started.wait(io) {
                    tracing::warn!("tool server run ended with an error: {e}");
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(Pipes {
            stdin: std::fs::File::from(std::os::fd::OwnedFd::from(stdin)),
            stdout: std::fs::File::from(std::os::fd::OwnedFd::from(stdout)),
            stop: Box::new(move || {
                let _ = signals.try_send(airlock_sandbox::Signal::SIGKILL);
            }),
            known_secrets,
        })
    }
}

/// Who a front session is.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// The tenant.
    pub tenant: TenantId,
    /// The agent (`--agent`, else `[mcp] agent`).
    pub agent: Option<String>,
    /// Join this run (its taint and audit trail) instead of a new one.
    pub run: Option<String>,
}

impl SessionOptions {
    /// A context for a new session.
    pub fn context(&self) -> Result<RunContext, RuntimeError> {
        let run = match &self.run {
            Some(r) => {
                RunId::new(r.clone()).map_err(|e| RuntimeError::Refused(format!("--run: {e}")))?
            }
            None => new_run_id(),
        };
        let mut ctx = RunContext::new(
            self.tenant.clone(),
            run,
            Actor::new(ActorKind::Agent, "mcp"),
        );
        if let Some(a) = &self.agent {
            ctx = ctx.with_agent(
                AgentId::new(a.clone())
                    .map_err(|e| RuntimeError::Refused(format!("--agent: {e}")))?,
            );
        }
        Ok(ctx)
    }
}

/// Build the gateway (inside a tokio runtime): pins in the tenant's
/// database, the given approver and taint tracker.
pub fn gateway(
    home: &Home,
    cfg: McpConfig,
    launcher: Arc<dyn Launcher>,
    sink: Arc<dyn EventSink>,
    approver: Arc<dyn Approver>,
    taint: Arc<dyn TaintTracker>,
    tenant: &TenantId,
) -> Result<Arc<Gateway>, RuntimeError> {
    let store = airlock_store::SqliteStore::open(&home.db_path()).map_err(RuntimeError::Store)?;
    let pins = Arc::new(SqlitePins::new(store, tenant.clone()));
    Gateway::new(
        cfg,
        Parts {
            launcher,
            sink,
            approver,
            taint,
            pins,
            tenant: tenant.clone(),
        },
    )
    .map_err(|e| RuntimeError::Refused(e.to_string()))
}

/// Serve one stdio session on this process's stdin/stdout until stdin ends.
pub async fn serve_stdio(gw: Arc<Gateway>, ctx: RunContext) {
    airlock_mcp::front::serve_stdio(gw, ctx, tokio::io::stdin(), tokio::io::stdout()).await;
}

/// Serve streamable HTTP on `listener` until SIGINT/SIGTERM; each new
/// session gets a context from `opts`.
pub async fn serve_http(gw: Arc<Gateway>, listener: tokio::net::TcpListener, opts: SessionOptions) {
    let new_context: airlock_mcp::front::NewContext = Arc::new(move || {
        opts.context().unwrap_or_else(|_| {
            RunContext::new(
                opts.tenant.clone(),
                new_run_id(),
                Actor::new(ActorKind::Agent, "mcp"),
            )
        })
    });
    airlock_mcp::front::serve_http(
        gw,
        listener,
        new_context,
        crate::standalone::shutdown_signal(),
    )
    .await;
}

/// One tool as `airlock mcp tools` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ToolState {
    /// `SERVER.TOOL`.
    pub name: String,
    /// SHA-256 of its current definition.
    pub sha256: String,
    /// `pinned`, `unpinned` or `changed`.
    pub state: &'static str,
    /// The pinned hash, when one exists.
    pub pinned_sha256: Option<String>,
}

/// List every configured server's tools with their pin state (the servers
/// are started to ask them).
pub async fn tools(
    home: &Home,
    cfg: &McpConfig,
    launcher: Arc<dyn Launcher>,
    tenant: &TenantId,
) -> Result<Vec<ToolState>, RuntimeError> {
    let store = airlock_store::SqliteStore::open(&home.db_path()).map_err(RuntimeError::Store)?;
    let mut out = Vec::new();
    for s in &cfg.servers {
        let defs = airlock_mcp::list_server(s, launcher.clone(), cfg)
            .await
            .map_err(|e| RuntimeError::Refused(e.to_string()))?;
        for d in defs {
            let tool = d
                .get("name")
                .and_then(|n| n.as_str())
                .unwrap_or_default()
                .to_owned();
            let sha = airlock_mcp::pin::definition_hash(&d);
            let pin = store
                .mcp_pin(tenant, &s.name, &tool)
                .map_err(RuntimeError::Store)?;
            let state = match &pin {
                None => "unpinned",
                Some(p) if p.sha256 == sha => "pinned",
                Some(_) => "changed",
            };
            out.push(ToolState {
                name: format!("{}.{tool}", s.name),
                sha256: sha,
                state,
                pinned_sha256: pin.map(|p| p.sha256),
            });
        }
    }
    Ok(out)
}

/// Pin `SERVER.TOOL` at its current definition; with `expect`, only if the
/// current definition's hash is that one. Audited as `mcp.tool_pinned`.
pub async fn pin(
    home: &Home,
    cfg: &McpConfig,
    launcher: Arc<dyn Launcher>,
    sink: Arc<dyn EventSink>,
    tenant: &TenantId,
    name: &str,
    expect: Option<&str>,
) -> Result<String, RuntimeError> {
    let refused = |m: String| RuntimeError::Refused(m);
    let (server, tool) = name
        .split_once('.')
        .ok_or_else(|| refused(format!("{name}: name a tool as SERVER.TOOL")))?;
    let s = cfg
        .servers
        .iter()
        .find(|s| s.name == server)
        .ok_or_else(|| refused(format!("{name}: no server {server} in [[mcp.servers]]")))?;
    let defs = airlock_mcp::list_server(s, launcher, cfg)
        .await
        .map_err(|e| refused(e.to_string()))?;
    let def = defs
        .iter()
        .find(|d| d.get("name").and_then(|n| n.as_str()) == Some(tool))
        .ok_or_else(|| refused(format!("{name}: server {server} has no tool {tool}")))?;
    let sha = airlock_mcp::pin::definition_hash(def);
    if let Some(e) = expect
        && !e.eq_ignore_ascii_case(&sha)
    {
        return Err(refused(format!(
            "{name}: its current definition hashes to {sha}, not {e}; nothing pinned"
        )));
    }
    let mut store =
        airlock_store::SqliteStore::open(&home.db_path()).map_err(RuntimeError::Store)?;
    store
        .mcp_set_pin(
            tenant,
            &airlock_store::ToolPin {
                server: server.into(),
                tool: tool.into(),
                sha256: sha.clone(),
                definition: airlock_mcp::pin::canonical_definition(def),
                pinned_by: "operator".into(),
                pinned_at: airlock_types::Timestamp::now().as_micros(),
            },
        )
        .map_err(RuntimeError::Store)?;
    let ev = airlock_types::AuditEvent::new(
        tenant.clone(),
        Actor::new(ActorKind::Operator, "cli"),
        airlock_types::Action::McpToolPinned,
        name,
        airlock_types::Reason::Recorded,
        airlock_types::EventResult::Success,
    )
    .with_detail("sha256", sha.clone())
    .with_detail("pinned_by", "operator");
    sink.emit(ev)
        .map_err(|e| refused(format!("the pin was stored but could not be audited: {e}")))?;
    Ok(sha)
}

/// What `airlock mcp` needs from the configuration.
#[derive(Debug, Clone)]
pub struct McpSetup {
    /// `[mcp]`.
    pub mcp: McpConfig,
    /// The tenant.
    pub tenant: TenantId,
    /// Where stdio servers run.
    pub launcher: SandboxLauncher,
}

/// `airlock mcp serve`: stdio, or streamable HTTP on `listen` (its address
/// is passed to `ready`). Blocks until stdin ends or SIGINT/SIGTERM. The
/// approver and taint tracker are the caller's (the approval service and
/// the store-backed tracker once wired; `NoApprover` refuses every ask).
#[allow(clippy::too_many_arguments)]
pub fn serve(
    home: &Home,
    setup: McpSetup,
    sink: Arc<dyn EventSink>,
    listen: Option<std::net::SocketAddr>,
    opts: SessionOptions,
    approver: Arc<dyn Approver>,
    taint: Arc<dyn TaintTracker>,
    ready: impl FnOnce(std::net::SocketAddr),
) -> Result<(), RuntimeError> {
    let rt = runtime()?;
    rt.block_on(async {
        let launcher = Arc::new(setup.launcher.clone());
        let gw = gateway(
            home,
            setup.mcp,
            launcher,
            sink,
            approver,
            taint,
            &setup.tenant,
        )?;
        match listen {
            None => serve_stdio(gw, opts.context()?).await,
            Some(a) => {
                let io = |source| RuntimeError::Supervise {
                    what: "cannot listen",
                    source,
                };
                let l = tokio::net::TcpListener::bind(a).await.map_err(io)?;
                ready(l.local_addr().map_err(io)?);
                serve_http(gw, l, opts).await
            }
        }
        Ok(())
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, RuntimeError> {
    tokio::runtime::Runtime::new().map_err(|source| RuntimeError::Supervise {
        what: "cannot start the async runtime",
        source,
    })
}

/// `airlock mcp tools`, blocking.
pub fn tools_blocking(home: &Home, setup: &McpSetup) -> Result<Vec<ToolState>, RuntimeError> {
    runtime()?.block_on(tools(
        home,
        &setup.mcp,
        Arc::new(setup.launcher.clone()),
        &setup.tenant,
    ))
}

/// `airlock mcp pin`, blocking.
pub fn pin_blocking(
    home: &Home,
    setup: &McpSetup,
    sink: Arc<dyn EventSink>,
    name: &str,
    expect: Option<&str>,
) -> Result<String, RuntimeError> {
    let l = Arc::new(setup.launcher.clone());
    runtime()?.block_on(pin(home, &setup.mcp, l, sink, &setup.tenant, name, expect))
}

impl McpSetup {
    /// The setup from the validated configuration sections.
    pub fn new(
        home: &Home,
        tenant: TenantId,
        mcp: McpConfig,
        sandbox: SandboxSettings,
        proxy: ProxyConfig,
        audit: AuditSettings,
    ) -> McpSetup {
        let launcher = SandboxLauncher {
            home: home.clone(),
            tenant: tenant.clone(),
            sandbox,
            proxy,
            audit,
            init_exe: PathBuf::from("/proc/self/exe"),
        };
        McpSetup {
            mcp,
            tenant,
            launcher,
        }
    }
}

/// One `airlock mcp` command as typed.
#[derive(Debug, Clone, Default)]
pub struct McpAction {
    /// `serve`, `tools` or `pin`.
    pub name: String,
    /// `pin`'s `SERVER.TOOL`.
    pub tool: Option<String>,
    /// `serve --listen ADDR`: streamable HTTP instead of stdio.
    pub listen: Option<std::net::SocketAddr>,
    /// `serve --agent NAME`.
    pub agent: Option<String>,
    /// `serve --run ID`: join that run.
    pub run: Option<String>,
    /// `tools --json`.
    pub json: bool,
    /// `pin --sha256 HEX`.
    pub sha256: Option<String>,
}

impl McpAction {
    /// All the fields, in order.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: String,
        tool: Option<String>,
        listen: Option<std::net::SocketAddr>,
        agent: Option<String>,
        run: Option<String>,
        json: bool,
        sha256: Option<String>,
    ) -> McpAction {
        McpAction {
            name,
            tool,
            listen,
            agent,
            run,
            json,
            sha256,
        }
    }
}

/// Run one `airlock mcp` command; returns the lines to print. `notice`
/// gets messages for the operator (the HTTP address).
pub fn command(
    home: &Home,
    setup: McpSetup,
    sink: Arc<dyn EventSink>,
    a: McpAction,
    approver: Arc<dyn Approver>,
    taint: Arc<dyn TaintTracker>,
    notice: &dyn Fn(&str),
) -> Result<Vec<String>, RuntimeError> {
    match a.name.as_str() {
        "serve" => {
            let opts = SessionOptions {
                tenant: setup.tenant.clone(),
                agent: a.agent.or(setup.mcp.default_agent.clone()),
                run: a.run,
            };
            serve(home, setup, sink, a.listen, opts, approver, taint, |addr| {
                notice(&format!("airlock mcp listening on http://{addr}/mcp"))
            })?;
            Ok(Vec::new())
        }
        "tools" => tools_blocking(home, &setup)?
            .into_iter()
            .map(|t| match a.json {
                true => serde_json::to_string(&t).map_err(|e| RuntimeError::Refused(e.to_string())),
                false => Ok(format!("{}\t{}\t{}", t.name, t.state, t.sha256)),
            })
            .collect(),
        "pin" => {
            let tool = a
                .tool
                .ok_or_else(|| RuntimeError::Refused("pin: name the tool (SERVER.TOOL)".into()))?;
            let sha = pin_blocking(home, &setup, sink, &tool, a.sha256.as_deref())?;
            Ok(vec![format!("pinned {tool} {sha}")])
        }
        other => Err(RuntimeError::Refused(format!(
            "mcp {other}: use serve, tools or pin"
        ))),
    }
}
