//! The MCP gateway's table: pinned tool definitions.

use crate::{DbError, SqliteStore, StoreError};
use airlock_types::TenantId;
use rusqlite::{OptionalExtension as _, params};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

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

/// The pins' change stamp: 16 bytes in a file beside the database
/// (`DB-mcp-pins`), overwritten with a new value after every pin this
/// crate writes, in any process. A reader that remembers a pin with the
/// stamp it read *before* reading the pin knows the pin is unchanged while
/// the stamp is: one `pread` instead of a database query. Only writes
/// through this crate move it (every pin write goes through
/// [`SqliteStore`]'s `write_pin`).
#[derive(Debug)]
pub struct PinStamp {
    file: std::fs::File,
    path: PathBuf,
}

/// The stamp's length: time (ns) since the epoch, the process id, and a
/// counter within the process (two writes never leave the same value).
const STAMP_LEN: usize = 16;

fn stamp_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-mcp-pins");
    PathBuf::from(p)
}

fn new_stamp() -> [u8; STAMP_LEN] {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut b = [0u8; STAMP_LEN];
    b[..8].copy_from_slice(&nanos.to_le_bytes());
    b[8..12].copy_from_slice(&std::process::id().to_le_bytes());
    b[12..].copy_from_slice(&SEQ.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    b
}

/// Open (creating, owner-only like the database) the stamp file.
fn open_stamp(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

impl PinStamp {
    /// The current stamp. A stamp file that holds none yet (a database
    /// whose pins were written before stamps existed) gets one first.
    pub fn read(&self) -> Result<[u8; STAMP_LEN], StoreError> {
        let err = |source| StoreError::PinStamp {
            path: self.path.clone(),
            source,
        };
        let mut b = [0u8; STAMP_LEN];
        match self.file.read_exact_at(&mut b, 0) {
            Ok(()) => Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                // Written before the caller reads any pin: a writer that
                // commits meanwhile moves the stamp after its commit.
                let b = new_stamp();
                self.file.write_all_at(&b, 0).map_err(err)?;
                Ok(b)
            }
            Err(e) => Err(err(e)),
        }
    }
}

impl SqliteStore {
    /// The pins' change stamp of this database (the file is created if
    /// missing).
    pub fn mcp_pin_stamp(&self) -> Result<PinStamp, StoreError> {
        let path = stamp_path(self.path());
        let file = open_stamp(&path).map_err(|source| StoreError::PinStamp {
            path: path.clone(),
            source,
        })?;
        Ok(PinStamp { file, path })
    }

    /// Move the pins' change stamp (after a pin write committed).
    fn mcp_move_stamp(&self) -> Result<(), StoreError> {
        let stamp = self.mcp_pin_stamp()?;
        stamp
            .file
            .write_all_at(&new_stamp(), 0)
            .map_err(|source| StoreError::PinStamp {
                path: stamp.path.clone(),
                source,
            })
    }

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
    /// clause, never input). Returns the rows changed. A change moves the
    /// pins' change stamp once it is committed (an error then says the pin
    /// was stored but running gateways may not see it until theirs expire).
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
        let changed = self
            .conn_mut()
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
            })?;
        if changed > 0 {
            self.mcp_move_stamp()?;
        }
        Ok(changed)
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

    /// A first-use pin of `fs.read`.
    fn fs_read_pin() -> ToolPin {
        ToolPin {
            server: "fs".into(),
            tool: "read".into(),
            sha256: "aa".into(),
            definition: "{}".into(),
            pinned_by: "tofu".into(),
            pinned_at: 1,
        }
    }

    #[test]
    fn pins_are_per_tenant_and_first_use_does_not_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SqliteStore::open(&dir.path().join("a.db")).unwrap();
        let t = TenantId::new("t1").unwrap();
        let pin = fs_read_pin();
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

    #[test]
    fn the_change_stamp_moves_on_every_pin_write_from_any_connection_and_only_then() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.db");
        let reader = SqliteStore::open(&db).unwrap();
        let stamp = reader.mcp_pin_stamp().unwrap();
        let s0 = stamp.read().unwrap();
        assert_eq!(stamp.read().unwrap(), s0);
        let mut writer = SqliteStore::open(&db).unwrap();
        let t = TenantId::new("t1").unwrap();
        let pin = fs_read_pin();
        assert!(writer.mcp_pin_if_absent(&t, &pin).unwrap());
        let s1 = stamp.read().unwrap();
        assert_ne!(s1, s0);
        // Nothing changed: the stamp stays.
        assert!(!writer.mcp_pin_if_absent(&t, &pin).unwrap());
        assert_eq!(stamp.read().unwrap(), s1);
        // Two re-pins in a row move it twice.
        writer.mcp_set_pin(&t, &pin).unwrap();
        let s2 = stamp.read().unwrap();
        writer.mcp_set_pin(&t, &pin).unwrap();
        assert!(s2 != s1 && stamp.read().unwrap() != s2);
    }
}
