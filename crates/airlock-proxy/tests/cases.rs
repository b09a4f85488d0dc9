//! Replays airlock-policy's shared case table
//! (`crates/airlock-policy/tests/data/egress_cases.toml`) through the real
//! proxy: each case is sent as a real absolute-form request on a socket, its
//! name is resolved by the proxy's resolver against the testkit DNS responder
//! scripted with the case's `resolve` answer, and the decision the proxy
//! audited (and, for denials, the 403 and its `X-Airlock-Reason`) must equal
//! the table's. Address and host denials are also replayed as `CONNECT`.

use airlock_policy::{Host, Mode, PolicySpec, RuleSpec, Scheme};
use airlock_testkit::{DnsAnswer, DnsResponder};
use airlock_types::{AuditEvent, MemorySink, Outcome};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

mod support;
use support::{Running, start};

const TABLE: &str = include_str!("../../airlock-policy/tests/data/egress_cases.toml");

fn strs(v: Option<&toml::Value>) -> Vec<String> {
    v.and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn outcome(s: &str) -> Outcome {
    match s {
        "allow" => Outcome::Allow,
        "ask" => Outcome::Ask,
        "deny" => Outcome::Deny,
        other => panic!("unknown outcome {other}"),
    }
}

fn cidr(s: &str) -> (IpAddr, u8) {
    match s.split_once('/') {
        Some((a, l)) => (a.parse().expect("cidr addr"), l.parse().expect("cidr len")),
        None => {
            let a: IpAddr = s.parse().expect("addr");
            (a, if a.is_ipv4() { 32 } else { 128 })
        }
    }
}

fn policy(t: &toml::Value) -> PolicySpec {
    let mode = match t.get("mode").and_then(|m| m.as_str()) {
        Some("deny_all") => Mode::DenyAll,
        _ => Mode::ReadPublic,
    };
    let rules = t
        .get("rules")
        .and_then(|r| r.as_array())
        .map(|rs| {
            rs.iter()
                .map(|r| RuleSpec {
                    hosts: strs(r.get("hosts")),
                    schemes: strs(r.get("schemes"))
                        .iter()
                        .filter_map(|s| Scheme::parse(s))
                        .collect(),
                    methods: strs(r.get("methods")),
                    paths: strs(r.get("paths")),
                    ports: r
                        .get("ports")
                        .and_then(|v| v.as_array())
                        .map(|a| {
                            a.iter()
                                .filter_map(|p| p.as_integer())
                                .filter_map(|p| u16::try_from(p).ok())
                                .collect()
                        })
                        .unwrap_or_default(),
                    websocket: r
                        .get("websocket")
                        .and_then(|v| v.as_bool())
                        .unwrap_or(false),
                    allow_userinfo: false,
                    action: outcome(r.get("action").and_then(|a| a.as_str()).expect("action")),
                    case_insensitive: r.get("case_insensitive").and_then(|v| v.as_bool()),
                })
                .collect()
        })
        .unwrap_or_default();
    PolicySpec {
        mode,
        rules,
        allow_private: strs(t.get("allow_private"))
            .iter()
            .map(|s| cidr(s))
            .collect(),
        inspect_all: t
            .get("inspect_all")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
    }
}

/// What a client puts on the request line for `url`: WHATWG-trimmed, tabs
/// and newlines removed, non-ASCII and spaces percent-encoded (as browsers
/// and HTTP libraries do before sending).
fn wire_url(url: &str) -> String {
    let t = url.trim_matches(|c: char| c <= ' ');
    // A client converts a Unicode host to its IDNA (xn--) form before sending.
    let t = match t.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let (host, tail) = rest.split_at(end);
            match idna::domain_to_ascii(host) {
                Ok(ascii) if !host.is_ascii() => format!("{scheme}://{ascii}{tail}"),
                _ => t.to_owned(),
            }
        }
        None => t.to_owned(),
    };
    let mut out = String::new();
    for b in t.bytes().filter(|b| !matches!(b, b'\t' | b'\n' | b'\r')) {
        if b.is_ascii_graphic() {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn exchange(addr: SocketAddr, head: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect proxy");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(head.as_bytes()).expect("write");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).to_ascii_lowercase()
}

fn new_events(sink: &MemorySink, before: usize, action: &str) -> Vec<AuditEvent> {
    sink.events()
        .into_iter()
        .skip(before)
        .filter(|e| e.action == action)
        .collect()
}

const HOST_OR_ADDR: &[&str] = &[
    "loopback_address",
    "private_address",
    "link_local_address",
    "reserved_address",
    "unresolvable_host",
    "invalid_host",
    "mixed_script_host",
    "confusable_host",
];

#[test]
fn the_proxy_agrees_with_the_policy_case_table() {
    let table: toml::Value = toml::from_str(TABLE).expect("table parses");
    let dns = DnsResponder::start();
    let mut specs: BTreeMap<String, PolicySpec> = BTreeMap::new();
    specs.insert(String::new(), PolicySpec::default());
    if let Some(ps) = table.get("policies").and_then(|p| p.as_table()) {
        for (name, t) in ps {
            specs.insert(name.clone(), policy(t));
        }
    }
    let proxies: BTreeMap<String, Running> = specs
        .into_iter()
        .map(|(n, s)| (n, start(s, &dns)))
        .collect();
    let cases = table.get("case").and_then(|c| c.as_array()).expect("cases");
    let mut failures = Vec::new();
    let mut replayed = 0usize;
    for case in cases {
        if case.get("wire").and_then(|w| w.as_bool()) == Some(false) {
            continue;
        }
        let method = case.get("method").and_then(|m| m.as_str()).expect("method");
        let url = case.get("url").and_then(|u| u.as_str()).expect("url");
        let want_outcome = outcome(
            case.get("outcome")
                .and_then(|o| o.as_str())
                .expect("outcome"),
        );
        let want_reason = case.get("reason").and_then(|r| r.as_str()).expect("reason");
        let pname = case.get("policy").and_then(|p| p.as_str()).unwrap_or("");
        let p = &proxies[pname];
        let target = wire_url(url);
        let parsed = airlock_policy::parse_url(url).ok();
        if let (Some(u), Some(res)) = (&parsed, case.get("resolve"))
            && let Host::Domain(d) = &u.host
        {
            {
                let addrs: Vec<IpAddr> = strs(Some(res))
                    .iter()
                    .map(|a| a.parse().expect("resolve ip"))
                    .collect();
                dns.set(
                    d,
                    if addrs.is_empty() {
                        DnsAnswer::NxDomain
                    } else {
                        DnsAnswer::Fixed(addrs)
                    },
                );
            }
        }
        replayed += 1;
        let before = p.sink.events().len();
        let resp = exchange(
            p.addr,
            &format!("{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        );
        let evs = new_events(&p.sink, before, "egress.request");
        let got = evs
            .last()
            .and_then(|e| e.decision.map(|d| (d, e.reason.code())));
        // A request target the HTTP layer cannot even parse (a percent-encoded
        // host) is refused with 400 and audited as malformed: fail closed.
        let refused_malformed = evs.is_empty()
            && resp.starts_with("http/1.1 400")
            && (0..50).any(|_| {
                // The connection's audit record lands just after it closes.
                let found = new_events(&p.sink, before, "egress.connection")
                    .iter()
                    .any(|e| e.reason.code() == "malformed_request");
                if !found {
                    std::thread::sleep(Duration::from_millis(10));
                }
                found
            });
        if want_outcome != Outcome::Allow && refused_malformed {
            continue;
        }
        if got != Some((want_outcome, want_reason)) {
            failures.push(format!("{method} {url} [{pname}]: audited {got:?}, table says {want_outcome:?}/{want_reason}; response {:?}", resp.lines().next()));
            continue;
        }
        if want_outcome != Outcome::Allow {
            let header = format!("x-airlock-reason: {want_reason}");
            if !resp.starts_with("http/1.1 403") || !resp.contains(&header) {
                failures.push(format!(
                    "{method} {url}: response lacks 403/{header}: {:?}",
                    resp.lines().next()
                ));
            }
        }
        // Host and address refusals hold for a CONNECT to the same host too
        // (on 443 for an http URL: a CONNECT to 80 is refused for its port).
        if want_outcome == Outcome::Deny
            && HOST_OR_ADDR.contains(&want_reason)
            && let Some(u) = &parsed
        {
            {
                let port = if u.scheme == Scheme::Http {
                    443
                } else {
                    u.port
                };
                let before = p.sink.events().len();
                let resp = exchange(
                    p.addr,
                    &format!(
                        "CONNECT {}:{port} HTTP/1.1\r\nConnection: close\r\n\r\n",
                        u.host
                    ),
                );
                let evs = new_events(&p.sink, before, "egress.connect");
                let got = evs.last().map(|e| e.reason.code());
                if got != Some(want_reason) || !resp.starts_with("http/1.1 403") {
                    failures.push(format!(
                        "CONNECT {}:{port} ({url}): audited {got:?}, table says {want_reason}",
                        u.host
                    ));
                }
            }
        }
    }
    assert!(replayed > 100, "only {replayed} cases replayed");
    assert!(
        failures.is_empty(),
        "{} of {replayed} cases disagree:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
