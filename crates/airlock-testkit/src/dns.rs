//! The local DNS responder, from `airlock-fixtures`, started or the test fails.

pub use airlock_fixtures::DnsAnswer;
use std::net::SocketAddr;

/// A running DNS responder ([`airlock_fixtures::DnsResponder`]). Stops when
/// dropped.
#[derive(Debug)]
pub struct DnsResponder(airlock_fixtures::DnsResponder);

impl DnsResponder {
    /// Start a responder on 127.0.0.1 (an ephemeral port, same for UDP and TCP).
    pub fn start() -> DnsResponder {
        DnsResponder(airlock_fixtures::DnsResponder::start().expect("DNS responder started"))
    }

    /// Where it listens (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.0.addr()
    }

    /// Script the answer for `name`.
    pub fn set(&self, name: &str, answer: DnsAnswer) {
        self.0.set(name, answer);
    }

    /// How many A and AAAA queries `name` has received.
    pub fn queries(&self, name: &str) -> usize {
        self.0.queries(name)
    }
}
