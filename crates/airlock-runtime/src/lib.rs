//! Airlock's run machinery, shared by every front end (the `airlock` CLI
//! now; the control-plane server and sandboxed MCP tool servers next).
//!
//! **What it does.** [`Home`] is a data directory and the environment a
//! front end captured; [`init`] sets it up, [`audit`] opens its
//! tamper-evident log for one tenant, [`master_key`] finds and unlocks the
//! vault's key, [`production`] refuses insecure settings, [`settings`]
//! validates the run's configuration sections, and [`standalone`] serves
//! the egress proxy on its own. A [`Run`] is one
//! sandboxed command: it grants handles for the named secrets, starts an
//! egress proxy with the run's hooks (the credentials hook plus any the
//! caller adds), plans and starts the sandbox, supervises it (wall and idle
//! timeouts, the write limit, signals, scrubbed output) and records its
//! start, attestation and end, every event stamped with the run's
//! [`RunContext`](airlock_types::RunContext).
//!
//! **Many runs per process.** Nothing here reads or changes process-global
//! state on the run path: the environment is the map in [`Home`], output
//! goes to the writers the caller passes, each run has its own async
//! runtime, audit log handle and proxy, and signals reach a run only through
//! its own channel ([`Started::signals`]), or from the process's signal
//! handlers when the caller asks for that ([`RunIo::forward_process_signals`],
//! the CLI).
//!
//! **What it trusts.** The front end: it authenticated whoever asked for
//! the run and chose the tenant, agent and policy. The boundary crates do
//! the enforcing; this crate only wires them and fails closed: a step that
//! cannot be done (or audited) refuses the run, recorded as
//! `sandbox.refused` where the log is open.
//!
//! **What it does not guarantee.** Output scrubbing is defence in depth (a
//! secret split across a pause in output is not masked; see [`Run`]). The
//! terminal prompt for a passphrase is the front end's: callers pass it in.
#![forbid(unsafe_code)]

pub mod approvals;
pub mod audit;
mod error;
pub mod gateway;
mod home;
pub mod init;
pub mod listed;
pub mod master_key;
pub mod mcp;
pub mod production;
mod run;
pub mod settings;
pub mod standalone;
mod supervise;

pub use error::RuntimeError;
pub use home::Home;
pub use run::{
    AuditSettings, Ended, EndedBy, Prepared, Run, RunIo, RunSpec, SandboxSettings, Started,
    new_run_id,
};
pub use supervise::Notice;
