//! Shared by the proxy's integration tests: a real `Proxy` served on a
//! loopback port from its own runtime thread, and (for the simple cases) a
//! proxy with a policy, the testkit DNS responder as its resolver and an
//! in-memory audit sink.

// Each test crate that includes this module uses part of it.
#![allow(dead_code)]

use airlock_policy::{EgressPolicy, PolicySpec};
use airlock_proxy::{Proxy, ProxyConfig, ResolverSettings};
use airlock_testkit::DnsResponder;
use airlock_types::MemorySink;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A served proxy: its address, its CA certificate (PEM), and the handle
/// that stops it when dropped.
pub struct Served {
    pub addr: SocketAddr,
    pub ca_pem: String,
    pub stop: tokio::sync::oneshot::Sender<()>,
}

/// Serve the proxy `build` makes (built inside the runtime it serves on) on
/// a loopback port, on a thread of its own.
pub fn serve(build: impl FnOnce() -> Proxy + Send + 'static) -> Served {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("rt");
        rt.block_on(async move {
            let proxy = build();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let _ = tx.send((listener.local_addr().expect("addr"), proxy.ca_cert_pem()));
            let _ = proxy
                .serve(listener, async {
                    let _ = stop_rx.await;
                })
                .await;
        });
    });
    let (addr, ca_pem) = rx.recv().expect("proxy started");
    Served {
        addr,
        ca_pem,
        stop: stop_tx,
    }
}

/// A proxy serving on `addr` until dropped.
pub struct Running {
    pub addr: SocketAddr,
    pub sink: Arc<MemorySink>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Start a proxy with `spec` that resolves through `dns`.
pub fn start(spec: PolicySpec, dns: &DnsResponder) -> Running {
    let policy = EgressPolicy::compile(spec).expect("policy compiles");
    let mut cfg = ProxyConfig {
        resolver: ResolverSettings::NameServers(vec![dns.addr()]),
        ..ProxyConfig::default()
    };
    cfg.timeouts.connect = Duration::from_millis(500);
    let sink = Arc::new(MemorySink::new());
    let s2 = sink.clone();
    let served = serve(move || {
        Proxy::new(
            cfg,
            Arc::new(policy),
            s2,
            airlock_proxy::Scope::Tenant(airlock_types::TenantId::default_tenant()),
        )
        .expect("proxy")
    });
    Running {
        addr: served.addr,
        sink,
        _stop: served.stop,
    }
}
