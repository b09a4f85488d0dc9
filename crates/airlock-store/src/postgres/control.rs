//! [`ControlStore`] on PostgreSQL. Every query filters by tenant (the
//! application's wall) and runs in a transaction scoped to that tenant (the
//! database's wall: row-level security).

use super::{PgStore, TxError, tenant_eq};
use crate::StoreError;
use crate::control::{
    AgentRow, ApiTokenRow, ControlStore, PolicyVersionRow, RunRow, RunState, TeamRow, TenantRow,
};
use airlock_types::TenantId;
use postgres::Row;

pub(super) fn malformed(store: &PgStore, what: &'static str, detail: String) -> TxError {
    TxError::Store(StoreError::Malformed {
        path: store.label().to_owned(),
        what,
        index: -1,
        detail,
    })
}

pub(super) fn tenant_id(store: &PgStore, s: String) -> Result<TenantId, TxError> {
    TenantId::new(s).map_err(|e| malformed(store, "tenant", e.to_string()))
}

fn u32_of(store: &PgStore, what: &'static str, v: i32) -> Result<u32, TxError> {
    u32::try_from(v).map_err(|_| malformed(store, what, format!("negative {what} {v}")))
}

fn agent_row(store: &PgStore, r: &Row) -> Result<AgentRow, TxError> {
    Ok(AgentRow {
        name: r.try_get(0)?,
        team: r.try_get(1)?,
        active_policy: r
            .try_get::<_, Option<i32>>(2)?
            .map(|v| u32_of(store, "policy version", v))
            .transpose()?,
        created_at: r.try_get(3)?,
    })
}

fn policy_row(store: &PgStore, r: &Row) -> Result<PolicyVersionRow, TxError> {
    Ok(PolicyVersionRow {
        agent: r.try_get(0)?,
        version: u32_of(store, "policy version", r.try_get(1)?)?,
        text: r.try_get(2)?,
        sha256: r.try_get(3)?,
        author: r.try_get(4)?,
        created_at: r.try_get(5)?,
    })
}

const TOKEN_COLS: &str = "id, tenant, sha256, scopes, agents, nodes, description, expires_at, \
                          revoked_at, created_at, last_used_at";

fn token_row(store: &PgStore, r: &Row) -> Result<ApiTokenRow, TxError> {
    let hash: Vec<u8> = r.try_get(2)?;
    let sha256: [u8; 32] = hash
        .try_into()
        .map_err(|_| malformed(store, "token hash", "not 32 bytes".into()))?;
    Ok(ApiTokenRow {
        id: r.try_get(0)?,
        tenant: tenant_id(store, r.try_get(1)?)?,
        sha256,
        scopes: r.try_get(3)?,
        agents: r.try_get(4)?,
        nodes: r.try_get(5)?,
        description: r.try_get(6)?,
        expires_at: r.try_get(7)?,
        revoked_at: r.try_get(8)?,
        created_at: r.try_get(9)?,
        last_used_at: r.try_get(10)?,
    })
}

const RUN_COLS: &str = "id, agent, command, node, state, exit_code, started_at, ended_at";

fn run_row(store: &PgStore, r: &Row) -> Result<RunRow, TxError> {
    let state: String = r.try_get(4)?;
    Ok(RunRow {
        id: r.try_get(0)?,
        agent: r.try_get(1)?,
        command: r.try_get(2)?,
        node: r.try_get(3)?,
        state: RunState::parse(&state)
            .ok_or_else(|| malformed(store, "run state", format!("unknown state {state:?}")))?,
        exit_code: r.try_get(5)?,
        started_at: r.try_get(6)?,
        ended_at: r.try_get(7)?,
    })
}

impl ControlStore for PgStore {
    fn tenant_create(&mut self, tenant: &TenantId, now: i64) -> Result<bool, StoreError> {
        self.tx(Some(tenant), true, "tenant create", |c| {
            let n = c.execute(
                "INSERT INTO tenants (id, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&tenant.as_str(), &now],
            )?;
            Ok(n == 1)
        })
    }

    fn tenant(&self, tenant: &TenantId) -> Result<Option<TenantRow>, StoreError> {
        self.tx(Some(tenant), false, "tenant", |c| {
            let row = c.query_opt(
                concat!(
                    "SELECT id, created_at FROM tenants WHERE ",
                    tenant_eq!("id", "$1")
                ),
                &[&tenant.as_str()],
            )?;
            row.map(|r| {
                Ok(TenantRow {
                    id: tenant_id(self, r.try_get(0)?)?,
                    created_at: r.try_get(1)?,
                })
            })
            .transpose()
        })
    }

    fn tenants(&self) -> Result<Vec<TenantRow>, StoreError> {
        // Installation operators only: across tenants, through the owner's
        // SECURITY DEFINER function (the app role cannot list them itself).
        self.tx(None, false, "tenants", |c| {
            c.query("SELECT id, created_at FROM airlock_tenants()", &[])?
                .iter()
                .map(|r| {
                    Ok(TenantRow {
                        id: tenant_id(self, r.try_get(0)?)?,
                        created_at: r.try_get(1)?,
                    })
                })
                .collect()
        })
    }

    fn team_create(&mut self, tenant: &TenantId, name: &str, now: i64) -> Result<bool, StoreError> {
        self.tx(Some(tenant), true, "team create", |c| {
            let n = c.execute(
                "INSERT INTO teams (tenant, name, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
                &[&tenant.as_str(), &name, &now],
            )?;
            Ok(n == 1)
        })
    }

    fn teams(&self, tenant: &TenantId) -> Result<Vec<TeamRow>, StoreError> {
        self.tx(Some(tenant), false, "teams", |c| {
            c.query(
                concat!(
                    "SELECT name, created_at FROM teams WHERE ",
                    tenant_eq!("tenant", "$1"),
                    " ORDER BY name"
                ),
                &[&tenant.as_str()],
            )?
            .iter()
            .map(|r| {
                Ok(TeamRow {
                    name: r.try_get(0)?,
                    created_at: r.try_get(1)?,
                })
            })
            .collect()
        })
    }

    fn agent_create(
        &mut self,
        tenant: &TenantId,
        name: &str,
        team: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.tx(Some(tenant), true, "agent create", |c| {
            let n = c.execute(
                "INSERT INTO agents (tenant, name, team, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT DO NOTHING",
                &[&tenant.as_str(), &name, &team, &now],
            )?;
            Ok(n == 1)
        })
    }

    fn agent(&self, tenant: &TenantId, name: &str) -> Result<Option<AgentRow>, StoreError> {
        self.tx(Some(tenant), false, "agent", |c| {
            c.query_opt(
                concat!(
                    "SELECT name, team, active_policy, created_at FROM agents WHERE ",
                    tenant_eq!("tenant", "$1"),
                    " AND name = $2"
                ),
                &[&tenant.as_str(), &name],
            )?
            .map(|r| agent_row(self, &r))
            .transpose()
        })
    }

    fn agents(&self, tenant: &TenantId) -> Result<Vec<AgentRow>, StoreError> {
        self.tx(Some(tenant), false, "agents", |c| {
            c.query(
                concat!(
                    "SELECT name, team, active_policy, created_at FROM agents WHERE ",
                    tenant_eq!("tenant", "$1"),
                    " ORDER BY name"
                ),
                &[&tenant.as_str()],
            )?
            .iter()
            .map(|r| agent_row(self, r))
            .collect()
        })
    }

    fn policy_put(
        &mut self,
        tenant: &TenantId,
        agent: &str,
        text: &str,
        sha256: &str,
        author: &str,
        now: i64,
    ) -> Result<Option<u32>, StoreError> {
        self.tx(Some(tenant), true, "policy put", |c| {
            // Lock the agent's row: concurrent puts for one agent take
            // numbers one after the other (across replicas too).
            let exists = c
                .query_opt(
                    concat!(
                        "SELECT 1 FROM agents WHERE ",
                        tenant_eq!("tenant", "$1"),
                        " AND name = $2 FOR UPDATE"
                    ),
                    &[&tenant.as_str(), &agent],
                )?
                .is_some();
            if !exists {
                return Ok(None);
            }
            let v: i32 = c
                .query_one(
                    concat!(
                        "INSERT INTO policy_versions \
                           (tenant, agent, version, text, sha256, author, created_at) \
                         SELECT $1, $2, coalesce(max(version), 0) + 1, $3, $4, $5, $6 \
                         FROM policy_versions WHERE ",
                        tenant_eq!("tenant", "$1"),
                        " AND agent = $2 RETURNING version"
                    ),
                    &[&tenant.as_str(), &agent, &text, &sha256, &author, &now],
                )?
                .try_get(0)?;
            Ok(Some(u32_of(self, "policy version", v)?))
        })
    }

    fn policy_version(
        &self,
        tenant: &TenantId,
        agent: &str,
        version: u32,
    ) -> Result<Option<PolicyVersionRow>, StoreError> {
        let Ok(version) = i32::try_from(version) else {
            return Ok(None);
        };
        self.tx(Some(tenant), false, "policy version", |c| {
            c.query_opt(
                concat!(
                    "SELECT agent, version, text, sha256, author, created_at FROM policy_versions \
                     WHERE ",
                    tenant_eq!("tenant", "$1"),
                    " AND agent = $2 AND version = $3"
                ),
                &[&tenant.as_str(), &agent, &version],
            )?
            .map(|r| policy_row(self, &r))
            .transpose()
        })
    }

    fn policy_versions(
        &self,
        tenant: &TenantId,
        agent: &str,
    ) -> Result<Vec<PolicyVersionRow>, StoreError> {
        self.tx(Some(tenant), false, "policy versions", |c| {
            c.query(
                concat!(
                    "SELECT agent, version, text, sha256, author, created_at FROM policy_versions \
                     WHERE ",
                    tenant_eq!("tenant", "$1"),
                    " AND agent = $2 ORDER BY version"
                ),
                &[&tenant.as_str(), &agent],
            )?
            .iter()
            .map(|r| policy_row(self, r))
            .collect()
        })
    }

    fn policy_activate(
        &mut self,
        tenant: &TenantId,
        agent: &str,
        version: u32,
    ) -> Result<bool, StoreError> {
        let Ok(version) = i32::try_from(version) else {
            return Ok(false);
        };
        self.tx(Some(tenant), true, "policy activate", |c| {
            let n = c.execute(
                concat!(
                    "UPDATE agents SET active_policy = $3 WHERE ",
                    tenant_eq!("tenant", "$1"),
                    " AND name = $2 AND EXISTS (SELECT 1 FROM policy_versions p \
                       WHERE p.tenant = agents.tenant AND p.agent = agents.name \
                       AND p.version = $3)"
                ),
                &[&tenant.as_str(), &agent, &version],
            )?;
            Ok(n == 1)
        })
    }

    fn token_insert(&mut self, row: &ApiTokenRow) -> Result<(), StoreError> {
        self.tx(Some(&row.tenant), true, "token insert", |c| {
            c.execute(
                "INSERT INTO api_tokens (id, tenant, sha256, scopes, agents, nodes, description, \
                   expires_at, revoked_at, created_at, last_used_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                &[
                    &row.id,
                    &row.tenant.as_str(),
                    &&row.sha256[..],
                    &row.scopes,
                    &row.agents,
                    &row.nodes,
                    &row.description,
                    &row.expires_at,
                    &row.revoked_at,
                    &row.created_at,
                    &row.last_used_at,
                ],
            )?;
            Ok(())
        })
    }

    fn token_by_hash(&self, sha256: &[u8; 32]) -> Result<Option<ApiTokenRow>, StoreError> {
        // Before the tenant is known: the owner's SECURITY DEFINER function,
        // which returns only the row with this hash.
        self.tx(None, false, "token by hash", |c| {
            c.query_opt(
                &format!("SELECT {TOKEN_COLS} FROM airlock_token_by_hash($1)"),
                &[&&sha256[..]],
            )?
            .map(|r| token_row(self, &r))
            .transpose()
        })
    }

    fn tokens(&self, tenant: &TenantId) -> Result<Vec<ApiTokenRow>, StoreError> {
        self.tx(Some(tenant), false, "tokens", |c| {
            c.query(
                &format!(
                    "SELECT {TOKEN_COLS} FROM api_tokens WHERE {} \
                     ORDER BY created_at DESC, id DESC",
                    tenant_eq!("tenant", "$1")
                ),
                &[&tenant.as_str()],
            )?
            .iter()
            .map(|r| token_row(self, r))
            .collect()
        })
    }

    fn token_revoke(&mut self, tenant: &TenantId, id: &str, now: i64) -> Result<bool, StoreError> {
        self.tx(Some(tenant), true, "token revoke", |c| {
            let n = c.execute(
                concat!(
                    "UPDATE api_tokens SET revoked_at = $3 WHERE ",
                    tenant_eq!("tenant", "$1"),
                    " AND id = $2 AND revoked_at IS NULL"
                ),
                &[&tenant.as_str(), &id, &now],
            )?;
            Ok(n == 1)
        })
    }

    fn token_touch(&mut self, tenant: &TenantId, id: &str, now: i64) -> Result<(), StoreError> {
        self.tx(Some(tenant), true, "token touch", |c| {
            c.execute(
                concat!(
                    "UPDATE api_tokens SET last_used_at = $3 WHERE ",
                    tenant_eq!("tenant", "$1"),
                    " AND id = $2"
                ),
                &[&tenant.as_str(), &id, &now],
            )?;
            Ok(())
        })
    }

    fn run_insert(&mut self, tenant: &TenantId, row: &RunRow) -> Result<(), StoreError> {
        self.tx(Some(tenant), true, "run insert", |c| {
            c.execute(
                "INSERT INTO runs (tenant, id, agent, command, node, state, exit_code, \
                   started_at, ended_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &tenant.as_str(),
                    &row.id,
                    &row.agent,
                    &row.command,
                    &row.node,
                    &row.state.as_str(),
                    &row.exit_code,
                    &row.started_at,
                    &row.ended_at,
                ],
            )?;
            Ok(())
        })
    }

    fn run_finish(
        &mut self,
        tenant: &TenantId,
        id: &str,
        state: RunState,
        exit_code: Option<i32>,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.tx(Some(tenant), true, "run finish", |c| {
            let n = c.execute(
                concat!(
                    "UPDATE runs SET state = $3, exit_code = $4, ended_at = $5 WHERE ",
                    tenant_eq!("tenant", "$1"),
                    " AND id = $2 AND state = 'running'"
                ),
                &[&tenant.as_str(), &id, &state.as_str(), &exit_code, &now],
            )?;
            Ok(n == 1)
        })
    }

    fn run(&self, tenant: &TenantId, id: &str) -> Result<Option<RunRow>, StoreError> {
        self.tx(Some(tenant), false, "run", |c| {
            c.query_opt(
                &format!(
                    "SELECT {RUN_COLS} FROM runs WHERE {} AND id = $2",
                    tenant_eq!("tenant", "$1")
                ),
                &[&tenant.as_str(), &id],
            )?
            .map(|r| run_row(self, &r))
            .transpose()
        })
    }

    fn runs(
        &self,
        tenant: &TenantId,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<RunRow>, StoreError> {
        let limit = i64::from(limit);
        self.tx(Some(tenant), false, "runs", |c| {
            c.query(
                &format!(
                    "SELECT {RUN_COLS} FROM runs WHERE {} \
                     AND ($2::bigint IS NULL OR started_at < $2) \
                     ORDER BY started_at DESC, id DESC LIMIT $3",
                    tenant_eq!("tenant", "$1")
                ),
                &[&tenant.as_str(), &before, &limit],
            )?
            .iter()
            .map(|r| run_row(self, r))
            .collect()
        })
    }
}
