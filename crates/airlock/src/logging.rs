//! Where library `tracing` events go: one subscriber, on stderr.
//!
//! Installed once by `main()` after the command line is parsed — never in the
//! sandbox init, which returns before this runs. The default level is `warn`,
//! so a normal command prints nothing new; `RUST_LOG` (an `EnvFilter`
//! directive list; invalid directives are ignored) overrides it. Stdout stays
//! the command's own output. Library crates log names, ids and error kinds,
//! never secret values (ARCHITECTURE.md, invariants).

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// How log events are written on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Install the process-wide subscriber. A second call (or another
/// subscriber already installed) leaves the first in place.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::WARN.into())
        .from_env_lossy();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    // Failing to install means one is already there: keep it.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
