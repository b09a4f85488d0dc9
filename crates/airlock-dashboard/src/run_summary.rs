//! A run page's summary of its audit records: the sandbox's attestation
//! (as recorded in `sandbox.attestation`), the count of decisions by
//! outcome, and the LLM cost of its `gateway.call` / `llm.*` records.
//! Read only from the run's records; every value escaped.

use crate::html::esc;
use airlock_types::{Action, AuditEvent, Outcome};
use serde_json::Value;
use std::fmt::Write as _;

/// The summary of `recs` (one run's records, in order) as HTML.
pub(crate) fn summary(recs: &[(u64, AuditEvent)]) -> String {
    let mut b = String::new();
    let (mut allowed, mut denied, mut asked) = (0u64, 0u64, 0u64);
    for (_, ev) in recs {
        match ev.decision {
            Some(Outcome::Allow) => allowed += 1,
            Some(Outcome::Deny) => denied += 1,
            Some(Outcome::Ask) => asked += 1,
            None => {}
        }
    }
    let _ = write!(
        b,
        "<div class=\"box\" id=\"decisions\">Decisions: <span class=\"allow\" id=\"allowed\">{allowed}</span> allowed · \
         <span class=\"deny\" id=\"denied\">{denied}</span> denied · <span id=\"asked\">{asked}</span> sent for approval</div>"
    );
    if let Some(c) = llm_cost(recs) {
        let _ = write!(
            b,
            "<div class=\"box\" id=\"llm-cost\">LLM calls: {} · cost <b>${}.{:06}</b> (settled)</div>",
            c.calls,
            c.micros / 1_000_000,
            c.micros % 1_000_000,
        );
    }
    // The last attestation of the run (there is one per start).
    if let Some((_, ev)) = recs
        .iter()
        .rev()
        .find(|(_, ev)| ev.action == Action::SandboxAttestation)
    {
        b.push_str("<h2>Sandbox attestation</h2><dl id=\"attestation\" class=\"box mono\">");
        let mut rows = Vec::new();
        for (k, v) in &ev.details {
            flatten(k, v, &mut rows);
        }
        for (k, v) in rows {
            let _ = write!(b, "<dt>{}</dt><dd>{}</dd>", esc(&k), esc(&v));
        }
        b.push_str("</dl>");
    }
    b
}

/// Nested objects become dotted keys; arrays and scalars one line each
/// (strings without their quotes).
fn flatten(key: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                flatten(&format!("{key}.{k}"), v, out);
            }
        }
        Value::String(s) => out.push((key.to_owned(), s.clone())),
        other => out.push((key.to_owned(), other.to_string())),
    }
}

/// The LLM calls of a run and what they cost.
#[derive(Debug, PartialEq, Eq)]
struct Cost {
    calls: u64,
    /// Settled cost in millionths of a US dollar.
    micros: u64,
}

/// Sum the settled cost of the gateway's records (`gateway.call`, `llm.*`):
/// `settled_micros`, else `cost_usd`. `None`: the run made no LLM call.
fn llm_cost(recs: &[(u64, AuditEvent)]) -> Option<Cost> {
    let mut c = Cost {
        calls: 0,
        micros: 0,
    };
    for (_, ev) in recs {
        let a = ev.action.as_str();
        if ev.action != Action::GatewayCall && !a.starts_with("llm.") {
            continue;
        }
        c.calls += 1;
        let micros = match (ev.details.get("settled_micros"), ev.details.get("cost_usd")) {
            (Some(m), _) if m.as_u64().is_some() => m.as_u64().unwrap_or(0),
            (_, Some(usd)) => usd
                .as_f64()
                .filter(|x| x.is_finite() && *x > 0.0)
                .map_or(0, |x| (x * 1e6).round() as u64),
            _ => 0,
        };
        c.micros = c.micros.saturating_add(micros);
    }
    (c.calls > 0).then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_types::{Actor, ActorKind, Decision, Reason, TenantId};

    fn ev(action: Action) -> AuditEvent {
        AuditEvent::new(
            TenantId::new("acme").expect("tenant"),
            Actor::new(ActorKind::Agent, "bot"),
            action,
            "r".to_owned(),
            Reason::Recorded,
            airlock_types::EventResult::Success,
        )
    }

    #[test]
    fn cost_sums_the_gateway_calls_of_the_run_only() {
        let recs: Vec<(u64, AuditEvent)> = vec![
            (
                0,
                ev(Action::GatewayCall).with_detail("settled_micros", 1_250u64),
            ),
            (1, ev(Action::GatewayCall).with_detail("cost_usd", 0.5)),
            (2, ev(Action::LlmBudget)),
            (3, ev(Action::RunStart).with_detail("settled_micros", 99u64)),
        ];
        assert_eq!(
            llm_cost(&recs),
            Some(Cost {
                calls: 3,
                micros: 501_250
            })
        );
        assert!(summary(&recs).contains("LLM calls: 3 · cost <b>$0.501250</b>"));
        assert_eq!(llm_cost(&recs[3..]), None);
        assert!(!summary(&recs[3..]).contains("llm-cost"));
    }

    #[test]
    fn decisions_are_counted_by_outcome_and_the_attestation_is_escaped() {
        let deny = Decision::deny(Reason::LinkLocalAddress);
        let mut att = ev(Action::SandboxAttestation);
        att.details.insert(
            "init".into(),
            serde_json::json!({"network": "<b>x</b>", "namespaces": ["user", "net"]}),
        );
        let recs = vec![
            (0, att),
            (1, ev(Action::RunStart).with_decision(deny)),
            (
                2,
                ev(Action::RunStart).with_decision(Decision::allow(Reason::Recorded)),
            ),
        ];
        let html = summary(&recs);
        assert!(
            html.contains("<span class=\"allow\" id=\"allowed\">1</span> allowed"),
            "{html}"
        );
        assert!(
            html.contains("<span class=\"deny\" id=\"denied\">1</span> denied"),
            "{html}"
        );
        assert!(html.contains("<span id=\"asked\">0</span>"), "{html}");
        assert!(
            html.contains("<dt>init.namespaces</dt><dd>[&quot;user&quot;,&quot;net&quot;]</dd>"),
            "{html}"
        );
        assert!(
            html.contains("<dt>init.network</dt><dd>&lt;b&gt;x&lt;/b&gt;</dd>"),
            "{html}"
        );
    }
}
