-- Reservations taken through the API, one row each, so each is settled once
-- (by its id) and releases exactly what it reserved. `org_too`: the org's
-- budget was reserved with it. Budgets here have no calendar period.
ALTER TABLE budgets ADD COLUMN period text NOT NULL DEFAULT 'total' CHECK (period = 'total');
CREATE TABLE budget_reservations (
    tenant     text    NOT NULL,
    id         bigint  GENERATED ALWAYS AS IDENTITY,
    scope      text    NOT NULL,
    micros     bigint  NOT NULL CHECK (micros >= 0),
    org_too    boolean NOT NULL,
    created_at bigint  NOT NULL,
    PRIMARY KEY (tenant, id),
    FOREIGN KEY (tenant, scope) REFERENCES budgets (tenant, scope)
);
ALTER TABLE budget_reservations ENABLE ROW LEVEL SECURITY;
ALTER TABLE budget_reservations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON budget_reservations
    USING (tenant = current_setting('airlock.tenant', true))
    WITH CHECK (tenant = current_setting('airlock.tenant', true));
GRANT SELECT, INSERT, DELETE ON budget_reservations TO airlock_app;
