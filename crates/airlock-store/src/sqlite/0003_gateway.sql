-- LLM gateway: budgets, calls (reservation, settlement and idempotency in one
-- row) and virtual keys. Amounts are micro-USD (integers, so sums are exact).

-- One budget per (tenant, scope). scope: `org`, `team:NAME`, `agent:NAME`,
-- `run:ID` or `key:ID`; period: `day`, `month` or `total` (UTC windows).
CREATE TABLE gateway_budgets (
    tenant       TEXT    NOT NULL,
    scope        TEXT    NOT NULL,
    period       TEXT    NOT NULL CHECK (period IN ('day', 'month', 'total')),
    limit_micros INTEGER NOT NULL CHECK (limit_micros >= 0),
    PRIMARY KEY (tenant, scope)
) WITHOUT ROWID;

-- One row per provider call (all attempts of one idempotency key share it).
-- Its charge is `settled` once known, else the worst-case `reserved`.
CREATE TABLE gateway_calls (
    id           INTEGER PRIMARY KEY,
    tenant       TEXT    NOT NULL,
    idem_key     TEXT    NOT NULL,
    body_hash    TEXT    NOT NULL,
    team         TEXT,
    agent        TEXT    NOT NULL,
    run          TEXT,
    vkey         TEXT,
    reserved     INTEGER NOT NULL CHECK (reserved >= 0),
    settled      INTEGER CHECK (settled >= 0),
    state        TEXT    NOT NULL CHECK (state IN ('pending', 'done', 'failed')),
    status       INTEGER,
    content_type TEXT,
    response     BLOB,
    created      INTEGER NOT NULL,
    updated      INTEGER NOT NULL
);
CREATE INDEX gateway_calls_key ON gateway_calls (tenant, idem_key, created);
CREATE INDEX gateway_calls_time ON gateway_calls (tenant, created);

-- Virtual keys: only the SHA-256 of the key is stored.
CREATE TABLE gateway_keys (
    id       TEXT    NOT NULL PRIMARY KEY,
    tenant   TEXT    NOT NULL,
    sha256   TEXT    NOT NULL UNIQUE,
    agent    TEXT    NOT NULL,
    team     TEXT,
    created  INTEGER NOT NULL,
    revoked  INTEGER
) WITHOUT ROWID;
