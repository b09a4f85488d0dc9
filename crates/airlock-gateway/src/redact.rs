//! The request walk: every text the provider would see goes through the
//! run's reversible scrubbing session, whatever field it is in.
//!
//! Rather than list the fields that carry text (and miss the next one a
//! provider adds), the walk masks *every* string value except the ones
//! that are structure: identifiers, enum-like fields, base64 media, and
//! JSON schemas (whose strings are patterns and names the model must see
//! unchanged). Unknown fields therefore keep their meaning and are still
//! redacted.

use airlock_scrub::{Session, Stats};
use serde_json::Value;

/// Keys whose string values are structure, not text.
const STRUCTURAL: &[&str] = &[
    "model",
    "role",
    "type",
    "id",
    "tool_call_id",
    "tool_use_id",
    "call_id",
    "item_id",
    "previous_response_id",
    "object",
    "media_type",
    "detail",
    "encoding_format",
    "service_tier",
    "reasoning_effort",
    "effort",
    "tool_choice",
    "truncation",
    "file_id",
    "signature",
];

/// Keys whose whole subtree is left alone: schemas and binary media.
const OPAQUE: &[&str] = &[
    "parameters",
    "input_schema",
    "schema",
    "json_schema",
    "data",
];

/// What the walk did.
#[derive(Debug, Default)]
pub(crate) struct Walk {
    /// Bytes of text sent to the model (an upper bound on its tokens: a
    /// byte-level BPE token covers at least one byte).
    pub text_bytes: u64,
    /// Objects seen (each message costs a few tokens of framing).
    pub objects: u64,
    /// What was masked.
    pub stats: Stats,
}

/// Mask every text string in `v` in place.
pub(crate) fn redact(v: &mut Value, session: &mut Session, walk: &mut Walk) {
    match v {
        Value::String(s) => {
            walk.text_bytes += s.len() as u64;
            let r = session.redact(s);
            if r.stats.total() > 0 {
                walk.stats.merge(&r.stats);
                *s = r.text;
            }
        }
        Value::Array(a) => {
            for x in a {
                redact(x, session, walk);
            }
        }
        Value::Object(m) => {
            walk.objects += 1;
            for (k, x) in m.iter_mut() {
                if OPAQUE.contains(&k.as_str()) {
                    continue;
                }
                if STRUCTURAL.contains(&k.as_str()) && x.is_string() {
                    continue;
                }
                if k == "url"
                    && let Some(u) = x.as_str()
                    && u.starts_with("data:")
                {
                    continue;
                }
                redact(x, session, walk);
            }
        }
        Value::Number(_) | Value::Bool(_) | Value::Null => {}
    }
}

/// A conservative count of prompt tokens: text bytes plus framing.
pub(crate) fn token_bound(walk: &Walk) -> u64 {
    walk.text_bytes
        .saturating_add(walk.objects.saturating_mul(8))
        .saturating_add(16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_scrub::Scrubber;
    use serde_json::json;

    #[test]
    fn every_text_field_is_masked_and_structure_is_kept() {
        let mut s = Scrubber::builtin().session();
        let mut v = json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "customer bob@example.org"},
                {"role": "user", "content": [{"type": "text", "text": "card 4539 1488 0343 6467"}]},
                {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                    "function": {"name": "lookup", "arguments": "{\"email\":\"bob@example.org\"}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "IBAN DE89 3704 0044 0532 0130 00"}
            ],
            "tools": [{"type": "function", "function": {"name": "lookup",
                "parameters": {"type": "object", "properties": {"email": {"type": "string", "pattern": "^.+@.+$"}}}}}],
            "unknown_future_field": {"note": "reach alice@example.com"}
        });
        let mut w = Walk::default();
        redact(&mut v, &mut s, &mut w);
        let text = v.to_string();
        for leak in ["bob@example.org", "4539 1488", "DE89", "alice@example.com"] {
            assert!(!text.contains(leak), "{leak} leaked: {text}");
        }
        assert_eq!(v["messages"][0]["content"], "customer [EMAIL_1]");
        assert_eq!(
            v["messages"][2]["tool_calls"][0]["function"]["arguments"],
            "{\"email\":\"[EMAIL_1]\"}"
        );
        assert_eq!(
            v["tools"][0]["function"]["parameters"]["properties"]["email"]["pattern"],
            "^.+@.+$"
        );
        assert_eq!(v["model"], "gpt-4o");
        assert_eq!(w.stats.by_type.get("EMAIL"), Some(&3));
    }
}
