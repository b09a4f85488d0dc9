//! The tenant's audit log: query, verify, and live streams over WebSocket.

use crate::auth::Authed;
use crate::handlers::run_of;
use crate::state::AppState;
use crate::{ApiError, ApiPath};
use airlock_types::TenantId;
use axum::Json;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, Query, State};
use axum::response::{IntoResponse as _, Response};
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
    a.not_agent_limited("audit:read")?;
    let (status, _) = verify_tenant(&st, a.tenant.clone()).await?;
    Ok(Json(status))
}

/// Verify `tenant`'s log and read its latest signed checkpoint (in the
/// same task): what `GET /v1/audit/verify` answers, and the checkpoint the
/// dashboard shows beside it (`None`: none made yet).
pub async fn verify_tenant(
    st: &Arc<AppState>,
    tenant: TenantId,
) -> Result<(VerifyStatus, Option<airlock_audit::Checkpoint>), ApiError> {
    let key_path = st.home.audit_pubkey_path();
    let cp_path =
        airlock_runtime::audit::checkpoint_path(&st.home, &tenant, &st.audit_settings.store);
    let (report, cp) = st
        .audit_read(move |s| {
            let internal = |e: airlock_audit::AuditError| ApiError::Internal(e.to_string());
            let key = airlock_audit::load_public_key(&key_path).map_err(internal)?;
            let report = airlock_audit::verify_log(s, &tenant, &key, &cp_path).map_err(internal)?;
            let file = airlock_audit::read_checkpoint_file(&cp_path).map_err(internal)?;
            let cp = airlock_audit::latest_checkpoint(s, &tenant, &file).map_err(internal)?;
            Ok((report, cp))
        })
        .await?;
    Ok((
        VerifyStatus {
            ok: report.ok(),
            records: report.records,
            signed_records: report.signed_records,
            root: report.root.clone(),
            problems: report.problems.iter().map(|p| p.to_string()).collect(),
        },
        cp,
    ))
}

/// `GET /v1/audit/export`: where to start and in which shape.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// First record index (default 0).
    pub from: Option<u64>,
    /// `ocsf` (default: OCSF API Activity objects) or `records` (`{"index", "event"}`).
    pub format: Option<String>,
}

/// The most one export answers; a larger log is exported in parts (`from`).
pub const MAX_EXPORT_BYTES: usize = 64 << 20;

/// A writer that refuses to grow past [`MAX_EXPORT_BYTES`].
struct Capped(Vec<u8>);

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_EXPORT_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                "export too large",
            ));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Export the tenant's log as JSON lines (at most 64 MiB per answer;
/// continue with `from` = the last index + 1).
#[utoipa::path(get, path = "/v1/audit/export", tag = "audit", security(("token" = [])), params(ExportQuery),
    responses((status = 200, description = "JSON lines", content_type = "application/x-ndjson", body = String),
        (status = 413, body = crate::ErrorBody)))]
pub async fn export(
    State(st): State<Arc<AppState>>,
    Extension(a): Extension<Authed>,
    q: Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(format!("query: {}", e.body_text())))?;
    a.not_agent_limited("audit:read")?;
    let format = match q.format.as_deref() {
        None | Some("ocsf") => airlock_audit::ExportFormat::OcsfJsonl,
        Some("records") => airlock_audit::ExportFormat::RecordJsonl,
        Some(_) => return Err(ApiError::BadRequest("format: ocsf or records".into())),
    };
    let body = export_tenant(&st, a.tenant.clone(), q.from.unwrap_or(0), format).await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
        body,
    )
        .into_response())
}

/// `tenant`'s log from record `from` as JSON lines in `format`, at most
/// [`MAX_EXPORT_BYTES`] (else [`ApiError::TooLarge`]): the body of
/// `GET /v1/audit/export` and of the dashboard's export download.
pub async fn export_tenant(
    st: &Arc<AppState>,
    tenant: TenantId,
    from: u64,
    format: airlock_audit::ExportFormat,
) -> Result<Vec<u8>, ApiError> {
    st.audit_read(move |s| {
        let mut out = Capped(Vec::new());
        match airlock_audit::export(s, &tenant, from, format, &mut out) {
            Ok(()) => Ok(out.0),
            Err(airlock_audit::ExportError::Write(e))
                if e.kind() == std::io::ErrorKind::FileTooLarge =>
            {
                Err(ApiError::TooLarge)
            }
            Err(e) => Err(ApiError::Internal(e.to_string())),
        }
    })
    .await
}

/// An inclusion proof of one record against the latest signed checkpoint
/// (as `airlock audit prove`; check it offline with `airlock audit verify
/// --proof FILE`). 404: no such record, or no checkpoint covers it yet.
#[utoipa::path(get, path = "/v1/audit/proof/{index}", tag = "audit", security(("token" = [])),
    params(("index" = u64, Path, description = "the record's index")),
    responses((status = 200, description = "the proof", body = Object), (status = 404, body = crate::ErrorBody)))]
pub async fn proof(
    State(st): State<Arc<AppState>>,
    Extension(a): Extension<Authed>,
    ApiPath(index): ApiPath<u64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    a.not_agent_limited("audit:read")?;
    proof_of(&st, a.tenant.clone(), index).await.map(Json)
}

/// The inclusion proof of record `index` of `tenant`'s log against its
/// latest signed checkpoint, as JSON (what `airlock audit verify --proof`
/// reads). [`ApiError::NotFound`]: no such record, or no checkpoint covers
/// it yet. Indexes are per tenant: another tenant's index names this
/// tenant's record of that number, or nothing.
pub async fn proof_of(
    st: &Arc<AppState>,
    tenant: TenantId,
    index: u64,
) -> Result<serde_json::Value, ApiError> {
    let cp_path =
        airlock_runtime::audit::checkpoint_path(&st.home, &tenant, &st.audit_settings.store);
    let proof = st
        .audit_read(move |s| {
            let internal = |e: airlock_audit::AuditError| ApiError::Internal(e.to_string());
            let file = airlock_audit::read_checkpoint_file(&cp_path).map_err(internal)?;
            let Some(cp) = airlock_audit::latest_checkpoint(s, &tenant, &file).map_err(internal)?
            else {
                return Err(ApiError::NotFound);
            };
            if index >= cp.size {
                return Err(ApiError::NotFound);
            }
            airlock_audit::prove(s, &tenant, index, &cp).map_err(internal)
        })
        .await?;
    serde_json::to_value(proof).map_err(|e| ApiError::Internal(e.to_string()))
}

/// Live records of the tenant's log (a WebSocket; read-only).
#[utoipa::path(get, path = "/v1/audit/stream", tag = "audit", security(("token" = [])),
    responses((status = 101, description = "WebSocket: one JSON record per text message"), (status = 401, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)))]
pub async fn stream(
    State(st): State<Arc<AppState>>,
    Extension(a): Extension<Authed>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    a.not_agent_limited("audit:read")?;
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
