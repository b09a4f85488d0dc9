//! Broker tests (moved from `airlock-vault` with the broker).

use super::*;
use airlock_types::{Reason, Secret, TenantId};
use std::time::Duration;

const VALUE: &str = "ghp_R3alT0kenValue0123456789abcdefXYZ";

fn tenant() -> TenantId {
    TenantId::default_tenant()
}

fn binding(hosts: &[&str]) -> Binding {
    Binding::new(
        "GITHUB_TOKEN",
        hosts.iter().map(|s| s.to_string()).collect(),
        None,
        None,
        vec![],
        vec![],
        None,
    )
    .expect("binding")
}

fn secret(v: &str) -> Secret<String> {
    Secret::new(v.to_owned())
}

// --- broker -------------------------------------------------------------

fn dest<'a>(host: &'a str, method: &'a str, path: &'a str) -> Destination<'a> {
    Destination {
        scheme: "https",
        host,
        port: 443,
        method,
        path,
    }
}

fn one_grant(broker: &Broker, run: &str, b: Binding, limits: RunLimits) -> String {
    let run = RunId::new(run).expect("run id");
    let minted = broker
        .start_run(
            &run,
            vec![Grant::new("GITHUB_TOKEN", b, secret(VALUE))],
            limits,
        )
        .expect("start");
    assert_eq!(minted.len(), 1);
    assert_eq!(minted[0].env.as_deref(), Some("GITHUB_TOKEN"));
    minted[0].handle.expose().clone()
}

#[test]
fn redeem_checks_every_caveat() {
    let broker = Broker::new();
    let b = Binding::new(
        "GITHUB_TOKEN",
        vec!["api.github.com".into()],
        None,
        None,
        vec!["GET".into()],
        vec!["/repos/*".into()],
        None,
    )
    .expect("binding");
    let h = one_grant(&broker, "r1", b, RunLimits::default());
    let ok = broker
        .redeem(&h, &dest("api.github.com", "GET", "/repos/a/b"))
        .expect("redeem");
    assert_eq!(ok.expose(), &format!("Bearer {VALUE}"));
    assert_eq!(format!("{ok:?}"), "[REDACTED]");

    let cases: &[(Destination<'_>, Reason)] = &[
        (
            dest("evil.test", "GET", "/repos/a"),
            Reason::CredentialHostMismatch,
        ),
        (
            Destination {
                port: 8443,
                ..dest("api.github.com", "GET", "/repos/a")
            },
            Reason::CredentialHostMismatch,
        ),
        (
            dest("api.github.com", "POST", "/repos/a"),
            Reason::CredentialMethodMismatch,
        ),
        (
            dest("api.github.com", "GET", "/user"),
            Reason::CredentialPathMismatch,
        ),
        (
            dest("api.github.com", "GET", "/repos/../user"),
            Reason::CredentialPathMismatch,
        ),
        (
            Destination {
                scheme: "http",
                ..dest("api.github.com", "GET", "/repos/a")
            },
            Reason::CredentialInsecureTransport,
        ),
    ];
    for (d, want) in cases {
        assert_eq!(broker.redeem(&h, d).expect_err("must fail"), *want, "{d:?}");
    }
    let unknown = "alh_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    assert_eq!(
        broker
            .redeem(unknown, &dest("api.github.com", "GET", "/repos/a"))
            .expect_err("must fail"),
        Reason::CredentialUnknown
    );
    for malformed in [
        "alh_",
        "alh_short",
        &format!("{h}x"),
        &h.to_uppercase(),
        "",
        &"a".repeat(100_000),
    ] {
        assert_eq!(
            broker
                .redeem(malformed, &dest("api.github.com", "GET", "/repos/a"))
                .expect_err("must fail"),
            Reason::CredentialUnknown
        );
    }

    // After the run ends, the handle is revoked.
    assert_eq!(broker.end_run(&RunId::new("r1").expect("id")), 1);
    assert_eq!(
        broker
            .redeem(&h, &dest("api.github.com", "GET", "/repos/a"))
            .expect_err("must fail"),
        Reason::CredentialRevoked
    );
    assert!(
        broker
            .run_secrets(&RunId::new("r1").expect("id"))
            .is_empty()
    );
}

#[test]
fn expiry_and_use_limits() {
    let broker = Broker::new();
    let h = one_grant(
        &broker,
        "r1",
        binding(&["api.github.com"]),
        RunLimits {
            ttl: None,
            max_uses: Some(2),
        },
    );
    let d = dest("api.github.com", "GET", "/");
    // A refused attempt does not burn a use.
    assert_eq!(
        broker
            .redeem(&h, &dest("evil.test", "GET", "/"))
            .expect_err("must fail"),
        Reason::CredentialHostMismatch
    );
    broker.redeem(&h, &d).expect("use 1");
    broker.redeem(&h, &d).expect("use 2");
    assert_eq!(
        broker.redeem(&h, &d).expect_err("must fail"),
        Reason::CredentialUsesExhausted
    );

    let h2 = one_grant(
        &broker,
        "r2",
        binding(&["api.github.com"]),
        RunLimits {
            ttl: Some(Duration::from_millis(50)),
            max_uses: None,
        },
    );
    broker.redeem(&h2, &d).expect("before expiry");
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(
        broker.redeem(&h2, &d).expect_err("must fail"),
        Reason::CredentialExpired
    );
    // Starting the same run twice is refused.
    let again = broker
        .start_run(&RunId::new("r2").expect("id"), vec![], RunLimits::default())
        .expect_err("must fail");
    assert_eq!(again.to_string(), "run r2 already has credential handles");
}

#[test]
fn header_injection_bearer_basic_and_refusals() {
    let broker = Broker::new();
    let h = one_grant(
        &broker,
        "r1",
        binding(&["api.github.com"]),
        RunLimits::default(),
    );
    let d = dest("api.github.com", "GET", "/user");

    assert!(
        broker
            .inject_header("Accept", "application/json", &d)
            .expect("no handle")
            .is_none()
    );
    let v = broker
        .inject_header("authorization", &format!("token {h}"), &d)
        .expect("inject")
        .expect("some");
    assert_eq!(v.value.expose(), &format!("Bearer {VALUE}"));
    assert_eq!(
        v.uses,
        vec![Use {
            secret: "GITHUB_TOKEN".into(),
            location: "header:Authorization".into()
        }]
    );

    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{h}"));
    let deny = |name: &str, value: &str, d: &Destination<'_>| {
        broker.inject_header(name, value, d).expect_err("must fail")
    };
    // A header binding does not place the value in Basic credentials.
    assert_eq!(
        deny("Authorization", &format!("Basic {basic}"), &d),
        Denial {
            reason: Reason::CredentialWrongLocation,
            secret: Some("GITHUB_TOKEN".into()),
            found: Some("basic:Authorization".into()),
        }
    );
    assert_eq!(
        deny("X-Api-Key", &h, &d),
        Denial {
            reason: Reason::CredentialWrongLocation,
            secret: Some("GITHUB_TOKEN".into()),
            found: Some("header:X-Api-Key".into()),
        }
    );
    assert_eq!(
        deny(
            "Authorization",
            &format!("Bearer {h}"),
            &dest("evil.test", "GET", "/")
        )
        .reason,
        Reason::CredentialHostMismatch
    );
    assert_eq!(
        deny("Authorization", &format!("{h} {h}"), &d).reason,
        Reason::MalformedRequest
    );
    assert_eq!(
        deny("Authorization", "Bearer alh_truncated", &d).reason,
        Reason::CredentialUnknown
    );
    let huge = format!("Bearer {}{h}", "x ".repeat(MAX_INSPECTED_LEN));
    assert_eq!(
        deny("Authorization", &huge, &d).reason,
        Reason::LimitExceeded
    );
    assert_eq!(
        deny("X-Api-Key", &h, &d).to_string(),
        "credential_wrong_location (secret GITHUB_TOKEN)"
    );
    // Review item 6: a header-bound handle in any query parameter is refused.
    assert_eq!(
        broker
            .inject_query(&format!("channel=public&text={h}"), &d)
            .expect_err("must fail"),
        Denial {
            reason: Reason::CredentialWrongLocation,
            secret: Some("GITHUB_TOKEN".into()),
            found: Some("query:text".into()),
        }
    );
    assert!(broker.inject_query("a=1", &d).expect("no handle").is_none());
}

#[test]
fn basic_and_query_bindings_place_the_value_only_there() {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let broker = Broker::new();
    let basic = one_grant(
        &broker,
        "r-basic",
        binding(&["api.github.com"])
            .as_basic_password()
            .expect("basic"),
        RunLimits::default(),
    );
    let d = dest("api.github.com", "GET", "/user");
    let v = broker
        .inject_header(
            "Authorization",
            &format!("Basic {}", b64(&format!("x-access-token:{basic}"))),
            &d,
        )
        .expect("inject")
        .expect("some");
    assert_eq!(
        v.value.expose(),
        &format!("Basic {}", b64(&format!("x-access-token:{VALUE}")))
    );
    assert_eq!(v.uses[0].location, "basic:Authorization");
    let wrong = |name: &str, value: &str| {
        broker
            .inject_header(name, value, &d)
            .expect_err("must fail")
            .reason
    };
    assert_eq!(
        wrong("Authorization", &format!("Bearer {basic}")),
        Reason::CredentialWrongLocation
    );
    assert_eq!(
        wrong(
            "Authorization",
            &format!("Basic {}", b64(&format!("{basic}:x")))
        ),
        Reason::CredentialWrongLocation
    );
    assert_eq!(
        wrong("X-Other", &format!("Basic {}", b64(&format!("u:{basic}")))),
        Reason::CredentialWrongLocation
    );

    let broker = Broker::new();
    let q = one_grant(
        &broker,
        "r-query",
        binding(&["api.github.com"])
            .in_query("token")
            .expect("query"),
        RunLimits::default(),
    );
    let v = broker
        .inject_query(&format!("a=1&token={q}&b=2"), &d)
        .expect("query")
        .expect("some");
    assert_eq!(v.value.expose(), &format!("a=1&token={VALUE}&b=2"));
    assert_eq!(v.uses[0].location, "query:token");
    // The name is compared decoded.
    assert!(broker.inject_query(&format!("t%6Fken={q}"), &d).is_ok());
    let refused = |query: String| {
        broker
            .inject_query(&query, &d)
            .expect_err("must fail")
            .reason
    };
    for query in [
        format!("text={q}"),
        format!("token=x.{q}"),
        format!("token=Bearer+{q}"),
        format!("{q}=token"),
        format!("token={q}&text={q}"),
        format!("TOKEN={q}"),
    ] {
        assert_eq!(refused(query), Reason::CredentialWrongLocation);
    }
    assert_eq!(
        broker
            .inject_header("Authorization", &format!("Bearer {q}"), &d)
            .expect_err("must fail")
            .reason,
        Reason::CredentialWrongLocation
    );
    // Wrong host comes first, so the record says what matters most.
    assert_eq!(
        broker
            .inject_query(&format!("text={q}"), &dest("evil.test", "GET", "/"))
            .expect_err("must fail")
            .reason,
        Reason::CredentialHostMismatch
    );
    // A handle in the path is never placed anywhere.
    assert_eq!(
        broker.refuse_misplaced(&q, &d, Found::Path),
        Denial {
            reason: Reason::CredentialWrongLocation,
            secret: Some("GITHUB_TOKEN".into()),
            found: Some("path".into()),
        }
    );
}

#[test]
fn a_use_is_audited_by_name_and_place_never_value() {
    let u = Use {
        secret: "GITHUB_TOKEN".into(),
        location: "header:Authorization".into(),
    };
    let d = dest("api.github.com", "POST", "/repos/a?x=1");
    let ev = u.audit_event(tenant(), RunId::new("r").expect("id"), &d);
    assert_eq!(
        (ev.action.as_str(), ev.resource.as_str(), ev.reason),
        (
            "credential.used",
            "https://api.github.com:443/repos/a",
            Reason::CredentialUsed
        )
    );
    assert_eq!(
        serde_json::to_value(&ev.details).expect("json"),
        serde_json::json!({
            "method": "POST",
            "secret": "GITHUB_TOKEN",
            "location": "header:Authorization"
        })
    );
}

#[test]
fn run_secrets_lists_values_and_handles_for_the_scrubber() {
    let broker = Broker::new();
    let h = one_grant(
        &broker,
        "r1",
        binding(&["api.github.com"]),
        RunLimits::default(),
    );
    let known = broker.run_secrets(&RunId::new("r1").expect("id"));
    assert_eq!(known.len(), 1);
    assert_eq!(
        (
            known[0].name.as_str(),
            known[0].value.expose().as_str(),
            known[0].handle.expose()
        ),
        ("GITHUB_TOKEN", VALUE, &h)
    );
    assert!(!format!("{known:?}").contains(VALUE));
    assert!(!format!("{known:?}").contains(&h));
}

#[test]
fn run_guard_revokes_on_drop_and_denials_audit_without_secrets() {
    let broker = std::sync::Arc::new(Broker::new());
    let run = RunId::new("r-guard").expect("id");
    let grant = Grant::new("GITHUB_TOKEN", binding(&["api.github.com"]), secret(VALUE));
    let (guard, minted) = broker
        .start_run_guarded(&run, vec![grant], RunLimits::default())
        .expect("start");
    let h = minted[0].handle.expose().clone();
    let d = dest("api.github.com", "GET", "/");
    broker.redeem(&h, &d).expect("live while the guard lives");
    let evil = dest("evil.test", "POST", "/collect?x=1");
    let denial = broker
        .inject_header("Authorization", &format!("Bearer {h}"), &evil)
        .expect_err("must fail");
    let ev = denial.audit_event(tenant(), run.clone(), &evil);
    assert_eq!(
        (ev.action.as_str(), ev.resource.as_str()),
        ("credential.denied", "https://evil.test:443/collect")
    );
    assert_eq!(
        (ev.reason, ev.result, ev.run_id.as_ref()),
        (
            Reason::CredentialHostMismatch,
            airlock_types::EventResult::Denied,
            Some(&run)
        )
    );
    assert_eq!(
        ev.details.get("secret"),
        Some(&serde_json::json!("GITHUB_TOKEN"))
    );
    let json = serde_json::to_string(&ev).expect("json");
    assert!(!json.contains(VALUE) && !json.contains(&h), "{json}");
    drop(guard);
    assert_eq!(
        broker.redeem(&h, &d).expect_err("must fail"),
        Reason::CredentialRevoked
    );
}

#[test]
fn concurrent_redeems_never_exceed_max_uses() {
    let broker = std::sync::Arc::new(Broker::new());
    let h = one_grant(
        &broker,
        "r-par",
        binding(&["api.github.com"]),
        RunLimits {
            ttl: None,
            max_uses: Some(1000),
        },
    );
    let ok = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..500 {
                    if broker
                        .redeem(&h, &dest("api.github.com", "GET", "/"))
                        .is_ok()
                    {
                        ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(ok.into_inner(), 1000);
}
