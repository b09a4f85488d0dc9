//! HTTPS load client for `bench/proxy.sh`: requests through a forward
//! proxy's `CONNECT` tunnel (or straight to the origin), HTTP/1.1 over
//! rustls, from one thread, so that the client is not what limits the rate
//! (the Python client it replaces topped out near 2k requests/s).
//!
//! ```text
//! tls_load --url https://127.0.0.1:18443/1k --ca ORIGIN_OR_PROXY_CA.pem
//!          [--proxy 127.0.0.1:18090] [--mode reuse|new] [--conns N] [--secs S]
//!          [--tls12]
//! ```
//!
//! `reuse`: each of N connections opens one tunnel (CONNECT + TLS) and sends
//! requests on it back to back. `new`: every request pays a new TCP
//! connection, `CONNECT` and TLS handshake. Without `--proxy`, the same
//! client talks TLS to the origin directly (the "direct new TLS" row).
//! `--tls12` limits the client to TLS 1.2 (default: TLS 1.3 and 1.2).
//!
//! Every response must be `200` with the full body; the run fails (exit 1)
//! when fewer than 99 % of the requests were, so a misconfigured benchmark
//! cannot report a rate of errors.

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

type Error = Box<dyn std::error::Error + Send + Sync>;

static TLS12_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];

#[derive(Clone)]
struct Target {
    proxy: Option<SocketAddr>,
    origin: SocketAddr,
    server_name: ServerName<'static>,
    authority: String,
    path: String,
    tls: TlsConnector,
}

#[derive(Default)]
struct Tally {
    ok: u64,
    bad_status: u64,
    errors: u64,
    first_problem: Option<String>,
    latencies: Vec<Duration>,
}

impl Tally {
    fn problem(&mut self, what: String) {
        if self.first_problem.is_none() {
            self.first_problem = Some(what);
        }
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let url: http::Uri = arg(&args, "--url").ok_or("--url is required")?.parse()?;
    let ca = arg(&args, "--ca").ok_or("--ca is required")?;
    let proxy = arg(&args, "--proxy").map(|p| p.parse()).transpose()?;
    let mode = arg(&args, "--mode").unwrap_or_else(|| "reuse".into());
    let conns: usize = arg(&args, "--conns").map_or(Ok(1), |c| c.parse())?;
    let secs: f64 = arg(&args, "--secs").map_or(Ok(5.0), |s| s.parse())?;
    let new_each = match mode.as_str() {
        "reuse" => false,
        "new" => true,
        other => return Err(format!("--mode: {other}: expected reuse or new").into()),
    };
    let host = url.host().ok_or("--url: no host")?.to_owned();
    let port = url.port_u16().unwrap_or(443);
    let origin: SocketAddr = format!("{host}:{port}").parse()?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&ca)? {
        roots.add(cert?)?;
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(if args.iter().any(|a| a == "--tls12") {
        TLS12_ONLY
    } else {
        rustls::DEFAULT_VERSIONS
    })?
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let target = Target {
        proxy,
        origin,
        server_name: ServerName::try_from(host.clone())?,
        authority: format!("{host}:{port}"),
        path: url.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
        tls: TlsConnector::from(Arc::new(cfg)),
    };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (tally, elapsed) = rt.block_on(async {
        // Warm-up: one request, so the proxy's leaf is minted before timing.
        let mut warm = Tally::default();
        worker(
            &target,
            Instant::now() + Duration::from_millis(200),
            true,
            &mut warm,
        )
        .await;
        let start = Instant::now();
        let end = start + Duration::from_secs_f64(secs);
        let mut tasks = Vec::new();
        for _ in 0..conns.max(1) {
            let t = target.clone();
            tasks.push(tokio::spawn(async move {
                let mut tally = Tally::default();
                worker(&t, end, new_each, &mut tally).await;
                tally
            }));
        }
        let mut all = Tally::default();
        for t in tasks {
            let t = t.await.unwrap_or_default();
            all.ok += t.ok;
            all.bad_status += t.bad_status;
            all.errors += t.errors;
            if all.first_problem.is_none() {
                all.first_problem = t.first_problem;
            }
            all.latencies.extend(t.latencies);
        }
        (all, start.elapsed())
    });
    let total = tally.ok + tally.bad_status + tally.errors;
    let mut lat = tally.latencies;
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "{:.0} req/s  p50 {:.2} ms  p99 {:.2} ms  ({} requests, {} x 200, {} other status, {} errors; {} conn{})",
        tally.ok as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        total,
        tally.ok,
        tally.bad_status,
        tally.errors,
        conns,
        if new_each {
            ", new tunnel per request"
        } else {
            ""
        }
    );
    if total == 0 || (tally.ok as f64) < 0.99 * total as f64 {
        eprintln!(
            "tls_load: only {} of {} responses were 200 with the full body; first problem: {}",
            tally.ok,
            total,
            tally.first_problem.as_deref().unwrap_or("none")
        );
        std::process::exit(1);
    }
    Ok(())
}

/// Send requests until `end`, on one connection (`new_each`: one per request).
async fn worker(t: &Target, end: Instant, new_each: bool, tally: &mut Tally) {
    let mut sender = None;
    while Instant::now() < end {
        let t0 = Instant::now();
        if sender.is_none() {
            match open(t).await {
                Ok(s) => sender = Some(s),
                Err(e) => {
                    tally.errors += 1;
                    tally.problem(format!("connect: {e}"));
                    // Bounded: an unreachable proxy ends the run, not a spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(s) = sender.as_mut() else { continue };
        match request(t, s).await {
            Ok(true) => tally.ok += 1,
            Ok(false) => {
                tally.bad_status += 1;
                tally.problem("a response that was not 200 with the full body".into());
            }
            Err(e) => {
                tally.errors += 1;
                tally.problem(format!("request: {e}"));
                sender = None;
            }
        }
        tally.latencies.push(t0.elapsed());
        if new_each {
            sender = None;
        }
    }
}

async fn open(t: &Target) -> Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>, Error> {
    let mut tcp = TcpStream::connect(t.proxy.unwrap_or(t.origin)).await?;
    tcp.set_nodelay(true)?;
    if t.proxy.is_some() {
        let connect = format!("CONNECT {a} HTTP/1.1\r\nHost: {a}\r\n\r\n", a = t.authority);
        tcp.write_all(connect.as_bytes()).await?;
        let mut head = Vec::with_capacity(256);
        let mut buf = [0u8; 512];
        while !head.ends_with(b"\r\n\r\n") {
            // The proxy sends only the head, then waits for our ClientHello,
            // so reading byte-wise up to the blank line takes no extra bytes.
            let n = tcp.read(&mut buf[..1]).await?;
            if n == 0 || head.len() > 8192 {
                return Err("proxy closed the connection during CONNECT".into());
            }
            head.extend_from_slice(&buf[..n]);
        }
        if !head.starts_with(b"HTTP/1.1 200") && !head.starts_with(b"HTTP/1.0 200") {
            let line = String::from_utf8_lossy(&head);
            let line = line.lines().next().unwrap_or_default().to_owned();
            return Err(format!("CONNECT refused: {line}").into());
        }
    }
    let tls = t.tls.connect(t.server_name.clone(), tcp).await?;
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn request(
    t: &Target,
    s: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
) -> Result<bool, Error> {
    s.ready().await?;
    let req = http::Request::get(t.path.as_str())
        .header(http::header::HOST, t.authority.as_str())
        .body(Empty::new())?;
    let resp = s.send_request(req).await?;
    let status = resp.status();
    let want = resp
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(status == http::StatusCode::OK && want.is_none_or(|w| w == body.len()) && !body.is_empty())
}
