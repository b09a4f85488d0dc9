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
//!
//! [`encode`] writes the event's fields straight to the output in the order
//! of their keys (no intermediate `serde_json::Value`); a test checks it
//! byte for byte against serialising through a `Value`, the original path.

use airlock_types::{ActorKind, AuditEvent, EventResult};
use serde_json::{Map, Number, Value};

/// Encode an event canonically. (Never fails today; the `Result` is kept so
/// callers need not change if a field ever needs a fallible encoding.)
pub fn encode(event: &AuditEvent) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(384);
    write_event(event, &mut out);
    Ok(out)
}

/// The members of an [`AuditEvent`] in key byte order. The destructuring
/// names every field, so adding one to `AuditEvent` fails to compile here
/// instead of silently dropping it from the record.
fn write_event(event: &AuditEvent, out: &mut Vec<u8>) {
    let AuditEvent {
        time,
        tenant,
        actor,
        agent_id,
        run_id,
        request_id,
        action,
        resource,
        decision,
        reason,
        result,
        details,
    } = event;
    let airlock_types::Actor { kind, id } = actor;
    out.extend_from_slice(b"{\"action\":");
    write_str(action.as_str(), out);
    out.extend_from_slice(b",\"actor\":{\"id\":");
    write_str(id, out);
    out.extend_from_slice(b",\"kind\":");
    write_str(actor_kind(*kind), out);
    out.push(b'}');
    // `skip_serializing_if = "Option::is_none"` on the field.
    if let Some(agent) = agent_id {
        out.extend_from_slice(b",\"agent_id\":");
        write_str(agent.as_str(), out);
    }
    out.extend_from_slice(b",\"decision\":");
    write_opt(decision.map(|o| o.as_str()), out);
    // `skip_serializing_if = "Map::is_empty"` on the field.
    if !details.is_empty() {
        out.extend_from_slice(b",\"details\":");
        write_map(details, out);
    }
    out.extend_from_slice(b",\"reason\":");
    write_str(reason.code(), out);
    out.extend_from_slice(b",\"request_id\":");
    write_opt(request_id.as_ref().map(|r| r.as_str()), out);
    out.extend_from_slice(b",\"resource\":");
    write_str(resource, out);
    out.extend_from_slice(b",\"result\":");
    write_str(event_result(*result), out);
    out.extend_from_slice(b",\"run_id\":");
    write_opt(run_id.as_ref().map(|r| r.as_str()), out);
    out.extend_from_slice(b",\"tenant\":");
    write_str(tenant.as_str(), out);
    out.extend_from_slice(b",\"time\":");
    write_i64(time.as_micros(), out);
    out.push(b'}');
}

/// The serde names (`rename_all = "snake_case"`) of the enums without an
/// `as_str` of their own.
fn actor_kind(k: ActorKind) -> &'static str {
    match k {
        ActorKind::Operator => "operator",
        ActorKind::Agent => "agent",
        ActorKind::System => "system",
        ActorKind::Token => "token",
    }
}

fn event_result(r: EventResult) -> &'static str {
    match r {
        EventResult::Success => "success",
        EventResult::Denied => "denied",
        EventResult::Failure => "failure",
    }
}

fn write_opt(s: Option<&str>, out: &mut Vec<u8>) {
    match s {
        Some(s) => write_str(s, out),
        None => out.extend_from_slice(b"null"),
    }
}

/// A `Value` in canonical form (members sorted by key bytes), without
/// allocating per object or per integer.
fn write_json(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_str(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => write_map(map, out),
    }
}

fn write_map(map: &Map<String, Value>, out: &mut Vec<u8>) {
    // serde_json's default `Map` is a `BTreeMap`, already in key byte order
    // (`String`'s `Ord`); sort only if a feature such as `preserve_order`
    // changed that.
    let sorted = map
        .keys()
        .zip(map.keys().skip(1))
        .all(|(a, b)| a.as_bytes() < b.as_bytes());
    out.push(b'{');
    if sorted {
        for (i, (k, v)) in map.iter().enumerate() {
            write_member(i, k, v, out);
        }
    } else {
        write_sorted(map.iter().map(|(k, v)| (k.as_str(), v)).collect(), out);
    }
    out.push(b'}');
}

/// Members in key byte order, whatever order they came in.
fn write_sorted(mut members: Vec<(&str, &Value)>, out: &mut Vec<u8>) {
    members.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    for (i, (k, v)) in members.into_iter().enumerate() {
        write_member(i, k, v, out);
    }
}

fn write_member(i: usize, k: &str, v: &Value, out: &mut Vec<u8>) {
    if i > 0 {
        out.push(b',');
    }
    write_str(k, out);
    out.push(b':');
    write_json(v, out);
}

/// Integers in plain decimal; floats through serde_json's own `Display`
/// (what the original `Value` path printed), so the two agree by construction.
fn write_number(n: &Number, out: &mut Vec<u8>) {
    if let Some(u) = n.as_u64() {
        write_u64(u, out);
    } else if let Some(i) = n.as_i64() {
        write_i64(i, out);
    } else {
        use std::io::Write as _;
        write!(out, "{n}").expect("invariant: writing to a Vec<u8> cannot fail");
    }
}

fn write_i64(i: i64, out: &mut Vec<u8>) {
    if i < 0 {
        out.push(b'-');
    }
    write_u64(i.unsigned_abs(), out);
}

fn write_u64(mut u: u64, out: &mut Vec<u8>) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        // `u % 10` is a single digit: the cast cannot truncate.
        buf[at] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[at..]);
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
            write_json(&v, &mut out);
            out == body
        }
        Err(_) => false,
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
        Actor, ActorKind, AgentId, Decision, EventResult, Outcome, Reason, RequestId, RunId,
        TenantId, Timestamp,
    };
    use proptest::prelude::*;

    /// The original writer: a `Value` with object keys sorted per object.
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

    /// The original encoder, kept as the reference the direct one must match
    /// byte for byte: serialise through a `Value` tree, then write it sorted.
    fn reference_encode(event: &AuditEvent) -> Vec<u8> {
        let value = serde_json::to_value(event).expect("reference: to_value");
        let mut out = Vec::new();
        write_value(&value, &mut out);
        out
    }

    fn event() -> AuditEvent {
        let mut e = AuditEvent::new(
            TenantId::default_tenant(),
            Actor::new(ActorKind::Agent, "run-1"),
            airlock_types::Action::EgressRequest,
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

    #[test]
    fn matches_the_reference_on_the_fixed_event() {
        let e = event();
        assert_eq!(encode(&e).expect("encode"), reference_encode(&e));
        let mut bare = event();
        bare.details.clear();
        bare.decision = None;
        bare.run_id = None;
        let body = encode(&bare).expect("encode");
        assert_eq!(body, reference_encode(&bare));
        assert!(!String::from_utf8(body).expect("utf8").contains("details"));
    }

    #[test]
    fn unordered_members_are_sorted_by_key_bytes() {
        // Not reachable with serde_json's default `BTreeMap`-backed `Map`,
        // only if a feature like `preserve_order` keeps insertion order.
        // U+10000 sorts after U+FFFF as UTF-8 bytes (before it in UTF-16).
        let (one, two) = (Value::from(1), Value::from("2"));
        let mut out = Vec::new();
        write_sorted(
            vec![
                ("b", &one),
                ("\u{10000}", &two),
                ("a", &two),
                ("\u{ffff}", &one),
                ("B", &one),
            ],
            &mut out,
        );
        let want = "\"B\":1,\"a\":\"2\",\"b\":1,\"\u{ffff}\":1,\"\u{10000}\":\"2\"";
        assert_eq!(String::from_utf8(out).expect("utf8"), want);
    }

    /// Characters that exercise escaping and byte-vs-UTF-16 key order:
    /// controls, `"` `\`, DEL, U+2028, BMP private use, U+FFFF vs U+10000.
    fn tricky_char() -> impl Strategy<Value = char> {
        prop_oneof![
            4 => proptest::char::range('a', 'e'),
            1 => proptest::char::range('A', 'C'),
            2 => proptest::char::range('\u{0}', '\u{1f}'),
            3 => prop::sample::select(vec![
                '"', '\\', '/', ' ', '\u{7f}', 'é', 'ß', '\u{2028}', '\u{e000}', '\u{fffd}',
                '\u{ffff}', '\u{10000}', '\u{1f600}', '\u{10ffff}',
            ]),
            1 => any::<char>(),
        ]
    }

    fn tricky_string() -> impl Strategy<Value = String> {
        proptest::collection::vec(tricky_char(), 0..12).prop_map(|v| v.into_iter().collect())
    }

    fn id_string() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_.:-]{1,24}"
    }

    fn number() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (-1000i64..1000).prop_map(Value::from),
            any::<f64>().prop_map(|f| {
                serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
            }),
            prop::sample::select(vec![0.0, -0.0, 2.5, -1e-7, 1e21, 1e300, 0.1, 3.0])
                .prop_map(Value::from),
        ]
    }

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            number(),
            tricky_string().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(tricky_string(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    prop_compose! {
        fn audit_event()(
            kind in prop::sample::select(vec![
                ActorKind::Operator, ActorKind::Agent, ActorKind::System, ActorKind::Token,
            ]),
            actor_id in tricky_string(),
            tenant in id_string(),
            agent in proptest::option::of(id_string()),
            run in proptest::option::of(id_string()),
            request in proptest::option::of(id_string()),
            action in prop::sample::select(airlock_types::Action::ALL.to_vec()),
            resource in tricky_string(),
            decision in proptest::option::of(
                prop::sample::select(vec![Outcome::Allow, Outcome::Ask, Outcome::Deny])),
            reason in prop::sample::select(Reason::ALL.to_vec()),
            result in prop::sample::select(vec![
                EventResult::Success, EventResult::Denied, EventResult::Failure,
            ]),
            time in any::<i64>(),
            details in proptest::collection::btree_map(tricky_string(), json(), 0..8),
        ) -> AuditEvent {
            AuditEvent {
                time: Timestamp(time),
                tenant: TenantId::new(tenant).expect("valid by construction"),
                actor: Actor::new(kind, actor_id),
                agent_id: agent.map(|a| AgentId::new(a).expect("valid by construction")),
                run_id: run.map(|r| RunId::new(r).expect("valid by construction")),
                request_id: request.map(|r| RequestId::new(r).expect("valid by construction")),
                action,
                resource,
                decision,
                reason,
                result,
                details: details.into_iter().collect(),
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn direct_encoding_equals_the_value_path(e in audit_event()) {
            let got = encode(&e).expect("encode");
            prop_assert_eq!(&got, &reference_encode(&e));
            // The workspace enables serde_json's `float_roundtrip`, so every
            // printed f64 reads back exactly and the body is canonical.
            prop_assert!(is_canonical(&got));
            prop_assert_eq!(decode(&got).expect("decode"), e);
        }
    }

    /// The generator above really reaches every variant (so the property is
    /// not vacuous for any of them).
    #[test]
    fn every_variant_is_encoded_like_serde_names_it() {
        for kind in [
            ActorKind::Operator,
            ActorKind::Agent,
            ActorKind::System,
            ActorKind::Token,
        ] {
            for result in [
                EventResult::Success,
                EventResult::Denied,
                EventResult::Failure,
            ] {
                for decision in [
                    None,
                    Some(Outcome::Allow),
                    Some(Outcome::Ask),
                    Some(Outcome::Deny),
                ] {
                    for reason in Reason::ALL {
                        let mut e = event();
                        e.actor.kind = kind;
                        e.result = result;
                        e.decision = decision;
                        e.reason = *reason;
                        e.request_id = Some(RequestId::new("req-1").expect("id"));
                        assert_eq!(encode(&e).expect("encode"), reference_encode(&e));
                    }
                }
            }
        }
    }
}
