//! `[proxy]` section. (Stub: filled in by the proxy work.)

use super::{ConfigError, SourceFile};
use schemars::JsonSchema;
use serde::Deserialize;

/// Raw `[proxy]` section.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {}

/// Validated `[proxy]` settings.
#[derive(Debug, Clone, Default)]
pub struct ProxySettings {}

pub fn validate(_raw: &RawProxy, _src: &SourceFile) -> Result<ProxySettings, ConfigError> {
    Ok(ProxySettings {})
}
