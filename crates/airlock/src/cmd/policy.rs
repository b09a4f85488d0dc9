//! `airlock policy check`: run the egress decision on one request without a
//! network. The very same `airlock_policy` code the proxy runs decides; only
//! the DNS answer comes from `--resolve` (or the system resolver) instead of
//! the proxy's resolver.

use crate::config::{self, PolicySettings};
use crate::ctx::Ctx;
use airlock_policy::{ConnectDecision, EgressPolicy};
use airlock_types::{Decision, Outcome};
use anyhow::Context as _;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::PathBuf;

/// Exit code: the request would be allowed.
pub const EXIT_ALLOW: u8 = 0;
/// Exit code: the request would be denied.
pub const EXIT_DENY: u8 = 3;
/// Exit code: the request would need approval.
pub const EXIT_ASK: u8 = 4;

#[derive(Debug, clap::Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub cmd: PolicyCmd,
}

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCmd {
    /// Decide one request as the egress proxy would. Exit 0 allow, 3 deny, 4 ask, 2 error.
    Check(CheckArgs),
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Policy file (same fields as the `[policy]` section) [default: the
    /// configuration's `[policy]`, else the built-in `read_public`].
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// HTTP method, exactly as the agent would send it.
    #[arg(long, value_name = "M")]
    pub method: String,
    /// Absolute http or https URL, exactly as the agent would write it.
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// The DNS answer to judge, instead of asking the system resolver. An
    /// empty value means the name did not resolve. Ignored for IP-literal hosts.
    #[arg(long, value_name = "IP[,IP…]", value_delimiter = ',', num_args = 1)]
    pub resolve: Option<Vec<String>>,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, args: PolicyArgs) -> anyhow::Result<u8> {
    match args.cmd {
        PolicyCmd::Check(a) => check(ctx, a),
    }
}

/// Which policy applies, and how to name it in the output.
fn select_policy(ctx: &Ctx, file: Option<&PathBuf>) -> anyhow::Result<(EgressPolicy, String)> {
    if let Some(path) = file {
        let s: PolicySettings = config::load_policy_file(path)?;
        return Ok((s.policy, path.display().to_string()));
    }
    let cfg = ctx.load_config()?;
    if cfg.policy.configured {
        return Ok((cfg.policy.policy, format!("{} [policy]", cfg.origin)));
    }
    Ok((
        EgressPolicy::read_public(),
        "read_public (built-in)".to_owned(),
    ))
}

fn check(ctx: &Ctx, a: CheckArgs) -> anyhow::Result<u8> {
    let resolve = match &a.resolve {
        None => None,
        Some(list) => Some(
            list.iter()
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.trim_matches(['[', ']'])
                        .parse::<IpAddr>()
                        .map_err(|_| anyhow::anyhow!("--resolve: {s:?} is not an IP address"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?,
        ),
    };
    let (policy, policy_name) = select_policy(ctx, a.policy.as_ref())?;
    let c = airlock_policy::check(&policy, &a.method, &a.url, resolve, system_resolve)
        .context("--url")?;
    let (url, err) = (c.url.as_ref(), c.error.as_deref());
    report(&a, &policy_name, c.decision, url, &c.addrs, c.connect, err)
}

/// The system resolver's answer; a failure is an empty answer (the decision
/// then says `unresolvable_host`).
fn system_resolve(host: &str, port: u16) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = match (host, port).to_socket_addrs() {
        Ok(it) => it.map(|sa| sa.ip()).collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out.dedup();
    out
}

fn connect_name(c: Option<ConnectDecision>) -> Option<&'static str> {
    c.map(|c| match c {
        ConnectDecision::Deny(_) => "deny",
        ConnectDecision::Tunnel(_) => "tunnel",
        ConnectDecision::Intercept => "intercept",
    })
}

/// Print the decision and map it to the exit code. The URL is echoed in its
/// canonical form without userinfo or query, which may carry secrets.
fn report(
    a: &CheckArgs,
    policy_name: &str,
    d: Decision,
    url: Option<&airlock_policy::Url>,
    addrs: &[IpAddr],
    connect: Option<ConnectDecision>,
    error: Option<&str>,
) -> anyhow::Result<u8> {
    let shown = url.map(|u| format!("{}://{}:{}{}", u.scheme, u.host, u.port, u.path));
    let method: String = a
        .method
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    if a.json {
        let v = serde_json::json!({
            "outcome": d.outcome.as_str(),
            "reason": d.reason.code(),
            "method": method,
            "url": shown,
            "host": url.map(|u| u.host.to_string()),
            "port": url.map(|u| u.port),
            "addrs": addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "connect": connect_name(connect),
            "policy": policy_name,
            "error": error,
        });
        println!("{v}");
    } else {
        let addrs: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
        let target = shown.unwrap_or_else(|| "(unparsable URL)".to_owned());
        let mut line = format!("{} {}  {method} {target}", d.outcome, d.reason);
        if !addrs.is_empty() {
            line.push_str(&format!(" -> {}", addrs.join(", ")));
        }
        if let Some(c) = connect_name(connect) {
            line.push_str(&format!("  (CONNECT: {c})"));
        }
        if let Some(e) = error {
            line.push_str(&format!("  ({e})"));
        }
        println!("{line}");
        println!("policy: {policy_name}");
    }
    Ok(match d.outcome {
        Outcome::Allow => EXIT_ALLOW,
        Outcome::Deny => EXIT_DENY,
        Outcome::Ask => EXIT_ASK,
    })
}
