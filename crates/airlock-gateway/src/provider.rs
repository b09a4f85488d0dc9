//! What Airlock knows of each provider's wire format: endpoints, the
//! fields it acts on, usage, and the provider's own error shape.

use airlock_types::Reason;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use serde_json::{Value, json};

/// A provider's API dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// OpenAI (and OpenAI-compatible servers, e.g. Azure, vLLM).
    OpenAi,
    /// Anthropic Messages API.
    Anthropic,
}

impl ProviderKind {
    /// `openai` or `anthropic`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Anthropic => "anthropic",
        }
    }

    /// Parse `openai` / `anthropic`.
    pub fn parse(s: &str) -> Option<ProviderKind> {
        match s {
            "openai" => Some(ProviderKind::OpenAi),
            "anthropic" => Some(ProviderKind::Anthropic),
            _ => None,
        }
    }
}

/// An endpoint the gateway understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`
    ChatCompletions,
    /// `POST /v1/responses`
    Responses,
    /// `POST /v1/embeddings`
    Embeddings,
    /// `GET /v1/models` (and `/v1/models/{id}`): no body, no charge.
    Models,
    /// `POST /v1/messages`
    Messages,
}

impl Endpoint {
    /// The endpoint of `path` (a `/v1` prefix, as the SDKs send it, is
    /// optional), for a provider of `kind`.
    pub fn of(kind: ProviderKind, method: &http::Method, path: &str) -> Option<Endpoint> {
        let p = path.split('?').next().unwrap_or(path);
        let p = p.strip_prefix("/v1").unwrap_or(p);
        let post = method == http::Method::POST;
        match (kind, p) {
            (ProviderKind::OpenAi, "/chat/completions") if post => Some(Endpoint::ChatCompletions),
            (ProviderKind::OpenAi, "/responses") if post => Some(Endpoint::Responses),
            (ProviderKind::OpenAi, "/embeddings") if post => Some(Endpoint::Embeddings),
            (ProviderKind::Anthropic, "/messages") if post => Some(Endpoint::Messages),
            (_, m)
                if method == http::Method::GET && (m == "/models" || m.starts_with("/models/")) =>
            {
                Some(Endpoint::Models)
            }
            _ => None,
        }
    }

    /// A short name for audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat.completions",
            Endpoint::Responses => "responses",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Models => "models",
            Endpoint::Messages => "messages",
        }
    }

    /// Whether calls to it produce output tokens (and take a limit).
    pub fn limits_output(self) -> bool {
        matches!(
            self,
            Endpoint::ChatCompletions | Endpoint::Responses | Endpoint::Messages
        )
    }

    /// Set the output limit to `cap`: every limit field the body has, or
    /// the current one when it has none.
    pub fn set_max_output(self, body: &mut Value, cap: u64) {
        let (keys, default): (&[&str], &str) = match self {
            Endpoint::ChatCompletions => (
                &["max_completion_tokens", "max_tokens"],
                "max_completion_tokens",
            ),
            Endpoint::Responses => (&["max_output_tokens"], "max_output_tokens"),
            Endpoint::Messages => (&["max_tokens"], "max_tokens"),
            _ => return,
        };
        let Some(obj) = body.as_object_mut() else {
            return;
        };
        let mut set = false;
        for k in keys {
            if let Some(x) = obj.get_mut(*k) {
                *x = Value::from(cap);
                set = true;
            }
        }
        if !set {
            obj.insert(default.into(), Value::from(cap));
        }
    }

    /// The most output tokens the request allows, if it says.
    pub fn max_output(self, body: &Value) -> Option<u64> {
        let keys: &[&str] = match self {
            Endpoint::ChatCompletions => &["max_completion_tokens", "max_tokens"],
            Endpoint::Responses => &["max_output_tokens"],
            Endpoint::Messages => &["max_tokens"],
            Endpoint::Embeddings => return Some(0),
            Endpoint::Models => return Some(0),
        };
        keys.iter()
            .find_map(|k| body.get(*k).and_then(Value::as_u64))
    }
}

/// Tokens a provider reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Input tokens (cached and cache writes included).
    pub input: u64,
    /// Output tokens.
    pub output: u64,
}

impl Usage {
    /// Read a `usage` object of either provider, or `None`.
    pub fn from_value(u: &Value) -> Option<Usage> {
        let obj = u.as_object()?;
        let n = |k: &str| obj.get(k).and_then(Value::as_u64);
        let input = n("prompt_tokens").or(n("input_tokens"));
        let output = n("completion_tokens").or(n("output_tokens"));
        if input.is_none() && output.is_none() {
            return None;
        }
        let extra = n("cache_creation_input_tokens").unwrap_or(0)
            + n("cache_read_input_tokens").unwrap_or(0);
        Some(Usage {
            input: input.unwrap_or(0).saturating_add(extra),
            output: output.unwrap_or(0),
        })
    }

    /// Fold in a later report (streams report input and output apart).
    pub fn merge(&mut self, other: Usage) {
        self.input = self.input.max(other.input);
        self.output = self.output.max(other.output);
    }
}

/// A fixed sentence per reason (never request data).
pub(crate) fn message(reason: Reason) -> &'static str {
    match reason {
        Reason::BudgetExceeded => "Airlock: this call could exceed a budget, so it was refused",
        Reason::UnknownModelPrice => {
            "Airlock: the model has no price, so its cost cannot be bounded"
        }
        Reason::ModelNotAllowed => "Airlock: this model is not allowed for this agent",
        Reason::IdempotencyConflict => {
            "Airlock: this idempotency key is in use or was used with a different request"
        }
        Reason::VirtualKeyInvalid => "Airlock: the API key is missing, unknown or revoked",
        Reason::MalformedRequest => "Airlock: the request body is not valid JSON for this endpoint",
        Reason::LimitExceeded => "Airlock: the request body is larger than the gateway allows",
        Reason::UpstreamUnreachable => "Airlock: the model provider could not be reached",
        Reason::UnscrubbableResponse => {
            "Airlock: the provider's response could not be restored, so it was refused"
        }
        Reason::AuditUnavailable => {
            "Airlock: the audit log is unavailable, so the call was refused"
        }
        _ => "Airlock: the call could not be carried out, so it was refused",
    }
}

/// The provider's error `type` for a status.
fn error_type(kind: ProviderKind, status: StatusCode) -> &'static str {
    match (kind, status.as_u16()) {
        (ProviderKind::OpenAi, 429) => "insufficient_quota",
        (ProviderKind::OpenAi, 401) => "invalid_request_error",
        (ProviderKind::OpenAi, s) if s >= 500 => "server_error",
        (ProviderKind::OpenAi, _) => "invalid_request_error",
        (ProviderKind::Anthropic, 429) => "rate_limit_error",
        (ProviderKind::Anthropic, 401) => "authentication_error",
        (ProviderKind::Anthropic, 403) => "permission_error",
        (ProviderKind::Anthropic, 404) => "not_found_error",
        (ProviderKind::Anthropic, 413) => "request_too_large",
        (ProviderKind::Anthropic, s) if s >= 500 => "api_error",
        (ProviderKind::Anthropic, _) => "invalid_request_error",
    }
}

/// The error body in the provider's own shape.
pub(crate) fn error_json(kind: ProviderKind, status: StatusCode, reason: Reason) -> Value {
    let ty = error_type(kind, status);
    match kind {
        ProviderKind::OpenAi => json!({"error": {
            "message": message(reason), "type": ty, "param": null, "code": reason.code()
        }}),
        ProviderKind::Anthropic => json!({"type": "error", "error": {
            "type": ty, "message": message(reason)
        }}),
    }
}

/// A full error response in the provider's shape, with
/// `X-Airlock-Reason`, and `x-should-retry: false` when retrying cannot
/// help (the official SDKs honour it).
pub(crate) fn error_response(
    kind: ProviderKind,
    status: StatusCode,
    reason: Reason,
) -> Response<Bytes> {
    let mut body = error_json(kind, status, reason).to_string();
    body.push('\n');
    let mut r = Response::new(Bytes::from(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert("x-airlock-reason", HeaderValue::from_static(reason.code()));
    if status.is_client_error() {
        h.insert("x-should-retry", HeaderValue::from_static("false"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_usage() {
        use http::Method;
        assert_eq!(
            Endpoint::of(ProviderKind::OpenAi, &Method::POST, "/v1/chat/completions"),
            Some(Endpoint::ChatCompletions)
        );
        assert_eq!(
            Endpoint::of(ProviderKind::OpenAi, &Method::POST, "/v1/messages"),
            None
        );
        assert_eq!(
            Endpoint::of(ProviderKind::Anthropic, &Method::GET, "/v1/models"),
            Some(Endpoint::Models)
        );
        let u = Usage::from_value(&json!({"prompt_tokens": 3, "completion_tokens": 4}));
        assert_eq!(
            u,
            Some(Usage {
                input: 3,
                output: 4
            })
        );
        assert_eq!(Usage::from_value(&json!({})), None);
    }
}
