//! Time first-time leaf minting (what an intercepted CONNECT to a host not
//! yet in the cache pays): `cargo run --release -p airlock-proxy --example bench_mint`.

use airlock_proxy::{Proxy, ProxyConfig};
use std::sync::Arc;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let proxy = rt.block_on(async {
        Proxy::new(
            ProxyConfig::default(),
            Arc::new(airlock_policy::EgressPolicy::read_public()),
            Arc::new(airlock_types::NullSink),
            airlock_proxy::Scope::Tenant(airlock_types::TenantId::default_tenant()),
        )
    })?;
    let mut samples = Vec::new();
    for round in 0..5 {
        let n = 2000;
        let t = Instant::now();
        for i in 0..n {
            proxy.mint_leaf_for_bench(&format!("host{round}-{i}.example.com"))?;
        }
        samples.push(t.elapsed().as_secs_f64() * 1e6 / f64::from(n));
    }
    samples.sort_by(f64::total_cmp);
    println!(
        "leaf mint (P-256, signed by the in-memory CA): median {:.1} µs, min {:.1}, max {:.1} (5 rounds x 2000)",
        samples[2], samples[0], samples[4]
    );
    Ok(())
}
