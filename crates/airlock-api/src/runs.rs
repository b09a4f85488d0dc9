//! Runs started through the API: each is an `airlock_runtime::Run` on its
//! own thread (prepare → start → wait), its workspace a fresh directory,
//! its output discarded (the audit log records what it did), its end
//! written back to the control store.

use airlock_policy::EgressPolicy;
use airlock_runtime::settings::approvals::ApprovalsSettings;
use airlock_runtime::settings::gateway::GatewaySettings;
use airlock_runtime::{AuditSettings, SandboxSettings};
use airlock_sandbox::Signal;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

/// What every run on this node gets from the configuration.
#[derive(Debug, Clone)]
pub struct RunDefaults {
    /// The proxy's configuration.
    pub proxy: airlock_proxy::ProxyConfig,
    /// The sandbox.
    pub sandbox: SandboxSettings,
    /// The audit log's settings.
    pub audit: AuditSettings,
    /// The LLM gateway, if runs get one.
    pub gateway: Option<GatewaySettings>,
    /// Approvals.
    pub approvals: ApprovalsSettings,
    /// The policy of an agent with no active version (the configuration's).
    pub policy: EgressPolicy,
    /// Files a workspace may not contain (as in `airlock run`).
    pub protected: Vec<(String, PathBuf)>,
    /// The program the sandbox re-executes as its init (the `airlock` binary).
    pub init_exe: PathBuf,
    /// Where each run's workspace directory is made.
    pub workspace_root: PathBuf,
}

/// The runs this node is running, by id: how to signal each.
#[derive(Debug)]
pub(crate) struct Runs {
    pub(crate) defaults: RunDefaults,
    pub(crate) live: Mutex<HashMap<String, (tokio::sync::mpsc::Sender<Signal>, bool)>>,
}

impl Runs {
    pub(crate) fn new(defaults: RunDefaults) -> Runs {
        Runs {
            defaults,
            live: Mutex::new(HashMap::new()),
        }
    }

    /// Ask a running run to stop (SIGTERM). Whether it was running here.
    pub(crate) fn stop(&self, id: &str) -> bool {
        let Ok(mut live) = self.live.lock() else {
            return false;
        };
        match live.get_mut(id) {
            Some((tx, stopping)) => {
                *stopping = true;
                tx.try_send(Signal::SIGTERM).is_ok()
            }
            None => false,
        }
    }
}

/// Why a run could not start (the refusal is in the audit log).
#[derive(Debug)]
pub(crate) struct StartError(pub String);
