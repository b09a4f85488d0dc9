//! Errors as responses: `{"error": {"code": "...", "message": "..."}}`.
//! The message is written for the caller and never carries internals (a
//! path, a database message); the detail goes to `tracing`.

use airlock_types::Reason;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// A request failed. Each variant is one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No usable token (missing, unknown, expired, revoked, or not for this node): 401.
    #[error("no valid API token was presented")]
    Unauthenticated,
    /// The token does not grant what the request needs: 403.
    #[error("the API token does not grant {0}")]
    ScopeMissing(String),
    /// Not found, or not this tenant's (never says which): 404.
    #[error("not found")]
    NotFound,
    /// The request is malformed (JSON, fields, ids, values): 400.
    #[error("{0}")]
    BadRequest(String),
    /// The request conflicts with what exists: 409.
    #[error("{0}")]
    Conflict(String),
    /// The body is larger than `serve.max_body_bytes`: 413.
    #[error("the request body is too large")]
    TooLarge,
    /// The request was valid but could not be carried out (a run the
    /// runtime refused; the refusal is in the audit log): 422.
    #[error("{0}")]
    Unprocessable(String),
    /// The request could not be recorded in the audit log, so it was not
    /// carried out: 503.
    #[error("the audit log is unavailable; nothing was done")]
    AuditUnavailable,
    /// A budget has less headroom than the reservation asked for: 409.
    #[error("the budget {0} has less headroom than that; nothing was reserved")]
    BudgetExceeded(String),
    /// The database cannot serve now; nothing was done: 503.
    #[error("the database is unavailable; nothing was done")]
    StoreUnavailable,
    /// This node's vault cannot be opened (no key the server can use, or a
    /// locked or damaged vault); nothing was done: 503.
    #[error("the vault is unavailable on this node; nothing was done")]
    VaultUnavailable,
    /// Something failed inside; the detail is logged, not returned: 500.
    #[error("internal error")]
    Internal(String),
}

/// The error document of every failed request.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The code and message of an error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable code: a reason code (`unauthenticated`, `scope_missing`,
    /// `malformed_request`, `limit_exceeded`, `audit_unavailable`,
    /// `budget_exceeded`) or an HTTP one (`not_found`, `conflict`,
    /// `store_unavailable`, `vault_unavailable`, `internal`).
    pub code: String,
    /// A message for the caller.
    pub message: String,
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ApiError::ScopeMissing(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::AuditUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BudgetExceeded(_) => StatusCode::CONFLICT,
            ApiError::StoreUnavailable | ApiError::VaultUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The reason code recorded in the audit log.
    pub fn reason(&self) -> Reason {
        match self {
            ApiError::Unauthenticated => Reason::Unauthenticated,
            ApiError::ScopeMissing(_) => Reason::ScopeMissing,
            ApiError::BadRequest(_) | ApiError::NotFound | ApiError::Conflict(_) => {
                Reason::MalformedRequest
            }
            ApiError::TooLarge => Reason::LimitExceeded,
            ApiError::Unprocessable(_) => Reason::SandboxControlFailed,
            ApiError::AuditUnavailable => Reason::AuditUnavailable,
            ApiError::BudgetExceeded(_) => Reason::BudgetExceeded,
            ApiError::StoreUnavailable | ApiError::VaultUnavailable | ApiError::Internal(_) => {
                Reason::CheckFailed
            }
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::NotFound => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Internal(_) => "internal",
            ApiError::StoreUnavailable => "store_unavailable",
            ApiError::VaultUnavailable => "vault_unavailable",
            other => other.reason().code(),
        }
    }

    /// A store failure: logged, answered as 500 without detail (503 when
    /// the database cannot serve now).
    pub(crate) fn store(e: airlock_store::StoreError) -> ApiError {
        match e {
            airlock_store::StoreError::Unavailable { .. } => {
                tracing::error!(detail = %e, "the database is unavailable");
                ApiError::StoreUnavailable
            }
            airlock_store::StoreError::BudgetPeriod { .. } => ApiError::BadRequest(e.to_string()),
            e => ApiError::Internal(e.to_string()),
        }
    }
}

/// The reason an error response carries, for the audit middleware.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ErrorReason(pub Reason);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(detail = %detail, "API request failed");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.to_string(),
            },
        };
        let mut resp = (self.status(), Json(body)).into_response();
        resp.extensions_mut().insert(ErrorReason(self.reason()));
        resp
    }
}
