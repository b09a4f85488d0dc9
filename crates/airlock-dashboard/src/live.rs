//! Live updates over the session-authenticated WebSocket: a run page's
//! timeline grows as the run's records are appended (`/static/live.js`).
//!
//! The API's sockets (`/v1/runs/{id}/events`) take a bearer token, which a
//! page's script must never hold; this one takes the session cookie
//! instead. So it also checks what a cookie alone cannot: the upgrade must
//! come from this site's own page (`Origin`, which browsers always send on
//! a WebSocket; otherwise any site could open it with the user's cookie —
//! cross-site WebSocket hijacking), and it re-checks the session while it
//! streams, so logout, expiry or a deleted user ends it. The socket is
//! read-only: any message from the client closes it.

use crate::auth;
use crate::html::{time, visible};
use crate::pages::{Session, auth_failed, outcome_of, provenance, state_class};
use crate::{Dash, DashError};
use airlock_types::{AuditEvent, Reason, TenantId};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the log is read for new records.
const POLL: Duration = Duration::from_millis(250);
/// How often the session is re-checked while streaming.
const RECHECK: Duration = Duration::from_secs(5);
/// Records read per round.
const PAGE: usize = 500;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct From {
    #[serde(default)]
    from: u64,
}

/// One cell of a timeline row: its text and CSS class.
#[derive(Serialize)]
struct Cell {
    text: String,
    class: &'static str,
}

/// One record as the page's script appends it: the same columns as the
/// server-rendered timeline, as text.
#[derive(Serialize)]
struct Row {
    index: u64,
    cells: Vec<Cell>,
}

fn row(index: u64, ev: &AuditEvent) -> Row {
    // Agents write URLs and arguments into their own trail: what reaches
    // the page shows control and bidirectional characters as symbols.
    let cell = |text: String, class: &'static str| Cell {
        text: visible(&text),
        class,
    };
    let (decision, result) = outcome_of(ev);
    let details = if ev.details.is_empty() {
        String::new()
    } else {
        serde_json::Value::Object(ev.details.clone()).to_string()
    };
    Row {
        index,
        cells: vec![
            cell(index.to_string(), ""),
            cell(time(ev.time.as_micros()), ""),
            cell(ev.action.as_str().to_owned(), ""),
            cell(decision.to_owned(), state_class(decision)),
            cell(ev.reason.code().to_owned(), "reason"),
            cell(ev.resource.clone(), "mono resource"),
            cell(result.clone(), state_class(&result)),
            cell(details, "mono"),
        ],
    }
}

/// `GET /live/runs/{id}?from=N`: the run's records from log index N on,
/// then each new one, as JSON text messages.
pub(crate) async fn run(
    State(d): State<Arc<Dash>>,
    s: Session,
    Path(id): Path<String>,
    Query(q): Query<From>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, DashError> {
    let p = provenance(&d, &headers);
    // A WebSocket from a browser always carries Origin: require this site's.
    if p.origin.is_none() || !auth::same_origin(p) {
        let ev = auth_failed(
            Some((&s.tenant, s.username.as_str())),
            format!("GET /live/runs/{id}"),
            Reason::CsrfRefused,
        )
        .with_detail("check", "origin")
        .with_detail(
            "origin",
            headers
                .get(header::ORIGIN)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("(none)")
                .chars()
                .take(200)
                .collect::<String>(),
        );
        d.api.record(ev).await.map_err(DashError::from)?;
        return Err(DashError::Csrf);
    }
    let (t, rid) = (s.tenant.clone(), id.clone());
    if d.api.db(move |c| c.run(&t, &rid)).await?.is_none() {
        return Err(DashError::NotFound);
    }
    let ws = ws.map_err(|_| DashError::BadRequest)?;
    Ok(ws.on_upgrade(move |sock| pump(sock, d, s, id, q.from)))
}

/// Up to [`PAGE`] of the run's records from `from`; the next index to read.
async fn page(
    d: &Arc<Dash>,
    tenant: TenantId,
    run: String,
    from: u64,
) -> Result<(Vec<Row>, u64), DashError> {
    d.api
        .audit_read(move |store| {
            let (mut out, mut next, mut bad) = (Vec::new(), from, None);
            store
                .for_each_record(&tenant, from, &mut |r| {
                    if out.len() >= PAGE {
                        return ControlFlow::Break(());
                    }
                    next = r.index + 1;
                    match airlock_audit::canonical::decode(r.body) {
                        Ok(ev) => {
                            if ev.run_id.as_ref().is_some_and(|x| x.as_str() == run) {
                                out.push(row(r.index, &ev));
                            }
                            ControlFlow::Continue(())
                        }
                        Err(e) => {
                            bad = Some(format!("record {}: {e}", r.index));
                            ControlFlow::Break(())
                        }
                    }
                })
                .map_err(|e| airlock_api::ApiError::Internal(e.to_string()))?;
            match bad {
                Some(e) => Err(airlock_api::ApiError::Internal(e)),
                None => Ok((out, next)),
            }
        })
        .await
        .map_err(DashError::from)
}

async fn pump(mut sock: WebSocket, d: Arc<Dash>, s: Session, run: String, mut from: u64) {
    let mut checked = Instant::now();
    loop {
        if checked.elapsed() >= RECHECK {
            if !s.still_live(&d).await {
                let _ = sock.send(Message::Close(None)).await;
                return;
            }
            checked = Instant::now();
        }
        let Ok((rows, next)) = page(&d, s.tenant.clone(), run.clone(), from).await else {
            let _ = sock.send(Message::Close(None)).await;
            return;
        };
        for r in rows {
            let Ok(text) = serde_json::to_string(&r) else {
                continue;
            };
            if sock.send(Message::Text(text.into())).await.is_err() {
                return;
            }
        }
        from = next.max(from);
        tokio::select! {
            msg = sock.recv() => {
                if !matches!(msg, Some(Ok(Message::Pong(_)))) {
                    let _ = sock.send(Message::Close(None)).await;
                    return;
                }
            }
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// The script (served as `/static/live.js`).
pub(crate) async fn script() -> Response {
    use axum::response::IntoResponse as _;
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../assets/live.js"),
    )
        .into_response()
}
