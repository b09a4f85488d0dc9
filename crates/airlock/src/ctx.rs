//! Global options resolved into a context every command receives.

use crate::config::{self, Config};
use airlock_runtime::Home;
use airlock_types::TenantId;
use std::path::PathBuf;

/// Everything went fine.
pub const EXIT_OK: u8 = 0;
/// A check ran and failed (verification found tampering, a scan found secrets).
pub const EXIT_CHECK_FAILED: u8 = 1;
/// Usage or configuration error.
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, clap::Args)]
pub struct GlobalArgs {
    /// Data directory [default: $XDG_DATA_HOME/airlock or ~/.local/share/airlock].
    #[arg(long, global = true, env = "AIRLOCK_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Configuration file [default: <data-dir>/airlock.toml].
    #[arg(long, global = true, env = "AIRLOCK_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The tenant a command acts for (its log, vault, budgets, keys, runs) [default: default].
    #[arg(long, global = true, env = "AIRLOCK_TENANT", value_name = "NAME")]
    pub tenant: Option<String>,
    /// Use this control-plane API (token in AIRLOCK_TOKEN) instead of the data directory.
    #[arg(long, global = true, env = "AIRLOCK_SERVER", value_name = "URL")]
    pub server: Option<String>,
}

/// Resolved global context: the runtime's [`Home`] (data directory,
/// configuration file, the environment read once).
#[derive(Debug)]
pub struct Ctx {
    pub home: Home,
    pub tenant: Option<String>,
    pub server: Option<String>,
}

impl std::ops::Deref for Ctx {
    type Target = Home;
    fn deref(&self) -> &Home {
        &self.home
    }
}

impl Ctx {
    /// The tenant a command acts for: `--tenant` (`AIRLOCK_TENANT`), else the default.
    pub fn tenant_id(&self) -> anyhow::Result<TenantId> {
        let t = self.tenant.clone().map(TenantId::new).transpose();
        Ok(anyhow::Context::context(t, "--tenant")?.unwrap_or_else(TenantId::default_tenant))
    }

    pub fn resolve(g: GlobalArgs) -> anyhow::Result<Ctx> {
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let home = Home::resolve(g.data_dir, g.config, env)?;
        Ok(Ctx {
            home,
            tenant: g.tenant,
            server: g.server,
        })
    }

    /// Load and validate the configuration. A missing file at the default
    /// location means the built-in defaults; a missing file the user named is an
    /// error.
    pub fn load_config(&self) -> anyhow::Result<Config> {
        if !self.config_path.exists() && !self.config_explicit {
            return Ok(Config::builtin());
        }
        Ok(config::load(&self.config_path)?)
    }

    /// Load the configuration and, in production mode, refuse insecure settings.
    pub fn load_checked_config(&self) -> anyhow::Result<Config> {
        let cfg = self.load_config()?;
        if self.production {
            airlock_runtime::production::enforce(&self.home)?;
        }
        Ok(cfg)
    }

    /// The audit settings of the configuration, for the runtime.
    pub fn audit_settings(&self) -> Result<airlock_runtime::AuditSettings, String> {
        self.load_config()
            .map(|c| c.audit)
            .map_err(|e| format!("{e:#}"))
    }

    /// Open the CLI tenant's audit log.
    pub fn auditor(&self, cfg: &Config) -> anyhow::Result<airlock_runtime::audit::Auditor> {
        Ok(airlock_runtime::audit::open(
            &self.home,
            &self.tenant_id()?,
            &cfg.audit,
        )?)
    }
}
