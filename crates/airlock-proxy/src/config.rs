//! Plain-data configuration, built by the binary from the `[proxy]` section.

use std::net::SocketAddr;
use std::time::Duration;

/// Size and count limits. Every one of them is a defence against a client (or
/// upstream) that tries to exhaust the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head (request line plus headers) in bytes; larger ⇒ 431.
    pub max_header_bytes: usize,
    /// Largest number of request headers.
    pub max_headers: usize,
    /// Longest request target (the URL on the request line) in bytes; longer ⇒ 414.
    pub max_request_line: usize,
    /// Most client connections served at once; more are refused with 503.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            max_request_line: 8 * 1024,
            max_connections: 1024,
        }
    }
}

/// Timeouts. A peer that is slower than these is cut off, so a slow client
/// (slowloris) or a hanging upstream costs one connection slot for a bounded time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    /// Time a client has to send a complete request head (also bounds an idle
    /// keep-alive connection).
    pub header_read: Duration,
    /// Longest pause between two pieces of a request or response body.
    pub body_read: Duration,
    /// Longest silence on a tunnel or upgraded connection (both directions).
    pub idle: Duration,
    /// Time to establish a TCP connection (and TLS handshake) to an upstream.
    pub connect: Duration,
    /// Time an upstream has to send its response head.
    pub upstream_response: Duration,
    /// Time a client has to finish its TLS handshake on an intercepted tunnel.
    pub tls_handshake: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            header_read: Duration::from_secs(10),
            body_read: Duration::from_secs(30),
            idle: Duration::from_secs(300),
            connect: Duration::from_secs(10),
            upstream_response: Duration::from_secs(60),
            tls_handshake: Duration::from_secs(10),
        }
    }
}

/// Where the proxy resolves names.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ResolverSettings {
    /// The system's resolver configuration (`/etc/resolv.conf`).
    #[default]
    System,
    /// These name servers only (UDP then TCP), with no search domains. Tests
    /// point this at the testkit's DNS responder.
    NameServers(Vec<SocketAddr>),
}

/// Everything the proxy needs, as plain data.
#[derive(Debug, Clone, Default)]
pub struct ProxyConfig {
    /// Size and count limits.
    pub limits: Limits,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Extra trusted roots for upstream TLS (PEM), in addition to the
    /// built-in web PKI roots. Typically an internal CA.
    pub upstream_extra_ca_pem: Option<Vec<u8>>,
    /// How names are resolved.
    pub resolver: ResolverSettings,
    /// Intercept (terminate and inspect) TLS for every allowed CONNECT, not
    /// only for hosts the policy inspects.
    pub intercept_all: bool,
}
