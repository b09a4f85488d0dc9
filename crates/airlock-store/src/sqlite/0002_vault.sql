-- Vault: envelope-encrypted secrets. Names and bindings are stored in clear;
-- values only ever as AES-256-GCM ciphertext under the tenant's data key.
--
-- vault_master holds one row: how the master key is derived (Argon2id
-- parameters and salt, when it is a passphrase) and a check value sealed under
-- it, so a wrong key is a clear error rather than garbage.
CREATE TABLE vault_master (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    kdf     TEXT,
    check_v BLOB    NOT NULL
);

-- One data key per tenant, wrapped (sealed) by the master key. `version`
-- goes up each time the data key is replaced (`airlock secret reencrypt`).
CREATE TABLE vault_data_keys (
    tenant  TEXT    NOT NULL PRIMARY KEY,
    version INTEGER NOT NULL CHECK (version >= 1),
    wrapped BLOB    NOT NULL
) WITHOUT ROWID;

-- One row per secret. `sealed` is nonce || ciphertext || tag; the associated
-- data binds tenant, name, version and the data key version.
CREATE TABLE vault_secrets (
    tenant      TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    version     INTEGER NOT NULL CHECK (version >= 1),
    key_version INTEGER NOT NULL CHECK (key_version >= 1),
    binding     TEXT    NOT NULL,
    sealed      BLOB    NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
) WITHOUT ROWID;
