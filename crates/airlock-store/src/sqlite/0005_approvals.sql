-- Approvals: one row per proposed call, bound to its run and to the SHA-256
-- of its canonical form. Every state change is one UPDATE guarded by the
-- state it leaves (pending -> approved|denied|expired, approved -> consumed),
-- so a decision or a use happens at most once across threads and processes.
CREATE TABLE approvals (
    tenant         TEXT    NOT NULL,
    id             TEXT    NOT NULL,
    run            TEXT    NOT NULL,
    agent          TEXT,
    subject        TEXT    NOT NULL,
    sha256         TEXT    NOT NULL,
    policy_version TEXT    NOT NULL,
    reason         TEXT    NOT NULL,
    taint          TEXT    NOT NULL,
    state          TEXT    NOT NULL
        CHECK (state IN ('pending', 'approved', 'denied', 'expired', 'consumed')),
    created        INTEGER NOT NULL,
    expires        INTEGER NOT NULL,
    decided_by     TEXT,
    decided_at     INTEGER,
    note           TEXT,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX approvals_state ON approvals (tenant, state, created);

-- A run's taint labels (the lethal-trifecta guard): the first source that
-- set each label and when.
CREATE TABLE run_taint (
    tenant TEXT    NOT NULL,
    run    TEXT    NOT NULL,
    label  TEXT    NOT NULL,
    source TEXT    NOT NULL,
    at     INTEGER NOT NULL,
    PRIMARY KEY (tenant, run, label)
);
