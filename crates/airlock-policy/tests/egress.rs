//! Integration tests: the shared case table, replayed through the pure
//! decision, and property tests of the host parser and address guard.

use airlock_policy::{
    ConnectDecision, EgressPolicy, EgressRequest, Host, Mode, PolicySpec, RuleSpec, Scheme,
    classify_addr, parse_host, parse_url,
};
use airlock_types::{Decision, Outcome, Reason};
use proptest::prelude::*;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    policies: BTreeMap<String, TablePolicy>,
    case: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TablePolicy {
    mode: Option<String>,
    inspect_all: Option<bool>,
    allow_private: Option<Vec<String>>,
    #[serde(default)]
    rules: Vec<TableRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableRule {
    hosts: Vec<String>,
    #[serde(default)]
    schemes: Vec<String>,
    #[serde(default)]
    methods: Vec<String>,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    ports: Vec<u16>,
    #[serde(default)]
    websocket: bool,
    action: String,
    case_insensitive: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    method: String,
    url: String,
    resolve: Option<Vec<String>>,
    policy: Option<String>,
    outcome: String,
    reason: String,
    #[allow(dead_code)]
    wire: Option<bool>,
    #[allow(dead_code)]
    note: Option<String>,
}

fn outcome(s: &str) -> Outcome {
    match s {
        "allow" => Outcome::Allow,
        "ask" => Outcome::Ask,
        "deny" => Outcome::Deny,
        other => panic!("table: unknown outcome {other:?}"),
    }
}

/// The test's own reading of the table's policy format (the binary's
/// config loader is tested against the same table in policy_cli.rs).
fn compile(p: &TablePolicy) -> EgressPolicy {
    let spec = PolicySpec {
        mode: match p.mode.as_deref() {
            None | Some("read_public") => Mode::ReadPublic,
            Some("deny_all") => Mode::DenyAll,
            Some(other) => panic!("table: unknown mode {other:?}"),
        },
        inspect_all: p.inspect_all.unwrap_or(false),
        allow_private: p
            .allow_private
            .iter()
            .flatten()
            .map(|c| match c.split_once('/') {
                Some((a, l)) => (
                    a.parse().expect("table cidr"),
                    l.parse().expect("table cidr"),
                ),
                None => {
                    let a: IpAddr = c.parse().expect("table ip");
                    (a, if a.is_ipv4() { 32 } else { 128 })
                }
            })
            .collect(),
        rules: p
            .rules
            .iter()
            .map(|r| RuleSpec {
                hosts: r.hosts.clone(),
                schemes: r
                    .schemes
                    .iter()
                    .map(|s| Scheme::parse(s).expect("table scheme"))
                    .collect(),
                methods: r.methods.clone(),
                paths: r.paths.clone(),
                ports: r.ports.clone(),
                websocket: r.websocket,
                allow_userinfo: false,
                action: outcome(&r.action),
                case_insensitive: r.case_insensitive,
            })
            .collect(),
    };
    EgressPolicy::compile(spec).expect("table policy compiles")
}

fn load_table() -> (Table, BTreeMap<String, EgressPolicy>) {
    let text = include_str!("data/egress_cases.toml");
    let table: Table = toml::from_str(text).expect("table parses");
    let policies = table
        .policies
        .iter()
        .map(|(k, v)| (k.clone(), compile(v)))
        .collect();
    (table, policies)
}

/// What `airlock policy check` and the proxy do with one case.
fn decide_case(policy: &EgressPolicy, c: &Case) -> (Decision, Option<ConnectDecision>) {
    let url = match parse_url(&c.url) {
        Ok(u) => u,
        Err(e) => return (Decision::deny(e.reason()), None),
    };
    let addrs: Vec<IpAddr> = match (&url.host, &c.resolve) {
        (Host::Ip(ip), None) => vec![*ip],
        (Host::Ip(_), Some(_)) => panic!("{}: an IP literal must not have `resolve`", c.url),
        (Host::Domain(_), Some(r)) => r
            .iter()
            .map(|a| a.parse().expect("table resolve address"))
            .collect(),
        // Refused before resolution (the table documents this).
        (Host::Domain(_), None) => Vec::new(),
    };
    let req = EgressRequest {
        method: &c.method,
        scheme: url.scheme,
        host: &url.host,
        port: url.port,
        path: &url.path,
        addrs: &addrs,
        run: None,
        userinfo: false,
    };
    let connect =
        (url.scheme == Scheme::Https).then(|| policy.decide_connect(&url.host, url.port, &addrs));
    (policy.decide(&req), connect)
}

#[test]
fn case_table_decisions() {
    let (table, policies) = load_table();
    let default = EgressPolicy::read_public();
    let mut failures = Vec::new();
    for c in &table.case {
        let policy = match &c.policy {
            None => &default,
            Some(name) => policies
                .get(name)
                .unwrap_or_else(|| panic!("{}: unknown policy {name:?}", c.url)),
        };
        let want_reason = Reason::from_code(&c.reason)
            .unwrap_or_else(|| panic!("{}: unknown reason {:?}", c.url, c.reason));
        let want = Decision {
            outcome: outcome(&c.outcome),
            reason: want_reason,
        };
        let (got, connect) = decide_case(policy, c);
        if got != want {
            failures.push(format!(
                "{} {} [{:?}]: want {want:?}, got {got:?}",
                c.method, c.url, c.policy
            ));
        }
        // The CONNECT that precedes an HTTPS request agrees with it: a
        // refused CONNECT carries the request's own refusal, and a blind
        // tunnel is only chosen when the request is allowed.
        match connect {
            Some(ConnectDecision::Deny(d)) if d != got => {
                failures.push(format!(
                    "{}: CONNECT refused with {d:?} but the request gets {got:?}",
                    c.url
                ));
            }
            Some(ConnectDecision::Tunnel(_)) if !got.is_allow() => {
                failures.push(format!("{}: tunnel chosen but request {got:?}", c.url));
            }
            _ => {}
        }
    }
    assert!(
        table.case.len() >= 150,
        "the table should stay broad: {}",
        table.case.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        table.case.len(),
        failures.join("\n")
    );
}

#[test]
fn case_table_covers_every_egress_reason() {
    let (table, _) = load_table();
    for code in [
        "public_read",
        "rule_allow",
        "rule_deny",
        "default_deny",
        "deny_all",
        "approval_required",
        "write_requires_https",
        "loopback_address",
        "private_address",
        "link_local_address",
        "reserved_address",
        "unresolvable_host",
        "invalid_host",
        "mixed_script_host",
        "confusable_host",
        "port_not_allowed",
    ] {
        assert!(
            table.case.iter().any(|c| c.reason == code),
            "no case for {code}"
        );
    }
}

fn v4_spellings(a: Ipv4Addr) -> Vec<String> {
    let [b0, b1, b2, b3] = a.octets();
    let n = u32::from(a);
    vec![
        format!("{a}"),
        format!("{n}"),
        format!("0x{n:x}"),
        format!("0X{n:08X}"),
        format!("0{n:o}"),
        format!("0{b0:o}.0x{b1:x}.{b2}.0{b3:o}"),
        format!(
            "{b0}.{}",
            (u32::from(b1) << 16) | (u32::from(b2) << 8) | u32::from(b3)
        ),
        format!("{b0}.{b1}.{}", (u32::from(b2) << 8) | u32::from(b3)),
        format!("{a}."),
        format!(
            "%{:02x}{}",
            u32::from(format!("{b0}").as_bytes()[0]),
            &format!("{a}")[1..]
        ),
        format!("0x{b0:02x}.0x{b1:02x}.0x{b2:02x}.0x{b3:02x}"),
        format!("00{b0:o}.{b1}.{b2}.{b3}"),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Every WHATWG spelling of an IPv4 address parses to that address, so
    /// the guard judges the address, not its spelling.
    #[test]
    fn ipv4_spellings_are_one_host(n in any::<u32>()) {
        let a = Ipv4Addr::from(n);
        for s in v4_spellings(a) {
            prop_assert_eq!(parse_host(&s), Ok(Host::Ip(IpAddr::V4(a))), "{}", s);
        }
    }

    /// Every IPv6 spelling (compressed, full, bracketed in a URL, IPv4-dotted
    /// tail) parses to the same address.
    #[test]
    fn ipv6_spellings_are_one_host(n in any::<u128>()) {
        let a = Ipv6Addr::from(n);
        let s = a.segments();
        let full = s.iter().map(|x| format!("{x:X}")).collect::<Vec<_>>().join(":");
        let dotted = format!("{}:{}", s[..6].iter().map(|x| format!("{x:x}")).collect::<Vec<_>>().join(":"), Ipv4Addr::from(n as u32));
        for text in [format!("[{a}]"), format!("[{full}]"), format!("[{dotted}]")] {
            prop_assert_eq!(parse_host(&text), Ok(Host::Ip(IpAddr::V6(a))), "{}", text);
        }
        let url = parse_url(&format!("http://[{a}]:8080/x")).expect("valid");
        prop_assert_eq!(url.host, Host::Ip(IpAddr::V6(a)));
    }

    /// An IPv4-mapped or NAT64 form is judged exactly like its IPv4 address.
    #[test]
    fn embedded_ipv4_is_judged_as_itself(n in any::<u32>()) {
        let v4 = IpAddr::V4(Ipv4Addr::from(n));
        let mapped = IpAddr::V6(Ipv4Addr::from(n).to_ipv6_mapped());
        let nat64 = IpAddr::V6(Ipv6Addr::from((0x0064_ff9b_u128 << 96) | u128::from(n)));
        prop_assert_eq!(classify_addr(mapped), classify_addr(v4));
        prop_assert_eq!(classify_addr(nat64), classify_addr(v4));
        let sixto4 = IpAddr::V6(Ipv6Addr::from((0x2002_u128 << 112) | (u128::from(n) << 80) | 1));
        prop_assert_eq!(classify_addr(sixto4), classify_addr(v4));
    }

    /// One bad address anywhere in the answer denies, whatever else is there.
    #[test]
    fn one_bad_address_denies(public in prop::collection::vec(any::<[u8; 4]>(), 0..4), bad in 0usize..5, pos in 0usize..5) {
        let bad_addrs = ["127.0.0.1", "10.9.8.7", "169.254.169.254", "::1", "fd00:ec2::254"];
        let mut addrs: Vec<IpAddr> = public.iter().map(|o| IpAddr::V4(Ipv4Addr::from(*o))).filter(|a| classify_addr(*a).is_none()).collect();
        let b: IpAddr = bad_addrs[bad].parse().expect("ip");
        addrs.insert(pos.min(addrs.len()), b);
        let host = Host::Domain("example.com".into());
        let d = EgressPolicy::read_public().decide(&EgressRequest {
            method: "GET", scheme: Scheme::Https, host: &host, port: 443, path: "/", addrs: &addrs, run: None, userinfo: false,
        });
        prop_assert_eq!(d, Decision::deny(classify_addr(b).expect("bad address")));
    }

    /// Arbitrary text never panics the parsers or the decision.
    #[test]
    fn arbitrary_input_never_panics(s in ".{0,64}", m in "[A-Za-z ]{0,8}") {
        let _ = parse_host(&s);
        let _ = airlock_policy::parse_authority(&s, 443);
        if let Ok(u) = parse_url(&format!("http://{s}")) {
            let _ = EgressPolicy::read_public().decide(&EgressRequest {
                method: &m, scheme: u.scheme, host: &u.host, port: u.port, path: &u.path, addrs: &[], run: None, userinfo: false,
            });
        }
    }
}
