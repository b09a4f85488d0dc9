//! Airlock's web dashboard, served by `airlock serve` under `/` next to
//! the API's `/v1`.
//!
//! **Boundary.** A person's browser. Local accounts (Argon2id password
//! hashes, the first admin made by `airlock serve --init-admin`) log in
//! through the form at `/login` (a password issued by `--init-admin` must
//! be replaced at once: every page leads to `/password` until it is); the session is a server-issued random
//! token (`als_` + 256 bits) in an `HttpOnly; Secure; SameSite=Strict`
//! cookie (`__Host-` prefixed; not `Secure` only when serving plain HTTP,
//! which the API allows on loopback only), stored as its SHA-256, new at
//! every login (a session the browser still presents is revoked), ended
//! by logout, after 30 minutes idle or 12 hours in all. Every
//! state-changing request must come from this site (`Origin`,
//! `Sec-Fetch-Site`) and carry the session's CSRF token (HMAC of the
//! cookie value, compared in constant time); a refusal is 403 and an
//! `api.auth_failed` record with `csrf_refused`. Pages (runs, a run's
//! audit timeline, the audit log with the chain's verification, tokens)
//! are rendered on the server; every value passes one escaping function
//! (`html::esc`), which also makes terminal escapes and bidirectional
//! overrides visible. One script, only on the approvals inbox:
//! `/static/approve.js` (CSP `script-src 'self'`: no inline script, no
//! eval), which hashes each pending call's canonical form *as the page
//! displays it* (the element's `textContent`, UTF-8, WebCrypto SHA-256)
//! into the approve form; the server (for an administrator of the tenant
//! only) approves through [`airlock_approval::Review`] as `user:NAME` only
//! when that hash is the
//! pending call's, so a page that shows anything else cannot approve
//! (refusals are recorded as `hash_mismatch` with the hash given; without
//! script nothing is approved). Styles only from `/static/app.css`; both
//! embedded in the binary. Another tenant's objects are 404: every query
//! takes the session's tenant.
//!
//! **Audit page and downloads** (`audit.rs`): the chain's verification
//! beside the latest signed checkpoint (sequence number, records covered,
//! root, time), a link per covered record to its inclusion proof
//! (`/audit/proof/{index}`, an attachment: the API's JSON, which `airlock
//! audit verify --proof FILE` checks offline) and the log's export
//! (`/audit/export`, OCSF or `?format=records` JSON lines, `?from=`; the
//! API's 64 MiB cap, 413 past it). Both need a session and read only its
//! tenant's log (indexes are per tenant: a number past its checkpoint is
//! 404), through the same functions as `/v1/audit/{verify,proof,export}`.
//! A run's page (`run_summary.rs`) shows its sandbox attestation (the
//! `sandbox.attestation` record's fields, nested keys dotted), its
//! decisions counted by outcome, and the settled cost of its LLM calls
//! (`gateway.call`/`llm.*` records: `settled_micros`, else `cost_usd`),
//! all from the run's newest 1,000 records.
//!
//! **What it trusts.** The API's state ([`airlock_api::AppState`]) for
//! runs, tokens and the audit log, and its account store (SQLite).
//!
//! **Single sign-on** (`[serve.oidc]`): OpenID Connect's
//! authorization-code flow with PKCE (S256), `state` and `nonce` held
//! server-side (one use, 10 minutes, bound to an `HttpOnly; SameSite=Lax`
//! pre-login cookie), discovery, JWKS and the code exchange through one
//! hyper/rustls client (`https://`, or `http://` on loopback), the ID
//! token checked with `jsonwebtoken` (RS256/ES256 only; the key by `kid`,
//! or the one key of a one-key set; `iss`, `aud`/`azp`, `exp`, `nbf`,
//! `nonce`). The user is mapped by configured claims (username: `email`,
//! else `sub`; tenant: fixed or a claim), created at the first login (an
//! admin only if listed in `admins`), marked as an SSO account (no
//! password opens it, and SSO never opens a local account of the same
//! name), then gets the same session cookie as the form login. Every
//! refusal is audited (`api.auth_failed`, `unauthenticated`, `refusal`
//! naming the check) and answered with a page.
//!
//! **Login throttling** (`throttle.rs`): 5 failed password checks of a
//! username (known or not), or 20 from one client address, lock it for
//! 30 s, doubling per further failure up to 15 min; while locked no
//! password is checked and the answer is the same 429 page for every name
//! (audited: `api.auth_failed`, `refusal = throttled`, `throttled_by`).
//!
//! **What it does not guarantee.** The login counters live in memory (lost
//! on restart, not shared by replicas), and anyone can lock a username or
//! an address by failing on purpose (at most 15 minutes at a time); behind
//! a reverse proxy every client shares the proxy's address. Accounts are SQLite
//! only: with a PostgreSQL store the dashboard is not served. Pending SSO
//! logins live in memory (at most 10,000; lost on restart); the provider's
//! endpoints are cached for an hour, its keys fetched at every login; no
//! RP-initiated logout at the provider, no `userinfo` call (the ID token's
//! claims only). A canonical form with characters `html::esc` must make
//! visible (bidirectional overrides, C1 controls: JSON leaves them raw)
//! shows differently from what was hashed, so it cannot be approved here
//! (use the CLI).
//!
//! **Secrets** (`secrets.rs`, `/secrets`): names, bindings, versions and
//! last changes of the tenant's secrets in this node's vault; an
//! administrator of the tenant sets one (a password field,
//! `autocomplete="off"`), rotates its value (keeping the binding) or
//! removes it after a confirmation page, through the same functions as the
//! API's `/v1/secrets` (so the same `vault.secret_set`/`vault.secret_rm`
//! records, as `user:NAME`, `via = dashboard`). A value is never shown,
//! never put in a redirect, and an error re-renders the form empty. A
//! vault locked with a passphrase answers 503: the server cannot ask for it.
//!
//! **Agents** (`agents.rs`, `/agents`): the tenant's agents with their
//! active policy version; an agent's page lists its policy versions
//! (SHA-256, author, when) and a line diff between two (`?from=N&to=M`,
//! computed on the server, every line escaped). Read-only.
#![forbid(unsafe_code)]

mod agents;
mod audit;
mod auth;
mod budgets;
#[cfg(feature = "cli")]
pub mod cli;
mod html;
mod inbox;
mod live;
mod oidc;
mod pages;
mod run_summary;
mod secrets;
mod sso;
mod throttle;

pub use auth::SessionLimits;

use airlock_api::{ApiError, AppState};
use airlock_runtime::settings::oidc::OidcSettings;
use airlock_store::{AccountStore, SqliteStore, StoreError};
use airlock_types::{Secret, TenantId};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::{Arc, Mutex};

/// The dashboard's Content-Security-Policy: only this site's own script
/// files (no inline script), no inline style, connections (the live
/// socket) and forms only to this site, nothing from elsewhere, never framed.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The dashboard's shared state.
#[derive(Debug)]
pub(crate) struct Dash {
    api: Arc<AppState>,
    accounts: Arc<Mutex<Box<dyn AccountStore>>>,
    /// The node's SQLite database: pending approvals (decided through
    /// `airlock_approval::Review`) and the gateway's budgets and calls
    /// (`None`, on PostgreSQL: no inbox; the budgets page shows the shared budgets).
    approvals: Option<Arc<Mutex<SqliteStore>>>,
    tls: bool,
    limits: SessionLimits,
    /// Single sign-on, when configured.
    oidc: Option<Arc<oidc::Oidc>>,
    /// Failed password checks per username and client address.
    throttle: throttle::Throttle,
}

impl Dash {
    fn cookie_name(&self) -> &'static str {
        if self.tls {
            "__Host-airlock_session"
        } else {
            "airlock_session"
        }
    }

    fn set_cookie(&self, value: &str) -> String {
        let secure = if self.tls { "; Secure" } else { "" };
        format!(
            "{}={value}; Path=/; HttpOnly; SameSite=Strict{secure}",
            self.cookie_name()
        )
    }

    fn clear_cookie(&self) -> String {
        let secure = if self.tls { "; Secure" } else { "" };
        format!(
            "{}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{secure}",
            self.cookie_name()
        )
    }

    /// Run `f` on the account store, off the async threads.
    async fn accounts<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn AccountStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, DashError> {
        let acc = self.accounts.clone();
        tokio::task::spawn_blocking(move || {
            let mut g = acc
                .lock()
                .map_err(|_| DashError::Internal("account store lock poisoned".into()))?;
            f(g.as_mut()).map_err(|e| DashError::Internal(e.to_string()))
        })
        .await
        .map_err(|e| DashError::Internal(format!("account task failed: {e}")))?
    }
}

/// Why a page could not be served; shown as an HTML page without detail
/// (the detail goes to the server's log).
#[derive(Debug, thiserror::Error)]
pub enum DashError {
    /// No such object in the session's tenant.
    #[error("not found")]
    NotFound,
    /// A malformed form or query.
    #[error("bad request")]
    BadRequest,
    /// The user may not do this.
    #[error("forbidden")]
    Forbidden,
    /// A cross-site request or a missing or wrong CSRF token.
    #[error("cross-site request refused")]
    Csrf,
    /// The answer would be larger than allowed (an export past 64 MiB).
    #[error("too large")]
    TooLarge,
    /// The audit log cannot record the action, so it is not done.
    #[error("audit log unavailable")]
    AuditUnavailable,
    /// Anything else.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ApiError> for DashError {
    fn from(e: ApiError) -> DashError {
        match e {
            ApiError::NotFound => DashError::NotFound,
            ApiError::BadRequest(_) => DashError::BadRequest,
            ApiError::AuditUnavailable => DashError::AuditUnavailable,
            ApiError::TooLarge => DashError::TooLarge,
            other => DashError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for DashError {
    fn into_response(self) -> Response {
        let (status, text) = match &self {
            DashError::NotFound => (StatusCode::NOT_FOUND, "Not found."),
            DashError::BadRequest => (StatusCode::BAD_REQUEST, "Malformed request."),
            DashError::Forbidden => (StatusCode::FORBIDDEN, "You may not do this."),
            DashError::Csrf => (
                StatusCode::FORBIDDEN,
                "Refused: the form did not come from this dashboard (csrf_refused).",
            ),
            DashError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "Too large: export the log in parts (from = the last index + 1).",
            ),
            DashError::AuditUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The audit log cannot record this now, so it was not done.",
            ),
            DashError::Internal(e) => {
                tracing::error!(error = %e, "dashboard request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "Internal error.")
            }
        };
        pages::html(
            status,
            html::page(
                status.canonical_reason().unwrap_or("Error"),
                None,
                &format!(
                    "<p class=\"error\">{}</p><p><a href=\"/runs\">Back</a></p>",
                    html::esc(text)
                ),
            ),
        )
    }
}

/// The dashboard's routes over the API's state (no fallback: unknown
/// paths get the API's 404), with the API's security headers and [`CSP`].
/// `approvals`: a store to read pending approvals from (the inbox).
/// `oidc`: single sign-on's settings and the redirect URL registered at
/// the provider (adds `/login/oidc` and `/login/oidc/callback`).
pub fn router(
    api: Arc<AppState>,
    accounts: Box<dyn AccountStore>,
    approvals: Option<SqliteStore>,
    tls: bool,
    limits: SessionLimits,
    oidc: Option<(OidcSettings, String)>,
) -> Router {
    let d = Arc::new(Dash {
        api,
        accounts: Arc::new(Mutex::new(accounts)),
        approvals: approvals.map(|s| Arc::new(Mutex::new(s))),
        tls,
        limits,
        oidc: oidc.map(|(cfg, redirect)| Arc::new(oidc::Oidc::new(cfg, redirect))),
        throttle: throttle::Throttle::new(throttle::Policy::default()),
    });
    let r = Router::new()
        .route("/", get(pages::root))
        .route("/login", get(pages::login_page).post(pages::login))
        .route("/login/oidc", get(sso::start))
        .route("/login/oidc/callback", get(sso::callback))
        .route("/logout", post(pages::logout))
        .route(
            "/password",
            get(pages::password_page).post(pages::change_password),
        )
        .route("/runs", get(pages::runs))
        .route("/runs/{id}", get(pages::run))
        .route("/audit", get(audit::page))
        .route("/audit/proof/{index}", get(audit::proof))
        .route("/audit/export", get(audit::export))
        .route("/budgets", get(budgets::budgets))
        .route("/approvals", get(inbox::approvals))
        .route("/approvals/{id}/approve", post(inbox::approve))
        .route("/approvals/{id}/deny", post(inbox::deny))
        .route("/static/approve.js", get(inbox::script))
        .route("/live/runs/{id}", get(live::run))
        .route("/static/live.js", get(live::script))
        .route("/agents", get(agents::agents))
        .route("/agents/{name}", get(agents::agent))
        .route("/secrets", get(secrets::secrets).post(secrets::set))
        .route("/secrets/{name}/rotate", post(secrets::rotate))
        .route(
            "/secrets/{name}/remove",
            get(secrets::confirm_remove).post(secrets::remove),
        )
        .route("/tokens", get(pages::tokens).post(pages::create_token))
        .route("/tokens/{id}/revoke", post(pages::revoke_token))
        .route("/static/app.css", get(pages::css))
        .route_layer(axum::middleware::from_fn_with_state(
            d.clone(),
            pages::audit_malformed,
        ))
        .layer(DefaultBodyLimit::max(64 * 1024))
        .with_state(d);
    airlock_api::security_headers(r, CSP, tls)
}

/// Create `admin@TENANT` with a generated one-time password; returns the
/// username and the password (show it once: only its Argon2id hash is
/// stored).
pub fn init_admin(
    accounts: &mut dyn AccountStore,
    tenant: &TenantId,
    now: i64,
) -> Result<(String, Secret<String>), airlock_api::NewAccountError> {
    let username = format!("admin@{tenant}");
    let password = airlock_api::create_local_account(accounts, tenant, &username, true, now)?;
    Ok((username, password))
}
