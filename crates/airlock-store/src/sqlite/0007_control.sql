-- The control plane (`airlock serve`): tenants, teams, agents, versioned
-- policies, scoped API tokens and runs. Every table carries the tenant and
-- every query filters on it; keys are (tenant, name) so two tenants may use
-- the same names. Token secrets are never stored, only their SHA-256.
-- Guarded writes: a revocation is `UPDATE … WHERE revoked_at IS NULL`, a
-- run's end `UPDATE … WHERE state = 'running'`, so each happens once.
CREATE TABLE control_tenants (
    tenant     TEXT    NOT NULL PRIMARY KEY,
    created_at INTEGER NOT NULL
);

CREATE TABLE control_teams (
    tenant     TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
);

CREATE TABLE control_agents (
    tenant        TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    team          TEXT,
    active_policy INTEGER,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
);

-- Versions are immutable: no UPDATE or DELETE.
CREATE TABLE control_policies (
    tenant     TEXT    NOT NULL,
    agent      TEXT    NOT NULL,
    version    INTEGER NOT NULL CHECK (version >= 1),
    text       TEXT    NOT NULL,
    sha256     TEXT    NOT NULL,
    author     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, agent, version)
);
CREATE TRIGGER control_policies_no_update BEFORE UPDATE ON control_policies
BEGIN SELECT RAISE(ABORT, 'policy versions are immutable'); END;
CREATE TRIGGER control_policies_no_delete BEFORE DELETE ON control_policies
BEGIN SELECT RAISE(ABORT, 'policy versions are immutable'); END;

CREATE TABLE control_tokens (
    tenant       TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    sha256       BLOB    NOT NULL UNIQUE CHECK (length(sha256) = 32),
    scopes       TEXT    NOT NULL,
    agents       TEXT    NOT NULL,
    nodes        TEXT    NOT NULL,
    description  TEXT    NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    PRIMARY KEY (tenant, id)
);
CREATE UNIQUE INDEX control_tokens_id ON control_tokens (id);

CREATE TABLE control_runs (
    tenant     TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    agent      TEXT,
    command    TEXT    NOT NULL,
    node       TEXT    NOT NULL,
    state      TEXT    NOT NULL
        CHECK (state IN ('running', 'exited', 'stopped', 'failed')),
    exit_code  INTEGER,
    started_at INTEGER NOT NULL,
    ended_at   INTEGER,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX control_runs_started ON control_runs (tenant, started_at);
