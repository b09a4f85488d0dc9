//! Two runs at once in one process, through `airlock-runtime`, for two
//! tenants and two agents: each run gets its own proxy and sandbox, makes a
//! real request to a local upstream through its proxy (`curl` inside the
//! sandbox), and every audit event it produces lands in its own tenant's
//! log stamped with its tenant, agent and run — none in the other's.

use airlock_runtime::{AuditSettings, EndedBy, Home, Run, RunIo, RunSpec, SandboxSettings};
use airlock_store::SqliteStore;
use airlock_testkit::Upstream;
use airlock_types::{Actor, ActorKind, AgentId, RunContext, TenantId};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Barrier, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_airlock");
const UPSTREAM_IP: &str = "127.0.0.2";

/// An `AsyncWrite` into a shared buffer: one run's captured output.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn audit_settings() -> AuditSettings {
    AuditSettings {
        checkpoint_every: 1000,
        checkpoint_interval: Duration::from_secs(10),
        store: Default::default(),
    }
}

/// The events of `tenant`'s log, in order.
fn events(home: &Home, tenant: &TenantId) -> Vec<serde_json::Value> {
    let store = SqliteStore::open_read_only(&home.db_path()).expect("db");
    let mut out = Vec::new();
    airlock_audit::export(
        &store,
        tenant,
        0,
        airlock_audit::ExportFormat::RecordJsonl,
        &mut out,
    )
    .expect("export");
    String::from_utf8(out)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["event"].clone())
        .collect()
}

struct One {
    ctx: RunContext,
    path: &'static str,
    ws: PathBuf,
}

fn spec(one: &One, policy: &str, cwd: &Path) -> RunSpec {
    RunSpec {
        context: one.ctx.clone(),
        argv: Vec::new(),
        workspace: Some(one.ws.clone()),
        cwd: Some(cwd.to_owned()),
        policy: airlock_policy::parse_document(policy, "policy.toml")
            .map(|d| d.policy)
            .map_err(|e| e.to_string()),
        policy_file: None,
        protected: Vec::new(),
        env: Vec::new(),
        secrets: Vec::new(),
        timeout: Some(Duration::from_secs(60)),
        idle_timeout: None,
        interactive: false,
        allow_weaker: false,
        proxy: airlock_proxy::ProxyConfig::default(),
        sandbox: SandboxSettings::default(),
        audit: audit_settings(),
        hooks: Vec::new(),
        approvals: Default::default(),
        gateway: None,
        init_exe: PathBuf::from(BIN),
    }
}

#[test]
fn two_concurrent_runs_for_two_tenants_audit_under_their_own_tenant_agent_and_run() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let env: HashMap<String, String> = [("PATH", "/usr/local/bin:/usr/bin:/bin")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let home = Home {
        config_path: data.join("airlock.toml"),
        data_dir: data,
        config_explicit: false,
        production: false,
        env,
    };
    let acme = TenantId::new("acme").expect("id");
    let globex = TenantId::new("globex").expect("id");
    airlock_runtime::init::initialize(&home, &acme, "", || Ok(audit_settings())).expect("init");

    let up = Upstream::http(UPSTREAM_IP.parse::<IpAddr>().expect("ip"));
    let policy = format!(
        "mode = \"deny_all\"\nallow_private = [\"{UPSTREAM_IP}/32\"]\n\n\
         [[rules]]\nhosts = [\"{UPSTREAM_IP}\"]\nports = [{}]\naction = \"allow\"\n",
        up.port()
    );
    let operator = Actor::new(ActorKind::Token, "api-token-1");
    let runs = [
        One {
            ctx: RunContext::new(
                acme.clone(),
                airlock_runtime::new_run_id(),
                operator.clone(),
            )
            .with_agent(AgentId::new("coder").expect("id")),
            path: "/from-acme",
            ws: dir.path().join("ws-acme"),
        },
        One {
            ctx: RunContext::new(globex.clone(), airlock_runtime::new_run_id(), operator)
                .with_agent(AgentId::new("reviewer").expect("id")),
            path: "/from-globex",
            ws: dir.path().join("ws-globex"),
        },
    ];
    assert_ne!(runs[0].ctx.run, runs[1].ctx.run, "run ids are unique");

    // Both runs are prepared (audit logs open, proxies built, plans made),
    // then start together on their own threads; each stays a second after
    // its request, so they overlap.
    let prompt = || Err("no terminal".to_owned());
    let prepared: Vec<_> = runs
        .iter()
        .map(|one| {
            std::fs::create_dir_all(&one.ws).expect("ws");
            let mut sp = spec(one, &policy, dir.path());
            sp.argv = vec![
                "/bin/sh".into(),
                "-c".into(),
                format!(
                    "curl -sS --max-time 10 'http://{UPSTREAM_IP}:{}{}'; echo; sleep 1",
                    up.port(),
                    one.path
                ),
            ];
            Run::prepare(&home, sp, &prompt).expect("prepare")
        })
        .collect();
    let barrier = Barrier::new(2);
    let outputs: Vec<(Capture, airlock_runtime::Ended)> = std::thread::scope(|s| {
        let handles: Vec<_> = prepared
            .into_iter()
            .map(|p| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let started = p.start().expect("start");
                    let out = Capture::default();
                    let ended = started
                        .wait(RunIo {
                            stdout: Box::new(out.clone()),
                            stderr: Box::new(out.clone()),
                            terminal_out: false,
                            terminal_err: false,
                            forward_process_signals: false,
                            notice: Arc::new(|_: &str| {}),
                        })
                        .expect("run");
                    (out, ended)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("run thread"))
            .collect()
    });

    for (one, (out, ended)) in runs.iter().zip(&outputs) {
        assert_eq!(ended.ended_by, EndedBy::Exit, "{}", out.text());
        assert_eq!(ended.exit_code, 0, "{}", out.text());
        assert_eq!(ended.run, one.ctx.run);
        let v: serde_json::Value = out
            .text()
            .lines()
            .find_map(|l| serde_json::from_str(l).ok())
            .unwrap_or_else(|| panic!("no upstream answer in {:?}", out.text()));
        assert_eq!(v["path"], one.path, "{}", out.text());
    }
    assert_eq!(up.hits(), 2);

    for (i, one) in runs.iter().enumerate() {
        let other = &runs[1 - i];
        let evs = events(&home, &one.ctx.tenant);
        let mine: Vec<&serde_json::Value> = evs
            .iter()
            .filter(|e| e["run_id"] == one.ctx.run.as_str())
            .collect();
        // Nothing of the other run is in this tenant's log.
        assert!(
            evs.iter()
                .all(|e| e["run_id"] != other.ctx.run.as_str()
                    && e["tenant"] == one.ctx.tenant.as_str()),
            "{evs:#?}"
        );
        let actions: Vec<&str> = mine
            .iter()
            .map(|e| e["action"].as_str().expect("action"))
            .collect();
        for want in [
            "sandbox.attestation",
            "run.start",
            "egress.request",
            "run.end",
        ] {
            assert!(actions.contains(&want), "{want} missing in {actions:?}");
        }
        // Every event of the run carries the run's tenant, agent and run.
        for e in &mine {
            assert_eq!(e["tenant"], one.ctx.tenant.as_str(), "{e:#}");
            assert_eq!(
                e["agent_id"],
                one.ctx.agent.as_ref().expect("agent").as_str(),
                "{e:#}"
            );
            assert_eq!(e["run_id"], one.ctx.run.as_str(), "{e:#}");
        }
        // Its request is the one that reached the upstream, allowed.
        let req = mine
            .iter()
            .find(|e| e["action"] == "egress.request")
            .expect("egress.request");
        assert_eq!(req["result"], "success", "{req:#}");
        assert_eq!(
            req["resource"],
            format!("http://{UPSTREAM_IP}:{}{}", up.port(), one.path),
            "{req:#}"
        );
        // Run events are the starter's, traffic is the agent's.
        let start = mine
            .iter()
            .find(|e| e["action"] == "run.start")
            .expect("start");
        assert_eq!(start["actor"]["kind"], "token", "{start:#}");
        assert_eq!(req["actor"]["kind"], "agent", "{req:#}");
        // Each tenant's log still verifies on its own.
        let store = SqliteStore::open_read_only(&home.db_path()).expect("db");
        let key = airlock_audit::load_public_key(&home.audit_pubkey_path()).expect("pubkey");
        let report = airlock_audit::verify_log(
            &store,
            &one.ctx.tenant,
            &key,
            &home.checkpoint_path_for(&one.ctx.tenant),
        )
        .expect("verify");
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }
}
