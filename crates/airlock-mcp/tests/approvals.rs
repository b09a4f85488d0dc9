//! The `ask` path through the gateway with an in-test `Approver` (the real
//! approval service and CLI are tested end to end after they are wired
//! in): an approved call runs once with the approval recorded, a refused
//! one is an error with the approver's reason; autonomy `ask_all` asks
//! even where a rule allows. The tool server is the official Python SDK's
//! `MCPServer`, started directly (sandboxing is the runtime's launcher's
//! job, tested in `crates/airlock/tests/mcp_gateway.rs`).

use airlock_mcp::config::{Labels, McpConfig, RuleAction, ServerConfig, ToolRule, Transport};
use airlock_mcp::{Gateway, Launcher, MemoryPins, MemoryTaint, Parts, Pipes, Session};
use airlock_types::{
    Action, Actor, ActorKind, AgentId, ApprovalRequest, Approver, AskFuture, AuditEvent, Autonomy,
    EventSink, MemorySink, Reason, RunContext, RunId, SinkError, Subject, TenantId, Verdict,
};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SERVER: &str = r#"
from mcp.server.mcpserver import MCPServer
app = MCPServer("t")
@app.tool(description="Send a message.")
def send(to: str) -> str:
    return "sent to " + to
app.run()
"#;

#[derive(Debug)]
struct Direct(String);

impl Launcher for Direct {
    fn launch(&self, _s: &ServerConfig) -> Result<Pipes, String> {
        let mut c = std::process::Command::new(&self.0)
            .args(["-c", SERVER])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let stdin = c.stdin.take().ok_or("stdin")?;
        let stdout = c.stdout.take().ok_or("stdout")?;
        let child = Mutex::new(c);
        Ok(Pipes {
            stdin: std::fs::File::from(std::os::fd::OwnedFd::from(stdin)),
            stdout: std::fs::File::from(std::os::fd::OwnedFd::from(stdout)),
            stop: Box::new(move || {
                if let Ok(mut c) = child.lock() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
            }),
            known_secrets: Vec::new(),
        })
    }
}

/// Approves (or refuses) after `wait` and remembers what it was asked.
#[derive(Debug)]
struct TestApprover {
    approve: bool,
    wait: Duration,
    asked: Mutex<Vec<ApprovalRequest>>,
}

impl Approver for TestApprover {
    fn ask(&self, request: ApprovalRequest, _wait: Duration) -> AskFuture<'_> {
        self.asked.lock().expect("test").push(request);
        let (approve, wait) = (self.approve, self.wait);
        Box::pin(async move {
            tokio::time::sleep(wait).await;
            if approve {
                Verdict::Approved {
                    id: "ap-1".into(),
                    sha256: "ab".repeat(32),
                }
            } else {
                Verdict::Refused {
                    id: Some("ap-2".into()),
                    reason: Reason::ApprovalDenied,
                }
            }
        })
    }
}

/// The audit log: in memory, or refusing `mcp.call` records once told to
/// (a full or failed audit writer).
#[derive(Debug, Default)]
struct TestSink {
    memory: MemorySink,
    refuse_calls: AtomicBool,
}

impl TestSink {
    fn events(&self) -> Vec<AuditEvent> {
        self.memory.events()
    }
}

impl EventSink for TestSink {
    fn emit(&self, event: AuditEvent) -> Result<(), SinkError> {
        if event.action == Action::McpCall && self.refuse_calls.load(Ordering::SeqCst) {
            return Err(SinkError::Overloaded);
        }
        self.memory.emit(event)
    }
}

fn python() -> Option<String> {
    match std::env::var("AIRLOCK_TEST_PYTHON") {
        Ok(p) => Some(p),
        Err(_) => {
            assert!(
                std::env::var_os("AIRLOCK_REQUIRE_SDK_TESTS").is_none(),
                "AIRLOCK_REQUIRE_SDK_TESTS is set but AIRLOCK_TEST_PYTHON is not"
            );
            eprintln!("*** SKIPPED: AIRLOCK_TEST_PYTHON is not set (scripts/test sets it)");
            None
        }
    }
}

fn setup(
    py: &str,
    action: RuleAction,
    autonomy: Option<Autonomy>,
    approve: bool,
    wait: Duration,
) -> (Arc<Gateway>, Arc<TestApprover>, Arc<TestSink>, Session) {
    let mut cfg = McpConfig {
        progress_every: Duration::from_millis(50),
        ..McpConfig::default()
    };
    cfg.servers.push(ServerConfig {
        name: "t".into(),
        transport: Transport::Stdio {
            command: vec![],
            workspace: None,
            env: vec![],
        },
        secrets: vec![],
        policy: airlock_policy::EgressPolicy::deny_all(),
        labels: Labels {
            writes: true,
            ..Labels::default()
        },
        tool_labels: Default::default(),
    });
    cfg.rules.push(ToolRule {
        tools: vec!["t.*".into()],
        action,
        agents: vec![],
        args: vec![],
        allow_writes: false,
    });
    if let Some(a) = autonomy {
        cfg.autonomy.insert("alice".into(), a);
    }
    let approver = Arc::new(TestApprover {
        approve,
        wait,
        asked: Mutex::new(Vec::new()),
    });
    let sink = Arc::new(TestSink::default());
    let gw = Gateway::new(
        cfg,
        Parts {
            launcher: Arc::new(Direct(py.to_owned())),
            sink: sink.clone(),
            approver: approver.clone(),
            taint: Arc::new(MemoryTaint::default()),
            pins: Arc::new(MemoryPins::default()),
            tenant: TenantId::new("default").expect("test"),
        },
    )
    .expect("test");
    let ctx = RunContext::new(
        TenantId::new("default").expect("test"),
        RunId::new("run-test").expect("test"),
        Actor::new(ActorKind::Agent, "mcp"),
    )
    .with_agent(AgentId::new("alice").expect("test"));
    (gw, approver, sink, Session { ctx, notify: None })
}

async fn call(gw: &Gateway, s: &Session) -> Value {
    let m = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "t.send", "arguments": {"to": "bob"}}});
    gw.handle(s, &serde_json::to_vec(&m).expect("test"))
        .await
        .expect("test")
}

#[tokio::test]
async fn an_ask_rule_waits_for_the_approver_and_runs_the_call_once_approved() {
    let Some(py) = python() else { return };
    let (gw, approver, sink, s) = setup(&py, RuleAction::Ask, None, true, Duration::ZERO);
    let r = call(&gw, &s).await;
    assert_eq!(r["result"]["content"][0]["text"], "sent to bob", "{r}");
    let asked = approver.asked.lock().expect("test").clone();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].reason, Reason::ApprovalRequired);
    assert_eq!(
        asked[0].subject,
        Subject::Tool {
            server: "t".into(),
            tool: "send".into(),
            arguments: json!({"to": "bob"})
        }
    );
    let ev = sink
        .events()
        .into_iter()
        .find(|e| e.resource == "t.send" && e.action == airlock_types::Action::McpCall)
        .expect("test");
    assert_eq!(ev.reason, Reason::ApprovalGranted);
    assert_eq!(ev.details["approval_sha256"], json!("ab".repeat(32)));
}

#[tokio::test]
async fn a_refused_approval_is_an_error_with_the_approvers_reason() {
    let Some(py) = python() else { return };
    let (gw, _a, sink, s) = setup(&py, RuleAction::Ask, None, false, Duration::ZERO);
    let r = call(&gw, &s).await;
    assert_eq!(r["error"]["data"]["reason"], "approval_denied", "{r}");
    assert!(
        sink.events()
            .iter()
            .any(|e| e.resource == "t.send" && e.reason == Reason::ApprovalDenied)
    );
}

#[tokio::test]
async fn autonomy_ask_writes_asks_even_where_a_rule_allows() {
    let Some(py) = python() else { return };
    let (gw, approver, _sink, s) = setup(
        &py,
        RuleAction::Allow,
        Some(Autonomy::AskWrites),
        false,
        Duration::ZERO,
    );
    let r = call(&gw, &s).await;
    assert_eq!(r["error"]["data"]["reason"], "approval_denied", "{r}");
    assert_eq!(approver.asked.lock().expect("test").len(), 1);
}

/// One POST to the streamable-HTTP front (a fresh connection, read to its
/// end): the response head and body.
async fn post(addr: std::net::SocketAddr, sid: Option<&str>, msg: &Value) -> (String, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let body = serde_json::to_string(msg).expect("test");
    let sid = sid.map_or(String::new(), |s| format!("mcp-session-id: {s}\r\n"));
    let req = format!(
        "POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\n{sid}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut c = tokio::net::TcpStream::connect(addr).await.expect("test");
    c.write_all(req.as_bytes()).await.expect("test");
    let mut out = String::new();
    c.read_to_string(&mut out).await.expect("test");
    let (head, body) = out.split_once("\r\n\r\n").expect("test");
    (head.to_ascii_lowercase(), body.to_owned())
}

/// A `tools/call` over streamable HTTP, the way an SDK client sends it.
async fn http_call(gw: Arc<Gateway>, s: &Session) -> (String, String) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("test");
    let addr = l.local_addr().expect("test");
    let ctx = s.ctx.clone();
    tokio::spawn(airlock_mcp::front::serve_http(
        gw,
        l,
        Arc::new(move || ctx.clone()),
        std::future::pending(),
    ));
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let (head, _) = post(addr, None, &init).await;
    let sid = head
        .lines()
        .find_map(|l| l.strip_prefix("mcp-session-id: "))
        .expect("a session id")
        .to_owned();
    let m = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "t.send", "arguments": {"to": "bob"}, "_meta": {"progressToken": "p1"}}});
    post(addr, Some(&sid), &m).await
}

#[tokio::test]
async fn over_http_a_call_that_waits_streams_its_progress_and_one_that_does_not_is_plain_json() {
    let Some(py) = python() else { return };
    // Waits for its approval: progress, then the answer, in an event stream.
    let (gw, _a, _sink, s) = setup(&py, RuleAction::Ask, None, true, Duration::from_millis(400));
    let (head, body) = http_call(gw, &s).await;
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    let events: Vec<Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).expect("test"))
        .collect();
    let (last, progress) = events.split_last().expect("events");
    assert!(!progress.is_empty(), "{body}");
    for p in progress {
        assert_eq!(p["method"], "notifications/progress", "{p}");
        assert_eq!(p["params"]["progressToken"], "p1", "{p}");
    }
    assert_eq!(last["id"], 7, "{last}");
    assert_eq!(
        last["result"]["content"][0]["text"], "sent to bob",
        "{last}"
    );
    // Answered at once: one JSON body with its length.
    let (gw, _a, _sink, s) = setup(&py, RuleAction::Allow, None, true, Duration::ZERO);
    let (head, body) = http_call(gw, &s).await;
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(head.contains("content-length: "), "{head}");
    let v: Value = serde_json::from_str(&body).expect("test");
    assert_eq!(v["id"], 7, "{v}");
    assert_eq!(v["result"]["content"][0]["text"], "sent to bob", "{v}");
}

#[tokio::test]
async fn a_call_whose_audit_record_cannot_be_written_has_its_result_withheld() {
    let Some(py) = python() else { return };
    let (gw, _a, sink, s) = setup(&py, RuleAction::Allow, None, true, Duration::ZERO);
    let r = call(&gw, &s).await;
    assert_eq!(r["result"]["content"][0]["text"], "sent to bob", "{r}");
    sink.refuse_calls.store(true, Ordering::SeqCst);
    let r = call(&gw, &s).await;
    assert_eq!(
        r,
        json!({"jsonrpc": "2.0", "id": 1, "error": {
            "code": -32603,
            "message": "the call could not be audited; its result is withheld",
            "data": {"reason": "check_failed"}}})
    );
}
