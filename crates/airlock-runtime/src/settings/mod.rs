//! The run's configuration sections (`[sandbox]`, `[proxy]`, `[audit]`):
//! raw TOML types with `deny_unknown_fields` and spans, and their
//! validation into the types the run consumes. Errors are `airlock-policy`'s
//! located [`DocumentError`]s (`file:line:col: field: message`), so a
//! configuration file and an API body report alike. The raw types derive
//! `JsonSchema` behind the `schema` feature, for the configuration schema.

pub mod approvals;
pub mod audit;
pub mod gateway;
pub mod mcp;
pub mod oidc;
pub mod proxy;
pub mod sandbox;
pub mod serve;
pub mod store;

use airlock_policy::document::{DocumentError, SourceText};
use serde_spanned::Spanned;

/// Largest PEM bundle a setting names (`proxy.upstream_ca_file`); the whole
/// Mozilla root store is about 220 KiB.
pub const MAX_PEM_BYTES: usize = 1 << 20;

/// Check an optional integer against a range, defaulting when absent.
pub fn in_range(
    src: &SourceText<'_>,
    field: &str,
    v: Option<&Spanned<u64>>,
    min: u64,
    max: u64,
    default: u64,
) -> Result<u64, DocumentError> {
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
