//! The gateway end to end: its listener on loopback, virtual keys, a real
//! SQLite store, and a local provider speaking the real wire formats.

use airlock_gateway::{Gateway, GatewayConfig, Price, Provider, ProviderKind, create_key};
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

struct Env {
    _dir: tempfile::TempDir,
    db: std::path::PathBuf,
    upstream: LlmUpstream,
    sink: Arc<MemorySink>,
    addr: std::net::SocketAddr,
    key: String,
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
        },
        Provider {
            name: "anthropic".into(),
            kind: ProviderKind::Anthropic,
            base_url: url,
            secret: Some(Arc::new(Secret::new("sk-ant-real".into()))),
        },
    ];
    let mut cfg = GatewayConfig::new(tenant, providers);
    cfg.max_body_bytes = max_body;
    for m in ["fail-once-gpt", "cut-gpt", "no-usage-gpt"] {
        cfg.prices.set(m, priced(1.0));
    }
    let sink = Arc::new(MemorySink::new());
    let gw = Gateway::new(
        cfg,
        &[("openai_key".into(), Secret::new(SECRET.into()))],
        store,
        sink.clone(),
    )
    .expect("gateway");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let _ = airlock_gateway::serve(listener, gw).await;
    });
    Env {
        _dir: dir,
        db,
        upstream,
        sink,
        addr,
        key: key.expose().clone(),
        _server: server,
    }
}

impl Env {
    fn spent(&self) -> i64 {
        SqliteStore::open(&self.db)
            .expect("reopen")
            .gateway_spent(&TenantId::default_tenant(), 0)
            .expect("spent")
    }
    fn calls(&self) -> Vec<AuditEvent> {
        self.sink
            .events()
            .into_iter()
            .filter(|e| e.action == "gateway.call")
            .collect()
    }
}

/// POST raw bytes; returns status, X-Airlock-Reason and body.
async fn post(
    addr: std::net::SocketAddr,
    key: &str,
    path: &str,
    body: Vec<u8>,
) -> (u16, String, Vec<u8>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut s, c) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(c);
    let req = http::Request::post(path)
        .header("host", "gw")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let resp = s.send_request(req).await.expect("send");
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
    }];
    let sink = Arc::new(MemorySink::new());
    let gw = Gateway::new(
        GatewayConfig::new(tenant.clone(), providers),
        &[],
        store,
        sink.clone(),
    )
    .expect("gateway");
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
    let tcp = tokio::net::TcpStream::connect(up.url().trim_start_matches("http://"))
        .await
        .expect("connect");
    let (mut s, c) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(c);
    let mut fwd = http::Request::from_parts(parts, Full::new(sent));
    fwd.headers_mut()
        .insert("host", "api.openai.com".parse().expect("host"));
    let resp = s.send_request(fwd).await.expect("upstream");
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
    let events = sink.events();
    assert!(events.iter().any(|e| e.reason.code() == "budget_exceeded"
        && e.run_id.as_ref().map(|r| r.as_str()) == Some("run-1")));
    assert!(
        events
            .iter()
            .any(|e| e.reason.code() == "gateway_call" && d(e, "outcome") == "ok")
    );
}
