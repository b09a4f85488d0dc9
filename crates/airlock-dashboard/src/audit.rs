//! The audit page's downloads and its verification box: the latest signed
//! checkpoint beside the chain's status, a record's inclusion proof, and
//! the log's export. Each reuses the API's function (`airlock_api::
//! verify_tenant`, `proof_of`, `export_tenant`), so the bytes are the
//! API's; the session's tenant is the only tenant read.

use crate::html::{esc, time};
use crate::pages::{Session, html_page, records, timeline};
use crate::{Dash, DashError};
use airlock_api::VerifyStatus;
use airlock_types::AuditEvent;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::fmt::Write as _;
use std::sync::Arc;

/// The export links shown on the audit page.
pub(crate) const EXPORT_LINKS: &str = "<p class=\"box\" id=\"export\">Export the log: \
     <a href=\"/audit/export\" download>OCSF JSON lines</a> · \
     <a href=\"/audit/export?format=records\" download>record JSON lines</a> \
     (at most 64 MiB per download; continue with <span class=\"mono\">?from=</span> the next index)</p>";

/// The chain's verification and the latest signed checkpoint, as a box.
pub(crate) fn status_box(v: &VerifyStatus, cp: Option<&airlock_audit::Checkpoint>) -> String {
    let mut b = String::from("<div class=\"box\" id=\"verify\">");
    if v.ok {
        let _ = write!(
            b,
            "<span class=\"ok\">Chain verified</span>: {} records, {} covered by the latest signed checkpoint; root <span class=\"mono\">{}</span>",
            v.records,
            v.signed_records,
            esc(&v.root)
        );
    } else {
        b.push_str("<span class=\"bad\">Verification FAILED</span><ul>");
        for p in &v.problems {
            let _ = write!(b, "<li>{}</li>", esc(p));
        }
        b.push_str("</ul>");
    }
    match cp {
        Some(c) => {
            let _ = write!(
                b,
                "<dl id=\"checkpoint\"><dt>Latest signed checkpoint</dt><dd>#{}</dd>\
                 <dt>Records covered</dt><dd>{}</dd>\
                 <dt>Root</dt><dd class=\"mono\">{}</dd>\
                 <dt>Signed at (UTC)</dt><dd>{}</dd></dl>",
                c.seq,
                c.size,
                hex::encode(c.root),
                time(c.time),
            );
        }
        None => b.push_str("<p id=\"checkpoint\">No signed checkpoint yet.</p>"),
    }
    b.push_str("</div>");
    b
}

/// `GET /audit/proof/{index}`: the record's inclusion proof as a download
/// (the API's JSON). 404: no such record of the session's tenant, or no
/// checkpoint covers it yet.
pub(crate) async fn proof(
    State(d): State<Arc<Dash>>,
    s: Session,
    index: Result<Path<u64>, axum::extract::rejection::PathRejection>,
) -> Result<Response, DashError> {
    let Path(index) = index.map_err(|_| DashError::NotFound)?;
    let proof = airlock_api::proof_of(&d.api, s.tenant.clone(), index).await?;
    let body = serde_json::to_vec_pretty(&proof).map_err(|e| DashError::Internal(e.to_string()))?;
    Ok(download(
        "application/json",
        &format!("airlock-audit-proof-{index}.json"),
        body,
    ))
}

/// `GET /audit/export`: where to start and in which shape (as the API's).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExportQuery {
    from: Option<u64>,
    format: Option<String>,
}

/// `GET /audit/export`: the session's tenant's log as JSON lines, a
/// download (the API's bytes and cap).
pub(crate) async fn export(
    State(d): State<Arc<Dash>>,
    s: Session,
    q: Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, DashError> {
    let Query(q) = q.map_err(|_| DashError::BadRequest)?;
    let format = match q.format.as_deref() {
        None | Some("ocsf") => airlock_audit::ExportFormat::OcsfJsonl,
        Some("records") => airlock_audit::ExportFormat::RecordJsonl,
        Some(_) => return Err(DashError::BadRequest),
    };
    let body =
        airlock_api::export_tenant(&d.api, s.tenant.clone(), q.from.unwrap_or(0), format).await?;
    Ok(download(
        "application/x-ndjson",
        "airlock-audit-export.jsonl",
        body,
    ))
}

/// A body the browser saves as `name` (a fixed, safe file name; `no-store`
/// comes from the security headers).
fn download(content_type: &'static str, name: &str, body: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditFilter {
    action: Option<String>,
    run: Option<String>,
}

/// The audit page: the chain's status, the latest checkpoint, the export
/// links and the records (filtered by action or run).
pub(crate) async fn page(
    State(d): State<Arc<Dash>>,
    s: Session,
    q: Result<Query<AuditFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, DashError> {
    let Query(q) = q.map_err(|_| DashError::BadRequest)?;
    let action = q.action.filter(|a| !a.is_empty());
    let run = q.run.filter(|r| !r.is_empty());
    let (fa, fr) = (action.clone(), run.clone());
    let recs = records(&d, s.tenant.clone(), 500, move |ev| {
        fa.as_deref().is_none_or(|x| ev.action.as_str() == x)
            && fr
                .as_deref()
                .is_none_or(|x| ev.run_id.as_ref().is_some_and(|r| r.as_str() == x))
    })
    .await?;
    let status = airlock_api::verify_tenant(&d.api, s.tenant.clone()).await;
    let mut b = String::new();
    let mut covered = None;
    match status {
        Ok((v, cp)) => {
            b.push_str(&status_box(&v, cp.as_ref()));
            covered = cp.map(|c| c.size.min(v.records));
        }
        Err(e) => {
            tracing::warn!(error = %e, "audit verification could not run");
            b.push_str("<div class=\"box\" id=\"verify\"><span class=\"bad\">Verification could not run</span> (see the server log)</div>");
        }
    }
    b.push_str(EXPORT_LINKS);
    let _ = write!(
        b,
        "<form method=\"get\" action=\"/audit\" class=\"box\">Action <input type=\"text\" name=\"action\" value=\"{}\" style=\"width:14em\"> Run <input type=\"text\" name=\"run\" value=\"{}\" style=\"width:22em\"> <button type=\"submit\">Search</button></form>",
        esc(action.as_deref().unwrap_or("")),
        esc(run.as_deref().unwrap_or(""))
    );
    let newest: Vec<(u64, AuditEvent)> = recs.into_iter().rev().collect();
    b.push_str(&timeline(&newest, true, Some(covered.unwrap_or(0))));
    Ok(html_page("Audit", &s, &b))
}
