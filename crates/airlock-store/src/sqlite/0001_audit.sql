-- Audit log: one append-only chain of records per tenant, plus the signed
-- checkpoints over it. Rows are only ever inserted; the triggers below make
-- SQLite refuse UPDATE and DELETE (an attacker with file access can drop them,
-- which `airlock audit verify` detects through the hashes and checkpoints).
CREATE TABLE audit_records (
    tenant TEXT    NOT NULL,
    idx    INTEGER NOT NULL CHECK (idx >= 0),
    body   BLOB    NOT NULL,
    chain  BLOB    NOT NULL CHECK (length(chain) = 32),
    PRIMARY KEY (tenant, idx)
) WITHOUT ROWID;

CREATE TABLE audit_checkpoints (
    tenant    TEXT    NOT NULL,
    seq       INTEGER NOT NULL CHECK (seq >= 0),
    tree_size INTEGER NOT NULL CHECK (tree_size >= 0),
    body      TEXT    NOT NULL,
    PRIMARY KEY (tenant, seq)
) WITHOUT ROWID;

CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
BEGIN SELECT RAISE(ABORT, 'audit_records is append-only'); END;
CREATE TRIGGER audit_records_no_delete BEFORE DELETE ON audit_records
BEGIN SELECT RAISE(ABORT, 'audit_records is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
