//! The control-plane API end to end: the real `airlock serve` (TLS with
//! its development certificate, on a loopback port), tokens made with the
//! real CLI, and `curl` as the client. Two tenants; every refusal must be
//! the right status in the API's JSON error format *and* be in the audit
//! log with its reason code. The isolation test runs twice: on the
//! embedded SQLite default and on PostgreSQL (the cluster `scripts/test`
//! starts; served as a role row-level security applies to). Built with
//! `--features airlock-store/test-no-app-filter`, the application's tenant
//! filter is gone and the PostgreSQL run must still leak nothing.

#[path = "../../airlock-store/tests/pg_support/mod.rs"]
mod pg_support;

#[path = "api_support.rs"]
mod api_support;
use api_support::{BIN, airlock, free_port, wait_listening};

use airlock_store::{AuditStore, SqliteStore};
use airlock_types::TenantId;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    base: String,
    cert: PathBuf,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- airlock serve's log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

fn serve(dir: &Path) -> Server {
    let port = free_port();
    let log = dir.join(format!("serve-{port}.log"));
    let child = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("AIRLOCK_DATA_DIR", dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("serve");
    let s = Server {
        child,
        base: format!("https://127.0.0.1:{port}"),
        cert: dir.join("api-dev-cert.pem"),
        log,
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
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): status {} {}\n{}",
                self.status, self.body, self.headers
            )
        })
    }
    fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

fn req(
    s: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    extra: &[&str],
) -> Resp {
    let tmp = tempfile::tempdir().expect("tmp");
    let (hf, bf) = (tmp.path().join("h"), tmp.path().join("b"));
    let mut c = Command::new("curl");
    c.args(["-s", "--max-time", "20", "--cacert"]).arg(&s.cert);
    c.args(["-X", method, "-D"]).arg(&hf).arg("-o").arg(&bf);
    c.args(["-w", "%{http_code}"]);
    if let Some(t) = token {
        c.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if let Some(b) = body {
        // From a file: a large body does not fit in an argument list.
        let f = tmp.path().join("req");
        std::fs::write(&f, b).expect("request body");
        c.args(["-H", "Content-Type: application/json", "--data-binary"])
            .arg(format!("@{}", f.display()));
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

/// The PostgreSQL URL the data directory's configuration names, if any.
fn database_url(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("airlock.toml")).ok()?;
    let v: toml::Value = toml::from_str(&text).expect("config");
    Some(v.get("store")?.get("database_url")?.as_str()?.to_owned())
}

/// `(action, reason, details)` of every record in `tenant`'s log.
fn audit(dir: &Path, tenant: &str) -> Vec<serde_json::Value> {
    let store: Box<dyn AuditStore> = match database_url(dir) {
        Some(url) => Box::new(
            airlock_store::PgStore::connect(
                &airlock_store::PgConnectOptions::new(&url, None).expect("url"),
            )
            .expect("connect"),
        ),
        None => Box::new(SqliteStore::open_read_only(&dir.join("airlock.db")).expect("db")),
    };
    let mut out = Vec::new();
    airlock_audit::export(
        &*store,
        &TenantId::new(tenant).expect("tenant"),
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

fn token(dir: &Path, tenant: &str, args: &[&str]) -> String {
    let mut a = vec!["--tenant", tenant, "token", "create"];
    a.extend_from_slice(args);
    let (code, out, err) = airlock(dir, &a);
    assert_eq!(code, 0, "{err}");
    let t = out.trim().to_owned();
    assert!(t.starts_with("alt_") && t.len() == 68, "{t}");
    t
}

fn setup() -> (tempfile::TempDir, PathBuf) {
    setup_on(None)
}

/// A data directory whose control plane and audit log are in `db` (a
/// fresh PostgreSQL database, migrated with `airlock db migrate` as its
/// owner and served as the app role), else in the embedded SQLite.
fn setup_on(db: Option<&pg_support::TestDb>) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("data");
    assert_eq!(airlock(&dir, &["init"]).0, 0);
    if let Some(db) = db {
        std::fs::write(
            dir.join("airlock.toml"),
            format!("[store]\ndatabase_url = {:?}\n", db.url(pg_support::APP)),
        )
        .expect("config");
        let o = Command::new(BIN)
            .args(["db", "migrate"])
            .env("AIRLOCK_DATA_DIR", &dir)
            .env("AIRLOCK_DATABASE_ADMIN_URL", db.url(pg_support::OWNER))
            .env_remove("AIRLOCK_CONFIG")
            .output()
            .expect("migrate");
        assert!(o.status.success(), "{o:?}");
    }
    for t in ["acme", "globex"] {
        let (code, _, err) = airlock(&dir, &["tenant", "create", t]);
        assert_eq!(code, 0, "{err}");
    }
    (tmp, dir)
}

#[test]
fn tenants_are_isolated_scopes_enforced_and_every_refusal_audited() {
    let (_tmp, dir) = setup();
    isolation_matrix(&dir);
}

#[test]
fn on_postgresql_tenants_are_isolated_and_every_refusal_audited() {
    let Some(admin) = pg_support::admin_url() else {
        return;
    };
    let db = pg_support::TestDb::unmigrated(&admin, "api_matrix");
    let (_tmp, dir) = setup_on(Some(&db));
    isolation_matrix(&dir);
    // Nothing went to the embedded database: it has no tenant.
    let sqlite = SqliteStore::open_read_only(&dir.join("airlock.db")).expect("db");
    assert_eq!(
        airlock_store::ControlStore::tenants(&sqlite)
            .expect("tenants")
            .len(),
        0
    );
    // Each tenant's chain verifies with the CLI, from PostgreSQL.
    for t in ["acme", "globex", "default"] {
        let (code, out, err) = airlock(&dir, &["--tenant", t, "audit", "verify"]);
        assert_eq!(code, 0, "{t}: {out}{err}");
    }
}

fn isolation_matrix(dir: &Path) {
    let dir = dir.to_owned();
    let acme = token(&dir, "acme", &["--scope", "admin"]);
    let globex = token(&dir, "globex", &["--scope", "admin"]);
    let acme_ro = token(&dir, "acme", &["--scope", "agents:read"]);
    let expired = token(&dir, "acme", &["--scope", "admin", "--expires", "1s"]);
    let s = serve(&dir);

    // Security headers and the document, without a token.
    let doc = req(&s, "GET", "/v1/openapi.json", None, None, &[]);
    assert_eq!(doc.status, 200);
    assert_eq!(doc.json()["openapi"], "3.1.0");
    for h in [
        "x-frame-options: deny",
        "x-content-type-options: nosniff",
        "content-security-policy: default-src 'none'",
        "referrer-policy: no-referrer",
        "strict-transport-security: max-age=",
    ] {
        assert!(doc.headers.contains(h), "missing {h}: {}", doc.headers);
    }

    // acme creates a team, an agent, a policy.
    let r = req(
        &s,
        "POST",
        "/v1/teams",
        Some(&acme),
        Some(r#"{"name":"ops"}"#),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = req(
        &s,
        "POST",
        "/v1/agents",
        Some(&acme),
        Some(r#"{"name":"bot","team":"ops"}"#),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let pol = serde_json::json!({"text": "mode = \"read_public\"\n", "activate": true}).to_string();
    let r = req(
        &s,
        "POST",
        "/v1/agents/bot/policies",
        Some(&acme),
        Some(&pol),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["version"], 1);
    let bad = serde_json::json!({"text": "mode = \"nope\"\n"}).to_string();
    let r = req(
        &s,
        "POST",
        "/v1/agents/bot/policies",
        Some(&acme),
        Some(&bad),
        &[],
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "malformed_request"),
        "{}",
        r.body
    );

    // globex sees none of it: 404 for objects, empty lists.
    for path in [
        "/v1/agents/bot",
        "/v1/agents/bot/policies",
        "/v1/agents/bot/policies/1",
    ] {
        let r = req(&s, "GET", path, Some(&globex), None, &[]);
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (404, "not_found"),
            "{path}: {}",
            r.body
        );
    }
    let r = req(
        &s,
        "POST",
        "/v1/agents/bot/policies/1/activate",
        Some(&globex),
        None,
        &[],
    );
    assert_eq!(r.status, 404);
    for path in ["/v1/agents", "/v1/teams", "/v1/runs"] {
        let r = req(&s, "GET", path, Some(&globex), None, &[]);
        assert_eq!((r.status, r.body.as_str()), (200, "[]"), "{path}");
    }
    let r = req(&s, "GET", "/v1/tokens", Some(&globex), None, &[]);
    assert_eq!(
        r.json().as_array().map(Vec::len),
        Some(1),
        "only globex's own token"
    );

    // Scopes: 403, audited as scope_missing.
    let r = req(&s, "GET", "/v1/agents", Some(&acme_ro), None, &[]);
    assert_eq!(r.status, 200);
    let r = req(
        &s,
        "POST",
        "/v1/agents",
        Some(&acme_ro),
        Some(r#"{"name":"x"}"#),
        &[],
    );
    assert_eq!((r.status, r.error_code().as_str()), (403, "scope_missing"));
    let r = req(&s, "GET", "/v1/audit", Some(&acme_ro), None, &[]);
    assert_eq!(r.status, 403);
    // A token never mints a scope it does not hold.
    let r = req(
        &s,
        "POST",
        "/v1/tokens",
        Some(&acme_ro),
        Some(r#"{"scopes":["admin"]}"#),
        &[],
    );
    assert_eq!(r.status, 403);

    // A token limited to its agent can never write that agent's policy.
    let mint = r#"{"scopes":["policies:write","policies:read","runs:read"],"agents":["bot"]}"#;
    let r = req(&s, "POST", "/v1/tokens", Some(&acme), Some(mint), &[]);
    assert_eq!(r.status, 201, "{}", r.body);
    let bot_token = r.json()["token"].as_str().expect("token").to_owned();
    let bot_id = r.json()["id"].as_str().expect("id").to_owned();
    let r = req(
        &s,
        "POST",
        "/v1/agents/bot/policies",
        Some(&bot_token),
        Some(&pol),
        &[],
    );
    assert_eq!((r.status, r.error_code().as_str()), (403, "scope_missing"));
    let r = req(
        &s,
        "POST",
        "/v1/agents/bot/policies/1/activate",
        Some(&bot_token),
        None,
        &[],
    );
    assert_eq!(r.status, 403);
    let r = req(
        &s,
        "GET",
        "/v1/agents/bot/policies/1",
        Some(&bot_token),
        None,
        &[],
    );
    assert_eq!(r.status, 200, "it may read it");

    // Missing, unknown, expired, revoked: 401.
    std::thread::sleep(Duration::from_millis(1100));
    let unknown = format!("alt_{}", "0".repeat(64));
    for t in [
        None,
        Some("garbage"),
        Some(unknown.as_str()),
        Some(expired.as_str()),
    ] {
        let r = req(&s, "GET", "/v1/agents", t, None, &[]);
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (401, "unauthenticated"),
            "{t:?}"
        );
    }
    let r = req(
        &s,
        "POST",
        &format!("/v1/tokens/{bot_id}/revoke"),
        Some(&globex),
        None,
        &[],
    );
    assert_eq!(r.status, 404, "another tenant's token");
    let r = req(
        &s,
        "POST",
        &format!("/v1/tokens/{bot_id}/revoke"),
        Some(&acme),
        None,
        &[],
    );
    assert_eq!(r.status, 204);
    let r = req(
        &s,
        "GET",
        "/v1/agents/bot/policies/1",
        Some(&bot_token),
        None,
        &[],
    );
    assert_eq!(r.status, 401, "revoked");

    // Bad input: 4xx in the JSON format, audited, and the server keeps serving.
    let cases: [(&str, &str, &str, u16); 5] = [
        ("POST", "/v1/agents", "{not json", 400),
        ("POST", "/v1/agents", r#"{"name":"a","admin":true}"#, 400),
        ("POST", "/v1/agents", r#"{"name":"x' OR 1=1 --"}"#, 400),
        ("GET", "/v1/runs/..%2F..%2Fetc", "", 400),
        (
            "GET",
            "/v1/runs/run'%3B%20DROP%20TABLE%20control_runs",
            "",
            400,
        ),
    ];
    for (m, p, b, want) in cases {
        let r = req(&s, m, p, Some(&acme), (!b.is_empty()).then_some(b), &[]);
        assert_eq!(r.status, want, "{m} {p} {b}: {}", r.body);
        assert!(!r.error_code().is_empty(), "{}", r.body);
    }
    let big = format!(r#"{{"name":"{}"}}"#, "a".repeat(2 << 20));
    // The server answers 413 before it has read the whole body and then
    // closes; the unread rest makes the kernel reset the connection, and a
    // reset may discard the 413 before curl reads it (curl then reports
    // the `100 Continue` it saw, or nothing). That race is TCP's, not the
    // API's: try again a few times, and require the 413 to arrive.
    let mut r = req(&s, "POST", "/v1/agents", Some(&acme), Some(&big), &[]);
    for _ in 0..4 {
        if r.status == 413 {
            break;
        }
        assert!(matches!(r.status, 0 | 100), "{}: {}", r.status, r.body);
        r = req(&s, "POST", "/v1/agents", Some(&acme), Some(&big), &[]);
    }
    assert_eq!((r.status, r.error_code().as_str()), (413, "limit_exceeded"));
    let r = req(&s, "GET", "/v1/agents", Some(&acme), None, &[]);
    assert_eq!(r.status, 200, "still serving");
    assert_eq!(r.json().as_array().map(Vec::len), Some(1));

    // WebSockets: refused before the upgrade.
    let ws = [
        "Connection: Upgrade",
        "Upgrade: websocket",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    ];
    let r = req(&s, "GET", "/v1/audit/stream", None, None, &ws);
    assert_eq!(r.status, 401);
    let r = req(&s, "GET", "/v1/runs/run-1/events", Some(&globex), None, &ws);
    assert_eq!(r.status, 404);

    // Budgets: set, reserve, refuse over the limit, settle once; another
    // tenant sees none of it; a read-only token cannot spend.
    let r = req(
        &s,
        "PUT",
        "/v1/budgets/org",
        Some(&acme),
        Some(r#"{"limit_micros":1000}"#),
        &[],
    );
    assert_eq!(
        (r.status, r.json()["used_micros"].as_i64()),
        (200, Some(0)),
        "{}",
        r.body
    );
    let r = req(
        &s,
        "PUT",
        "/v1/budgets/agent:bot",
        Some(&acme),
        Some(r#"{"limit_micros":600}"#),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = req(
        &s,
        "POST",
        "/v1/budgets/agent:bot/reservations",
        Some(&acme),
        Some(r#"{"micros":500}"#),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["budget"]["used_micros"], 500);
    let held = r.json()["id"].as_i64().expect("id");
    let r = req(
        &s,
        "POST",
        "/v1/budgets/agent:bot/reservations",
        Some(&acme),
        Some(r#"{"micros":200}"#),
        &[],
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (409, "budget_exceeded"),
        "{}",
        r.body
    );
    // The org's budget binds too: 500 held leaves 500 of the org's 1000.
    let r = req(
        &s,
        "PUT",
        "/v1/budgets/team:ops",
        Some(&acme),
        Some(r#"{"limit_micros":5000}"#),
        &[],
    );
    assert_eq!(r.status, 200);
    let r = req(
        &s,
        "POST",
        "/v1/budgets/team:ops/reservations",
        Some(&acme),
        Some(r#"{"micros":600}"#),
        &[],
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (409, "budget_exceeded"),
        "{}",
        r.body
    );
    for (path, body) in [
        (
            "/v1/budgets/reservations/999999/settle",
            r#"{"actual_micros":1}"#,
        ),
        ("/v1/budgets/agent:nobody/reservations", r#"{"micros":1}"#),
    ] {
        let r = req(&s, "POST", path, Some(&acme), Some(body), &[]);
        assert_eq!(r.status, 404, "{path}: {}", r.body);
    }
    // globex: no budgets, and acme's reservation is not there to settle.
    let r = req(&s, "GET", "/v1/budgets", Some(&globex), None, &[]);
    assert_eq!((r.status, r.body.as_str()), (200, "[]"));
    let path = format!("/v1/budgets/reservations/{held}/settle");
    let r = req(
        &s,
        "POST",
        &path,
        Some(&globex),
        Some(r#"{"actual_micros":0}"#),
        &[],
    );
    assert_eq!(r.status, 404, "{}", r.body);
    let r = req(
        &s,
        "POST",
        "/v1/budgets/agent:bot/reservations",
        Some(&globex),
        Some(r#"{"micros":1}"#),
        &[],
    );
    assert_eq!(r.status, 404, "{}", r.body);
    // Settled once: what was spent replaces what was held.
    let r = req(
        &s,
        "POST",
        &path,
        Some(&acme),
        Some(r#"{"actual_micros":120}"#),
        &[],
    );
    assert_eq!(r.status, 204, "{}", r.body);
    let r = req(
        &s,
        "POST",
        &path,
        Some(&acme),
        Some(r#"{"actual_micros":120}"#),
        &[],
    );
    assert_eq!(r.status, 404, "settled twice: {}", r.body);
    let r = req(&s, "GET", "/v1/budgets", Some(&acme), None, &[]);
    let used: Vec<(String, i64)> = r
        .json()
        .as_array()
        .expect("list")
        .iter()
        .map(|b| {
            (
                b["scope"].as_str().unwrap_or("").to_owned(),
                b["used_micros"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert!(
        used.contains(&("agent:bot".into(), 120)) && used.contains(&("org".into(), 120)),
        "{used:?}"
    );
    // Bad input and missing scopes.
    for (path, body) in [
        ("/v1/budgets/everyone", r#"{"limit_micros":1}"#),
        ("/v1/budgets/agent:bot", r#"{"limit_micros":-1}"#),
        (
            "/v1/budgets/agent:bot",
            r#"{"limit_micros":1,"period":"week"}"#,
        ),
        ("/v1/budgets/agent:bot", r#"{"limit_micros":1,"extra":1}"#),
        ("/v1/budgets/agent:..", r#"{"limit_micros":1}"#),
    ] {
        let r = req(&s, "PUT", path, Some(&acme), Some(body), &[]);
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (400, "malformed_request"),
            "{path} {body}: {}",
            r.body
        );
    }
    let r = req(&s, "GET", "/v1/budgets", Some(&acme_ro), None, &[]);
    assert_eq!((r.status, r.error_code().as_str()), (403, "scope_missing"));

    users_matrix(&dir, &s, &acme, &globex, &acme_ro);

    drop(s);
    let a = audit(&dir, "acme");
    assert!(count(&a, "api.auth_failed", "scope_missing") >= 4, "{a:#?}");
    assert!(
        count(&a, "api.auth_failed", "unauthenticated") >= 2,
        "expired + revoked"
    );
    assert!(
        count(&a, "api.request", "malformed_request") >= 6,
        "bad input is recorded"
    );
    assert!(count(&a, "api.request", "limit_exceeded") >= 1);
    assert!(count(&a, "policy.changed", "recorded") >= 1);
    // acme, acme_ro, expired and the users test's agent-limited one by the
    // CLI, another agent-limited one by the API.
    assert_eq!(count(&a, "token.created", "recorded"), 5);
    assert_eq!(count(&a, "token.revoked", "recorded"), 1);
    assert_eq!(count(&a, "budget.changed", "budget_exceeded"), 2);
    assert!(count(&a, "budget.changed", "recorded") >= 6);
    let g = audit(&dir, "globex");
    assert!(
        count(&g, "api.request", "malformed_request") >= 3,
        "404s in globex's own log"
    );
    assert!(
        g.iter().all(|e| !e.to_string().contains("\"agent:bot\"")),
        "nothing of acme's in globex's log"
    );
    let d = audit(&dir, "default");
    assert!(
        count(&d, "api.auth_failed", "unauthenticated") >= 3,
        "unknown tokens: the installation log"
    );
    for e in a.iter().chain(&g).chain(&d) {
        let t = e.to_string();
        assert!(
            !t.contains(&acme) && !t.contains(&globex),
            "no token text in the log"
        );
    }
}

/// A form login at the dashboard: (status, the session cookie's value).
fn form_login(s: &Server, username: &str, password: &str) -> (u16, Option<String>) {
    let o = Command::new("curl")
        .args(["-s", "--max-time", "20", "--cacert"])
        .arg(&s.cert)
        .args(["-o", "/dev/null", "-D", "-", "-w", "%{http_code}"])
        .args(["-H", "Sec-Fetch-Site: same-origin"])
        .args(["-H", &format!("Origin: {}", s.base)])
        .args(["--data-urlencode", &format!("username={username}")])
        .args(["--data-urlencode", &format!("password={password}")])
        .arg(format!("{}/login", s.base))
        .output()
        .expect("curl");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let status = out.lines().last().unwrap_or("").trim().parse().unwrap_or(0);
    let cookie = out.lines().find_map(|l| {
        let l = l.to_ascii_lowercase();
        let v = l.strip_prefix("set-cookie: __host-airlock_session=")?;
        Some(v.split(';').next()?.to_owned())
    });
    (status, cookie)
}

/// Where the dashboard sends a request with this session cookie.
fn page_redirect(s: &Server, path: &str, cookie: &str) -> (u16, String) {
    let r = req(
        s,
        "GET",
        path,
        None,
        None,
        &[&format!("Cookie: __Host-airlock_session={cookie}")],
    );
    let loc = r
        .headers
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .unwrap_or("")
        .trim()
        .to_owned();
    (r.status, loc)
}

/// Log in as `user` with its one-time password, replace it, and check
/// that the budgets page shows the tenant's budgets (the API's shared ones
/// on PostgreSQL, the gateway's on SQLite).
fn budgets_on_the_dashboard(s: &Server, user: &str, one_time: &str) {
    let (status, cookie) = form_login(s, user, one_time);
    assert_eq!(status, 303);
    let cookie = cookie.expect("session");
    let c = format!("Cookie: __Host-airlock_session={cookie}");
    let page = req(s, "GET", "/password", None, None, &[&c]);
    let at = page
        .body
        .find("name=\"csrf\" value=\"")
        .expect("csrf field")
        + 19;
    let csrf = page.body[at..at + 64].to_owned();
    let o = Command::new("curl")
        .args(["-s", "--max-time", "20", "--cacert"])
        .arg(&s.cert)
        .args(["-o", "/dev/null", "-w", "%{http_code}", "-H", &c])
        .args(["-H", "Sec-Fetch-Site: same-origin"])
        .args(["--data-urlencode", &format!("csrf={csrf}")])
        .args(["--data-urlencode", &format!("current={one_time}")])
        .args(["--data-urlencode", "new=a much longer passphrase 42"])
        .args(["--data-urlencode", "confirm=a much longer passphrase 42"])
        .arg(format!("{}/password", s.base))
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "303",
        "password changed"
    );
    let page = req(s, "GET", "/budgets", None, None, &[&c]);
    assert_eq!(page.status, 200, "{}", page.body);
    for scope in ["org", "agent:bot", "team:ops"] {
        assert!(
            page.body.contains(&format!("id=\"budget-{scope}\"")),
            "{scope}: {}",
            page.body
        );
    }
}

/// Users (operators) through the API: admin tokens only, one-time
/// passwords shown once and usable at the dashboard's login, tenant-scoped
/// (another tenant's user is 404), the last admin kept, a deleted user's
/// session ended, every change recorded.
fn users_matrix(dir: &Path, s: &Server, acme: &str, globex: &str, acme_ro: &str) {
    let r = req(
        s,
        "POST",
        "/v1/users",
        Some(acme),
        Some(r#"{"username":"alice","admin":true}"#),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let created = r.json();
    assert_eq!(created["username"], "alice@acme");
    assert_eq!(created["admin"], true);
    let password = created["password"]
        .as_str()
        .expect("a one-time password")
        .to_owned();
    assert_eq!(password.len(), 20);
    let r = req(
        s,
        "POST",
        "/v1/users",
        Some(acme),
        Some(r#"{"username":"bob@acme"}"#),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    // Taken, malformed, another tenant's suffix, unknown fields: refused.
    for (body, status, code) in [
        (r#"{"username":"alice"}"#, 409, "conflict"),
        (r#"{"username":"alice@globex"}"#, 400, "malformed_request"),
        (r#"{"username":"a b"}"#, 400, "malformed_request"),
        (
            r#"{"username":"carol","password":"chosen"}"#,
            400,
            "malformed_request",
        ),
    ] {
        let r = req(s, "POST", "/v1/users", Some(acme), Some(body), &[]);
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (status, code),
            "{body}: {}",
            r.body
        );
    }
    // Listed without any password or hash; globex sees none of them.
    let r = req(s, "GET", "/v1/users", Some(acme), None, &[]);
    assert_eq!(r.status, 200);
    let names: Vec<String> = r
        .json()
        .as_array()
        .expect("array")
        .iter()
        .map(|u| u["username"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(names, ["alice@acme", "bob@acme"]);
    assert!(
        r.json()
            .as_array()
            .expect("array")
            .iter()
            .all(|u| u["login"] == "local" && u["must_change_password"] == true)
    );
    assert!(
        !r.body.contains(&password) && !r.body.contains("argon2"),
        "{}",
        r.body
    );
    let r = req(s, "GET", "/v1/users", Some(globex), None, &[]);
    assert_eq!(r.json().as_array().map(Vec::len), Some(0), "{}", r.body);
    let r = req(s, "DELETE", "/v1/users/bob@acme", Some(globex), None, &[]);
    assert_eq!((r.status, r.error_code().as_str()), (404, "not_found"));
    // Not an admin token, or limited to agents: refused.
    let r = req(s, "GET", "/v1/users", Some(acme_ro), None, &[]);
    assert_eq!((r.status, r.error_code().as_str()), (403, "scope_missing"));
    let limited = token(dir, "acme", &["--scope", "admin", "--agent", "bot"]);
    let r = req(
        s,
        "POST",
        "/v1/users",
        Some(&limited),
        Some(r#"{"username":"mallory","admin":true}"#),
        &[],
    );
    assert_eq!((r.status, r.error_code().as_str()), (403, "scope_missing"));

    // The one-time password logs in, and the first page is the password change.
    assert_eq!(form_login(s, "alice@acme", "wrong"), (401, None));
    let (status, cookie) = form_login(s, "alice@acme", &password);
    assert_eq!(status, 303);
    let cookie = cookie.expect("a session for the right password");
    assert_eq!(
        page_redirect(s, "/runs", &cookie),
        (303, "/password".into())
    );

    // Deleting ends the session at once; the last admin stays.
    let r = req(s, "DELETE", "/v1/users/alice@acme", Some(acme), None, &[]);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (409, "conflict"),
        "the last admin"
    );
    let r = req(
        s,
        "POST",
        "/v1/users",
        Some(acme),
        Some(r#"{"username":"ops","admin":true}"#),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let ops_pw = r.json()["password"].as_str().expect("password").to_owned();
    budgets_on_the_dashboard(s, "ops@acme", &ops_pw);
    let r = req(s, "DELETE", "/v1/users/alice@acme", Some(acme), None, &[]);
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(
        page_redirect(s, "/password", &cookie),
        (303, "/login".into())
    );
    assert_eq!(
        form_login(s, "alice@acme", &password),
        (401, None),
        "a deleted user cannot log in"
    );
    let r = req(s, "DELETE", "/v1/users/alice@acme", Some(acme), None, &[]);
    assert_eq!(r.status, 404);

    let a = audit(dir, "acme");
    let users: Vec<_> = a.iter().filter(|e| e["action"] == "user.created").collect();
    assert_eq!(users.len(), 3, "{users:#?}");
    assert!(
        a.iter()
            .any(|e| e["action"] == "user.changed" && e["resource"] == "user:alice@acme"),
        "the deletion is recorded"
    );
    assert!(
        a.iter().all(|e| !e.to_string().contains(&password)),
        "no password in the log"
    );
}

#[test]
fn a_run_started_through_the_api_runs_in_the_sandbox_and_is_audited_with_its_tenant_agent_and_run()
{
    let (_tmp, dir) = setup();
    // A signed checkpoint after every record: proofs need one.
    std::fs::write(dir.join("airlock.toml"), "[audit]\ncheckpoint_every = 1\n").expect("config");
    let acme = token(&dir, "acme", &["--scope", "admin"]);
    let globex = token(&dir, "globex", &["--scope", "admin"]);
    let s = serve(&dir);
    let r = req(
        &s,
        "POST",
        "/v1/agents",
        Some(&acme),
        Some(r#"{"name":"bot"}"#),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let body = r#"{"command":["/bin/sh","-c","echo hi > /workspace/out"],"agent":"bot"}"#;
    let r = req(&s, "POST", "/v1/runs", Some(&acme), Some(body), &[]);
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["id"].as_str().expect("id").to_owned();
    let start = Instant::now();
    let run = loop {
        let r = req(&s, "GET", &format!("/v1/runs/{id}"), Some(&acme), None, &[]);
        assert_eq!(r.status, 200, "{}", r.body);
        if r.json()["state"] != "running" {
            break r.json();
        }
        assert!(start.elapsed() < Duration::from_secs(60), "run did not end");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(run["state"], "exited", "{run}");
    assert_eq!(run["exit_code"], 0, "{run}");
    assert_eq!(run["agent"], "bot");
    let r = req(
        &s,
        "GET",
        &format!("/v1/runs/{id}"),
        Some(&globex),
        None,
        &[],
    );
    assert_eq!(r.status, 404, "another tenant's run");
    let r = req(
        &s,
        "GET",
        &format!("/v1/audit?run={id}"),
        Some(&acme),
        None,
        &[],
    );
    assert_eq!(r.status, 200);
    let recs = r.json()["records"].as_array().cloned().unwrap_or_default();
    let actions: Vec<String> = recs
        .iter()
        .map(|x| x["event"]["action"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        actions.contains(&"run.start".to_owned()) && actions.contains(&"run.end".to_owned()),
        "{actions:?}"
    );
    for x in &recs {
        assert_eq!(x["event"]["tenant"], "acme");
        assert_eq!(x["event"]["agent_id"], "bot");
        assert_eq!(x["event"]["run_id"], id.as_str());
    }
    let r = req(&s, "GET", "/v1/audit/verify", Some(&acme), None, &[]);
    assert_eq!(r.json()["ok"], true, "{}", r.body);
    // Export: OCSF lines; an inclusion proof that the CLI checks offline.
    let r = req(&s, "GET", "/v1/audit/export", Some(&acme), None, &[]);
    assert!(
        r.headers.contains("content-type: application/x-ndjson"),
        "{}",
        r.headers
    );
    let lines: Vec<serde_json::Value> = r
        .body
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(
        lines.len() >= recs.len() && lines.iter().all(|l| l["class_uid"] == 6003),
        "{}",
        r.body
    );
    let r = req(&s, "GET", "/v1/audit/proof/1", Some(&acme), None, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let proof = dir.join("proof.json");
    std::fs::write(&proof, &r.body).expect("proof");
    let (code, out, err) = airlock(
        &dir,
        &[
            "--tenant",
            "acme",
            "audit",
            "verify",
            "--proof",
            proof.to_str().expect("path"),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let r = req(&s, "GET", "/v1/audit/proof/999999", Some(&acme), None, &[]);
    assert_eq!(r.status, 404);
    let r = req(&s, "GET", "/v1/audit/proof/1", Some(&globex), None, &[]);
    assert_ne!(
        r.body,
        std::fs::read_to_string(&proof).expect("proof"),
        "another tenant's record"
    );
    let r = req(
        &s,
        "GET",
        &format!("/v1/audit?run={id}"),
        Some(&globex),
        None,
        &[],
    );
    assert_eq!(
        r.json()["records"],
        serde_json::json!([]),
        "globex's log has none of it"
    );
}

#[test]
fn the_committed_openapi_document_is_current() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("data");
    let (code, served, err) = airlock(&dir, &["serve", "--print-openapi"]);
    assert_eq!(code, 0, "{err}");
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../openapi/airlock-api.json"
    ))
    .unwrap_or_default();
    assert!(
        served == committed,
        "openapi/airlock-api.json is stale: regenerate it with `cargo run -q -- serve --print-openapi > openapi/airlock-api.json`"
    );
}

#[test]
fn three_replicas_on_one_postgresql_keep_one_verifiable_chain_per_tenant() {
    let Some(admin) = pg_support::admin_url() else {
        return;
    };
    let db = pg_support::TestDb::unmigrated(&admin, "api_replicas");
    let (_tmp, first) = setup_on(Some(&db));
    let acme = token(&first, "acme", &["--scope", "admin"]);
    let globex = token(&first, "globex", &["--scope", "admin"]);
    // Two more nodes: their own data directories, the same database and the
    // same audit signing key (what replicas on other machines share).
    let mut dirs = vec![first.clone()];
    for n in 2..=3 {
        let dir = first.with_file_name(format!("node{n}"));
        assert_eq!(airlock(&dir, &["init"]).0, 0);
        std::fs::copy(first.join("airlock.toml"), dir.join("airlock.toml")).expect("config");
        for k in ["audit-signing.key", "audit-signing.pub"] {
            std::fs::copy(first.join("keys").join(k), dir.join("keys").join(k)).expect("key");
        }
        dirs.push(dir);
    }
    let servers: Vec<Server> = dirs.iter().map(|d| serve(d)).collect();
    // Four clients per replica, each creating teams in both tenants at once.
    const PER_CLIENT: usize = 6;
    std::thread::scope(|scope| {
        for (r, s) in servers.iter().enumerate() {
            for c in 0..4 {
                let (acme, globex) = (&acme, &globex);
                scope.spawn(move || {
                    for i in 0..PER_CLIENT {
                        for (tok, who) in [(acme, "a"), (globex, "g")] {
                            let body = format!(r#"{{"name":"{who}-r{r}-c{c}-{i}"}}"#);
                            let resp = req(s, "POST", "/v1/teams", Some(tok), Some(&body), &[]);
                            assert_eq!(resp.status, 201, "{}", resp.body);
                        }
                    }
                });
            }
        }
    });
    // Budgets: 12 clients over the 3 replicas race for a budget with room
    // for exactly 25 reservations; 25 succeed, the rest are refused.
    let r = req(
        &servers[0],
        "PUT",
        "/v1/budgets/agent:bot",
        Some(&acme),
        Some(r#"{"limit_micros":2500}"#),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let taken = std::sync::atomic::AtomicUsize::new(0);
    let refused = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for s in &servers {
            for _ in 0..4 {
                let (acme, taken, refused) = (&acme, &taken, &refused);
                scope.spawn(move || {
                    for _ in 0..4 {
                        let r = req(
                            s,
                            "POST",
                            "/v1/budgets/agent:bot/reservations",
                            Some(acme),
                            Some(r#"{"micros":100}"#),
                            &[],
                        );
                        match (r.status, r.error_code().as_str()) {
                            (201, _) => taken.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
                            (409, "budget_exceeded") => {
                                refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                            }
                            other => panic!("{other:?}: {}", r.body),
                        };
                    }
                });
            }
        }
    });
    assert_eq!(taken.into_inner(), 25, "exactly the budget's room");
    assert_eq!(refused.into_inner(), 3 * 4 * 4 - 25);
    let r = req(&servers[2], "GET", "/v1/budgets", Some(&acme), None, &[]);
    assert_eq!(r.json()[0]["used_micros"], 2500, "{}", r.body);
    // Every replica sees every team of its caller's tenant, and only those.
    let made = 3 * 4 * PER_CLIENT;
    for s in &servers {
        let r = req(s, "GET", "/v1/teams", Some(&acme), None, &[]);
        let teams = r.json();
        let names: Vec<&str> = teams
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert_eq!(names.len(), made, "{}", r.body);
        assert!(names.iter().all(|n| n.starts_with("a-")), "{names:?}");
    }
    drop(servers);
    // One chain per tenant with every request in it, verified by the CLI
    // from each node (its own checkpoints, signed with the shared key).
    for t in ["acme", "globex"] {
        let events = audit(&first, t);
        let created = events
            .iter()
            .filter(|e| {
                e["action"] == "agent.changed"
                    && e["resource"]
                        .as_str()
                        .is_some_and(|r| r.starts_with("team:"))
            })
            .count();
        assert_eq!(created, made, "{t}: every team creation recorded once");
        if t == "acme" {
            assert_eq!(count(&events, "budget.changed", "budget_exceeded"), 23);
        }
        for d in &dirs {
            let (code, out, err) = airlock(d, &["--tenant", t, "audit", "verify"]);
            assert_eq!(code, 0, "{t} from {}: {out}{err}", d.display());
        }
    }
}

/// schemathesis (the PyPI tool) against the committed OpenAPI document and
/// the real server: generated requests, valid and not, on every operation
/// (with a token, without, with ids that do not exist); no answer may be a
/// 5xx, and every answer must match its documented status, content type,
/// headers and schema.
#[test]
fn every_generated_request_gets_a_documented_answer_and_no_5xx() {
    let py = match std::env::var_os("AIRLOCK_TEST_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => {
            assert!(
                std::env::var_os("AIRLOCK_REQUIRE_SDK_TESTS").is_none(),
                "AIRLOCK_REQUIRE_SDK_TESTS is set but AIRLOCK_TEST_PYTHON is not"
            );
            eprintln!("*** SKIPPED: AIRLOCK_TEST_PYTHON is not set (scripts/test sets it)");
            return;
        }
    };
    let st = py.with_file_name("schemathesis");
    assert!(
        st.exists(),
        "schemathesis is not installed next to {}",
        py.display()
    );
    let (_tmp, dir) = setup();
    let acme = token(&dir, "acme", &["--scope", "admin"]);
    let s = serve(&dir);
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openapi/airlock-api.json");
    let o = Command::new(&st)
        .arg("run")
        .arg(&doc)
        .args(["--url", &s.base, "--tls-verify"])
        .arg(&s.cert)
        .args(["-H", &format!("Authorization: Bearer {acme}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance,response_headers_conformance,ignored_auth,\
             use_after_free,ensure_resource_availability",
            "--max-examples",
            "25",
            "--workers",
            "2",
            "--seed",
            "20261202",
            // A connection lost under CI load is retried; an answer that
            // is wrong is wrong every time.
            "--request-retries",
            "2",
            "--no-color",
        ])
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .output()
        .expect("run schemathesis");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{out}");
    assert!(out.contains("passed") && !out.contains("❌"), "{out}");
}

#[test]
fn secrets_are_set_only_tenant_scoped_audited_and_granted_to_api_runs_as_handles() {
    let (_tmp, dir) = setup();
    let writer = token(
        &dir,
        "acme",
        &[
            "--scope",
            "secrets:write",
            "--scope",
            "secrets:read",
            "--scope",
            "runs:write",
            "--scope",
            "runs:read",
        ],
    );
    let reader = token(&dir, "acme", &["--scope", "secrets:read"]);
    let agent_only = token(
        &dir,
        "acme",
        &["--scope", "secrets:write", "--agent", "bot"],
    );
    let globex = token(&dir, "globex", &["--scope", "admin"]);
    let value = "ghp_SetOnlyValue0123456789abcdefghijklmn";
    let s = serve(&dir);
    let body = format!(
        r#"{{"value":"{value}","hosts":["api.github.com"],"methods":["GET"],"env":"GH_TOKEN"}}"#
    );
    let mut seen = Vec::new();
    let r = req(&s, "PUT", "/v1/secrets/gh", Some(&writer), Some(&body), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["version"], 1);
    assert_eq!(r.json()["replaced"], false);
    seen.push(r.body);
    let r = req(&s, "PUT", "/v1/secrets/gh", Some(&writer), Some(&body), &[]);
    assert_eq!(
        (r.json()["version"].clone(), r.json()["replaced"].clone()),
        (2.into(), true.into())
    );
    seen.push(r.body);
    // Metadata only, to a reader of the same tenant; nothing to another tenant.
    let r = req(&s, "GET", "/v1/secrets", Some(&reader), None, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let list = r.json();
    assert_eq!(list[0]["name"], "gh", "{list}");
    assert_eq!(
        list[0]["binding"]["hosts"],
        serde_json::json!(["api.github.com"])
    );
    assert_eq!(list[0]["binding"]["methods"], serde_json::json!(["GET"]));
    seen.push(r.body);
    let r = req(&s, "GET", "/v1/secrets/gh", Some(&reader), None, &[]);
    assert_eq!(r.status, 200);
    seen.push(r.body);
    assert_eq!(
        req(&s, "GET", "/v1/secrets/gh", Some(&globex), None, &[]).status,
        404
    );
    let r = req(&s, "GET", "/v1/secrets", Some(&globex), None, &[]);
    assert_eq!(r.json(), serde_json::json!([]), "another tenant's list");
    assert_eq!(
        req(&s, "DELETE", "/v1/secrets/gh", Some(&globex), None, &[]).status,
        404
    );
    // Refused: no write scope, a token limited to agents, bad input.
    let r = req(&s, "PUT", "/v1/secrets/gh", Some(&reader), Some(&body), &[]);
    assert_eq!(r.status, 403, "{}", r.body);
    let r = req(
        &s,
        "PUT",
        "/v1/secrets/gh",
        Some(&agent_only),
        Some(&body),
        &[],
    );
    assert_eq!(r.status, 403, "an agent's token re-pointing a credential");
    let r = req(&s, "DELETE", "/v1/secrets/gh", Some(&agent_only), None, &[]);
    assert_eq!(r.status, 403);
    for (path, bad) in [
        (
            "/v1/secrets/gh",
            r#"{"value":"","hosts":["a.example"]}"#.to_owned(),
        ),
        (
            "/v1/secrets/gh",
            r#"{"value":"x\ny","hosts":["a.example"]}"#.to_owned(),
        ),
        ("/v1/secrets/gh", r#"{"value":"x","hosts":[]}"#.to_owned()),
        (
            "/v1/secrets/gh",
            format!(r#"{{"value":"{value}","hosts":["a.example"],"extra":1}}"#),
        ),
        (
            "/v1/secrets/..%2Fetc",
            r#"{"value":"x","hosts":["a.example"]}"#.to_owned(),
        ),
    ] {
        let r = req(&s, "PUT", path, Some(&writer), Some(&bad), &[]);
        assert_eq!(r.status, 400, "{path} {bad}: {}", r.body);
        seen.push(r.body);
    }
    // A run started through the API gets a handle, never the value.
    let run = r#"{"command":["/bin/sh","-c","test -n \"$GH_TOKEN\" || exit 2; case \"$GH_TOKEN\" in ghp_SetOnly*) exit 3;; esac"],"secrets":["gh"]}"#;
    let r = req(&s, "POST", "/v1/runs", Some(&writer), Some(run), &[]);
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["id"].as_str().expect("id").to_owned();
    let start = Instant::now();
    let ended = loop {
        let r = req(
            &s,
            "GET",
            &format!("/v1/runs/{id}"),
            Some(&writer),
            None,
            &[],
        );
        if r.json()["state"] != "running" {
            break r.json();
        }
        assert!(start.elapsed() < Duration::from_secs(60), "run did not end");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        ended["exit_code"], 0,
        "the run saw no handle, or the value: {ended}"
    );
    let r = req(
        &s,
        "POST",
        "/v1/runs",
        Some(&writer),
        Some(r#"{"command":["true"],"secrets":["missing"]}"#),
        &[],
    );
    assert_eq!(r.status, 422, "a secret that does not exist: {}", r.body);
    // Removed, then gone.
    assert_eq!(
        req(&s, "DELETE", "/v1/secrets/gh", Some(&writer), None, &[]).status,
        204
    );
    assert_eq!(
        req(&s, "GET", "/v1/secrets/gh", Some(&reader), None, &[]).status,
        404
    );
    assert_eq!(
        req(&s, "DELETE", "/v1/secrets/gh", Some(&writer), None, &[]).status,
        404
    );
    // Every change recorded with the token as actor; the value nowhere.
    let events = audit(&dir, "acme");
    assert_eq!(count(&events, "vault.secret_set", "recorded"), 2);
    assert_eq!(count(&events, "vault.secret_rm", "recorded"), 1);
    assert!(
        events
            .iter()
            .any(|e| e["action"] == "run.start"
                && e["details"]["secrets"] == serde_json::json!(["gh"])),
        "the grant on the run's record"
    );
    let all = serde_json::to_string(&events).expect("json")
        + &seen.join("\n")
        + &std::fs::read_to_string(&s.log).unwrap_or_default();
    assert!(!all.contains("SetOnlyValue"), "the value leaked");
    let db = std::fs::read(dir.join("airlock.db")).expect("db");
    assert!(
        !db.windows(12).any(|w| w == b"SetOnlyValue"),
        "stored in clear"
    );
    assert!(
        audit(&dir, "globex")
            .iter()
            .all(|e| e["action"] != "vault.secret_set")
    );
}

/// `airlock --server URL ARGS` from an empty data directory, with `token`
/// in AIRLOCK_TOKEN and the server's development CA (when `ca`).
fn remote(s: &Server, token: Option<&str>, ca: bool, args: &[&str]) -> (i32, String, String) {
    let empty = tempfile::tempdir().expect("tmp");
    let mut c = Command::new(BIN);
    c.arg("--server").arg(&s.base).args(args);
    c.env("AIRLOCK_DATA_DIR", empty.path().join("none"))
        .env_remove("AIRLOCK_CONFIG")
        .env_remove("AIRLOCK_TENANT")
        .env_remove("AIRLOCK_TOKEN")
        .env_remove("AIRLOCK_SERVER_CA");
    if let Some(t) = token {
        c.env("AIRLOCK_TOKEN", t);
    }
    if ca {
        c.env("AIRLOCK_SERVER_CA", &s.cert);
    }
    let o = c.output().expect("airlock --server");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn the_cli_in_server_mode_uses_the_api_with_a_token_from_the_environment() {
    let (_tmp, dir) = setup();
    let admin = token(&dir, "acme", &["--scope", "admin"]);
    let s = serve(&dir);
    let r = req(
        &s,
        "POST",
        "/v1/agents",
        Some(&admin),
        Some(r#"{"name":"bot"}"#),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    // A token minted through the API, printed alone on stdout, then usable.
    let (code, out, err) = remote(
        &s,
        Some(&admin),
        true,
        &[
            "token",
            "create",
            "--scope",
            "runs:write",
            "--scope",
            "runs:read",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let runner = out.trim().to_owned();
    assert!(runner.starts_with("alt_") && runner.len() == 68, "{out}");
    // A run on the server's node; the CLI exits with the run's exit code.
    let (code, out, err) = remote(
        &s,
        Some(&runner),
        true,
        &["run", "--agent", "bot", "--", "/bin/sh", "-c", "exit 7"],
    );
    assert_eq!(code, 7, "{out}{err}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).expect("json")["agent"],
        "bot"
    );
    // Audit, budgets, approvals through the API.
    let (code, out, err) = remote(&s, Some(&admin), true, &["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).expect("json")["ok"],
        true
    );
    let (code, out, err) = remote(&s, Some(&admin), true, &["audit", "tail", "-n", "3"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 3, "{out}");
    let (code, out, _) = remote(&s, Some(&admin), true, &["audit", "export"]);
    assert_eq!(code, 0);
    assert!(
        out.lines().all(
            |l| serde_json::from_str::<serde_json::Value>(l).expect("line")["class_uid"] == 6003
        )
    );
    let (code, _, err) = remote(
        &s,
        Some(&admin),
        true,
        &[
            "budget",
            "set",
            "agent:bot",
            "--usd",
            "5",
            "--period",
            "total",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = remote(&s, Some(&admin), true, &["budget", "list"]);
    assert!(
        out.contains("5000000") && out.contains("agent:bot"),
        "{out}"
    );
    let (code, out, err) = remote(&s, Some(&admin), true, &["approvals", "list"]);
    assert_eq!((code, out.trim()), (0, "[]"), "{err}");
    // Refused: a scope the token lacks (the API's own code), no token, a
    // bad token, no CA for a self-signed server, plain HTTP off loopback,
    // a command that has no server form. The token is never printed.
    let (code, _, err) = remote(&s, Some(&runner), true, &["budget", "list"]);
    assert!(code != 0 && err.contains("403 scope_missing"), "{err}");
    let (code, _, err) = remote(&s, None, true, &["audit", "verify"]);
    assert!(code != 0 && err.contains("AIRLOCK_TOKEN"), "{err}");
    let bogus = format!("alt_{}", "0".repeat(64));
    let (code, _, err) = remote(&s, Some(&bogus), true, &["audit", "verify"]);
    assert!(
        code != 0 && err.contains("401 unauthenticated") && !err.contains(&bogus),
        "{err}"
    );
    let (code, _, err) = remote(&s, Some(&admin), false, &["audit", "verify"]);
    assert!(
        code != 0 && err.contains("TLS"),
        "a self-signed server without its CA: {err}"
    );
    let o = Command::new(BIN)
        .args(["--server", "http://192.0.2.1:8443", "audit", "verify"])
        .env("AIRLOCK_TOKEN", &admin)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("loopback"), "{err}");
    let (code, _, err) = remote(&s, Some(&admin), true, &["scan", "Cargo.toml"]);
    assert!(
        code != 0 && err.contains("local data directory only"),
        "{err}"
    );
    let log = std::fs::read_to_string(&s.log).unwrap_or_default();
    assert!(
        !log.contains(&admin[4..]) && !log.contains(&runner[4..]),
        "a token in the log"
    );
    let events = audit(&dir, "acme");
    assert!(count(&events, "token.created", "recorded") >= 2);
    assert!(
        events.iter().any(|e| e["reason"] == "scope_missing"),
        "the refused budget list"
    );
    // An unknown token has no tenant: its refusal is in the default log.
    assert!(
        count(
            &audit(&dir, "default"),
            "api.auth_failed",
            "unauthenticated"
        ) >= 1
    );
}

#[test]
fn with_the_database_down_requests_get_a_clear_503_nothing_is_half_written_and_service_resumes() {
    let Some(admin) = pg_support::admin_url() else {
        return;
    };
    let db = pg_support::TestDb::new(&admin, "api_down");
    let (_tmp, dir) = setup_on(Some(&db));
    let acme = token(&dir, "acme", &["--scope", "admin"]);
    let s = serve(&dir);
    let r = req(
        &s,
        "POST",
        "/v1/teams",
        Some(&acme),
        Some(r#"{"name":"before"}"#),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let mut su = pg_support::admin_client(&admin);
    let cut = |su: &mut postgres::Client, allow: bool| {
        su.batch_execute(&format!(
            "ALTER DATABASE {0} ALLOW_CONNECTIONS {allow}; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{0}' AND pid <> pg_backend_pid()",
            db.name
        ))
        .expect("cut the database off");
    };
    cut(&mut su, false);
    for (method, path, body) in [
        ("GET", "/v1/teams", None),
        ("POST", "/v1/teams", Some(r#"{"name":"lost"}"#)),
        ("PUT", "/v1/budgets/org", Some(r#"{"limit_micros":5}"#)),
        ("GET", "/v1/audit/verify", None),
    ] {
        let r = req(&s, method, path, Some(&acme), body, &[]);
        assert_eq!(r.status, 503, "{method} {path}: {}", r.body);
        let code = r.error_code();
        assert!(
            code == "store_unavailable" || code == "audit_unavailable",
            "{method} {path}: {}",
            r.body
        );
        assert!(
            !r.body.contains("postgres") && !r.body.contains(&db.name),
            "internals: {}",
            r.body
        );
    }
    // Back: the same server serves again, and nothing refused was written.
    su.batch_execute(&format!(
        "ALTER DATABASE {} ALLOW_CONNECTIONS true",
        db.name
    ))
    .expect("reconnect allowed");
    let start = Instant::now();
    let teams = loop {
        let r = req(&s, "GET", "/v1/teams", Some(&acme), None, &[]);
        if r.status == 200 {
            break r.json();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no recovery: {} {}",
            r.status,
            r.body
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let names: Vec<&str> = teams
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["before"], "a refused write left a row");
    let r = req(
        &s,
        "POST",
        "/v1/teams",
        Some(&acme),
        Some(r#"{"name":"after"}"#),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = req(&s, "GET", "/v1/budgets", Some(&acme), None, &[]);
    assert_eq!(
        r.json(),
        serde_json::json!([]),
        "a refused budget was stored"
    );
    drop(s);
    let events = audit(&dir, "acme");
    assert!(
        events.iter().all(|e| e["resource"] != "team:lost"),
        "a refused change was recorded as done"
    );
    assert!(events.iter().any(|e| e["resource"] == "team:after"));
    let (code, out, err) = airlock(&dir, &["--tenant", "acme", "audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
}
