-- Budgets shared by every replica: one row per (tenant, scope), reserved
-- and settled by single statements (see PgStore::budget_reserve), so two
-- replicas can never both take the same headroom.
CREATE TABLE budgets (
    tenant          text   NOT NULL,
    scope           text   NOT NULL,
    limit_micros    bigint NOT NULL CHECK (limit_micros >= 0),
    spent_micros    bigint NOT NULL DEFAULT 0 CHECK (spent_micros >= 0),
    reserved_micros bigint NOT NULL DEFAULT 0 CHECK (reserved_micros >= 0),
    PRIMARY KEY (tenant, scope)
);
ALTER TABLE budgets ENABLE ROW LEVEL SECURITY;
ALTER TABLE budgets FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON budgets
    USING (tenant = current_setting('airlock.tenant', true))
    WITH CHECK (tenant = current_setting('airlock.tenant', true));
GRANT SELECT, INSERT ON budgets TO airlock_app;
GRANT UPDATE (limit_micros, spent_micros, reserved_micros) ON budgets TO airlock_app;
