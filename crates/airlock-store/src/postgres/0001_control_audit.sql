-- Airlock on PostgreSQL: the control plane's tables and the audit log, every
-- one of them tenant-scoped and under row-level security.
--
-- Run by the owner role (`airlock db migrate` with the admin URL), which owns
-- every table. Airlock serves as a login role that is a member of the group
-- role `airlock_app`: it owns nothing, is no superuser and has no BYPASSRLS
-- (checked at every connect), so the policies below always apply to it. The
-- tenant a transaction may see is `set_config('airlock.tenant', $1, true)`,
-- set per transaction; without it `current_setting(…, true)` is NULL and no
-- row matches.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'airlock_app') THEN
        CREATE ROLE airlock_app NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL; -- another database's migration created it at the same moment
END
$$;

GRANT SELECT ON schema_migrations TO airlock_app;

CREATE TABLE tenants (
    id         text   PRIMARY KEY,
    created_at bigint NOT NULL
);

CREATE TABLE teams (
    tenant     text   NOT NULL,
    name       text   NOT NULL,
    created_at bigint NOT NULL,
    PRIMARY KEY (tenant, name)
);

CREATE TABLE agents (
    tenant        text    NOT NULL,
    name          text    NOT NULL,
    team          text,
    active_policy integer CHECK (active_policy >= 1),
    created_at    bigint  NOT NULL,
    PRIMARY KEY (tenant, name)
);

CREATE TABLE policy_versions (
    tenant     text    NOT NULL,
    agent      text    NOT NULL,
    version    integer NOT NULL CHECK (version >= 1),
    text       text    NOT NULL,
    sha256     text    NOT NULL,
    author     text    NOT NULL,
    created_at bigint  NOT NULL,
    PRIMARY KEY (tenant, agent, version),
    FOREIGN KEY (tenant, agent) REFERENCES agents (tenant, name)
);

CREATE TABLE api_tokens (
    id           text   PRIMARY KEY,
    tenant       text   NOT NULL,
    sha256       bytea  NOT NULL UNIQUE CHECK (length(sha256) = 32),
    scopes       text[] NOT NULL,
    agents       text[] NOT NULL,
    nodes        text[] NOT NULL,
    description  text   NOT NULL,
    expires_at   bigint,
    revoked_at   bigint,
    created_at   bigint NOT NULL,
    last_used_at bigint
);
CREATE INDEX api_tokens_by_tenant ON api_tokens (tenant, created_at DESC);

CREATE TABLE runs (
    tenant     text    NOT NULL,
    id         text    NOT NULL,
    agent      text,
    command    text[]  NOT NULL,
    node       text    NOT NULL,
    state      text    NOT NULL CHECK (state IN ('running', 'exited', 'stopped', 'failed')),
    exit_code  integer,
    started_at bigint  NOT NULL,
    ended_at   bigint,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX runs_by_start ON runs (tenant, started_at DESC);

-- One row per tenant whose log has records: appends lock it (SELECT … FOR
-- UPDATE), so appends of one tenant are serialized across every replica
-- while other tenants' appends go on in parallel.
CREATE TABLE audit_heads (
    tenant text PRIMARY KEY
);

CREATE TABLE audit_records (
    tenant text   NOT NULL,
    idx    bigint NOT NULL CHECK (idx >= 0),
    body   bytea  NOT NULL,
    chain  bytea  NOT NULL CHECK (length(chain) = 32),
    PRIMARY KEY (tenant, idx)
);

CREATE TABLE audit_checkpoints (
    tenant    text   NOT NULL,
    seq       bigint NOT NULL CHECK (seq >= 0),
    tree_size bigint NOT NULL CHECK (tree_size >= 0),
    body      text   NOT NULL,
    PRIMARY KEY (tenant, seq)
);

-- Append-only, for everyone including the owner (the app role also lacks
-- the UPDATE/DELETE/TRUNCATE privileges; these catch the owner's mistakes
-- and are reported by `missing_guards` when dropped or disabled).
CREATE FUNCTION airlock_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END
$$;
CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
    FOR EACH ROW EXECUTE FUNCTION airlock_append_only();
CREATE TRIGGER audit_records_no_delete BEFORE DELETE ON audit_records
    FOR EACH ROW EXECUTE FUNCTION airlock_append_only();
CREATE TRIGGER audit_records_no_truncate BEFORE TRUNCATE ON audit_records
    FOR EACH STATEMENT EXECUTE FUNCTION airlock_append_only();
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION airlock_append_only();
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION airlock_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION airlock_append_only();

-- Row-level security: ENABLE and FORCE on every tenant table (FORCE so the
-- owner is bound too), one policy each, USING for what a statement sees and
-- WITH CHECK for what it may write.
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants
    USING (id = current_setting('airlock.tenant', true))
    WITH CHECK (id = current_setting('airlock.tenant', true));

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['teams', 'agents', 'policy_versions', 'api_tokens',
                             'runs', 'audit_heads', 'audit_records', 'audit_checkpoints']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I '
                       'USING (tenant = current_setting(''airlock.tenant'', true)) '
                       'WITH CHECK (tenant = current_setting(''airlock.tenant'', true))', t);
    END LOOP;
END
$$;

-- Two reads happen before any tenant is known: the token lookup that
-- authenticates a request, and the operators' list of tenants. Each is a
-- SECURITY DEFINER function owned by the owner role; a SELECT-only policy
-- for the owner role (the migrating role, never the app role: checked at
-- connect) lets the function see across tenants. The app role cannot read
-- the tables that way itself, and the token function returns at most the
-- one row whose 256-bit hash the caller already knows.
DO $$
BEGIN
    EXECUTE format('CREATE POLICY owner_lookup ON api_tokens FOR SELECT TO %I USING (true)', current_user);
    EXECUTE format('CREATE POLICY owner_lookup ON tenants FOR SELECT TO %I USING (true)', current_user);
END
$$;

CREATE FUNCTION airlock_token_by_hash(h bytea) RETURNS SETOF api_tokens
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT
    AS $$ SELECT * FROM api_tokens WHERE sha256 = h $$;
CREATE FUNCTION airlock_tenants() RETURNS SETOF tenants
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT
    AS $$ SELECT * FROM tenants ORDER BY id $$;
REVOKE ALL ON FUNCTION airlock_token_by_hash(bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION airlock_tenants() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION airlock_token_by_hash(bytea) TO airlock_app;
GRANT EXECUTE ON FUNCTION airlock_tenants() TO airlock_app;

-- The app role: only what Airlock does. No DELETE anywhere, no UPDATE of
-- the audit tables, UPDATE only of the columns that change.
GRANT SELECT, INSERT ON tenants, teams, agents, policy_versions, api_tokens, runs,
                        audit_records, audit_checkpoints, audit_heads TO airlock_app;
GRANT UPDATE (active_policy) ON agents TO airlock_app;
GRANT UPDATE (revoked_at, last_used_at) ON api_tokens TO airlock_app;
GRANT UPDATE (state, exit_code, ended_at) ON runs TO airlock_app;
GRANT UPDATE (tenant) ON audit_heads TO airlock_app; -- for SELECT … FOR UPDATE
