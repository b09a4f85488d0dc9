//! Approvals: list, show, and decide by hash. An approval is held on the
//! node whose run asked for it (its data directory's database). Approving
//! needs the SHA-256 of the canonical call the reviewer was shown
//! (`GET /v1/approvals/{id}` returns both); any other hash is refused and
//! nothing is approved. Decisions are recorded in the tenant's log.

use crate::auth::Authed;
use crate::state::AppState;
use crate::{ApiError, ApiPath, JsonBody};
use airlock_approval::{ApprovalView, Review, ReviewError};
use airlock_store::SqliteStore;
use airlock_types::{Actor, ActorKind};
use axum::Json;
use axum::extract::{Extension, Query, State};
use serde::Deserialize;
use std::sync::Arc;
use utoipa::IntoParams;
use utoipa::ToSchema;

type S = State<Arc<AppState>>;
type A = Extension<Authed>;

/// `GET /v1/approvals` filters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Also decided, used and expired ones (default: only pending).
    pub all: Option<bool>,
}

/// Approve a pending call.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Approve {
    /// The SHA-256 (hex) of the canonical call the reviewer saw.
    pub sha256: String,
}

/// Deny a pending call.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Deny {
    /// Why (recorded with the decision; at most 1000 characters).
    pub reason: Option<String>,
}

/// Run `f` with a reviewer acting as the token, off the async threads.
async fn review<T: Send + 'static>(
    st: &Arc<AppState>,
    a: &Authed,
    f: impl FnOnce(&Review<'_>) -> Result<T, ReviewError> + Send + 'static,
) -> Result<T, ApiError> {
    // Approvals are the reviewer's, never an agent's own.
    a.not_agent_limited("approvals")?;
    let st = st.clone();
    let tenant = a.tenant.clone();
    let actor = Actor::new(ActorKind::Token, a.token_id.clone());
    tokio::task::spawn_blocking(move || {
        let auditor = st.auditor(&tenant)?;
        let sink = auditor.sink();
        let store = SqliteStore::open(&st.home.db_path()).map_err(ApiError::store)?;
        let r = Review::new(&store, sink.as_ref(), &tenant, actor);
        f(&r).map_err(|e| match e {
            ReviewError::NotFound(_) => ApiError::NotFound,
            ReviewError::HashMismatch { .. }
            | ReviewError::NotPending { .. }
            | ReviewError::Expired(_) => ApiError::Conflict(e.to_string()),
            ReviewError::AuditUnavailable(..) => ApiError::AuditUnavailable,
            ReviewError::Store(e) => ApiError::store(e),
        })
    })
    .await
    .map_err(|e| ApiError::Internal(format!("approvals task failed: {e}")))?
}

fn view(v: ApprovalView) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::Internal(e.to_string()))
}

/// The tenant's approvals on this node, oldest first.
#[utoipa::path(get, path = "/v1/approvals", tag = "approvals", security(("token" = [])), params(ListQuery),
    responses((status = 200, description = "approvals (as `airlock approvals list --json`)", body = [Object])))]
pub async fn list(
    State(st): S,
    Extension(a): A,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(format!("query: {}", e.body_text())))?;
    let pending_only = !q.all.unwrap_or(false);
    let items = review(&st, &a, move |r| r.list(pending_only)).await?;
    items
        .into_iter()
        .map(view)
        .collect::<Result<_, _>>()
        .map(Json)
}

/// One approval: the canonical call and its SHA-256.
#[utoipa::path(get, path = "/v1/approvals/{id}", tag = "approvals", security(("token" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "the approval", body = Object), (status = 404, body = crate::ErrorBody)))]
pub async fn show(
    State(st): S,
    Extension(a): A,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    crate::handlers::valid_name("id", &id)?;
    let v = review(&st, &a, move |r| r.show(&id)).await?;
    view(v).map(Json)
}

/// Approve a pending call by the hash of what the reviewer saw.
#[utoipa::path(post, path = "/v1/approvals/{id}/approve", tag = "approvals", security(("token" = [])),
    params(("id" = String, Path)), request_body = Approve,
    responses((status = 200, description = "approved", body = Object), (status = 404, body = crate::ErrorBody),
        (status = 409, description = "the hash does not match, or not pending", body = crate::ErrorBody)))]
pub async fn approve(
    State(st): S,
    Extension(a): A,
    ApiPath(id): ApiPath<String>,
    JsonBody(body): JsonBody<Approve>,
) -> Result<Json<serde_json::Value>, ApiError> {
    crate::handlers::valid_name("id", &id)?;
    if body.sha256.len() != 64 || !body.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::BadRequest("sha256: 64 hex digits".into()));
    }
    let v = review(&st, &a, move |r| r.approve(&id, &body.sha256)).await?;
    view(v).map(Json)
}

/// Deny a pending call.
#[utoipa::path(post, path = "/v1/approvals/{id}/deny", tag = "approvals", security(("token" = [])),
    params(("id" = String, Path)), request_body = Deny,
    responses((status = 200, description = "denied", body = Object), (status = 404, body = crate::ErrorBody),
        (status = 409, body = crate::ErrorBody)))]
pub async fn deny(
    State(st): S,
    Extension(a): A,
    ApiPath(id): ApiPath<String>,
    JsonBody(body): JsonBody<Deny>,
) -> Result<Json<serde_json::Value>, ApiError> {
    crate::handlers::valid_name("id", &id)?;
    if body
        .reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > 1000)
    {
        return Err(ApiError::BadRequest(
            "reason: at most 1000 characters".into(),
        ));
    }
    let v = review(&st, &a, move |r| r.deny(&id, body.reason.as_deref())).await?;
    view(v).map(Json)
}
