//! A configuration source with line/column lookup for error messages.

use serde::de::DeserializeOwned;
use serde_spanned::Spanned;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Largest configuration or policy file read (`--config`, `--policy`).
pub const MAX_CONFIG_BYTES: usize = 1 << 20;
/// Largest PEM bundle a setting names (`proxy.upstream_ca_file`); the whole
/// Mozilla root store is about 220 KiB.
pub const MAX_PEM_BYTES: usize = 1 << 20;

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

    /// Phase one: parse into raw types. Syntax errors, unknown fields and
    /// wrong types come back located.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        toml::from_str::<T>(&self.text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let field = self.field_at(span.start);
            self.error(span, &field, e.message().trim())
        })
    }

    /// A located error for `field` at byte range `span`.
    pub fn error(
        &self,
        span: Range<usize>,
        field: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, col) = self.line_col(span.start);
        ConfigError::Invalid {
            file: self.name.clone(),
            line,
            col,
            field: if field.is_empty() {
                "(top level)".into()
            } else {
                field.to_owned()
            },
            message: message.into(),
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let col = before
            .get(line_start..)
            .map(|s| s.chars().count())
            .unwrap_or(0)
            + 1;
        (line, col)
    }

    /// Best-effort dotted path of the key at a byte offset: the enclosing
    /// `[table]` header plus the key on that line. Used only for messages.
    fn field_at(&self, offset: usize) -> String {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or("");
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let line_end = self.text[line_start..]
            .find('\n')
            .map(|i| line_start + i)
            .unwrap_or(self.text.len());
        let line = self.text[line_start..line_end].trim();
        let header_of = |l: &str| -> Option<String> {
            let l = l.trim();
            let inner = l
                .strip_prefix("[[")
                .and_then(|r| r.split("]]").next())
                .or_else(|| l.strip_prefix('[').and_then(|r| r.split(']').next()))?;
            Some(inner.trim().to_owned())
        };
        if let Some(h) = header_of(line) {
            return h;
        }
        let key = line
            .split('=')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"')
            .to_owned();
        let table = self.text[..line_start]
            .lines()
            .rev()
            .find_map(|l| {
                if l.trim_start().starts_with('[') {
                    header_of(l)
                } else {
                    None
                }
            })
            .unwrap_or_default();
        match (table.is_empty(), key.is_empty()) {
            (true, _) => key,
            (false, true) => table,
            (false, false) => format!("{table}.{key}"),
        }
    }
}

/// Check an optional integer against a range, defaulting when absent.
pub fn in_range(
    src: &SourceFile,
    field: &str,
    v: Option<&Spanned<u64>>,
    min: u64,
    max: u64,
    default: u64,
) -> Result<u64, ConfigError> {
    match v {
        None => Ok(default),
        Some(s) if (min..=max).contains(s.get_ref()) => Ok(*s.get_ref()),
        Some(s) => Err(src.error(
            s.span(),
            field,
            format!("must be between {min} and {max}, got {}", s.get_ref()),
        )),
    }
}
