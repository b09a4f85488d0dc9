//! Local upstream servers speaking real HTTP/1.1 and HTTP/2, plain or TLS:
//! an [`HttpServer`] from `airlock-fixtures` with an echoing handler.
//!
//! Every response is JSON describing the request as received:
//! `{"method","path","query","host","version","body_len","scheme"}`.
//! Special paths: `/hang` never answers; `/ws` accepts a WebSocket-style
//! upgrade and echoes bytes; `/bytes/N` streams N bytes.

use crate::TestCa;
use airlock_fixtures::HttpServer;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Plain HTTP or HTTPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamKind {
    /// HTTP/1.1 over TCP.
    Http,
    /// HTTP/1.1 or HTTP/2 (ALPN) over TLS with a certificate from the test CA.
    Https,
}

/// A running upstream. Stops when dropped.
#[derive(Debug)]
pub struct Upstream {
    server: HttpServer,
}

impl Upstream {
    /// Plain HTTP on `ip` (an address in 127.0.0.0/8), ephemeral port.
    pub fn http(ip: IpAddr) -> Upstream {
        Upstream::start(ip, None)
    }

    /// HTTPS on `ip` with a certificate for `names` from `ca`.
    pub fn https(ip: IpAddr, ca: &TestCa, names: &[&str]) -> Upstream {
        let cfg = ca
            .local_ca()
            .server_config(names, &[b"h2", b"http/1.1"])
            .expect("valid test certificate");
        Upstream::start(ip, Some(cfg))
    }

    fn start(ip: IpAddr, tls: Option<Arc<rustls::ServerConfig>>) -> Upstream {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let server =
            HttpServer::start(ip, tls, move |req| handle(req, scheme)).expect("upstream started");
        Upstream { server }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// How many connections it has accepted.
    pub fn connections(&self) -> usize {
        self.server.connections()
    }

    /// How many requests it has received.
    pub fn hits(&self) -> usize {
        self.server.hits()
    }
}

async fn handle(mut req: Request<Incoming>, scheme: &'static str) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    if path == "/hang" {
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
    }
    if path == "/ws" {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .body(Full::new(Bytes::new()))
            .expect("invariant: static response");
    }
    if let Some(n) = path
        .strip_prefix("/bytes/")
        .and_then(|n| n.parse::<usize>().ok())
    {
        return Response::new(Full::new(Bytes::from(vec![b'x'; n.min(64 << 20)])));
    }
    let method = req.method().to_string();
    let query = req.uri().query().map(str::to_owned);
    let host = req
        .headers()
        .get("host")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    let version = format!("{:?}", req.version());
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").into()))
        .collect();
    let body_len = match req.into_body().collect().await {
        Ok(b) => b.to_bytes().len(),
        Err(_) => 0,
    };
    let v = serde_json::json!({
        "method": method, "path": path, "query": query, "host": host,
        "version": version, "body_len": body_len, "scheme": scheme, "headers": headers,
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())))
        .expect("invariant: static response")
}
