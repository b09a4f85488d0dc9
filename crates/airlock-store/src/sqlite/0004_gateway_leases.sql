-- LLM gateway budget leases: headroom a gateway process reserved durably in
-- one chunk and draws its calls' reservations from without waiting for the
-- disk. `remaining` counts against every budget the lease's scopes fall
-- under, exactly like a pending call, so other processes never see it as
-- free. A draw (call row inserted + `remaining` lowered) is one transaction.
CREATE TABLE gateway_leases (
    id        INTEGER PRIMARY KEY,
    tenant    TEXT    NOT NULL,
    team      TEXT,
    agent     TEXT    NOT NULL,
    run       TEXT,
    vkey      TEXT,
    remaining INTEGER NOT NULL CHECK (remaining >= 0),
    created   INTEGER NOT NULL
);
CREATE INDEX gateway_leases_time ON gateway_leases (tenant, created);
