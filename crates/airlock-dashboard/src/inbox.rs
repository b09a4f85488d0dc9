//! The approvals inbox: each pending call's canonical form shown in full,
//! hashed in the page by `assets/approve.js` (the browser's WebCrypto over
//! the displayed text), and decided here by that hash through
//! [`airlock_approval::Review`] as the logged-in user.

use crate::html::esc;
use crate::pages::{Session, check_post, form, html_page, require_admin_user};
use crate::{Dash, DashError};
use airlock_approval::{Review, ReviewError};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::fmt::Write as _;
use std::sync::Arc;

/// The script that hashes what the page shows (served as `/static/approve.js`).
pub(crate) async fn script() -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/javascript; charset=utf-8",
        )],
        include_str!("../assets/approve.js"),
    )
        .into_response()
}

/// Run `f` as a reviewer acting for the session's user over their
/// tenant's approvals (recorded in the tenant's audit log), off the async
/// threads.
async fn review<T: Send + 'static>(
    d: &Arc<Dash>,
    s: &Session,
    f: impl FnOnce(&Review<'_>) -> Result<T, ReviewError> + Send + 'static,
) -> Result<Result<T, ReviewError>, DashError> {
    let Some(store) = d.approvals.clone() else {
        return Err(DashError::NotFound);
    };
    let (api, tenant, actor) = (d.api.clone(), s.tenant.clone(), s.actor());
    tokio::task::spawn_blocking(move || {
        let auditor = api.auditor(&tenant)?;
        let sink = auditor.sink();
        let g = store
            .lock()
            .map_err(|_| DashError::Internal("approvals lock poisoned".into()))?;
        Ok(f(&Review::new(&g, sink.as_ref(), &tenant, actor)))
    })
    .await
    .map_err(|e| DashError::Internal(format!("approvals task: {e}")))?
}

/// A decision's outcome as a page: the inbox with a notice on top.
async fn after(
    d: &Arc<Dash>,
    s: &Session,
    outcome: Result<String, ReviewError>,
) -> Result<Response, DashError> {
    let (status, notice) = match outcome {
        Ok(done) => (
            StatusCode::OK,
            format!("<p class=\"ok\" id=\"notice\">{}</p>", esc(&done)),
        ),
        Err(ReviewError::NotFound(_)) => return Err(DashError::NotFound),
        Err(ReviewError::AuditUnavailable(..)) => return Err(DashError::AuditUnavailable),
        Err(ReviewError::Store(e)) => return Err(DashError::Internal(e.to_string())),
        Err(e @ ReviewError::HashMismatch { .. }) => (
            StatusCode::CONFLICT,
            format!(
                "<p class=\"error\" id=\"notice\">Refused (hash_mismatch): {}</p>",
                esc(&e.to_string())
            ),
        ),
        Err(e) => (
            StatusCode::CONFLICT,
            format!(
                "<p class=\"error\" id=\"notice\">Refused: {}</p>",
                esc(&e.to_string())
            ),
        ),
    };
    let mut resp = inbox(d, s, &notice).await?;
    *resp.status_mut() = status;
    Ok(resp)
}

/// The page: every pending call of the tenant, its canonical form exactly
/// as hashed (escaped), the stored SHA-256, and forms to approve by the
/// hash this page computes or to deny with a note.
async fn inbox(d: &Arc<Dash>, s: &Session, notice: &str) -> Result<Response, DashError> {
    let items = review(d, s, |r| r.list(true))
        .await?
        .map_err(|e| DashError::Internal(e.to_string()))?;
    let now = time::OffsetDateTime::now_utc();
    let csrf = esc(&s.csrf());
    let mut b = String::from(notice);
    b.push_str(
        "<p>The page computes the SHA-256 of each call exactly as shown below; the server approves only when it is the pending call's. \
         From a terminal: <code>airlock approvals approve ID --sha256 HEX</code>.</p>\n",
    );
    let mut shown = 0;
    for a in &items {
        let live =
            time::OffsetDateTime::parse(&a.expires, &time::format_description::well_known::Rfc3339)
                .is_ok_and(|e| e > now);
        if !live {
            continue;
        }
        shown += 1;
        let _ = write!(
            b,
            "<div class=\"box approval\" id=\"approval-{id}\"><p><b class=\"mono\">{id}</b> · run <a class=\"mono\" href=\"/runs/{run}\">{run}</a> · agent {} · reason <span class=\"reason\">{}</span> · taint {} · expires {} UTC</p>\
             <pre class=\"mono subject\">{}</pre><p>Stored SHA-256 <span class=\"mono sha256\">{}</span></p>\
             <form method=\"post\" action=\"/approvals/{id}/approve\" class=\"approve\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"sha256\" value=\"\">\
             <button type=\"submit\" class=\"approve\" disabled>Approve</button> SHA-256 of what this page shows: <span class=\"mono computed\">(needs JavaScript)</span></form>\
             <form method=\"post\" action=\"/approvals/{id}/deny\" class=\"deny\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"text\" name=\"note\" maxlength=\"500\" placeholder=\"note (optional)\" class=\"note\"> <button type=\"submit\" class=\"deny\">Deny</button></form>\
             <p class=\"mono\">airlock approvals approve {id} --sha256 {}</p></div>",
            esc(a.agent.as_deref().unwrap_or("(none)")),
            esc(&a.reason),
            esc(&a.taint.join(",")),
            esc(&expires_utc(&a.expires)),
            esc(&a.canonical),
            esc(&a.sha256),
            esc(&a.sha256),
            id = esc(&a.id),
            run = esc(&a.run),
        );
    }
    if shown == 0 {
        b.push_str("<p id=\"none\">Nothing is waiting for approval.</p>");
    } else {
        b.push_str("<script src=\"/static/approve.js\" defer></script>");
    }
    Ok(html_page("Approvals", s, &b))
}

/// An RFC 3339 time as the other pages show times (`YYYY-MM-DD HH:MM:SS`).
fn expires_utc(rfc3339: &str) -> String {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .map(|t| {
            crate::html::time(i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX))
        })
        .unwrap_or_else(|_| rfc3339.to_owned())
}

pub(crate) async fn approvals(
    State(d): State<Arc<Dash>>,
    s: Session,
) -> Result<Response, DashError> {
    inbox(&d, &s, "").await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApproveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    sha256: String,
}

/// Approve by the hash the page computed. Without it (no script ran)
/// nothing is approved; any other hash than the pending call's is refused
/// (`hash_mismatch`, recorded by the reviewer with the hash given).
pub(crate) async fn approve(
    State(d): State<Arc<Dash>>,
    s: Session,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, DashError> {
    let f: ApproveForm = form(&body)?;
    check_post(
        &d,
        &headers,
        Some(&s),
        Some(&f.csrf),
        "/approvals/{id}/approve",
    )
    .await?;
    // Deciding is an administrator's (an SSO user is not one unless listed
    // in `admins`); the API asks for the `approvals:decide` scope.
    require_admin_user(&d, &s).await?;
    let empty = f.sha256.trim().is_empty();
    let given = f.sha256;
    let outcome = review(&d, &s, move |r| r.approve(&id, &given)).await?;
    let outcome = match outcome {
        Ok(v) => Ok(format!("Approved {} (SHA-256 {}).", v.id, v.sha256)),
        Err(ReviewError::HashMismatch { id }) if empty => {
            let notice = format!(
                "Nothing was approved: {id} is approved by the SHA-256 this page computes of the call it shows, and no script ran to compute it. Allow JavaScript for this dashboard, or approve from a terminal."
            );
            let mut resp = inbox(
                &d,
                &s,
                &format!("<p class=\"error\" id=\"notice\">{}</p>", esc(&notice)),
            )
            .await?;
            *resp.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            return Ok(resp);
        }
        Err(e) => Err(e),
    };
    after(&d, &s, outcome).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DenyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    note: String,
}

/// Deny a pending call, with an optional note (at most 500 characters).
pub(crate) async fn deny(
    State(d): State<Arc<Dash>>,
    s: Session,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, DashError> {
    let f: DenyForm = form(&body)?;
    check_post(
        &d,
        &headers,
        Some(&s),
        Some(&f.csrf),
        "/approvals/{id}/deny",
    )
    .await?;
    require_admin_user(&d, &s).await?;
    if f.note.chars().count() > 500 {
        return Err(DashError::BadRequest);
    }
    let note = Some(f.note.trim().to_owned()).filter(|n| !n.is_empty());
    let outcome = review(&d, &s, move |r| r.deny(&id, note.as_deref())).await?;
    after(&d, &s, outcome.map(|v| format!("Denied {}.", v.id))).await
}
