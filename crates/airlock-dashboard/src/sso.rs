//! The SSO routes: `/login/oidc` and `/login/oidc/callback` (the protocol
//! is in [`crate::oidc`]). Every refusal is audited (`api.auth_failed`,
//! `unauthenticated`, `refusal` naming the failed check) and answered with
//! an HTML page.

use crate::oidc::{Identity, PRELOGIN_COOKIE, Refusal};
use crate::pages::{cookie, html, start_session};
use crate::{Dash, DashError, html as h};
use airlock_store::UserRow;
use airlock_types::{Action, Actor, ActorKind, AuditEvent, EventResult, Reason, Timestamp};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;

fn prelogin_cookie(d: &Dash, value: &str, max_age: u32) -> String {
    // Lax, not Strict: the provider's redirect back is a cross-site
    // navigation, and this cookie must come with it. It opens nothing by
    // itself: it only binds the pending login to this browser.
    let secure = if d.tls { "; Secure" } else { "" };
    format!(
        "{PRELOGIN_COOKIE}={value}; Path=/login/oidc; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
    )
}

/// Audit the refusal and answer with a page naming the failed check.
async fn refused(
    d: &Arc<Dash>,
    target: &'static str,
    r: Refusal,
    who: Option<&Identity>,
) -> Result<Response, DashError> {
    tracing::warn!(check = r.check, detail = %r.detail, "SSO login refused");
    let user = who.map(|i| (&i.tenant, i.username.as_str()));
    let ev = crate::pages::auth_failed(user, target, Reason::Unauthenticated)
        .with_detail("login", "oidc")
        .with_detail("refusal", r.check);
    d.api.record(ev).await?;
    let status = match r.check {
        "discovery" | "discovery_issuer" | "jwks" | "token_exchange" => StatusCode::BAD_GATEWAY,
        "too_many_pending_logins" | "random" | "pending" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::UNAUTHORIZED,
    };
    let body = format!(
        "<div class=\"login box\"><p class=\"error\" id=\"error\">Single sign-on failed ({}).</p>\
         <p><a href=\"/login\">Back to the login page</a></p></div>",
        h::esc(r.check)
    );
    Ok(html(status, h::page("Log in", None, &body)))
}

/// `GET /login/oidc`: start a login at the provider.
pub(crate) async fn start(State(d): State<Arc<Dash>>) -> Result<Response, DashError> {
    let Some(o) = d.oidc.clone() else {
        return Err(DashError::NotFound);
    };
    let s = match o.start().await {
        Ok(s) => s,
        Err(r) => return refused(&d, "GET /login/oidc", r, None).await,
    };
    let mut resp = (StatusCode::SEE_OTHER, [(header::CACHE_CONTROL, "no-store")]).into_response();
    let loc = HeaderValue::from_str(&s.location)
        .map_err(|_| DashError::Internal("authorization URL".into()))?;
    resp.headers_mut().insert(header::LOCATION, loc);
    let c = HeaderValue::from_str(&prelogin_cookie(&d, s.cookie.expose(), 600))
        .map_err(|_| DashError::Internal("cookie".into()))?;
    resp.headers_mut().insert(header::SET_COOKIE, c);
    Ok(resp)
}

/// The callback's query (providers may add more, e.g. `iss`,
/// `session_state`: ignored).
#[derive(Deserialize)]
pub(crate) struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

const CALLBACK: &str = "GET /login/oidc/callback";

/// `GET /login/oidc/callback`: finish the login, map the user (created at
/// the first login), start a session.
pub(crate) async fn callback(
    State(d): State<Arc<Dash>>,
    headers: HeaderMap,
    q: Result<Query<Callback>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, DashError> {
    let Some(o) = d.oidc.clone() else {
        return Err(DashError::NotFound);
    };
    let refuse = |check: &'static str, detail: String| Refusal { check, detail };
    let Ok(Query(q)) = q else {
        return refused(
            &d,
            CALLBACK,
            refuse("callback_malformed", "query".into()),
            None,
        )
        .await;
    };
    if let Some(e) = q.error {
        // Take the pending login out, so its state cannot be used later.
        if let Some(st) = &q.state {
            let _ = o.finish(st, "", None).await;
        }
        return refused(&d, CALLBACK, refuse("provider_error", e), None).await;
    }
    let (Some(code), Some(state)) = (q.code, q.state) else {
        return refused(
            &d,
            CALLBACK,
            refuse("callback_malformed", "no code or state".into()),
            None,
        )
        .await;
    };
    if code.len() > 4096 || state.len() > 256 {
        return refused(
            &d,
            CALLBACK,
            refuse("callback_malformed", "too long".into()),
            None,
        )
        .await;
    }
    let id = match o
        .finish(&state, &code, cookie(&headers, PRELOGIN_COOKIE))
        .await
    {
        Ok(id) => id,
        Err(r) => return refused(&d, CALLBACK, r, None).await,
    };
    let marker = o.account_marker();
    let name = id.username.clone();
    let existing = d.accounts(move |a| a.user(&name)).await?;
    let user = match existing {
        Some(u) if u.password_hash != marker => {
            let r = refuse(
                "username_is_a_local_account",
                format!("{} is a local (password) account", u.username),
            );
            return refused(&d, CALLBACK, r, Some(&id)).await;
        }
        Some(u) if u.tenant != id.tenant => {
            let r = refuse(
                "tenant_changed",
                format!("{} belongs to tenant {}", u.username, u.tenant),
            );
            return refused(&d, CALLBACK, r, Some(&id)).await;
        }
        Some(u) => u,
        None => {
            let row = UserRow {
                username: id.username.clone(),
                tenant: id.tenant.clone(),
                password_hash: marker,
                admin: o.cfg.admins.contains(&id.username),
                created_at: Timestamp::now().as_micros(),
                must_change_password: false,
            };
            d.api
                .record(
                    AuditEvent::new(
                        id.tenant.clone(),
                        Actor::new(ActorKind::Operator, format!("user:{}", id.username)),
                        Action::UserCreated,
                        format!("user:{}", id.username),
                        Reason::Recorded,
                        EventResult::Success,
                    )
                    .with_detail("via", "dashboard")
                    .with_detail("login", "oidc")
                    .with_detail("subject", id.subject.as_str())
                    .with_detail("admin", row.admin),
                )
                .await?;
            let r2 = row.clone();
            if !d.accounts(move |a| a.user_create(&r2)).await? {
                // Created by a concurrent login a moment ago: check it as above.
                let r = refuse("username_taken", "created concurrently; retry".into());
                return refused(&d, CALLBACK, r, Some(&id)).await;
            }
            row
        }
    };
    let c = start_session(&d, &headers, &user, "oidc").await?;
    // A page, not a redirect: after the provider's cross-site redirect, a
    // redirect to /runs would still count as cross-site and the browser
    // would withhold the SameSite=Strict session cookie. The refresh comes
    // from this site's page.
    let body = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
        <meta http-equiv=\"refresh\" content=\"0;url=/runs\"><title>Logged in · Airlock</title>\
        <link rel=\"stylesheet\" href=\"/static/app.css\"></head><body>\
        <main><p>Logged in. <a id=\"continue\" href=\"/runs\">Continue to the runs</a>.</p></main></body></html>\n"
        .to_owned();
    let mut resp = html(StatusCode::OK, body);
    resp.headers_mut().append(header::SET_COOKIE, c);
    let clear = HeaderValue::from_str(&prelogin_cookie(&d, "", 0))
        .map_err(|_| DashError::Internal("cookie".into()))?;
    resp.headers_mut().append(header::SET_COOKIE, clear);
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}
