//! Cost of one egress decision, to set against the proxy's latency budget
//! (added p99 ≤ 0.3 ms at c1). Plain `std` timing, no harness:
//! `cargo bench -p airlock-policy --bench decide`.

use airlock_policy::{EgressPolicy, EgressRequest, Mode, PolicySpec, RuleSpec, Scheme, parse_url};
use airlock_types::Outcome;
use std::hint::black_box;
use std::net::IpAddr;
use std::time::Instant;

fn policy() -> EgressPolicy {
    let mut rules = Vec::new();
    for i in 0..20 {
        rules.push(RuleSpec {
            hosts: vec![
                format!("api{i}.example.com"),
                format!("*.svc{i}.example.org"),
            ],
            schemes: vec![Scheme::Https],
            methods: vec!["POST".into(), "PUT".into()],
            paths: vec![format!("/v{i}/repos/*/issues/**")],
            ports: vec![],
            websocket: false,
            allow_userinfo: false,
            action: if i % 5 == 0 {
                Outcome::Deny
            } else {
                Outcome::Allow
            },
            case_insensitive: None,
        });
    }
    EgressPolicy::compile(PolicySpec {
        mode: Mode::ReadPublic,
        rules,
        ..PolicySpec::default()
    })
    .expect("valid")
}

fn bench(name: &str, iters: u32, mut f: impl FnMut()) {
    for _ in 0..iters / 10 {
        f();
    }
    let mut runs = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        runs.push(t.elapsed().as_nanos() as f64 / f64::from(iters));
    }
    runs.sort_by(f64::total_cmp);
    println!(
        "{name:<48} median {:>8.0} ns  (min {:.0}, max {:.0})",
        runs[2], runs[0], runs[4]
    );
}

fn main() {
    let p = policy();
    let public: Vec<IpAddr> = vec![
        "93.184.215.14".parse().expect("ip"),
        "2606:2800:21f:cb07::1".parse().expect("ip"),
    ];
    let cases = [
        ("parse_url + decide: IP literal", "GET", "http://8.8.8.8/"),
        (
            "parse_url + decide: name, public read",
            "GET",
            "https://www.example.net/index.html",
        ),
        (
            "parse_url + decide: name, rule match (20 rules)",
            "POST",
            "https://api7.example.com/v7/repos/x/issues/1?q=2",
        ),
        (
            "parse_url + decide: Unicode name",
            "GET",
            "https://münchen.example.de/",
        ),
        (
            "parse_url + decide: Punycode look-alike",
            "GET",
            "https://xn--80ak6aa92e.com/",
        ),
    ];
    for (name, method, url) in cases {
        bench(name, 100_000, || {
            let u = parse_url(black_box(url)).expect("valid");
            let addrs: Vec<IpAddr> = u.host.ip().map_or_else(|| public.clone(), |ip| vec![ip]);
            black_box(p.decide(&EgressRequest {
                method,
                scheme: u.scheme,
                host: &u.host,
                port: u.port,
                path: &u.path,
                addrs: &addrs,
                run: None,
                userinfo: false,
            }));
        });
    }
    let host = parse_url("https://api3.example.com/").expect("valid").host;
    bench("decide_connect (20 rules)", 200_000, || {
        black_box(p.decide_connect(black_box(&host), 443, &public));
    });
}
