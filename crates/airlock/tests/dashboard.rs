//! The web dashboard end to end: the real `airlock serve` (TLS with its
//! development certificate, on a loopback port), its first admin made by
//! `--init-admin`, a run started through the API whose request to the
//! metadata address is blocked, `curl` for the HTTP-level checks (cookie
//! flags, CSRF and cross-site refusals audited with `csrf_refused`, session
//! rotation and revocation, tenant isolation, security headers) and
//! headless Chromium from Debian (Selenium with `chromium-driver`) for what
//! a person sees: the login form, the run and its blocked request with its
//! reason, an audit record whose URL carries `<script>` and an ANSI escape
//! rendered inert, the chain's verification, logout. Screenshots go to
//! `$CARGO_TARGET_TMPDIR/dashboard-screenshots/`.
//!
//! The browser test needs `AIRLOCK_TEST_PYTHON` (a Python with `selenium`;
//! `scripts/test` makes it), `/usr/bin/chromium` and `/usr/bin/chromedriver`:
//! it skips without them, and fails instead when `AIRLOCK_REQUIRE_SDK_TESTS`
//! is set (CI).

#[path = "api_support.rs"]
mod api_support;
use api_support::{BIN, airlock, free_port, wait_listening};

use std::collections::HashMap;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    base: String,
    cert: PathBuf,
    username: String,
    password: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `airlock --tenant acme serve --init-admin`: the printed credentials, then serving.
fn serve(dir: &Path) -> Server {
    serve_as(dir, "acme")
}

fn serve_as(dir: &Path, tenant: &str) -> Server {
    let port = free_port();
    let mut child = Command::new(BIN)
        .args([
            "--tenant",
            tenant,
            "serve",
            "--init-admin",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("AIRLOCK_DATA_DIR", dir)
        .env_remove("AIRLOCK_CONFIG")
        .env_remove("AIRLOCK_ENV")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let out = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(out).lines();
    let mut field = |name: &str| {
        let l = lines
            .next()
            .expect("a line of --init-admin output")
            .expect("utf-8");
        l.strip_prefix(&format!("{name}: "))
            .unwrap_or_else(|| panic!("expected {name}: …, got {l:?}"))
            .to_owned()
    };
    let username = field("username");
    let password = field("password");
    assert_eq!(username, format!("admin@{tenant}"));
    assert!(password.len() >= 20, "a strong one-time password");
    let s = Server {
        child,
        base: format!("https://127.0.0.1:{port}"),
        cert: dir.join("api-dev-cert.pem"),
        username,
        password,
    };
    wait_listening(port);
    s
}

/// One response: status, headers (lower-case), body.
struct Resp {
    status: u16,
    headers: String,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            l.strip_prefix(&format!("{name}:"))
                .map(|v| v.trim().to_owned())
        })
    }
}

/// A request with curl. `form`: a urlencoded body; `extra`: headers.
fn req(
    s: &Server,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: Option<&[(&str, &str)]>,
    extra: &[&str],
) -> Resp {
    let tmp = tempfile::tempdir().expect("tmp");
    let (hf, bf) = (tmp.path().join("h"), tmp.path().join("b"));
    let mut c = Command::new("curl");
    c.args(["-s", "--max-time", "30", "--cacert"]).arg(&s.cert);
    c.args(["-X", method, "-D"]).arg(&hf).arg("-o").arg(&bf);
    c.args(["-w", "%{http_code}"]);
    if let Some(k) = cookie {
        c.args(["-H", &format!("Cookie: __Host-airlock_session={k}")]);
    }
    if let Some(f) = form {
        for (k, v) in f {
            c.args(["--data-urlencode", &format!("{k}={v}")]);
        }
    }
    for h in extra {
        c.args(["-H", h]);
    }
    c.arg(format!("{}{path}", s.base));
    let o = c.output().expect("curl");
    Resp {
        status: String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .unwrap_or(0),
        headers: std::fs::read_to_string(&hf)
            .unwrap_or_default()
            .to_ascii_lowercase(),
        body: std::fs::read_to_string(&bf).unwrap_or_default(),
    }
}

/// A JSON API request with a bearer token.
fn api(s: &Server, method: &str, path: &str, token: &str, body: Option<&str>) -> serde_json::Value {
    let mut c = Command::new("curl");
    c.args(["-s", "--max-time", "30", "--cacert"]).arg(&s.cert);
    c.args([
        "-X",
        method,
        "-H",
        &format!("Authorization: Bearer {token}"),
    ]);
    if let Some(b) = body {
        c.args(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    c.arg(format!("{}{path}", s.base));
    let o = c.output().expect("curl");
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

fn token(dir: &Path, tenant: &str) -> String {
    let (code, out, err) = airlock(
        dir,
        &["--tenant", tenant, "token", "create", "--scope", "admin"],
    );
    assert_eq!(code, 0, "{err}");
    out.trim().to_owned()
}

/// The tenant's audit records (events), in order.
fn audit(dir: &Path, tenant: &str) -> Vec<serde_json::Value> {
    let store = airlock_store::SqliteStore::open_read_only(&dir.join("airlock.db")).expect("db");
    let mut out = Vec::new();
    airlock_audit::export(
        &store,
        &airlock_types::TenantId::new(tenant).expect("tenant"),
        0,
        airlock_audit::ExportFormat::RecordJsonl,
        &mut out,
    )
    .expect("export");
    String::from_utf8_lossy(&out)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["event"].clone())
        .collect()
}

fn count(events: &[serde_json::Value], action: &str, reason: &str) -> usize {
    events
        .iter()
        .filter(|e| e["action"] == action && e["reason"] == reason)
        .count()
}

fn setup() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("data");
    assert_eq!(airlock(&dir, &["init"]).0, 0);
    for t in ["acme", "globex"] {
        let (code, _, err) = airlock(&dir, &["tenant", "create", t]);
        assert_eq!(code, 0, "{err}");
    }
    (tmp, dir)
}

/// Start a run through the API that asks for the cloud metadata address
/// (refused: `link_local_address`) and wait for it to end; its id.
fn blocked_run(s: &Server, token: &str) -> String {
    let body =
        r#"{"command":["curl","-s","-o","/dev/null","http://169.254.169.254/latest/meta-data/"]}"#;
    let r = api(s, "POST", "/v1/runs", token, Some(body));
    let id = r["id"].as_str().unwrap_or_else(|| panic!("{r}")).to_owned();
    let start = Instant::now();
    loop {
        let r = api(s, "GET", &format!("/v1/runs/{id}"), token, None);
        if r["state"] != "running" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "run did not end");
        std::thread::sleep(Duration::from_millis(200));
    }
    id
}

fn login(s: &Server, old: Option<&str>) -> String {
    let r = req(
        s,
        "POST",
        "/login",
        old,
        Some(&[("username", &s.username), ("password", &s.password)]),
        &[
            &format!("Origin: {}", s.base),
            "Sec-Fetch-Site: same-origin",
        ],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location").as_deref(), Some("/runs"));
    let c = r.header("set-cookie").expect("a session cookie");
    c.strip_prefix("__host-airlock_session=")
        .and_then(|v| v.split(';').next())
        .expect("cookie value")
        .to_owned()
}

/// Append, as a second writer to acme's live log, a denied egress record
/// of `run` whose URL is `resource` (what an agent can get into its trail).
fn append_denied(dir: &Path, run: &str, resource: &str) {
    let home =
        airlock_runtime::Home::resolve(Some(dir.to_owned()), None, HashMap::new()).expect("home");
    let settings = airlock_runtime::AuditSettings {
        checkpoint_every: 1000,
        checkpoint_interval: Duration::from_secs(3600),
        store: Default::default(),
    };
    let t = airlock_types::TenantId::new("acme").expect("tenant");
    let log = airlock_runtime::audit::open(&home, &t, &settings).expect("audit");
    log.record(
        airlock_types::AuditEvent::new(
            t.clone(),
            airlock_types::Actor::new(airlock_types::ActorKind::Agent, run),
            airlock_types::Action::EgressRequest,
            resource,
            airlock_types::Reason::LinkLocalAddress,
            airlock_types::EventResult::Denied,
        )
        .with_run(airlock_types::RunId::new(run).expect("run id"))
        .with_decision(airlock_types::Decision::deny(
            airlock_types::Reason::LinkLocalAddress,
        )),
    )
    .expect("record");
    log.close().expect("close");
}

/// A browser script that prints `READY` once its page is open, then waits
/// for what the test does meanwhile, and prints its findings as JSON.
struct Browser {
    child: Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl Browser {
    fn until_ready(py: &std::ffi::OsStr, script: &str, args: &[&str], shots: &Path) -> Browser {
        let mut child = Command::new(py)
            .args(["-c", script])
            .args(args)
            .arg(shots)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("selenium");
        let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        let ready = lines.next().and_then(Result::ok).unwrap_or_default();
        let mut b = Browser { child, lines };
        if ready != "READY" {
            let (_, _, err) = b.end();
            panic!("the page did not open: {ready}\n{err}");
        }
        b
    }

    /// Wait for the script: whether it succeeded, its remaining output
    /// lines and its stderr.
    fn end(&mut self) -> (bool, Vec<String>, String) {
        let rest: Vec<String> = self.lines.by_ref().map_while(Result::ok).collect();
        let status = self.child.wait().expect("selenium");
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        (status.success(), rest, err)
    }

    /// Wait for the script to succeed; its JSON findings.
    fn finish(mut self) -> serde_json::Value {
        let (ok, rest, err) = self.end();
        assert!(ok, "selenium failed: {rest:?}\n{err}");
        serde_json::from_str(rest.last().map(String::as_str).unwrap_or("")).expect("json")
    }
}

fn csrf_of(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .expect("a CSRF field on the page");
    page[at + 19..at + 19 + 64].to_owned()
}

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn assert_security_headers(r: &Resp, what: &str) {
    for (h, v) in [
        ("content-security-policy", CSP),
        ("x-frame-options", "deny"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        (
            "strict-transport-security",
            "max-age=31536000; includesubdomains",
        ),
    ] {
        assert_eq!(
            r.header(h).map(|x| x.to_ascii_lowercase()),
            Some(v.to_ascii_lowercase()),
            "{what}: {h}"
        );
    }
}

#[test]
fn sessions_cookies_csrf_isolation_and_logout_over_http() {
    let (_tmp, dir) = setup();
    let acme = token(&dir, "acme");
    let globex = token(&dir, "globex");
    let s = serve(&dir);
    let theirs = blocked_run(&s, &globex);

    // Without a session every page sends the browser to the form.
    let r = req(&s, "GET", "/runs", None, None, &[]);
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/login".into()))
    );
    let r = req(&s, "GET", "/login", None, None, &[]);
    assert_eq!(r.status, 200);
    assert_security_headers(&r, "/login");
    assert!(r.header("set-cookie").is_none(), "no cookie before login");

    // A wrong password: 401, the form again, audited.
    let r = req(
        &s,
        "POST",
        "/login",
        None,
        Some(&[("username", &s.username), ("password", "wrong")]),
        &[],
    );
    assert_eq!(r.status, 401);
    assert!(r.header("set-cookie").is_none());
    assert_eq!(
        count(&audit(&dir, "acme"), "api.auth_failed", "unauthenticated"),
        1
    );

    // A cross-site login form is refused too (login CSRF).
    let r = req(
        &s,
        "POST",
        "/login",
        None,
        Some(&[("username", &s.username), ("password", &s.password)]),
        &["Origin: https://evil.example", "Sec-Fetch-Site: cross-site"],
    );
    assert_eq!(r.status, 403);
    assert!(r.header("set-cookie").is_none());

    // Login: the cookie's flags.
    let first = login(&s, None);
    assert!(first.starts_with("als_") && first.len() == 68, "{first}");
    let r = req(
        &s,
        "POST",
        "/login",
        None,
        Some(&[("username", &s.username), ("password", &s.password)]),
        &[],
    );
    let c = r.header("set-cookie").expect("cookie");
    let flags: Vec<&str> = c.split(';').skip(1).map(str::trim).collect();
    assert_eq!(
        flags,
        ["path=/", "httponly", "samesite=strict", "secure"],
        "{c}"
    );

    // Logging in again with the old cookie rotates it: the old one is dead.
    let cookie = login(&s, Some(&first));
    assert_ne!(cookie, first);
    let r = req(&s, "GET", "/runs", Some(&first), None, &[]);
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/login".into())),
        "the replaced session no longer works"
    );

    // The one-time password must be replaced before any page is shown.
    let r = req(&s, "GET", "/runs", Some(&cookie), None, &[]);
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/password".into()))
    );
    let r = req(&s, "GET", "/password", Some(&cookie), None, &[]);
    assert_eq!(r.status, 200);
    let csrf = csrf_of(&r.body);
    let same = [
        format!("Origin: {}", s.base),
        "Sec-Fetch-Site: same-origin".to_owned(),
    ];
    let same: Vec<&str> = same.iter().map(String::as_str).collect();
    let new_pw = "a much longer passphrase 42";
    for (current, new, confirm, status) in [
        ("wrong", new_pw, new_pw, 401),
        (s.password.as_str(), new_pw, "something else entirely", 422),
        (s.password.as_str(), "short", "short", 422),
        (
            s.password.as_str(),
            s.password.as_str(),
            s.password.as_str(),
            422,
        ),
    ] {
        let form = [
            ("csrf", csrf.as_str()),
            ("current", current),
            ("new", new),
            ("confirm", confirm),
        ];
        let r = req(&s, "POST", "/password", Some(&cookie), Some(&form), &same);
        assert_eq!(r.status, status, "{current} {new} {confirm}: {}", r.body);
    }
    let form = [
        ("csrf", csrf.as_str()),
        ("current", s.password.as_str()),
        ("new", new_pw),
        ("confirm", new_pw),
    ];
    let r = req(&s, "POST", "/password", Some(&cookie), Some(&form), &same);
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/runs".into())),
        "{}",
        r.body
    );
    let r = req(
        &s,
        "POST",
        "/login",
        None,
        Some(&[("username", &s.username), ("password", &s.password)]),
        &[],
    );
    assert_eq!(r.status, 401, "the one-time password is spent");
    assert_eq!(count(&audit(&dir, "acme"), "user.changed", "recorded"), 1);

    let r = req(&s, "GET", "/runs", Some(&cookie), None, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_security_headers(&r, "/runs");
    assert!(!r.body.contains("<script"), "no script on the page");
    let csrf = csrf_of(&r.body);

    // The approvals inbox: the tenant's pending calls, exactly as hashed
    // (escaped), never another tenant's. (Proposed the way the approval
    // service stores them.)
    let db = airlock_store::SqliteStore::open(&dir.join("airlock.db")).expect("db");
    let now = airlock_types::Timestamp::now().as_micros();
    for (tenant, id, subject) in [
        (
            "acme",
            "apr-acme-1",
            r#"{"subject":{"url":"https://x.example/<script>alert(1)</script>"}}"#,
        ),
        ("globex", "apr-globex-1", r#"{"subject":{}}"#),
    ] {
        db.approval_insert(
            &airlock_types::TenantId::new(tenant).expect("tenant"),
            &airlock_store::NewApproval {
                id,
                run: "run-x",
                agent: None,
                subject,
                sha256: &format!("{:0>64}", id.len()),
                policy_version: "1",
                reason: "approval_required",
                taint: "",
                created: now,
                expires: now + 600_000_000,
            },
        )
        .expect("propose");
    }
    let r = req(&s, "GET", "/approvals", Some(&cookie), None, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("apr-acme-1") && !r.body.contains("apr-globex-1"),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains("https://x.example/&lt;script&gt;alert(1)&lt;/script&gt;")
            && !r.body.contains("<script>"),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains(&format!("approve apr-acme-1 --sha256 {:0>64}", 10))
    );

    // Another tenant's run is 404, and not listed.
    assert!(!r.body.contains(&theirs));
    let r = req(
        &s,
        "GET",
        &format!("/runs/{theirs}"),
        Some(&cookie),
        None,
        &[],
    );
    assert_eq!(r.status, 404);
    assert_security_headers(&r, "404");

    // Cross-site POSTs are refused and audited, and change nothing.
    let ids = |v: serde_json::Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|t| t["id"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    let tokens_before = ids(api(&s, "GET", "/v1/tokens", &acme, None));
    let zeros = "0".repeat(64);
    let cross = [
        (
            vec![("csrf", csrf.as_str()), ("scopes", "admin")],
            vec!["Origin: https://evil.example", "Sec-Fetch-Site: cross-site"],
        ),
        (
            vec![("csrf", csrf.as_str()), ("scopes", "admin")],
            vec!["Origin: null"],
        ),
        (vec![("scopes", "admin")], vec![]),
        (
            vec![("csrf", zeros.as_str()), ("scopes", "admin")],
            vec!["Sec-Fetch-Site: same-origin"],
        ),
    ];
    for (form, headers) in &cross {
        let r = req(&s, "POST", "/tokens", Some(&cookie), Some(form), headers);
        assert_eq!(r.status, 403, "{form:?} {headers:?}: {}", r.body);
        assert!(r.body.contains("csrf_refused"), "{}", r.body);
    }
    assert_eq!(
        ids(api(&s, "GET", "/v1/tokens", &acme, None)),
        tokens_before
    );
    let events = audit(&dir, "acme");
    assert_eq!(count(&events, "api.auth_failed", "csrf_refused"), 4);
    let refusal = events
        .iter()
        .find(|e| e["reason"] == "csrf_refused")
        .expect("refusal");
    assert_eq!(refusal["actor"]["id"], "user:admin@acme");
    assert_eq!(refusal["result"], "denied");

    // A malformed form is 400 in HTML and audited in the user's tenant.
    let r = req(
        &s,
        "POST",
        "/tokens",
        Some(&cookie),
        Some(&[("csrf", &csrf), ("scopes", "admin"), ("admin", "true")]),
        &same,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/html"))
    );
    let events = audit(&dir, "acme");
    let bad: Vec<_> = events
        .iter()
        .filter(|e| e["action"] == "api.request" && e["reason"] == "malformed_request")
        .collect();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(bad[0]["resource"], "POST /tokens");
    assert_eq!(bad[0]["actor"]["id"], "user:admin@acme");

    // The same form from this site creates a token, shown once, that works.
    let r = req(
        &s,
        "POST",
        "/tokens",
        Some(&cookie),
        Some(&[
            ("csrf", &csrf),
            ("scopes", "runs:read"),
            ("description", "<b>ci</b>"),
        ]),
        &[
            &format!("Origin: {}", s.base),
            "Sec-Fetch-Site: same-origin",
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let at = r.body.find("id=\"new-token\">").expect("new token") + 15;
    let new_token = r.body[at..at + 68].to_owned();
    assert!(new_token.starts_with("alt_"));
    assert!(r.body.contains("&lt;b&gt;ci&lt;/b&gt;") && !r.body.contains("<b>ci"));
    let runs = api(&s, "GET", "/v1/runs", &new_token, None);
    assert!(runs.is_array(), "{runs}");
    let r = req(&s, "GET", "/tokens", Some(&cookie), None, &[]);
    assert!(!r.body.contains(&new_token), "shown once");
    assert!(count(&audit(&dir, "acme"), "token.created", "recorded") >= 1);

    // Logout: needs the token, revokes the session, clears the cookie.
    let r = req(
        &s,
        "POST",
        "/logout",
        Some(&cookie),
        Some(&[("csrf", "x")]),
        &[],
    );
    assert_eq!(r.status, 403);
    let r = req(
        &s,
        "POST",
        "/logout",
        Some(&cookie),
        Some(&[("csrf", &csrf)]),
        &[],
    );
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/login".into()))
    );
    assert!(
        r.header("set-cookie")
            .is_some_and(|c| c.contains("max-age=0"))
    );
    let r = req(&s, "GET", "/runs", Some(&cookie), None, &[]);
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/login".into())),
        "the old cookie no longer works"
    );
    let events = audit(&dir, "acme");
    assert_eq!(count(&events, "session.created", "recorded"), 3);
    assert_eq!(count(&events, "session.revoked", "recorded"), 1);
    assert_eq!(count(&events, "user.created", "recorded"), 1);
    let text = serde_json::to_string(&events).expect("json");
    assert!(!text.contains(&s.password), "no password in the log");
    assert!(!text.contains(new_pw), "no password in the log");
    assert!(!text.contains(&cookie), "no session token in the log");
}

/// The browser's Python, or `None` (skip) when it is not available locally.
fn browser_python() -> Option<std::ffi::OsString> {
    let required = std::env::var_os("AIRLOCK_REQUIRE_SDK_TESTS").is_some();
    let missing = |what: &str| {
        assert!(!required, "AIRLOCK_REQUIRE_SDK_TESTS is set but {what}");
        eprintln!("*** SKIPPED: {what}");
        None
    };
    let Some(py) = std::env::var_os("AIRLOCK_TEST_PYTHON") else {
        return missing("AIRLOCK_TEST_PYTHON is not set (scripts/test sets it)");
    };
    for p in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        if !Path::new(p).exists() {
            return missing(&format!(
                "{p} is missing (Debian: chromium chromium-driver)"
            ));
        }
    }
    let ok = Command::new(&py)
        .args(["-c", "import selenium"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return missing("selenium is not importable by AIRLOCK_TEST_PYTHON");
    }
    Some(py)
}

/// The imports every browser script needs and `chrome()`: headless
/// Chromium from Debian through its chromedriver (nothing downloaded).
macro_rules! chrome {
    () => {
        r#"
import json, os, sys, time
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.support.ui import WebDriverWait

def chrome():
    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
              "--disable-dev-shm-usage", "--ignore-certificate-errors", "--window-size=1400,1000"]:
        o.add_argument(a)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)

class waiter:
    # The pages re-render parts of themselves (notices after a POST, live
    # updates): an element found a moment ago may be replaced before its
    # text is read, which is a reason to look again, not a failure.
    # Chromium reports some of those as an inspector error rather than a
    # stale element ("Node with given id does not belong to the document").
    def __init__(self, d):
        self.w = WebDriverWait(d, 20, ignored_exceptions=(StaleElementReferenceException,))

    def until(self, f):
        def look(d):
            try:
                return f(d)
            except WebDriverException as e:
                if "does not belong to the document" in str(e):
                    return False
                raise
        return self.w.until(look)
"#
    };
}

const SELENIUM: &str = concat!(
    chrome!(),
    r#"

base, user, pw, run, shots = sys.argv[1:6]
d = chrome()
out = {}
try:
    wait = waiter(d)
    d.get(base + "/runs")
    wait.until(lambda d: d.current_url.endswith("/login"))
    d.find_element(By.ID, "username").send_keys(user)
    d.find_element(By.ID, "password").send_keys(pw)
    d.save_screenshot(os.path.join(shots, "1-login.png"))
    d.find_element(By.ID, "login").click()
    wait.until(lambda d: d.current_url.endswith("/password"))
    d.find_element(By.ID, "current").send_keys(pw)
    d.find_element(By.ID, "new").send_keys("a much longer passphrase 42")
    d.find_element(By.ID, "confirm").send_keys("a much longer passphrase 42")
    d.save_screenshot(os.path.join(shots, "2-password.png"))
    d.find_element(By.ID, "change").click()
    wait.until(lambda d: d.current_url.endswith("/runs"))
    out["runs_text"] = d.find_element(By.TAG_NAME, "body").text
    d.save_screenshot(os.path.join(shots, "3-runs.png"))
    c = d.get_cookie("__Host-airlock_session")
    out["cookie"] = {k: c.get(k) for k in ["value", "httpOnly", "secure", "sameSite", "path"]}
    out["cookie_visible_to_js"] = d.execute_script("return document.cookie")
    d.find_element(By.LINK_TEXT, run).click()
    wait.until(lambda d: run in d.current_url)
    out["run_text"] = d.find_element(By.TAG_NAME, "body").text
    out["run_title"] = d.title
    out["scripts"] = [e.get_attribute("src") for e in d.find_elements(By.TAG_NAME, "script")]
    out["pwned"] = d.execute_script("return window.pwned === undefined ? null : window.pwned")
    out["resources"] = [e.text for e in d.find_elements(By.CSS_SELECTOR, "td.resource")]
    out["reasons"] = [e.text for e in d.find_elements(By.CSS_SELECTOR, "td.reason")]
    d.save_screenshot(os.path.join(shots, "4-run.png"))
    d.get(base + "/audit?run=" + run)
    out["verify"] = d.find_element(By.ID, "verify").text
    d.save_screenshot(os.path.join(shots, "5-audit.png"))
    d.find_element(By.ID, "logout").click()
    wait.until(lambda d: d.current_url.endswith("/login"))
    d.save_screenshot(os.path.join(shots, "6-logged-out.png"))
    d.get(base + "/runs")
    out["after_logout_url"] = d.current_url
finally:
    d.quit()
print(json.dumps(out))
"#
);

#[test]
fn a_browser_logs_in_sees_the_blocked_run_and_its_reason_and_agent_markup_is_inert() {
    let Some(py) = browser_python() else { return };
    let (_tmp, dir) = setup();
    let acme = token(&dir, "acme");
    let s = serve(&dir);
    let run = blocked_run(&s, &acme);

    // An agent that got `<script>` and terminal escapes into a URL of its
    // own audit trail (appended as a second writer to the live log).
    let hostile = "http://169.254.169.254/<script>window.pwned=1;document.title='pwned'</script>\u{1b}[31mred\u{1b}]8;;http://evil.example/\u{7}link\u{202e}gpj.exe";
    append_denied(&dir, &run, hostile);

    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let o = Command::new(&py)
        .args(["-c", SELENIUM, &s.base, &s.username, &s.password, &run])
        .arg(&shots)
        .output()
        .expect("selenium");
    assert!(
        o.status.success(),
        "selenium failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let out: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");

    // The run the test started is listed; its page shows the blocked
    // request with its reason.
    assert!(
        out["runs_text"].as_str().unwrap_or("").contains(&run),
        "{out}"
    );
    let resources: Vec<String> = serde_json::from_value(out["resources"].clone()).expect("list");
    let reasons: Vec<String> = serde_json::from_value(out["reasons"].clone()).expect("list");
    let i = resources
        .iter()
        .position(|r| r == "http://169.254.169.254/latest/meta-data/")
        .unwrap_or_else(|| panic!("the blocked request is on the run page: {resources:?}"));
    assert_eq!(reasons[i], "link_local_address");

    // The hostile URL is shown as text: markup literal, escapes visible,
    // nothing executed.
    let shown = resources
        .iter()
        .find(|r| r.contains("pwned"))
        .expect("the hostile record is on the run page");
    assert_eq!(
        shown,
        "http://169.254.169.254/<script>window.pwned=1;document.title='pwned'</script>\u{241b}[31mred\u{241b}]8;;http://evil.example/\u{2407}link\u{fffd}gpj.exe"
    );
    assert_eq!(
        out["scripts"],
        serde_json::json!([format!("{}/static/live.js", s.base)]),
        "no script on the page but the site's own live-update file"
    );
    assert_eq!(out["pwned"], serde_json::Value::Null);
    assert_eq!(out["run_title"], format!("Run {run} · Airlock"));

    // The cookie as the browser holds it; JavaScript cannot read it.
    let c = &out["cookie"];
    assert_eq!(c["httpOnly"], true);
    assert_eq!(c["secure"], true);
    assert_eq!(c["sameSite"], "Strict");
    assert_eq!(c["path"], "/");
    assert_eq!(out["cookie_visible_to_js"], "");
    assert!(
        out["verify"]
            .as_str()
            .unwrap_or("")
            .starts_with("Chain verified"),
        "{out}"
    );

    // Logged out: back at the form, and the old cookie is dead for any client.
    assert!(
        out["after_logout_url"]
            .as_str()
            .unwrap_or("")
            .ends_with("/login")
    );
    let old = c["value"].as_str().expect("cookie value");
    let r = req(&s, "GET", "/runs", Some(old), None, &[]);
    assert_eq!(r.status, 303);
    for f in [
        "1-login.png",
        "2-password.png",
        "3-runs.png",
        "4-run.png",
        "5-audit.png",
        "6-logged-out.png",
    ] {
        let len = std::fs::metadata(shots.join(f))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 1000, "screenshot {f}");
    }
}

const LIVE_SELENIUM: &str = concat!(
    chrome!(),
    r#"

base, cookie, run, shots = sys.argv[1:5]
d = chrome()
out = {}
try:
    wait = WebDriverWait(d, 30, ignored_exceptions=(StaleElementReferenceException,))
    d.get(base + "/login")
    d.add_cookie({"name": "__Host-airlock_session", "value": cookie, "path": "/", "secure": True, "httpOnly": True, "sameSite": "Strict"})
    d.get(base + "/runs/" + run)
    wait.until(lambda d: d.find_element(By.ID, "live-status").text.startswith("Live:"))
    out["before"] = [e.text for e in d.find_elements(By.CSS_SELECTOR, "td.resource")]
    print("READY", flush=True)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "tr.live")) > 0)
    row = d.find_elements(By.CSS_SELECTOR, "tr.live")[0]
    out["live_cells"] = [td.text for td in row.find_elements(By.TAG_NAME, "td")]
    out["live_reason"] = row.find_element(By.CSS_SELECTOR, "td.reason").text
    out["pwned"] = d.execute_script("return window.pwned === undefined ? null : window.pwned")
    out["title"] = d.title
    d.save_screenshot(os.path.join(shots, "live-run.png"))
    d.find_element(By.ID, "logout").click()
    wait.until(lambda d: d.current_url.endswith("/login"))
finally:
    d.quit()
print(json.dumps(out), flush=True)
"#
);

#[test]
fn a_run_page_shows_new_records_live_over_the_session_socket_and_cross_site_sockets_are_refused() {
    let (_tmp, dir) = setup();
    let acme = token(&dir, "acme");
    let globex = token(&dir, "globex");
    let s = serve(&dir);
    let run = blocked_run(&s, &acme);
    let theirs = blocked_run(&s, &globex);
    let (cookie, _) = fresh_session(&s);

    // The socket without the page's own origin, or for another tenant's
    // run: refused before any upgrade; the cross-site one is recorded.
    let upgrade = [
        "Connection: Upgrade",
        "Upgrade: websocket",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    ];
    let with = |origin: Option<&str>| -> Vec<String> {
        let mut h: Vec<String> = upgrade.iter().map(|x| (*x).to_owned()).collect();
        if let Some(o) = origin {
            h.push(format!("Origin: {o}"));
        }
        h
    };
    for origin in [Some("https://evil.example"), None, Some("null")] {
        let h = with(origin);
        let h: Vec<&str> = h.iter().map(String::as_str).collect();
        let r = req(
            &s,
            "GET",
            &format!("/live/runs/{run}"),
            Some(&cookie),
            None,
            &h,
        );
        assert_eq!(r.status, 403, "{origin:?}: {}", r.headers);
    }
    let own = with(Some(&s.base));
    let own: Vec<&str> = own.iter().map(String::as_str).collect();
    let r = req(
        &s,
        "GET",
        &format!("/live/runs/{theirs}"),
        Some(&cookie),
        None,
        &own,
    );
    assert_eq!(r.status, 404, "another tenant's run");
    let r = req(&s, "GET", &format!("/live/runs/{run}"), None, None, &own);
    assert_eq!(r.status, 303, "no session: to the login form");
    let a = audit(&dir, "acme");
    assert!(
        a.iter()
            .filter(|e| e["action"] == "api.auth_failed"
                && e["reason"] == "csrf_refused"
                && e["resource"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("GET /live/runs/")))
            .count()
            >= 3,
        "cross-site sockets are recorded"
    );

    let Some(py) = browser_python() else { return };
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let b = Browser::until_ready(&py, LIVE_SELENIUM, &[&s.base, &cookie, &run], &shots);

    // While the page is open, a record of this run is appended (a second
    // writer to the live log), holding markup and terminal escapes.
    let hostile = "http://169.254.169.254/live/<img src=x onerror=\"window.pwned=1\">\u{1b}[31m\u{202e}gpj.exe";
    append_denied(&dir, &run, hostile);

    let out = b.finish();
    let before: Vec<String> = serde_json::from_value(out["before"].clone()).expect("list");
    assert!(
        before.iter().all(|r| !r.contains("/live/")),
        "the record was not on the page when it loaded: {before:?}"
    );
    let cells: Vec<String> = serde_json::from_value(out["live_cells"].clone()).expect("cells");
    assert_eq!(out["live_reason"], "link_local_address", "{out}");
    assert!(
        cells.iter().any(|c| c
            == "http://169.254.169.254/live/<img src=x onerror=\"window.pwned=1\">\u{241b}[31m\u{fffd}gpj.exe"),
        "shown as inert text, escapes visible: {cells:?}"
    );
    assert!(cells.iter().any(|c| c == "deny"), "{cells:?}");
    assert_eq!(out["pwned"], serde_json::Value::Null, "nothing executed");
    let len = std::fs::metadata(shots.join("live-run.png"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(len > 1000, "screenshot");
}

const BUDGET_SELENIUM: &str = concat!(
    chrome!(),
    r#"

base, cookie, scope, shots = sys.argv[1:5]
d = chrome()
out = {}
def row():
    r = d.find_element(By.ID, "budget-" + scope)
    return {c: r.find_element(By.CSS_SELECTOR, "td." + c).text for c in ["limit", "spent", "reserved", "remaining"]}
try:
    d.get(base + "/login")
    d.add_cookie({"name": "__Host-airlock_session", "value": cookie, "path": "/", "secure": True, "httpOnly": True, "sameSite": "Strict"})
    d.get(base + "/budgets")
    out["before"] = row()
    d.save_screenshot(os.path.join(shots, "budget-before.png"))
    print("READY", flush=True)
    end = time.time() + 30
    while time.time() < end:
        d.get(base + "/budgets")
        out["after"] = row()
        if out["after"]["spent"] != out["before"]["spent"]:
            break
        time.sleep(0.5)
    d.save_screenshot(os.path.join(shots, "budget-after.png"))
finally:
    d.quit()
print(json.dumps(out), flush=True)
"#
);

/// USD text of a budgets page cell (`$0.000123`) in micro-USD.
fn micros(cell: &serde_json::Value) -> i64 {
    let t = cell.as_str().unwrap_or("").trim().trim_start_matches('$');
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    let frac = format!("{frac:0<6}");
    whole.parse::<i64>().unwrap_or(-1) * 1_000_000 + frac[..6].parse::<i64>().unwrap_or(-1)
}

#[test]
fn the_budgets_page_shows_the_budget_drop_after_a_real_llm_call_through_the_gateway() {
    let Some(py) = browser_python() else { return };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let up = rt.block_on(airlock_testkit::LlmUpstream::start());
    let (_tmp, dir) = setup();
    std::fs::write(
        dir.join("airlock.toml"),
        format!(
            "[gateway.providers.openai]\nkind = \"openai\"\nbase_url = \"{}\"\nsecret = \"openai\"\n",
            up.url()
        ),
    )
    .expect("config");
    let with_stdin = |args: &[&str], input: &str| {
        let mut c = Command::new(BIN)
            .args(args)
            .env("AIRLOCK_DATA_DIR", &dir)
            .env_remove("AIRLOCK_CONFIG")
            .env_remove("AIRLOCK_ENV")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("airlock");
        std::io::Write::write_all(&mut c.stdin.take().expect("stdin"), input.as_bytes())
            .expect("stdin");
        let o = c.wait_with_output().expect("wait");
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    with_stdin(
        &[
            "--tenant",
            "acme",
            "secret",
            "set",
            "openai",
            "--host",
            "api.openai.com",
        ],
        "sk-proj-DashboardBudgetProviderKey0123456789\n",
    );
    let key = with_stdin(
        &[
            "--tenant", "acme", "gateway", "key", "create", "--agent", "triage",
        ],
        "",
    )
    .lines()
    .next()
    .unwrap_or("")
    .to_owned();
    assert!(key.starts_with("alk_"), "{key}");
    with_stdin(
        &[
            "--tenant",
            "acme",
            "budget",
            "set",
            "agent:triage",
            "--usd",
            "1",
        ],
        "",
    );
    // `--tenant` is the tenant the command acts for: not the default's.
    assert!(with_stdin(&["--tenant", "acme", "budget", "list"], "").contains("agent:triage"));
    assert!(!with_stdin(&["budget", "list"], "").contains("agent:triage"));
    assert!(!with_stdin(&["gateway", "key", "list"], "").contains("triage"));
    let mut gw = Command::new(BIN);
    gw.args(["--tenant", "acme", "gateway", "--listen", "127.0.0.1:0"])
        .env("AIRLOCK_DATA_DIR", &dir)
        .env_remove("AIRLOCK_CONFIG")
        .env_remove("AIRLOCK_ENV");
    let (_gw, line) =
        airlock_testkit::spawn_and_read_line(gw, "listening on", Duration::from_secs(30));
    let gw_addr = line.rsplit(' ').next().expect("address").to_owned();

    let s = serve(&dir);
    let (cookie, _) = fresh_session(&s);
    let page = req(&s, "GET", "/budgets", Some(&cookie), None, &[]);
    assert!(
        page.body.contains("id=\"budget-agent:triage\""),
        "{}",
        page.body
    );
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let b = Browser::until_ready(
        &py,
        BUDGET_SELENIUM,
        &[&s.base, &cookie, "agent:triage"],
        &shots,
    );

    // One chat completion through the gateway, as an OpenAI client sends it.
    let body = r#"{"model":"gpt-4o-mini","max_tokens":200,"messages":[{"role":"user","content":"summarise the ticket"}]}"#;
    let o = Command::new("curl")
        .args(["-s", "--max-time", "30", "-w", "\n%{http_code}"])
        .args(["-H", &format!("Authorization: Bearer {key}")])
        .args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ])
        .arg(format!("http://{gw_addr}/v1/chat/completions"))
        .output()
        .expect("curl");
    let answer = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(answer.ends_with("\n200"), "{answer}");
    assert_eq!(up.received().len(), 1, "the provider got the call");

    let out = b.finish();
    let (b, a) = (&out["before"], &out["after"]);
    assert_eq!(micros(&b["limit"]), 1_000_000, "{out}");
    assert_eq!(micros(&b["spent"]), 0, "{out}");
    assert!(micros(&a["spent"]) > 0, "the call is charged: {out}");
    assert_eq!(
        micros(&a["reserved"]),
        0,
        "settled, nothing left reserved: {out}"
    );
    assert_eq!(
        micros(&a["remaining"]),
        1_000_000 - micros(&a["spent"]),
        "the remainder dropped by the charge: {out}"
    );
    for f in ["budget-before.png", "budget-after.png"] {
        let len = std::fs::metadata(shots.join(f))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 1000, "screenshot {f}");
    }
    drop(rt);
}

/// Log in with the one-time password and replace it (over HTTP): the
/// session cookie and the new password.
fn fresh_session(s: &Server) -> (String, String) {
    let cookie = login(s, None);
    let r = req(s, "GET", "/password", Some(&cookie), None, &[]);
    let csrf = csrf_of(&r.body);
    let new_pw = "a much longer passphrase 42".to_owned();
    let form = [
        ("csrf", csrf.as_str()),
        ("current", s.password.as_str()),
        ("new", new_pw.as_str()),
        ("confirm", new_pw.as_str()),
    ];
    let r = req(s, "POST", "/password", Some(&cookie), Some(&form), &[]);
    assert_eq!(r.status, 303, "{}", r.body);
    (cookie, new_pw)
}

/// A pending approval made by the real approval service (`Approvals::ask`,
/// recording to the tenant's live audit log as a second writer), waiting
/// in a thread for a reviewer: joins to its verdict.
fn ask(
    dir: &Path,
    run: &str,
    arguments: serde_json::Value,
) -> std::thread::JoinHandle<airlock_types::Verdict> {
    let dir = dir.to_owned();
    let run = run.to_owned();
    std::thread::spawn(move || {
        let home =
            airlock_runtime::Home::resolve(Some(dir.clone()), None, HashMap::new()).expect("home");
        let settings = airlock_runtime::AuditSettings {
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(3600),
            store: Default::default(),
        };
        let t = airlock_types::TenantId::new("acme").expect("tenant");
        let auditor = airlock_runtime::audit::open(&home, &t, &settings).expect("audit");
        let approvals = airlock_approval::Approvals::open(
            &dir.join("airlock.db"),
            auditor.sink(),
            airlock_approval::ApprovalSettings::default(),
        )
        .expect("approvals");
        let request = airlock_types::ApprovalRequest {
            context: airlock_types::RunContext::new(
                t.clone(),
                airlock_types::RunId::new(run).expect("run id"),
                airlock_types::Actor::new(airlock_types::ActorKind::Operator, "tester"),
            ),
            subject: airlock_types::Subject::Tool {
                server: "crm".into(),
                tool: "delete_customer".into(),
                arguments,
            },
            policy_version: "v1".into(),
            reason: airlock_types::Reason::ApprovalRequired,
            taint: Default::default(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let verdict = rt.block_on(airlock_types::Approver::ask(
            &approvals,
            request,
            Duration::from_secs(120),
        ));
        drop(approvals);
        auditor.close().expect("close");
        verdict
    })
}

/// The pending approval of `acme` whose canonical form contains `needle`,
/// waiting for it to be proposed: (id, stored SHA-256).
fn pending(dir: &Path, needle: &str) -> (String, String) {
    let start = Instant::now();
    loop {
        let db = airlock_store::SqliteStore::open_read_only(&dir.join("airlock.db")).expect("db");
        let rows = db
            .approvals(
                &airlock_types::TenantId::new("acme").expect("tenant"),
                Some(airlock_store::ApprovalState::Pending),
            )
            .expect("approvals");
        if let Some(r) = rows.iter().find(|r| r.subject.contains(needle)) {
            return (r.id.clone(), r.sha256.clone());
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no approval proposed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

const SELENIUM_APPROVE: &str = concat!(
    chrome!(),
    r#"

base, user, pw, good, tampered, shots = sys.argv[1:7]
d = chrome()
out = {}
try:
    wait = waiter(d)
    d.get(base + "/login")
    d.find_element(By.ID, "username").send_keys(user)
    d.find_element(By.ID, "password").send_keys(pw)
    d.find_element(By.ID, "login").click()
    wait.until(lambda d: d.current_url.endswith("/runs"))
    d.find_element(By.LINK_TEXT, "Approvals").click()
    wait.until(lambda d: d.current_url.endswith("/approvals"))
    box = lambda i: d.find_element(By.ID, "approval-" + i)
    for i in [good, tampered]:
        wait.until(lambda d: box(i).find_element(By.CSS_SELECTOR, "button.approve").is_enabled())
    out["shown"] = box(good).find_element(By.CSS_SELECTOR, "pre.subject").text
    out["computed"] = box(good).find_element(By.CSS_SELECTOR, ".computed").text
    out["field"] = box(good).find_element(By.NAME, "sha256").get_attribute("value")
    out["stored"] = box(good).find_element(By.CSS_SELECTOR, ".sha256").text
    out["pwned"] = d.execute_script("return window.pwned === undefined ? null : window.pwned")
    d.save_screenshot(os.path.join(shots, "approvals.png"))
    box(good).find_element(By.CSS_SELECTOR, "button.approve").click()
    wait.until(lambda d: d.find_elements(By.ID, "notice"))
    out["approved_notice"] = d.find_element(By.ID, "notice").text
    # A page that shows the reviewer another call than the one pending:
    # its hash is of what is shown, and the server refuses it.
    wait.until(lambda d: box(tampered).find_element(By.CSS_SELECTOR, "button.approve").is_enabled())
    d.execute_script(
        "const p = document.querySelector('#approval-' + arguments[0] + ' pre.subject');"
        "p.textContent = p.textContent.replace('delete_customer', 'read_customer');", tampered)
    out["tampered_shown"] = box(tampered).find_element(By.CSS_SELECTOR, "pre.subject").text
    box(tampered).find_element(By.CSS_SELECTOR, "button.approve").click()
    wait.until(lambda d: d.find_elements(By.ID, "notice") and "Refused" in d.find_element(By.ID, "notice").text)
    out["tampered_notice"] = d.find_element(By.ID, "notice").text
    out["still_pending"] = len(d.find_elements(By.ID, "approval-" + tampered))
    box(tampered).find_element(By.NAME, "note").send_keys("not this customer <b>")
    box(tampered).find_element(By.CSS_SELECTOR, "button.deny").click()
    wait.until(lambda d: "Denied" in d.find_element(By.ID, "notice").text)
    out["denied_notice"] = d.find_element(By.ID, "notice").text
    out["after"] = d.find_element(By.TAG_NAME, "main").text
    d.find_element(By.LINK_TEXT, "Budgets").click()
    wait.until(lambda d: d.current_url.endswith("/budgets"))
    out["budgets_chart"] = len(d.find_elements(By.CSS_SELECTOR, "svg#daily rect.day"))
    d.save_screenshot(os.path.join(shots, "budgets.png"))
finally:
    d.quit()
print(json.dumps(out))
"#
);

#[test]
fn a_reviewer_approves_by_the_hash_the_page_computes_and_a_tampered_page_cannot() {
    let Some(py) = browser_python() else { return };
    let (_tmp, dir) = setup();
    let acme = token(&dir, "acme");
    let s = serve(&dir);
    let (cookie, pw) = fresh_session(&s);
    // A budget with some of it reserved, for the budgets page's screenshot.
    api(
        &s,
        "PUT",
        "/v1/budgets/org",
        &acme,
        Some(r#"{"limit_micros":20000000,"period":"month"}"#),
    );
    api(
        &s,
        "POST",
        "/v1/budgets/org/reservations",
        &acme,
        Some(r#"{"micros":4200000}"#),
    );

    // Two held tool calls of a run; markup, an ampersand and non-ASCII in
    // the arguments (the hash is of the UTF-8 text as shown).
    let args = serde_json::json!({"id": 42, "note": "<script>window.pwned=1</script> & café ✓"});
    let good = ask(&dir, "run-approve", args.clone());
    let (good_id, good_sha) = pending(&dir, "run-approve");
    let other = ask(&dir, "run-other", args);
    let (other_id, other_sha) = pending(&dir, "run-other");
    assert_ne!(good_sha, other_sha, "bound to the run");

    // Another tenant's approval: not shown, and 404 to decide.
    let db = airlock_store::SqliteStore::open(&dir.join("airlock.db")).expect("db");
    let now = airlock_types::Timestamp::now().as_micros();
    db.approval_insert(
        &airlock_types::TenantId::new("globex").expect("tenant"),
        &airlock_store::NewApproval {
            id: "apr-globex-1",
            run: "run-x",
            agent: None,
            subject: r#"{"subject":{}}"#,
            sha256: &airlock_approval::canonical::sha256_hex(br#"{"subject":{}}"#),
            policy_version: "1",
            reason: "approval_required",
            taint: "",
            created: now,
            expires: now + 600_000_000,
        },
    )
    .expect("propose");
    drop(db);
    let r = req(&s, "GET", "/approvals", Some(&cookie), None, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.body.contains("apr-globex-1"));
    assert!(
        r.body
            .contains("<script src=\"/static/approve.js\" defer></script>")
    );
    let csrf = csrf_of(&r.body);
    let r = req(&s, "GET", "/static/approve.js", None, None, &[]);
    assert_eq!(r.status, 200);
    assert!(r.body.contains("crypto.subtle.digest(\"SHA-256\""));
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/javascript"))
    );
    let post = |path: &str, form: &[(&str, &str)]| {
        req(
            &s,
            "POST",
            path,
            Some(&cookie),
            Some(form),
            &["Sec-Fetch-Site: same-origin"],
        )
    };
    let r = post(
        "/approvals/apr-globex-1/approve",
        &[
            ("csrf", &csrf),
            (
                "sha256",
                &airlock_approval::canonical::sha256_hex(br#"{"subject":{}}"#),
            ),
        ],
    );
    assert_eq!(r.status, 404, "{}", r.body);
    let r = post("/approvals/apr-globex-1/deny", &[("csrf", &csrf)]);
    assert_eq!(r.status, 404, "{}", r.body);

    // Without a script nothing is approved; a wrong hash (valid session and
    // CSRF token) is refused; neither needs JavaScript to be refused.
    let r = post(
        &format!("/approvals/{other_id}/approve"),
        &[("csrf", &csrf), ("sha256", "")],
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body.contains("Nothing was approved") && r.body.contains("no script ran"),
        "{}",
        r.body
    );
    let zeros = "0".repeat(64);
    let r = post(
        &format!("/approvals/{other_id}/approve"),
        &[("csrf", &csrf), ("sha256", &zeros)],
    );
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("Refused (hash_mismatch)"), "{}", r.body);
    // Without the CSRF token: refused before anything is looked at.
    let r = post(
        &format!("/approvals/{other_id}/approve"),
        &[("sha256", &other_sha)],
    );
    assert_eq!(r.status, 403, "{}", r.body);

    // The browser: approve one by the hash the page computes; a tampered
    // page is refused; deny the other with a note.
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let o = Command::new(&py)
        .args([
            "-c",
            SELENIUM_APPROVE,
            &s.base,
            &s.username,
            &pw,
            &good_id,
            &other_id,
        ])
        .arg(&shots)
        .output()
        .expect("selenium");
    assert!(
        o.status.success(),
        "selenium failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let out: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let shown = out["shown"].as_str().expect("shown");
    assert!(
        shown.contains(r#""note":"<script>window.pwned=1</script> & café ✓""#),
        "{out}"
    );
    assert_eq!(
        out["pwned"],
        serde_json::Value::Null,
        "the arguments stay text"
    );
    assert_eq!(
        airlock_approval::canonical::sha256_hex(shown.as_bytes()),
        good_sha
    );
    assert_eq!(out["computed"], good_sha.as_str());
    assert_eq!(out["field"], good_sha.as_str());
    assert_eq!(out["stored"], good_sha.as_str());
    assert_eq!(
        out["approved_notice"],
        format!("Approved {good_id} (SHA-256 {good_sha}).")
    );
    assert!(
        out["tampered_shown"]
            .as_str()
            .unwrap_or("")
            .contains("read_customer")
    );
    assert!(
        out["tampered_notice"]
            .as_str()
            .unwrap_or("")
            .starts_with("Refused (hash_mismatch)"),
        "{out}"
    );
    assert_eq!(out["still_pending"], 1, "{out}");
    assert_eq!(out["denied_notice"], format!("Denied {other_id}."));
    assert!(
        !out["after"].as_str().unwrap_or("").contains(&good_id),
        "{out}"
    );

    // The held calls: the approved one may run (by the approved hash), the
    // denied one may not.
    assert_eq!(
        good.join().expect("ask"),
        airlock_types::Verdict::Approved {
            id: good_id.clone(),
            sha256: good_sha.clone()
        }
    );
    assert_eq!(
        other.join().expect("ask"),
        airlock_types::Verdict::Refused {
            id: Some(other_id.clone()),
            reason: airlock_types::Reason::ApprovalDenied
        }
    );

    // The audit: the decisions with the user as approver; each refused hash.
    let events = audit(&dir, "acme");
    let decided: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["action"] == "approval.decided")
        .collect();
    let granted: Vec<_> = decided
        .iter()
        .filter(|e| e["reason"] == "approval_granted")
        .collect();
    assert_eq!(granted.len(), 1, "{decided:?}");
    assert_eq!(granted[0]["resource"], good_id.as_str());
    assert_eq!(granted[0]["actor"]["id"], "user:admin@acme");
    assert_eq!(granted[0]["details"]["decided_by"], "user:admin@acme");
    assert_eq!(granted[0]["details"]["sha256"], good_sha.as_str());
    let refused: Vec<_> = decided
        .iter()
        .filter(|e| e["details"]["refused"] == "hash_mismatch")
        .collect();
    assert_eq!(
        refused.len(),
        3,
        "empty, zeros, the tampered page: {decided:?}"
    );
    assert!(refused.iter().all(|e| e["resource"] == other_id.as_str()
        && e["result"] == "denied"
        && e["actor"]["id"] == "user:admin@acme"));
    assert_eq!(refused[1]["details"]["sha256_given"], zeros.as_str());
    let denied: Vec<_> = decided
        .iter()
        .filter(|e| e["reason"] == "approval_denied")
        .collect();
    assert_eq!(denied.len(), 1, "{decided:?}");
    assert_eq!(denied[0]["details"]["note"], "not this customer <b>");
    assert_eq!(out["budgets_chart"], 30, "a bar per day");
    for f in ["approvals.png", "budgets.png"] {
        assert!(
            std::fs::metadata(shots.join(f)).is_ok_and(|m| m.len() > 1000),
            "{f}"
        );
    }
}

#[test]
fn the_budgets_page_shows_limit_spent_reserved_and_remaining_of_the_own_tenant() {
    let (_tmp, dir) = setup();
    let acme = token(&dir, "acme");
    let globex = token(&dir, "globex");
    let s = serve(&dir);
    let (cookie, _) = fresh_session(&s);

    // acme: $10 for the org; one reservation settled at $1.25, one of $2.50
    // still open. globex: a budget of its own that acme must not see.
    let put = |tok: &str, scope: &str, body: &str| {
        let r = api(&s, "PUT", &format!("/v1/budgets/{scope}"), tok, Some(body));
        assert_eq!(r["scope"], scope, "{r}");
    };
    put(&acme, "org", r#"{"limit_micros":10000000,"period":"day"}"#);
    put(&acme, "agent:triage", r#"{"limit_micros":500000}"#);
    put(
        &globex,
        "team:globex-secret-team",
        r#"{"limit_micros":777000000}"#,
    );
    let reserve = |micros: i64| {
        let r = api(
            &s,
            "POST",
            "/v1/budgets/org/reservations",
            &acme,
            Some(&format!("{{\"micros\":{micros}}}")),
        );
        r["id"].as_i64().unwrap_or_else(|| panic!("{r}"))
    };
    let first = reserve(3_000_000);
    let _open = reserve(2_500_000);
    let mut c = Command::new("curl");
    c.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(&s.cert)
        .args([
            "-X",
            "POST",
            "-H",
            &format!("Authorization: Bearer {acme}"),
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            r#"{"actual_micros":1250000}"#,
            &format!("{}/v1/budgets/reservations/{first}/settle", s.base),
        ]);
    assert_eq!(
        String::from_utf8_lossy(&c.output().expect("curl").stdout),
        "204"
    );

    let r = req(&s, "GET", "/budgets", Some(&cookie), None, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_security_headers(&r, "/budgets");
    assert!(!r.body.contains("<script"), "no script on the page");
    assert!(!r.body.contains("style="), "no inline style (CSP)");
    let row = |scope: &str| {
        let at = r
            .body
            .find(&format!("<tr id=\"budget-{scope}\">"))
            .unwrap_or_else(|| panic!("a row for {scope}: {}", r.body));
        let end = r.body[at..].find("<td><svg").expect("bar") + at;
        r.body[at..end].to_owned()
    };
    assert_eq!(
        row("org"),
        "<tr id=\"budget-org\"><td class=\"mono\">org</td><td>day</td><td class=\"limit\">$10.00</td>\
         <td class=\"spent\">$1.25</td><td class=\"reserved\">$2.50</td><td class=\"remaining\">$6.25</td>"
    );
    assert_eq!(
        row("agent:triage"),
        "<tr id=\"budget-agent:triage\"><td class=\"mono\">agent:triage</td><td>total</td><td class=\"limit\">$0.50</td>\
         <td class=\"spent\">$0.00</td><td class=\"reserved\">$0.00</td><td class=\"remaining\">$0.50</td>"
    );
    assert!(
        !r.body.contains("globex-secret-team"),
        "another tenant's budget"
    );
    // Today's bar in the chart carries both charges.
    assert!(r.body.contains("<svg id=\"daily\""));
    assert!(r.body.contains(": $3.75</title>"), "{}", r.body);
    assert!(
        r.body.contains("<a href=\"/budgets\">Budgets</a>"),
        "in the nav"
    );
}

#[test]
fn failed_logins_are_throttled_alike_for_known_and_unknown_names_and_audited() {
    let (_tmp, dir) = setup();
    let s = serve(&dir);
    let attempt = |user: &str, pw: &str| {
        req(
            &s,
            "POST",
            "/login",
            None,
            Some(&[("username", user), ("password", pw)]),
            &[],
        )
    };
    let mut throttled = Vec::new();
    for user in [s.username.as_str(), "nobody@acme"] {
        for i in 0..5 {
            let r = attempt(user, "wrong");
            assert_eq!(r.status, 401, "{user}: failure {i} is answered normally");
        }
        // Now even the right password is refused, without being checked.
        let r = attempt(user, &s.password);
        assert_eq!(r.status, 429, "{user}: {}", r.body);
        assert!(r.header("set-cookie").is_none());
        let wait: u64 = r
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .expect("Retry-After");
        assert!((1..=31).contains(&wait), "{wait}");
        throttled.push(r.body);
    }
    assert_eq!(
        throttled[0], throttled[1],
        "the same answer for a known and an unknown name"
    );
    assert!(throttled[0].contains("Too many failed logins"));
    // Another name from the same address still gets its password checked.
    let r = attempt("someone@acme", "wrong");
    assert_eq!(r.status, 401);
    // Twenty failures from one address lock the address, for any name.
    for i in 0..9 {
        let r = attempt(&format!("guess{i}@acme"), "wrong");
        assert_eq!(r.status, 401, "failure {} of the address", 12 + i);
    }
    let r = attempt("fresh@acme", "wrong");
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.body, throttled[0]);

    let refusals = |tenant: &str| -> Vec<serde_json::Value> {
        audit(&dir, tenant)
            .into_iter()
            .filter(|e| e["action"] == "api.auth_failed" && e["details"]["refusal"] == "throttled")
            .collect()
    };
    let known = refusals("acme");
    assert_eq!(known.len(), 1, "{known:?}");
    assert_eq!(known[0]["reason"], "unauthenticated");
    assert_eq!(known[0]["actor"]["id"], "user:admin@acme");
    assert_eq!(known[0]["details"]["throttled_by"], "username");
    assert_eq!(known[0]["details"]["client"], "127.0.0.1");
    let unknown = refusals("default");
    assert_eq!(unknown.len(), 2, "{unknown:?}");
    assert_eq!(unknown[0]["actor"]["id"], "unknown");
    assert_eq!(unknown[0]["details"]["throttled_by"], "username");
    assert_eq!(unknown[1]["details"]["throttled_by"], "address");
    let text = serde_json::to_string(&audit(&dir, "acme")).expect("json");
    assert!(!text.contains(&s.password), "no password in the log");
}

const SECRETS_SELENIUM: &str = concat!(
    chrome!(),
    r##"
from selenium.webdriver.support import expected_conditions as EC
from selenium.common.exceptions import StaleElementReferenceException

base, user, pw, new_pw, v1, v2, shots = sys.argv[1:8]
d = chrome()
out = {}
try:
    wait = WebDriverWait(d, 30, ignored_exceptions=[StaleElementReferenceException])
    d.get(base + "/login")
    d.find_element(By.ID, "username").send_keys(user)
    d.find_element(By.ID, "password").send_keys(pw)
    d.find_element(By.ID, "login").click()
    wait.until(lambda d: d.current_url.endswith("/password"))
    d.find_element(By.ID, "current").send_keys(pw)
    d.find_element(By.ID, "new").send_keys(new_pw)
    d.find_element(By.ID, "confirm").send_keys(new_pw)
    d.find_element(By.ID, "change").click()
    wait.until(lambda d: d.current_url.endswith("/runs"))
    d.find_element(By.LINK_TEXT, "Secrets").click()
    wait.until(lambda d: d.current_url.endswith("/secrets"))
    v = d.find_element(By.ID, "value")
    out["value_input"] = [v.get_attribute("type"), v.get_attribute("autocomplete")]
    d.find_element(By.ID, "name").send_keys("stripe")
    v.send_keys(v1)
    d.find_element(By.ID, "hosts").send_keys("api.stripe.com")
    d.find_element(By.ID, "methods").send_keys("GET POST")
    d.find_element(By.ID, "paths").send_keys("/v1/*")
    d.find_element(By.ID, "env").send_keys("STRIPE_KEY")
    d.find_element(By.ID, "set").click()
    wait.until(lambda d: len(d.find_elements(By.ID, "secret-stripe")) == 1)
    out["after_set_url"] = d.current_url
    row = lambda: {c: d.find_element(By.CSS_SELECTOR, "#secret-stripe td." + c).text
                   for c in ["name", "hosts", "header", "methods", "paths", "env", "version"]}
    out["set"] = row()
    out["set_source"] = d.page_source
    d.save_screenshot(os.path.join(shots, "secrets-1-set.png"))
    d.find_element(By.CSS_SELECTOR, "#secret-stripe input[name=value]").send_keys(v2)
    old = d.find_element(By.ID, "secret-stripe")
    d.find_element(By.CSS_SELECTOR, "#secret-stripe button.rotate").click()
    wait.until(EC.staleness_of(old))
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#secret-stripe td.version").text == "2")
    out["rotated"] = row()
    out["rotated_source"] = d.page_source
    out["rotated_url"] = d.current_url
    out["cookie"] = d.get_cookie("__Host-airlock_session")["value"]
    d.save_screenshot(os.path.join(shots, "secrets-2-rotated.png"))
finally:
    d.quit()
print(json.dumps(out))
"##
);

#[test]
fn secrets_are_set_and_rotated_in_the_browser_never_shown_sealed_audited_and_per_tenant() {
    let Some(py) = browser_python() else { return };
    let (_tmp, dir) = setup();
    let acme = token(&dir, "acme");
    let globex = token(&dir, "globex");
    let s = serve(&dir);
    // globex's own secret, which acme's page must not show.
    let r = api(
        &s,
        "PUT",
        "/v1/secrets/globex-only",
        &globex,
        Some(r#"{"value":"globex-value-0000","hosts":["api.globex.example"]}"#),
    );
    assert_eq!(r["version"], 1, "{r}");

    let (v1, v2) = (
        "sk_live_FIRSTvalue0123456789",
        "sk_live_SECONDvalue987654321",
    );
    let new_pw = "a much longer passphrase 42";
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let o = Command::new(&py)
        .args([
            "-c",
            SECRETS_SELENIUM,
            &s.base,
            &s.username,
            &s.password,
            new_pw,
            v1,
            v2,
        ])
        .arg(&shots)
        .output()
        .expect("selenium");
    assert!(
        o.status.success(),
        "selenium failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let out: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(out["value_input"], serde_json::json!(["password", "off"]));
    let row = |version: &str| {
        serde_json::json!({
            "name": "stripe", "hosts": "api.stripe.com", "header": "Authorization: Bearer {}",
            "methods": "GET POST", "paths": "/v1/*", "env": "STRIPE_KEY", "version": version,
        })
    };
    assert_eq!(out["set"], row("1"));
    assert_eq!(out["rotated"], row("2"));
    for k in ["after_set_url", "rotated_url"] {
        assert_eq!(
            out[k],
            format!("{}/secrets", s.base),
            "a redirect to the list"
        );
    }
    for k in ["set_source", "rotated_source"] {
        let src = out[k].as_str().expect("source");
        assert!(!src.contains(v1) && !src.contains(v2), "no value in {k}");
        assert!(!src.contains("globex"), "another tenant's secret in {k}");
        assert!(
            src.contains("<a href=\"/secrets\">Secrets</a>"),
            "in the nav"
        );
    }

    // The API sees what the page set; globex does not.
    let list = api(&s, "GET", "/v1/secrets", &acme, None);
    assert_eq!(list[0]["name"], "stripe", "{list}");
    assert_eq!(list[0]["version"], 2, "{list}");
    let other = api(&s, "GET", "/v1/secrets", &globex, None);
    assert_eq!(
        other.as_array().map(|a| a.len()),
        Some(1),
        "globex sees only its own: {other}"
    );
    assert_eq!(other[0]["name"], "globex-only");

    // Recorded as the user, with the binding and never the value.
    let events = audit(&dir, "acme");
    let sets: Vec<_> = events
        .iter()
        .filter(|e| e["action"] == "vault.secret_set")
        .collect();
    assert_eq!(sets.len(), 2, "{sets:?}");
    for e in &sets {
        assert_eq!(e["actor"]["id"], "user:admin@acme", "{e}");
        assert_eq!(e["resource"], "stripe");
        assert_eq!(e["details"]["via"], "dashboard");
        assert_eq!(e["details"]["binding"]["hosts"][0], "api.stripe.com", "{e}");
    }
    let text = serde_json::to_string(&events).expect("json");
    assert!(
        !text.contains(v1) && !text.contains(v2),
        "no value in the log"
    );

    // Sealed: the database holds neither value in clear.
    for f in ["airlock.db", "airlock.db-wal"] {
        let bytes = std::fs::read(dir.join(f)).unwrap_or_default();
        for v in [v1, v2] {
            assert!(
                !bytes.windows(v.len()).any(|w| w == v.as_bytes()),
                "{v} in clear in {f}"
            );
        }
    }

    let cookie = out["cookie"].as_str().expect("cookie").to_owned();
    let same = [
        format!("Origin: {}", s.base),
        "Sec-Fetch-Site: same-origin".to_owned(),
    ];
    let same: Vec<&str> = same.iter().map(String::as_str).collect();
    let page = req(&s, "GET", "/secrets", Some(&cookie), None, &[]);
    assert_eq!(page.status, 200);
    assert_security_headers(&page, "/secrets");
    let csrf = csrf_of(&page.body);

    // No CSRF token: refused and audited, nothing changed.
    let r = req(
        &s,
        "POST",
        "/secrets/stripe/rotate",
        Some(&cookie),
        Some(&[("value", "sk_live_FORGEDvalue")]),
        &same,
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let r = req(
        &s,
        "POST",
        "/secrets",
        Some(&cookie),
        Some(&[
            ("csrf", &csrf),
            ("name", "evil"),
            ("value", "sk_live_FORGEDvalue"),
            ("hosts", "evil.example"),
        ]),
        &["Origin: https://evil.example", "Sec-Fetch-Site: cross-site"],
    );
    assert_eq!(r.status, 403, "a cross-site form");
    let events = audit(&dir, "acme");
    assert_eq!(count(&events, "api.auth_failed", "csrf_refused"), 2);
    assert_eq!(count(&events, "vault.secret_set", "recorded"), 2);

    // A bad binding (no hosts): a clear error, the value not echoed.
    let bad = "sk_live_NOHOSTSvalue";
    let r = req(
        &s,
        "POST",
        "/secrets",
        Some(&cookie),
        Some(&[("csrf", &csrf), ("name", "nohosts"), ("value", bad)]),
        &same,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("id=\"notice\">Not set: "), "{}", r.body);
    assert!(
        r.body.contains("host"),
        "the error names the field: {}",
        r.body
    );
    assert!(!r.body.contains(bad), "the value is not echoed");
    assert!(
        r.body.contains("id=\"value\" name=\"value\" required"),
        "an empty value field"
    );

    // A run started through the API gets the secret set in the page (as a handle).
    let body = r#"{"command":["sh","-c","test -n \"$STRIPE_KEY\""],"secrets":["stripe"]}"#;
    let r = api(&s, "POST", "/v1/runs", &acme, Some(body));
    let id = r["id"].as_str().unwrap_or_else(|| panic!("{r}")).to_owned();
    let start = Instant::now();
    let run = loop {
        let r = api(&s, "GET", &format!("/v1/runs/{id}"), &acme, None);
        if r["state"] != "running" {
            break r;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "run did not end");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(run["exit_code"], 0, "{run}");

    // Remove: a confirmation page, then the POST.
    let r = req(
        &s,
        "GET",
        "/secrets/stripe/remove",
        Some(&cookie),
        None,
        &[],
    );
    assert_eq!(r.status, 200);
    assert!(r.body.contains("id=\"confirm-remove\""), "{}", r.body);
    let r = req(
        &s,
        "GET",
        "/secrets/globex-only/remove",
        Some(&cookie),
        None,
        &[],
    );
    assert_eq!(r.status, 404, "another tenant's secret");
    let r = req(
        &s,
        "POST",
        "/secrets/globex-only/remove",
        Some(&cookie),
        Some(&[("csrf", &csrf)]),
        &same,
    );
    assert_eq!(r.status, 404, "another tenant's secret");
    let r = req(
        &s,
        "POST",
        "/secrets/stripe/remove",
        Some(&cookie),
        Some(&[("csrf", &csrf)]),
        &same,
    );
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/secrets".into()))
    );
    let list = api(&s, "GET", "/v1/secrets", &acme, None);
    assert_eq!(list, serde_json::json!([]));
    assert_eq!(
        api(&s, "GET", "/v1/secrets", &globex, None)[0]["name"],
        "globex-only"
    );
    let events = audit(&dir, "acme");
    let rm: Vec<_> = events
        .iter()
        .filter(|e| e["action"] == "vault.secret_rm")
        .collect();
    assert_eq!(rm.len(), 1);
    assert_eq!(rm[0]["actor"]["id"], "user:admin@acme");
    let text = serde_json::to_string(&events).expect("json");
    for v in [v1, v2, bad] {
        assert!(!text.contains(v), "no value in the log");
    }
}

#[test]
fn the_agents_page_shows_active_policies_and_a_diff_between_versions_of_the_own_tenant() {
    let (_tmp, dir) = setup();
    let acme = token(&dir, "acme");
    let globex = token(&dir, "globex");
    let s = serve(&dir);
    let (cookie, _) = fresh_session(&s);
    let agent = |tok: &str, name: &str| {
        let r = api(
            &s,
            "POST",
            "/v1/agents",
            tok,
            Some(&format!("{{\"name\":\"{name}\"}}")),
        );
        assert_eq!(r["name"], name, "{r}");
    };
    agent(&acme, "triage");
    agent(&globex, "payroll");
    let policy = |tok: &str, name: &str, text: &str, activate: bool| {
        let body = serde_json::json!({"text": text, "activate": activate}).to_string();
        let r = api(
            &s,
            "POST",
            &format!("/v1/agents/{name}/policies"),
            tok,
            Some(&body),
        );
        assert!(r["version"].is_u64(), "{r}");
        r["sha256"].as_str().unwrap_or_default().to_owned()
    };
    let v1 = "# first\nmode = \"read_public\"\n";
    let v2 = "# second <script>alert(1)</script>\nmode = \"deny_all\"\n";
    let sha1 = policy(&acme, "triage", v1, true);
    let sha2 = policy(&acme, "triage", v2, false);
    policy(&globex, "payroll", "mode = \"deny_all\"\n", true);

    let r = req(&s, "GET", "/agents", Some(&cookie), None, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_security_headers(&r, "/agents");
    assert!(
        r.body.contains("<td class=\"mono\"><a href=\"/agents/triage\">triage</a></td><td></td><td class=\"active\">v1</td>"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("payroll"), "another tenant's agent");
    assert!(
        r.body.contains("<a href=\"/agents\">Agents</a>"),
        "in the nav"
    );

    let r = req(
        &s,
        "GET",
        "/agents/triage?from=1&to=2",
        Some(&cookie),
        None,
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_security_headers(&r, "/agents/triage");
    for sha in [&sha1, &sha2] {
        assert_eq!(sha.len(), 64);
        assert!(r.body.contains(sha.as_str()), "{sha} listed");
    }
    assert!(r.body.contains("<b class=\"ok\">active</b>"));
    let at = r
        .body
        .find("<pre class=\"mono diff\" id=\"diff\">")
        .expect("a diff");
    let end = r.body[at..].find("</pre>").expect("end") + at;
    assert_eq!(
        &r.body[at..end],
        "<pre class=\"mono diff\" id=\"diff\">\
         <span class=\"del\">- # first</span>\n\
         <span class=\"del\">- mode = &quot;read_public&quot;</span>\n\
         <span class=\"ins\">+ # second &lt;script&gt;alert(1)&lt;/script&gt;</span>\n\
         <span class=\"ins\">+ mode = &quot;deny_all&quot;</span>\n"
    );
    assert!(!r.body.contains("<script>"), "agent text is inert");
    // Without a query: the last two versions.
    let d = req(&s, "GET", "/agents/triage", Some(&cookie), None, &[]);
    assert!(d.body.contains("<h2>v1 → v2</h2>"), "{}", d.body);

    for (path, status) in [
        ("/agents/payroll", 404),
        ("/agents/payroll?from=1&to=1", 404),
        ("/agents/nobody", 404),
        ("/agents/triage?from=1&to=9", 404),
        ("/agents/triage?from=x", 400),
        ("/agents/triage?evil=1", 400),
    ] {
        let r = req(&s, "GET", path, Some(&cookie), None, &[]);
        assert_eq!(r.status, status, "{path}: {}", r.body);
        assert!(!r.body.contains("payroll"), "{path}");
    }
    let r = req(&s, "GET", "/agents/triage", None, None, &[]);
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/login".into())),
        "needs a session"
    );
}

/// The issue's first steps for a newcomer: `airlock demo`, then
/// `airlock serve --init-admin` on its data directory, log in, and the
/// demo's runs (started with `airlock run`, not through the API) are on
/// the runs page with their state, each with its timeline.
#[test]
fn the_runs_of_airlock_demo_are_on_the_runs_page() {
    let tmp = tempfile::tempdir().expect("tmp");
    let demo = tmp.path().join("demo");
    let o = Command::new(BIN)
        .args(["demo", "--dir"])
        .arg(&demo)
        .env_remove("AIRLOCK_DATA_DIR")
        .env_remove("AIRLOCK_CONFIG")
        .env_remove("AIRLOCK_ENV")
        .output()
        .expect("airlock demo");
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let dir = demo.join("data");
    assert!(
        said.contains(&format!(
            "airlock --data-dir {} serve --init-admin",
            dir.display()
        )),
        "{said}"
    );
    let runs: Vec<String> = audit(&dir, "default")
        .iter()
        .filter(|e| e["action"] == "run.start")
        .filter_map(|e| e["run_id"].as_str().map(str::to_owned))
        .collect();
    assert!(!runs.is_empty(), "the demo's run: {runs:?}");
    let s = serve_as(&dir, "default");
    let (cookie, _) = fresh_session(&s);
    let page = req(&s, "GET", "/runs", Some(&cookie), None, &[]);
    assert_eq!(page.status, 200);
    for id in &runs {
        assert!(
            page.body.contains(id.as_str()),
            "run {id} is not listed:\n{}",
            page.body
        );
        let r = req(&s, "GET", &format!("/runs/{id}"), Some(&cookie), None, &[]);
        assert_eq!(r.status, 200, "{id}");
        assert!(
            r.body.contains("run.start") || r.body.contains("run.end"),
            "{id}: {}",
            r.body
        );
    }
    assert!(
        !page.body.contains(">running<"),
        "every demo run has ended:\n{}",
        page.body
    );
}

#[test]
fn the_audit_page_shows_the_checkpoint_and_downloads_proofs_the_cli_verifies_and_the_export() {
    let (_tmp, dir) = setup();
    let acme = token(&dir, "acme");
    let globex = token(&dir, "globex");
    let s = serve(&dir);
    blocked_run(&s, &acme);
    // globex's log grows past acme's: its higher indexes are nothing of acme's.
    blocked_run(&s, &globex);
    blocked_run(&s, &globex);

    // Without a session: to the login form, nothing downloaded.
    for path in ["/audit/proof/1", "/audit/export"] {
        let r = req(&s, "GET", path, None, None, &[]);
        assert_eq!(
            (r.status, r.header("location")),
            (303, Some("/login".into())),
            "{path}"
        );
        assert!(r.header("content-disposition").is_none(), "{path}");
    }

    let (cookie, _) = fresh_session(&s);
    let r = req(&s, "GET", "/audit", Some(&cookie), None, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Chain verified"), "{}", r.body);
    // The latest signed checkpoint beside the status: as the CLI's proof names it.
    let api_proof = api(&s, "GET", "/v1/audit/proof/1", &acme, None);
    let cp = &api_proof["checkpoint"];
    let shown = format!(
        "<dl id=\"checkpoint\"><dt>Latest signed checkpoint</dt><dd>#{}</dd><dt>Records covered</dt><dd>{}</dd><dt>Root</dt><dd class=\"mono\">{}</dd><dt>Signed at (UTC)</dt><dd>",
        cp["seq"],
        cp["size"],
        cp["root"].as_str().expect("root")
    );
    assert!(r.body.contains(&shown), "{shown}\n{}", r.body);
    assert!(
        r.body
            .contains("<a class=\"proof\" href=\"/audit/proof/1\" download>proof</a>"),
        "{}",
        r.body
    );
    assert!(r.body.contains("href=\"/audit/export\""), "{}", r.body);

    // A record's proof from the page: an attachment, the API's JSON, and
    // `airlock audit verify --proof` accepts it offline.
    let r = req(&s, "GET", "/audit/proof/1", Some(&cookie), None, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("content-disposition").as_deref(),
        Some("attachment; filename=\"airlock-audit-proof-1.json\"")
    );
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    let page_proof: serde_json::Value = serde_json::from_str(&r.body).expect("proof JSON");
    assert_eq!(page_proof, api_proof);
    assert_eq!(page_proof["checkpoint"]["tenant"], "acme");
    let file = dir.join("page-proof.json");
    std::fs::write(&file, &r.body).expect("proof");
    let (code, out, err) = airlock(
        &dir,
        &[
            "--tenant",
            "acme",
            "audit",
            "verify",
            "--proof",
            file.to_str().expect("path"),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");

    // Indexes are per tenant (as the API's): the same number is acme's own
    // record, never globex's, and an index only globex's log has is 404.
    let theirs = api(&s, "GET", "/v1/audit/proof/1", &globex, None);
    assert_eq!(theirs["checkpoint"]["tenant"], "globex");
    assert_ne!(page_proof["record"], theirs["record"]);
    let acme_count = audit(&dir, "acme").len();
    let globex_count = audit(&dir, "globex").len();
    assert!(
        globex_count > acme_count + 1,
        "{globex_count} vs {acme_count}"
    );
    for i in [globex_count - 1, 999_999] {
        let r = req(
            &s,
            "GET",
            &format!("/audit/proof/{i}"),
            Some(&cookie),
            None,
            &[],
        );
        assert_eq!(r.status, 404, "index {i}: {}", r.body);
        assert!(r.header("content-disposition").is_none());
    }
    let r = req(&s, "GET", "/audit/proof/x", Some(&cookie), None, &[]);
    assert_eq!(r.status, 404);

    // The export: a JSON-lines attachment, one line per record of acme's log.
    let r = req(
        &s,
        "GET",
        "/audit/export?format=records",
        Some(&cookie),
        None,
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("content-disposition").as_deref(),
        Some("attachment; filename=\"airlock-audit-export.jsonl\"")
    );
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/x-ndjson")
    );
    let events = audit(&dir, "acme");
    let lines: Vec<serde_json::Value> = r
        .body
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), events.len());
    for (i, (l, e)) in lines.iter().zip(&events).enumerate() {
        assert_eq!((l["index"].as_u64(), &l["event"]), (Some(i as u64), e));
    }
    let r = req(&s, "GET", "/audit/export", Some(&cookie), None, &[]);
    assert_eq!(r.status, 200);
    let ocsf: Vec<serde_json::Value> = r
        .body
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(ocsf.len(), events.len());
    assert!(ocsf.iter().all(|l| l["class_uid"] == 6003), "{}", r.body);
    let r = req(
        &s,
        "GET",
        "/audit/export?format=xml",
        Some(&cookie),
        None,
        &[],
    );
    assert_eq!(r.status, 400);
}

#[test]
fn the_run_page_shows_the_sandbox_attestation_and_the_decisions_by_outcome() {
    let (_tmp, dir) = setup();
    let acme = token(&dir, "acme");
    let s = serve(&dir);
    let id = blocked_run(&s, &acme);
    let (cookie, _) = fresh_session(&s);
    let r = req(&s, "GET", &format!("/runs/{id}"), Some(&cookie), None, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    // The one refused request (the metadata address), nothing allowed by policy.
    let events = audit(&dir, "acme");
    let of_run = |d: &str| {
        events
            .iter()
            .filter(|e| e["run_id"] == id.as_str() && e["decision"] == d)
            .count()
    };
    assert_eq!(of_run("deny"), 1);
    assert!(
        r.body.contains(&format!(
            "<span class=\"allow\" id=\"allowed\">{}</span> allowed · <span class=\"deny\" id=\"denied\">1</span> denied",
            of_run("allow")
        )),
        "{}",
        r.body
    );
    // The attestation's fields, as the sandbox recorded them.
    let att = events
        .iter()
        .find(|e| e["action"] == "sandbox.attestation" && e["run_id"] == id.as_str())
        .expect("an attestation record");
    let ns = att["details"]["init"]["namespaces"].to_string();
    let esc = |s: &str| s.replace('&', "&amp;").replace('"', "&quot;");
    assert!(
        r.body
            .contains(&format!("<dt>init.namespaces</dt><dd>{}</dd>", esc(&ns))),
        "{ns}\n{}",
        r.body
    );
    let landlock = att["details"]["init"]["landlock"]["status"]
        .as_str()
        .expect("landlock status");
    assert!(
        r.body.contains(&format!(
            "<dt>init.landlock.status</dt><dd>{}</dd>",
            esc(landlock)
        )),
        "{}",
        r.body
    );
    // No gateway call in this run: no cost line.
    assert!(!r.body.contains("id=\"llm-cost\""), "{}", r.body);
}
