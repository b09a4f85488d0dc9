//! Policy outcomes and their stable reason codes.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The outcome of a decision, ordered from most to least permissive so that
/// "strictest wins" is a `max()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The action may proceed.
    Allow,
    /// The action needs a human's approval first.
    Ask,
    /// The action is refused.
    Deny,
}

impl Outcome {
    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Ask => "ask",
            Outcome::Deny => "deny",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! reasons {
    ($( $(#[$doc:meta])* $variant:ident => $code:literal, )*) => {
        /// Why a decision came out the way it did. Each reason has a stable
        /// snake_case code, used alike in the `X-Airlock-Reason` header, the
        /// audit record, the CLI and the dashboard. Codes never change once
        /// released; new reasons are appended.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        #[non_exhaustive]
        pub enum Reason {
            $( $(#[$doc])* $variant, )*
        }

        impl Reason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)*];

            /// The stable snake_case code.
            pub fn code(self) -> &'static str {
                match self {
                    $( Reason::$variant => $code, )*
                }
            }

            /// Parse a stable code back into a reason.
            pub fn from_code(code: &str) -> Option<Reason> {
                match code {
                    $( $code => Some(Reason::$variant), )*
                    _ => None,
                }
            }
        }
    };
}

reasons! {
    // --- generic -----------------------------------------------------------
    /// A policy rule allowed the action.
    RuleAllow => "rule_allow",
    /// A policy rule denied the action.
    RuleDeny => "rule_deny",
    /// Nothing allowed the action, so the default (deny) applied.
    DefaultDeny => "default_deny",
    /// The built-in `read_public` mode allowed a read to a public host.
    PublicRead => "public_read",
    /// The built-in `deny_all` mode refused the action.
    DenyAll => "deny_all",
    /// A check could not be carried out, so the action was refused (fail closed).
    CheckFailed => "check_failed",
    /// The action needs approval and none has been given.
    ApprovalRequired => "approval_required",
    /// The action is a plain operational event, not a policy decision.
    Recorded => "recorded",
    /// The request was malformed.
    MalformedRequest => "malformed_request",
    /// A limit (size, rate, count, time) was exceeded.
    LimitExceeded => "limit_exceeded",
    /// The audit sink could not take the record, so the action was refused.
    AuditUnavailable => "audit_unavailable",

    // --- egress ------------------------------------------------------------
    /// A write method was sent over plain HTTP.
    WriteRequiresHttps => "write_requires_https",
    /// The host or one of its addresses is loopback.
    LoopbackAddress => "loopback_address",
    /// The host or one of its addresses is in a private range (RFC 1918, ULA).
    PrivateAddress => "private_address",
    /// The host or one of its addresses is link-local (including cloud metadata).
    LinkLocalAddress => "link_local_address",
    /// The host or one of its addresses is in a reserved or special-purpose range.
    ReservedAddress => "reserved_address",
    /// The host name did not resolve.
    UnresolvableHost => "unresolvable_host",
    /// The host could not be parsed as a valid host.
    InvalidHost => "invalid_host",
    /// The host's Unicode form mixes scripts.
    MixedScriptHost => "mixed_script_host",
    /// The host is confusable with a host named in the policy.
    ConfusableHost => "confusable_host",
    /// The upstream could not be reached.
    UpstreamUnreachable => "upstream_unreachable",
    /// The upstream's TLS certificate failed verification.
    UpstreamTlsFailed => "upstream_tls_failed",

    // --- credentials -------------------------------------------------------
    /// A credential handle was sent to a host it is not bound to.
    CredentialHostMismatch => "credential_host_mismatch",
    /// A credential handle was used with a method it is not bound to.
    CredentialMethodMismatch => "credential_method_mismatch",
    /// A credential handle was used on a path it is not bound to.
    CredentialPathMismatch => "credential_path_mismatch",
    /// A credential handle has expired.
    CredentialExpired => "credential_expired",
    /// A credential handle was revoked (its run ended).
    CredentialRevoked => "credential_revoked",
    /// A credential handle was used more times than allowed.
    CredentialUsesExhausted => "credential_uses_exhausted",
    /// A credential handle is unknown or malformed.
    CredentialUnknown => "credential_unknown",
    /// A credential handle was sent over plain HTTP.
    CredentialInsecureTransport => "credential_insecure_transport",

    // --- sandbox -----------------------------------------------------------
    /// A sandbox control could not be applied.
    SandboxControlFailed => "sandbox_control_failed",
    /// A run was started.
    RunStarted => "run_started",
    /// A run ended.
    RunEnded => "run_ended",
    /// A run exceeded its time limit.
    RunTimeout => "run_timeout",

    // --- credentials (continued) ------------------------------------------
    /// A credential handle was sent in a header other than the one its secret is bound to.
    CredentialHeaderMismatch => "credential_header_mismatch",

    // --- hardening (outside review) ----------------------------------------
    /// A CONNECT named a port no rule covers (the default is 443 only).
    PortNotAllowed => "port_not_allowed",
    /// A tunnel's first bytes were not a TLS ClientHello, or the client did
    /// not speak TLS inside an intercepted tunnel.
    TunnelNotTls => "tunnel_not_tls",
    /// A blind tunnel's TLS ClientHello named a server other than the CONNECT host.
    SniMismatch => "sni_mismatch",
    /// A protocol upgrade other than an allowed WebSocket was requested
    /// (h2c, or WebSocket where no rule allows it).
    UpgradeRefused => "upgrade_refused",
    /// The upstream switched to a protocol other than the one requested.
    UpgradeMismatch => "upgrade_mismatch",
    /// The request path is ambiguous (`..;`, encoded `/` or `\`, double
    /// encoding), so servers could read it differently from the policy.
    AmbiguousPath => "ambiguous_path",
    /// A credential handle was placed somewhere its binding does not name
    /// (another header, a query parameter, the path).
    CredentialWrongLocation => "credential_wrong_location",
    /// A response could not be scrubbed (e.g. compressed although none was
    /// asked for), so it was refused.
    UnscrubbableResponse => "unscrubbable_response",
    /// A credential was injected into a request (recorded, not a refusal).
    CredentialUsed => "credential_used",

    // --- look-alike hosts and URL shapes (issue 18) --------------------------
    /// A label of the host has a character with no business in a host name:
    /// not UTS #39 Identifier_Status=Allowed, a look-alike of URL
    /// punctuation, or a combining mark that forms no precomposed letter.
    IdnDisallowedCharacter => "idn_disallowed_character",
    /// A label of the host mixes digits of different numbering systems.
    IdnMixedNumbers => "idn_mixed_numbers",
    /// A label mixes Han or Kana characters that look like punctuation or
    /// `one` with Latin letters or digits.
    IdnDangerousPattern => "idn_dangerous_pattern",
    /// A label is written in one non-Latin script using only characters
    /// that look like Latin letters or digits, under a top-level domain not
    /// of that script.
    IdnWholeScriptConfusable => "idn_whole_script_confusable",
    /// The host looks like (has the skeleton of) a well-known domain it is not.
    IdnConfusable => "idn_confusable",
    /// The URL carries user information (`user:pass@host`).
    UserinfoInUrl => "userinfo_in_url",

    // --- LLM gateway -------------------------------------------------------
    /// A model call went through the LLM gateway (redacted, budgeted).
    GatewayCall => "gateway_call",
    /// A model call would exceed a budget, so it was refused before any
    /// upstream call.
    BudgetExceeded => "budget_exceeded",
    /// The model has no price, so its cost cannot be bounded.
    UnknownModelPrice => "unknown_model_price",
    /// The model is not on the caller's allow-list.
    ModelNotAllowed => "model_not_allowed",
    /// An idempotency key is in flight or was used with a different body.
    IdempotencyConflict => "idempotency_conflict",
    /// The gateway's virtual key is missing, unknown or revoked.
    VirtualKeyInvalid => "virtual_key_invalid",
    /// A model call asked for more tokens than a guardrail allows (per step or per run).
    TokenLimitExceeded => "token_limit_exceeded",

    // --- approvals, MCP gateway, lethal-trifecta guard ---------------------
    /// A reviewer denied the approval.
    ApprovalDenied => "approval_denied",
    /// No decision came before the approval (or the wait for it) expired.
    ApprovalExpired => "approval_expired",
    /// A reviewer approved exactly this call (recorded, not a refusal).
    ApprovalGranted => "approval_granted",
    /// The tool is not known to the gateway (no configured server offers it).
    ToolUnknown => "tool_unknown",
    /// The tool's definition (name, description, input schema) differs from
    /// the one an operator approved.
    ToolDefinitionChanged => "tool_definition_changed",
    /// The tool call's arguments do not match the tool's declared input schema.
    ToolArgumentsInvalid => "tool_arguments_invalid",
    /// A tool call's argument breaks a policy constraint (path prefix, host,
    /// pattern, range, size).
    ToolArgumentRefused => "tool_argument_refused",
    /// The tool server failed, crashed or did not answer in time.
    ToolServerFailed => "tool_server_failed",
    /// The run holds private data and has read untrusted content, so a write
    /// to a destination no rule allows for writes needs approval.
    LethalTrifecta => "lethal_trifecta",
    /// A control-plane request carried no token, an unknown one, or one
    /// that expired or was revoked.
    Unauthenticated => "unauthenticated",
    /// The token is valid but lacks the scope, agent or node the request needs.
    ScopeMissing => "scope_missing",
    /// A state-changing dashboard request came from another site (Origin,
    /// `Sec-Fetch-Site`) or without the session's CSRF token.
    CsrfRefused => "csrf_refused",
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A decision: an outcome with the reason for it.
///
/// Produced by pure `decide(facts) -> Decision` functions; a failure to gather
/// a fact becomes `Decision::deny(Reason::CheckFailed)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// What happens.
    pub outcome: Outcome,
    /// Why.
    pub reason: Reason,
}

impl Decision {
    /// An allow decision.
    pub fn allow(reason: Reason) -> Self {
        Decision {
            outcome: Outcome::Allow,
            reason,
        }
    }
    /// A deny decision.
    pub fn deny(reason: Reason) -> Self {
        Decision {
            outcome: Outcome::Deny,
            reason,
        }
    }
    /// An ask (approval required) decision.
    pub fn ask(reason: Reason) -> Self {
        Decision {
            outcome: Outcome::Ask,
            reason,
        }
    }
    /// True when the outcome is `Allow`.
    pub fn is_allow(&self) -> bool {
        self.outcome == Outcome::Allow
    }
    /// The stricter of two decisions; on a tie, `self` is kept.
    pub fn stricter(self, other: Decision) -> Decision {
        if other.outcome > self.outcome {
            other
        } else {
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictest_wins_is_max() {
        assert_eq!(
            [Outcome::Allow, Outcome::Deny, Outcome::Ask]
                .into_iter()
                .max(),
            Some(Outcome::Deny)
        );
        let d =
            Decision::allow(Reason::RuleAllow).stricter(Decision::ask(Reason::ApprovalRequired));
        assert_eq!(d, Decision::ask(Reason::ApprovalRequired));
    }

    #[test]
    fn reason_codes_are_unique_snake_case_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            let code = r.code();
            assert!(seen.insert(code), "duplicate code {code}");
            assert!(
                code.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{code}"
            );
            assert_eq!(Reason::from_code(code), Some(*r));
            let json = serde_json::to_string(r).expect("invariant: serializable");
            assert_eq!(json, format!("\"{code}\""));
        }
    }
}
