//! The tenant's audit log: query, verify, and live streams over WebSocket.

use crate::auth::Authed;
use crate::handlers::run_of;
use crate::state::AppState;
use crate::{ApiError, ApiPath};
use airlock_types::TenantId;
use axum::Json;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, Query, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};

/// How often a stream looks for new records.
pub const STREAM_POLL: Duration = Duration::from_millis(250);

/// Filters and paging of `GET /v1/audit`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// First record index (default 0).
    pub from: Option<u64>,
    /// At most this many records (1–1000, default 100).
    pub limit: Option<u32>,
    /// Only this action (e.g. `run.start`).
    pub action: Option<String>,
    /// Only this run.
    pub run: Option<String>,
}

/// One audit record.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditRecord {
    /// Its index in the tenant's log.
    pub index: u64,
    /// The event (as `airlock audit export --format records`).
    #[schema(value_type = Object)]
    pub event: serde_json::Value,
}

/// A page of records.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// The records.
    pub records: Vec<AuditRecord>,
    /// The `from` of the next page, when there may be more.
    pub next: Option<u64>,
}

/// Read records of `tenant` from `from`, keeping those `keep` accepts, up to `limit`.
fn read(
    store: &dyn airlock_store::AuditStore,
    tenant: &TenantId,
    from: u64,
    limit: usize,
    keep: &dyn Fn(&airlock_types::AuditEvent) -> bool,
) -> Result<(Vec<AuditRecord>, Option<u64>, u64), ApiError> {
    let mut out = Vec::new();
    let mut next = None;
    let mut seen = from;
    let mut failed = None;
    store
        .for_each_record(tenant, from, &mut |r| {
            if out.len() >= limit {
                next = Some(r.index);
                return ControlFlow::Break(());
            }
            seen = r.index + 1;
            match airlock_audit::canonical::decode(r.body) {
                Ok(ev) => {
                    if keep(&ev) {
                        match serde_json::to_value(&ev) {
                            Ok(v) => out.push(AuditRecord {
                                index: r.index,
                                event: v,
                            }),
                            Err(e) => failed = Some(e.to_string()),
                        }
                    }
                    ControlFlow::Continue(())
                }
                Err(e) => {
                    failed = Some(format!("record {}: {e}", r.index));
                    ControlFlow::Break(())
                }
            }
        })
        .map_err(ApiError::store)?;
    match failed {
        Some(e) => Err(ApiError::Internal(e)),
        None => Ok((out, next, seen)),
    }
}

/// Query the tenant's audit log.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", security(("token" = [])), params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 400, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)))]
pub async fn list(
    State(st): State<Arc<AppState>>,
    Extension(a): Extension<Authed>,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(format!("query: {}", e.body_text())))?;
    if !a.agents.is_empty() {
        return Err(ApiError::ScopeMissing(
            "audit:read (a token limited to agents reads run events only)".into(),
        ));
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000) as usize;
    let tenant = a.tenant.clone();
    let (records, next, _) = st
        .audit_read(move |s| {
            read(s, &tenant, q.from.unwrap_or(0), limit, &|ev| {
                q.action.as_deref().is_none_or(|x| ev.action.as_str() == x)
                    && q.run
                        .as_deref()
                        .is_none_or(|x| ev.run_id.as_ref().is_some_and(|r| r.as_str() == x))
            })
        })
        .await?;
    Ok(Json(AuditPage { records, next }))
}

/// The result of verifying the tenant's log.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyStatus {
    /// True when nothing is wrong.
    pub ok: bool,
    /// Records checked.
    pub records: u64,
    /// Records covered by the latest signed checkpoint.
    pub signed_records: u64,
    /// Merkle root (hex).
    pub root: String,
    /// What is wrong, most important first.
    pub problems: Vec<String>,
}

/// Verify the tenant's log (hash chain, Merkle tree, signed checkpoints).
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit", security(("token" = [])),
    responses((status = 200, body = VerifyStatus), (status = 403, body = crate::ErrorBody)))]
pub async fn verify(
    State(st): State<Arc<AppState>>,
    Extension(a): Extension<Authed>,
) -> Result<Json<VerifyStatus>, ApiError> {
    if !a.agents.is_empty() {
        return Err(ApiError::ScopeMissing(
            "audit:read (a token limited to agents)".into(),
        ));
    }
    let tenant = a.tenant.clone();
    let key_path = st.home.audit_pubkey_path();
    let cp_path =
        airlock_runtime::audit::checkpoint_path(&st.home, &tenant, &st.audit_settings.store);
    let report = st
        .audit_read(move |s| {
            let key = airlock_audit::load_public_key(&key_path)
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            airlock_audit::verify_log(s, &tenant, &key, &cp_path)
                .map_err(|e| ApiError::Internal(e.to_string()))
        })
        .await?;
    Ok(Json(VerifyStatus {
        ok: report.ok(),
        records: report.records,
        signed_records: report.signed_records,
        root: report.root.clone(),
        problems: report.problems.iter().map(|p| p.to_string()).collect(),
    }))
}

/// Live records of the tenant's log (a WebSocket; read-only).
#[utoipa::path(get, path = "/v1/audit/stream", tag = "audit", security(("token" = [])),
    responses((status = 101, description = "WebSocket: one JSON record per text message"), (status = 401, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)))]
pub async fn stream(
    State(st): State<Arc<AppState>>,
    Extension(a): Extension<Authed>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    if !a.agents.is_empty() {
        return Err(ApiError::ScopeMissing(
            "audit:read (a token limited to agents)".into(),
        ));
    }
    let ws = ws.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    Ok(ws.on_upgrade(move |sock| pump(sock, st, a.tenant, None)))
}

/// Live audit records of one run (a WebSocket; read-only).
#[utoipa::path(get, path = "/v1/runs/{id}/events", tag = "runs", security(("token" = [])),
    params(("id" = String, Path)),
    responses((status = 101, description = "WebSocket: one JSON record per text message"), (status = 401, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub async fn run_events(
    State(st): State<Arc<AppState>>,
    Extension(a): Extension<Authed>,
    ApiPath(id): ApiPath<String>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    run_of(&st, &a, &id).await?;
    let ws = ws.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    Ok(ws.on_upgrade(move |sock| pump(sock, st, a.tenant, Some(id))))
}

/// Send the tenant's records (of one run, when given) from the start of
/// the log, then each new one as it is appended; close on any client
/// message (the socket is read-only) or when the client goes.
async fn pump(mut sock: WebSocket, st: Arc<AppState>, tenant: TenantId, run: Option<String>) {
    let mut from = 0u64;
    loop {
        let (t, r) = (tenant.clone(), run.clone());
        let page = st
            .audit_read(move |s| {
                read(s, &t, from, 500, &|ev| {
                    r.as_deref()
                        .is_none_or(|x| ev.run_id.as_ref().is_some_and(|id| id.as_str() == x))
                })
                .map(|(recs, next, seen)| (recs, next.unwrap_or(seen)))
            })
            .await;
        let Ok((records, end)) = page else {
            let _ = sock.send(Message::Close(None)).await;
            return;
        };
        for rec in records {
            let Ok(text) = serde_json::to_string(&rec) else {
                continue;
            };
            if sock.send(Message::Text(text.into())).await.is_err() {
                return;
            }
        }
        from = end.max(from);
        tokio::select! {
            msg = sock.recv() => {
                // Read-only: any client message (or the client going) ends it.
                if !matches!(msg, Some(Ok(Message::Pong(_)))) {
                    let _ = sock.send(Message::Close(None)).await;
                    return;
                }
            }
            _ = tokio::time::sleep(STREAM_POLL) => {}
        }
    }
}
