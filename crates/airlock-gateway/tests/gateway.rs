//! The gateway end to end: its listener on loopback, virtual keys, a real
//! SQLite store, and a local provider speaking the real wire formats.

use airlock_gateway::{
    Gateway, GatewayConfig, Guardrails, Price, Privacy, Provider, ProviderKind, StepLimit,
    create_key,
};
use airlock_store::{BudgetRow, SqliteStore};
use airlock_testkit::LlmUpstream;
use airlock_types::{AuditEvent, MemorySink, Secret, TenantId};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::sync::Arc;

const SECRET: &str = "sk-proj-registered-secret-0123456789abcdef";
const EMAIL: &str = "jane.doe@example.org";
const CARD: &str = "4539 1488 0343 6467";
const IBAN: &str = "DE89 3704 0044 0532 0130 00";
/// A registered secret with JSON's special characters in it.
const AWKWARD: &str = "pa\"ss\\wo\nrd\tx";

struct Env {
    _dir: tempfile::TempDir,
    db: std::path::PathBuf,
    upstream: LlmUpstream,
    sink: Arc<MemorySink>,
    addr: std::net::SocketAddr,
    key: String,
    gw: Gateway,
    _server: tokio::task::JoinHandle<()>,
}

fn priced(p: f64) -> Price {
    Price {
        input_per_mtok: p,
        cached_input_per_mtok: None,
        output_per_mtok: p,
        max_output: 1000,
    }
}

async fn env(budgets: &[(&str, &str, i64)], max_body: usize) -> Env {
    env_with(budgets, max_body, |_| {}).await
}

async fn env_with(
    budgets: &[(&str, &str, i64)],
    max_body: usize,
    tune: impl FnOnce(&mut GatewayConfig),
) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("airlock.db");
    let mut store = SqliteStore::open(&db).expect("store");
    let tenant = TenantId::default_tenant();
    for (scope, period, limit) in budgets {
        store
            .gateway_set_budget(
                &tenant,
                &BudgetRow {
                    scope: (*scope).into(),
                    period: (*period).into(),
                    limit_micros: *limit,
                },
            )
            .expect("budget");
    }
    let (key, _) = create_key(&mut store, &tenant, "agent-1", Some("team-a")).expect("key");
    let upstream = LlmUpstream::start().await;
    let url: http::Uri = upstream.url().parse().expect("url");
    let providers = vec![
        Provider {
            name: "openai".into(),
            kind: ProviderKind::OpenAi,
            base_url: url.clone(),
            secret: Some(Arc::new(Secret::new("sk-real-openai".into()))),
            privacy: Default::default(),
        },
        Provider {
            name: "anthropic".into(),
            kind: ProviderKind::Anthropic,
            base_url: url,
            secret: Some(Arc::new(Secret::new("sk-ant-real".into()))),
            privacy: Default::default(),
        },
    ];
    let mut cfg = GatewayConfig::new(tenant, providers);
    cfg.max_body_bytes = max_body;
    for m in [
        "fail-once-gpt",
        "cut-gpt",
        "no-usage-gpt",
        "reverse-gpt",
        "reverse-claude",
    ] {
        cfg.prices.set(m, priced(1.0));
    }
    tune(&mut cfg);
    let sink = Arc::new(MemorySink::new());
    let gw = Gateway::new(
        cfg,
        &[
            ("openai_key".into(), Secret::new(SECRET.into())),
            ("awkward".into(), Secret::new(AWKWARD.into())),
        ],
        store,
        sink.clone(),
    )
    .expect("gateway");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let served = gw.clone();
    let server = tokio::spawn(async move {
        let _ = airlock_gateway::serve(listener, served).await;
    });
    Env {
        _dir: dir,
        db,
        upstream,
        sink,
        addr,
        key: key.expose().clone(),
        gw,
        _server: server,
    }
}

impl Env {
    /// Spend as another process reads it, once the gateway's queued
    /// settlements are committed.
    fn spent(&self) -> i64 {
        self.gw.flush();
        SqliteStore::open(&self.db)
            .expect("reopen")
            .gateway_spent(&TenantId::default_tenant(), 0)
            .expect("spent")
    }
    fn calls(&self) -> Vec<AuditEvent> {
        self.gw.flush();
        self.sink
            .events()
            .into_iter()
            .filter(|e| e.action == "gateway.call")
            .collect()
    }
}

/// Send one request on a new HTTP/1 connection to `addr`.
async fn send(
    addr: impl tokio::net::ToSocketAddrs,
    req: http::Request<Full<Bytes>>,
) -> http::Response<hyper::body::Incoming> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut s, c) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(c);
    s.send_request(req).await.expect("send")
}

/// POST raw bytes; returns status, X-Airlock-Reason and body.
async fn post(
    addr: std::net::SocketAddr,
    key: &str,
    path: &str,
    body: Vec<u8>,
) -> (u16, String, Vec<u8>) {
    let req = http::Request::post(path)
        .header("host", "gw")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let resp = send(addr, req).await;
    let status = resp.status().as_u16();
    let reason = resp
        .headers()
        .get("x-airlock-reason")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = match resp.into_body().collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(_) => b"<cut>".to_vec(),
    };
    (status, reason, body)
}

/// A detail of an audit record (`null` when absent).
fn d(e: &AuditEvent, k: &str) -> Value {
    e.details.get(k).cloned().unwrap_or(Value::Null)
}

fn text() -> String {
    format!("customer {EMAIL} paid with {CARD} from {IBAN}; key {SECRET}")
}

fn assert_nothing_leaked(up: &LlmUpstream) {
    let received = up.received();
    assert!(!received.is_empty());
    for r in received {
        let body = String::from_utf8_lossy(&r.body);
        for leak in [EMAIL, CARD, "4539148803436467", IBAN, SECRET] {
            assert!(!body.contains(leak), "{leak} reached the provider: {body}");
        }
        let auth = r
            .header("authorization")
            .or(r.header("x-api-key"))
            .unwrap_or("");
        assert!(
            auth.ends_with("sk-real-openai") || auth == "sk-ant-real",
            "real key injected, not the virtual one: {auth}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdks_see_originals_while_the_provider_sees_placeholders() {
    let Ok(python) = std::env::var("AIRLOCK_TEST_PYTHON") else {
        assert!(
            std::env::var_os("AIRLOCK_REQUIRE_SDK_TESTS").is_none(),
            "AIRLOCK_REQUIRE_SDK_TESTS is set but AIRLOCK_TEST_PYTHON is not"
        );
        eprintln!(
            "\n*** SKIPPED: official SDK test needs AIRLOCK_TEST_PYTHON (a python with `openai` and `anthropic`) ***\n"
        );
        return;
    };
    let e = env(&[], 1 << 20).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk_client.py");
    let base = format!("http://{}", e.addr);
    let out = tokio::process::Command::new(python)
        .args([script, &format!("{base}/v1"), &base, &e.key, &text()])
        .output()
        .await
        .expect("python runs");
    assert!(
        out.status.success(),
        "sdk client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json out");
    let t = text();
    assert_eq!(v["chat"], format!("echo: {t}"));
    assert_eq!(v["chat_stream"], format!("echo: stream: {t}"));
    assert_eq!(
        serde_json::from_str::<Value>(v["chat_stream_args"].as_str().unwrap_or("")).ok(),
        Some(json!({"echo": format!("echo: stream: {t}")}))
    );
    assert_eq!(v["responses"], format!("echo: responses: {t}"));
    assert_eq!(
        v["responses_stream"],
        format!("echo: responses stream: {t}")
    );
    assert_eq!(v["messages"], format!("echo: anthropic: {t}"));
    assert_eq!(v["messages_stream"], format!("echo: anthropic stream: {t}"));
    assert_eq!(v["retry"], format!("echo: retry: {t}"));
    assert_eq!(v["embeddings"], 1);
    assert_eq!(v["models"], json!(["gpt-4o-mini"]));
    assert_eq!(v["unknown_model"]["status"], 400);
    assert_eq!(v["unknown_model"]["body"]["code"], "unknown_model_price");
    assert_eq!(v["unknown_model_anthropic"]["status"], 400);
    assert_eq!(
        v["unknown_model_anthropic"]["body"]["error"]["type"],
        "invalid_request_error"
    );
    assert_eq!(v["bad_key"]["status"], 401);
    assert_nothing_leaked(&e.upstream);
    // The SDK retried the 500 with the same Idempotency-Key, charged once.
    let retries: Vec<_> = e
        .upstream
        .received()
        .into_iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains("fail-once-gpt"))
        .collect();
    assert_eq!(retries.len(), 2);
    assert_eq!(
        retries[0].header("idempotency-key"),
        retries[1].header("idempotency-key")
    );
    assert!(
        retries[0]
            .header("idempotency-key")
            .is_some_and(|k| k.starts_with("alk-"))
    );
    let calls = e.calls();
    let retry_calls: Vec<_> = calls
        .iter()
        .filter(|c| d(c, "model") == "fail-once-gpt")
        .collect();
    assert_eq!(retry_calls.len(), 2);
    assert_eq!(retry_calls[0].details["settled_micros"], 0);
    assert_eq!(retry_calls[1].details["settled_micros"], 18); // (11 + 7) tokens at $1/Mtok
    assert_eq!(retry_calls[1].details["retry"], true);
    // Every call audited with masking counts, never text.
    let chat = calls
        .iter()
        .find(|c| d(c, "endpoint") == "chat.completions" && d(c, "model") == "gpt-4o-mini")
        .expect("chat audited");
    assert_eq!(d(chat, "masked")["EMAIL"], 1);
    assert_eq!(d(chat, "tokens_in"), 11);
    for c in &calls {
        let s = serde_json::to_string(c).expect("json");
        assert!(
            !s.contains(EMAIL) && !s.contains(SECRET) && !s.contains("echo"),
            "audit leaks text: {s}"
        );
    }
    assert!(
        calls
            .iter()
            .any(|c| c.reason.code() == "unknown_model_price")
    );
    assert!(
        calls
            .iter()
            .any(|c| c.reason.code() == "virtual_key_invalid")
    );
}

fn sdk_python() -> Option<String> {
    let Ok(python) = std::env::var("AIRLOCK_TEST_PYTHON") else {
        assert!(
            std::env::var_os("AIRLOCK_REQUIRE_SDK_TESTS").is_none(),
            "AIRLOCK_REQUIRE_SDK_TESTS is set but AIRLOCK_TEST_PYTHON is not"
        );
        eprintln!(
            "\n*** SKIPPED: official SDK test needs AIRLOCK_TEST_PYTHON (a python with `openai` and `anthropic`) ***\n"
        );
        return None;
    };
    Some(python)
}

/// Regression: a registered secret the provider wrote split across stream
/// deltas reached the client; restored values with `"`, `\\` or a newline
/// broke a tool call's JSON arguments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_echoed_secrets_are_masked_in_streams_and_restored_arguments_stay_json() {
    let Some(python) = sdk_python() else { return };
    let e = env(&[], 1 << 20).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk_restore.py");
    let base = format!("http://{}", e.addr);
    let reversed: String = SECRET.chars().rev().collect();
    let out = tokio::process::Command::new(python)
        .args([
            script,
            &format!("{base}/v1"),
            &base,
            &e.key,
            &reversed,
            AWKWARD,
        ])
        .output()
        .await
        .expect("python runs");
    assert!(
        out.status.success(),
        "sdk client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json out");
    for k in [
        "echo_chat_stream",
        "echo_chat",
        "echo_messages_stream",
        "echo_responses_stream",
    ] {
        let seen = v[k].as_str().unwrap_or("");
        assert!(seen.starts_with("echo: "), "{k}: {seen}");
        assert!(
            !seen.contains(SECRET),
            "{k}: the provider's echo reached the client"
        );
        assert!(
            !seen.contains("registered-secret"),
            "{k}: part of it did: {seen}"
        );
    }
    assert_eq!(v["args"], json!({"echo": format!("echo: value {AWKWARD}")}));
    assert_eq!(
        v["args_stream"],
        json!({"echo": format!("echo: stream {AWKWARD}")})
    );
    // The provider saw placeholders only.
    for r in e.upstream.received() {
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            !body.contains("pa\\\"ss"),
            "the awkward secret reached the provider"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_never_overspend_and_refusals_never_reach_the_provider() {
    // gpt-4o-mini: a 100-token cap reserves ~80 micro-USD; 300 fit ~3 at once.
    let limit = 300;
    let e = env(
        &[("org", "day", 10_000), ("agent:agent-1", "day", limit)],
        1 << 20,
    )
    .await;
    let mut tasks = Vec::new();
    for i in 0..64 {
        let (addr, key) = (e.addr, e.key.clone());
        tasks.push(tokio::spawn(async move {
            let body = json!({"model": "gpt-4o-mini", "max_tokens": 100, "messages": [{"role": "user", "content": format!("call {i}")}]});
            post(addr, &key, "/v1/chat/completions", body.to_string().into_bytes()).await
        }));
    }
    let mut ok = 0;
    let mut refused = 0;
    for t in tasks {
        let (status, reason, body) = t.await.expect("task");
        match status {
            200 => ok += 1,
            429 => {
                refused += 1;
                assert_eq!(reason, "budget_exceeded");
                let v: Value = serde_json::from_slice(&body).expect("json error");
                assert_eq!(v["error"]["type"], "insufficient_quota");
                assert_eq!(v["error"]["code"], "budget_exceeded");
            }
            s => panic!("unexpected status {s}: {}", String::from_utf8_lossy(&body)),
        }
    }
    assert_eq!(ok + refused, 64);
    assert!(ok > 0 && refused > 0, "ok {ok}, refused {refused}");
    assert_eq!(
        e.upstream.received().len(),
        ok,
        "a refused call reached the provider"
    );
    assert!(e.spent() <= limit, "spent {} > {limit}", e.spent());
    let audited_refusals = e
        .calls()
        .iter()
        .filter(|c| c.reason.code() == "budget_exceeded")
        .count();
    assert_eq!(audited_refusals, refused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_provider_shaped_errors_is_audited_and_never_charged_twice() {
    let e = env(&[], 4096).await;
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("malformed", b"{\"model\": \"gpt-4o-mini\", ".to_vec(), 400, "malformed_request"),
        ("non-utf8", b"{\"model\": \"gpt-4o-mini\", \"messages\": [\"\xff\xfe\"]}".to_vec(), 400, "malformed_request"),
        ("over-limit", json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x".repeat(5000)}]}).to_string().into_bytes(), 413, "limit_exceeded"),
        ("unknown-model", json!({"model": "gpt-9-ultra", "messages": []}).to_string().into_bytes(), 400, "unknown_model_price"),
    ];
    for (name, body, status, reason) in cases {
        let (s, r, b) = post(e.addr, &e.key, "/v1/chat/completions", body).await;
        assert_eq!((s, r.as_str()), (status, reason), "{name}");
        let v: Value = serde_json::from_slice(&b).expect("provider-shaped JSON");
        assert_eq!(v["error"]["code"], reason, "{name}");
        assert!(v["error"]["message"].is_string());
    }
    assert!(
        e.upstream.received().is_empty(),
        "bad input reached the provider"
    );
    // Anthropic's own shape.
    let (s, _, b) = post(e.addr, &e.key, "/v1/messages", b"not json".to_vec()).await;
    assert_eq!(s, 400);
    let v: Value = serde_json::from_slice(&b).expect("json");
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");

    // A response without usage settles at the reservation.
    let body = json!({"model": "no-usage-gpt", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]});
    let (s, _, _) = post(
        e.addr,
        &e.key,
        "/v1/chat/completions",
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(s, 200);
    let c = e
        .calls()
        .into_iter()
        .find(|c| d(c, "model") == "no-usage-gpt")
        .expect("audited");
    assert!(c.details.contains_key("usage_reported"), "{c:?}");
    assert_eq!(d(&c, "usage_reported"), false);
    assert_eq!(d(&c, "settled_micros"), d(&c, "reserved_micros"));
    let after_no_usage = e.spent();

    // A stream cut mid-way: the client gets an error event; the retry of
    // the same body takes the call over and is charged once.
    let body = json!({"model": "cut-gpt", "max_tokens": 50, "stream": true, "messages": [{"role": "user", "content": EMAIL}]});
    let (s, _, b) = post(
        e.addr,
        &e.key,
        "/v1/chat/completions",
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(s, 200);
    let b = String::from_utf8_lossy(&b).into_owned();
    assert!(b.contains("\"error\""), "no error event: {b}");
    let cut = e
        .calls()
        .into_iter()
        .filter(|c| d(c, "model") == "cut-gpt")
        .collect::<Vec<_>>();
    assert_eq!(cut.len(), 1);
    assert_eq!(cut[0].details["outcome"], "stream_cut");
    let reserved = cut[0].details["reserved_micros"]
        .as_i64()
        .expect("reserved");
    assert_eq!(e.spent(), after_no_usage + reserved);
    let (s, _, _) = post(
        e.addr,
        &e.key,
        "/v1/chat/completions",
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        e.spent(),
        after_no_usage + reserved,
        "a retry must not add a second charge"
    );
    let keys: Vec<_> = e
        .upstream
        .received()
        .iter()
        .filter_map(|r| r.header("idempotency-key").map(str::to_string))
        .collect();
    assert_eq!(keys[keys.len() - 1], keys[keys.len() - 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_call_is_replayed_not_repeated_and_streams_replay_as_streams() {
    let e = env(&[], 1 << 20).await;
    let body = json!({"model": "gpt-4o-mini", "max_tokens": 50, "stream": true, "messages": [{"role": "user", "content": format!("mail {EMAIL}")}]});
    let (s1, _, b1) = post(
        e.addr,
        &e.key,
        "/v1/chat/completions",
        body.to_string().into_bytes(),
    )
    .await;
    let spent = e.spent();
    let (s2, _, b2) = post(
        e.addr,
        &e.key,
        "/v1/chat/completions",
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(e.upstream.received().len(), 1, "the repeat went upstream");
    assert_eq!(e.spent(), spent, "the replay was charged");
    let collect = |b: &[u8]| -> String {
        String::from_utf8_lossy(b)
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .flat_map(|v| v["choices"].as_array().cloned().unwrap_or_default())
            .filter_map(|c| c["delta"]["content"].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(collect(&b1), format!("echo: mail {EMAIL}"));
    assert_eq!(collect(&b2), collect(&b1));
    assert!(String::from_utf8_lossy(&b2).ends_with("data: [DONE]\n\n"));
}

/// Settlements are queued without the answer waiting for them; the next
/// operation is still applied after them. A retry sent the moment the first
/// answer ends is replayed (not refused as in flight, not called twice),
/// the spend, once drained, is the first call's settled cost (once), and
/// each call has exactly one audit record.
#[tokio::test]
async fn an_immediate_retry_after_a_success_is_replayed_and_charged_once() {
    let e = env(&[], 1 << 20).await;
    for round in 0..20 {
        let body = json!({"model": "gpt-4o-mini", "max_tokens": 50,
            "messages": [{"role": "user", "content": format!("round {round}: mail {EMAIL}")}]});
        let send = || {
            let req = http::Request::post(format!("http://{}/v1/chat/completions", e.addr))
                .header("authorization", format!("Bearer {}", e.key))
                .header("content-type", "application/json")
                .header("idempotency-key", format!("retry-{round}"))
                .body(Full::new(Bytes::from(body.to_string())))
                .expect("request");
            async move {
                let r = send(e.addr, req).await;
                let replayed = r.headers().contains_key("x-airlock-replayed");
                let status = r.status().as_u16();
                let b = r.into_body().collect().await.expect("body").to_bytes();
                (status, replayed, b)
            }
        };
        let (s1, r1, b1) = send().await;
        let (s2, r2, b2) = send().await;
        assert_eq!((s1, r1), (200, false), "{}", String::from_utf8_lossy(&b1));
        assert_eq!((s2, r2), (200, true), "{}", String::from_utf8_lossy(&b2));
        assert_eq!(b1, b2);
        assert!(String::from_utf8_lossy(&b1).contains(EMAIL));
    }
    assert_eq!(e.upstream.received().len(), 20, "a retry went upstream");
    let calls = e.calls();
    assert_eq!(calls.len(), 40, "one audit record per call");
    let charged: i64 = calls
        .iter()
        .filter(|c| d(c, "outcome") == "ok")
        .map(|c| d(c, "settled_micros").as_i64().expect("settled"))
        .sum();
    assert_eq!(
        calls
            .iter()
            .filter(|c| d(c, "outcome") == "replayed")
            .count(),
        20
    );
    assert!(charged > 0);
    assert_eq!(
        e.spent(),
        charged,
        "spend once drained is the settled cost, once"
    );
}

/// The hook on `airlock run`'s intercepted path: the same engine, keyed by
/// the provider host; the request continues (redacted, with its
/// Idempotency-Key) to the real upstream, and the answer is restored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_hook_redacts_on_the_way_out_restores_on_the_way_back_and_refuses_over_budget() {
    use airlock_gateway::{Caller, GatewayHook};
    use airlock_hook::{Hook, HookBody, Outcome, RequestCtx, Via};
    use airlock_types::{RequestId, RunId};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = SqliteStore::open(&dir.path().join("db")).expect("store");
    let tenant = TenantId::default_tenant();
    store
        .gateway_set_budget(
            &tenant,
            &BudgetRow {
                scope: "run:run-1".into(),
                period: "total".into(),
                limit_micros: 200,
            },
        )
        .expect("budget");
    let providers = vec![Provider {
        name: "openai".into(),
        kind: ProviderKind::OpenAi,
        base_url: "https://api.openai.com".parse().expect("uri"),
        secret: None,
        privacy: Default::default(),
    }];
    let sink = Arc::new(MemorySink::new());
    let gw = Gateway::new(
        GatewayConfig::new(tenant.clone(), providers),
        &[],
        store,
        sink.clone(),
    )
    .expect("gateway");
    let settled = gw.clone();
    let hook = GatewayHook::new(
        gw,
        Caller {
            agent: "agent-1".into(),
            ..Caller::default()
        },
    );
    assert_eq!(hook.hosts(), vec!["api.openai.com".to_string()]);
    let up = LlmUpstream::start().await;
    let ctx = |host: &str, n: u32| {
        RequestCtx::new(
            tenant.clone(),
            Some(RunId::new("run-1").expect("run")),
            RequestId::new(format!("req-{n}")).expect("req"),
            http::uri::Scheme::HTTPS,
            host,
            443,
            http::Method::POST,
            "/v1/chat/completions",
            Via::InterceptedTunnel,
        )
    };
    let request = |body: &Value| -> http::Request<HookBody> {
        http::Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .header("accept-encoding", "gzip")
            .body(
                Full::new(Bytes::from(body.to_string()))
                    .map_err(|e| match e {})
                    .boxed(),
            )
            .expect("request")
    };
    let body = json!({"model": "gpt-4o-mini", "max_tokens": 100, "stream": true, "messages": [{"role": "user", "content": format!("write to {EMAIL}")}]});

    // Another host: untouched.
    let c0 = ctx("example.com", 0);
    let Outcome::Continue(r) = hook.on_request(&c0, request(&body)).await else {
        panic!("other hosts pass")
    };
    assert_eq!(
        r.into_body().collect().await.expect("body").to_bytes(),
        Bytes::from(body.to_string())
    );

    // The provider host: redacted, keyed, identity-encoded, then restored.
    let c1 = ctx("api.openai.com", 1);
    let Outcome::Continue(r) = hook.on_request(&c1, request(&body)).await else {
        panic!("continues")
    };
    assert_eq!(r.headers()["accept-encoding"], "identity");
    assert!(
        r.headers()["idempotency-key"]
            .to_str()
            .expect("key")
            .starts_with("alk-")
    );
    let (parts, b) = r.into_parts();
    let sent = b.collect().await.expect("body").to_bytes();
    assert!(!String::from_utf8_lossy(&sent).contains(EMAIL));
    assert_eq!(
        parts.headers["content-length"],
        sent.len().to_string().as_str()
    );
    // Forward it to the local provider for a real SSE answer.
    let mut fwd = http::Request::from_parts(parts, Full::new(sent));
    fwd.headers_mut()
        .insert("host", "api.openai.com".parse().expect("host"));
    let resp = send(up.url().trim_start_matches("http://"), fwd).await;
    let resp = resp.map(|b| -> HookBody {
        b.map_err(|e| -> airlock_hook::BoxError { Box::new(e) })
            .boxed()
    });
    let restored = hook
        .on_response(&c1, resp)
        .expect("restored")
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let text: String = String::from_utf8_lossy(&restored)
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .flat_map(|v| v["choices"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["delta"]["content"].as_str().map(str::to_string))
        .collect();
    assert_eq!(text, format!("echo: write to {EMAIL}"));

    // The run's budget (200 micro-USD) cannot hold a second worst case.
    let body2 = json!({"model": "gpt-4o-mini", "max_tokens": 1000, "messages": [{"role": "user", "content": "again"}]});
    let c2 = ctx("api.openai.com", 2);
    let Outcome::Refuse(refusal) = hook.on_request(&c2, request(&body2)).await else {
        panic!("over budget must be refused")
    };
    assert_eq!(refusal.decision.reason.code(), "budget_exceeded");
    let resp = refusal.response.expect("provider-shaped answer");
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["x-airlock-reason"], "budget_exceeded");
    settled.flush();
    let events = sink.events();
    assert!(events.iter().any(|e| e.reason.code() == "budget_exceeded"
        && e.run_id.as_ref().map(|r| r.as_str()) == Some("run-1")));
    assert!(
        events
            .iter()
            .any(|e| e.reason.code() == "gateway_call" && d(e, "outcome") == "ok")
    );
}

fn chat(model: &str, text: &str, max_tokens: Option<u64>) -> Vec<u8> {
    let mut v = json!({"model": model, "messages": [{"role": "user", "content": text}]});
    if let Some(n) = max_tokens {
        v["max_tokens"] = n.into();
    }
    v.to_string().into_bytes()
}

fn refusals(e: &Env, code: &str) -> usize {
    e.calls().iter().filter(|c| c.reason.code() == code).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guardrails_from_config_refuse_before_the_provider_in_its_own_shape_and_are_audited() {
    let e = env_with(&[], 1 << 20, |cfg| {
        cfg.guardrails.max_tokens_per_step = Some(50);
        cfg.agents.insert(
            "agent-1".into(),
            Guardrails {
                allowed_models: Some(vec![
                    "gpt-4o-mini".into(),
                    "no-usage-gpt".into(),
                    "claude-haiku-4-5".into(),
                ]),
                max_tokens_per_run: Some(1000),
                ..Guardrails::default()
            },
        );
    })
    .await;
    let k = e.key.clone();
    // Over the per-step cap, and no cap at all: refused, OpenAI-shaped.
    for body in [
        chat("gpt-4o-mini", "hi", Some(100)),
        chat("gpt-4o-mini", "hi", None),
    ] {
        let (st, reason, b) = post(e.addr, &k, "/v1/chat/completions", body).await;
        assert_eq!((st, reason.as_str()), (400, "token_limit_exceeded"));
        let v: Value = serde_json::from_slice(&b).expect("json");
        assert_eq!(v["error"]["code"], "token_limit_exceeded", "{v}");
    }
    // Anthropic-shaped for Anthropic callers.
    let body = json!({"model": "claude-haiku-4-5", "max_tokens": 4096, "messages": [{"role": "user", "content": "hi"}]});
    let (st, reason, b) = post(e.addr, &k, "/v1/messages", body.to_string().into_bytes()).await;
    assert_eq!((st, reason.as_str()), (400, "token_limit_exceeded"));
    let v: Value = serde_json::from_slice(&b).expect("json");
    assert_eq!(v["type"], "error", "{v}");
    // A model the agent may not call.
    let (st, reason, _) = post(
        e.addr,
        &k,
        "/v1/chat/completions",
        chat("gpt-4o", "hi", Some(10)),
    )
    .await;
    assert_eq!((st, reason.as_str()), (403, "model_not_allowed"));
    assert!(
        e.upstream.received().is_empty(),
        "nothing reached the provider"
    );
    // Per-run tokens: the first call reserves ~650 of 1000 and (with no
    // usage reported) settles there; the second would go over.
    let long = "x".repeat(600);
    let (st, _, _) = post(
        e.addr,
        &k,
        "/v1/chat/completions",
        chat("no-usage-gpt", &long, Some(50)),
    )
    .await;
    assert_eq!(st, 200);
    let (st, reason, _) = post(
        e.addr,
        &k,
        "/v1/chat/completions",
        chat("no-usage-gpt", &format!("{long}!"), Some(50)),
    )
    .await;
    assert_eq!((st, reason.as_str()), (429, "token_limit_exceeded"));
    assert_eq!(
        e.upstream.received().len(),
        1,
        "the refused call never left"
    );
    assert_eq!(refusals(&e, "token_limit_exceeded"), 4);
    assert_eq!(refusals(&e, "model_not_allowed"), 1);
    let run = e
        .calls()
        .into_iter()
        .rfind(|c| c.reason.code() == "token_limit_exceeded")
        .expect("audited");
    assert_eq!(d(&run, "scope"), "run");
    assert_eq!(d(&run, "max_tokens_per_run"), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clamp_lowers_the_output_limit_and_a_run_cost_cap_counts_reservations() {
    let e = env_with(&[], 1 << 20, |cfg| {
        cfg.guardrails.max_tokens_per_step = Some(50);
        cfg.guardrails.step_limit = Some(StepLimit::Clamp);
    })
    .await;
    for body in [
        chat("gpt-4o-mini", "hi", Some(4000)),
        chat("gpt-4o-mini", "hello", None),
    ] {
        let (st, _, _) = post(e.addr, &e.key, "/v1/chat/completions", body).await;
        assert_eq!(st, 200);
    }
    let got: Vec<Value> = e
        .upstream
        .received()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).expect("json"))
        .collect();
    assert_eq!(got[0]["max_tokens"], 50);
    assert_eq!(got[1]["max_completion_tokens"], 50);

    // $1/Mtok: a call reserves (prompt bound + 1000) micro-USD at most; a
    // cap of 1500 lets one reservation in, not two at once.
    let e = env_with(&[], 1 << 20, |cfg| {
        cfg.guardrails.max_cost_per_run_micros = Some(1500);
    })
    .await;
    let (st, _, _) = post(
        e.addr,
        &e.key,
        "/v1/chat/completions",
        chat("no-usage-gpt", "a", None),
    )
    .await;
    assert_eq!(st, 200);
    let (st, reason, _) = post(
        e.addr,
        &e.key,
        "/v1/chat/completions",
        chat("no-usage-gpt", "b", None),
    )
    .await;
    assert_eq!((st, reason.as_str()), (429, "budget_exceeded"));
    assert_eq!(e.upstream.received().len(), 1);
    let c = e
        .calls()
        .into_iter()
        .rfind(|c| c.reason.code() == "budget_exceeded")
        .expect("audited");
    assert_eq!(d(&c, "scope"), "run");
}

fn db_bytes(db: &std::path::Path) -> Vec<u8> {
    let mut all = std::fs::read(db).expect("db");
    let wal = db.with_extension("db-wal");
    all.extend(std::fs::read(wal).unwrap_or_default());
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_answers_are_sealed_kept_only_under_standard_and_purged_after_retention() {
    let marker = "plaintext-marker-7f3a";
    // Standard: the answer is kept sealed and a retry is replayed.
    let e = env(&[], 1 << 20).await;
    let body = chat("gpt-4o-mini", marker, Some(10));
    let (st, _, first) = post(e.addr, &e.key, "/v1/chat/completions", body.clone()).await;
    assert_eq!(st, 200);
    let (st, _, again) = post(e.addr, &e.key, "/v1/chat/completions", body.clone()).await;
    assert_eq!((st, &again), (200, &first));
    assert_eq!(e.upstream.received().len(), 1, "replayed, not sent again");
    assert!(String::from_utf8_lossy(&first).contains(marker));
    let raw = db_bytes(&e.db);
    for needle in [marker.as_bytes(), b"echo: ", b"chatcmpl-1"] {
        assert!(
            !raw.windows(needle.len()).any(|w| w == needle),
            "{} stored in plaintext",
            String::from_utf8_lossy(needle)
        );
    }
    let store = SqliteStore::open(&e.db).expect("store");
    assert_eq!(store.gateway_stored_answers().expect("count"), 1);
    // Opening the gateway again purges what is past retention.
    let mut cfg = GatewayConfig::new(TenantId::default_tenant(), vec![]);
    cfg.replay_retention = std::time::Duration::ZERO;
    let _gw = Gateway::new(cfg, &[], store, Arc::new(MemorySink::new())).expect("gateway");
    let store = SqliteStore::open(&e.db).expect("store");
    assert_eq!(store.gateway_stored_answers().expect("count"), 0);

    // Strict: nothing kept; a retry of a completed call is refused, never
    // sent (and billed) twice.
    let e = env_with(&[], 1 << 20, |cfg| cfg.privacy = Privacy::Strict).await;
    let (st, _, _) = post(e.addr, &e.key, "/v1/chat/completions", body.clone()).await;
    assert_eq!(st, 200);
    let (st, reason, _) = post(e.addr, &e.key, "/v1/chat/completions", body).await;
    assert_eq!((st, reason.as_str()), (409, "idempotency_conflict"));
    assert_eq!(e.upstream.received().len(), 1);
    let store = SqliteStore::open(&e.db).expect("store");
    assert_eq!(store.gateway_stored_answers().expect("count"), 0);
    assert!(e.calls().iter().any(|c| d(c, "privacy") == "strict"));
}

/// A virtual key the gateway has seen live (and remembers) is revoked
/// by another connection to the database, as `airlock gateway key revoke`
/// in another process does: its next call is refused with
/// `virtual_key_invalid` before anything is reserved or forwarded, and
/// audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remembered_key_revoked_elsewhere_gets_no_call_through() {
    let e = env(&[], 1 << 20).await;
    let body = serde_json::to_vec(&json!({"model": "gpt-4o-mini", "max_tokens": 10,
        "messages": [{"role": "user", "content": "hello"}]}))
    .expect("json");
    let (status, _, _) = post(e.addr, &e.key, "/v1/chat/completions", body.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(e.upstream.received().len(), 1);
    let spent = e.spent();
    let mut other = SqliteStore::open(&e.db).expect("reopen");
    let tenant = TenantId::default_tenant();
    let id = other.gateway_keys(&tenant).expect("keys")[0].id.clone();
    assert!(other.gateway_revoke_key(&tenant, &id, 1).expect("revoke"));
    let body = serde_json::to_vec(&json!({"model": "gpt-4o-mini", "max_tokens": 10,
        "messages": [{"role": "user", "content": "hello again"}]}))
    .expect("json");
    let (status, reason, resp) = post(e.addr, &e.key, "/v1/chat/completions", body).await;
    assert_eq!((status, reason.as_str()), (401, "virtual_key_invalid"));
    assert!(String::from_utf8_lossy(&resp).contains("virtual_key_invalid"));
    assert_eq!(e.upstream.received().len(), 1, "nothing forwarded");
    assert_eq!(e.spent(), spent, "nothing reserved");
    let refused: Vec<AuditEvent> = e
        .calls()
        .into_iter()
        .filter(|c| c.reason.code() == "virtual_key_invalid")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    // GET /v1/models is looked up every time: refused as well.
    let req = http::Request::get("/v1/models")
        .header("host", "gw")
        .header("authorization", format!("Bearer {}", e.key))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = send(e.addr, req).await;
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(e.upstream.received().len(), 1, "nothing forwarded");
}

/// A gateway that stops gives back the budget headroom its lease still
/// holds: another process can then reserve all that is left, which it
/// could not while the lease was held (counted as spent by everyone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_gateway_gives_its_lease_back() {
    let limit = 20_000;
    let e = env(&[("org", "total", limit)], 1 << 20).await;
    let (s, _, b) = post(
        e.addr,
        &e.key,
        "/v1/chat/completions",
        chat("gpt-4o-mini", "hello", Some(100)),
    )
    .await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let spent = e.spent();
    let t = TenantId::default_tenant();
    let scopes = airlock_store::CallScopes {
        agent: "elsewhere".into(),
        ..Default::default()
    };
    let rest = |key: &'static str| airlock_store::NewCall {
        idem_key: key,
        body_hash: "h",
        scopes: &scopes,
        reserve_micros: limit - spent,
        now: airlock_types::Timestamp::now().as_micros(),
        window_start: 0,
    };
    let mut other = SqliteStore::open(&e.db).expect("other process");
    assert!(
        matches!(
            other.gateway_begin(&t, &rest("while-held")).expect("begin"),
            airlock_store::CallBegin::Exceeded { .. }
        ),
        "the running gateway's lease counts as spent"
    );
    let Env {
        gw, _server, db, ..
    } = e;
    _server.abort();
    let _ = _server.await;
    drop(gw);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut other = SqliteStore::open(&db).expect("other process");
        match other.gateway_begin(&t, &rest("after-stop")).expect("begin") {
            airlock_store::CallBegin::Reserved { .. } => break,
            b => assert!(
                std::time::Instant::now() < deadline,
                "lease not given back: {b:?}"
            ),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Concurrent calls, most of them drawn from the lease without a write of
/// their own: once drained, every call's row is settled at the cost its
/// audit record gives (a settlement that found another call's row, or
/// none, would leave a reservation standing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_each_settle_their_own_row() {
    let e = env(&[("org", "total", 100_000_000)], 1 << 20).await;
    let mut tasks = Vec::new();
    for i in 0..64 {
        let (addr, key) = (e.addr, e.key.clone());
        tasks.push(tokio::spawn(async move {
            let text = "word ".repeat(1 + i * 7);
            post(
                addr,
                &key,
                "/v1/chat/completions",
                chat("gpt-4o-mini", &text, Some(50 + i as u64)),
            )
            .await
        }));
    }
    for t in tasks {
        let (s, _, b) = t.await.expect("task");
        assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    }
    let calls = e.calls();
    assert_eq!(calls.len(), 64, "one audit record per call");
    let settled: Vec<i64> = calls
        .iter()
        .map(|c| d(c, "settled_micros").as_i64().expect("settled"))
        .collect();
    // Each call reserved its own worst case (max_tokens differs), above
    // what it settled: a row left pending would count its reservation.
    assert_eq!(e.spent(), settled.iter().sum::<i64>());
}
