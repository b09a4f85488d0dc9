//! Secrets: names, bindings and metadata, and set-only values. A value goes
//! in (`PUT`) and never comes out: no response, error, log line or audit
//! record carries it. The secrets live in this node's vault (the same one
//! `airlock secret` and runs on this node use), sealed under the tenant's
//! data key; every change is recorded before it is made.

use crate::auth::Authed;
use crate::state::AppState;
use crate::{ApiError, ApiPath, JsonBody};
use airlock_broker::Binding;
use airlock_runtime::RuntimeError;
use airlock_types::{Action, Actor, ActorKind, AuditEvent, EventResult, Reason, Secret, TenantId};
use airlock_vault::{SecretInfo, VaultError};
use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

type S = State<Arc<AppState>>;
type A = Extension<Authed>;

/// Where and how a secret may be used (what the proxy enforces).
#[derive(Debug, Serialize, ToSchema)]
pub struct SecretBinding {
    /// Hosts it may be sent to (`*.example.com`, `host:port`; without a port only 443).
    pub hosts: Vec<String>,
    /// The request header it is injected into.
    pub header: String,
    /// The header value, `{}` standing for the secret.
    pub format: String,
    /// Allowed methods; empty means any.
    pub methods: Vec<String>,
    /// Allowed paths (exact, or a prefix ending in `*`); empty means any.
    pub paths: Vec<String>,
    /// The environment variable a run's handle is set in.
    pub env: Option<String>,
    /// The query parameter it is sent in instead of a header.
    pub query: Option<String>,
    /// It is the password of HTTP Basic credentials in `header`.
    pub basic: bool,
}

impl From<Binding> for SecretBinding {
    fn from(b: Binding) -> SecretBinding {
        SecretBinding {
            hosts: b.hosts,
            header: b.header,
            format: b.format,
            methods: b.methods,
            paths: b.paths,
            env: b.env,
            query: b.query,
            basic: b.basic,
        }
    }
}

/// A secret's metadata: never its value.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecretMeta {
    /// Its name.
    pub name: String,
    /// How many times it has been set.
    pub version: u32,
    /// Where and how it may be used.
    pub binding: SecretBinding,
    /// When it last changed (µs since the epoch).
    pub updated_at: i64,
}

impl From<SecretInfo> for SecretMeta {
    fn from(s: SecretInfo) -> SecretMeta {
        SecretMeta {
            name: s.name,
            version: s.version,
            binding: s.binding.into(),
            updated_at: s.updated_at.as_micros(),
        }
    }
}

/// Set (or replace) a secret's value and binding.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetSecret {
    /// The value (1 byte to 16 KiB, no control characters). Write-only.
    pub value: String,
    /// Hosts it may be sent to (at least one).
    pub hosts: Vec<String>,
    /// The request header it is injected into (default `Authorization`).
    pub header: Option<String>,
    /// The header value, `{}` standing for the secret (default `Bearer {}`).
    pub format: Option<String>,
    /// Allowed methods (default any).
    #[serde(default)]
    pub methods: Vec<String>,
    /// Allowed paths, exact or a prefix ending in `*` (default any).
    #[serde(default)]
    pub paths: Vec<String>,
    /// The environment variable a run's handle is set in (default the name).
    pub env: Option<String>,
    /// Send it only as this query parameter, never in a header.
    pub query: Option<String>,
    /// Send it as the password of HTTP Basic credentials in `header`.
    #[serde(default)]
    pub basic: bool,
}

impl std::fmt::Debug for SetSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetSecret")
            .field("value", &"[REDACTED]")
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

/// What setting a secret did.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecretSet {
    /// Its name.
    pub name: String,
    /// Its version now (1 when created).
    pub version: u32,
    /// Whether an earlier version was replaced.
    pub replaced: bool,
}

fn event(tenant: &TenantId, actor: Actor, via: &str, action: Action, name: &str) -> AuditEvent {
    AuditEvent::new(
        tenant.clone(),
        actor,
        action,
        name.to_owned(),
        Reason::Recorded,
        EventResult::Success,
    )
    .with_detail("via", via)
}

fn token_actor(a: &Authed) -> Actor {
    Actor::new(ActorKind::Token, a.token_id.clone())
}

fn valid_secret_name(name: &str) -> Result<(), ApiError> {
    airlock_broker::validate_name(name).map_err(|e| ApiError::BadRequest(format!("name: {e}")))
}

fn vault_err(e: VaultError) -> ApiError {
    match e {
        VaultError::InvalidName { .. }
        | VaultError::InvalidValue { .. }
        | VaultError::InvalidBinding { .. } => ApiError::BadRequest(e.to_string()),
        VaultError::NotFound { .. } => ApiError::NotFound,
        e => {
            tracing::error!(error = %e, "vault");
            ApiError::VaultUnavailable
        }
    }
}

fn runtime_err(e: RuntimeError) -> ApiError {
    match e {
        RuntimeError::Vault(v) => vault_err(v),
        e => {
            tracing::error!(error = %e.chain(), "vault");
            ApiError::VaultUnavailable
        }
    }
}

/// Run `f` on this node's vault store, off the async threads.
async fn on_vault<T: Send + 'static>(
    st: &Arc<AppState>,
    f: impl FnOnce(&AppState) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let me = st.clone();
    tokio::task::spawn_blocking(move || f(&me))
        .await
        .map_err(|e| ApiError::Internal(format!("vault task failed: {e}")))?
}

fn list_of(st: &AppState, tenant: &TenantId) -> Result<Vec<SecretInfo>, ApiError> {
    let home = &st.home;
    if !home.db_path().exists() {
        return Ok(Vec::new());
    }
    let store = airlock_store::SqliteStore::open(&home.db_path()).map_err(ApiError::store)?;
    airlock_vault::list_secrets(&store, tenant).map_err(vault_err)
}

/// One of the tenant's secrets (`NotFound` when there is none).
fn one_of(st: &AppState, tenant: &TenantId, name: &str) -> Result<SecretInfo, ApiError> {
    list_of(st, tenant)?
        .into_iter()
        .find(|x| x.name == name)
        .ok_or(ApiError::NotFound)
}

/// One secret's binding and metadata (never its value): what
/// `GET /v1/secrets/{name}` and the dashboard show.
pub async fn secret_meta(
    st: &Arc<AppState>,
    tenant: &TenantId,
    name: &str,
) -> Result<SecretMeta, ApiError> {
    valid_secret_name(name)?;
    let (t, n) = (tenant.clone(), name.to_owned());
    Ok(on_vault(st, move |s| one_of(s, &t, &n)).await?.into())
}

/// The tenant's secrets by name, bindings and metadata (never values),
/// from this node's vault: what `GET /v1/secrets` and the dashboard show.
pub async fn list_secrets(
    st: &Arc<AppState>,
    tenant: &TenantId,
) -> Result<Vec<SecretMeta>, ApiError> {
    let t = tenant.clone();
    let rows = on_vault(st, move |s| list_of(s, &t)).await?;
    Ok(rows.into_iter().map(SecretMeta::from).collect())
}

/// The tenant's secrets by name: bindings and metadata, never values.
#[utoipa::path(get, path = "/v1/secrets", tag = "secrets", security(("token" = [])),
    responses((status = 200, body = [SecretMeta])))]
pub async fn list(State(st): S, Extension(a): A) -> Result<Json<Vec<SecretMeta>>, ApiError> {
    Ok(Json(list_secrets(&st, &a.tenant).await?))
}

/// One secret's binding and metadata (never its value).
#[utoipa::path(get, path = "/v1/secrets/{name}", tag = "secrets", security(("token" = [])),
    params(("name" = String, Path, description = "1-64 characters of [A-Za-z0-9_.-]")),
    responses((status = 200, body = SecretMeta), (status = 404, body = crate::ErrorBody)))]
pub async fn show(
    State(st): S,
    Extension(a): A,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<SecretMeta>, ApiError> {
    Ok(Json(secret_meta(&st, &a.tenant, &name).await?))
}

/// Set or replace `name`'s value and binding in the tenant's vault as
/// `actor` (`via`: `api`, `dashboard`), recorded (`vault.secret_set`, the
/// binding, never the value) before it is made. The caller checks who may.
/// Errors (a bad name, value or binding: `BadRequest`) never carry the value.
pub async fn set_secret(
    st: &Arc<AppState>,
    tenant: &TenantId,
    actor: Actor,
    via: &str,
    name: &str,
    mut body: SetSecret,
) -> Result<SecretSet, ApiError> {
    let value = Secret::new(std::mem::take(&mut body.value));
    valid_secret_name(name)?;
    airlock_broker::validate_value(value.expose())
        .map_err(|e| ApiError::BadRequest(format!("value: {e}")))?;
    let mut binding = Binding::new(
        name,
        body.hosts,
        body.header,
        body.format,
        body.methods,
        body.paths,
        body.env,
    )
    .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if let Some(q) = &body.query {
        binding = binding
            .in_query(q)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    }
    if body.basic {
        binding = binding
            .as_basic_password()
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    }
    set_bound(st, tenant, actor, via, name, value, binding).await
}

/// Replace `name`'s value, keeping its binding (the dashboard's rotate):
/// `NotFound` when the tenant has no such secret.
pub async fn rotate_secret(
    st: &Arc<AppState>,
    tenant: &TenantId,
    actor: Actor,
    via: &str,
    name: &str,
    value: Secret<String>,
) -> Result<SecretSet, ApiError> {
    valid_secret_name(name)?;
    airlock_broker::validate_value(value.expose())
        .map_err(|e| ApiError::BadRequest(format!("value: {e}")))?;
    let (t, n) = (tenant.clone(), name.to_owned());
    let binding = on_vault(st, move |s| one_of(s, &t, &n)).await?.binding;
    set_bound(st, tenant, actor, via, name, value, binding).await
}

async fn set_bound(
    st: &Arc<AppState>,
    tenant: &TenantId,
    actor: Actor,
    via: &str,
    name: &str,
    value: Secret<String>,
    binding: Binding,
) -> Result<SecretSet, ApiError> {
    st.record(
        event(tenant, actor, via, Action::VaultSecretSet, name)
            .with_detail("binding", binding.to_json()),
    )
    .await?;
    let t = tenant.clone();
    let n = name.to_owned();
    let out = on_vault(st, move |s| {
        airlock_runtime::master_key::ensure_master_key(&s.home).map_err(runtime_err)?;
        let no_prompt =
            || Err("the vault passphrase cannot be asked for by the API server".to_owned());
        let mut vault =
            airlock_runtime::master_key::open_vault(&s.home, &no_prompt).map_err(runtime_err)?;
        vault.set(&t, &n, &value, &binding).map_err(vault_err)
    })
    .await?;
    Ok(SecretSet {
        name: name.to_owned(),
        version: out.version,
        replaced: out.replaced,
    })
}

/// Set or replace a secret: its value (write-only) and its binding.
#[utoipa::path(put, path = "/v1/secrets/{name}", tag = "secrets", security(("token" = [])),
    params(("name" = String, Path, description = "1-64 characters of [A-Za-z0-9_.-]")),
    request_body = SetSecret,
    responses((status = 200, body = SecretSet), (status = 400, body = crate::ErrorBody)))]
pub async fn put(
    State(st): S,
    Extension(a): A,
    ApiPath(name): ApiPath<String>,
    JsonBody(body): JsonBody<SetSecret>,
) -> Result<Json<SecretSet>, ApiError> {
    // An agent must not be able to re-point or replace the credentials it
    // is given.
    a.not_agent_limited("secrets:write")?;
    let out = set_secret(&st, &a.tenant, token_actor(&a), "api", &name, body).await?;
    Ok(Json(out))
}

/// Remove a secret.
#[utoipa::path(delete, path = "/v1/secrets/{name}", tag = "secrets", security(("token" = [])),
    params(("name" = String, Path, description = "1-64 characters of [A-Za-z0-9_.-]")),
    responses((status = 204), (status = 404, body = crate::ErrorBody)))]
pub async fn remove(
    State(st): S,
    Extension(a): A,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    a.not_agent_limited("secrets:write")?;
    remove_secret(&st, &a.tenant, token_actor(&a), "api", &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove `name` from the tenant's vault as `actor`, recorded
/// (`vault.secret_rm`) before it is done; `NotFound` when there is none.
/// The caller checks who may.
pub async fn remove_secret(
    st: &Arc<AppState>,
    tenant: &TenantId,
    actor: Actor,
    via: &str,
    name: &str,
) -> Result<(), ApiError> {
    valid_secret_name(name)?;
    let (t, n) = (tenant.clone(), name.to_owned());
    on_vault(st, move |s| one_of(s, &t, &n)).await?;
    st.record(event(tenant, actor, via, Action::VaultSecretRm, name))
        .await?;
    let (t, n) = (tenant.clone(), name.to_owned());
    let removed = on_vault(st, move |s| {
        let mut store =
            airlock_store::SqliteStore::open(&s.home.db_path()).map_err(ApiError::store)?;
        airlock_vault::remove_secret(&mut store, &t, &n).map_err(vault_err)
    })
    .await?;
    if removed {
        Ok(())
    } else {
        Err(ApiError::NotFound)
    }
}
