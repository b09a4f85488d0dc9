//! `[sandbox]` section. (Stub: filled in by the sandbox work.)

use super::{ConfigError, SourceFile};
use schemars::JsonSchema;
use serde::Deserialize;

/// Raw `[sandbox]` section.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSandbox {}

/// Validated `[sandbox]` settings.
#[derive(Debug, Clone, Default)]
pub struct SandboxSettings {}

pub fn validate(_raw: &RawSandbox, _src: &SourceFile) -> Result<SandboxSettings, ConfigError> {
    Ok(SandboxSettings {})
}
