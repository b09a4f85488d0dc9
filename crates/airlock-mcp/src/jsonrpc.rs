//! JSON-RPC 2.0 as MCP uses it: one message per line (stdio) or per POST
//! body (streamable HTTP). Messages stay `serde_json::Value`s so fields and
//! methods Airlock does not act on pass through untouched; this module only
//! classifies a message and builds errors.

use airlock_types::Reason;
use serde_json::{Value, json};

/// Parse error (the bytes are not JSON).
pub const PARSE_ERROR: i64 = -32700;
/// Invalid request (JSON, but not a JSON-RPC 2.0 message; batches included).
pub const INVALID_REQUEST: i64 = -32600;
/// Method not found.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Invalid params.
pub const INVALID_PARAMS: i64 = -32602;
/// Internal error (Airlock could not do its part).
pub const INTERNAL_ERROR: i64 = -32603;
/// A refusal by Airlock's policy (server-defined range).
pub const POLICY_REFUSED: i64 = -32001;
/// The tool server failed (crashed, hung, answered garbage).
pub const SERVER_FAILED: i64 = -32002;

/// One classified message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A request: it has an id and a method.
    Request {
        /// The id, as sent (number or string).
        id: Value,
        /// The method.
        method: String,
        /// The whole message (params and unknown fields intact).
        raw: Value,
    },
    /// A notification: a method and no id.
    Notification {
        /// The method.
        method: String,
        /// The whole message.
        raw: Value,
    },
    /// A response (result or error) to a request of ours.
    Response {
        /// The id it answers.
        id: Value,
        /// The whole message.
        raw: Value,
    },
}

/// Why bytes are not a message: the JSON-RPC error to answer with.
#[derive(Debug, Clone, PartialEq)]
pub struct Malformed {
    /// `-32700` or `-32600`.
    pub code: i64,
    /// What is wrong (no message content).
    pub message: String,
    /// The id, when one could be read.
    pub id: Value,
    /// The reason code for the audit record and `error.data.reason`.
    pub reason: Reason,
}

/// Classify `bytes` (at most the configured maximum; the caller checks the
/// size first).
pub fn parse(bytes: &[u8]) -> Result<Message, Malformed> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| Malformed {
        code: PARSE_ERROR,
        message: format!("parse error: {e}"),
        id: Value::Null,
        reason: Reason::MalformedRequest,
    })?;
    classify(v)
}

/// Classify an already parsed value.
pub fn classify(v: Value) -> Result<Message, Malformed> {
    let invalid = |message: &str, id: Value| Malformed {
        code: INVALID_REQUEST,
        message: message.to_owned(),
        id,
        reason: Reason::MalformedRequest,
    };
    let Value::Object(obj) = &v else {
        return Err(invalid(
            if v.is_array() {
                "invalid request: batches are not supported (MCP 2025-06-18 and later)"
            } else {
                "invalid request: a JSON-RPC message is an object"
            },
            Value::Null,
        ));
    };
    let id = obj.get("id").cloned();
    let id_ok = matches!(&id, None | Some(Value::String(_)) | Some(Value::Number(_)));
    let shown_id = if id_ok {
        id.clone().unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    if obj.get("jsonrpc") != Some(&Value::String("2.0".into())) {
        return Err(invalid(
            "invalid request: \"jsonrpc\" must be \"2.0\"",
            shown_id,
        ));
    }
    if !id_ok {
        return Err(invalid(
            "invalid request: \"id\" must be a string or a number",
            Value::Null,
        ));
    }
    match (obj.get("method"), id) {
        (Some(Value::String(m)), Some(id)) => {
            if obj
                .get("params")
                .is_some_and(|p| !p.is_object() && !p.is_array())
            {
                return Err(invalid("invalid request: \"params\" must be an object", id));
            }
            Ok(Message::Request {
                id,
                method: m.clone(),
                raw: v,
            })
        }
        (Some(Value::String(m)), None) => Ok(Message::Notification {
            method: m.clone(),
            raw: v,
        }),
        (Some(_), id) => Err(invalid(
            "invalid request: \"method\" must be a string",
            id.unwrap_or(Value::Null),
        )),
        (None, Some(id)) if obj.contains_key("result") || obj.contains_key("error") => {
            Ok(Message::Response { id, raw: v })
        }
        (None, id) => Err(invalid(
            "invalid request: no \"method\"",
            id.unwrap_or(Value::Null),
        )),
    }
}

/// A JSON-RPC error response carrying Airlock's reason code in
/// `error.data.reason` (and any extra detail fields).
pub fn error(id: &Value, code: i64, message: &str, reason: Reason, extra: Value) -> Value {
    let mut data = json!({ "reason": reason.code() });
    if let (Value::Object(d), Value::Object(e)) = (&mut data, extra) {
        d.extend(e);
    }
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": { "code": code, "message": message, "data": data }
    })
}

/// A JSON-RPC result response.
pub fn result(id: &Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

/// A notification.
pub fn notification(method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "method": method, "params": params })
}

/// A request.
pub fn request(id: &Value, method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_requests_notifications_and_responses() {
        let r = parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","x":1}"#).unwrap();
        assert!(matches!(r, Message::Request { ref method, .. } if method == "tools/list"));
        let n = parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert!(matches!(n, Message::Notification { .. }));
        let s = parse(br#"{"jsonrpc":"2.0","id":"a","result":{}}"#).unwrap();
        assert!(matches!(s, Message::Response { .. }));
    }

    #[test]
    fn malformed_input_gets_the_right_code_and_keeps_a_readable_id() {
        assert_eq!(parse(b"{nope").unwrap_err().code, PARSE_ERROR);
        assert_eq!(parse(b"[]").unwrap_err().code, INVALID_REQUEST);
        let e = parse(br#"{"jsonrpc":"1.0","id":7,"method":"x"}"#).unwrap_err();
        assert_eq!((e.code, e.id), (INVALID_REQUEST, json!(7)));
        let e = parse(br#"{"jsonrpc":"2.0","id":{},"method":"x"}"#).unwrap_err();
        assert_eq!((e.code, e.id), (INVALID_REQUEST, Value::Null));
        let e = parse(br#"{"jsonrpc":"2.0","id":3,"method":"x","params":5}"#).unwrap_err();
        assert_eq!(e.code, INVALID_REQUEST);
        assert_eq!(e.reason, Reason::MalformedRequest);
    }

    #[test]
    fn errors_carry_the_reason_code() {
        let e = error(
            &json!(1),
            POLICY_REFUSED,
            "no",
            Reason::RuleDeny,
            json!({"tool": "a.b"}),
        );
        assert_eq!(
            e,
            json!({"jsonrpc":"2.0","id":1,"error":{"code":-32001,"message":"no","data":{"reason":"rule_deny","tool":"a.b"}}})
        );
    }
}
