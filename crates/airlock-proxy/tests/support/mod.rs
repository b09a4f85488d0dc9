//! Shared by the proxy's integration tests: a real `Proxy` on a loopback
//! port with a policy, the testkit DNS responder as its resolver, and an
//! in-memory audit sink.

use airlock_policy::{EgressPolicy, PolicySpec};
use airlock_proxy::{Proxy, ProxyConfig, ResolverSettings};
use airlock_testkit::DnsResponder;
use airlock_types::MemorySink;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("rt");
        rt.block_on(async move {
            let proxy = Proxy::new(cfg, Arc::new(policy), s2, None).expect("proxy");
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let _ = tx.send(l.local_addr().expect("addr"));
            let _ = proxy
                .serve(l, async {
                    let _ = stop_rx.await;
                })
                .await;
        });
    });
    Running {
        addr: rx.recv().expect("started"),
        sink,
        _stop: stop_tx,
    }
}
