//! `[policy]` section. (Stub: filled in by the policy work.)

use super::{ConfigError, SourceFile};
use schemars::JsonSchema;
use serde::Deserialize;

/// Raw `[policy]` section.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {}

/// Validated `[policy]` settings.
#[derive(Debug, Clone, Default)]
pub struct PolicySettings {}

pub fn validate(_raw: &RawPolicy, _src: &SourceFile) -> Result<PolicySettings, ConfigError> {
    Ok(PolicySettings {})
}
