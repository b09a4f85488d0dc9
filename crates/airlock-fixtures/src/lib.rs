//! Local stand-ins for the outside world: one implementation shared by
//! `airlock demo` and the test kit (`airlock-testkit` re-exports it).
//!
//! It provides a throwaway certificate authority ([`LocalCa`]) that issues
//! server certificates, HTTP and HTTPS servers speaking the real wire format
//! (HTTP/1.1, and HTTP/2 when ALPN offers it) around a caller's handler
//! ([`HttpServer`]), and a DNS responder on UDP and TCP with scripted answers
//! — fixed, sequences (public first, then private: rebinding) and NXDOMAIN
//! ([`DnsResponder`]); and the scene `airlock demo` plays in ([`demo`]). Every server listens on an address the caller picks
//! (the demo and tests use 127.0.0.0/8), runs on its own thread with its own
//! runtime (so a caller that blocks, running `curl` or a child process,
//! cannot stall it) and stops when dropped.
//!
//! It trusts its caller and whoever connects to it: these are fixtures, not
//! boundaries. It does not guarantee anything a real upstream or resolver
//! would — no access control, no limits beyond the handler's, keys held in
//! memory in the clear — so production paths must never route real traffic
//! to it; the layering test lets only the binary (for `airlock demo`) and
//! the test kit depend on it.
#![forbid(unsafe_code)]

mod ca;
pub mod demo;
mod dns;
mod error;
mod server;

pub use ca::LocalCa;
pub use dns::{DnsAnswer, DnsResponder};
pub use error::FixtureError;
pub use server::HttpServer;
