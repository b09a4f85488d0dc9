//! The egress approvals hook over a real store for taint: which requests
//! it holds (a policy `ask`, autonomy, the lethal trifecta), what it asks
//! (method, URL, body digest) and what it does with each verdict. The
//! approver is a recording stand-in for the `Approver` trait (the service
//! itself is tested in `approvals.rs` and end to end).

use airlock_approval::{EgressGuard, EgressGuardConfig, HostLabel, StoreTaint, sha256_hex};
use airlock_hook::{Approved, Hook, HookBody, Outcome, RequestCtx, Via};
use airlock_policy::{EgressPolicy, Mode, PolicySpec, RuleSpec};
use airlock_types::{
    Actor, ApprovalRequest, Approver, AskFuture, Autonomy, Decision, MemorySink, Outcome as O,
    Reason, RequestId, RunContext, RunId, Subject, TenantId, Verdict,
};
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug)]
struct Recorder {
    asked: Mutex<Vec<ApprovalRequest>>,
    verdict: Verdict,
}

impl Approver for Recorder {
    fn ask(&self, request: ApprovalRequest, _wait: Duration) -> AskFuture<'_> {
        self.asked.lock().expect("lock").push(request);
        let v = self.verdict.clone();
        Box::pin(async move { v })
    }
}

fn rule(host: &str, methods: &[&str], action: O) -> RuleSpec {
    RuleSpec {
        hosts: vec![host.into()],
        schemes: vec![],
        methods: methods.iter().map(|s| (*s).into()).collect(),
        paths: vec![],
        ports: vec![],
        websocket: false,
        allow_userinfo: false,
        action,
        case_insensitive: None,
    }
}

struct Setup {
    guard: EgressGuard,
    approver: Arc<Recorder>,
    _dir: tempfile::TempDir,
}

fn setup(autonomy: Autonomy, verdict: Verdict, max_body: usize) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = Arc::new(MemorySink::new());
    let taint = Arc::new(StoreTaint::open(&dir.path().join("db"), sink.clone()).expect("taint"));
    let policy = EgressPolicy::compile(PolicySpec {
        mode: Mode::ReadPublic,
        rules: vec![
            rule("explicit.example", &["POST"], O::Allow),
            rule("any.example", &[], O::Allow),
        ],
        ..PolicySpec::default()
    })
    .expect("policy")
    .with_approvals(true);
    let approver = Arc::new(Recorder {
        asked: Mutex::new(Vec::new()),
        verdict,
    });
    let guard = EgressGuard::new(
        approver.clone(),
        taint,
        Arc::new(policy),
        sink,
        EgressGuardConfig {
            autonomy,
            private_hosts: vec![HostLabel::new("*.corp.example")],
            untrusted_hosts: vec![HostLabel::new("forum.example")],
            trifecta: true,
            max_body,
            wait: Duration::from_secs(1),
            policy_version: "sha256:p".into(),
        },
    );
    Setup {
        guard,
        approver,
        _dir: dir,
    }
}

fn ctx(method: &str, host: &str, path: &str, decision: Decision, run: bool) -> RequestCtx {
    let c = RequestCtx::new(
        TenantId::new("acme").expect("tenant"),
        None,
        RequestId::new("req1").expect("rid"),
        http::uri::Scheme::HTTPS,
        host,
        443,
        Method::from_bytes(method.as_bytes()).expect("method"),
        path,
        Via::InterceptedTunnel,
    )
    .with_decision(decision);
    if run {
        c.with_context(RunContext::new(
            TenantId::new("acme").expect("tenant"),
            RunId::new("run1").expect("run"),
            Actor::system(),
        ))
    } else {
        c
    }
}

fn req(method: &str, uri: &str, body: &'static str, auth: Option<&str>) -> Request<HookBody> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    b.body(
        Full::new(Bytes::from_static(body.as_bytes()))
            .map_err(|e| match e {})
            .boxed(),
    )
    .expect("request")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn body_of(o: Outcome) -> (Option<Approved>, Bytes) {
    match o {
        Outcome::Continue(r) => {
            let approved = r.extensions().get::<Approved>().cloned();
            let b = r.into_body().collect().await.expect("body").to_bytes();
            (approved, b)
        }
        Outcome::Refuse(r) => panic!("refused: {:?}", r.decision),
    }
}

fn approved() -> Verdict {
    Verdict::Approved {
        id: "apr_1".into(),
        sha256: "ab".into(),
    }
}

#[test]
fn ask_writes_holds_writes_only_and_asks_for_exactly_the_request() {
    let s = setup(Autonomy::AskWrites, approved(), 1024);
    rt().block_on(async {
        let allow = Decision::allow(Reason::RuleAllow);
        let c = ctx("GET", "any.example", "/a", allow, true);
        let (mark, _) = body_of(s.guard.on_request(&c, req("GET", "/a", "", None)).await).await;
        assert_eq!(mark, None);
        assert!(s.approver.asked.lock().expect("lock").is_empty());

        let c = ctx("POST", "any.example", "/v1/x", allow, true);
        let out = s
            .guard
            .on_request(&c, req("POST", "/v1/x?q=1", "payload", None))
            .await;
        let (mark, body) = body_of(out).await;
        assert_eq!(
            mark,
            Some(Approved {
                id: "apr_1".into(),
                sha256: "ab".into()
            })
        );
        assert_eq!(
            body,
            Bytes::from_static(b"payload"),
            "the body goes on unchanged"
        );
        let asked = s.approver.asked.lock().expect("lock");
        assert_eq!(asked.len(), 1);
        assert_eq!(asked[0].reason, Reason::ApprovalRequired);
        assert_eq!(asked[0].policy_version, "sha256:p");
        assert_eq!(
            asked[0].subject,
            Subject::Egress {
                method: "POST".into(),
                url: "https://any.example:443/v1/x?q=1".into(),
                body_sha256: sha256_hex(b"payload"),
            }
        );
    });
}

#[test]
fn ask_none_sends_allowed_writes_and_a_refused_ask_answers_with_its_reason() {
    let s = setup(
        Autonomy::AskNone,
        Verdict::Refused {
            id: Some("apr_9".into()),
            reason: Reason::ApprovalDenied,
        },
        1024,
    );
    rt().block_on(async {
        let c = ctx(
            "POST",
            "any.example",
            "/x",
            Decision::allow(Reason::RuleAllow),
            true,
        );
        body_of(s.guard.on_request(&c, req("POST", "/x", "b", None)).await).await;
        assert!(s.approver.asked.lock().expect("lock").is_empty());

        let c = ctx(
            "POST",
            "any.example",
            "/x",
            Decision::ask(Reason::ApprovalRequired),
            true,
        );
        let Outcome::Refuse(r) = s.guard.on_request(&c, req("POST", "/x", "b", None)).await else {
            panic!("an ask refused by the approver must be refused");
        };
        assert_eq!(r.decision, Decision::deny(Reason::ApprovalDenied));
        let resp = r.response.expect("own answer");
        assert_eq!(resp.status(), 403);
        assert_eq!(resp.headers()["x-airlock-reason"], "approval_denied");
        let ev = r.event.expect("audit event");
        assert_eq!(ev.reason, Reason::ApprovalDenied);
        assert_eq!(ev.details["approval"], "apr_9");
    });
}

#[test]
fn a_handle_and_an_untrusted_read_make_a_non_explicit_write_a_trifecta_ask() {
    let s = setup(Autonomy::AskNone, approved(), 1024);
    rt().block_on(async {
        let allow = Decision::allow(Reason::RuleAllow);
        // A credential handle: the run uses a vault secret.
        let c = ctx("GET", "any.example", "/me", allow, true);
        body_of(
            s.guard
                .on_request(&c, req("GET", "/me", "", Some("Bearer alh_0123456789")))
                .await,
        )
        .await;
        // A write now is fine: one leg only.
        let c = ctx("POST", "any.example", "/x", allow, true);
        body_of(s.guard.on_request(&c, req("POST", "/x", "1", None)).await).await;
        assert!(s.approver.asked.lock().expect("lock").is_empty());
        // Untrusted content, by label.
        let c = ctx("GET", "forum.example", "/t/1", allow, true);
        body_of(s.guard.on_request(&c, req("GET", "/t/1", "", None)).await).await;
        // An explicit write allow still goes.
        let c = ctx("POST", "explicit.example", "/x", allow, true);
        body_of(s.guard.on_request(&c, req("POST", "/x", "2", None)).await).await;
        assert!(s.approver.asked.lock().expect("lock").is_empty());
        // Any other write asks, for the trifecta.
        let c = ctx("POST", "any.example", "/x", allow, true);
        body_of(s.guard.on_request(&c, req("POST", "/x", "3", None)).await).await;
        let asked = s.approver.asked.lock().expect("lock");
        assert_eq!(asked.len(), 1);
        assert_eq!(asked[0].reason, Reason::LethalTrifecta);
        assert!(asked[0].taint.is_trifecta());
    });
}

#[test]
fn an_oversized_body_or_a_request_without_a_run_is_refused_unasked() {
    let s = setup(Autonomy::AskWrites, approved(), 4);
    rt().block_on(async {
        let c = ctx(
            "POST",
            "any.example",
            "/x",
            Decision::allow(Reason::RuleAllow),
            true,
        );
        let Outcome::Refuse(r) = s
            .guard
            .on_request(&c, req("POST", "/x", "12345", None))
            .await
        else {
            panic!("an oversized body must be refused");
        };
        assert_eq!(r.decision, Decision::deny(Reason::LimitExceeded));
        let c = ctx(
            "POST",
            "any.example",
            "/x",
            Decision::ask(Reason::ApprovalRequired),
            false,
        );
        let Outcome::Refuse(r) = s.guard.on_request(&c, req("POST", "/x", "1", None)).await else {
            panic!("an ask outside a run must be refused");
        };
        assert_eq!(r.decision, Decision::ask(Reason::ApprovalRequired));
        assert!(s.approver.asked.lock().expect("lock").is_empty());
    });
}
