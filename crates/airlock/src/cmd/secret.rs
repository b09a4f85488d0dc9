//! `airlock secret set|list|rm|reencrypt`: the vault's secrets and bindings.
//!
//! A value is read from stdin (or a prompt on the terminal, without echo),
//! never from the command line, where `ps` and shell history would see it.
//! Every change is audited by name; no value ever reaches output or the log.

use crate::ctx::{Ctx, EXIT_OK};
use crate::master_key as keys;
use airlock_broker::Binding;
use airlock_types::{AuditEvent, EventResult, Reason, Secret};
use airlock_vault::{SecretInfo, list_secrets, remove_secret};
use anyhow::Context as _;
use std::io::{IsTerminal as _, Read as _};

#[derive(Debug, clap::Subcommand)]
pub enum SecretCmd {
    /// Store a secret (value from stdin or a terminal prompt) and bind it to hosts.
    Set(SetArgs),
    /// List secrets: names and bindings only, never values.
    List {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a secret.
    Rm {
        /// The secret's name.
        name: String,
    },
    /// Replace the data key and re-encrypt every secret under the new one.
    Reencrypt,
}

#[derive(Debug, clap::Args)]
pub struct SetArgs {
    /// The secret's name (1-64 characters of [A-Za-z0-9_.-]).
    pub name: String,
    /// Hosts the secret may be sent to (comma-separated; `*.example.com`; `host:port`, default port 443).
    #[arg(
        long = "host",
        required = true,
        value_delimiter = ',',
        value_name = "HOST"
    )]
    pub hosts: Vec<String>,
    /// The request header the proxy injects it into [default: Authorization].
    /// A handle in any other header is refused.
    #[arg(long, value_name = "NAME", conflicts_with = "query")]
    pub header: Option<String>,
    /// The header value; `{}` stands for the secret [default: "Bearer {}"].
    #[arg(long, conflicts_with_all = ["query", "basic"])]
    pub format: Option<String>,
    /// Send the value as the password of HTTP Basic credentials in the header
    /// (the agent sends `Basic base64(user:HANDLE)`), and nowhere else.
    #[arg(long, conflicts_with = "query")]
    pub basic: bool,
    /// Send the value only as this query parameter (`?NAME=HANDLE`), never in a header.
    #[arg(long, value_name = "NAME")]
    pub query: Option<String>,
    /// Allowed methods (comma-separated) [default: any].
    #[arg(long, value_delimiter = ',', value_name = "METHOD")]
    pub methods: Vec<String>,
    /// Allowed paths, exact or a prefix ending in `*` (comma-separated) [default: any].
    #[arg(long, value_delimiter = ',', value_name = "PATH")]
    pub paths: Vec<String>,
    /// Environment variable `airlock run` sets to the handle [default: the name, when it is a valid variable name].
    #[arg(long, value_name = "VAR")]
    pub env: Option<String>,
}

pub fn run(ctx: &Ctx, cmd: SecretCmd) -> anyhow::Result<u8> {
    let cfg = ctx.load_checked_config()?;
    ctx.require_initialized()?;
    let tenant = ctx.tenant_id()?;
    match cmd {
        SecretCmd::Set(a) => {
            airlock_broker::validate_name(&a.name)?;
            let mut binding = Binding::new(
                &a.name, a.hosts, a.header, a.format, a.methods, a.paths, a.env,
            )?;
            if let Some(q) = &a.query {
                binding = binding.in_query(q)?;
            }
            if a.basic {
                binding = binding.as_basic_password()?;
            }
            let value = read_value(&a.name)?;
            airlock_broker::validate_value(value.expose())?;
            let auditor = ctx.auditor(&cfg)?;
            if let Some(path) = keys::ensure_master_key(ctx)? {
                eprintln!("created vault master key {} (mode 0600)", path.display());
            }
            let mut vault = keys::open_vault(ctx)?;
            let out = vault.set(&tenant, &a.name, &value, &binding)?;
            drop(value);
            let ev = AuditEvent::new(
                tenant,
                airlock_runtime::audit::operator(ctx),
                airlock_types::Action::VaultSecretSet,
                a.name.clone(),
                Reason::Recorded,
                EventResult::Success,
            )
            .with_detail("version", out.version)
            .with_detail("replaced", out.replaced)
            .with_detail("binding", binding.to_json());
            auditor.record(ev)?;
            auditor.close()?;
            let verb = if out.replaced { "updated" } else { "stored" };
            println!(
                "{verb} secret {} (version {}) for {}",
                a.name,
                out.version,
                binding.hosts.join(", ")
            );
            Ok(EXIT_OK)
        }
        SecretCmd::List { json } => {
            let store = airlock_store::SqliteStore::open_read_only(&ctx.db_path())?;
            let list = list_secrets(&store, &tenant)?;
            print_list(&list, json);
            Ok(EXIT_OK)
        }
        SecretCmd::Rm { name } => {
            airlock_broker::validate_name(&name)?;
            let auditor = ctx.auditor(&cfg)?;
            let mut store = airlock_store::SqliteStore::open(&ctx.db_path())?;
            if !remove_secret(&mut store, &tenant, &name)? {
                auditor.close()?;
                anyhow::bail!("no secret named {name}");
            }
            let ev = AuditEvent::new(
                tenant,
                airlock_runtime::audit::operator(ctx),
                airlock_types::Action::VaultSecretRm,
                name.clone(),
                Reason::Recorded,
                EventResult::Success,
            );
            auditor.record(ev)?;
            auditor.close()?;
            println!("removed secret {name}");
            Ok(EXIT_OK)
        }
        SecretCmd::Reencrypt => {
            let auditor = ctx.auditor(&cfg)?;
            let mut vault = keys::open_vault(ctx)?;
            let n = vault.reencrypt(&tenant)?;
            let ev = AuditEvent::new(
                tenant.clone(),
                airlock_runtime::audit::operator(ctx),
                airlock_types::Action::VaultSecretReencrypt,
                tenant.as_str().to_owned(),
                Reason::Recorded,
                EventResult::Success,
            )
            .with_detail("secrets", n);
            auditor.record(ev)?;
            auditor.close()?;
            println!("replaced the data key of tenant {tenant}; re-encrypted {n} secret(s)");
            Ok(EXIT_OK)
        }
    }
}

/// The value: a hidden prompt on a terminal, otherwise all of stdin minus one
/// trailing newline. Bounded, and read into a buffer that never reallocates
/// (so no stray copy is left behind unzeroized).
fn read_value(name: &str) -> anyhow::Result<Secret<String>> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return keys::prompt_hidden(&format!("Value for {name}: "));
    }
    let cap = airlock_broker::MAX_VALUE_LEN + 2;
    let mut value = Secret::new(String::with_capacity(cap + 1));
    stdin
        .lock()
        .take(u64::try_from(cap + 1).unwrap_or(u64::MAX))
        .read_to_string(value.expose_mut())
        .context("stdin: cannot read the secret value (it must be UTF-8)")?;
    if value.expose().len() > cap {
        anyhow::bail!("stdin: the secret value is longer than 16 KiB");
    }
    let v = value.expose_mut();
    if v.ends_with('\n') {
        v.pop();
        if v.ends_with('\r') {
            v.pop();
        }
    }
    if v.is_empty() {
        anyhow::bail!(
            "stdin: no secret value given (pipe it in, e.g. `printf %s \"$TOKEN\" | airlock secret set {name} ...`)"
        );
    }
    Ok(value)
}

fn print_list(list: &[SecretInfo], json: bool) {
    if json {
        let v: Vec<serde_json::Value> = list
            .iter()
            .map(|s| {
                let mut o = s.binding.to_json();
                o["name"] = s.name.clone().into();
                o["version"] = s.version.into();
                o["updated_at_us"] = s.updated_at.as_micros().into();
                o
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
        return;
    }
    if list.is_empty() {
        println!("no secrets");
        return;
    }
    println!(
        "{:<24} {:>3}  {:<16} {:<14} {:<32} BINDING",
        "NAME", "VER", "ENV", "HEADER", "HOSTS"
    );
    for s in list {
        let b = &s.binding;
        let (place, mut extra) = match &b.query {
            Some(q) => (format!("?{q}"), vec!["query parameter".to_owned()]),
            None if b.basic => (b.header.clone(), vec!["Basic password".to_owned()]),
            None => (b.header.clone(), vec![format!("format {:?}", b.format)]),
        };
        if !b.methods.is_empty() {
            extra.push(format!("methods {}", b.methods.join(",")));
        }
        if !b.paths.is_empty() {
            extra.push(format!("paths {}", b.paths.join(",")));
        }
        println!(
            "{:<24} {:>3}  {:<16} {:<14} {:<32} {}",
            s.name,
            s.version,
            b.env.as_deref().unwrap_or("-"),
            place,
            b.hosts.join(","),
            extra.join("; ")
        );
    }
}
