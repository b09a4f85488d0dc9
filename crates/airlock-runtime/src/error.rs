//! The runtime's error type: one variant per failing operation.

use std::path::PathBuf;

/// A runtime operation failed. Displays as one line naming the file or the
/// step; never contains a secret value.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A file or directory operation failed.
    #[error("{}: {what}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What could not be done (`cannot create data directory`).
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The data directory has no database: it was never initialized.
    #[error("{}: no Airlock database here; run `airlock init` first (or pass --data-dir)", .0.display())]
    NotInitialized(PathBuf),
    /// The data directory's contents are inconsistent or unusable.
    #[error("{0}")]
    DataDir(String),
    /// The audit log failed.
    #[error(transparent)]
    Audit(#[from] airlock_audit::AuditError),
    /// An event could not be recorded durably.
    #[error("cannot record audit event {action}")]
    Record {
        /// The event's action.
        action: String,
        /// Why.
        source: airlock_audit::AuditError,
    },
    /// The audit log could not be closed (its final checkpoint).
    #[error("cannot close the audit log")]
    Close(#[source] airlock_audit::AuditError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] airlock_store::StoreError),
    /// The vault failed.
    #[error(transparent)]
    Vault(#[from] airlock_vault::VaultError),
    /// The front end's passphrase prompt failed.
    #[error("{0}")]
    Prompt(String),
    /// Production mode refuses to start.
    #[error("production mode refuses to start: {0}")]
    Production(String),
    /// A check refused the run; the refusal was recorded as `sandbox.refused`.
    #[error("refusing to run: {0}")]
    Refused(String),
    /// A check refused the run and the refusal could not be recorded.
    #[error("{message}")]
    RefusedUnrecorded {
        /// What was refused.
        message: String,
        /// Why it could not be recorded.
        source: Box<RuntimeError>,
    },
    /// The run started but its start could not be recorded; it was killed.
    #[error("refusing to run: the audit log cannot record the run")]
    StartUnrecorded(#[source] Box<RuntimeError>),
    /// A supervising step failed (the async runtime, adopting a pipe).
    #[error("{what}")]
    Supervise {
        /// What could not be done.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The sandbox failed while the run was supervised.
    #[error(transparent)]
    Sandbox(#[from] airlock_sandbox::SandboxError),
    /// The egress proxy could not start.
    #[error("cannot start the egress proxy")]
    Proxy(#[source] airlock_proxy::ProxyError),
    /// The standalone proxy could not listen.
    #[error("cannot listen on {addr}")]
    Listen {
        /// Where.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The standalone proxy failed while serving.
    #[error("egress proxy failed")]
    Serve(#[source] airlock_proxy::ProxyError),
    /// The hooks could not be added to the proxy.
    #[error("cannot add the run's hooks to the egress proxy")]
    Hook(#[source] airlock_proxy::ProxyError),
    /// The output scrubber for the run's secrets could not be built.
    #[error("cannot build the output scrubber for the run's secrets")]
    Scrubber(#[source] airlock_scrub::ScrubError),
    /// An argument was not acceptable (the message says which and why).
    #[error("{0}")]
    Invalid(String),
    /// The LLM gateway could not be built.
    #[error("cannot start the LLM gateway")]
    Gateway(#[source] airlock_gateway::GatewayError),
    /// A provider's key could not be read from the vault.
    #[error("gateway.providers.{provider}: vault secret {secret}")]
    ProviderKey {
        /// The provider's name.
        provider: String,
        /// The vault secret's name.
        secret: String,
        /// Why.
        source: airlock_vault::VaultError,
    },
    /// The LLM gateway's listener failed while serving.
    #[error("LLM gateway failed")]
    GatewayServe(#[source] std::io::Error),
    /// The attestation could not be encoded.
    #[error("cannot encode the attestation")]
    Attestation(#[source] serde_json::Error),
}

impl RuntimeError {
    /// The error and its causes on one line, `a: b: c` (as `anyhow`'s `{:#}`).
    pub fn chain(&self) -> String {
        let mut msg = self.to_string();
        let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(self);
        while let Some(c) = cur {
            msg.push_str(": ");
            msg.push_str(&c.to_string());
            cur = c.source();
        }
        msg
    }

    pub(crate) fn io(path: &std::path::Path, what: &'static str, source: std::io::Error) -> Self {
        RuntimeError::Io {
            path: path.to_owned(),
            what,
            source,
        }
    }
}
