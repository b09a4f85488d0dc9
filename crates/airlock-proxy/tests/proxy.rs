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

fn lo(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

fn spec(mode: Mode, rules: Vec<RuleSpec>, private: bool) -> PolicySpec {
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
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("rt");
        rt.block_on(async move {
            let proxy = Proxy::new(cfg, Arc::new(policy), sink, None).expect("proxy");
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let _ = tx.send((listener.local_addr().expect("addr"), proxy.ca_cert_pem()));
            let _ = proxy
                .serve(listener, async {
                    let _ = stop_rx.await;
                })
                .await;
        });
    });
    let (addr, pem) = rx.recv().expect("proxy started");
    let ca_path = dir.path().join("proxy-ca.pem");
    std::fs::write(&ca_path, pem).expect("write ca");
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
    assert_eq!(ev.reason.code(), "public_read");
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
    let rules = vec![RuleSpec::for_hosts(&["api.test"], Outcome::Allow)];
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
            .any(|(r, d)| r == "malformed_request" && d.starts_with("client TLS: ")),
        "{tls:?}"
    );
    assert!(
        tls.iter()
            .any(|(r, d)| r == "limit_exceeded" && d == "client TLS handshake timed out"),
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
        RuleSpec::for_hosts(&["secure.test"], Outcome::Allow),
        RuleSpec::for_hosts(&["blocked.test"], Outcome::Deny),
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
fn websocket_upgrade_passes_after_the_policy_check() {
    let dns = DnsResponder::start();
    let up = Upstream::http(lo(12));
    dns.set("ws.test", DnsAnswer::Fixed(vec![lo(12)]));
    let p = start(
        spec(Mode::ReadPublic, vec![], true),
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
    assert_eq!(
        last(&p.events(), "egress.request").resource,
        format!("http://ws.test:{}/ws", up.port())
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
        .block_on(async { Proxy::new(cfg, Arc::new(policy), sink.clone(), None) })
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
    assert_eq!(req.reason.code(), "public_read");
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
