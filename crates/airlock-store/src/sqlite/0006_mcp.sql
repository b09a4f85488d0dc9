-- MCP gateway: pinned tool definitions. A tool (server + tool name) is
-- usable only while the SHA-256 of its definition's RFC 8785 canonical JSON
-- (name, description, inputSchema) equals the pinned one. `pinned_by` is
-- who pinned it (`tofu` for trust on first use, or the operator).
CREATE TABLE mcp_tool_pins (
    tenant     TEXT    NOT NULL,
    server     TEXT    NOT NULL,
    tool       TEXT    NOT NULL,
    sha256     TEXT    NOT NULL,
    definition TEXT    NOT NULL,
    pinned_by  TEXT    NOT NULL,
    pinned_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant, server, tool)
);
