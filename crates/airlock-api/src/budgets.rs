//! Budgets and usage: list, set, and reserve headroom then settle it, for
//! callers that spend against a tenant's budget (another gateway, a tool).
//! Reserving is one atomic step in the store, so replicas on one database
//! never hand out more than a limit; every change is recorded first, and
//! a refused reservation is recorded with `budget_exceeded`.

use crate::auth::Authed;
use crate::handlers::valid_name;
use crate::state::AppState;
use crate::{ApiError, ApiPath, JsonBody};
use airlock_store::{BudgetState, Reserve};
use airlock_types::{Action, Actor, ActorKind, AuditEvent, EventResult, Reason, Timestamp};
use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

type S = State<Arc<AppState>>;
type A = Extension<Authed>;

/// A budget and what its current period used.
#[derive(Debug, Serialize, ToSchema)]
pub struct Budget {
    /// `org`, `team:NAME`, `agent:NAME`, `run:ID` or `key:ID`.
    pub scope: String,
    /// `day`, `month` or `total` (UTC).
    pub period: String,
    /// The limit, micro-USD.
    pub limit_micros: i64,
    /// Settled charges plus open reservations in the current period, micro-USD.
    pub used_micros: i64,
}

impl From<BudgetState> for Budget {
    fn from(b: BudgetState) -> Budget {
        Budget {
            scope: b.scope,
            period: b.period,
            limit_micros: b.limit_micros,
            used_micros: b.used_micros,
        }
    }
}

/// Set a budget.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetBudget {
    /// The limit, micro-USD (0 or more).
    pub limit_micros: i64,
    /// `day`, `month` or `total` (default). PostgreSQL keeps `total` only.
    pub period: Option<String>,
}

/// Reserve headroom.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReservation {
    /// How much, micro-USD (1 or more).
    pub micros: i64,
}

/// A reservation taken.
#[derive(Debug, Serialize, ToSchema)]
pub struct Reservation {
    /// Settle it with this id.
    pub id: i64,
    /// The budget after it.
    pub budget: Budget,
}

/// Settle a reservation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Settle {
    /// What was actually spent, micro-USD (0 or more; may exceed the reservation).
    pub actual_micros: i64,
}

/// The most one budget can hold: 10^15 micro-USD (a billion dollars).
const MAX_MICROS: i64 = 1_000_000_000_000_000;

fn valid_scope(scope: &str) -> Result<(), ApiError> {
    if scope == "org" {
        return Ok(());
    }
    match scope.split_once(':') {
        Some(("team" | "agent" | "run" | "key", name)) => valid_name("scope", name),
        _ => Err(ApiError::BadRequest(
            "scope: org, team:NAME, agent:NAME, run:ID or key:ID".into(),
        )),
    }
}

fn valid_micros(what: &str, v: i64, min: i64) -> Result<(), ApiError> {
    if (min..=MAX_MICROS).contains(&v) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "{what}: must be between {min} and {MAX_MICROS}"
        )))
    }
}

fn event(a: &Authed, resource: String, change: &str) -> AuditEvent {
    AuditEvent::new(
        a.tenant.clone(),
        Actor::new(ActorKind::Token, a.token_id.clone()),
        Action::BudgetChanged,
        resource,
        Reason::Recorded,
        EventResult::Success,
    )
    .with_detail("change", change)
}

/// The tenant's budgets with their current use.
#[utoipa::path(get, path = "/v1/budgets", tag = "budgets", security(("token" = [])),
    responses((status = 200, body = [Budget])))]
pub async fn list(State(st): S, Extension(a): A) -> Result<Json<Vec<Budget>>, ApiError> {
    let t = a.tenant.clone();
    let now = Timestamp::now().as_micros();
    let rows = st.db(move |s| s.budget_list(&t, now)).await?;
    Ok(Json(rows.into_iter().map(Budget::from).collect()))
}

/// Create or change a budget (its use so far is kept).
#[utoipa::path(put, path = "/v1/budgets/{scope}", tag = "budgets", security(("token" = [])),
    params(("scope" = String, Path, description = "org, team:NAME, agent:NAME, run:ID or key:ID")),
    request_body = SetBudget,
    responses((status = 200, body = Budget), (status = 400, body = crate::ErrorBody)))]
pub async fn put(
    State(st): S,
    Extension(a): A,
    ApiPath(scope): ApiPath<String>,
    JsonBody(body): JsonBody<SetBudget>,
) -> Result<Json<Budget>, ApiError> {
    valid_scope(&scope)?;
    a.not_agent_limited("budgets:write")?;
    valid_micros("limit_micros", body.limit_micros, 0)?;
    let period = body.period.unwrap_or_else(|| "total".into());
    if !["day", "month", "total"].contains(&period.as_str()) {
        return Err(ApiError::BadRequest("period: day, month or total".into()));
    }
    st.record(
        event(&a, format!("budget:{scope}"), "set")
            .with_detail("limit_micros", body.limit_micros)
            .with_detail("period", period.as_str()),
    )
    .await?;
    let (t, sc, p, limit) = (a.tenant.clone(), scope.clone(), period, body.limit_micros);
    let now = Timestamp::now().as_micros();
    let rows = st
        .db(move |s| {
            s.budget_put(&t, &sc, &p, limit)?;
            s.budget_list(&t, now)
        })
        .await?;
    rows.into_iter()
        .find(|b| b.scope == scope)
        .map(|b| Json(Budget::from(b)))
        .ok_or_else(|| ApiError::Internal("a budget just set is missing".into()))
}

/// Reserve headroom of a budget (and of the org's, when there is one), in
/// one atomic step: nothing is reserved when either has less.
#[utoipa::path(post, path = "/v1/budgets/{scope}/reservations", tag = "budgets", security(("token" = [])),
    params(("scope" = String, Path, description = "org, team:NAME, agent:NAME, run:ID or key:ID")),
    request_body = NewReservation,
    responses((status = 201, body = Reservation), (status = 404, body = crate::ErrorBody),
        (status = 409, description = "budget_exceeded", body = crate::ErrorBody)))]
pub async fn reserve(
    State(st): S,
    Extension(a): A,
    ApiPath(scope): ApiPath<String>,
    JsonBody(body): JsonBody<NewReservation>,
) -> Result<(StatusCode, Json<Reservation>), ApiError> {
    valid_scope(&scope)?;
    a.not_agent_limited("budgets:write")?;
    valid_micros("micros", body.micros, 1)?;
    let resource = format!("budget:{scope}");
    st.record(event(&a, resource.clone(), "reserve").with_detail("micros", body.micros))
        .await?;
    let (t, sc, micros) = (a.tenant.clone(), scope.clone(), body.micros);
    let now = Timestamp::now().as_micros();
    match st
        .db(move |s| s.budget_reserve(&t, &sc, micros, now))
        .await?
    {
        Reserve::Reserved { id, budget } => Ok((
            StatusCode::CREATED,
            Json(Reservation {
                id,
                budget: budget.into(),
            }),
        )),
        Reserve::NoBudget => Err(ApiError::NotFound),
        Reserve::Exceeded(b) => {
            let mut ev = event(&a, resource, "reserve")
                .with_detail("micros", micros)
                .with_detail("over", b.scope.as_str());
            ev.reason = Reason::BudgetExceeded;
            ev.result = EventResult::Denied;
            st.record(ev).await?;
            Err(ApiError::BudgetExceeded(b.scope))
        }
    }
}

/// Settle a reservation: its charge becomes what was actually spent.
#[utoipa::path(post, path = "/v1/budgets/reservations/{id}/settle", tag = "budgets", security(("token" = [])),
    params(("id" = i64, Path, description = "the reservation's id")),
    request_body = Settle,
    responses((status = 204), (status = 404, body = crate::ErrorBody)))]
pub async fn settle(
    State(st): S,
    Extension(a): A,
    ApiPath(id): ApiPath<i64>,
    JsonBody(body): JsonBody<Settle>,
) -> Result<StatusCode, ApiError> {
    a.not_agent_limited("budgets:write")?;
    valid_micros("actual_micros", body.actual_micros, 0)?;
    st.record(
        event(&a, format!("budget-reservation:{id}"), "settle")
            .with_detail("actual_micros", body.actual_micros),
    )
    .await?;
    let (t, actual) = (a.tenant.clone(), body.actual_micros);
    let now = Timestamp::now().as_micros();
    if st.db(move |s| s.budget_settle(&t, id, actual, now)).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}
