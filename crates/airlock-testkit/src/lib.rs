//! Test helpers for Airlock. A dev-dependency only: nothing here ships.
//!
//! It provides real parts for end-to-end tests: a throwaway certificate
//! authority ([`TestCa`]), local HTTP and HTTPS upstreams speaking the real
//! wire format and echoing what they received ([`Upstream`]), a local DNS
//! responder that can answer public-then-private (rebinding) and
//! multi-address answers ([`DnsResponder`]), and a helper to run the
//! `airlock` binary as a child process ([`ProcessGuard`]). The CA, servers
//! and DNS responder are `airlock-fixtures`' — the same ones `airlock demo`
//! uses — wrapped so that a fixture that cannot start fails the test. Every
//! server listens on 127.0.0.0/8 only and runs on its own thread, so blocking
//! tests (running `curl`) cannot stall it.
//! It trusts the test that uses it and guarantees nothing about production.
#![forbid(unsafe_code)]

mod ca;
mod dns;
mod llm;
mod process;
mod upstream;

pub use ca::TestCa;
pub use dns::{DnsAnswer, DnsResponder};
pub use llm::{LlmUpstream, Received};
pub use process::{ProcessGuard, spawn_and_read_line};
pub use upstream::{Upstream, UpstreamKind};
