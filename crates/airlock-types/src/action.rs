//! The catalogue of audit actions: what an audit event says was done.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

macro_rules! actions {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// What an audit event records, as a stable dotted name
        /// (`egress.request`) used alike in stored records, exports and the
        /// CLI. Names never change and variants are only ever appended, like
        /// [`crate::Reason`]'s codes.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[non_exhaustive]
        pub enum Action {
            $($(#[$doc])* $variant,)*
        }

        impl Action {
            /// Every action, in catalogue order.
            pub const ALL: &'static [Action] = &[$(Action::$variant,)*];

            /// The stable dotted name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Action::$variant => $name,)*
                }
            }

            /// The action with this dotted name, if it is in the catalogue.
            pub fn from_name(name: &str) -> Option<Action> {
                match name {
                    $($name => Some(Action::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

actions! {
    /// The proxy decided on a request (or on an unparsable one).
    EgressRequest => "egress.request",
    /// A client connection failed (malformed first line, limits, TLS).
    EgressConnection => "egress.connection",
    /// The proxy decided on a CONNECT tunnel.
    EgressConnect => "egress.connect",
    /// A TLS handshake on an intercepted tunnel failed or was refused.
    EgressTls => "egress.tls",
    /// The upstream could not be reached or failed.
    EgressUpstream => "egress.upstream",
    /// The proxy decided on a protocol upgrade (WebSocket).
    EgressUpgrade => "egress.upgrade",
    /// A response was refused on its way back.
    EgressResponse => "egress.response",
    /// A hook on the intercepted path failed or refused.
    EgressHook => "egress.hook",
    /// A credential handle was redeemed and its value sent.
    CredentialUsed => "credential.used",
    /// A credential handle was refused.
    CredentialDenied => "credential.denied",
    /// A vault secret was stored.
    VaultSecretSet => "vault.secret_set",
    /// A vault secret was removed.
    VaultSecretRm => "vault.secret_rm",
    /// The vault's secrets were re-encrypted under a new data key.
    VaultSecretReencrypt => "vault.secret_reencrypt",
    /// The vault's master key was created.
    VaultKeysInit => "vault.keys_init",
    /// The vault's master key was rotated.
    VaultKeysRotate => "vault.keys_rotate",
    /// A run was refused before it started (a control could not be applied).
    SandboxRefused => "sandbox.refused",
    /// What the sandbox applied, as started.
    SandboxAttestation => "sandbox.attestation",
    /// A run started.
    RunStart => "run.start",
    /// A run ended.
    RunEnd => "run.end",
    /// A standalone proxy started.
    ProxyStart => "proxy.start",
    /// A standalone proxy stopped.
    ProxyStop => "proxy.stop",
    /// A data directory was initialized.
    CliInit => "cli.init",
    /// An LLM gateway refused a request over its budget.
    LlmBudget => "llm.budget",
    /// The LLM gateway decided on (and, when allowed, made) one model call.
    GatewayCall => "gateway.call",
    /// An LLM gateway listener started.
    GatewayStart => "gateway.start",
    /// An MCP tool call through the MCP gateway (allowed, refused, or its result).
    McpCall => "mcp.call",
    /// An MCP gateway listed tools for a client (what was shown, what was hidden).
    McpList => "mcp.list",
    /// An MCP tool server started, stopped, crashed or was refused.
    McpServer => "mcp.server",
    /// An operator pinned (approved) a tool's definition hash.
    McpToolPinned => "mcp.tool_pinned",
    /// A tool's definition changed after it was pinned (both hashes recorded).
    McpToolChanged => "mcp.tool_changed",
    /// A call or request was proposed for approval (with its SHA-256).
    ApprovalProposed => "approval.proposed",
    /// A reviewer approved or denied a proposal (who, when, the hash).
    ApprovalDecided => "approval.decided",
    /// An approved call was executed (the approval consumed).
    ApprovalExecuted => "approval.executed",
    /// The result of an approved call.
    ApprovalResult => "approval.result",
    /// A run gained a taint label (private data, untrusted content).
    RunTaint => "run.taint",
    /// An authenticated control-plane API request (token id, method, route, status).
    ApiRequest => "api.request",
    /// A control-plane request whose credentials were refused (missing,
    /// unknown, expired, revoked, wrong node or scope).
    ApiAuthFailed => "api.auth_failed",
    /// A tenant was created.
    TenantCreated => "tenant.created",
    /// An API token was created (its id and scopes, never the token).
    TokenCreated => "token.created",
    /// An API token was revoked.
    TokenRevoked => "token.revoked",
    /// A policy version was stored or activated for an agent.
    PolicyChanged => "policy.changed",
    /// A team or an agent was created or changed.
    AgentChanged => "agent.changed",
    /// A budget was set, or headroom reserved or settled, through the API
    /// (a refused reservation is `budget_exceeded`).
    BudgetChanged => "budget.changed",
    /// A dashboard user was created (`airlock serve --init-admin`); never the password.
    UserCreated => "user.created",
    /// A dashboard user logged in (a new session; an older one presented is revoked).
    SessionCreated => "session.created",
    /// A dashboard session ended (logout).
    SessionRevoked => "session.revoked",
    /// A dashboard user changed (their password was replaced); never the password.
    UserChanged => "user.changed",
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for Action {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Action {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for Action {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Action::from_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown audit action {name:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for a in Action::ALL {
            assert!(seen.insert(a.as_str()), "duplicate {a}");
            assert_eq!(Action::from_name(a.as_str()), Some(*a));
            let json = serde_json::to_string(a).expect("serialize");
            assert_eq!(json, format!("\"{}\"", a.as_str()));
            assert_eq!(serde_json::from_str::<Action>(&json).expect("parse"), *a);
        }
        assert!(serde_json::from_str::<Action>("\"no.such\"").is_err());
    }
}
