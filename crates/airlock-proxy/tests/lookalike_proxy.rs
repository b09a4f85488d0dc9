//! Issue 18 through the real proxy: absolute-form requests from the shared
//! malformed-URL table, URLs with userinfo, and look-alike hosts (also as
//! CONNECT) are refused and audited with their reason.

use airlock_policy::{PolicySpec, RuleSpec};
use airlock_proxy::{Proxy, ProxyConfig, ResolverSettings};
use airlock_testkit::{DnsAnswer, DnsResponder, TestCa, Upstream};
use airlock_types::{AuditEvent, MemorySink, Outcome};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

const MALFORMED: &str = include_str!("../../airlock-policy/tests/data/malformed_urls.tsv");

mod support;
use support::Running;

fn lo(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

fn start(dns: &DnsResponder) -> Running {
    support::start(PolicySpec::default(), dns)
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

/// The audit records written since `before` (the connection's record lands
/// just after it closes, so wait briefly for one). A failure identical to
/// one recorded less than a second ago (two unparseable request lines in a
/// row) is aggregated: its record, carrying `repeated`, comes when the
/// one-second window closes, so wait up to three seconds.
fn audited_since(sink: &MemorySink, before: usize) -> Vec<AuditEvent> {
    for _ in 0..300 {
        let evs: Vec<AuditEvent> = sink.events().into_iter().skip(before).collect();
        if !evs.is_empty() {
            return evs;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Vec::new()
}

/// Sends `GET target` and returns (status line, audited reason codes).
fn get(p: &Running, target: &str) -> (String, Vec<String>) {
    let before = p.sink.events().len();
    let resp = exchange(
        p.addr,
        &format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    );
    let evs = audited_since(&p.sink, before);
    assert!(
        evs.iter().all(|e| e.decision != Some(Outcome::Allow)),
        "{target}: {evs:?}"
    );
    (
        resp.lines().next().unwrap_or("").to_owned(),
        evs.iter().map(|e| e.reason.code().to_owned()).collect(),
    )
}

/// Sends `GET target` and returns (status line, audited reason codes),
/// for a request the policy allows.
fn get_allowed(p: &Running, target: &str) -> (String, Vec<String>) {
    let before = p.sink.events().len();
    let resp = exchange(
        p.addr,
        &format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    );
    let evs = audited_since(&p.sink, before);
    (
        resp.lines().next().unwrap_or("").to_owned(),
        evs.iter().map(|e| e.reason.code().to_owned()).collect(),
    )
}

#[test]
fn malformed_url_table_is_refused_and_audited_by_the_proxy() {
    let dns = DnsResponder::start();
    let p = start(&dns);
    let mut failures = Vec::new();
    for line in MALFORMED
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (url, reason) = line.split_once('\t').expect("url<TAB>reason");
        // A client cannot put a space on the request line: it encodes it.
        let target = url.replace("\\s", "%20");
        let (status, reasons) = get(&p, &target);
        // The HTTP layer may refuse a target it cannot parse before the
        // policy sees it: that is a 400 audited as malformed_request.
        let ok = (status.starts_with("http/1.1 403") && reasons.iter().any(|r| r == reason))
            || (status.starts_with("http/1.1 400")
                && reasons
                    .iter()
                    .any(|r| r == reason || r == "malformed_request"));
        if !ok {
            failures.push(format!(
                "{url}: {status} audited {reasons:?}, want {reason}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn url_with_user_credentials_is_refused_and_audited_without_them() {
    let dns = DnsResponder::start();
    let p = start(&dns);
    let before = p.sink.events().len();
    let (status, reasons) = get(&p, "http://bob:hunter2@example.com/x");
    assert!(status.starts_with("http/1.1 403"), "{status}");
    // One deny decision, saying the URL had userinfo but not what it was.
    assert_eq!(reasons, vec!["userinfo_in_url".to_owned()]);
    let evs: Vec<AuditEvent> = p.sink.events().into_iter().skip(before).collect();
    assert_eq!(evs[0].resource, "http://example.com/x");
    assert_eq!(
        evs[0].details.get("userinfo").and_then(|v| v.as_str()),
        Some("true")
    );
    assert_eq!(
        dns.queries("example.com"),
        0,
        "refused on its URL, not resolved"
    );
    let dump = format!("{evs:?}");
    assert!(!dump.contains("hunter2") && !dump.contains("bob"), "{dump}");
}

/// A rule with `allow_userinfo` lets a URL with credentials through to the
/// hosts it names, as an `Authorization: Basic` header (never in the request
/// target, never in the audit); any other host still refuses it, audited.
#[test]
fn userinfo_passes_only_where_a_rule_allows_it_and_never_reaches_the_audit() {
    let dns = DnsResponder::start();
    let up = Upstream::http(lo(61));
    dns.set("repo.test", DnsAnswer::Fixed(vec![lo(61)]));
    dns.set("other.test", DnsAnswer::Fixed(vec![lo(61)]));
    let spec = PolicySpec {
        rules: vec![
            RuleSpec {
                ports: (1..=u16::MAX).collect(),
                allow_userinfo: true,
                ..RuleSpec::for_hosts(&["repo.test"], Outcome::Allow)
            },
            RuleSpec {
                ports: (1..=u16::MAX).collect(),
                methods: vec!["GET".into()],
                ..RuleSpec::for_hosts(&["other.test"], Outcome::Allow)
            },
        ],
        allow_private: vec![(lo(0), 8)],
        ..PolicySpec::default()
    };
    let p = support::start(spec, &dns);
    let port = up.port();

    // Allowed: the upstream sees Basic credentials (percent-escapes decoded)
    // and a request target without them.
    let before = p.sink.events().len();
    let resp = exchange(
        p.addr,
        &format!(
            "GET http://bob:hunter%32@repo.test:{port}/simple?x=1 HTTP/1.1\r\nHost: repo.test\r\nConnection: close\r\n\r\n"
        ),
    );
    assert!(resp.starts_with("http/1.1 200"), "{resp}");
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("");
    let seen: serde_json::Value = serde_json::from_str(body).expect("upstream json");
    assert_eq!(seen["path"], "/simple");
    assert_eq!(seen["query"], "x=1");
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "bob:hunter2");
    let basic = format!("basic {b64}");
    assert_eq!(
        seen["headers"]["authorization"]
            .as_str()
            .map(str::to_ascii_lowercase),
        Some(basic.to_ascii_lowercase())
    );
    let evs = audited_since(&p.sink, before);
    assert_eq!(
        evs.iter()
            .map(|e| (e.resource.clone(), e.reason.code()))
            .collect::<Vec<_>>(),
        vec![(format!("http://repo.test:{port}/simple"), "rule_allow")]
    );

    // An Authorization header the client sent itself wins over the URL's.
    let resp = exchange(
        p.addr,
        &format!(
            "GET http://bob:hunter2@repo.test:{port}/own HTTP/1.1\r\nHost: repo.test\r\nAuthorization: Bearer mine\r\nConnection: close\r\n\r\n"
        ),
    );
    assert!(resp.starts_with("http/1.1 200"), "{resp}");
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("");
    let seen: serde_json::Value = serde_json::from_str(body).expect("upstream json");
    assert_eq!(seen["headers"]["authorization"], "bearer mine");

    // Another host, allowed for GET but not for userinfo: refused, audited,
    // not forwarded, not even resolved.
    let hits = up.hits();
    let (status, reasons) = get(&p, &format!("http://bob:hunter2@other.test:{port}/x"));
    assert!(status.starts_with("http/1.1 403"), "{status}");
    assert_eq!(reasons, vec!["userinfo_in_url".to_owned()]);
    assert_eq!(up.hits(), hits);
    assert_eq!(dns.queries("other.test"), 0);
    // Without userinfo the same request passes.
    let (status, _) = get_allowed(&p, &format!("http://other.test:{port}/x"));
    assert!(status.starts_with("http/1.1 200"), "{status}");

    let dump = format!("{:?}", p.sink.events());
    for secret in ["hunter2", "hunter%32", "bob", &b64] {
        assert!(!dump.contains(secret), "{secret} in {dump}");
    }
}

/// Open a CONNECT tunnel to `target` through the proxy at `addr` and
/// start TLS in it for `name`, trusting `ca_pem` (the proxy's CA).
fn tunnel(
    addr: SocketAddr,
    target: &str,
    name: &str,
    ca_pem: &str,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut s = TcpStream::connect(addr).expect("connect proxy");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .expect("write CONNECT");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("pem")).expect("root");
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let server = rustls::pki_types::ServerName::try_from(name.to_owned()).expect("name");
    let conn = rustls::ClientConnection::new(Arc::new(cfg), server).expect("client");
    rustls::StreamOwned::new(conn, s)
}

/// The shared malformed-URL table inside a real intercepted HTTPS tunnel:
/// each URL as the absolute-form request target, and (when it has no
/// userinfo, which a `Host` header cannot carry) its authority as the `Host`
/// header of an origin-form request. Each is refused with the table's
/// reason and audited, as outside a tunnel; a target the HTTP layer cannot
/// parse at all is a 400 audited as `malformed_request`.
#[test]
fn malformed_url_table_is_refused_and_audited_inside_an_intercepted_tunnel() {
    let dns = DnsResponder::start();
    let ca = TestCa::new();
    let up = Upstream::https(lo(62), &ca, &["secure.test"]);
    dns.set("secure.test", DnsAnswer::Fixed(vec![lo(62)]));
    let policy = airlock_policy::EgressPolicy::compile(PolicySpec {
        rules: vec![RuleSpec {
            ports: vec![up.port()],
            methods: vec!["GET".into()],
            ..RuleSpec::for_hosts(&["secure.test"], Outcome::Allow)
        }],
        allow_private: vec![(lo(0), 8)],
        ..PolicySpec::default()
    })
    .expect("policy");
    let cfg = ProxyConfig {
        resolver: ResolverSettings::NameServers(vec![dns.addr()]),
        upstream_extra_ca_pem: Some(ca.cert_pem().as_bytes().to_vec()),
        ..ProxyConfig::default()
    };
    let sink = Arc::new(MemorySink::new());
    let s2 = sink.clone();
    let served = support::serve(move || {
        Proxy::new(
            cfg,
            Arc::new(policy),
            s2,
            airlock_proxy::Scope::Tenant(airlock_types::TenantId::default_tenant()),
        )
        .expect("proxy")
    });
    let target = format!("secure.test:{}", up.port());

    // Sends one request head in a fresh tunnel: (status line, reasons of
    // the records about requests inside it).
    let inside = |head: &str| -> (String, Vec<String>) {
        let before = sink.events().len();
        let mut tls = tunnel(served.addr, &target, "secure.test", &served.ca_pem);
        tls.write_all(head.as_bytes()).expect("write");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n) = tls.read(&mut chunk) {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let status = String::from_utf8_lossy(&buf)
            .lines()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let mut reasons = Vec::new();
        for _ in 0..300 {
            reasons = sink
                .events()
                .into_iter()
                .skip(before)
                .filter(|e| e.action != "egress.connect")
                .map(|e| e.reason.code().to_owned())
                .collect();
            if !reasons.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        (status, reasons)
    };

    // The tunnel itself works: a well-formed request is forwarded.
    let (status, reasons) = inside(&format!(
        "GET /ok HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n"
    ));
    assert!(status.starts_with("http/1.1 200"), "{status}");
    assert_eq!(reasons, vec!["rule_allow".to_owned()]);

    let mut failures = Vec::new();
    let mut tried = 0;
    for line in MALFORMED
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (url, reason) = line.split_once('\t').expect("url<TAB>reason");
        let mut heads = vec![(
            "request target",
            format!(
                "GET {} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n",
                url.replace("\\s", "%20")
            ),
        )];
        let authority = url
            .split_once("://")
            .map_or("", |(_, r)| r.split(['/', '?', '#']).next().unwrap_or(""));
        if !authority.contains('@') {
            heads.push((
                "Host header",
                format!(
                    "GET /x HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                    authority.replace("\\s", " ")
                ),
            ));
        }
        for (how, head) in heads {
            tried += 1;
            let (status, reasons) = inside(&head);
            let ok = (status.starts_with("http/1.1 403") && reasons.iter().any(|r| r == reason))
                || (status.starts_with("http/1.1 400")
                    && reasons.iter().any(|r| r == "malformed_request"));
            if !ok || reasons.iter().any(|r| r == "rule_allow") {
                failures.push(format!(
                    "{url} as {how}: {status} audited {reasons:?}, want {reason}"
                ));
            }
        }
    }
    assert!(tried > 30, "{tried}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(
        up.hits(),
        1,
        "only the well-formed request reached the upstream"
    );
}

#[test]
fn look_alike_hosts_are_refused_and_audited_by_the_proxy() {
    let dns = DnsResponder::start();
    let p = start(&dns);
    for (host, reason) in [
        ("gooɡle.com", "idn_disallowed_character"),
        ("pаypal.com", "mixed_script_host"),
        ("аррӏе.com", "idn_whole_script_confusable"),
        ("googleノcom.example", "idn_dangerous_pattern"),
        ("shop1\u{0967}.com", "idn_mixed_numbers"),
        ("gıthub.com", "idn_confusable"),
    ] {
        let ascii = idna::domain_to_ascii(host).expect("valid IDNA");
        let (status, reasons) = get(&p, &format!("http://{ascii}/"));
        assert!(status.starts_with("http/1.1 403"), "{host}: {status}");
        assert_eq!(reasons, vec![reason.to_owned()], "{host}");
        let before = p.sink.events().len();
        let resp = exchange(
            p.addr,
            &format!("CONNECT {ascii}:443 HTTP/1.1\r\nConnection: close\r\n\r\n"),
        );
        assert!(resp.starts_with("http/1.1 403"), "{host}: {resp}");
        let evs = audited_since(&p.sink, before);
        let connect: Vec<&str> = evs
            .iter()
            .filter(|e| e.action == "egress.connect")
            .map(|e| e.reason.code())
            .collect();
        assert_eq!(connect, vec![reason], "CONNECT {host}");
        assert_eq!(dns.queries(&ascii), 0, "no DNS query for a refused name");
    }
}
