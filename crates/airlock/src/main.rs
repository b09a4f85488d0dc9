//! The `airlock` binary: a thin CLI that resolves configuration, opens the
//! audit log and wires Airlock's boundary crates together. Library crates
//! return typed errors; this crate adds context (`anyhow`) and maps outcomes
//! to exit codes: 0 ok, 1 a check failed, 2 usage or configuration error.
#![forbid(unsafe_code)]

mod auditing;
mod cli;
mod cmd;
mod config;
mod ctx;
mod production;

use std::process::ExitCode;

fn main() -> ExitCode {
    // The sandbox re-executes this binary as its single-threaded init: that
    // must happen before clap, any runtime or any thread starts.
    if let Some(code) = airlock_sandbox::init_entry() {
        return code;
    }
    let cli = cli::parse();
    match cli::dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("airlock: error: {err:#}");
            ExitCode::from(ctx::EXIT_USAGE)
        }
    }
}
