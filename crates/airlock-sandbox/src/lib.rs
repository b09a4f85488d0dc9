//! The sandbox boundary: `airlock run` executes an agent so that it can
//! reach nothing but the egress proxy.
//!
//! **What it enforces.** The agent runs in fresh user, mount, PID, IPC, UTS,
//! cgroup and network namespaces, as uid 1000 with every capability dropped,
//! no supplementary groups and `no_new_privs`, in a new root (`pivot_root`)
//! holding the host's system directories read-only, a read-write workspace,
//! tmpfs `/tmp` and home, a minimal `/dev`, a generated `/etc` and a fresh
//! `/proc`. On the host the agent is never root: when Airlock runs as root,
//! uid 1000 maps to an unprivileged host uid (`nobody` by default) and the
//! workspace is an id-mapped mount on which the workspace owner's files are
//! the agent's; otherwise it maps to the caller. The workspace is mounted
//! `nosuid,nodev`, opened without following symlinks, and must not be `/`, a
//! system or shared directory, a home, or hold Airlock's own files
//! ([`workspace::check`]); no file can be made setuid or setgid (seccomp).
//! The supervisor ends a run that adds more than its write limit to the
//! workspace's file system ([`WriteWatch`]), and agent output bound for a
//! terminal is made inert ([`terminal::TerminalFilter`]). Its network
//! namespace has only loopback; the proxy listener on `127.0.0.1:<port>` is
//! bound inside that namespace by the init and served by the supervisor, so
//! when the supervisor dies the agent has no network. Landlock limits file
//! access to the plan's grants and TCP `connect` to the proxy port, and
//! scopes abstract UNIX sockets and signals; a seccomp deny list
//! ([`seccomp::RULES`]) removes kernel attack surface; cgroups and rlimits
//! bound memory, tasks, CPU, file size and open files.
//!
//! **How.** [`SandboxPlan::build`] is pure; [`supervisor::start`]
//! re-executes `/proc/self/exe` as a single-threaded init (see
//! [`init_entry`]) that applies the plan step by step and refuses to run the
//! agent if any step fails, naming the control.
//!
//! **What it trusts.** The kernel (namespaces, Landlock, seccomp, cgroups are
//! only as strong as it is), the host's system directories it mounts
//! read-only, and the supervisor process.
//!
//! **What it does NOT guarantee.** It does not stop kernel exploits through
//! system calls that remain allowed, side channels, or denial of service
//! beyond the configured limits; it does not inspect what goes through the
//! proxy (that is the proxy's job) or hide the host's kernel version and CPU
//! information. This is the only Airlock crate allowed `unsafe`, fenced in
//! the `sys` module.

mod apply;
pub mod attest;
pub mod cgroup;
mod init;
pub mod plan;
pub mod proto;
pub mod seccomp;
pub mod supervisor;
mod sys;
pub mod terminal;
pub mod workspace;

pub use apply::ApplyError;
pub use attest::Attestation;
pub use init::{INIT_ENV, init_entry};
pub use nix::sys::signal::Signal;
pub use plan::{
    CgroupLimits, DEFAULT_HOST_ID, HostFacts, PlanError, PlanInput, SandboxPlan, StdinSource,
    Timeouts,
};
pub use supervisor::{
    Preflight, RunOutcome, Running, SandboxError, WriteWatch, preflight, signal, start,
};

/// The kernel's Landlock ABI (negative errno when unavailable).
pub fn landlock_abi() -> i32 {
    sys::landlock_abi()
}
