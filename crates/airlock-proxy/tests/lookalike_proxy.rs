//! Issue 18 through the real proxy: absolute-form requests from the shared
//! malformed-URL table, URLs with userinfo, and look-alike hosts (also as
//! CONNECT) are refused and audited with their reason.

use airlock_policy::PolicySpec;
use airlock_testkit::DnsResponder;
use airlock_types::{AuditEvent, MemorySink, Outcome};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const MALFORMED: &str = include_str!("../../airlock-policy/tests/data/malformed_urls.tsv");

mod support;
use support::Running;

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
    // The parse failure and the deny decision, both with the reason.
    assert_eq!(reasons, vec!["userinfo_in_url".to_owned(); 2]);
    let dump = format!(
        "{:?}",
        p.sink.events().into_iter().skip(before).collect::<Vec<_>>()
    );
    assert!(!dump.contains("hunter2") && !dump.contains("bob"), "{dump}");
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
