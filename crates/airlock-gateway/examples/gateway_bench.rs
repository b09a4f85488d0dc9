//! Added latency and throughput of the gateway against the same local
//! provider: direct, gateway with PII redaction off (secrets still masked),
//! gateway with PII redaction on. Run by `bench/gateway.sh`.
//!
//! Usage: gateway_bench [REQUESTS] [CONCURRENCY]

use airlock_gateway::{Gateway, GatewayConfig, Provider, ProviderKind, create_key};
use airlock_store::SqliteStore;
use airlock_testkit::LlmUpstream;
use airlock_types::{NullSink, TenantId};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn gateway(up: &LlmUpstream, pii: bool, dir: &std::path::Path) -> (String, String) {
    let mut store = SqliteStore::open(&dir.join(format!("db-{pii}"))).expect("store");
    let tenant = TenantId::default_tenant();
    let (key, _) = create_key(&mut store, &tenant, "bench", None).expect("key");
    let p = Provider {
        name: "openai".into(),
        kind: ProviderKind::OpenAi,
        base_url: up.url().parse().expect("url"),
        secret: None,
        privacy: Default::default(),
    };
    let mut cfg = GatewayConfig::new(tenant, vec![p]);
    cfg.redact_pii = pii;
    let gw = Gateway::new(cfg, &[], store, Arc::new(NullSink)).expect("gateway");
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move { airlock_gateway::serve(l, gw).await });
    (format!("{addr}"), key.expose().clone())
}

/// One keep-alive connection sending `n` requests; per-request latency.
async fn run(addr: &str, key: &str, n: usize, body: &str, distinct: bool) -> Vec<Duration> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let (mut s, c) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(c);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        // A distinct step per request: no replay, every call goes upstream.
        let req = http::Request::post("/v1/chat/completions")
            .header("host", "bench")
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .header(
                "x-airlock-step",
                if distinct {
                    format!("{i}-{}", rand())
                } else {
                    "0".into()
                },
            )
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("req");
        let t = Instant::now();
        s.ready().await.expect("ready");
        let r = s.send_request(req).await.expect("send");
        assert!(r.status().is_success(), "status {}", r.status());
        let _ = r.into_body().collect().await.expect("body");
        out.push(t.elapsed());
    }
    out
}

fn rand() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1e3
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(2000);
    let conc = args.get(1).copied().unwrap_or(8);
    let up = LlmUpstream::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let filler = "The quarterly report covers revenue, churn and support load. ".repeat(14);
    let body = serde_json::json!({"model": "gpt-4o-mini", "max_tokens": 64,
        "messages": [{"role": "user", "content": format!("{filler} Contact jane.doe@example.org.")}]}).to_string();
    println!(
        "body {} bytes, {n} requests at concurrency 1, then {n} at concurrency {conc}",
        body.len()
    );
    let direct = (
        up.url().trim_start_matches("http://").to_string(),
        String::new(),
    );
    let off = gateway(&up, false, dir.path()).await;
    let on = gateway(&up, true, dir.path()).await;
    let mut base_p50 = 0.0;
    let mut base_p99 = 0.0;
    for (name, (addr, key)) in [
        ("direct", direct),
        ("gateway, PII redaction off", off),
        ("gateway, PII redaction on", on),
    ] {
        let _ = run(&addr, &key, 50, &body, true).await; // warm-up
        let mut lat = run(&addr, &key, n, &body, true).await;
        let (p50, p99) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));
        if name == "direct" {
            base_p50 = p50;
            base_p99 = p99;
        }
        let t = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..conc {
            let (a, k, b) = (addr.clone(), key.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
                run(&a, &k, n / conc, &b, true).await.len()
            }));
        }
        let mut done = 0;
        for t in tasks {
            done += t.await.expect("task");
        }
        let rps = done as f64 / t.elapsed().as_secs_f64();
        println!(
            "{name:28} p50 {p50:.3} ms  p99 {p99:.3} ms  added p50 {:+.3} ms  added p99 {:+.3} ms  {rps:.0} req/s (c={conc})",
            p50 - base_p50,
            p99 - base_p99
        );
    }
}
