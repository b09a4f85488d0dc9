//! The MCP gateway's table: pinned tool definitions.

use crate::{DbError, SqliteStore, StoreError};
use airlock_types::TenantId;
use rusqlite::{OptionalExtension as _, params};

/// A pinned tool definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolPin {
    /// The configured server's name.
    pub server: String,
    /// The tool's own name on that server.
    pub tool: String,
    /// SHA-256 (lower-case hex) of the definition's canonical JSON.
    pub sha256: String,
    /// The canonical definition that was pinned.
    pub definition: String,
    /// Who pinned it (`tofu`, or the operator).
    pub pinned_by: String,
    /// When, microseconds since the epoch.
    pub pinned_at: i64,
}

impl SqliteStore {
    fn mcp_err(&self, what: &'static str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Mcp {
            path: self.path().to_owned(),
            what,
            source: DbError::sqlite(source),
        }
    }

    /// The pin of one tool, if any.
    pub fn mcp_pin(
        &self,
        tenant: &TenantId,
        server: &str,
        tool: &str,
    ) -> Result<Option<ToolPin>, StoreError> {
        // Read on every tool call: the statement is prepared once.
        self.conn()
            .prepare_cached(
                "SELECT server, tool, sha256, definition, pinned_by, pinned_at FROM mcp_tool_pins
                 WHERE tenant = ?1 AND server = ?2 AND tool = ?3",
            )
            .and_then(|mut st| {
                st.query_row(params![tenant.as_str(), server, tool], row_pin)
                    .optional()
            })
            .map_err(self.mcp_err("pin read"))
    }

    /// Every pin of the tenant, by server and tool.
    pub fn mcp_pins(&self, tenant: &TenantId) -> Result<Vec<ToolPin>, StoreError> {
        let err = self.mcp_err("pin list");
        let mut st = self
            .conn()
            .prepare(
                "SELECT server, tool, sha256, definition, pinned_by, pinned_at FROM mcp_tool_pins
                 WHERE tenant = ?1 ORDER BY server, tool",
            )
            .map_err(&err)?;
        let rows = st
            .query_map(params![tenant.as_str()], row_pin)
            .map_err(&err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(err)
    }

    /// Pin (or re-pin) a tool's definition.
    pub fn mcp_set_pin(&mut self, tenant: &TenantId, pin: &ToolPin) -> Result<(), StoreError> {
        self.write_pin(
            tenant,
            pin,
            "DO UPDATE SET sha256 = excluded.sha256, definition = excluded.definition,
               pinned_by = excluded.pinned_by, pinned_at = excluded.pinned_at",
        )
        .map(|_| ())
    }

    /// Pin a tool only if it has no pin yet (trust on first use); returns
    /// whether this call pinned it.
    pub fn mcp_pin_if_absent(
        &mut self,
        tenant: &TenantId,
        pin: &ToolPin,
    ) -> Result<bool, StoreError> {
        self.write_pin(tenant, pin, "DO NOTHING").map(|n| n == 1)
    }

    /// Insert `pin`; on an existing pin of the tool, `on_conflict` (a fixed
    /// clause, never input). Returns the rows changed.
    fn write_pin(
        &mut self,
        tenant: &TenantId,
        pin: &ToolPin,
        on_conflict: &'static str,
    ) -> Result<usize, StoreError> {
        self.writable()?;
        let path = self.path().to_owned();
        let sql = format!(
            "INSERT INTO mcp_tool_pins (tenant, server, tool, sha256, definition, pinned_by, pinned_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (tenant, server, tool) {on_conflict}"
        );
        self.conn_mut()
            .execute(
                &sql,
                params![
                    tenant.as_str(),
                    pin.server,
                    pin.tool,
                    pin.sha256,
                    pin.definition,
                    pin.pinned_by,
                    pin.pinned_at
                ],
            )
            .map_err(|source| StoreError::Mcp {
                path,
                what: "pin write",
                source: DbError::sqlite(source),
            })
    }
}

fn row_pin(r: &rusqlite::Row<'_>) -> rusqlite::Result<ToolPin> {
    Ok(ToolPin {
        server: r.get(0)?,
        tool: r.get(1)?,
        sha256: r.get(2)?,
        definition: r.get(3)?,
        pinned_by: r.get(4)?,
        pinned_at: r.get(5)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_per_tenant_and_first_use_does_not_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SqliteStore::open(&dir.path().join("a.db")).unwrap();
        let t = TenantId::new("t1").unwrap();
        let pin = ToolPin {
            server: "fs".into(),
            tool: "read".into(),
            sha256: "aa".into(),
            definition: "{}".into(),
            pinned_by: "tofu".into(),
            pinned_at: 1,
        };
        assert!(s.mcp_pin_if_absent(&t, &pin).unwrap());
        let other = ToolPin {
            sha256: "bb".into(),
            ..pin.clone()
        };
        assert!(!s.mcp_pin_if_absent(&t, &other).unwrap());
        assert_eq!(s.mcp_pin(&t, "fs", "read").unwrap(), Some(pin));
        s.mcp_set_pin(&t, &other).unwrap();
        assert_eq!(s.mcp_pin(&t, "fs", "read").unwrap().unwrap().sha256, "bb");
        let t2 = TenantId::new("t2").unwrap();
        assert_eq!(s.mcp_pin(&t2, "fs", "read").unwrap(), None);
        assert_eq!(s.mcp_pins(&t).unwrap().len(), 1);
    }
}
