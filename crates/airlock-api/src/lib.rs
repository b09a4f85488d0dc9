//! Airlock's control-plane API (`airlock serve`).
//!
//! **Boundary.** The network edge of the control plane: HTTPS (rustls; a
//! self-signed certificate for development; plain HTTP only on loopback)
//! with JSON under `/v1`. Every route but `/v1/openapi.json` needs a scoped
//! API token (`Authorization: Bearer alt_…`), checked before the handler
//! runs (and before a WebSocket upgrade): looked up by SHA-256, compared in
//! constant time, refused when expired, revoked or for another node; the
//! route's scope is checked next. Every use is recorded (`api.request`) and
//! every refusal (`api.auth_failed`, `unauthenticated`/`scope_missing`) in
//! the token's tenant's audit log — a refusal with no known tenant in the
//! installation's `default` tenant's log. A request that cannot be recorded
//! is not carried out (503).
//!
//! **What it trusts.** The stores it is given ([`Stores`]: SQLite today,
//! PostgreSQL next), `airlock-runtime` to start runs, and the operator who
//! created the first token on the command line.
//!
//! **What it does not guarantee.** Tenant isolation here is the
//! application's: every query names the authenticated tenant, and another
//! tenant's object is 404. A second line (row-level security) belongs to
//! the PostgreSQL backend. Runs started here run with the server's
//! credentials and no vault secrets yet; their output is discarded (the
//! audit log has what they did). No rate limiting.
#![forbid(unsafe_code)]

mod approvals;
mod audit;
pub mod auth;
mod budgets;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "cli")]
pub mod client;
mod error;
pub mod handlers;
mod launch;
mod runs;
mod secrets;
mod server;
mod state;
mod users;

pub use audit::{MAX_EXPORT_BYTES, VerifyStatus, export_tenant, proof_of, verify_tenant};
pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use runs::RunDefaults;
pub use secrets::{
    SecretBinding, SecretMeta, SecretSet, SetSecret, list_secrets, remove_secret, rotate_secret,
    secret_meta, set_secret,
};
pub use server::{ServeError, TlsMode, openapi_json, router, security_headers, serve};
pub use state::{AppState, Stores};
pub use users::{
    NewAccountError, PasswordError, create_local_account, decoy_hash, generate_password,
    hash_password, verify_password,
};

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

/// A JSON request body: strict (`deny_unknown_fields` on every type),
/// limited in size, errors in the API's format.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

/// Path parameters; a value that does not parse is a 400 in the API's
/// error format (axum's own rejection is plain text).
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> axum::extract::FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let ct = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ct.starts_with("application/json") {
            return Err(ApiError::BadRequest(
                "the body must be JSON (Content-Type: application/json)".into(),
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge
            } else {
                ApiError::BadRequest("cannot read the request body".into())
            }
        })?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
    }
}
