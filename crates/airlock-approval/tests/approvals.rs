//! The approval service over a real SQLite file: a reviewer in another
//! connection (as the CLI is another process) decides by hash; the waiting
//! call consumes once.

use airlock_approval::{ApprovalSettings, Approvals, Review, ReviewError, StoreTaint};
use airlock_store::SqliteStore;
use airlock_types::{
    Action, Actor, ActorKind, ApprovalRequest, Approver, MemorySink, Reason, RunContext, RunId,
    Subject, TaintLabel, TaintSet, TaintTracker, TenantId, Verdict,
};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn ctx() -> RunContext {
    RunContext::new(
        TenantId::new("acme").expect("tenant"),
        RunId::new("run_a").expect("run"),
        Actor::system(),
    )
}

fn request() -> ApprovalRequest {
    ApprovalRequest {
        context: ctx(),
        subject: Subject::Tool {
            server: "files".into(),
            tool: "delete".into(),
            arguments: serde_json::json!({"path": "/data/x", "recursive": true}),
        },
        policy_version: "sha256:1".into(),
        reason: Reason::ApprovalRequired,
        taint: TaintSet::default(),
    }
}

fn settings(ttl: Duration) -> ApprovalSettings {
    ApprovalSettings {
        ttl,
        poll: Duration::from_millis(20),
    }
}

/// Wait for the one pending approval and return (id, sha256).
fn pending(db: &Path) -> (String, String) {
    let store = SqliteStore::open(db).expect("open");
    let sink = MemorySink::new();
    let t = TenantId::new("acme").expect("tenant");
    for _ in 0..500 {
        let r = Review::new(&store, &sink, &t, operator());
        if let Some(v) = r.list(true).expect("list").pop() {
            return (v.id, v.sha256);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("no pending approval");
}

fn operator() -> Actor {
    Actor::new(ActorKind::Operator, "alice")
}

fn with_review<T>(db: &Path, sink: &MemorySink, f: impl FnOnce(&Review<'_>) -> T) -> T {
    let store = SqliteStore::open(db).expect("open");
    let t = TenantId::new("acme").expect("tenant");
    let r = Review::new(&store, sink, &t, operator());
    f(&r)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn approved_by_hash_runs_once_and_every_step_is_audited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    let sink = Arc::new(MemorySink::new());
    let approvals =
        Approvals::open(&db, sink.clone(), settings(Duration::from_secs(60))).expect("approvals");
    let review_sink = MemorySink::new();
    let verdict = std::thread::scope(|s| {
        s.spawn(|| {
            let (id, sha) = pending(&db);
            // A wrong hash is refused, audited, and changes nothing.
            let wrong = with_review(&db, &review_sink, |r| r.approve(&id, &"0".repeat(64)));
            assert!(
                matches!(wrong, Err(ReviewError::HashMismatch { .. })),
                "{wrong:?}"
            );
            let shown = with_review(&db, &review_sink, |r| r.show(&id)).expect("show");
            assert_eq!(shown.state, "pending");
            assert_eq!(
                airlock_approval::sha256_hex(shown.canonical.as_bytes()),
                sha
            );
            let ok = with_review(&db, &review_sink, |r| r.approve(&id, &sha)).expect("approve");
            assert_eq!(ok.state, "approved");
            assert_eq!(ok.decided_by.as_deref(), Some("alice"));
        });
        rt().block_on(approvals.ask(request(), Duration::from_secs(30)))
    });
    let Verdict::Approved { id, sha256 } = verdict else {
        panic!("expected approval, got {verdict:?}");
    };
    // Used: a second approval of the same id is refused.
    let again = with_review(&db, &review_sink, |r| r.approve(&id, &sha256));
    assert!(
        matches!(
            again,
            Err(ReviewError::NotPending {
                state: "consumed",
                ..
            })
        ),
        "{again:?}"
    );
    let actions: Vec<(Action, Reason)> =
        sink.events().iter().map(|e| (e.action, e.reason)).collect();
    assert_eq!(
        actions,
        vec![
            (Action::ApprovalProposed, Reason::ApprovalRequired),
            (Action::ApprovalExecuted, Reason::ApprovalGranted),
        ]
    );
    for e in sink.events() {
        assert_eq!(e.details["sha256"], sha256.as_str());
        assert_eq!(e.resource, id);
    }
    // The proposal names the tool, never its arguments.
    let proposed = &sink.events()[0];
    assert_eq!(proposed.details["tool"], "delete");
    assert!(!proposed.details.contains_key("arguments"));
    assert!(
        !serde_json::to_string(proposed)
            .expect("json")
            .contains("/data/x")
    );
    let decided: Vec<(Action, Reason, String)> = review_sink
        .events()
        .iter()
        .map(|e| (e.action, e.reason, e.actor.id.clone()))
        .collect();
    assert_eq!(
        decided,
        vec![
            (Action::ApprovalDecided, Reason::CheckFailed, "alice".into()),
            (
                Action::ApprovalDecided,
                Reason::ApprovalGranted,
                "alice".into()
            ),
            (Action::ApprovalDecided, Reason::CheckFailed, "alice".into()),
        ]
    );
    assert_eq!(review_sink.events()[0].details["refused"], "hash_mismatch");
    assert_eq!(review_sink.events()[2].details["refused"], "not_pending");
}

#[test]
fn denied_and_expired_are_refused_with_their_reasons() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    let sink = Arc::new(MemorySink::new());
    let approvals =
        Approvals::open(&db, sink.clone(), settings(Duration::from_secs(60))).expect("approvals");
    let review_sink = MemorySink::new();
    let verdict = std::thread::scope(|s| {
        s.spawn(|| {
            let (id, _) = pending(&db);
            with_review(&db, &review_sink, |r| r.deny(&id, Some("not today"))).expect("deny");
        });
        rt().block_on(approvals.ask(request(), Duration::from_secs(30)))
    });
    assert!(
        matches!(
            verdict,
            Verdict::Refused {
                id: Some(_),
                reason: Reason::ApprovalDenied
            }
        ),
        "{verdict:?}"
    );
    assert_eq!(review_sink.events()[0].details["note"], "not today");

    // Nobody decides: expired after the wait, and a late approval is refused.
    let verdict = rt().block_on(approvals.ask(request(), Duration::from_millis(200)));
    let Verdict::Refused {
        id: Some(id),
        reason: Reason::ApprovalExpired,
    } = verdict
    else {
        panic!("expected expiry, got {verdict:?}");
    };
    let row = with_review(&db, &review_sink, |r| r.show(&id)).expect("show");
    let late = with_review(&db, &review_sink, |r| r.approve(&id, &row.sha256));
    assert!(
        matches!(
            late,
            Err(ReviewError::NotPending {
                state: "expired",
                ..
            })
        ),
        "{late:?}"
    );
    let last = sink.events().pop().expect("event");
    assert_eq!(
        (last.action, last.reason),
        (Action::ApprovalDecided, Reason::ApprovalExpired)
    );

    // The ttl bounds the wait too.
    let short = Approvals::open(&db, sink.clone(), settings(Duration::from_millis(100)))
        .expect("approvals");
    let t0 = std::time::Instant::now();
    let verdict = rt().block_on(short.ask(request(), Duration::from_secs(30)));
    assert!(matches!(
        verdict,
        Verdict::Refused {
            reason: Reason::ApprovalExpired,
            ..
        }
    ));
    assert!(t0.elapsed() < Duration::from_secs(5));
}

#[test]
fn two_waiters_approved_at_once_exactly_one_runs() {
    // Two processes' services over one row: only one consume changes it.
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    let store = SqliteStore::open(&db).expect("open");
    let t = TenantId::new("acme").expect("tenant");
    for i in 0..10 {
        store
            .approval_insert(
                &t,
                &airlock_store::NewApproval {
                    id: &format!("apr_{i}"),
                    run: "run_a",
                    agent: None,
                    subject: "{}",
                    sha256: "ab",
                    policy_version: "v",
                    reason: "approval_required",
                    taint: "",
                    created: 0,
                    expires: i64::MAX,
                },
            )
            .expect("insert");
        assert!(
            store
                .approval_approve(&t, &format!("apr_{i}"), "ab", "alice", 1)
                .expect("approve")
        );
    }
    let wins: usize = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3)
            .map(|_| {
                let db = db.clone();
                let t = t.clone();
                s.spawn(move || {
                    let store = SqliteStore::open(&db).expect("open");
                    (0..10)
                        .filter(|i| {
                            store
                                .approval_consume(&t, &format!("apr_{i}"), "ab")
                                .expect("consume")
                        })
                        .count()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("join")).sum()
    });
    assert_eq!(wins, 10);
}

#[test]
fn taint_is_shared_through_the_store_and_audited_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    let sink = Arc::new(MemorySink::new());
    let a = StoreTaint::open(&db, sink.clone()).expect("taint");
    let b = StoreTaint::open(&db, sink.clone()).expect("taint");
    let c = ctx();
    let t = a.mark(&c, TaintLabel::PrivateData, "vault").expect("mark");
    assert!(t.private_data && !t.untrusted_content);
    let t = b
        .mark(&c, TaintLabel::PrivateData, "db.internal")
        .expect("mark");
    assert!(!t.is_trifecta());
    let t = b
        .mark(&c, TaintLabel::UntrustedContent, "evil.example")
        .expect("mark");
    assert!(t.is_trifecta());
    // The other tracker sees the label another set.
    assert!(a.labels(&c).expect("labels").is_trifecta());
    let taints: Vec<(String, String)> = sink
        .events()
        .iter()
        .filter(|e| e.action == Action::RunTaint)
        .map(|e| {
            (
                e.details["label"].as_str().unwrap_or("").to_owned(),
                e.details["source"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        taints,
        vec![
            ("private_data".into(), "vault".into()),
            ("untrusted_content".into(), "evil.example".into())
        ]
    );
}
