//! The `airlock` binary: a thin CLI that resolves configuration, opens the
//! audit log and wires Airlock's boundary crates together. Library crates
//! return typed errors; this crate adds context (`anyhow`) and maps outcomes
//! to exit codes: 0 ok, 1 a check failed, 2 usage or configuration error.
#![forbid(unsafe_code)]

mod cli;
mod cmd;
mod config;
mod ctx;
mod logging;
mod master_key;

use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: the request paths (proxy, gateway,
/// scrubber) allocate per request, and `bench/gateway_ab.sh` measured
/// glibc's malloc/free at ≈ 6 % of the gateway's CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // The sandbox re-executes this binary as its single-threaded init: that
    // must happen before clap, any runtime or any thread starts.
    if let Some(code) = airlock_sandbox::init_entry() {
        return code;
    }
    let cli = cli::parse();
    logging::init(cli.log_format);
    tracing::debug!(version = env!("CARGO_PKG_VERSION"), "airlock starting");
    match cli::dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("airlock: error: {}", one_line(&err));
            ExitCode::from(ctx::EXIT_USAGE)
        }
    }
}

/// The error and its causes on one line, like `{err:#}`, but without
/// repeating a cause that the message before it already ends with (typed
/// errors print their source in their own message).
fn one_line(err: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in err.chain() {
        let c = cause.to_string();
        if msg.ends_with(&c) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&c);
    }
    msg
}
