//! `[audit]`: checkpoint cadence of the audit log.

use super::in_range;
use airlock_policy::document::{DocumentError, SourceText};
use serde::Deserialize;
use serde_spanned::Spanned;
use std::time::Duration;

/// Raw `[audit]` section.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// Write a signed checkpoint after this many records (default 1000).
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<u64>", range(min = 1, max = 1_000_000))
    )]
    pub checkpoint_every: Option<Spanned<u64>>,
    /// Write a signed checkpoint at least this often, in seconds, while records arrive (default 10).
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<u64>", range(min = 1, max = 86_400))
    )]
    pub checkpoint_interval_secs: Option<Spanned<u64>>,
}

use crate::AuditSettings;

pub fn validate(raw: &RawAudit, src: &SourceText<'_>) -> Result<AuditSettings, DocumentError> {
    let every = in_range(
        src,
        "audit.checkpoint_every",
        raw.checkpoint_every.as_ref(),
        1,
        1_000_000,
        1000,
    )?;
    let secs = in_range(
        src,
        "audit.checkpoint_interval_secs",
        raw.checkpoint_interval_secs.as_ref(),
        1,
        86_400,
        10,
    )?;
    Ok(AuditSettings {
        checkpoint_every: every,
        checkpoint_interval: Duration::from_secs(secs),
        store: Default::default(),
    })
}
