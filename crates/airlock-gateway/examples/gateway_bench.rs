//! Added latency, throughput and streaming delay of the gateway and its
//! peers against the same local provider (airlock-testkit's `LlmUpstream`,
//! real OpenAI wire format incl. SSE). Run by `bench/gateway.sh`, which
//! starts each part in its own process so each can be pinned to a core.
//!
//! Usage:
//!   gateway_bench upstream ADDR
//!       the local provider on ADDR (e.g. 127.0.0.1:18080)
//!   gateway_bench gateway UPSTREAM_URL ADDR on|off KEYFILE
//!       one Airlock gateway (one worker), PII redaction on or off (secrets
//!       are masked either way); writes its virtual key to KEYFILE
//!   gateway_bench load SECONDS CONCURRENCY STREAMS TARGET...
//!       TARGET is `NAME|BASE_URL|Header: value|...`; for each target:
//!       p50/p99 at concurrency 1 and req/s at CONCURRENCY for a
//!       non-streamed chat completion (SECONDS each), then time to first
//!       byte and total time of STREAMS 200-chunk SSE answers, one at a
//!       time. The first target is the baseline ("added" = minus it). A
//!       part `pid=N` names the process serving the target: the req/s at
//!       CONCURRENCY is then also given per CPU-second that process used
//!       in that phase (utime + stime of all its threads, /proc/N/stat):
//!       requests per core, whatever else shares the core.

// The allocator the `airlock` binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use airlock_gateway::{Gateway, GatewayConfig, Provider, ProviderKind, create_key};
use airlock_store::SqliteStore;
use airlock_testkit::LlmUpstream;
use airlock_types::{NullSink, TenantId};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Body as _;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone)]
struct Target {
    name: String,
    /// host:port
    addr: String,
    /// path prefix before `/chat/completions`, e.g. `/v1`
    prefix: String,
    headers: Vec<(String, String)>,
    /// The serving process, when known (for CPU-seconds).
    pid: Option<u32>,
}

fn parse_target(s: &str) -> Target {
    let mut parts = s.split('|');
    let name = parts.next().unwrap_or("?").to_string();
    let url = parts.next().unwrap_or("").trim_start_matches("http://");
    let (addr, prefix) = match url.find('/') {
        Some(i) => (url[..i].to_string(), url[i..].trim_end_matches('/').into()),
        None => (url.to_string(), String::new()),
    };
    let parts: Vec<&str> = parts.collect();
    let pid = parts
        .iter()
        .find_map(|p| p.strip_prefix("pid="))
        .and_then(|p| p.trim().parse().ok());
    let headers = parts
        .iter()
        .filter(|p| !p.starts_with("pid="))
        .filter_map(|h| h.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Target {
        name,
        addr,
        prefix,
        headers,
        pid,
    }
}

/// CPU-seconds process `pid` has used so far (all threads, user + system),
/// from /proc/PID/stat in clock ticks (USER_HZ, 100 on Linux).
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses: state is
    // field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(t: &Target) -> Sender {
    let tcp = tokio::net::TcpStream::connect(&t.addr)
        .await
        .unwrap_or_else(|e| panic!("connect {}: {e}", t.addr));
    tcp.set_nodelay(true).expect("nodelay");
    let (s, c) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(c);
    s
}

fn request(t: &Target, body: &str) -> http::Request<Full<Bytes>> {
    let mut b = http::Request::post(format!("{}/chat/completions", t.prefix))
        .header("host", &t.addr)
        .header("content-type", "application/json")
        // A distinct step per request: no replay, every call goes upstream.
        .header("x-airlock-step", format!("{}", rand()));
    for (n, v) in &t.headers {
        b = b.header(n, v);
    }
    b.body(Full::new(Bytes::from(body.to_string())))
        .expect("request")
}

/// Send one request; (time to first body byte, total time).
async fn once(s: &mut Sender, t: &Target, body: &str) -> (Duration, Duration) {
    match try_once(s, t, body).await {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    }
}

async fn try_once(s: &mut Sender, t: &Target, body: &str) -> Result<(Duration, Duration), String> {
    let req = request(t, body);
    let start = Instant::now();
    s.ready().await.map_err(|e| e.to_string())?;
    let r = s.send_request(req).await.map_err(|e| e.to_string())?;
    let status = r.status();
    let mut b = r.into_body();
    let mut first = None;
    let mut got = Vec::new();
    while let Some(f) = b.frame().await {
        let f = f.map_err(|e| e.to_string())?;
        if let Some(d) = f.data_ref() {
            if first.is_none() && !d.is_empty() {
                first = Some(start.elapsed());
            }
            if !status.is_success() {
                got.extend_from_slice(d);
            }
        }
        if b.is_end_stream() {
            break;
        }
    }
    if !status.is_success() {
        return Err(format!(
            "{}: status {status}: {}",
            t.name,
            String::from_utf8_lossy(&got)
        ));
    }
    let total = start.elapsed();
    Ok((first.unwrap_or(total), total))
}

/// One keep-alive connection sending requests until `until`.
async fn run_until(t: Target, body: Arc<String>, until: Instant) -> Vec<Duration> {
    let mut s = connect(&t).await;
    let mut out = Vec::new();
    while Instant::now() < until {
        out.push(once(&mut s, &t, &body).await.1);
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
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1e3
}

struct Row {
    name: String,
    p50: f64,
    p99: f64,
    rps: f64,
    /// Requests per CPU-second of the serving process (NaN: unknown).
    per_core: f64,
    /// CPUs the serving process kept busy in that phase.
    busy: f64,
    ttfb: f64,
    total: f64,
}

async fn load(secs: f64, conc: usize, streams: usize, targets: Vec<Target>) {
    let filler = "The quarterly report covers revenue, churn and support load. ".repeat(14);
    let body = serde_json::json!({"model": "gpt-4o-mini", "max_tokens": 64,
        "messages": [{"role": "user", "content": format!("{filler} Contact jane.doe@example.org.")}]}).to_string();
    // 585 characters echoed back in 3-byte deltas: role + 197 deltas + stop + [DONE] = 200 events.
    let said = "Stream me a long answer about revenue, churn and support. "
        .repeat(11)
        .chars()
        .take(585)
        .collect::<String>();
    let sbody = serde_json::json!({"model": "gpt-4o-mini", "stream": true,
        "messages": [{"role": "user", "content": said}]})
    .to_string();
    println!(
        "non-streamed: {} byte request, ~1 KiB answer; {secs} s at c=1 then {secs} s at c={conc}; \
         streamed: {streams} x 200-event SSE answers (provider paces 2 ms per event)",
        body.len()
    );
    let body = Arc::new(body);
    let mut rows: Vec<Row> = Vec::new();
    for t in targets {
        let dur = Duration::from_secs_f64(secs);
        // Warm-up (also checks that the target answers).
        let _ = run_until(
            t.clone(),
            body.clone(),
            Instant::now() + Duration::from_secs(1),
        )
        .await;
        let mut lat = run_until(t.clone(), body.clone(), Instant::now() + dur).await;
        let (p50, p99) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));
        let cpu0 = t.pid.and_then(cpu_secs);
        let start = Instant::now();
        let until = start + dur;
        let tasks: Vec<_> = (0..conc)
            .map(|_| tokio::spawn(run_until(t.clone(), body.clone(), until)))
            .collect();
        let mut done = 0;
        for task in tasks {
            done += task.await.expect("task").len();
        }
        let wall = start.elapsed().as_secs_f64();
        let rps = done as f64 / wall;
        let cpu = match (cpu0, t.pid.and_then(cpu_secs)) {
            (Some(a), Some(b)) => b - a,
            _ => f64::NAN,
        };
        let mut s = connect(&t).await;
        let (mut ttfb, mut total) = (Vec::new(), Vec::new());
        // A peer that cannot stream is reported (NaN), not fatal.
        match try_once(&mut s, &t, &sbody).await {
            Ok(_) => {
                for _ in 0..streams {
                    let (a, b) = once(&mut s, &t, &sbody).await;
                    ttfb.push(a);
                    total.push(b);
                }
            }
            Err(e) => println!("{}: streamed answer failed: {e}", t.name),
        }
        let row = Row {
            name: t.name.clone(),
            p50,
            p99,
            rps,
            per_core: done as f64 / cpu,
            busy: cpu / wall,
            ttfb: pct(&mut ttfb, 0.5),
            total: pct(&mut total, 0.5),
        };
        println!(
            "{:22} p50 {:7.3} ms  p99 {:7.3} ms  {:7.0} req/s (c={conc})  {:7.0} req/CPU-s ({:.2} CPUs)  SSE ttfb {:7.3} ms  total {:7.1} ms",
            row.name, row.p50, row.p99, row.rps, row.per_core, row.busy, row.ttfb, row.total
        );
        rows.push(row);
    }
    let Some(base) = rows.first() else { return };
    println!(
        "\n{:22} {:>13} {:>13} {:>9} {:>11} {:>15} {:>15}",
        "vs first row",
        "added p50 ms",
        "added p99 ms",
        "req/s",
        "req/CPU-s",
        "added ttfb ms",
        "added total ms"
    );
    for r in &rows[1..] {
        println!(
            "{:22} {:>13.3} {:>13.3} {:>9.0} {:>11.0} {:>15.3} {:>15.1}",
            r.name,
            r.p50 - base.p50,
            r.p99 - base.p99,
            r.rps,
            r.per_core,
            r.ttfb - base.ttfb,
            r.total - base.total
        );
    }
    let ours: Vec<&Row> = rows
        .iter()
        .filter(|r| r.name.starts_with("airlock"))
        .collect();
    let peers: Vec<&Row> = rows[1..]
        .iter()
        .filter(|r| !r.name.starts_with("airlock"))
        .collect();
    if !ours.is_empty() && !peers.is_empty() {
        println!(
            "\nratios (added latency: peer / airlock, higher = airlock better; req/s: airlock / peer)"
        );
        for a in &ours {
            for p in &peers {
                println!(
                    "{:22} vs {:10}  p50 x{:.1}  p99 x{:.1}  req/s x{:.2}  ttfb x{:.1}",
                    a.name,
                    p.name,
                    (p.p50 - base.p50) / (a.p50 - base.p50),
                    (p.p99 - base.p99) / (a.p99 - base.p99),
                    a.rps / p.rps,
                    (p.ttfb - base.ttfb) / (a.ttfb - base.ttfb),
                );
            }
        }
    }
}

async fn gateway(upstream: &str, addr: &str, pii: bool, keyfile: &str) {
    let dir = tempfile::tempdir().expect("tmp");
    let mut store = SqliteStore::open(&dir.path().join("db")).expect("store");
    let tenant = TenantId::default_tenant();
    let (key, _) = create_key(&mut store, &tenant, "bench", None).expect("key");
    let p = Provider {
        name: "openai".into(),
        kind: ProviderKind::OpenAi,
        base_url: upstream.parse().expect("upstream url"),
        secret: None,
        privacy: Default::default(),
    };
    let mut cfg = GatewayConfig::new(tenant, vec![p]);
    cfg.redact_pii = pii;
    let gw = Gateway::new(cfg, &[], store, Arc::new(NullSink)).expect("gateway");
    let l = tokio::net::TcpListener::bind(addr).await.expect("bind");
    std::fs::write(keyfile, key.expose()).expect("write key");
    let _ = airlock_gateway::serve(l, gw).await;
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match arg(0) {
        "upstream" => rt.block_on(async {
            let up = LlmUpstream::start_at(arg(1).parse().expect("ADDR")).await;
            println!("upstream {}", up.url());
            std::future::pending::<()>().await;
        }),
        "gateway" => rt.block_on(gateway(arg(1), arg(2), arg(3) == "on", arg(4))),
        "load" => {
            let secs = arg(1).parse().unwrap_or(5.0);
            let conc = arg(2).parse().unwrap_or(16);
            let streams = arg(3).parse().unwrap_or(10);
            let targets = args.iter().skip(4).map(|t| parse_target(t)).collect();
            rt.block_on(load(secs, conc, streams, targets));
        }
        _ => eprintln!(
            "usage: see the doc comment of crates/airlock-gateway/examples/gateway_bench.rs"
        ),
    }
}
