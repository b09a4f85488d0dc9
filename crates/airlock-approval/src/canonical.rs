//! The canonical form of a proposed call and its hash.
//!
//! A proposal is the JSON object `{subject, policy_version, tenant, run}`
//! (and `agent` when the run has one), canonicalized by RFC 8785 (JSON
//! Canonicalization Scheme: keys sorted by UTF-16 code units, ECMAScript
//! number formatting, minimal string escaping) by the
//! `serde_json_canonicalizer` crate; its SHA-256 in lower-case hex is the
//! approval's hash. The reviewer is shown exactly the canonical text and
//! approves its hash.
//!
//! RFC 8785 needs I-JSON: numbers are doubles. An integer a double does
//! not hold exactly (beyond ±2^53, e.g. 2^53 + 1) would be rounded, so two
//! different calls could share a hash; such a number is refused here
//! ([`CanonicalError::Number`]) and the call is not proposed.

use airlock_types::ApprovalRequest;
use serde_json::{Map, Value};

/// Up to here every integer is exactly a double (I-JSON, RFC 7493 §2.2);
/// beyond, only some are.
const MAX_SAFE: u64 = (1 << 53) - 1;

/// A proposal could not be put in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// An integer outside the range a double holds exactly.
    #[error(
        "an integer outside ±(2^53 - 1) cannot be canonicalized exactly (RFC 8785 needs I-JSON)"
    )]
    Number,
    /// The canonicalizer refused the value.
    #[error("cannot canonicalize: {0}")]
    Encode(String),
}

/// A proposal's canonical text and its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canonical {
    /// The RFC 8785 canonical JSON.
    pub json: String,
    /// SHA-256 of `json`, lower-case hex.
    pub sha256: String,
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

/// The RFC 8785 canonical text of `value`.
pub fn canonicalize(value: &Value) -> Result<String, CanonicalError> {
    check_numbers(value)?;
    serde_json_canonicalizer::to_string(value).map_err(|e| CanonicalError::Encode(e.to_string()))
}

fn check_numbers(v: &Value) -> Result<(), CanonicalError> {
    match v {
        Value::Number(n) => {
            // A safe integer canonicalizes to itself. Beyond ±(2^53 - 1)
            // an integer is accepted only when its text *is* its canonical
            // text: otherwise the reviewer would be shown another number
            // than the one that runs (2^60 + 256 is an exact double but
            // prints as 1152921504606847200), or two integers that round
            // to one double would share a hash.
            let safe = match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => u <= MAX_SAFE,
                (None, Some(i)) => i.unsigned_abs() <= MAX_SAFE,
                (None, None) => true,
            };
            if safe || serde_json_canonicalizer::to_string(v).is_ok_and(|c| c == n.to_string()) {
                Ok(())
            } else {
                Err(CanonicalError::Number)
            }
        }
        Value::Array(a) => a.iter().try_for_each(check_numbers),
        Value::Object(o) => o.values().try_for_each(check_numbers),
        _ => Ok(()),
    }
}

/// The canonical form and hash of `request`: its subject, the policy
/// version, the tenant, the run and (when set) the agent.
pub fn proposal(request: &ApprovalRequest) -> Result<Canonical, CanonicalError> {
    let subject = serde_json::to_value(&request.subject)
        .map_err(|e| CanonicalError::Encode(e.to_string()))?;
    let mut obj = Map::new();
    obj.insert("subject".into(), subject);
    obj.insert(
        "policy_version".into(),
        Value::String(request.policy_version.clone()),
    );
    obj.insert(
        "tenant".into(),
        Value::String(request.context.tenant.to_string()),
    );
    obj.insert("run".into(), Value::String(request.context.run.to_string()));
    if let Some(a) = &request.context.agent {
        obj.insert("agent".into(), Value::String(a.to_string()));
    }
    let json = canonicalize(&Value::Object(obj))?;
    let sha256 = sha256_hex(json.as_bytes());
    Ok(Canonical { json, sha256 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_types::{Actor, Reason, RunContext, RunId, Subject, TaintSet, TenantId};
    use proptest::prelude::*;

    fn canon(text: &str) -> String {
        canonicalize(&serde_json::from_str(text).expect("test JSON")).expect("canonical")
    }

    /// RFC 8785 §3.2.2, the sample input and its canonical output.
    #[test]
    fn rfc8785_sample() {
        let input = r#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        assert_eq!(
            canon(input),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }

    /// RFC 8785 §3.2.3: properties sorted by UTF-16 code units (the
    /// emoji's surrogates sort before U+FB33, unlike by code point).
    #[test]
    fn rfc8785_sorting() {
        let input = r#"{
          "\u20ac": "Euro Sign",
          "\r": "Carriage Return",
          "\ufb33": "Hebrew Letter Dalet With Dagesh",
          "1": "One",
          "\ud83d\ude00": "Emoji: Grinning Face",
          "\u0080": "Control",
          "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        let out = canon(input);
        let order = [
            "Carriage Return",
            "One",
            "Control",
            "Latin Small Letter O With Diaeresis",
            "Euro Sign",
            "Emoji: Grinning Face",
            "Hebrew Letter Dalet With Dagesh",
        ];
        let positions: Vec<usize> = order
            .iter()
            .map(|n| out.find(n).expect("every value present"))
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{out}");
        assert!(
            out.starts_with("{\"\\r\":\"Carriage Return\",\"1\":\"One\","),
            "{out}"
        );
    }

    /// RFC 8785 Appendix B: ECMAScript number serialization.
    #[test]
    fn rfc8785_numbers() {
        for (input, want) in [
            ("0", "0"),
            ("-0.0", "0"),
            ("1e21", "1e+21"),
            ("1e20", "100000000000000000000"),
            ("5e-324", "5e-324"),
            ("1.7976931348623157e308", "1.7976931348623157e+308"),
            ("9007199254740991", "9007199254740991"),
            ("0.000001", "0.000001"),
            ("1e-7", "1e-7"),
            ("-1.5", "-1.5"),
            ("295147905179352830000", "295147905179352830000"),
        ] {
            assert_eq!(canon(&format!("[{input}]")), format!("[{want}]"), "{input}");
        }
    }

    #[test]
    fn integers_a_double_does_not_hold_are_refused() {
        // Held exactly: fine (the proptest's regression).
        let v: serde_json::Value =
            serde_json::from_str("[22806820614033864, 9007199254740992]").expect("json");
        assert_eq!(
            canonicalize(&v).as_deref(),
            Ok("[22806820614033864,9007199254740992]")
        );
        for t in [
            "9007199254740993",
            "-9007199254740993",
            "18446744073709551615",
        ] {
            let v: serde_json::Value = serde_json::from_str(t).expect("json");
            assert_eq!(canonicalize(&v), Err(CanonicalError::Number), "{t}");
        }
        // 2^60 + 256 is an exact double, but its canonical text is
        // another integer: shown one number, the tool would run another.
        let exact: serde_json::Value = serde_json::from_str("1152921504606847232").expect("json");
        assert_eq!(canonicalize(&exact), Err(CanonicalError::Number));
        // The text the canonicalizer prints for that double is accepted,
        // and canonicalizes to itself (the CI failure of stop 22).
        let shown: serde_json::Value = serde_json::from_str("1152921504606847200").expect("json");
        assert_eq!(canonicalize(&shown).as_deref(), Ok("1152921504606847200"));
        let float = serde_json::json!(1152921504606847232.0f64);
        let c = canonicalize(&float).expect("a double");
        let back: serde_json::Value = serde_json::from_str(&c).expect("json");
        assert_eq!(canonicalize(&back).as_deref(), Ok(c.as_str()));
    }

    fn request(agent: bool) -> ApprovalRequest {
        let mut ctx = RunContext::new(
            TenantId::new("acme").expect("tenant"),
            RunId::new("run_1").expect("run"),
            Actor::system(),
        );
        if agent {
            ctx = ctx.with_agent(airlock_types::AgentId::new("bot").expect("agent"));
        }
        ApprovalRequest {
            context: ctx,
            subject: Subject::Egress {
                method: "POST".into(),
                url: "https://api.example.com:443/v1/x?y=1".into(),
                body_sha256: sha256_hex(b""),
            },
            policy_version: "sha256:00".into(),
            reason: Reason::ApprovalRequired,
            taint: TaintSet::default(),
        }
    }

    #[test]
    fn proposal_binds_subject_policy_tenant_run_and_agent() {
        let c = proposal(&request(false)).expect("canonical");
        assert_eq!(
            c.json,
            r#"{"policy_version":"sha256:00","run":"run_1","subject":{"body_sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","kind":"egress","method":"POST","url":"https://api.example.com:443/v1/x?y=1"},"tenant":"acme"}"#
        );
        assert_eq!(c.sha256, sha256_hex(c.json.as_bytes()));
        let with_agent = proposal(&request(true)).expect("canonical");
        assert!(with_agent.json.starts_with(r#"{"agent":"bot","#));
        assert_ne!(with_agent.sha256, c.sha256);
        // The taint and the reason are shown, not bound: the same call
        // asked for another reason is the same call.
        let mut r = request(false);
        r.reason = Reason::LethalTrifecta;
        assert_eq!(proposal(&r).expect("canonical").sha256, c.sha256);
        r.policy_version = "sha256:01".into();
        assert_ne!(proposal(&r).expect("canonical").sha256, c.sha256);
    }

    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            (-(1i64 << 53) + 1..(1i64 << 53)).prop_map(|i| serde_json::json!(i)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| serde_json::json!(f)),
            "\\PC{0,8}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                prop::collection::vec(("\\PC{0,6}", inner), 0..6)
                    .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Canonical text is valid JSON for the same value, and
        /// canonicalizing it again changes nothing.
        #[test]
        fn canonical_is_a_fixed_point(v in arb_json()) {
            let c = canonicalize(&v).expect("canonical");
            let back: serde_json::Value = serde_json::from_str(&c).expect("parses");
            prop_assert_eq!(canonicalize(&back).expect("canonical"), c);
        }
    }
}
