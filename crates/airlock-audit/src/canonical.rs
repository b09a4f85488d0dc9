//! The canonical encoding of an audit record.
//!
//! A record is the [`AuditEvent`] serialised as JSON (RFC 8259) in one exact
//! form, so the same event always gives the same bytes and therefore the
//! same hashes, whatever serde_json features the build happens to enable:
//!
//! * object members sorted by key, compared as UTF-8 bytes; no duplicate keys;
//! * no whitespace outside strings;
//! * strings escaped minimally: `"` `\` and control characters below U+0020
//!   (as `\n`, `\t`, ... or `\u00XX`); everything else is literal UTF-8;
//! * integers in plain decimal; other numbers as serde_json prints an `f64`
//!   (shortest round-trip form);
//! * absent optional fields are `null`; an empty `details` map is omitted.
//!
//! The stored bytes are what is hashed; readers decode them with any JSON
//! parser. [`is_canonical`] checks that a body is in this form.

use airlock_types::AuditEvent;
use serde_json::Value;

/// Encode an event canonically.
pub fn encode(event: &AuditEvent) -> Result<Vec<u8>, serde_json::Error> {
    let value = serde_json::to_value(event)?;
    let mut out = Vec::with_capacity(256);
    write_value(&value, &mut out);
    Ok(out)
}

/// Decode a stored record.
pub fn decode(body: &[u8]) -> Result<AuditEvent, serde_json::Error> {
    serde_json::from_slice(body)
}

/// True when `body` is valid JSON in exactly the canonical form.
pub fn is_canonical(body: &[u8]) -> bool {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => {
            let mut out = Vec::with_capacity(body.len());
            write_value(&v, &mut out);
            out == body
        }
        Err(_) => false,
    }
}

fn write_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::String(s) => write_str(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(k, out);
                out.push(b':');
                if let Some(v) = map.get(k.as_str()) {
                    write_value(v, out);
                }
            }
            out.push(b'}');
        }
    }
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0x08 => Some(b"\\b"),
            0x0c => Some(b"\\f"),
            _ => None,
        };
        if esc.is_none() && b >= 0x20 {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        match esc {
            Some(e) => out.extend_from_slice(e),
            None => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_types::{
        Actor, ActorKind, Decision, EventResult, Reason, RunId, TenantId, Timestamp,
    };

    fn event() -> AuditEvent {
        let mut e = AuditEvent::new(
            TenantId::default_tenant(),
            Actor::new(ActorKind::Agent, "run-1"),
            "egress.request",
            "https://example.com/a?b=\"c\"\n\u{1}é",
            Reason::RuleAllow,
            EventResult::Success,
        )
        .with_decision(Decision::deny(Reason::PrivateAddress))
        .with_run(RunId::new("run-1").expect("id"))
        .with_detail("zeta", 1)
        .with_detail(
            "alpha",
            serde_json::json!({"b": [true, null, 2.5], "a": "x"}),
        );
        e.time = Timestamp(1_700_000_000_000_123);
        e
    }

    #[test]
    fn encoding_is_exact_sorted_and_minimal() {
        let got = String::from_utf8(encode(&event()).expect("encode")).expect("utf8");
        let want = concat!(
            r#"{"action":"egress.request","actor":{"id":"run-1","kind":"agent"},"decision":"deny","#,
            r#""details":{"alpha":{"a":"x","b":[true,null,2.5]},"zeta":1},"reason":"private_address","#,
            r#""request_id":null,"resource":"https://example.com/a?b=\"c\"\n\u0001é","result":"denied","#,
            r#""run_id":"run-1","tenant":"default","time":1700000000000123}"#
        );
        assert_eq!(got, want);
    }

    #[test]
    fn round_trips_and_detects_non_canonical_bodies() {
        let e = event();
        let body = encode(&e).expect("encode");
        assert_eq!(decode(&body).expect("decode"), e);
        assert!(is_canonical(&body));
        // Same JSON value, different bytes: not canonical.
        let pretty = serde_json::to_vec_pretty(&e).expect("pretty");
        assert!(!is_canonical(&pretty));
        assert!(!is_canonical(b"{\"a\":1,\"a\":2"));
    }

    #[test]
    fn independent_of_field_insertion_order() {
        let mut a = event();
        let mut b = event();
        a.details.clear();
        b.details.clear();
        a = a.with_detail("x", 1).with_detail("y", 2);
        b = b.with_detail("y", 2).with_detail("x", 1);
        assert_eq!(encode(&a).expect("a"), encode(&b).expect("b"));
    }
}
