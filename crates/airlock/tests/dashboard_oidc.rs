//! The dashboard's SSO end to end: the real `airlock serve` (TLS with its
//! development certificate) configured with `[serve.oidc]` against a real
//! local OpenID provider (`oidc-provider-mock` from PyPI: discovery, JWKS
//! with one key and no `kid`, PKCE, RS256 ID tokens with the nonce), driven
//! with `curl` as the browser (a cookie jar; the provider's authorization
//! form is submitted as a person would). A login lands on `/runs` with the
//! session cookie; then the refusals, each answered with a page and
//! audited (`api.auth_failed`, `unauthenticated`, `refusal` naming the
//! check): a wrong `state`, a replayed callback, a callback without the
//! browser's pre-login cookie (login CSRF), an error from the provider, an
//! SSO identity whose username is a local (password) account, and an
//! issuer that does not match the provider's discovery document. The
//! ID token checks (signature, `alg`, `iss`, `aud`, `exp`, `nonce`) are
//! unit-tested against tokens signed with a generated key in
//! `airlock-dashboard` (`oidc::tests`).
//!
//! Needs `AIRLOCK_TEST_PYTHON` with `oidc_provider_mock` (`scripts/test`
//! installs it): skips without, fails instead when
//! `AIRLOCK_REQUIRE_SDK_TESTS` is set (CI).

#[path = "api_support.rs"]
mod api_support;
use api_support::{BIN, airlock, free_port};
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_port(port: u16, what: &str) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The test's Python with `oidc_provider_mock`, or `None` (skip) locally.
fn provider_python() -> Option<std::ffi::OsString> {
    let required = std::env::var_os("AIRLOCK_REQUIRE_SDK_TESTS").is_some();
    let missing = |what: &str| {
        assert!(!required, "AIRLOCK_REQUIRE_SDK_TESTS is set but {what}");
        eprintln!("*** SKIPPED: {what}");
        None
    };
    let Some(py) = std::env::var_os("AIRLOCK_TEST_PYTHON") else {
        return missing("AIRLOCK_TEST_PYTHON is not set (scripts/test sets it)");
    };
    let ok = Command::new(&py)
        .args(["-c", "import oidc_provider_mock"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return missing("oidc_provider_mock is not importable by AIRLOCK_TEST_PYTHON");
    }
    Some(py)
}

/// `oidc-provider-mock` on a loopback port; its issuer URL.
fn provider(py: &std::ffi::OsStr) -> (Kill, String) {
    let port = free_port();
    let child = Command::new(py)
        .args(["-m", "oidc_provider_mock", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("oidc-provider-mock");
    let k = Kill(child);
    wait_port(port, "oidc-provider-mock");
    (k, format!("http://127.0.0.1:{port}"))
}

struct Server {
    _child: Kill,
    base: String,
    cert: PathBuf,
    dir: PathBuf,
    /// The local admin made by `--init-admin`.
    admin: String,
}

/// `airlock init`, tenant `acme`, a config with `[serve.oidc]` (`oidc`:
/// the section's body), then `airlock --tenant acme serve --init-admin`.
fn serve(tmp: &Path, issuer: &str) -> Server {
    let dir = tmp.join("data");
    assert_eq!(airlock(&dir, &["init"]).0, 0);
    let (code, _, err) = airlock(&dir, &["tenant", "create", "acme"]);
    assert_eq!(code, 0, "{err}");
    let port = free_port();
    let cfg = tmp.join("airlock.toml");
    std::fs::write(
        &cfg,
        format!(
            "[serve]\nlisten = \"127.0.0.1:{port}\"\n\n[serve.oidc]\nissuer = \"{issuer}\"\n\
             client_id = \"airlock-dashboard\"\nclient_secret = \"not-a-real-secret-4711\"\ntenant = \"acme\"\n"
        ),
    )
    .expect("config");
    let mut child = Command::new(BIN)
        .args(["--tenant", "acme", "serve", "--init-admin"])
        .env("AIRLOCK_DATA_DIR", &dir)
        .env("AIRLOCK_CONFIG", &cfg)
        .env_remove("AIRLOCK_ENV")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let out = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(out).lines();
    let first = lines.next().expect("--init-admin output").expect("utf-8");
    let _password = lines.next();
    let admin = first
        .strip_prefix("username: ")
        .unwrap_or_else(|| panic!("{first:?}"))
        .to_owned();
    let s = Server {
        _child: Kill(child),
        base: format!("https://127.0.0.1:{port}"),
        cert: dir.join("api-dev-cert.pem"),
        dir,
        admin,
    };
    wait_port(port, "airlock serve");
    s
}

/// One response: status, headers (lower-case names), body, redirect target.
struct Resp {
    status: u16,
    headers: String,
    body: String,
    location: String,
}

impl Resp {
    fn cookie(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            if !k.eq_ignore_ascii_case("set-cookie") {
                return None;
            }
            let v = v.trim();
            let rest = v.strip_prefix(&format!("{name}="))?;
            Some(rest.split(';').next().unwrap_or("").to_owned())
        })
    }
    fn set_cookie_line(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.eq_ignore_ascii_case("set-cookie") && v.trim().starts_with(&format!("{name}=")))
                .then(|| v.trim().to_owned())
        })
    }
}

/// A request with curl (no redirects followed). `cookies`: a `Cookie:`
/// header's value; `form`: a urlencoded POST body.
fn req(cert: &Path, url: &str, cookies: &str, form: Option<&[(&str, &str)]>) -> Resp {
    let tmp = tempfile::tempdir().expect("tmp");
    let (hf, bf) = (tmp.path().join("h"), tmp.path().join("b"));
    let mut c = Command::new("curl");
    c.args(["-s", "--max-time", "30", "--cacert"]).arg(cert);
    c.arg("-D").arg(&hf).arg("-o").arg(&bf);
    c.args(["-w", "%{http_code} %{redirect_url}"]);
    if !cookies.is_empty() {
        c.args(["-H", &format!("Cookie: {cookies}")]);
    }
    if let Some(f) = form {
        for (k, v) in f {
            c.args(["--data-urlencode", &format!("{k}={v}")]);
        }
    }
    c.arg(url);
    let o = c.output().expect("curl");
    let w = String::from_utf8_lossy(&o.stdout).into_owned();
    let (status, location) = w.split_once(' ').unwrap_or((&w, ""));
    Resp {
        status: status.trim().parse().unwrap_or(0),
        headers: std::fs::read_to_string(&hf).unwrap_or_default(),
        body: std::fs::read_to_string(&bf).unwrap_or_default(),
        location: location.trim().to_owned(),
    }
}

/// `/login/oidc` then the provider's form submitted for `sub`: the
/// callback URL the provider redirects to, and the pre-login cookie.
fn authorize(s: &Server, sub: &str) -> (String, String) {
    let r = req(&s.cert, &format!("{}/login/oidc", s.base), "", None);
    assert_eq!(r.status, 303, "{}", r.body);
    let pre = r.cookie("airlock_oidc").expect("a pre-login cookie");
    let line = r.set_cookie_line("airlock_oidc").expect("cookie");
    for flag in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/login/oidc"] {
        assert!(line.contains(flag), "{line}: {flag}");
    }
    for p in [
        "code_challenge_method=S256",
        "code_challenge=",
        "nonce=",
        "state=",
        "client_id=airlock-dashboard",
    ] {
        assert!(r.location.contains(p), "{}: {p}", r.location);
    }
    // The provider's authorization form, as the person submits it.
    let r = req(&s.cert, &r.location, "", Some(&[("sub", sub)]));
    assert_eq!(r.status, 302, "provider: {}", r.body);
    assert!(
        r.location
            .starts_with(&format!("{}/login/oidc/callback?", s.base)),
        "{}",
        r.location
    );
    (r.location, pre)
}

fn callback(s: &Server, url: &str, pre: Option<&str>) -> Resp {
    let c = pre.map(|p| format!("airlock_oidc={p}")).unwrap_or_default();
    req(&s.cert, url, &c, None)
}

/// The tenant's audit events, in order.
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

fn refusals(dir: &Path, tenant: &str, check: &str) -> usize {
    audit(dir, tenant)
        .iter()
        .filter(|e| {
            e["action"] == "api.auth_failed"
                && e["reason"] == "unauthenticated"
                && e["details"]["login"] == "oidc"
                && e["details"]["refusal"] == check
        })
        .count()
}

fn assert_refused(s: &Server, r: &Resp, tenant: &str, check: &str, before: usize) {
    assert_eq!(r.status, 401, "{check}: {}", r.body);
    assert!(
        r.body.contains(&format!("Single sign-on failed ({check})")),
        "{check}: {}",
        r.body
    );
    assert!(
        r.cookie("__Host-airlock_session").is_none(),
        "{check}: no session"
    );
    assert_eq!(
        refusals(&s.dir, tenant, check),
        before + 1,
        "{check}: audited"
    );
}

#[test]
fn sso_login_lands_on_runs_and_every_bad_callback_is_refused_and_audited() {
    let Some(py) = provider_python() else { return };
    let (_idp, issuer) = provider(&py);
    let tmp = tempfile::tempdir().expect("tmp");
    let s = serve(tmp.path(), &issuer);

    // The login page offers SSO.
    let r = req(&s.cert, &format!("{}/login", s.base), "", None);
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("href=\"/login/oidc\"") && r.body.contains("Log in with SSO"),
        "{}",
        r.body
    );

    // A login through the provider: a session cookie, then /runs.
    let (cb, pre) = authorize(&s, "alice@example.com");
    let r = callback(&s, &cb, Some(&pre));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("url=/runs"), "{}", r.body);
    let line = r
        .set_cookie_line("__Host-airlock_session")
        .expect("a session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(line.contains(flag), "{line}: {flag}");
    }
    let session = r.cookie("__Host-airlock_session").expect("session");
    assert!(session.starts_with("als_"), "{session}");
    let runs = req(
        &s.cert,
        &format!("{}/runs", s.base),
        &format!("__Host-airlock_session={session}"),
        None,
    );
    assert_eq!(runs.status, 200, "{}", runs.body);
    assert!(runs.body.contains("alice@example.com"), "{}", runs.body);
    // An SSO user who is not an administrator cannot decide approvals.
    let at = runs.body.find("name=\"csrf\" value=\"").expect("csrf") + 19;
    let csrf = runs.body[at..at + 64].to_owned();
    let zeros = "0".repeat(64);
    for (what, form) in [
        (
            "approve",
            vec![("csrf", csrf.as_str()), ("sha256", zeros.as_str())],
        ),
        ("deny", vec![("csrf", csrf.as_str())]),
    ] {
        let r = req(
            &s.cert,
            &format!("{}/approvals/apr_x/{what}", s.base),
            &format!("__Host-airlock_session={session}"),
            Some(&form),
        );
        assert_eq!(r.status, 403, "{what}: {}", r.body);
        assert!(r.body.contains("You may not do this."), "{}", r.body);
    }
    // Nor set or remove secrets: the page is read-only for them.
    let cookie = format!("__Host-airlock_session={session}");
    let page = req(&s.cert, &format!("{}/secrets", s.base), &cookie, None);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("id=\"read-only\""), "{}", page.body);
    assert!(!page.body.contains("action=\"/secrets\""), "no set form");
    let sso_value = "sk_live_SSOUSERvalue0000";
    for (path, form) in [
        (
            "/secrets",
            vec![
                ("csrf", csrf.as_str()),
                ("name", "stolen"),
                ("value", sso_value),
                ("hosts", "evil.example"),
            ],
        ),
        (
            "/secrets/stolen/rotate",
            vec![("csrf", csrf.as_str()), ("value", sso_value)],
        ),
        ("/secrets/stolen/remove", vec![("csrf", csrf.as_str())]),
    ] {
        let r = req(&s.cert, &format!("{}{path}", s.base), &cookie, Some(&form));
        assert_eq!(r.status, 403, "{path}: {}", r.body);
        assert!(!r.body.contains(sso_value), "{path}");
    }
    let ev = audit(&s.dir, "acme");
    assert!(
        !ev.iter().any(|e| e["action"] == "vault.secret_set"),
        "nothing was set"
    );
    assert!(
        !serde_json::to_string(&ev)
            .expect("json")
            .contains(sso_value)
    );
    let ev = audit(&s.dir, "acme");
    assert!(
        ev.iter().any(|e| e["action"] == "user.created"
            && e["details"]["login"] == "oidc"
            && e["details"]["admin"] == false),
        "the SSO user is created at the first login, not an admin"
    );
    assert!(
        ev.iter()
            .any(|e| e["action"] == "session.created" && e["details"]["login"] == "oidc")
    );
    assert!(
        !serde_json::to_string(&ev)
            .expect("json")
            .contains("not-a-real-secret-4711"),
        "no client secret in the audit log"
    );

    // The same callback again (code and state replayed): the pending login
    // was used up.
    let r = callback(&s, &cb, Some(&pre));
    assert_refused(&s, &r, "default", "state", 0);

    // A state that was never issued.
    let (cb, pre) = authorize(&s, "alice@example.com");
    let wrong = cb.replace("state=", "state=x");
    let r = callback(&s, &wrong, Some(&pre));
    assert_refused(&s, &r, "default", "state", 1);

    // The right state from another browser (no pre-login cookie, or
    // another one): login CSRF refused, and the state is spent.
    let (cb, pre) = authorize(&s, "mallory@example.com");
    let (_, other_pre) = authorize(&s, "mallory@example.com");
    let r = callback(&s, &cb, Some(&other_pre));
    assert_refused(&s, &r, "default", "prelogin_cookie", 0);
    let r = callback(&s, &cb, Some(&pre));
    assert_refused(&s, &r, "default", "state", 2);
    let (cb, _) = authorize(&s, "mallory@example.com");
    let r = callback(&s, &cb, None);
    assert_refused(&s, &r, "default", "prelogin_cookie", 1);

    // The provider reports an error.
    let r = req(
        &s.cert,
        &format!(
            "{}/login/oidc/callback?error=access_denied&state=abc",
            s.base
        ),
        "",
        None,
    );
    assert_refused(&s, &r, "default", "provider_error", 0);
    // A callback without code or state.
    let r = req(
        &s.cert,
        &format!("{}/login/oidc/callback", s.base),
        "",
        None,
    );
    assert_refused(&s, &r, "default", "callback_malformed", 0);

    // An SSO identity named like the local admin does not become it.
    let (cb, pre) = authorize(&s, &s.admin);
    let r = callback(&s, &cb, Some(&pre));
    assert_refused(&s, &r, "acme", "username_is_a_local_account", 0);

    // The server is still up and the first session still works.
    let runs = req(
        &s.cert,
        &format!("{}/runs", s.base),
        &format!("__Host-airlock_session={session}"),
        None,
    );
    assert_eq!(runs.status, 200);
}

#[test]
fn an_issuer_that_the_provider_does_not_name_is_refused_at_discovery() {
    let Some(py) = provider_python() else { return };
    let (_idp, issuer) = provider(&py);
    // The provider's discovery document names "http://127.0.0.1:PORT";
    // the configured issuer differs (a trailing slash), so it is not this
    // provider.
    let tmp = tempfile::tempdir().expect("tmp");
    let s = serve(tmp.path(), &format!("{issuer}/"));
    let r = req(&s.cert, &format!("{}/login/oidc", s.base), "", None);
    assert_eq!(r.status, 502, "{}", r.body);
    assert!(
        r.body.contains("Single sign-on failed (discovery_issuer)"),
        "{}",
        r.body
    );
    assert!(r.cookie("airlock_oidc").is_none());
    assert_eq!(refusals(&s.dir, "default", "discovery_issuer"), 1);
    // An issuer with no provider behind it at all.
    drop(_idp);
    let tmp2 = tempfile::tempdir().expect("tmp");
    let s2 = serve(tmp2.path(), &format!("http://127.0.0.1:{}", free_port()));
    let r = req(&s2.cert, &format!("{}/login/oidc", s2.base), "", None);
    assert_eq!(r.status, 502, "{}", r.body);
    assert_eq!(refusals(&s2.dir, "default", "discovery"), 1);
}

const SELENIUM: &str = r#"
import json, os, sys
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

base, sub, shots = sys.argv[1:4]
o = webdriver.ChromeOptions()
o.binary_location = "/usr/bin/chromium"
for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
          "--disable-dev-shm-usage", "--ignore-certificate-errors", "--window-size=1400,1000"]:
    o.add_argument(a)
d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
out = {}
try:
    wait = WebDriverWait(d, 20)
    d.get(base + "/runs")
    wait.until(lambda d: d.current_url.endswith("/login"))
    d.save_screenshot(os.path.join(shots, "sso-1-login.png"))
    d.find_element(By.ID, "sso").click()
    wait.until(lambda d: "/oauth2/authorize" in d.current_url)
    d.find_element(By.NAME, "sub").send_keys(sub)
    d.save_screenshot(os.path.join(shots, "sso-2-provider.png"))
    d.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda d: d.current_url == base + "/runs")
    out["runs_text"] = d.find_element(By.TAG_NAME, "body").text
    out["cookies"] = [{"name": c["name"], "httpOnly": c.get("httpOnly"), "sameSite": c.get("sameSite")}
                      for c in d.get_cookies()]
    d.save_screenshot(os.path.join(shots, "sso-3-runs.png"))
    d.find_element(By.ID, "logout").click()
    wait.until(lambda d: d.current_url.endswith("/login"))
    d.get(base + "/runs")
    out["after_logout_url"] = d.current_url
finally:
    d.quit()
print(json.dumps(out))
"#;

#[test]
fn a_browser_logs_in_with_sso_and_lands_on_runs() {
    let Some(py) = provider_python() else { return };
    let required = std::env::var_os("AIRLOCK_REQUIRE_SDK_TESTS").is_some();
    let browser_ok = ["/usr/bin/chromium", "/usr/bin/chromedriver"]
        .iter()
        .all(|p| Path::new(p).exists())
        && Command::new(&py)
            .args(["-c", "import selenium"])
            .status()
            .is_ok_and(|s| s.success());
    if !browser_ok {
        assert!(
            !required,
            "AIRLOCK_REQUIRE_SDK_TESTS is set but chromium, chromedriver or selenium is missing"
        );
        eprintln!("*** SKIPPED: chromium, chromedriver or selenium is missing");
        return;
    }
    let (_idp, issuer) = provider(&py);
    let tmp = tempfile::tempdir().expect("tmp");
    let s = serve(tmp.path(), &issuer);
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let o = Command::new(&py)
        .args(["-c", SELENIUM, &s.base, "carol@example.com"])
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
    assert!(
        out["runs_text"]
            .as_str()
            .unwrap_or("")
            .contains("carol@example.com"),
        "{out}"
    );
    let session = out["cookies"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "__Host-airlock_session"))
        .unwrap_or_else(|| panic!("the session cookie is in the browser: {out}"));
    assert_eq!(session["httpOnly"], true);
    assert_eq!(session["sameSite"], "Strict");
    assert!(
        out["after_logout_url"]
            .as_str()
            .unwrap_or("")
            .ends_with("/login"),
        "{out}"
    );
    for f in ["sso-1-login.png", "sso-2-provider.png", "sso-3-runs.png"] {
        let len = std::fs::metadata(shots.join(f))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 1000, "screenshot {f}");
    }
}
