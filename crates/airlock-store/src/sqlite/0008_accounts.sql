-- Dashboard accounts (`airlock serve`): local users with Argon2id password
-- hashes (PHC strings) and their browser sessions. A username is unique
-- across the installation (the login form does not ask for a tenant) and
-- belongs to one tenant; `must_change_password` marks a one-time password
-- (`airlock serve --init-admin`) that must be replaced at first login. A session is stored only as the SHA-256 of its
-- cookie value; its end is `UPDATE … WHERE revoked_at IS NULL`, so it
-- happens once.
CREATE TABLE dashboard_users (
    username      TEXT    NOT NULL PRIMARY KEY,
    tenant        TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    admin         INTEGER NOT NULL CHECK (admin IN (0, 1)),
    must_change_password INTEGER NOT NULL CHECK (must_change_password IN (0, 1)),
    created_at    INTEGER NOT NULL
);
CREATE INDEX dashboard_users_tenant ON dashboard_users (tenant);

CREATE TABLE dashboard_sessions (
    sha256       BLOB    NOT NULL PRIMARY KEY CHECK (length(sha256) = 32),
    tenant       TEXT    NOT NULL,
    username     TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    revoked_at   INTEGER
);
CREATE INDEX dashboard_sessions_user ON dashboard_sessions (tenant, username);
