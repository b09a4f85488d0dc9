// Shared by the proxy fuzz targets: one proxy (read_public, no network: the
// resolver points at a closed local port) serving each input on an
// in-memory stream, with a hard time bound.
use airlock_proxy::{Proxy, ProxyConfig, ResolverSettings};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct Harness {
    rt: tokio::runtime::Runtime,
    proxy: Proxy,
}

pub fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let mut cfg = ProxyConfig {
            resolver: ResolverSettings::NameServers(vec!["127.0.0.1:9".parse().expect("addr")]),
            ..ProxyConfig::default()
        };
        cfg.timeouts.header_read = Duration::from_millis(50);
        cfg.timeouts.connect = Duration::from_millis(50);
        let policy = Arc::new(airlock_policy::EgressPolicy::read_public());
        let proxy = rt
            .block_on(async { Proxy::new(cfg, policy, Arc::new(airlock_types::NullSink), airlock_proxy::Scope::Tenant(airlock_types::TenantId::default_tenant())) })
            .expect("proxy");
        Harness { rt, proxy }
    })
}

/// Feed `bytes` to a fresh client connection and read whatever comes back.
pub fn run(bytes: &[u8]) {
    let h = harness();
    h.rt.block_on(async {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let proxy = h.proxy.clone();
        let task = tokio::spawn(async move { proxy.serve_io(server).await });
        let _ = client.write_all(bytes).await;
        let _ = client.shutdown().await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_millis(300), client.read_to_end(&mut out)).await;
        drop(client);
        let _ = tokio::time::timeout(Duration::from_millis(300), task).await;
    });
}
