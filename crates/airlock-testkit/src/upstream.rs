//! Local upstream servers speaking real HTTP/1.1 and HTTP/2, plain or TLS.
//!
//! Every response is JSON describing the request as received:
//! `{"method","path","query","host","version","body_len","scheme"}`.
//! Special paths: `/hang` never answers; `/ws` accepts a WebSocket-style
//! upgrade and echoes bytes; `/bytes/N` streams N bytes.

use crate::TestCa;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    conns: Arc<AtomicUsize>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Upstream {
    /// Plain HTTP on `ip` (an address in 127.0.0.0/8), ephemeral port.
    pub fn http(ip: IpAddr) -> Upstream {
        Upstream::start(ip, None)
    }

    /// HTTPS on `ip` with a certificate for `names` from `ca`.
    pub fn https(ip: IpAddr, ca: &TestCa, names: &[&str]) -> Upstream {
        let (chain, key) = ca.issue(names);
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("invariant: default versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("valid test certificate");
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Upstream::start(ip, Some(Arc::new(cfg)))
    }

    fn start(ip: IpAddr, tls: Option<Arc<rustls::ServerConfig>>) -> Upstream {
        let hits = Arc::new(AtomicUsize::new(0));
        let conns = Arc::new(AtomicUsize::new(0));
        let cn = conns.clone();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let h = hits.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, 0))
                    .await
                    .expect("bind upstream");
                let _ = addr_tx.send(listener.local_addr().expect("addr"));
                let scheme = if tls.is_some() { "https" } else { "http" };
                let accept = async move {
                    while let Ok((tcp, _)) = listener.accept().await {
                        cn.fetch_add(1, Ordering::SeqCst);
                        let h = h.clone();
                        let tls = tls.clone();
                        tokio::spawn(async move {
                            let svc = service_fn(move |req| {
                                let h = h.clone();
                                async move { Ok::<_, Infallible>(handle(req, scheme, &h).await) }
                            });
                            let builder =
                                hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                            match tls {
                                None => {
                                    let _ = builder
                                        .serve_connection_with_upgrades(TokioIo::new(tcp), svc)
                                        .await;
                                }
                                Some(cfg) => {
                                    if let Ok(s) =
                                        tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await
                                    {
                                        let _ = builder
                                            .serve_connection_with_upgrades(TokioIo::new(s), svc)
                                            .await;
                                    }
                                }
                            }
                        });
                    }
                };
                tokio::select! {
                    _ = stop_rx => {},
                    () = accept => {},
                }
            });
        });
        let addr = addr_rx.recv().expect("upstream started");
        Upstream {
            addr,
            hits,
            conns,
            _stop: stop_tx,
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// How many connections it has accepted.
    pub fn connections(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }

    /// How many requests it has received.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn handle(
    mut req: Request<Incoming>,
    scheme: &str,
    hits: &AtomicUsize,
) -> Response<Full<Bytes>> {
    hits.fetch_add(1, Ordering::SeqCst);
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
