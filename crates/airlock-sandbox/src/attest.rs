//! What actually applied, as reported by the init and the supervisor. The
//! binary turns an [`Attestation`] into the `sandbox.attestation` audit event.

use crate::cgroup::CgroupReport;
use crate::plan::{Namespace, Rlimit};
use serde::{Deserialize, Serialize};

/// The Landlock state the init observed after `landlock_restrict_self`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LandlockReport {
    /// The kernel's ABI version (negative errno when unavailable).
    pub kernel_abi: i32,
    /// `fully_enforced`, or `skipped: <why>` under `--dangerously-allow-weaker-sandbox`.
    pub status: String,
    /// Number of filesystem rules added.
    pub fs_rules: usize,
    /// TCP ports `connect` may reach.
    pub connect_tcp: Vec<u16>,
    /// Scopes enforced (`abstract_unix_socket`, `signal`).
    pub scopes: Vec<String>,
}

/// The seccomp filters installed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeccompReport {
    /// SHA-256 of the installed programs, hex.
    pub digest: String,
    /// Entries in the deny list.
    pub rules: usize,
    /// BPF programs installed.
    pub programs: usize,
}

/// The capability sets read back after dropping (all empty when correct).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapsReport {
    pub effective: Vec<String>,
    pub permitted: Vec<String>,
    pub inheritable: Vec<String>,
    pub ambient: Vec<String>,
    pub bounding: Vec<String>,
}

/// What the init applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitAttestation {
    pub namespaces: Vec<Namespace>,
    /// `inside outside count` lines as written to uid_map / gid_map.
    pub uid_map: String,
    pub gid_map: String,
    /// Loopback up and the proxy listener's address inside.
    pub network: String,
    /// Number of filesystem steps executed.
    pub mount_steps: usize,
    pub rlimits: Vec<Rlimit>,
    pub no_new_privs: bool,
    pub landlock: LandlockReport,
    pub capabilities: CapsReport,
    pub seccomp: SeccompReport,
    /// Controls skipped under `--dangerously-allow-weaker-sandbox`.
    pub skipped: Vec<String>,
}

/// The whole attestation: the init's part plus the supervisor's (cgroups).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attestation {
    pub init: InitAttestation,
    pub cgroup: Option<CgroupReport>,
    /// Controls the supervisor skipped under `--dangerously-allow-weaker-sandbox`.
    pub skipped: Vec<String>,
}
