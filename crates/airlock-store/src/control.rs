//! The control plane's records (`airlock serve`): tenants, teams, agents,
//! versioned policies, scoped API tokens and runs.
//!
//! [`ControlStore`] is the contract; SQLite ([`crate::SqliteStore`]) and
//! PostgreSQL implement it. Every call but the tenant list and the token
//! lookup by hash takes the tenant it concerns and touches only that
//! tenant's rows: an object of another tenant is `None`, never an error
//! that says it exists. On PostgreSQL the same holds a second time, in the
//! database, by row-level security on a per-transaction tenant setting.
//!
//! Times are microseconds since the Unix epoch. Token secrets are never
//! stored: only their SHA-256.

use crate::StoreError;
use airlock_types::TenantId;

/// One tenant (organization).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRow {
    /// The tenant's id (its name).
    pub id: TenantId,
    /// When it was created.
    pub created_at: i64,
}

/// One team of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamRow {
    /// Unique per tenant.
    pub name: String,
    /// When it was created.
    pub created_at: i64,
}

/// One agent of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRow {
    /// Unique per tenant.
    pub name: String,
    /// The team it belongs to, if any.
    pub team: Option<String>,
    /// The active policy version, if one was activated.
    pub active_policy: Option<u32>,
    /// When it was created.
    pub created_at: i64,
}

/// One stored version of an agent's policy. Versions are immutable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVersionRow {
    /// The agent the policy is for.
    pub agent: String,
    /// Starts at 1 per agent; goes up by one per stored version.
    pub version: u32,
    /// The policy text (TOML), as submitted.
    pub text: String,
    /// SHA-256 of `text`, lower-case hex.
    pub sha256: String,
    /// Who stored it (token id or operator name).
    pub author: String,
    /// When it was stored.
    pub created_at: i64,
}

/// One API token. The token itself (`alt_…`) is shown once and never
/// stored; `sha256` is its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenRow {
    /// Public id (`tok_…`), shown in lists and audit records.
    pub id: String,
    /// The tenant the token acts for.
    pub tenant: TenantId,
    /// SHA-256 of the whole token text.
    pub sha256: [u8; 32],
    /// Granted scopes, e.g. `runs:read`, `admin`.
    pub scopes: Vec<String>,
    /// When non-empty, the token may act only on these agents.
    pub agents: Vec<String>,
    /// When non-empty, the token may be used only on these nodes.
    pub nodes: Vec<String>,
    /// A free-form label.
    pub description: String,
    /// When it stops working, if ever.
    pub expires_at: Option<i64>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<i64>,
    /// When it was created.
    pub created_at: i64,
    /// When it was last used successfully.
    pub last_used_at: Option<i64>,
}

/// The state of a run started through the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Started, not finished.
    Running,
    /// The command exited (see the exit code).
    Exited,
    /// Stopped on request.
    Stopped,
    /// Could not start or the supervisor failed.
    Failed,
}

impl RunState {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Exited => "exited",
            RunState::Stopped => "stopped",
            RunState::Failed => "failed",
        }
    }

    /// Parse the stored spelling.
    pub fn parse(s: &str) -> Option<RunState> {
        Some(match s {
            "running" => RunState::Running,
            "exited" => RunState::Exited,
            "stopped" => RunState::Stopped,
            "failed" => RunState::Failed,
            _ => return None,
        })
    }
}

/// One run started through the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    /// The run id (as in audit records).
    pub id: String,
    /// The agent whose policy and secrets it runs with, if any.
    pub agent: Option<String>,
    /// The command and its arguments.
    pub command: Vec<String>,
    /// The node (server instance) that runs it.
    pub node: String,
    /// Its state.
    pub state: RunState,
    /// The exit code, once exited.
    pub exit_code: Option<i32>,
    /// When it started.
    pub started_at: i64,
    /// When it ended, once it has.
    pub ended_at: Option<i64>,
}

/// Storage of the control plane's records. Writes take `&mut self`; each
/// is one atomic transaction. Creating something that exists returns
/// `Ok(false)` and changes nothing.
pub trait ControlStore: crate::BudgetStore + crate::AccountStore + Send + std::fmt::Debug {
    /// Create a tenant. Returns whether it was created.
    fn tenant_create(&mut self, tenant: &TenantId, now: i64) -> Result<bool, StoreError>;
    /// One tenant, if it exists.
    fn tenant(&self, tenant: &TenantId) -> Result<Option<TenantRow>, StoreError>;
    /// Every tenant (installation operators only; never through a tenant's token).
    fn tenants(&self) -> Result<Vec<TenantRow>, StoreError>;

    /// Create a team. Returns whether it was created.
    fn team_create(&mut self, tenant: &TenantId, name: &str, now: i64) -> Result<bool, StoreError>;
    /// The tenant's teams, by name.
    fn teams(&self, tenant: &TenantId) -> Result<Vec<TeamRow>, StoreError>;

    /// Create an agent. Returns whether it was created (a missing team is
    /// refused by the caller before this is called).
    fn agent_create(
        &mut self,
        tenant: &TenantId,
        name: &str,
        team: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// One agent.
    fn agent(&self, tenant: &TenantId, name: &str) -> Result<Option<AgentRow>, StoreError>;
    /// The tenant's agents, by name.
    fn agents(&self, tenant: &TenantId) -> Result<Vec<AgentRow>, StoreError>;

    /// Store the next policy version of an agent (which must exist: `None`
    /// when it does not). Returns the new version number.
    fn policy_put(
        &mut self,
        tenant: &TenantId,
        agent: &str,
        text: &str,
        sha256: &str,
        author: &str,
        now: i64,
    ) -> Result<Option<u32>, StoreError>;
    /// One stored version.
    fn policy_version(
        &self,
        tenant: &TenantId,
        agent: &str,
        version: u32,
    ) -> Result<Option<PolicyVersionRow>, StoreError>;
    /// Every stored version of an agent's policy, oldest first.
    fn policy_versions(
        &self,
        tenant: &TenantId,
        agent: &str,
    ) -> Result<Vec<PolicyVersionRow>, StoreError>;
    /// Make `version` the agent's active policy. Returns false when the
    /// agent or the version does not exist.
    fn policy_activate(
        &mut self,
        tenant: &TenantId,
        agent: &str,
        version: u32,
    ) -> Result<bool, StoreError>;

    /// Store a new token (its id and hash must be new).
    fn token_insert(&mut self, row: &ApiTokenRow) -> Result<(), StoreError>;
    /// The token with this hash, whatever its tenant (this is how a request
    /// is authenticated, before its tenant is known). Expired and revoked
    /// tokens are returned too; the caller refuses them.
    fn token_by_hash(&self, sha256: &[u8; 32]) -> Result<Option<ApiTokenRow>, StoreError>;
    /// The tenant's tokens, newest first.
    fn tokens(&self, tenant: &TenantId) -> Result<Vec<ApiTokenRow>, StoreError>;
    /// Revoke a token. Returns false when it does not exist or was revoked.
    fn token_revoke(&mut self, tenant: &TenantId, id: &str, now: i64) -> Result<bool, StoreError>;
    /// Record a successful use.
    fn token_touch(&mut self, tenant: &TenantId, id: &str, now: i64) -> Result<(), StoreError>;

    /// Record a started run (its id must be new).
    fn run_insert(&mut self, tenant: &TenantId, row: &RunRow) -> Result<(), StoreError>;
    /// Record the end of a running run. Returns false when it was not running.
    fn run_finish(
        &mut self,
        tenant: &TenantId,
        id: &str,
        state: RunState,
        exit_code: Option<i32>,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// One run.
    fn run(&self, tenant: &TenantId, id: &str) -> Result<Option<RunRow>, StoreError>;
    /// The tenant's runs, newest first, at most `limit`, started before
    /// `before` when given (paging).
    fn runs(
        &self,
        tenant: &TenantId,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<RunRow>, StoreError>;
}
