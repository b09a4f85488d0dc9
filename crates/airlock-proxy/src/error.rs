//! The proxy's error type: one variant per operation that can fail.

use std::io;

/// A failure of the proxy itself (not of one client's request: those become
/// responses and audit records).
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The in-memory certificate authority could not be generated.
    #[error("generating the interception CA: {0}")]
    GenerateCa(#[source] rcgen::Error),
    /// A leaf certificate could not be minted for a host.
    #[error("minting a leaf certificate for {host}: {source}")]
    MintLeaf {
        /// The host the leaf was for.
        host: String,
        /// Why.
        #[source]
        source: rcgen::Error,
    },
    /// The TLS configuration could not be built.
    #[error("building the TLS configuration: {0}")]
    TlsConfig(#[source] rustls::Error),
    /// The extra upstream CA file held no usable certificate.
    #[error("extra upstream CA: {0}")]
    ExtraCa(String),
    /// The DNS resolver could not be set up.
    #[error("setting up the DNS resolver: {0}")]
    Resolver(String),
    /// The response scrubber for a run's credentials could not be built.
    #[error("building the response scrubber for the run's credentials: {0}")]
    Scrubber(#[source] airlock_scrub::ScrubError),
    /// A hook was added to a proxy already cloned or serving.
    #[error("hooks must be added before the proxy is cloned or serves")]
    HookAfterStart,
    /// Accepting a connection failed in a way that stops the listener.
    #[error("accepting connections: {0}")]
    Accept(#[source] io::Error),
}
