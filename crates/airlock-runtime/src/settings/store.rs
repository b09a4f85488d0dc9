//! `[store]` section: where the control plane's and the audit log's records
//! live. Absent: the embedded SQLite database in the data directory.
//! `database_url = "postgres://…"` (or `AIRLOCK_DATABASE_URL`, which wins):
//! PostgreSQL, served as a role that cannot bypass row-level security; the
//! schema is migrated separately, as the owner role, by `airlock db migrate`.

use super::MAX_PEM_BYTES;
use airlock_policy::document::{DocumentError, SourceText};
use airlock_store::{PgConnectOptions, PgStore, StoreError};
use airlock_types::Secret;
use serde::Deserialize;
use serde_spanned::Spanned;
use std::path::PathBuf;

/// The environment variable that names the database (over `[store] database_url`).
pub const DATABASE_URL_ENV: &str = "AIRLOCK_DATABASE_URL";

/// Raw `[store]` section.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?sslmode=disable|prefer|require]`:
    /// serve from PostgreSQL as USER, a member of `airlock_app` that owns no
    /// table and is no superuser. A database off loopback needs
    /// `sslmode=require`. Default: the embedded SQLite database.
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub database_url: Option<Spanned<String>>,
    /// An extra CA certificate (PEM) for the database's TLS certificate,
    /// trusted besides the Mozilla roots.
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub ca_file: Option<Spanned<String>>,
}

/// The validated `[store]` section.
#[derive(Debug, Default)]
pub struct StoreSettings {
    /// The PostgreSQL URL from the file, if any (it may hold a password).
    pub database_url: Option<Secret<String>>,
    /// The extra CA certificate file.
    pub ca_file: Option<PathBuf>,
}

impl Clone for StoreSettings {
    fn clone(&self) -> Self {
        StoreSettings {
            database_url: self.database_url.as_ref().map(Secret::duplicate),
            ca_file: self.ca_file.clone(),
        }
    }
}

/// Validate `[store]`: the URL must be a PostgreSQL URL that parses.
pub fn validate(raw: &RawStore, src: &SourceText<'_>) -> Result<StoreSettings, DocumentError> {
    let database_url = match &raw.database_url {
        None => None,
        Some(u) => {
            let text = u.get_ref();
            if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
                return Err(src.error(u.span(), "store.database_url", "must be a postgres:// URL"));
            }
            if let Err(e) = PgConnectOptions::new(text, None) {
                return Err(src.error(u.span(), "store.database_url", e.to_string()));
            }
            Some(Secret::new(text.clone()))
        }
    };
    let ca_file = match &raw.ca_file {
        Some(f) if f.get_ref().is_empty() => {
            return Err(src.error(f.span(), "store.ca_file", "must not be empty"));
        }
        Some(f) => Some(PathBuf::from(f.get_ref())),
        None => None,
    };
    Ok(StoreSettings {
        database_url,
        ca_file,
    })
}

/// Opening the PostgreSQL store failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenStoreError {
    /// The CA file could not be read.
    #[error("{}: cannot read store.ca_file: {source}", path.display())]
    CaFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Connecting, the role check or the schema check failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl StoreSettings {
    /// The database URL in force: `AIRLOCK_DATABASE_URL` when set, else the file's.
    pub fn effective_url(&self) -> Option<Secret<String>> {
        match std::env::var(DATABASE_URL_ENV) {
            Ok(u) if !u.is_empty() => Some(Secret::new(u)),
            _ => self.database_url.as_ref().map(Secret::duplicate),
        }
    }

    /// Connection options for `url` with this section's CA file.
    pub fn connect_options(&self, url: &str) -> Result<PgConnectOptions, OpenStoreError> {
        let ca = match &self.ca_file {
            Some(path) => Some(airlock_store::read_limited(path, MAX_PEM_BYTES).map_err(
                |source| OpenStoreError::CaFile {
                    path: path.clone(),
                    source,
                },
            )?),
            None => None,
        };
        Ok(PgConnectOptions::new(url, ca.as_deref())?)
    }

    /// Open the PostgreSQL store when one is configured (`None`: use the
    /// embedded SQLite database). Call from a plain thread or
    /// `spawn_blocking`, never on an async worker thread.
    pub fn open_pg(&self) -> Result<Option<PgStore>, OpenStoreError> {
        let Some(url) = self.effective_url() else {
            return Ok(None);
        };
        let opts = self.connect_options(url.expose())?;
        Ok(Some(PgStore::connect(&opts)?))
    }

    /// `airlock db migrate`: bring the schema up to date, connected as the
    /// owner role with `admin_url`. Returns the versions applied.
    pub fn migrate_pg(&self, admin_url: &str) -> Result<Vec<u32>, OpenStoreError> {
        Ok(airlock_store::pg_migrate(
            &self.connect_options(admin_url)?,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_policy::document::SourceText;

    fn parse(text: &str) -> Result<StoreSettings, String> {
        #[derive(Deserialize)]
        struct Doc {
            store: RawStore,
        }
        let doc: Doc = toml::from_str(text).map_err(|e| e.to_string())?;
        let src = SourceText::new("airlock.toml", text);
        validate(&doc.store, &src).map_err(|e| e.to_string())
    }

    #[test]
    fn database_url_is_checked_and_never_printed() {
        let s = parse("[store]\ndatabase_url = \"postgres://app:hunter2@127.0.0.1/airlock\"\n")
            .expect("valid");
        assert_eq!(
            s.database_url.as_ref().map(|u| u.expose().as_str()),
            Some("postgres://app:hunter2@127.0.0.1/airlock")
        );
        assert!(!format!("{s:?}").contains("hunter2"));
        let e = parse("[store]\ndatabase_url = \"mysql://x@h/db\"\n").expect_err("scheme");
        assert_eq!(
            e,
            "airlock.toml:2:16: store.database_url: must be a postgres:// URL"
        );
        let e = parse("[store]\ndatabase_url = \"postgres://app:hunter2@db.example.com/a\"\n")
            .expect_err("remote without TLS");
        assert!(
            e.starts_with("airlock.toml:2:16: store.database_url: "),
            "{e}"
        );
        assert!(
            e.contains("sslmode=require") && !e.contains("hunter2"),
            "{e}"
        );
        parse("[store]\ndatabase_url = \"postgres://app@db.example.com/a?sslmode=require\"\n")
            .expect("remote with TLS");
        let e = parse("[store]\nurl = \"x\"\n").expect_err("unknown field");
        assert!(e.contains("unknown field"), "{e}");
        assert!(parse("[store]\n").expect("empty").database_url.is_none());
    }
}
