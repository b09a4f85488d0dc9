//! [`ControlStore`] on SQLite (migration 0007). Every statement names the
//! tenant; lists (scopes, agents, nodes, a run's command) are stored as JSON
//! arrays. Each write is one statement or one `BEGIN IMMEDIATE`
//! transaction; changes of state are guarded by the state they leave.

use crate::control::{
    AgentRow, ApiTokenRow, ControlStore, PolicyVersionRow, RunRow, RunState, TeamRow, TenantRow,
};
use crate::{DbError, SqliteStore, StoreError};
use airlock_types::TenantId;
use rusqlite::{OptionalExtension as _, TransactionBehavior, params};

fn list_text(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".to_owned())
}

fn conv<T>(col: usize, detail: String) -> rusqlite::Result<T> {
    Err(rusqlite::Error::FromSqlConversionFailure(
        col,
        rusqlite::types::Type::Text,
        detail.into(),
    ))
}

fn list_of(r: &rusqlite::Row<'_>, col: usize) -> rusqlite::Result<Vec<String>> {
    let text: String = r.get(col)?;
    match serde_json::from_str(&text) {
        Ok(v) => Ok(v),
        Err(e) => conv(col, format!("not a JSON list of strings: {e}")),
    }
}

pub(crate) fn tenant_of(r: &rusqlite::Row<'_>, col: usize) -> rusqlite::Result<TenantId> {
    let text: String = r.get(col)?;
    match TenantId::new(text) {
        Ok(t) => Ok(t),
        Err(e) => conv(col, e.to_string()),
    }
}

fn version_of(r: &rusqlite::Row<'_>, col: usize) -> rusqlite::Result<u32> {
    let v: i64 = r.get(col)?;
    match u32::try_from(v) {
        Ok(v) => Ok(v),
        Err(_) => conv(col, format!("policy version {v} out of range")),
    }
}

const AGENT_COLUMNS: &str = "name, team, active_policy, created_at";

fn agent_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AgentRow> {
    let active: Option<i64> = r.get(2)?;
    let active_policy = match active {
        None => None,
        Some(v) => match u32::try_from(v) {
            Ok(v) => Some(v),
            Err(_) => return conv(2, format!("policy version {v} out of range")),
        },
    };
    Ok(AgentRow {
        name: r.get(0)?,
        team: r.get(1)?,
        active_policy,
        created_at: r.get(3)?,
    })
}

const POLICY_COLUMNS: &str = "agent, version, text, sha256, author, created_at";

fn policy_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PolicyVersionRow> {
    Ok(PolicyVersionRow {
        agent: r.get(0)?,
        version: version_of(r, 1)?,
        text: r.get(2)?,
        sha256: r.get(3)?,
        author: r.get(4)?,
        created_at: r.get(5)?,
    })
}

const TOKEN_COLUMNS: &str = "tenant, id, sha256, scopes, agents, nodes, description, expires_at, revoked_at, created_at, last_used_at";

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiTokenRow> {
    let hash: Vec<u8> = r.get(2)?;
    let Ok(sha256) = <[u8; 32]>::try_from(hash.as_slice()) else {
        return conv(2, format!("token hash of {} bytes", hash.len()));
    };
    Ok(ApiTokenRow {
        tenant: tenant_of(r, 0)?,
        id: r.get(1)?,
        sha256,
        scopes: list_of(r, 3)?,
        agents: list_of(r, 4)?,
        nodes: list_of(r, 5)?,
        description: r.get(6)?,
        expires_at: r.get(7)?,
        revoked_at: r.get(8)?,
        created_at: r.get(9)?,
        last_used_at: r.get(10)?,
    })
}

const RUN_COLUMNS: &str = "id, agent, command, node, state, exit_code, started_at, ended_at";

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    let state: String = r.get(4)?;
    let Some(state) = RunState::parse(&state) else {
        return conv(4, format!("unknown run state {state:?}"));
    };
    Ok(RunRow {
        id: r.get(0)?,
        agent: r.get(1)?,
        command: list_of(r, 2)?,
        node: r.get(3)?,
        state,
        exit_code: r.get(5)?,
        started_at: r.get(6)?,
        ended_at: r.get(7)?,
    })
}

impl SqliteStore {
    pub(crate) fn ctl_err(
        &self,
        what: &'static str,
    ) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Control {
            path: self.path().to_owned(),
            what,
            source: DbError::sqlite(source),
        }
    }

    /// Run `sql` with `params`; whether it changed a row.
    pub(crate) fn ctl_exec(
        &self,
        what: &'static str,
        sql: &str,
        p: impl rusqlite::Params,
    ) -> Result<bool, StoreError> {
        self.writable()?;
        self.conn()
            .prepare_cached(sql)
            .and_then(|mut st| st.execute(p))
            .map(|n| n > 0)
            .map_err(self.ctl_err(what))
    }

    pub(crate) fn ctl_list<T>(
        &self,
        what: &'static str,
        sql: &str,
        p: impl rusqlite::Params,
        f: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StoreError> {
        self.conn()
            .prepare_cached(sql)
            .and_then(|mut st| st.query_map(p, f)?.collect())
            .map_err(self.ctl_err(what))
    }

    pub(crate) fn ctl_one<T>(
        &self,
        what: &'static str,
        sql: &str,
        p: impl rusqlite::Params,
        f: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>, StoreError> {
        self.conn()
            .prepare_cached(sql)
            .and_then(|mut st| st.query_row(p, f).optional())
            .map_err(self.ctl_err(what))
    }
}

impl ControlStore for SqliteStore {
    fn tenant_create(&mut self, tenant: &TenantId, now: i64) -> Result<bool, StoreError> {
        self.ctl_exec(
            "tenant create",
            "INSERT OR IGNORE INTO control_tenants (tenant, created_at) VALUES (?1, ?2)",
            params![tenant.as_str(), now],
        )
    }

    fn tenant(&self, tenant: &TenantId) -> Result<Option<TenantRow>, StoreError> {
        self.ctl_one(
            "tenant",
            "SELECT tenant, created_at FROM control_tenants WHERE tenant = ?1",
            params![tenant.as_str()],
            |r| {
                Ok(TenantRow {
                    id: tenant_of(r, 0)?,
                    created_at: r.get(1)?,
                })
            },
        )
    }

    fn tenants(&self) -> Result<Vec<TenantRow>, StoreError> {
        self.ctl_list(
            "tenants",
            "SELECT tenant, created_at FROM control_tenants ORDER BY tenant",
            [],
            |r| {
                Ok(TenantRow {
                    id: tenant_of(r, 0)?,
                    created_at: r.get(1)?,
                })
            },
        )
    }

    fn team_create(&mut self, tenant: &TenantId, name: &str, now: i64) -> Result<bool, StoreError> {
        self.ctl_exec(
            "team create",
            "INSERT OR IGNORE INTO control_teams (tenant, name, created_at) VALUES (?1, ?2, ?3)",
            params![tenant.as_str(), name, now],
        )
    }

    fn teams(&self, tenant: &TenantId) -> Result<Vec<TeamRow>, StoreError> {
        self.ctl_list(
            "teams",
            "SELECT name, created_at FROM control_teams WHERE tenant = ?1 ORDER BY name",
            params![tenant.as_str()],
            |r| {
                Ok(TeamRow {
                    name: r.get(0)?,
                    created_at: r.get(1)?,
                })
            },
        )
    }

    fn agent_create(
        &mut self,
        tenant: &TenantId,
        name: &str,
        team: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.ctl_exec(
            "agent create",
            "INSERT OR IGNORE INTO control_agents (tenant, name, team, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![tenant.as_str(), name, team, now],
        )
    }

    fn agent(&self, tenant: &TenantId, name: &str) -> Result<Option<AgentRow>, StoreError> {
        self.ctl_one(
            "agent",
            &format!("SELECT {AGENT_COLUMNS} FROM control_agents WHERE tenant = ?1 AND name = ?2"),
            params![tenant.as_str(), name],
            agent_row,
        )
    }

    fn agents(&self, tenant: &TenantId) -> Result<Vec<AgentRow>, StoreError> {
        self.ctl_list(
            "agents",
            &format!("SELECT {AGENT_COLUMNS} FROM control_agents WHERE tenant = ?1 ORDER BY name"),
            params![tenant.as_str()],
            agent_row,
        )
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
        self.writable()?;
        let path = self.path().to_owned();
        let err = move |source| StoreError::Control {
            path: path.clone(),
            what: "policy put",
            source: DbError::sqlite(source),
        };
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let exists: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM control_agents WHERE tenant = ?1 AND name = ?2)",
                params![tenant.as_str(), agent],
                |r| r.get(0),
            )
            .map_err(&err)?;
        if !exists {
            return Ok(None);
        }
        let next: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM control_policies WHERE tenant = ?1 AND agent = ?2",
                params![tenant.as_str(), agent],
                |r| r.get(0),
            )
            .map_err(&err)?;
        tx.execute(
            "INSERT INTO control_policies (tenant, agent, version, text, sha256, author, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![tenant.as_str(), agent, next, text, sha256, author, now],
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)?;
        Ok(u32::try_from(next).ok())
    }

    fn policy_version(
        &self,
        tenant: &TenantId,
        agent: &str,
        version: u32,
    ) -> Result<Option<PolicyVersionRow>, StoreError> {
        self.ctl_one(
            "policy version",
            &format!(
                "SELECT {POLICY_COLUMNS} FROM control_policies WHERE tenant = ?1 AND agent = ?2 AND version = ?3"
            ),
            params![tenant.as_str(), agent, i64::from(version)],
            policy_row,
        )
    }

    fn policy_versions(
        &self,
        tenant: &TenantId,
        agent: &str,
    ) -> Result<Vec<PolicyVersionRow>, StoreError> {
        self.ctl_list(
            "policy versions",
            &format!(
                "SELECT {POLICY_COLUMNS} FROM control_policies WHERE tenant = ?1 AND agent = ?2 ORDER BY version"
            ),
            params![tenant.as_str(), agent],
            policy_row,
        )
    }

    fn policy_activate(
        &mut self,
        tenant: &TenantId,
        agent: &str,
        version: u32,
    ) -> Result<bool, StoreError> {
        // One statement: the version must exist for this tenant and agent.
        self.ctl_exec(
            "policy activate",
            "UPDATE control_agents SET active_policy = ?3
             WHERE tenant = ?1 AND name = ?2
               AND EXISTS (SELECT 1 FROM control_policies
                           WHERE tenant = ?1 AND agent = ?2 AND version = ?3)",
            params![tenant.as_str(), agent, i64::from(version)],
        )
    }

    fn token_insert(&mut self, row: &ApiTokenRow) -> Result<(), StoreError> {
        self.ctl_exec(
            "token insert",
            &format!("INSERT INTO control_tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
            params![
                row.tenant.as_str(),
                row.id,
                row.sha256.as_slice(),
                list_text(&row.scopes),
                list_text(&row.agents),
                list_text(&row.nodes),
                row.description,
                row.expires_at,
                row.revoked_at,
                row.created_at,
                row.last_used_at
            ],
        )
        .map(drop)
    }

    fn token_by_hash(&self, sha256: &[u8; 32]) -> Result<Option<ApiTokenRow>, StoreError> {
        self.ctl_one(
            "token by hash",
            &format!("SELECT {TOKEN_COLUMNS} FROM control_tokens WHERE sha256 = ?1"),
            params![sha256.as_slice()],
            token_row,
        )
    }

    fn tokens(&self, tenant: &TenantId) -> Result<Vec<ApiTokenRow>, StoreError> {
        self.ctl_list(
            "tokens",
            &format!(
                "SELECT {TOKEN_COLUMNS} FROM control_tokens WHERE tenant = ?1 ORDER BY created_at DESC, id DESC"
            ),
            params![tenant.as_str()],
            token_row,
        )
    }

    fn token_revoke(&mut self, tenant: &TenantId, id: &str, now: i64) -> Result<bool, StoreError> {
        self.ctl_exec(
            "token revoke",
            "UPDATE control_tokens SET revoked_at = ?3 WHERE tenant = ?1 AND id = ?2 AND revoked_at IS NULL",
            params![tenant.as_str(), id, now],
        )
    }

    fn token_touch(&mut self, tenant: &TenantId, id: &str, now: i64) -> Result<(), StoreError> {
        self.ctl_exec(
            "token touch",
            "UPDATE control_tokens SET last_used_at = ?3 WHERE tenant = ?1 AND id = ?2",
            params![tenant.as_str(), id, now],
        )
        .map(drop)
    }

    fn run_insert(&mut self, tenant: &TenantId, row: &RunRow) -> Result<(), StoreError> {
        self.ctl_exec(
            "run insert",
            &format!("INSERT INTO control_runs (tenant, {RUN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
            params![
                tenant.as_str(),
                row.id,
                row.agent,
                list_text(&row.command),
                row.node,
                row.state.as_str(),
                row.exit_code,
                row.started_at,
                row.ended_at
            ],
        )
        .map(drop)
    }

    fn run_finish(
        &mut self,
        tenant: &TenantId,
        id: &str,
        state: RunState,
        exit_code: Option<i32>,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.ctl_exec(
            "run finish",
            "UPDATE control_runs SET state = ?3, exit_code = ?4, ended_at = ?5
             WHERE tenant = ?1 AND id = ?2 AND state = 'running'",
            params![tenant.as_str(), id, state.as_str(), exit_code, now],
        )
    }

    fn run(&self, tenant: &TenantId, id: &str) -> Result<Option<RunRow>, StoreError> {
        self.ctl_one(
            "run",
            &format!("SELECT {RUN_COLUMNS} FROM control_runs WHERE tenant = ?1 AND id = ?2"),
            params![tenant.as_str(), id],
            run_row,
        )
    }

    fn runs(
        &self,
        tenant: &TenantId,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<RunRow>, StoreError> {
        self.ctl_list(
            "runs",
            &format!(
                "SELECT {RUN_COLUMNS} FROM control_runs WHERE tenant = ?1 AND started_at < ?2
                 ORDER BY started_at DESC, id DESC LIMIT ?3"
            ),
            params![
                tenant.as_str(),
                before.unwrap_or(i64::MAX),
                i64::from(limit)
            ],
            run_row,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> TenantId {
        TenantId::new(s).expect("tenant")
    }

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = SqliteStore::open(&dir.path().join("a.db")).expect("open");
        (dir, s)
    }

    fn token(tenant: &str, id: &str, byte: u8) -> ApiTokenRow {
        ApiTokenRow {
            id: id.into(),
            tenant: t(tenant),
            sha256: [byte; 32],
            scopes: vec!["runs:read".into(), "admin".into()],
            agents: vec!["bot".into()],
            nodes: vec![],
            description: "ci".into(),
            expires_at: Some(99),
            revoked_at: None,
            created_at: 1,
            last_used_at: None,
        }
    }

    #[test]
    fn tenants_teams_agents_are_per_tenant() {
        let (_d, mut s) = store();
        assert!(s.tenant_create(&t("a"), 1).expect("create"));
        assert!(!s.tenant_create(&t("a"), 2).expect("again"));
        assert!(s.tenant_create(&t("b"), 3).expect("create"));
        assert_eq!(s.tenants().expect("list").len(), 2);
        assert_eq!(
            s.tenant(&t("a")).expect("get"),
            Some(TenantRow {
                id: t("a"),
                created_at: 1
            })
        );
        assert!(s.team_create(&t("a"), "ops", 5).expect("team"));
        assert!(!s.team_create(&t("a"), "ops", 6).expect("team again"));
        assert_eq!(s.teams(&t("b")).expect("teams"), vec![]);
        assert!(
            s.agent_create(&t("a"), "bot", Some("ops"), 7)
                .expect("agent")
        );
        assert!(
            s.agent_create(&t("b"), "bot", None, 8)
                .expect("same name, other tenant")
        );
        assert_eq!(
            s.agent(&t("a"), "bot").expect("agent"),
            Some(AgentRow {
                name: "bot".into(),
                team: Some("ops".into()),
                active_policy: None,
                created_at: 7
            })
        );
        assert_eq!(s.agents(&t("b")).expect("agents").len(), 1);
        assert_eq!(s.agent(&t("c"), "bot").expect("none"), None);
    }

    #[test]
    fn policies_are_versioned_immutable_and_activated_per_tenant() {
        let (_d, mut s) = store();
        assert_eq!(
            s.policy_put(&t("a"), "bot", "x", "h", "me", 1)
                .expect("put"),
            None
        );
        s.agent_create(&t("a"), "bot", None, 1).expect("agent");
        assert_eq!(
            s.policy_put(&t("a"), "bot", "v1", "h1", "me", 2)
                .expect("put"),
            Some(1)
        );
        assert_eq!(
            s.policy_put(&t("a"), "bot", "v2", "h2", "me", 3)
                .expect("put"),
            Some(2)
        );
        assert_eq!(
            s.policy_put(&t("b"), "bot", "v", "h", "me", 3)
                .expect("other"),
            None
        );
        let versions = s.policy_versions(&t("a"), "bot").expect("versions");
        assert_eq!(
            versions.iter().map(|v| v.version).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(
            s.policy_version(&t("a"), "bot", 2)
                .expect("v2")
                .map(|v| v.text),
            Some("v2".into())
        );
        assert_eq!(s.policy_version(&t("b"), "bot", 2).expect("other"), None);
        assert!(
            !s.policy_activate(&t("a"), "bot", 3)
                .expect("missing version")
        );
        assert!(!s.policy_activate(&t("b"), "bot", 1).expect("other tenant"));
        assert!(s.policy_activate(&t("a"), "bot", 1).expect("activate"));
        assert_eq!(
            s.agent(&t("a"), "bot")
                .expect("agent")
                .and_then(|a| a.active_policy),
            Some(1)
        );
        let edit = s
            .conn()
            .execute("UPDATE control_policies SET text = 'x'", []);
        assert!(edit.is_err(), "versions are immutable");
    }

    #[test]
    fn tokens_round_trip_revoke_once_and_stay_in_their_tenant() {
        let (_d, mut s) = store();
        let row = token("a", "tok_1", 7);
        s.token_insert(&row).expect("insert");
        assert!(
            s.token_insert(&token("b", "tok_2", 7)).is_err(),
            "hash is unique"
        );
        assert_eq!(
            s.token_by_hash(&[7; 32]).expect("lookup"),
            Some(row.clone())
        );
        assert_eq!(s.token_by_hash(&[8; 32]).expect("lookup"), None);
        assert_eq!(s.tokens(&t("b")).expect("list"), vec![]);
        assert!(!s.token_revoke(&t("b"), "tok_1", 5).expect("other tenant"));
        s.token_touch(&t("a"), "tok_1", 4).expect("touch");
        assert!(s.token_revoke(&t("a"), "tok_1", 5).expect("revoke"));
        assert!(!s.token_revoke(&t("a"), "tok_1", 6).expect("twice"));
        let got = s.tokens(&t("a")).expect("list");
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].revoked_at, got[0].last_used_at), (Some(5), Some(4)));
    }

    #[test]
    fn runs_finish_once_and_page_newest_first() {
        let (_d, mut s) = store();
        for i in 0..5 {
            let row = RunRow {
                id: format!("run-{i}"),
                agent: None,
                command: vec!["echo".into(), "a b".into()],
                node: "n1".into(),
                state: RunState::Running,
                exit_code: None,
                started_at: i,
                ended_at: None,
            };
            s.run_insert(&t("a"), &row).expect("insert");
        }
        assert!(
            s.run_finish(&t("a"), "run-1", RunState::Exited, Some(0), 9)
                .expect("finish")
        );
        assert!(
            !s.run_finish(&t("a"), "run-1", RunState::Stopped, None, 10)
                .expect("twice")
        );
        assert!(
            !s.run_finish(&t("b"), "run-2", RunState::Stopped, None, 10)
                .expect("other")
        );
        let r = s.run(&t("a"), "run-1").expect("run").expect("exists");
        assert_eq!(
            (r.state, r.exit_code, r.ended_at),
            (RunState::Exited, Some(0), Some(9))
        );
        assert_eq!(r.command, vec!["echo".to_owned(), "a b".to_owned()]);
        assert_eq!(s.run(&t("b"), "run-1").expect("other"), None);
        let page = s.runs(&t("a"), 2, None).expect("page");
        assert_eq!(
            page.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["run-4", "run-3"]
        );
        let next = s.runs(&t("a"), 2, Some(3)).expect("page");
        assert_eq!(
            next.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["run-2", "run-1"]
        );
    }
}
