//! Responses the proxy writes itself: denials the agent can read and adapt
//! to, and gateway errors. Internals never leak: the body carries the stable
//! reason code and a fixed sentence; the detail goes to the audit record.

use crate::body::{ProxyBody, full};
use airlock_types::{Decision, Outcome, Reason};
use http::{HeaderValue, Response, StatusCode};

/// Response header carrying the reason code.
pub const REASON_HEADER: &str = "x-airlock-reason";

/// A fixed, non-secret sentence for each reason.
pub(crate) fn message(reason: Reason) -> &'static str {
    match reason {
        Reason::RuleDeny => "a policy rule denies this request",
        Reason::DefaultDeny => "no policy rule allows this request",
        Reason::DenyAll => "the policy denies all egress",
        Reason::CheckFailed => "a check could not be carried out, so the request was refused",
        Reason::ApprovalRequired => "this request needs approval, which has not been given",
        Reason::MalformedRequest => "the request is malformed",
        Reason::LimitExceeded => "the request exceeds a proxy limit",
        Reason::AuditUnavailable => "the audit log is unavailable, so the request was refused",
        Reason::WriteRequiresHttps => "write methods (POST, PUT, PATCH, DELETE) require https",
        Reason::LoopbackAddress => "the host is or resolves to a loopback address",
        Reason::PrivateAddress => "the host is or resolves to a private address",
        Reason::LinkLocalAddress => "the host is or resolves to a link-local address",
        Reason::ReservedAddress => "the host is or resolves to a reserved address",
        Reason::UnresolvableHost => "the host name does not resolve",
        Reason::InvalidHost => "the host is not a valid host",
        Reason::MixedScriptHost => "the host name mixes scripts",
        Reason::ConfusableHost => "the host name is confusable with a host named in the policy",
        Reason::UpstreamUnreachable => "the upstream could not be reached",
        Reason::UpstreamTlsFailed => "the upstream's TLS certificate failed verification",
        Reason::CredentialHostMismatch => {
            "a credential handle was sent to a host it is not bound to"
        }
        Reason::CredentialMethodMismatch => "a credential handle is not bound to this method",
        Reason::CredentialPathMismatch => "a credential handle is not bound to this path",
        Reason::CredentialHeaderMismatch => {
            "a credential handle was sent in a header it is not bound to"
        }
        Reason::CredentialExpired => "a credential handle has expired",
        Reason::CredentialRevoked => "a credential handle was revoked (its run ended)",
        Reason::CredentialUnknown => "a credential handle is not known to this run",
        Reason::CredentialUsesExhausted => "a credential handle has no uses left",
        Reason::CredentialInsecureTransport => "credential handles are only redeemed over https",
        Reason::PortNotAllowed => "no policy rule allows this port",
        Reason::TunnelNotTls => "the tunnel did not carry TLS",
        Reason::SniMismatch => "the TLS server name differs from the CONNECT host",
        Reason::UpgradeRefused => "this protocol upgrade is not allowed",
        Reason::UpgradeMismatch => "the upstream switched to a protocol that was not requested",
        Reason::AmbiguousPath => {
            "the request path is ambiguous (dot segments with parameters, encoded separators or double encoding)"
        }
        Reason::CredentialWrongLocation => {
            "a credential handle was placed somewhere its binding does not allow"
        }
        Reason::UnscrubbableResponse => {
            "the upstream's response could not be scrubbed, so it was refused"
        }
        Reason::IdnDisallowedCharacter => {
            "the host name has a character that has no place in a host name"
        }
        Reason::IdnMixedNumbers => "the host name mixes digits of different numbering systems",
        Reason::IdnDangerousPattern => {
            "the host name mixes CJK characters that look like punctuation with Latin"
        }
        Reason::IdnWholeScriptConfusable => {
            "the host name is written in another script with letters that look Latin"
        }
        Reason::IdnConfusable => "the host name looks like a well-known domain it is not",
        Reason::UserinfoInUrl => "URLs with user information (user:pass@host) are refused",
        Reason::GatewayCall => "the model call went through the LLM gateway",
        Reason::BudgetExceeded => "this call could exceed a budget, so it was refused",
        Reason::UnknownModelPrice => "the model has no price, so its cost cannot be bounded",
        Reason::ModelNotAllowed => "this model is not allowed for this agent",
        Reason::IdempotencyConflict => {
            "this idempotency key is in use or was used with a different request"
        }
        Reason::VirtualKeyInvalid => "the gateway key is missing, unknown or revoked",
        Reason::TokenLimitExceeded => "the call asks for more tokens than a guardrail allows",
        Reason::ApprovalDenied => "a reviewer denied this request",
        Reason::ApprovalExpired => "no approval was given in time",
        Reason::ToolUnknown => "no configured tool server offers this tool",
        Reason::ToolDefinitionChanged => {
            "the tool's definition changed since it was approved; it needs approval again"
        }
        Reason::ToolArgumentsInvalid => "the tool call's arguments do not match its input schema",
        Reason::ToolArgumentRefused => "a tool call argument breaks a policy constraint",
        Reason::ToolServerFailed => "the tool server failed or did not answer in time",
        Reason::LethalTrifecta => {
            "the run holds private data and read untrusted content, so this write needs approval"
        }
        Reason::Unauthenticated => "no valid API token was presented",
        Reason::ScopeMissing => "the API token does not grant this",
        Reason::CsrfRefused => "a cross-site or unverified form submission was refused",
        _ => "the request was refused",
    }
}

fn json_body(error: &str, outcome: Option<Outcome>, reason: Reason) -> String {
    let mut obj = serde_json::Map::new();
    obj.insert("error".into(), error.into());
    obj.insert("reason".into(), reason.code().into());
    if let Some(o) = outcome {
        obj.insert("outcome".into(), o.as_str().into());
    }
    obj.insert("message".into(), message(reason).into());
    let mut s = serde_json::Value::Object(obj).to_string();
    s.push('\n');
    s
}

fn build(status: StatusCode, reason: Reason, body: String) -> Response<ProxyBody> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(REASON_HEADER, HeaderValue::from_static(reason.code()));
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    resp
}

/// 403 for a decision that is not `allow`.
pub(crate) fn denied(d: Decision) -> Response<ProxyBody> {
    build(
        StatusCode::FORBIDDEN,
        d.reason,
        json_body("denied", Some(d.outcome), d.reason),
    )
}

/// An error that is not a policy decision (bad request, upstream failure, limit).
pub(crate) fn error(status: StatusCode, reason: Reason) -> Response<ProxyBody> {
    let kind = if status.is_server_error() {
        "upstream"
    } else {
        "bad_request"
    };
    build(status, reason, json_body(kind, None, reason))
}

/// Raw bytes of a 503 for a connection refused before HTTP parsing (the
/// concurrent-connection limit).
pub(crate) fn raw_overloaded() -> Vec<u8> {
    let body = json_body("overloaded", None, Reason::LimitExceeded);
    format!(
        "HTTP/1.1 503 Service Unavailable\r\n{REASON_HEADER}: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        Reason::LimitExceeded.code(),
        body.len()
    )
    .into_bytes()
}

/// Raw bytes of a 403 for a decision made before HTTP parsing (a request
/// line the HTTP layer cannot parse, judged on its own). Closes the connection.
pub(crate) fn raw_denied(d: Decision) -> Vec<u8> {
    let body = json_body("denied", Some(d.outcome), d.reason);
    format!(
        "HTTP/1.1 403 Forbidden\r\n{REASON_HEADER}: {}\r\ncontent-type: application/json\r\ncache-control: no-store\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        d.reason.code(),
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denial_body_is_the_documented_json() {
        let body = json_body("denied", Some(Outcome::Ask), Reason::ApprovalRequired);
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(
            v,
            serde_json::json!({
                "error": "denied",
                "reason": "approval_required",
                "outcome": "ask",
                "message": "this request needs approval, which has not been given"
            })
        );
    }
}
