//! Name resolution with hickory. The proxy resolves every name itself, hands
//! every address to the policy, and dials only addresses the policy saw.

use crate::config::ResolverSettings;
use crate::error::ProxyError;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver as HickoryResolver, TokioResolver};
use std::net::IpAddr;
use std::time::Duration;

/// A DNS resolver.
#[derive(Debug, Clone)]
pub(crate) struct Resolver {
    inner: TokioResolver,
}

impl Resolver {
    pub(crate) fn new(settings: &ResolverSettings) -> Result<Self, ProxyError> {
        let mut builder = match settings {
            ResolverSettings::System => {
                HickoryResolver::builder_tokio().map_err(|e| ProxyError::Resolver(e.to_string()))?
            }
            ResolverSettings::NameServers(servers) => {
                let mut cfg = ResolverConfig::from_parts(None, vec![], vec![]);
                for s in servers {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = s.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = s.port();
                    cfg.add_name_server(NameServerConfig::new(s.ip(), true, vec![udp, tcp]));
                }
                HickoryResolver::builder_with_config(cfg, TokioRuntimeProvider::default())
            }
        };
        let opts = builder.options_mut();
        opts.timeout = Duration::from_secs(3);
        opts.attempts = 2;
        // Answers are judged as given; a zero TTL (as a rebinding attacker
        // would send) is honoured, never stretched.
        opts.positive_min_ttl = None;
        let inner = builder
            .build()
            .map_err(|e| ProxyError::Resolver(e.to_string()))?;
        Ok(Resolver { inner })
    }

    /// Every address `name` resolves to (A and AAAA). An error or an empty
    /// answer is `None`: the caller denies with `unresolvable_host`.
    pub(crate) async fn resolve(&self, name: &str) -> Option<Vec<IpAddr>> {
        // A trailing dot keeps search domains out of it: the name is judged
        // exactly as the policy saw it.
        let fqdn = if name.ends_with('.') {
            name.to_owned()
        } else {
            format!("{name}.")
        };
        let lookup = self.inner.lookup_ip(fqdn.as_str()).await.ok()?;
        let mut addrs: Vec<IpAddr> = lookup.iter().collect();
        addrs.dedup();
        if addrs.is_empty() { None } else { Some(addrs) }
    }
}
