//! `[proxy]` section: validated by `airlock_runtime::settings::proxy`; this
//! module adds the policy a run's proxy enforces.

use super::ConfigError;
use airlock_proxy::ProxyConfig;
use std::path::Path;

pub use airlock_runtime::settings::proxy::RawProxy;

/// Validated `[proxy]` settings.
#[derive(Debug, Clone, Default)]
pub struct ProxySettings {
    /// The proxy library's configuration.
    pub proxy: ProxyConfig,
}

impl ProxySettings {
    /// The policy the proxy enforces: a `--policy FILE` replaces the
    /// configuration's `[policy]` section.
    pub fn policy(
        configured: &super::PolicySettings,
        file: Option<&Path>,
    ) -> Result<airlock_policy::EgressPolicy, ConfigError> {
        match file {
            Some(p) => Ok(super::policy::load_file(p)?.policy),
            None => Ok(configured.policy.clone()),
        }
    }
}
