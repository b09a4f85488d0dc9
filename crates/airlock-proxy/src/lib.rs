//! Airlock's egress proxy: the only way out of the sandbox.
//!
//! **Boundary.** Every connection an agent makes to the network arrives
//! here, as an absolute-form HTTP/1.1 request or a `CONNECT`. Each is decided
//! by [`airlock_policy::EgressPolicy`] *before* anything reaches the
//! upstream: for `CONNECT`, before any TLS handshake (`decide_connect`: deny
//! with 403, tunnel blindly, or intercept); for every request, plain or
//! inside an intercepted tunnel, with `decide`. A request or CONNECT the
//! policy refuses on its own facts (host, method, port, path, rules, mode)
//! is refused without any DNS query, so refused names cannot carry data out
//! through the resolver. Otherwise names are resolved here
//! (hickory), **every** returned address is judged, and the connection goes
//! to exactly a judged address — resolve, validate and connect as one step,
//! never a second lookup. Inside an intercepted tunnel, requests may only
//! address the tunnel's host and port and reuse the addresses judged at
//! `CONNECT` time. Denials are `403` with `X-Airlock-Reason: <code>` and a
//! small JSON body. Every decision is sent to the [`EventSink`](airlock_types::EventSink); if the sink
//! refuses, the request is denied with `audit_unavailable`.
//!
//! **Tunnels.** Whatever the plan, nothing is relayed until the client's
//! first bytes are a complete TLS ClientHello (parsed by rustls within the
//! TLS-handshake timeout and 64 KiB, then replayed): plaintext or another
//! protocol is refused (`tunnel_not_tls`, with a 403 when the client spoke
//! HTTP). In a blind tunnel the server name must be the CONNECT host (an
//! IP-literal CONNECT must send none): `sni_mismatch`. Refusals are audited
//! as `egress.tls` decisions.
//!
//! **Upgrades.** Only `Upgrade: websocket`, only where a rule allows it
//! (`upgrade_refused`, `h2c` included); a CONNECT (or HTTP/2 extended
//! CONNECT) inside an intercepted tunnel is refused; a 101 must switch to
//! the protocol asked for (`upgrade_mismatch`, 502), and its headers are
//! scrubbed like any response's.
//!
//! **Audit volume.** Failures that are not decisions (malformed input,
//! limits, upstream errors) are aggregated: the first of a kind (action,
//! resource, reason, detail) is recorded at once, identical ones within the
//! next second become one record with `repeated = N`. Decisions are never
//! aggregated, and every client is still answered. `egress.request`
//! records say `query = "true"` when the URL had a query, never its text.
//!
//! **Interception.** An ECDSA P-256 CA is generated at start and held only
//! in memory ([`Proxy::ca_cert_pem`] exports its certificate, never its
//! key). Leaves are minted per host (one shared leaf key, so minting is one
//! signature), cached, and served with the full chain; ALPN offers h2 and
//! http/1.1 to both the client and the upstream. Upstream certificates are
//! verified against the web PKI roots plus an optional extra CA; failure is
//! `502` with `upstream_tls_failed`.
//!
//! **Hooks.** Every request the proxy can read (plain, or inside an
//! intercepted tunnel) passes the [`airlock_hook::Hook`]s added with
//! [`Proxy::with_hook`] once the policy allowed it and before anything is
//! dialled — in the order they were added; the response passes them in
//! reverse order. A hook may rewrite headers, query and body, or refuse in
//! its own format (its record is audited first; a refusing sink makes it
//! `audit_unavailable`); a hook that changes the judged method or path is
//! refused (`check_failed`). Credentials (below) are the first hook, always
//! closest to the upstream: last on the request, first on the response, so
//! no other hook sees a real secret value.
//!
//! **Credentials.** A proxy built with [`Proxy::with_credentials`] serves a
//! run that holds vault handles (`alh_…`): a handle is redeemed by the
//! broker against the real destination (canonical path included) and
//! replaced by the real value only where its binding places it (one header,
//! a Basic password, or one query parameter), each swap audited as
//! `credential.used` before the request leaves; a handle anywhere else
//! (`credential_wrong_location`), to another host, over plain HTTP, revoked
//! or unknown denies the request (`credential_*`, audited as
//! `credential.denied`). Response headers and bodies stream through a
//! scrubber that knows the run's real values; a body in a content or
//! transfer coding the scrubber cannot read is refused
//! (`unscrubbable_response`, 502).
//! Request bodies are not searched for handles, and upgraded (WebSocket)
//! streams and trailers are not scrubbed.
//!
//! **Limits.** Request head size and header count (431), request-target
//! length (414), concurrent connections (503), header-read, body-read,
//! idle, connect, TLS-handshake and upstream-response timeouts. Bodies are
//! streamed frame by frame, never buffered.
//!
//! **Trusts.** The policy it is given, the sink, the system's (or the
//! configured) DNS servers to answer honestly *at the moment of the lookup*
//! (a later rebinding cannot redirect a connection already judged), and the
//! web PKI roots.
//!
//! **Does not guarantee.** Anything about bytes inside a blind tunnel past
//! its ClientHello (the policy chooses a tunnel only when every request to
//! the host is allowed, and the ClientHello must name the host; a client
//! using Encrypted Client Hello shows its outer name, which must be the
//! host);
//! that a WebSocket's messages are inspected (the upgrade request is judged,
//! the frames are relayed); HTTP/3 or plain TCP protocols other than HTTP;
//! that connections already accepted stop when `serve`'s shutdown future
//! resolves: [`Proxy::drain`] then closes them gracefully within a grace
//! period, except blind tunnels and upgraded streams, which end with the
//! runtime.
#![forbid(unsafe_code)]

mod body;
mod burst;
mod ca;
mod config;
mod creds;
mod error;
mod glue;
mod hello;
mod idle;
mod pool;
mod resolve;
mod respond;
mod server;
mod upstream;

pub use config::{Limits, ProxyConfig, ResolverSettings, Timeouts};
pub use error::ProxyError;
pub use respond::REASON_HEADER;
pub use server::{Proxy, Scope};

/// Check that `pem` holds at least one usable CA certificate, as
/// [`ProxyConfig::upstream_extra_ca_pem`] requires. Lets a configuration
/// loader fail at load time with a location.
pub fn check_extra_ca(pem: &[u8]) -> Result<(), ProxyError> {
    upstream::client_tls(Some(pem)).map(|_| ())
}
