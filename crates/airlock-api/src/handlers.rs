//! The resources. Every handler receives the authenticated token
//! ([`Authed`], put there by the middleware, which also checked the route's
//! scope) and touches only its tenant's rows; another tenant's object, or
//! an agent the token is not limited to, is 404.

use crate::auth::{Authed, Scope, TokenSpec};
use crate::state::AppState;
use crate::{ApiError, ApiPath, JsonBody};
use airlock_store::{AgentRow, ApiTokenRow, PolicyVersionRow, RunRow, TeamRow};
use airlock_types::{
    Action, Actor, ActorKind, AgentId, AuditEvent, EventResult, Reason, Timestamp,
};
use axum::Json;
use axum::extract::{Extension, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

type S = State<Arc<AppState>>;
type A = Extension<Authed>;

/// Names of teams, agents and ids in paths and bodies: 1–64 of
/// `A-Z a-z 0-9 - _ .`, not starting with a dot.
pub(crate) fn valid_name(what: &str, s: &str) -> Result<(), ApiError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "{what}: must be 1-64 characters of A-Z a-z 0-9 - _ . (not starting with a dot)"
        )))
    }
}

fn event(a: &Authed, action: Action, resource: String) -> AuditEvent {
    AuditEvent::new(
        a.tenant.clone(),
        Actor::new(ActorKind::Token, a.token_id.clone()),
        action,
        resource,
        Reason::Recorded,
        EventResult::Success,
    )
}

/// A team.
#[derive(Debug, Serialize, ToSchema)]
pub struct Team {
    /// Its name.
    pub name: String,
    /// When it was created (µs since the epoch).
    pub created_at: i64,
}

impl From<TeamRow> for Team {
    fn from(r: TeamRow) -> Team {
        Team {
            name: r.name,
            created_at: r.created_at,
        }
    }
}

/// Create a team.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTeam {
    /// Its name.
    pub name: String,
}

/// List the tenant's teams.
#[utoipa::path(get, path = "/v1/teams", tag = "agents", security(("token" = [])),
    responses((status = 200, body = [Team]), (status = 401, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)))]
pub async fn list_teams(State(st): S, Extension(a): A) -> Result<Json<Vec<Team>>, ApiError> {
    let t = a.tenant.clone();
    let rows = st.db(move |s| s.teams(&t)).await?;
    Ok(Json(rows.into_iter().map(Team::from).collect()))
}

/// Create a team.
#[utoipa::path(post, path = "/v1/teams", tag = "agents", security(("token" = [])), request_body = NewTeam,
    responses((status = 201, body = Team), (status = 400, body = crate::ErrorBody), (status = 409, body = crate::ErrorBody)))]
pub async fn create_team(
    State(st): S,
    Extension(a): A,
    JsonBody(body): JsonBody<NewTeam>,
) -> Result<(StatusCode, Json<Team>), ApiError> {
    valid_name("name", &body.name)?;
    a.not_agent_limited("agents:write")?;
    let now = Timestamp::now().as_micros();
    st.record(
        event(&a, Action::AgentChanged, format!("team:{}", body.name))
            .with_detail("change", "team_created"),
    )
    .await?;
    let (t, n) = (a.tenant.clone(), body.name.clone());
    if !st.db(move |s| s.team_create(&t, &n, now)).await? {
        return Err(ApiError::Conflict("the team exists".into()));
    }
    Ok((
        StatusCode::CREATED,
        Json(Team {
            name: body.name,
            created_at: now,
        }),
    ))
}

/// An agent.
#[derive(Debug, Serialize, ToSchema)]
pub struct Agent {
    /// Its name.
    pub name: String,
    /// Its team.
    pub team: Option<String>,
    /// The active policy version.
    pub active_policy: Option<u32>,
    /// When it was created (µs since the epoch).
    pub created_at: i64,
}

impl From<AgentRow> for Agent {
    fn from(r: AgentRow) -> Agent {
        Agent {
            name: r.name,
            team: r.team,
            active_policy: r.active_policy,
            created_at: r.created_at,
        }
    }
}

/// Create an agent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAgent {
    /// Its name.
    pub name: String,
    /// Its team (which must exist).
    pub team: Option<String>,
}

/// List the tenant's agents (those the token may act on).
#[utoipa::path(get, path = "/v1/agents", tag = "agents", security(("token" = [])),
    responses((status = 200, body = [Agent]), (status = 401, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)))]
pub async fn list_agents(State(st): S, Extension(a): A) -> Result<Json<Vec<Agent>>, ApiError> {
    let t = a.tenant.clone();
    let rows = st.db(move |s| s.agents(&t)).await?;
    Ok(Json(
        rows.into_iter()
            .filter(|r| a.may_agent(Some(&r.name)))
            .map(Agent::from)
            .collect(),
    ))
}

/// Create an agent.
#[utoipa::path(post, path = "/v1/agents", tag = "agents", security(("token" = [])), request_body = NewAgent,
    responses((status = 201, body = Agent), (status = 400, body = crate::ErrorBody), (status = 409, body = crate::ErrorBody)))]
pub async fn create_agent(
    State(st): S,
    Extension(a): A,
    JsonBody(body): JsonBody<NewAgent>,
) -> Result<(StatusCode, Json<Agent>), ApiError> {
    valid_name("name", &body.name)?;
    if let Some(team) = &body.team {
        valid_name("team", team)?;
    }
    a.not_agent_limited("agents:write")?;
    if let Some(team) = body.team.clone() {
        let t = a.tenant.clone();
        let teams = st.db(move |s| s.teams(&t)).await?;
        if !teams.iter().any(|x| x.name == team) {
            return Err(ApiError::BadRequest("team: no such team".into()));
        }
    }
    let now = Timestamp::now().as_micros();
    st.record(
        event(&a, Action::AgentChanged, format!("agent:{}", body.name))
            .with_detail("change", "created"),
    )
    .await?;
    let (t, n, team) = (a.tenant.clone(), body.name.clone(), body.team.clone());
    if !st
        .db(move |s| s.agent_create(&t, &n, team.as_deref(), now))
        .await?
    {
        return Err(ApiError::Conflict("the agent exists".into()));
    }
    Ok((
        StatusCode::CREATED,
        Json(Agent {
            name: body.name,
            team: body.team,
            active_policy: None,
            created_at: now,
        }),
    ))
}

async fn agent_of(st: &Arc<AppState>, a: &Authed, name: &str) -> Result<AgentRow, ApiError> {
    valid_name("agent", name)?;
    if !a.may_agent(Some(name)) {
        return Err(ApiError::NotFound);
    }
    let (t, n) = (a.tenant.clone(), name.to_owned());
    st.db(move |s| s.agent(&t, &n))
        .await?
        .ok_or(ApiError::NotFound)
}

/// One agent.
#[utoipa::path(get, path = "/v1/agents/{agent}", tag = "agents", security(("token" = [])),
    params(("agent" = String, Path)),
    responses((status = 200, body = Agent), (status = 404, body = crate::ErrorBody)))]
pub async fn get_agent(
    State(st): S,
    Extension(a): A,
    ApiPath(agent): ApiPath<String>,
) -> Result<Json<Agent>, ApiError> {
    Ok(Json(agent_of(&st, &a, &agent).await?.into()))
}

/// A stored policy version.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyVersion {
    /// The agent.
    pub agent: String,
    /// The version (from 1).
    pub version: u32,
    /// The policy (TOML).
    pub text: String,
    /// SHA-256 of `text`.
    pub sha256: String,
    /// The token that stored it.
    pub author: String,
    /// When (µs since the epoch).
    pub created_at: i64,
    /// Whether it is the agent's active version.
    pub active: bool,
}

fn version_of(r: PolicyVersionRow, active: Option<u32>) -> PolicyVersion {
    PolicyVersion {
        active: active == Some(r.version),
        agent: r.agent,
        version: r.version,
        text: r.text,
        sha256: r.sha256,
        author: r.author,
        created_at: r.created_at,
    }
}

/// A new policy version.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPolicy {
    /// The policy, as a policy file (TOML); validated before it is stored.
    pub text: String,
    /// Make it the active version at once.
    #[serde(default)]
    pub activate: bool,
}

/// The agent's policy versions, oldest first.
#[utoipa::path(get, path = "/v1/agents/{agent}/policies", tag = "policies", security(("token" = [])),
    params(("agent" = String, Path)),
    responses((status = 200, body = [PolicyVersion]), (status = 404, body = crate::ErrorBody)))]
pub async fn list_policies(
    State(st): S,
    Extension(a): A,
    ApiPath(agent): ApiPath<String>,
) -> Result<Json<Vec<PolicyVersion>>, ApiError> {
    let row = agent_of(&st, &a, &agent).await?;
    let t = a.tenant.clone();
    let v = st.db(move |s| s.policy_versions(&t, &agent)).await?;
    Ok(Json(
        v.into_iter()
            .map(|r| version_of(r, row.active_policy))
            .collect(),
    ))
}

/// Store a new policy version (validated first).
#[utoipa::path(post, path = "/v1/agents/{agent}/policies", tag = "policies", security(("token" = [])),
    params(("agent" = String, Path)), request_body = NewPolicy,
    responses((status = 201, body = PolicyVersion), (status = 400, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub async fn put_policy(
    State(st): S,
    Extension(a): A,
    ApiPath(agent): ApiPath<String>,
    JsonBody(body): JsonBody<NewPolicy>,
) -> Result<(StatusCode, Json<PolicyVersion>), ApiError> {
    agent_of(&st, &a, &agent).await?;
    if let Err(e) = airlock_policy::parse_document(&body.text, "policy") {
        return Err(ApiError::BadRequest(format!("text: {e}")));
    }
    let sha = hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        body.text.as_bytes(),
    ));
    let now = Timestamp::now().as_micros();
    st.record(
        event(&a, Action::PolicyChanged, format!("agent:{agent}"))
            .with_agent(
                AgentId::new(agent.clone()).map_err(|e| ApiError::BadRequest(e.to_string()))?,
            )
            .with_detail(
                "change",
                if body.activate {
                    "stored_and_activated"
                } else {
                    "stored"
                },
            )
            .with_detail("sha256", sha.clone()),
    )
    .await?;
    let (t, ag, text, sha2, author) = (
        a.tenant.clone(),
        agent.clone(),
        body.text.clone(),
        sha.clone(),
        a.token_id.clone(),
    );
    let activate = body.activate;
    let version = st
        .db(move |s| {
            let v = s.policy_put(&t, &ag, &text, &sha2, &author, now)?;
            if let (Some(v), true) = (v, activate) {
                s.policy_activate(&t, &ag, v)?;
            }
            Ok(v)
        })
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok((
        StatusCode::CREATED,
        Json(PolicyVersion {
            agent,
            version,
            text: body.text,
            sha256: sha,
            author: a.token_id.clone(),
            created_at: now,
            active: activate,
        }),
    ))
}

/// One policy version.
#[utoipa::path(get, path = "/v1/agents/{agent}/policies/{version}", tag = "policies", security(("token" = [])),
    params(("agent" = String, Path), ("version" = u32, Path)),
    responses((status = 200, body = PolicyVersion), (status = 404, body = crate::ErrorBody)))]
pub async fn get_policy(
    State(st): S,
    Extension(a): A,
    ApiPath((agent, version)): ApiPath<(String, u32)>,
) -> Result<Json<PolicyVersion>, ApiError> {
    let row = agent_of(&st, &a, &agent).await?;
    let t = a.tenant.clone();
    let v = st
        .db(move |s| s.policy_version(&t, &agent, version))
        .await?;
    Ok(Json(version_of(
        v.ok_or(ApiError::NotFound)?,
        row.active_policy,
    )))
}

/// Make a version the agent's active policy.
#[utoipa::path(post, path = "/v1/agents/{agent}/policies/{version}/activate", tag = "policies", security(("token" = [])),
    params(("agent" = String, Path), ("version" = u32, Path)),
    responses((status = 200, body = Agent), (status = 404, body = crate::ErrorBody)))]
pub async fn activate_policy(
    State(st): S,
    Extension(a): A,
    ApiPath((agent, version)): ApiPath<(String, u32)>,
) -> Result<Json<Agent>, ApiError> {
    let mut row = agent_of(&st, &a, &agent).await?;
    let (t, ag) = (a.tenant.clone(), agent.clone());
    if st
        .db(move |s| s.policy_version(&t, &ag, version))
        .await?
        .is_none()
    {
        return Err(ApiError::NotFound);
    }
    st.record(
        event(&a, Action::PolicyChanged, format!("agent:{agent}"))
            .with_detail("change", "activated")
            .with_detail("version", version),
    )
    .await?;
    let (t, ag) = (a.tenant.clone(), agent.clone());
    if !st.db(move |s| s.policy_activate(&t, &ag, version)).await? {
        return Err(ApiError::NotFound);
    }
    row.active_policy = Some(version);
    Ok(Json(row.into()))
}

/// An API token as listed (never its text or hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct Token {
    /// Public id.
    pub id: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Agents it is limited to.
    pub agents: Vec<String>,
    /// Nodes it is limited to.
    pub nodes: Vec<String>,
    /// Its label.
    pub description: String,
    /// Expiry (µs since the epoch).
    pub expires_at: Option<i64>,
    /// Revocation time.
    pub revoked_at: Option<i64>,
    /// Creation time.
    pub created_at: i64,
    /// Last successful use.
    pub last_used_at: Option<i64>,
}

impl From<ApiTokenRow> for Token {
    fn from(r: ApiTokenRow) -> Token {
        Token {
            id: r.id,
            scopes: r.scopes,
            agents: r.agents,
            nodes: r.nodes,
            description: r.description,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
        }
    }
}

/// A new token: never more than the creating token holds.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// Its scopes (each held by the creating token).
    pub scopes: Vec<Scope>,
    /// Agents to limit it to (within the creating token's own limit).
    #[serde(default)]
    pub agents: Vec<String>,
    /// Nodes to limit it to.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// A label.
    #[serde(default)]
    pub description: String,
    /// Seconds until it expires.
    pub expires_in_secs: Option<u64>,
}

/// A created token: `token` is shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    /// The token text (`alt_…`); not stored, not shown again.
    pub token: String,
    /// Its metadata.
    #[serde(flatten)]
    pub meta: Token,
}

/// The tenant's tokens, newest first.
#[utoipa::path(get, path = "/v1/tokens", tag = "tokens", security(("token" = [])),
    responses((status = 200, body = [Token]), (status = 403, body = crate::ErrorBody)))]
pub async fn list_tokens(State(st): S, Extension(a): A) -> Result<Json<Vec<Token>>, ApiError> {
    let t = a.tenant.clone();
    Ok(Json(
        st.db(move |s| s.tokens(&t))
            .await?
            .into_iter()
            .map(Token::from)
            .collect(),
    ))
}

/// Create a token.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", security(("token" = [])), request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 400, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)))]
pub async fn create_token(
    State(st): S,
    Extension(a): A,
    JsonBody(body): JsonBody<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    for s in &body.scopes {
        if !a.holds(*s) {
            return Err(ApiError::ScopeMissing(format!(
                "{} (a token never mints a scope it does not hold)",
                s.as_str()
            )));
        }
    }
    for n in body.agents.iter().chain(&body.nodes) {
        valid_name("agents/nodes", n)?;
    }
    if !a.agents.is_empty()
        && (body.agents.is_empty() || body.agents.iter().any(|x| !a.agents.contains(x)))
    {
        return Err(ApiError::ScopeMissing(
            "agents (a token limited to agents mints only within them)".into(),
        ));
    }
    if body.description.len() > 256 || body.description.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "description: at most 256 printable characters".into(),
        ));
    }
    let now = Timestamp::now().as_micros();
    let expires_at = match body.expires_in_secs {
        None => None,
        Some(0) => {
            return Err(ApiError::BadRequest(
                "expires_in_secs: must be positive".into(),
            ));
        }
        Some(s) => {
            Some(now.saturating_add(i64::try_from(s.saturating_mul(1_000_000)).unwrap_or(i64::MAX)))
        }
    };
    let minted = crate::auth::mint(
        &a.tenant,
        &TokenSpec {
            scopes: body.scopes,
            agents: body.agents,
            nodes: body.nodes,
            description: body.description,
            expires_at,
        },
        now,
    )?;
    st.record(
        event(&a, Action::TokenCreated, format!("token:{}", minted.row.id))
            .with_detail("scopes", minted.row.scopes.clone())
            .with_detail("agents", minted.row.agents.clone()),
    )
    .await?;
    let row = minted.row.clone();
    st.db(move |s| s.token_insert(&row)).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: minted.token.expose().clone(),
            meta: minted.row.into(),
        }),
    ))
}

/// Revoke a token of the tenant.
#[utoipa::path(post, path = "/v1/tokens/{id}/revoke", tag = "tokens", security(("token" = [])),
    params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = crate::ErrorBody)))]
pub async fn revoke_token(
    State(st): S,
    Extension(a): A,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    valid_name("id", &id)?;
    let (t, i) = (a.tenant.clone(), id.clone());
    let exists = st
        .db(move |s| {
            Ok(s.tokens(&t)?
                .into_iter()
                .any(|r| r.id == i && r.revoked_at.is_none()))
        })
        .await?;
    if !exists {
        return Err(ApiError::NotFound);
    }
    st.record(event(&a, Action::TokenRevoked, format!("token:{id}")))
        .await?;
    let now = Timestamp::now().as_micros();
    let t = a.tenant.clone();
    if !st.db(move |s| s.token_revoke(&t, &id, now)).await? {
        return Err(ApiError::NotFound);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A run.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunInfo {
    /// Its id (as in audit records).
    pub id: String,
    /// The agent.
    pub agent: Option<String>,
    /// The command.
    pub command: Vec<String>,
    /// The node running it.
    pub node: String,
    /// `running`, `exited`, `stopped` or `failed`.
    pub state: String,
    /// The exit code, once ended.
    pub exit_code: Option<i32>,
    /// Start (µs since the epoch).
    pub started_at: i64,
    /// End.
    pub ended_at: Option<i64>,
}

impl From<RunRow> for RunInfo {
    fn from(r: RunRow) -> RunInfo {
        RunInfo {
            id: r.id,
            agent: r.agent,
            command: r.command,
            node: r.node,
            state: r.state.as_str().to_owned(),
            exit_code: r.exit_code,
            started_at: r.started_at,
            ended_at: r.ended_at,
        }
    }
}

/// Start a run.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRun {
    /// The program and its arguments.
    pub command: Vec<String>,
    /// The agent whose active policy it runs with (else the default policy).
    pub agent: Option<String>,
    /// Vault secrets (on this node) the run gets as handles, each only for
    /// its bound hosts (see `/v1/secrets`).
    #[serde(default)]
    pub secrets: Vec<String>,
}

/// A started run's id.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunStarted {
    /// The run id.
    pub id: String,
}

/// Paging of lists.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RunPage {
    /// At most this many (1–500, default 100).
    pub limit: Option<u32>,
    /// Only runs started before this time (µs; the last `started_at` of the previous page).
    pub before: Option<i64>,
}

/// Start a sandboxed run on this node.
#[utoipa::path(post, path = "/v1/runs", tag = "runs", security(("token" = [])), request_body = NewRun,
    responses((status = 201, body = RunStarted), (status = 400, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody), (status = 422, body = crate::ErrorBody)))]
pub async fn start_run(
    State(st): S,
    Extension(a): A,
    JsonBody(body): JsonBody<NewRun>,
) -> Result<(StatusCode, Json<RunStarted>), ApiError> {
    if body.command.is_empty()
        || body.command.len() > 4096
        || body.command.iter().any(|x| x.contains('\0'))
    {
        return Err(ApiError::BadRequest(
            "command: 1-4096 arguments without NUL bytes".into(),
        ));
    }
    if body.secrets.len() > 64 {
        return Err(ApiError::BadRequest("secrets: at most 64".into()));
    }
    for n in &body.secrets {
        airlock_broker::validate_name(n)
            .map_err(|e| ApiError::BadRequest(format!("secrets: {e}")))?;
    }
    if !a.may_agent(body.agent.as_deref()) {
        return Err(if body.agent.is_none() {
            ApiError::ScopeMissing(
                "runs:write without an agent (this token is limited to agents)".into(),
            )
        } else {
            ApiError::NotFound
        });
    }
    let policy = match &body.agent {
        None => st.runs.defaults.policy.clone(),
        Some(name) => {
            let row = agent_of(&st, &a, name).await?;
            match row.active_policy {
                None => st.runs.defaults.policy.clone(),
                Some(v) => {
                    let (t, n) = (a.tenant.clone(), name.clone());
                    let pv = st
                        .db(move |s| s.policy_version(&t, &n, v))
                        .await?
                        .ok_or_else(|| {
                            ApiError::Internal("the active policy version is missing".into())
                        })?;
                    airlock_policy::parse_document(&pv.text, "policy")
                        .map_err(|e| {
                            ApiError::Internal(format!("stored policy does not parse: {e}"))
                        })?
                        .policy
                }
            }
        }
    };
    let agent = body
        .agent
        .map(AgentId::new)
        .transpose()
        .map_err(|e| ApiError::BadRequest(format!("agent: {e}")))?;
    let me = st.clone();
    let tenant = a.tenant.clone();
    let token = a.token_id.clone();
    let id = tokio::task::spawn_blocking(move || {
        crate::launch::start(
            &me,
            crate::launch::Launch {
                tenant,
                agent,
                token_id: &token,
                argv: body.command,
                secrets: body.secrets,
                policy,
            },
        )
    })
    .await
    .map_err(|e| ApiError::Internal(format!("run task failed: {e}")))?
    .map_err(|e| ApiError::Unprocessable(format!("the run was refused: {}", first_line(&e.0))))?;
    Ok((
        StatusCode::CREATED,
        Json(RunStarted {
            id: id.as_str().to_owned(),
        }),
    ))
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

pub(crate) async fn run_of(st: &Arc<AppState>, a: &Authed, id: &str) -> Result<RunRow, ApiError> {
    valid_name("id", id)?;
    let (t, i) = (a.tenant.clone(), id.to_owned());
    let row = st
        .db(move |s| s.run(&t, &i))
        .await?
        .ok_or(ApiError::NotFound)?;
    if !a.may_agent(row.agent.as_deref()) {
        return Err(ApiError::NotFound);
    }
    Ok(row)
}

/// One run.
#[utoipa::path(get, path = "/v1/runs/{id}", tag = "runs", security(("token" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = RunInfo), (status = 404, body = crate::ErrorBody)))]
pub async fn get_run(
    State(st): S,
    Extension(a): A,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RunInfo>, ApiError> {
    Ok(Json(run_of(&st, &a, &id).await?.into()))
}

/// The tenant's runs, newest first.
#[utoipa::path(get, path = "/v1/runs", tag = "runs", security(("token" = [])), params(RunPage),
    responses((status = 200, body = [RunInfo]), (status = 400, body = crate::ErrorBody)))]
pub async fn list_runs(
    State(st): S,
    Extension(a): A,
    q: Result<Query<RunPage>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<RunInfo>>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(format!("query: {}", e.body_text())))?;
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    let t = a.tenant.clone();
    let rows = st.db(move |s| s.runs(&t, limit, q.before)).await?;
    Ok(Json(
        rows.into_iter()
            .filter(|r| a.may_agent(r.agent.as_deref()))
            .map(RunInfo::from)
            .collect(),
    ))
}

/// Stop a running run (SIGTERM to it).
#[utoipa::path(post, path = "/v1/runs/{id}/stop", tag = "runs", security(("token" = [])),
    params(("id" = String, Path)),
    responses((status = 202), (status = 404, body = crate::ErrorBody), (status = 409, body = crate::ErrorBody)))]
pub async fn stop_run(
    State(st): S,
    Extension(a): A,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let row = run_of(&st, &a, &id).await?;
    if row.state != airlock_store::RunState::Running || row.node != st.node {
        return Err(ApiError::Conflict(
            "the run is not running on this node".into(),
        ));
    }
    if st.runs.stop(&id) {
        Ok(StatusCode::ACCEPTED)
    } else {
        Err(ApiError::Conflict(
            "the run is not running on this node".into(),
        ))
    }
}
