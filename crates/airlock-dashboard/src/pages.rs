//! The routes: login and logout, the session check, and the pages.

use crate::auth::{self, Provenance};
use crate::html::{Who, esc, page, time};
use crate::throttle::Key;
use crate::{Dash, DashError};
use airlock_api::auth::{Scope, TokenSpec};
use airlock_store::SessionRow;
use airlock_types::{
    Action, Actor, ActorKind, AuditEvent, EventResult, Reason, TenantId, Timestamp,
};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Extension, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

/// A logged-in user, from a live session cookie.
pub(crate) struct Session {
    pub(crate) tenant: TenantId,
    pub(crate) username: String,
    token: String,
    hash: [u8; 32],
}

impl Session {
    pub(crate) fn csrf(&self) -> String {
        auth::csrf_token(&self.token)
    }
    pub(crate) fn actor(&self) -> Actor {
        Actor::new(ActorKind::Operator, format!("user:{}", self.username))
    }

    /// Whether the session is still live now (not logged out, revoked,
    /// expired or idle, and its user still exists in its tenant): what a
    /// long-lived socket re-checks.
    pub(crate) async fn still_live(&self, d: &Arc<Dash>) -> bool {
        let (hash, name, tenant) = (self.hash, self.username.clone(), self.tenant.clone());
        let now = Timestamp::now().as_micros();
        let limits = d.limits;
        d.accounts(move |a| {
            let live = a
                .session_by_hash(&hash)?
                .is_some_and(|r| auth::live(&r, now, limits).is_ok());
            Ok(live && a.user(&name)?.is_some_and(|u| u.tenant == tenant))
        })
        .await
        .unwrap_or(false)
    }
}

/// An `api.auth_failed` record of the dashboard: in the user's tenant as
/// `user:NAME` when known, else in the installation's (`default`) as `unknown`.
pub(crate) fn auth_failed(
    user: Option<(&TenantId, &str)>,
    resource: impl Into<String>,
    reason: Reason,
) -> AuditEvent {
    let (tenant, actor) = match user {
        Some((t, name)) => (
            t.clone(),
            Actor::new(ActorKind::Operator, format!("user:{name}")),
        ),
        None => (
            TenantId::default_tenant(),
            Actor::new(ActorKind::Operator, "unknown"),
        ),
    };
    AuditEvent::new(
        tenant,
        actor,
        Action::ApiAuthFailed,
        resource,
        reason,
        EventResult::Denied,
    )
    .with_detail("via", "dashboard")
}

/// The session cookie's value, if the request carries one.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl FromRequestParts<Arc<Dash>> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, d: &Arc<Dash>) -> Result<Self, Response> {
        let to_login = || Redirect::to("/login").into_response();
        let Some(token) = cookie(&parts.headers, d.cookie_name()) else {
            return Err(to_login());
        };
        let token = token.to_owned();
        let hash = auth::session_hash(&token);
        let now = Timestamp::now().as_micros();
        let limits = d.limits;
        let row = d
            .accounts(move |a| a.session_by_hash(&hash))
            .await
            .map_err(IntoResponse::into_response)?;
        let Some(row) = row else {
            return Err(to_login());
        };
        if auth::live(&row, now, limits).is_err() {
            return Err(to_login());
        }
        let name = row.username.clone();
        let user = d
            .accounts(move |a| a.user(&name))
            .await
            .map_err(IntoResponse::into_response)?;
        match user {
            Some(u) if u.tenant == row.tenant => {
                // A one-time password is replaced before anything else.
                let path = parts.uri.path();
                if u.must_change_password && path != "/password" && path != "/logout" {
                    return Err(Redirect::to("/password").into_response());
                }
            }
            _ => return Err(to_login()),
        }
        d.accounts(move |a| a.session_touch(&hash, now))
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Session {
            tenant: row.tenant,
            username: row.username,
            token,
            hash,
        })
    }
}

pub(crate) fn provenance<'a>(d: &Dash, h: &'a HeaderMap) -> Provenance<'a> {
    let get = |n: header::HeaderName| h.get(n).and_then(|v| v.to_str().ok());
    Provenance {
        origin: get(header::ORIGIN),
        fetch_site: h.get("sec-fetch-site").and_then(|v| v.to_str().ok()),
        host: get(header::HOST),
        tls: d.tls,
    }
}

/// A form body (`application/x-www-form-urlencoded`), strict.
pub(crate) fn form<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, DashError> {
    serde_urlencoded::from_bytes(body).map_err(|_| DashError::BadRequest)
}

/// Refuse (403, audited as `csrf_refused`) a state-changing request from
/// another site or without this session's CSRF token.
pub(crate) async fn check_post(
    d: &Arc<Dash>,
    h: &HeaderMap,
    s: Option<&Session>,
    csrf: Option<&str>,
    what: &str,
) -> Result<(), DashError> {
    let site_ok = auth::same_origin(provenance(d, h));
    let token_ok = match s {
        Some(s) => auth::csrf_ok(&s.token, csrf.unwrap_or("")),
        None => true,
    };
    if site_ok && token_ok {
        return Ok(());
    }
    let user = s.map(|s| (&s.tenant, s.username.as_str()));
    let ev = auth_failed(user, format!("POST {what}"), Reason::CsrfRefused)
        .with_detail("check", if site_ok { "csrf_token" } else { "origin" });
    d.api.record(ev).await.map_err(DashError::from)?;
    Err(DashError::Csrf)
}

pub(crate) fn who(s: &Session) -> (String, String, String) {
    (s.username.clone(), s.tenant.as_str().to_owned(), s.csrf())
}

pub(crate) fn html_page(title: &str, s: &Session, body: &str) -> Response {
    html_page_status(StatusCode::OK, title, s, body)
}

/// A page for the session's user, answered with `status`.
pub(crate) fn html_page_status(
    status: StatusCode,
    title: &str,
    s: &Session,
    body: &str,
) -> Response {
    let (u, t, c) = who(s);
    let w = Who {
        username: &u,
        tenant: &t,
        csrf: &c,
    };
    html(status, page(title, Some(&w), body))
}

pub(crate) fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

pub(crate) async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../assets/app.css"),
    )
        .into_response()
}

pub(crate) async fn root() -> Redirect {
    Redirect::to("/runs")
}

pub(crate) fn login_form(error: Option<&str>, sso: bool) -> String {
    let err = error
        .map(|e| format!("<p class=\"error\" id=\"error\">{}</p>", esc(e)))
        .unwrap_or_default();
    let sso = if sso {
        "<p><a class=\"button\" id=\"sso\" href=\"/login/oidc\">Log in with SSO</a></p>"
    } else {
        ""
    };
    page(
        "Log in",
        None,
        &format!(
            "<div class=\"login box\">{err}<form method=\"post\" action=\"/login\">\
             <label for=\"username\">Username</label><input type=\"text\" id=\"username\" name=\"username\" autocomplete=\"username\" required>\
             <label for=\"password\">Password</label><input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
             <p><button type=\"submit\" id=\"login\">Log in</button></p></form>{sso}</div>"
        ),
    )
}

pub(crate) async fn login_page(State(d): State<Arc<Dash>>) -> Response {
    html(StatusCode::OK, login_form(None, d.oidc.is_some()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginForm {
    username: String,
    password: String,
}

/// Check the password (Argon2id, off the async threads; an unknown name
/// costs the same), revoke a session the browser still presents, start a
/// new one.
pub(crate) async fn login(
    State(d): State<Arc<Dash>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, DashError> {
    check_post(&d, &headers, None, None, "/login").await?;
    let f: LoginForm = form(&body)?;
    if f.username.len() > 256 || f.password.len() > 1024 {
        return Err(DashError::BadRequest);
    }
    let name = f.username.clone();
    let user = d.accounts(move |a| a.user(&name)).await?;
    let client = peer.map(|Extension(ConnectInfo(a))| a.ip());
    let mut keys = vec![Key::user(&f.username)];
    keys.extend(client.map(Key::addr));
    if let Some((key, left)) = d.throttle.locked(&keys, Instant::now()) {
        // No password is checked; the same answer for every name.
        let who = user.as_ref().map(|u| (&u.tenant, u.username.as_str()));
        let mut ev = auth_failed(who, "POST /login", Reason::Unauthenticated)
            .with_detail("refusal", "throttled")
            .with_detail("throttled_by", key.kind());
        if let Some(ip) = client {
            ev = ev.with_detail("client", ip.to_string());
        }
        d.api.record(ev).await?;
        let mut resp = html(
            StatusCode::TOO_MANY_REQUESTS,
            login_form(
                Some("Too many failed logins. Wait a few minutes, then try again."),
                d.oidc.is_some(),
            ),
        );
        if let Ok(v) = HeaderValue::from_str(&left.as_secs().saturating_add(1).to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Ok(resp);
    }
    let phc = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| auth::decoy_hash().to_owned());
    let password = airlock_types::Secret::new(f.password);
    let ok = tokio::task::spawn_blocking(move || auth::verify_password(password.expose(), &phc))
        .await
        .map_err(|e| DashError::Internal(format!("password check: {e}")))?;
    let user = match (user, ok) {
        (Some(u), true) => u,
        (u, _) => {
            d.throttle.failed(&keys, Instant::now());
            let user = u.as_ref().map(|u| (&u.tenant, u.username.as_str()));
            let ev = auth_failed(user, "POST /login", Reason::Unauthenticated).with_detail(
                "refusal",
                if u.is_some() {
                    "wrong_password"
                } else {
                    "unknown_user"
                },
            );
            d.api.record(ev).await?;
            return Ok(html(
                StatusCode::UNAUTHORIZED,
                login_form(Some("Wrong username or password."), d.oidc.is_some()),
            ));
        }
    };
    d.throttle.succeeded(&Key::user(&f.username));
    let c = start_session(&d, &headers, &user, "password").await?;
    let mut resp = Redirect::to("/runs").into_response();
    resp.headers_mut().insert(header::SET_COOKIE, c);
    Ok(resp)
}

/// A new session for `user` (audited as `session.created`, `login` saying
/// how), revoking the one the browser still presents; returns the
/// `Set-Cookie` value.
pub(crate) async fn start_session(
    d: &Arc<Dash>,
    headers: &HeaderMap,
    user: &airlock_store::UserRow,
    login: &'static str,
) -> Result<HeaderValue, DashError> {
    let now = Timestamp::now().as_micros();
    let token = auth::new_session_token().map_err(|e| DashError::Internal(e.0))?;
    let row = SessionRow {
        sha256: auth::session_hash(token.expose()),
        tenant: user.tenant.clone(),
        username: user.username.clone(),
        created_at: now,
        last_seen_at: now,
        expires_at: now.saturating_add(d.limits.absolute_us),
        revoked_at: None,
    };
    let old = cookie(headers, d.cookie_name()).map(auth::session_hash);
    d.api
        .record(
            AuditEvent::new(
                user.tenant.clone(),
                Actor::new(ActorKind::Operator, format!("user:{}", user.username)),
                Action::SessionCreated,
                if login == "password" {
                    "POST /login"
                } else {
                    "GET /login/oidc/callback"
                },
                Reason::Recorded,
                EventResult::Success,
            )
            .with_detail("via", "dashboard")
            .with_detail("login", login)
            .with_detail("replaced_session", old.is_some()),
        )
        .await?;
    d.accounts(move |a| {
        if let Some(old) = old {
            a.session_revoke(&old, now)?;
        }
        a.session_insert(&row)
    })
    .await?;
    HeaderValue::from_str(&d.set_cookie(token.expose()))
        .map_err(|_| DashError::Internal("cookie".into()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    pub(crate) csrf: String,
}

pub(crate) async fn logout(
    State(d): State<Arc<Dash>>,
    s: Session,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, DashError> {
    let f: CsrfForm = form(&body)?;
    check_post(&d, &headers, Some(&s), Some(&f.csrf), "/logout").await?;
    d.api
        .record(
            AuditEvent::new(
                s.tenant.clone(),
                s.actor(),
                Action::SessionRevoked,
                "POST /logout",
                Reason::Recorded,
                EventResult::Success,
            )
            .with_detail("via", "dashboard"),
        )
        .await?;
    let (hash, now) = (s.hash, Timestamp::now().as_micros());
    d.accounts(move |a| a.session_revoke(&hash, now)).await?;
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&d.clear_cookie())
            .map_err(|_| DashError::Internal("cookie".into()))?,
    );
    Ok(resp)
}

pub(crate) fn state_class(s: &str) -> &'static str {
    match s {
        "deny" | "denied" | "failed" | "failure" => "deny",
        "allow" | "success" | "exited" => "allow",
        _ => "",
    }
}

pub(crate) async fn runs(State(d): State<Arc<Dash>>, s: Session) -> Result<Response, DashError> {
    let t = s.tenant.clone();
    let rows = d.api.db(move |c| c.runs(&t, 200, None)).await?;
    let mut b = String::from(
        "<table id=\"runs\"><thead><tr><th>Run</th><th>Agent</th><th>Command</th><th>State</th><th>Exit</th><th>Started (UTC)</th></tr></thead><tbody>\n",
    );
    for r in &rows {
        let _ = writeln!(
            b,
            "<tr><td class=\"mono\"><a href=\"/runs/{id}\">{id}</a></td><td>{}</td><td class=\"mono\">{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td></tr>",
            esc(r.agent.as_deref().unwrap_or("")),
            esc(&r.command.join(" ")),
            state_class(r.state.as_str()),
            r.state.as_str(),
            r.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            time(r.started_at),
            id = esc(&r.id),
        );
    }
    if rows.is_empty() {
        b.push_str("<tr><td colspan=\"6\">No runs yet.</td></tr>\n");
    }
    b.push_str("</tbody></table>");
    Ok(html_page("Runs", &s, &b))
}

/// Audit records of `tenant` that `keep` accepts, from the start, at most `limit`.
pub(crate) async fn records(
    d: &Arc<Dash>,
    tenant: TenantId,
    limit: usize,
    keep: impl Fn(&AuditEvent) -> bool + Send + 'static,
) -> Result<Vec<(u64, AuditEvent)>, DashError> {
    let out = d
        .api
        .audit_read(move |store| {
            let mut out = Vec::new();
            let mut bad = None;
            store
                .for_each_record(&tenant, 0, &mut |r| {
                    match airlock_audit::canonical::decode(r.body) {
                        Ok(ev) if keep(&ev) => out.push((r.index, ev)),
                        Ok(_) => {}
                        Err(e) => {
                            bad = Some(format!("record {}: {e}", r.index));
                            return ControlFlow::Break(());
                        }
                    }
                    // Keep the newest `limit`.
                    if out.len() > limit {
                        out.remove(0);
                    }
                    ControlFlow::Continue(())
                })
                .map_err(|e| airlock_api::ApiError::Internal(e.to_string()))?;
            match bad {
                Some(e) => Err(airlock_api::ApiError::Internal(e)),
                None => Ok(out),
            }
        })
        .await?;
    Ok(out)
}

/// The records as a table; `with_run`: a column linking each record's run;
/// `proofs`: the number of records the latest signed checkpoint covers (a
/// column linking each covered record's inclusion proof download).
/// A record's decision (`allow`, `deny`, … or empty) and result, as text.
pub(crate) fn outcome_of(ev: &AuditEvent) -> (&'static str, String) {
    let decision = ev.decision.map(|o| o.as_str()).unwrap_or("");
    let result = serde_json::to_value(ev.result)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    (decision, result)
}

pub(crate) fn timeline(recs: &[(u64, AuditEvent)], with_run: bool, proofs: Option<u64>) -> String {
    let mut b = String::from("<table class=\"timeline\"><thead><tr><th>#</th><th>Time (UTC)</th>");
    if with_run {
        b.push_str("<th>Run</th>");
    }
    b.push_str("<th>Action</th><th>Decision</th><th>Reason</th><th>Resource</th><th>Result</th><th>Details</th>");
    if proofs.is_some() {
        b.push_str("<th>Proof</th>");
    }
    b.push_str("</tr></thead><tbody>\n");
    for (i, ev) in recs {
        let (decision, result) = outcome_of(ev);
        let details = if ev.details.is_empty() {
            String::new()
        } else {
            let text = esc(&serde_json::Value::Object(ev.details.clone()).to_string());
            if text.len() > 160 {
                // Long details (an attestation) fold away, without script.
                format!(
                    "<details><summary>{} fields</summary>{text}</details>",
                    ev.details.len()
                )
            } else {
                text
            }
        };
        let _ = write!(b, "<tr><td>{i}</td><td>{}</td>", time(ev.time.as_micros()));
        if with_run {
            let run = ev.run_id.as_ref().map(|r| r.as_str()).unwrap_or("");
            let _ = write!(
                b,
                "<td class=\"mono\"><a href=\"/runs/{r}\">{r}</a></td>",
                r = esc(run)
            );
        }
        let _ = write!(
            b,
            "<td>{}</td><td class=\"{}\">{}</td><td class=\"reason\">{}</td><td class=\"mono resource\">{}</td><td class=\"{}\">{}</td><td class=\"mono\">{}</td>",
            esc(ev.action.as_str()),
            state_class(decision),
            esc(decision),
            esc(ev.reason.code()),
            esc(&ev.resource),
            state_class(&result),
            esc(&result),
            details,
        );
        match proofs {
            Some(n) if *i < n => {
                let _ = write!(
                    b,
                    "<td><a class=\"proof\" href=\"/audit/proof/{i}\" download>proof</a></td>"
                );
            }
            Some(_) => b.push_str("<td>not signed yet</td>"),
            None => {}
        }
        b.push_str("</tr>\n");
    }
    if recs.is_empty() {
        b.push_str("<tr><td colspan=\"10\">No records.</td></tr>\n");
    }
    b.push_str("</tbody></table>");
    b
}

pub(crate) async fn run(
    State(d): State<Arc<Dash>>,
    s: Session,
    Path(id): Path<String>,
) -> Result<Response, DashError> {
    let (t, rid) = (s.tenant.clone(), id.clone());
    let Some(r) = d.api.db(move |c| c.run(&t, &rid)).await? else {
        return Err(DashError::NotFound);
    };
    let rid = id.clone();
    let recs = records(&d, s.tenant.clone(), 1000, move |ev| {
        ev.run_id.as_ref().is_some_and(|x| x.as_str() == rid)
    })
    .await?;
    let mut b = String::new();
    let _ = write!(
        b,
        "<div class=\"box\"><p>Agent: <b>{}</b> · State: <b class=\"{}\">{}</b> · Exit: {} · Node: {}</p>\
         <p>Started {} UTC{}</p><p class=\"mono\">{}</p></div>",
        esc(r.agent.as_deref().unwrap_or("(none)")),
        state_class(r.state.as_str()),
        r.state.as_str(),
        r.exit_code.map(|c| c.to_string()).unwrap_or_default(),
        esc(&r.node),
        time(r.started_at),
        r.ended_at
            .map(|e| format!(", ended {} UTC", time(e)))
            .unwrap_or_default(),
        esc(&r.command.join(" ")),
    );
    b.push_str(&crate::run_summary::summary(&recs));
    b.push_str("<h2>Timeline</h2>");
    // Live: `/static/live.js` appends the records that follow the last
    // one shown, from the session-authenticated socket.
    let next = recs.last().map_or(0, |(i, _)| i + 1);
    let _ = write!(
        b,
        "<p id=\"live-status\" class=\"muted\" data-live=\"/live/runs/{}?from={next}\">Live updates need script.</p>",
        esc(&r.id)
    );
    b.push_str(&timeline(&recs, false, None));
    b.push_str("<script src=\"/static/live.js\" defer></script>");
    Ok(html_page(&format!("Run {}", r.id), &s, &b))
}

/// Whether the session's user is an administrator of its tenant.
pub(crate) async fn is_admin_user(d: &Arc<Dash>, s: &Session) -> Result<bool, DashError> {
    let (name, tenant) = (s.username.clone(), s.tenant.clone());
    Ok(d.accounts(move |a| a.user(&name))
        .await?
        .is_some_and(|u| u.admin && u.tenant == tenant))
}

pub(crate) fn require_admin_user(
    d: &Arc<Dash>,
    s: &Session,
) -> impl Future<Output = Result<(), DashError>> {
    let (d, name, tenant) = (d.clone(), s.username.clone(), s.tenant.clone());
    async move {
        match d.accounts(move |a| a.user(&name)).await? {
            Some(u) if u.admin && u.tenant == tenant => Ok(()),
            _ => Err(DashError::Forbidden),
        }
    }
}

async fn tokens_page(
    d: &Arc<Dash>,
    s: &Session,
    minted: Option<(&str, &str)>,
) -> Result<Response, DashError> {
    let t = s.tenant.clone();
    let rows = d.api.db(move |c| c.tokens(&t)).await?;
    let now = Timestamp::now().as_micros();
    let csrf = s.csrf();
    let mut b = String::new();
    if let Some((id, token)) = minted {
        let _ = write!(
            b,
            "<div class=\"box\"><p>Created <b>{}</b>. Copy the token now: it is shown once.</p><p class=\"mono shown-once\" id=\"new-token\">{}</p></div>",
            esc(id),
            esc(token)
        );
    }
    let scopes: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
    let _ = write!(
        b,
        "<form method=\"post\" action=\"/tokens\" class=\"box\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         Scopes <input type=\"text\" name=\"scopes\" placeholder=\"runs:read audit:read\" style=\"width:20em\" required> \
         Label <input type=\"text\" name=\"description\" style=\"width:14em\"> <button type=\"submit\" id=\"create-token\">Create token</button>\
         <p class=\"mono\">{}</p></form>",
        esc(&csrf),
        esc(&scopes.join(" "))
    );
    b.push_str("<table id=\"tokens\"><thead><tr><th>Id</th><th>State</th><th>Scopes</th><th>Agents</th><th>Label</th><th>Created (UTC)</th><th>Last used</th><th></th></tr></thead><tbody>\n");
    for r in &rows {
        let state = if r.revoked_at.is_some() {
            "revoked"
        } else if r.expires_at.is_some_and(|e| e <= now) {
            "expired"
        } else {
            "active"
        };
        let revoke = if state == "active" {
            format!(
                "<form method=\"post\" action=\"/tokens/{id}/revoke\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\">Revoke</button></form>",
                esc(&csrf),
                id = esc(&r.id)
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            b,
            "<tr><td class=\"mono\">{}</td><td>{state}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{revoke}</td></tr>",
            esc(&r.id),
            esc(&r.scopes.join(" ")),
            esc(&r.agents.join(" ")),
            esc(&r.description),
            time(r.created_at),
            r.last_used_at.map(time).unwrap_or_default(),
        );
    }
    b.push_str("</tbody></table>");
    Ok(html_page("Tokens", s, &b))
}

pub(crate) async fn tokens(State(d): State<Arc<Dash>>, s: Session) -> Result<Response, DashError> {
    require_admin_user(&d, &s).await?;
    tokens_page(&d, &s, None).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewToken {
    #[serde(default)]
    csrf: String,
    scopes: String,
    #[serde(default)]
    description: String,
}

pub(crate) async fn create_token(
    State(d): State<Arc<Dash>>,
    s: Session,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, DashError> {
    let f: NewToken = form(&body)?;
    check_post(&d, &headers, Some(&s), Some(&f.csrf), "/tokens").await?;
    require_admin_user(&d, &s).await?;
    let scopes = f
        .scopes
        .split([' ', ','])
        .filter(|x| !x.is_empty())
        .map(|x| Scope::parse(x).ok_or(DashError::BadRequest))
        .collect::<Result<Vec<_>, _>>()?;
    if f.description.len() > 200 {
        return Err(DashError::BadRequest);
    }
    let now = Timestamp::now().as_micros();
    let minted = airlock_api::auth::mint(
        &s.tenant,
        &TokenSpec {
            scopes,
            agents: Vec::new(),
            nodes: Vec::new(),
            description: f.description,
            expires_at: None,
        },
        now,
    )?;
    d.api
        .record(
            AuditEvent::new(
                s.tenant.clone(),
                s.actor(),
                Action::TokenCreated,
                format!("token:{}", minted.row.id),
                Reason::Recorded,
                EventResult::Success,
            )
            .with_detail("via", "dashboard")
            .with_detail("scopes", minted.row.scopes.clone()),
        )
        .await?;
    let row = minted.row.clone();
    d.api.db(move |c| c.token_insert(&row)).await?;
    tokens_page(&d, &s, Some((&minted.row.id, minted.token.expose()))).await
}

pub(crate) async fn revoke_token(
    State(d): State<Arc<Dash>>,
    s: Session,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, DashError> {
    let f: CsrfForm = form(&body)?;
    check_post(&d, &headers, Some(&s), Some(&f.csrf), "/tokens/{id}/revoke").await?;
    require_admin_user(&d, &s).await?;
    let (t, i) = (s.tenant.clone(), id.clone());
    let active = d
        .api
        .db(move |c| {
            Ok(c.tokens(&t)?
                .iter()
                .any(|r| r.id == i && r.revoked_at.is_none()))
        })
        .await?;
    if !active {
        return Err(DashError::NotFound);
    }
    d.api
        .record(
            AuditEvent::new(
                s.tenant.clone(),
                s.actor(),
                Action::TokenRevoked,
                format!("token:{id}"),
                Reason::Recorded,
                EventResult::Success,
            )
            .with_detail("via", "dashboard"),
        )
        .await?;
    let (t, now) = (s.tenant.clone(), Timestamp::now().as_micros());
    d.api.db(move |c| c.token_revoke(&t, &id, now)).await?;
    Ok(Redirect::to("/tokens").into_response())
}

fn password_form(s: &Session, error: Option<&str>) -> String {
    let err = error
        .map(|e| format!("<p class=\"error\" id=\"error\">{}</p>", esc(e)))
        .unwrap_or_default();
    format!(
        "<div class=\"login box\">{err}<p>Choose your own password (at least 12 characters). A password issued by <code>--init-admin</code> works only for this.</p>\
         <form method=\"post\" action=\"/password\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <label for=\"current\">Current password</label><input type=\"password\" id=\"current\" name=\"current\" autocomplete=\"current-password\" required>\
         <label for=\"new\">New password</label><input type=\"password\" id=\"new\" name=\"new\" autocomplete=\"new-password\" minlength=\"12\" required>\
         <label for=\"confirm\">New password again</label><input type=\"password\" id=\"confirm\" name=\"confirm\" autocomplete=\"new-password\" minlength=\"12\" required>\
         <p><button type=\"submit\" id=\"change\">Change password</button></p></form></div>",
        esc(&s.csrf())
    )
}

pub(crate) async fn password_page(s: Session) -> Response {
    html_page("Change password", &s, &password_form(&s, None))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordChange {
    #[serde(default)]
    csrf: String,
    current: String,
    new: String,
    confirm: String,
}

/// Replace the user's password: the current one is checked (Argon2id),
/// the new one must be 12–1024 characters and differ from it.
pub(crate) async fn change_password(
    State(d): State<Arc<Dash>>,
    s: Session,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, DashError> {
    let f: PasswordChange = form(&body)?;
    check_post(&d, &headers, Some(&s), Some(&f.csrf), "/password").await?;
    let (current, new) = (
        airlock_types::Secret::new(f.current),
        airlock_types::Secret::new(f.new),
    );
    let problem = if new.expose().chars().count() < 12 || new.expose().len() > 1024 {
        Some("The new password must have 12 to 1024 characters.")
    } else if new.expose() != &f.confirm {
        Some("The two new passwords differ.")
    } else if new.expose() == current.expose() {
        Some("The new password must differ from the current one.")
    } else {
        None
    };
    if let Some(p) = problem {
        return Ok(html_page_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Change password",
            &s,
            &password_form(&s, Some(p)),
        ));
    }
    let name = s.username.clone();
    let Some(user) = d.accounts(move |a| a.user(&name)).await? else {
        return Err(DashError::Forbidden);
    };
    // The current password is guessed no faster here than at the login.
    let key = [Key::user(&s.username)];
    if d.throttle.locked(&key, Instant::now()).is_some() {
        d.api
            .record(
                auth_failed(
                    Some((&s.tenant, s.username.as_str())),
                    "POST /password",
                    Reason::Unauthenticated,
                )
                .with_detail("refusal", "throttled")
                .with_detail("throttled_by", "username"),
            )
            .await?;
        return Ok(html_page_status(
            StatusCode::TOO_MANY_REQUESTS,
            "Change password",
            &s,
            &password_form(
                &s,
                Some("Too many failed attempts. Wait a few minutes, then try again."),
            ),
        ));
    }
    let phc = user.password_hash.clone();
    let hashed = tokio::task::spawn_blocking(move || {
        if !auth::verify_password(current.expose(), &phc) {
            return Ok(None);
        }
        auth::hash_password(new.expose()).map(Some)
    })
    .await
    .map_err(|e| DashError::Internal(format!("password hash: {e}")))?
    .map_err(|e| DashError::Internal(e.0))?;
    let Some(hashed) = hashed else {
        d.throttle.failed(&key, Instant::now());
        d.api
            .record(
                AuditEvent::new(
                    s.tenant.clone(),
                    s.actor(),
                    Action::ApiAuthFailed,
                    "POST /password",
                    Reason::Unauthenticated,
                    EventResult::Denied,
                )
                .with_detail("via", "dashboard")
                .with_detail("refusal", "wrong_password"),
            )
            .await?;
        return Ok(html_page_status(
            StatusCode::UNAUTHORIZED,
            "Change password",
            &s,
            &password_form(&s, Some("The current password is wrong.")),
        ));
    };
    d.api
        .record(
            AuditEvent::new(
                s.tenant.clone(),
                s.actor(),
                Action::UserChanged,
                format!("user:{}", s.username),
                Reason::Recorded,
                EventResult::Success,
            )
            .with_detail("via", "dashboard")
            .with_detail("changed", "password"),
        )
        .await?;
    let (t, name) = (s.tenant.clone(), s.username.clone());
    if !d
        .accounts(move |a| a.user_set_password(&t, &name, &hashed))
        .await?
    {
        return Err(DashError::Forbidden);
    }
    Ok(Redirect::to("/runs").into_response())
}

/// Record every malformed request (400) in the tenant's log — the
/// session's tenant when the request carries a live session, else the
/// installation's `default` — as `api.request` / `malformed_request`. A
/// record that cannot be written turns the answer into 503.
pub(crate) async fn audit_malformed(
    State(d): State<Arc<Dash>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let resource = format!("{} {}", req.method(), req.uri().path());
    let hash = cookie(req.headers(), d.cookie_name()).map(auth::session_hash);
    let resp = next.run(req).await;
    if resp.status() != StatusCode::BAD_REQUEST {
        return resp;
    }
    let now = Timestamp::now().as_micros();
    let limits = d.limits;
    let session = match hash {
        Some(h) => d
            .accounts(move |a| a.session_by_hash(&h))
            .await
            .ok()
            .flatten()
            .filter(|r| auth::live(r, now, limits).is_ok()),
        None => None,
    };
    let (tenant, actor) = match session {
        Some(r) => (
            r.tenant,
            Actor::new(ActorKind::Operator, format!("user:{}", r.username)),
        ),
        None => (
            TenantId::default_tenant(),
            Actor::new(ActorKind::Operator, "unknown"),
        ),
    };
    let mut resource = resource;
    if resource.len() > 256 {
        let mut cut = 256;
        while !resource.is_char_boundary(cut) {
            cut -= 1;
        }
        resource.truncate(cut);
    }
    let ev = AuditEvent::new(
        tenant,
        actor,
        Action::ApiRequest,
        resource,
        Reason::MalformedRequest,
        EventResult::Denied,
    )
    .with_detail("via", "dashboard")
    .with_detail("status", 400);
    match d.api.record(ev).await {
        Ok(_) => resp,
        Err(e) => DashError::from(e).into_response(),
    }
}
