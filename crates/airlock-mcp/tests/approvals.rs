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
    Actor, ActorKind, AgentId, ApprovalRequest, Approver, AskFuture, Autonomy, MemorySink, Reason,
    RunContext, RunId, Subject, TenantId, Verdict,
};
use serde_json::{Value, json};
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

/// Approves (or refuses) and remembers what it was asked.
#[derive(Debug)]
struct TestApprover {
    approve: bool,
    asked: Mutex<Vec<ApprovalRequest>>,
}

impl Approver for TestApprover {
    fn ask(&self, request: ApprovalRequest, _wait: Duration) -> AskFuture<'_> {
        self.asked.lock().expect("test").push(request);
        let approve = self.approve;
        Box::pin(async move {
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
) -> (Arc<Gateway>, Arc<TestApprover>, Arc<MemorySink>, Session) {
    let mut cfg = McpConfig::default();
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
        asked: Mutex::new(Vec::new()),
    });
    let sink = Arc::new(MemorySink::new());
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
    let (gw, approver, sink, s) = setup(&py, RuleAction::Ask, None, true);
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
    let (gw, _a, sink, s) = setup(&py, RuleAction::Ask, None, false);
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
    let (gw, approver, _sink, s) = setup(&py, RuleAction::Allow, Some(Autonomy::AskWrites), false);
    let r = call(&gw, &s).await;
    assert_eq!(r["error"]["data"]["reason"], "approval_denied", "{r}");
    assert_eq!(approver.asked.lock().expect("test").len(), 1);
}
