-- Dashboard accounts on PostgreSQL, as SQLite's 0008: local users
-- (Argon2id PHC strings) and browser sessions (only the SHA-256 of the
-- cookie value). Both tables are tenant-scoped under row-level security.
--
-- Two lookups run before the tenant is known, each through a SECURITY
-- DEFINER function owned by the owner role that returns only the one row
-- asked for: a user by login name (the login form names no tenant), and a
-- session by the hash of its cookie (whoever holds the cookie holds the
-- hash's preimage). Touching and revoking a session by its hash go the
-- same way. A username is unique in the installation.
CREATE TABLE dashboard_users (
    username             text    PRIMARY KEY,
    tenant               text    NOT NULL,
    password_hash        text    NOT NULL,
    admin                boolean NOT NULL,
    must_change_password boolean NOT NULL,
    created_at           bigint  NOT NULL
);
CREATE INDEX dashboard_users_tenant ON dashboard_users (tenant);
ALTER TABLE dashboard_users ENABLE ROW LEVEL SECURITY;
ALTER TABLE dashboard_users FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON dashboard_users
    USING (tenant = current_setting('airlock.tenant', true))
    WITH CHECK (tenant = current_setting('airlock.tenant', true));
GRANT SELECT, INSERT, DELETE ON dashboard_users TO airlock_app;
GRANT UPDATE (password_hash, must_change_password) ON dashboard_users TO airlock_app;

CREATE TABLE dashboard_sessions (
    sha256       bytea  PRIMARY KEY CHECK (length(sha256) = 32),
    tenant       text   NOT NULL,
    username     text   NOT NULL,
    created_at   bigint NOT NULL,
    last_seen_at bigint NOT NULL,
    expires_at   bigint NOT NULL,
    revoked_at   bigint
);
CREATE INDEX dashboard_sessions_user ON dashboard_sessions (tenant, username);
ALTER TABLE dashboard_sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE dashboard_sessions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON dashboard_sessions
    USING (tenant = current_setting('airlock.tenant', true))
    WITH CHECK (tenant = current_setting('airlock.tenant', true));
GRANT SELECT, INSERT ON dashboard_sessions TO airlock_app;
GRANT UPDATE (last_seen_at, revoked_at) ON dashboard_sessions TO airlock_app;

-- As in 0001: policies for the owner role only (the migrating role, never
-- the app role: checked at connect), so the functions below can see the
-- one row across tenants. The app role gains nothing from them.
DO $$
BEGIN
    EXECUTE format('CREATE POLICY owner_lookup ON dashboard_users FOR SELECT TO %I USING (true)', current_user);
    EXECUTE format('CREATE POLICY owner_lookup ON dashboard_sessions FOR SELECT TO %I USING (true)', current_user);
    EXECUTE format('CREATE POLICY owner_update ON dashboard_sessions FOR UPDATE TO %I USING (true) WITH CHECK (true)', current_user);
END
$$;

CREATE FUNCTION airlock_user_by_name(n text) RETURNS SETOF dashboard_users
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT
    AS $$ SELECT * FROM dashboard_users WHERE username = n $$;
CREATE FUNCTION airlock_session_by_hash(h bytea) RETURNS SETOF dashboard_sessions
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT
    AS $$ SELECT * FROM dashboard_sessions WHERE sha256 = h $$;
CREATE FUNCTION airlock_session_touch(h bytea, now bigint) RETURNS void
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path FROM CURRENT
    AS $$ UPDATE dashboard_sessions SET last_seen_at = greatest(last_seen_at, now)
          WHERE sha256 = h AND revoked_at IS NULL $$;
CREATE FUNCTION airlock_session_revoke(h bytea, now bigint) RETURNS bigint
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path FROM CURRENT
    AS $$ WITH r AS (UPDATE dashboard_sessions SET revoked_at = now
                     WHERE sha256 = h AND revoked_at IS NULL RETURNING 1)
          SELECT count(*) FROM r $$;
REVOKE ALL ON FUNCTION airlock_user_by_name(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION airlock_session_by_hash(bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION airlock_session_touch(bytea, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION airlock_session_revoke(bytea, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION airlock_user_by_name(text) TO airlock_app;
GRANT EXECUTE ON FUNCTION airlock_session_by_hash(bytea) TO airlock_app;
GRANT EXECUTE ON FUNCTION airlock_session_touch(bytea, bigint) TO airlock_app;
GRANT EXECUTE ON FUNCTION airlock_session_revoke(bytea, bigint) TO airlock_app;
