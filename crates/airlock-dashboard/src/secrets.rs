//! The secrets page: the tenant's secrets by name with their binding,
//! version and last change (from this node's vault, through the API's
//! [`airlock_api::list_secrets`]), and, for the tenant's administrators,
//! forms to set a secret, rotate its value (keeping its binding) and remove
//! it after a confirmation page. A value goes in through a password field
//! and never comes back: not in a page (an error re-renders an empty
//! form), a redirect, a log line or an audit record; setting and removing
//! go through the same functions as `PUT`/`DELETE /v1/secrets/{name}`, so
//! the audit records are the API's (`vault.secret_set` with the binding,
//! `vault.secret_rm`), with the user (`user:NAME`) as actor and
//! `via = dashboard`.

use crate::html::{esc, time};
use crate::pages::{
    CsrfForm, Session, check_post, form, html_page, is_admin_user, require_admin_user,
};
use crate::{Dash, DashError};
use airlock_api::{ApiError, SecretMeta, SetSecret};
use airlock_types::Secret;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use std::fmt::Write as _;
use std::sync::Arc;

/// Words of a free-text list field (spaces, commas or new lines between).
fn words(s: &str) -> Vec<String> {
    s.split([' ', ',', '\n', '\r', '\t'])
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

fn some(s: String) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "any".to_owned()
    } else {
        esc(&v.join(" "))
    }
}

/// One row: name, binding, version, last change, and (for an
/// administrator) the rotate and remove forms.
fn row(b: &mut String, m: &SecretMeta, admin: bool, csrf: &str) {
    let bd = &m.binding;
    let mut how = format!(
        "<span class=\"mono\">{}: {}</span>",
        esc(&bd.header),
        esc(&bd.format)
    );
    if let Some(q) = &bd.query {
        how = format!("query <span class=\"mono\">{}</span>", esc(q));
    } else if bd.basic {
        how.push_str(" (Basic password)");
    }
    let actions = if admin {
        format!(
            "<form method=\"post\" action=\"/secrets/{n}/rotate\" class=\"rotate\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"password\" name=\"value\" autocomplete=\"off\" required placeholder=\"new value\" class=\"value\"> \
             <button type=\"submit\" class=\"rotate\">Rotate</button></form> \
             <a href=\"/secrets/{n}/remove\" class=\"remove\">Remove…</a>",
            n = esc(&m.name)
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        b,
        "<tr id=\"secret-{n}\"><td class=\"mono name\">{n}</td><td class=\"mono hosts\">{}</td><td class=\"header\">{how}</td>\
         <td class=\"methods\">{}</td><td class=\"paths mono\">{}</td><td class=\"env mono\">{}</td>\
         <td class=\"version\">{}</td><td class=\"updated\">{}</td><td>{actions}</td></tr>",
        esc(&bd.hosts.join(" ")),
        list(&bd.methods),
        list(&bd.paths),
        esc(bd.env.as_deref().unwrap_or(&m.name)),
        m.version,
        time(m.updated_at),
        n = esc(&m.name),
    );
}

/// The page with `notice` (already HTML) on top, answered with `status`.
async fn page(
    d: &Arc<Dash>,
    s: &Session,
    notice: &str,
    status: StatusCode,
) -> Result<Response, DashError> {
    let admin = is_admin_user(d, s).await?;
    let rows = match airlock_api::list_secrets(&d.api, &s.tenant).await {
        Ok(r) => r,
        Err(ApiError::VaultUnavailable) => return Ok(vault_unavailable(s)),
        Err(e) => return Err(e.into()),
    };
    let csrf = esc(&s.csrf());
    let mut b = String::from(notice);
    b.push_str(
        "<p>Secrets are sealed in this node's vault. A run gets a handle, never the value; the proxy puts the value \
         into requests to the bound hosts only. Values are set here, never shown.</p>\n",
    );
    b.push_str(
        "<table id=\"secrets\"><thead><tr><th>Name</th><th>Hosts</th><th>Sent as</th><th>Methods</th><th>Paths</th><th>Env</th>\
         <th>Version</th><th>Changed (UTC)</th><th></th></tr></thead><tbody>\n",
    );
    for m in &rows {
        row(&mut b, m, admin, &csrf);
    }
    if rows.is_empty() {
        b.push_str("<tr><td colspan=\"9\" id=\"none\">No secrets.</td></tr>\n");
    }
    b.push_str("</tbody></table>");
    if admin {
        let _ = write!(
            b,
            "<h2>Set a secret</h2>\n<form method=\"post\" action=\"/secrets\" class=\"box\" id=\"set-secret\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <label for=\"name\">Name</label><input type=\"text\" id=\"name\" name=\"name\" required maxlength=\"64\" autocomplete=\"off\">\
             <label for=\"value\">Value (write-only)</label><input type=\"password\" id=\"value\" name=\"value\" required autocomplete=\"off\">\
             <label for=\"hosts\">Hosts (at least one: <code>api.example.com</code>, <code>*.example.com</code>, <code>host:port</code>)</label><input type=\"text\" id=\"hosts\" name=\"hosts\" required>\
             <label for=\"header\">Header (default Authorization)</label><input type=\"text\" id=\"header\" name=\"header\">\
             <label for=\"format\">Header value, <code>{{}}</code> for the secret (default <code>Bearer {{}}</code>)</label><input type=\"text\" id=\"format\" name=\"format\">\
             <label for=\"methods\">Methods (default any)</label><input type=\"text\" id=\"methods\" name=\"methods\">\
             <label for=\"paths\">Paths, exact or a prefix ending in <code>*</code> (default any)</label><input type=\"text\" id=\"paths\" name=\"paths\">\
             <label for=\"env\">Environment variable of the run's handle (default the name)</label><input type=\"text\" id=\"env\" name=\"env\">\
             <p><button type=\"submit\" id=\"set\">Set secret</button> Setting an existing name replaces its value and binding.</p></form>\n"
        );
    } else {
        b.push_str("<p id=\"read-only\">Only an administrator of the tenant can set or remove secrets.</p>\n");
    }

    let mut resp = html_page("Secrets", s, &b);
    *resp.status_mut() = status;
    Ok(resp)
}

fn vault_unavailable(s: &Session) -> Response {
    let mut r = html_page(
        "Secrets",
        s,
        "<p class=\"error\" id=\"notice\">The vault is unavailable on this node (locked with a passphrase, or damaged): nothing was read or changed.</p>",
    );
    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    r
}

/// A change's outcome: back to the list (303, nothing in the URL) or the
/// page with the error (never the value).
async fn after<T>(
    d: &Arc<Dash>,
    s: &Session,
    outcome: Result<T, ApiError>,
) -> Result<Response, DashError> {
    match outcome {
        Ok(_) => Ok(Redirect::to("/secrets").into_response()),
        Err(ApiError::BadRequest(msg)) => {
            let notice = format!(
                "<p class=\"error\" id=\"notice\">Not set: {}</p>",
                esc(&msg)
            );
            page(d, s, &notice, StatusCode::BAD_REQUEST).await
        }
        Err(ApiError::VaultUnavailable) => Ok(vault_unavailable(s)),
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn secrets(State(d): State<Arc<Dash>>, s: Session) -> Result<Response, DashError> {
    page(&d, &s, "", StatusCode::OK).await
}

/// The set form. No `Debug`: it holds the value.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    hosts: String,
    #[serde(default)]
    header: String,
    #[serde(default)]
    format: String,
    #[serde(default)]
    methods: String,
    #[serde(default)]
    paths: String,
    #[serde(default)]
    env: String,
}

/// Set (or replace) a secret: an administrator's, with the session's CSRF token.
pub(crate) async fn set(
    State(d): State<Arc<Dash>>,
    s: Session,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, DashError> {
    let f: SetForm = form(&body)?;
    check_post(&d, &headers, Some(&s), Some(&f.csrf), "/secrets").await?;
    require_admin_user(&d, &s).await?;
    let name = f.name.trim().to_owned();
    let spec = SetSecret {
        value: f.value,
        hosts: words(&f.hosts),
        header: some(f.header),
        format: some(f.format),
        methods: words(&f.methods),
        paths: words(&f.paths),
        env: some(f.env),
        query: None,
        basic: false,
    };
    let out = airlock_api::set_secret(&d.api, &s.tenant, s.actor(), "dashboard", &name, spec).await;
    after(&d, &s, out).await
}

/// The rotate form. No `Debug`: it holds the value.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RotateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    value: String,
}

/// Replace a secret's value, keeping its binding.
pub(crate) async fn rotate(
    State(d): State<Arc<Dash>>,
    s: Session,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, DashError> {
    let f: RotateForm = form(&body)?;
    check_post(
        &d,
        &headers,
        Some(&s),
        Some(&f.csrf),
        "/secrets/{name}/rotate",
    )
    .await?;
    require_admin_user(&d, &s).await?;
    let value = Secret::new(f.value);
    let out =
        airlock_api::rotate_secret(&d.api, &s.tenant, s.actor(), "dashboard", &name, value).await;
    after(&d, &s, out).await
}

/// The confirmation page before a removal.
pub(crate) async fn confirm_remove(
    State(d): State<Arc<Dash>>,
    s: Session,
    Path(name): Path<String>,
) -> Result<Response, DashError> {
    require_admin_user(&d, &s).await?;
    let m = match airlock_api::secret_meta(&d.api, &s.tenant, &name).await {
        Ok(m) => m,
        Err(ApiError::VaultUnavailable) => return Ok(vault_unavailable(&s)),
        Err(ApiError::NotFound | ApiError::BadRequest(_)) => return Err(DashError::NotFound),
        Err(e) => return Err(e.into()),
    };
    let b = format!(
        "<div class=\"box\"><p>Remove the secret <b class=\"mono\">{n}</b> (version {}, sent to {})? Runs that use it will no longer get it. This cannot be undone.</p>\
         <form method=\"post\" action=\"/secrets/{n}/remove\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <button type=\"submit\" id=\"confirm-remove\">Remove {n}</button> <a href=\"/secrets\">Cancel</a></form></div>",
        m.version,
        esc(&m.binding.hosts.join(" ")),
        esc(&s.csrf()),
        n = esc(&m.name),
    );
    Ok(html_page("Remove secret", &s, &b))
}

/// Remove a secret (after the confirmation page).
pub(crate) async fn remove(
    State(d): State<Arc<Dash>>,
    s: Session,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, DashError> {
    let f: CsrfForm = form(&body)?;
    check_post(
        &d,
        &headers,
        Some(&s),
        Some(&f.csrf),
        "/secrets/{name}/remove",
    )
    .await?;
    require_admin_user(&d, &s).await?;
    let out = airlock_api::remove_secret(&d.api, &s.tenant, s.actor(), "dashboard", &name).await;
    after(&d, &s, out).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_fields_split_on_spaces_commas_and_lines() {
        assert_eq!(words(" GET, POST\nput "), ["GET", "POST", "put"]);
        assert!(words("  ,, ").is_empty());
        assert_eq!(some("  ".into()), None);
        assert_eq!(some(" X-Key ".into()).as_deref(), Some("X-Key"));
    }

    fn meta(name: &str) -> SecretMeta {
        SecretMeta {
            name: name.into(),
            version: 3,
            binding: airlock_api::SecretBinding {
                hosts: vec!["api.example.com".into()],
                header: "Authorization".into(),
                format: "Bearer {}".into(),
                methods: vec![],
                paths: vec![],
                env: None,
                query: None,
                basic: false,
            },
            updated_at: 0,
        }
    }

    #[test]
    fn only_an_administrator_gets_the_forms_and_every_field_is_escaped() {
        let (mut admin, mut reader) = (String::new(), String::new());
        row(&mut admin, &meta("k<b>"), true, "tok");
        row(&mut reader, &meta("k"), false, "tok");
        assert!(
            admin.contains("action=\"/secrets/k&lt;b&gt;/rotate\""),
            "{admin}"
        );
        assert!(admin.contains("type=\"password\" name=\"value\" autocomplete=\"off\""));
        assert!(!admin.contains("<b>"), "{admin}");
        assert!(
            !reader.contains("<form") && !reader.contains("remove"),
            "{reader}"
        );
        assert!(
            reader.contains("<td class=\"env mono\">k</td><td class=\"version\">3</td>"),
            "the env defaults to the name: {reader}"
        );
    }
}
