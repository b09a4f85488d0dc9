//! What can go wrong starting a fixture.

/// A fixture could not be created or started.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// Generating a key or signing a certificate failed.
    #[error("cannot make the {what} certificate: {source}")]
    Certificate {
        /// Which certificate ("CA" or the server's names).
        what: String,
        /// The underlying error.
        #[source]
        source: rcgen::Error,
    },
    /// The TLS server configuration was refused.
    #[error("cannot build the TLS server configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// A socket could not be bound.
    #[error("cannot bind the {what} on {addr}: {source}")]
    Bind {
        /// Which fixture.
        what: &'static str,
        /// Where it tried to listen.
        addr: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The fixture's thread or async runtime could not start.
    #[error("cannot start the {what}: {source}")]
    Start {
        /// Which fixture.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file of the demo scene could not be written.
    #[error("cannot write the {what}: {source}")]
    Write {
        /// Which file.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A step of `airlock demo` could not be carried out.
    #[error("demo: cannot use the {what}: {source}")]
    Demo {
        /// What it tried to use.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The directory given to `airlock demo --dir` is not empty.
    #[error("--dir {}: not empty (the demo needs a fresh directory)", .0.display())]
    DemoDirNotEmpty(std::path::PathBuf),
}
