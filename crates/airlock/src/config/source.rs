//! A configuration source with line/column lookup for error messages.

use airlock_policy::document::{DocumentError, SourceText};
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// Largest configuration or policy file read (`--config`, `--policy`).
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// A configuration error. Displays as one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read configuration: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}:{line}:{col}: {field}: {message}")]
    Invalid {
        file: String,
        line: usize,
        col: usize,
        field: String,
        message: String,
    },
}

/// Locations come from `airlock-policy`'s [`SourceText`], so a policy error
/// and a configuration error read alike.
impl From<DocumentError> for ConfigError {
    fn from(e: DocumentError) -> ConfigError {
        ConfigError::Invalid {
            file: e.source_name,
            line: e.line,
            col: e.col,
            field: e.field,
            message: e.message,
        }
    }
}

/// The text of a configuration file and the name to report it by.
#[derive(Debug, Clone)]
pub struct SourceFile {
    name: String,
    text: String,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: String) -> Self {
        SourceFile {
            name: name.into(),
            text,
        }
    }

    /// Read a configuration or policy file: a regular file of at most
    /// [`MAX_CONFIG_BYTES`] of UTF-8 (`/dev/zero`, a FIFO or a huge file is
    /// refused at once, naming the file).
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let err = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let bytes = airlock_store::read_limited(path, MAX_CONFIG_BYTES).map_err(err)?;
        let text = String::from_utf8(bytes).map_err(|e| {
            err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not UTF-8 text ({})", e.utf8_error()),
            ))
        })?;
        Ok(SourceFile::new(path.display().to_string(), text))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The text with line/column lookup, for `airlock-policy` and `airlock-runtime` validators.
    pub fn located(&self) -> SourceText<'_> {
        SourceText::new(&self.name, &self.text)
    }

    /// Phase one: parse into raw types. Syntax errors, unknown fields and
    /// wrong types come back located.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        Ok(self.located().deserialize()?)
    }
}
