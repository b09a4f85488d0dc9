//! `airlock run -- CMD`: run a command in the sandbox with network only
//! through the embedded egress proxy. The run itself is
//! `airlock_runtime::Run`; this module turns the arguments and the
//! configuration into its spec, prints what the operator needs, and maps
//! the end to an exit code. Any refusal is audited and exits 2.

use crate::config::ProxySettings;
use crate::ctx::{Ctx, EXIT_OK};
use airlock_runtime::{EndedBy, Run, RunIo, RunSpec};
use airlock_types::{Actor, ActorKind, RunContext};
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

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
    /// With --server: the agent whose active policy the run gets.
    #[arg(long, value_name = "NAME")]
    pub agent: Option<String>,
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

/// `proxy.upstream_ca_file` as written in the configuration file, if any
/// (the validated settings keep only the certificates it held).
fn configured_upstream_ca(config: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(config).ok()?;
    let table: toml::Table = toml::from_str(&text).ok()?;
    let path = table.get("proxy")?.get("upstream_ca_file")?.as_str()?;
    Some(PathBuf::from(path))
}

pub fn run(ctx: &Ctx, args: RunArgs) -> anyhow::Result<u8> {
    anyhow::ensure!(args.agent.is_none(), "--agent needs --server URL");
    airlock_runtime::init::first_use(
        ctx,
        &airlock_types::TenantId::default_tenant(),
        crate::config::DEFAULT_TOML,
        || ctx.audit_settings(),
        |m| eprintln!("airlock: {m}"),
    )?;
    let cfg = ctx.load_checked_config()?;
    if ctx.production && args.dangerously_allow_weaker_sandbox {
        return Err(airlock_runtime::production::refuse_weaker_sandbox().into());
    }
    // The CLI: its tenant (`--tenant`, else the default), no agent, the operator "cli".
    let context = RunContext::new(
        ctx.tenant_id()?,
        airlock_runtime::new_run_id(),
        Actor::new(ActorKind::Operator, "cli"),
    );
    let run_id = context.run.clone();
    let policy = match &args.policy {
        Some(p) if !p.is_file() => Err(format!(
            "policy file {}: does not exist (check the path given to --policy)",
            p.display()
        )),
        file => ProxySettings::policy(&cfg.policy, file.as_deref()).map_err(|e| e.to_string()),
    };
    let mut protected = Vec::new();
    if let Some(p) = configured_upstream_ca(&ctx.config_path) {
        protected.push(("the upstream CA file".to_owned(), p));
    }
    if let Ok(p) = std::env::current_exe() {
        protected.push(("the airlock binary".to_owned(), p));
    }
    let spec = RunSpec {
        context,
        argv: args.command.clone(),
        workspace: args.workspace.clone(),
        cwd: std::env::current_dir().ok(),
        policy,
        policy_file: args.policy.clone(),
        protected,
        env: args.env.clone(),
        secrets: args.secrets.clone(),
        timeout: args.timeout,
        idle_timeout: args.idle_timeout,
        interactive: args.interactive,
        allow_weaker: args.dangerously_allow_weaker_sandbox,
        proxy: cfg.proxy.proxy.clone(),
        sandbox: cfg.sandbox.clone(),
        audit: cfg.audit.clone(),
        hooks: Vec::new(),
        gateway: Some(cfg.gateway.clone()),
        approvals: cfg.approvals.clone(),
        init_exe: PathBuf::from("/proc/self/exe"),
    };
    let prepared = Run::prepare(ctx, spec, &crate::master_key::prompt)?;
    if args.explain {
        if args.json {
            println!("{}", prepared.plan().to_json_pretty());
        } else {
            print!("{}", prepared.plan());
        }
        prepared.close()?;
        return Ok(EXIT_OK);
    }
    let started = prepared.start()?;
    let listed = airlock_runtime::listed::RunList::open(ctx, &cfg.store, &cfg.serve.node).and_then(
        |mut l| {
            l.started(
                started.context(),
                args.command.first().map_or("", String::as_str),
            )
            .map(|()| l)
        },
    );
    if let Err(e) = &listed {
        eprintln!("airlock: run {run_id} is not listed for the dashboard: {e}");
    }
    let run_ctx = started.context().clone();
    let ended = started.wait(RunIo {
        stdout: Box::new(tokio::io::stdout()),
        stderr: Box::new(tokio::io::stderr()),
        terminal_out: !args.raw_output && std::io::stdout().is_terminal(),
        terminal_err: !args.raw_output && std::io::stderr().is_terminal(),
        forward_process_signals: true,
        notice: Arc::new(|m: &str| eprintln!("airlock: {m}")),
    });
    if let Ok(mut l) = listed {
        let _ = l.ended(&run_ctx, ended.as_ref());
    }
    let ended = ended?;
    match ended.ended_by {
        EndedBy::Exit => Ok(ended.exit_code),
        EndedBy::WallTimeout => {
            eprintln!(
                "airlock: run {run_id} ended: timeout after {}s",
                ended.elapsed.as_secs()
            );
            Ok(EXIT_TIMEOUT)
        }
        EndedBy::IdleTimeout => {
            eprintln!(
                "airlock: run {run_id} ended: no output for {}s",
                ended.idle_secs
            );
            Ok(EXIT_TIMEOUT)
        }
        EndedBy::WriteLimit => {
            eprintln!(
                "airlock: run {run_id} ended: it wrote more than sandbox.max_write_mib ({} MiB)",
                ended.write_limit_bytes >> 20
            );
            Ok(ended.exit_code)
        }
    }
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
