//! The MCP gateway: one aggregated MCP server an agent's client connects to
//! (stdio or streamable HTTP), in front of the tool servers the
//! configuration declares.
//!
//! **Boundary.** A tool server is as untrusted as the agent: stdio servers
//! run in an Airlock sandbox each (started through a [`Launcher`] the
//! runtime provides), HTTP servers are reached only where their egress
//! policy allows. Between the agent and the servers, every `tools/call`
//! passes: the rules (`SERVER.TOOL` globs per agent, strictest wins, no
//! match is `default_deny`), the tool's pinned definition (SHA-256 of its
//! RFC 8785 canonical name, description and inputSchema; a changed
//! definition is hidden and refused as `tool_definition_changed`), its
//! declared JSON Schema, the rules' value constraints (path prefixes, URLs
//! through the egress decision, patterns, ranges, sizes), and approval
//! where a rule, the agent's autonomy or the lethal-trifecta guard asks
//! for it ([`airlock_types::Approver`]). Results are scrubbed (secrets
//! always, a granted secret's value becomes its name; PII per config) and
//! mark the run's taint ([`airlock_types::TaintTracker`]). Every decision
//! is an audit record (`mcp.call`, `mcp.list`, `mcp.tool_pinned`,
//! `mcp.tool_changed`, `mcp.server`, `run.taint`).
//!
//! **Trusts.** The configuration, the approver and the taint tracker it is
//! given, the audit sink.
//!
//! **Does not guarantee.** That a server's behaviour matches its
//! description (pinning catches a changed definition, not a lying one);
//! that a path argument means the same inside the server's sandbox as on
//! the host (prefix checks are lexical plus the host's symlinks); methods
//! other than `initialize`, `ping`, `tools/list` and `tools/call`
//! (resources, prompts, sampling) are not offered. Definitions are
//! re-read on `tools/list` and after a server's `list_changed` (before the
//! next call to it), not before every call: a server that changes a
//! definition without announcing it keeps being judged by the one it
//! announced last (which is the one the client was shown).
#![forbid(unsafe_code)]

pub mod config;
pub mod front;
mod gateway;
pub mod jsonrpc;
pub mod pin;
pub mod rules;
pub mod upstream;

pub use gateway::{
    Gateway, GatewayError, MemoryPins, MemoryTaint, PROTOCOL_VERSIONS, Parts, PinStore, Session,
    SqlitePins,
};
pub use upstream::{Launcher, Pipes, list_server};
