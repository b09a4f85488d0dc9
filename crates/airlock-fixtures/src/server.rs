//! A local HTTP or HTTPS server around a caller's handler.

use crate::FixtureError;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A running server: HTTP/1.1 (and HTTP/2 over TLS when the configuration
/// offers `h2` by ALPN, or by prior knowledge in plain text), upgrades
/// allowed. Stops when dropped.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    conns: Arc<AtomicUsize>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Run `fut` (built on the new thread) on a current-thread runtime of its
/// own thread, named `what`. The future reports where it listens (or why it
/// could not) through `ready`; this waits for that report.
pub(crate) fn spawn_fixture<T, F, Fut>(what: &'static str, make: F) -> Result<T, FixtureError>
where
    T: Send + 'static,
    F: FnOnce(std::sync::mpsc::Sender<Result<T, FixtureError>>) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread_tx = ready_tx.clone();
    std::thread::Builder::new()
        .name(format!("fixture {what}"))
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(source) => {
                    let _ = thread_tx.send(Err(FixtureError::Start { what, source }));
                    return;
                }
            };
            rt.block_on(make(thread_tx));
        })
        .map_err(|source| FixtureError::Start { what, source })?;
    drop(ready_tx);
    ready_rx.recv().unwrap_or_else(|_| {
        Err(FixtureError::Start {
            what,
            source: std::io::Error::other("the fixture thread ended before it was ready"),
        })
    })
}

impl HttpServer {
    /// Serve `handler` on `ip` (ephemeral port), over TLS when `tls` is
    /// given. `handler` gets every request; the server counts requests
    /// ([`HttpServer::hits`]) and connections.
    pub fn start<H, Fut>(
        ip: IpAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
        handler: H,
    ) -> Result<HttpServer, FixtureError>
    where
        H: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
    {
        let hits = Arc::new(AtomicUsize::new(0));
        let conns = Arc::new(AtomicUsize::new(0));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (h, cn) = (hits.clone(), conns.clone());
        let handler = Arc::new(handler);
        let what = if tls.is_some() {
            "HTTPS server"
        } else {
            "HTTP server"
        };
        let addr = spawn_fixture(what, move |ready| async move {
            let at = SocketAddr::new(ip, 0);
            let listener = match tokio::net::TcpListener::bind(at).await {
                Ok(l) => l,
                Err(source) => {
                    let _ = ready.send(Err(FixtureError::Bind {
                        what,
                        addr: at.to_string(),
                        source,
                    }));
                    return;
                }
            };
            let addr = listener.local_addr().map_err(|source| FixtureError::Bind {
                what,
                addr: at.to_string(),
                source,
            });
            let failed = addr.is_err();
            let _ = ready.send(addr);
            if failed {
                return;
            }
            let accept = async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    cn.fetch_add(1, Ordering::SeqCst);
                    let (h, handler, tls) = (h.clone(), handler.clone(), tls.clone());
                    tokio::spawn(async move {
                        let svc = service_fn(move |req| {
                            h.fetch_add(1, Ordering::SeqCst);
                            let fut = handler(req);
                            async move { Ok::<_, Infallible>(fut.await) }
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
        })?;
        Ok(HttpServer {
            addr,
            hits,
            conns,
            _stop: stop_tx,
        })
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
