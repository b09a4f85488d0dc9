//! The LLM gateway as the runtime runs it: built from the `[gateway]`
//! settings, on the data directory's database and audit log, either on the
//! intercepted path of a run (the provider's key is the credential hook's
//! to inject, from a handle the agent holds) or behind its own listener
//! (the key comes from the vault and never reaches the caller).

use crate::audit::Auditor;
use crate::master_key::Prompt;
use crate::settings::gateway::GatewaySettings;
use crate::{Home, RuntimeError};
use airlock_gateway::{Caller, Gateway, GatewayConfig, GatewayHook, Provider};
use airlock_hook::Hook;
use airlock_policy::{EgressPolicy, EgressRequest, Scheme};
use airlock_store::{BudgetRow, KeyRow, SqliteStore};
use airlock_types::{
    Action, Actor, AuditEvent, EventResult, EventSink, Outcome, Reason, RunContext, Secret,
    TenantId,
};
use std::net::SocketAddr;
use std::sync::Arc;

fn config(settings: &GatewaySettings, tenant: TenantId, providers: Vec<Provider>) -> GatewayConfig {
    let mut cfg = GatewayConfig::new(tenant, providers);
    cfg.max_body_bytes = settings.max_body_bytes;
    cfg.redact_pii = settings.redact_pii;
    cfg.guardrails = settings.guardrails.clone();
    cfg.agents = settings.agents.iter().cloned().collect();
    cfg.privacy = settings.privacy;
    cfg.replay_retention = settings.replay_retention;
    for (model, price) in &settings.prices {
        cfg.prices.set(model, *price);
    }
    cfg
}

fn provider(
    p: &crate::settings::gateway::ProviderSettings,
    secret: Option<Arc<Secret<String>>>,
) -> Provider {
    Provider {
        name: p.name.clone(),
        kind: p.kind,
        base_url: p.base_url.clone(),
        secret,
        privacy: p.privacy,
    }
}

/// The gateway behind its own listener: every configured provider's key is
/// read from the vault (unlocked through `prompt` when it needs a
/// passphrase) and registered as a known secret, so an echo is scrubbed.
pub fn standalone(
    home: &Home,
    settings: &GatewaySettings,
    tenant: &TenantId,
    sink: Arc<dyn EventSink>,
    prompt: Prompt<'_>,
) -> Result<Gateway, RuntimeError> {
    home.require_initialized()?;
    let mut known = Vec::new();
    let mut providers = Vec::new();
    let mut vault = if settings.providers.iter().any(|p| p.secret.is_some()) {
        Some(crate::master_key::open_vault(home, prompt)?)
    } else {
        None
    };
    for p in &settings.providers {
        let secret = match (&p.secret, vault.as_mut()) {
            (Some(name), Some(v)) => {
                let (value, _) =
                    v.get(tenant, name)
                        .map_err(|source| RuntimeError::ProviderKey {
                            provider: p.name.clone(),
                            secret: name.clone(),
                            source,
                        })?;
                known.push((name.clone(), Secret::new(value.expose().clone())));
                Some(Arc::new(value))
            }
            _ => None,
        };
        providers.push(provider(p, secret));
    }
    drop(vault);
    let store = SqliteStore::open(&home.db_path())?;
    Gateway::new(
        config(settings, tenant.clone(), providers),
        &known,
        store,
        sink,
    )
    .map_err(RuntimeError::Gateway)
}

/// Whether `policy` lets a run send a model call (`POST /`) to `host`.
fn reachable(policy: &EgressPolicy, p: &Provider) -> bool {
    let Some(host) = p.host() else { return false };
    let Ok(url) = airlock_policy::parse_url(&format!(
        "{}://{host}/",
        p.base_url.scheme_str().unwrap_or("https")
    )) else {
        return false;
    };
    let port = p
        .base_url
        .port_u16()
        .unwrap_or(if url.scheme == Scheme::Https { 443 } else { 80 });
    let req = EgressRequest {
        method: "POST",
        scheme: url.scheme,
        host: &url.host,
        port,
        path: &url.path,
        addrs: &[],
        run: None,
        userinfo: false,
    };
    // Allowed so far, or allowed pending DNS: the hook must be there.
    policy
        .decide_unresolved(&req)
        .decided()
        .is_none_or(|d| d.outcome != Outcome::Deny)
}

/// The gateway hook for one run, or `None` when the run's policy lets it
/// reach no configured provider (nothing would pass through the hook, and
/// a run that cannot call a model pays nothing to start). The hook runs
/// ahead of the credential hook, which injects the provider's real key in
/// place of the agent's handle; providers here carry no key.
pub fn run_hook(
    home: &Home,
    settings: &GatewaySettings,
    policy: &EgressPolicy,
    ctx: &RunContext,
    sink: Arc<dyn EventSink>,
) -> Result<Option<Arc<dyn Hook>>, RuntimeError> {
    let providers: Vec<Provider> = settings
        .providers
        .iter()
        .map(|p| provider(p, None))
        .filter(|p| reachable(policy, p))
        .collect();
    if providers.is_empty() {
        return Ok(None);
    }
    home.require_initialized()?;
    let store = SqliteStore::open(&home.db_path())?;
    let gw = Gateway::new(
        config(settings, ctx.tenant.clone(), providers),
        &[],
        store,
        sink,
    )
    .map_err(RuntimeError::Gateway)?;
    let caller = Caller {
        agent: ctx
            .agent
            .as_ref()
            .map_or_else(|| "cli".to_owned(), |a| a.to_string()),
        run: Some(ctx.run.to_string()),
        ..Caller::default()
    };
    Ok(Some(Arc::new(GatewayHook::new(gw, caller))))
}

/// Serve `gw` on `listen` until SIGINT or SIGTERM; `ready` is told the
/// bound address once the listener accepts. Records `gateway.start`.
pub fn serve(
    gw: Gateway,
    listen: SocketAddr,
    auditor: &Auditor,
    tenant: &TenantId,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), RuntimeError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| RuntimeError::Supervise {
            what: "cannot start the async runtime",
            source,
        })?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(listen))
        .map_err(|source| RuntimeError::Listen {
            addr: listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| RuntimeError::Listen {
            addr: listen,
            source,
        })?;
    auditor.record(AuditEvent::new(
        tenant.clone(),
        Actor::system(),
        Action::GatewayStart,
        addr.to_string(),
        Reason::Recorded,
        EventResult::Success,
    ))?;
    ready(addr);
    rt.block_on(async {
        tokio::select! {
            r = airlock_gateway::serve(listener, gw) => r.map_err(RuntimeError::GatewayServe),
            () = crate::standalone::shutdown_signal() => Ok(()),
        }
    })
}

/// A USD amount as the store counts it (micro-USD, rounded down).
pub fn usd_to_micros(usd: f64) -> Result<i64, RuntimeError> {
    if !(usd.is_finite() && usd >= 0.0) {
        return Err(RuntimeError::Invalid(
            "budget must be a non-negative amount of USD".into(),
        ));
    }
    Ok((usd * 1e6).floor() as i64)
}

/// Create a virtual key for `agent` (shown once; only its SHA-256 is
/// stored), with a total budget of `budget_usd` when given.
pub fn create_key(
    home: &Home,
    tenant: &TenantId,
    agent: &str,
    team: Option<&str>,
    budget_usd: Option<f64>,
) -> Result<(Secret<String>, KeyRow), RuntimeError> {
    home.require_initialized()?;
    let limit = budget_usd.map(usd_to_micros).transpose()?;
    let mut store = SqliteStore::open(&home.db_path())?;
    let (key, row) = airlock_gateway::create_key(&mut store, tenant, agent, team)?;
    if let Some(limit_micros) = limit {
        let b = BudgetRow {
            scope: format!("key:{}", row.id),
            period: "total".into(),
            limit_micros,
        };
        store.gateway_set_budget(tenant, &b)?;
    }
    Ok((key, row))
}

/// Set a budget: `scope` is `org`, `team:NAME`, `agent:NAME`, `run:ID` or
/// `key:ID`; `period` is `day`, `month` or `total`.
pub fn set_budget(
    home: &Home,
    tenant: &TenantId,
    scope: &str,
    period: &str,
    usd: f64,
) -> Result<(), RuntimeError> {
    let scoped = scope == "org"
        || scope
            .split_once(':')
            .is_some_and(|(k, n)| matches!(k, "team" | "agent" | "run" | "key") && !n.is_empty());
    if !scoped {
        return Err(RuntimeError::Invalid(
            "scope must be org, team:NAME, agent:NAME, run:ID or key:ID".into(),
        ));
    }
    let limit_micros = usd_to_micros(usd)?;
    home.require_initialized()?;
    let mut store = SqliteStore::open(&home.db_path())?;
    let row = BudgetRow {
        scope: scope.to_owned(),
        period: period.to_owned(),
        limit_micros,
    };
    store.gateway_set_budget(tenant, &row)?;
    Ok(())
}
