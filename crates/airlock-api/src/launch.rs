//! Starting a run on this node for the API: prepare it with the agent's
//! policy, start it on its own thread, record its end.

use crate::runs::StartError;
use crate::state::AppState;
use airlock_policy::EgressPolicy;
use airlock_runtime::{EndedBy, Run, RunIo, RunSpec};
use airlock_sandbox::Signal;
use airlock_store::{RunRow, RunState};
use airlock_types::{Actor, ActorKind, AgentId, RunContext, RunId, TenantId, Timestamp};
use std::sync::Arc;

/// What to start, for whom.
pub(crate) struct Launch<'a> {
    pub tenant: TenantId,
    pub agent: Option<AgentId>,
    pub token_id: &'a str,
    pub argv: Vec<String>,
    /// Vault secrets granted as handles.
    pub secrets: Vec<String>,
    pub policy: EgressPolicy,
}

/// Prepare and start a run on a thread; return once it started (or failed to).
pub(crate) fn start(state: &Arc<AppState>, l: Launch<'_>) -> Result<RunId, StartError> {
    let Launch {
        tenant,
        agent,
        token_id,
        argv,
        secrets,
        policy,
    } = l;
    let run_id = airlock_runtime::new_run_id();
    let mut context = RunContext::new(
        tenant.clone(),
        run_id.clone(),
        Actor::new(ActorKind::Token, token_id),
    );
    context.agent = agent.clone();
    let d = &state.runs.defaults;
    let workspace = d.workspace_root.join(run_id.as_str());
    std::fs::create_dir_all(&workspace)
        .map_err(|e| StartError(format!("cannot create the run's workspace: {e}")))?;
    let spec = RunSpec {
        context,
        argv: argv.clone(),
        workspace: Some(workspace.clone()),
        cwd: None,
        policy: Ok(policy),
        policy_file: None,
        protected: d.protected.clone(),
        env: Vec::new(),
        secrets,
        timeout: None,
        idle_timeout: None,
        interactive: false,
        allow_weaker: false,
        proxy: d.proxy.clone(),
        sandbox: d.sandbox.clone(),
        audit: d.audit.clone(),
        hooks: Vec::new(),
        gateway: d.gateway.clone(),
        approvals: d.approvals.clone(),
        init_exe: d.init_exe.clone(),
    };
    let row = RunRow {
        id: run_id.as_str().to_owned(),
        agent: agent.map(|a| a.as_str().to_owned()),
        command: argv,
        node: state.node.clone(),
        state: RunState::Running,
        exit_code: None,
        started_at: Timestamp::now().as_micros(),
        ended_at: None,
    };
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let me = state.clone();
    let home = state.home.clone();
    let id = run_id.as_str().to_owned();
    std::thread::Builder::new()
        .name("api-run".into())
        .spawn(move || {
            let no_prompt =
                || Err("the vault passphrase cannot be asked for by the API server".to_owned());
            let started = Run::prepare(&home, spec, &no_prompt).and_then(|p| p.start());
            let started = match started {
                Ok(s) => s,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.chain()));
                    let _ = std::fs::remove_dir(&workspace);
                    return;
                }
            };
            let stored = me
                .control()
                .map_err(|e| e.to_string())
                .and_then(|mut s| s.run_insert(&tenant, &row).map_err(|e| e.to_string()));
            if let Ok(mut live) = me.runs.live.lock() {
                live.insert(id.clone(), (started.signals(), false));
            }
            if let Err(e) = &stored {
                // Not recorded in the control store: stop it rather than
                // run something the API cannot show or stop.
                let _ = started.signals().try_send(Signal::SIGKILL);
                let _ = ready_tx.send(Err(e.clone()));
            } else {
                let _ = ready_tx.send(Ok(()));
            }
            let ended = started.wait(RunIo {
                stdout: Box::new(tokio::io::sink()),
                stderr: Box::new(tokio::io::sink()),
                terminal_out: false,
                terminal_err: false,
                forward_process_signals: false,
                notice: Arc::new(|m: &str| tracing::info!(notice = m, "run notice")),
            });
            let stopped = me
                .runs
                .live
                .lock()
                .ok()
                .and_then(|mut m| m.remove(&id))
                .is_some_and(|(_, stopping)| stopping);
            let (state, code) = match &ended {
                Ok(e) if matches!(e.ended_by, EndedBy::Exit) && !stopped => {
                    (RunState::Exited, Some(i32::from(e.exit_code)))
                }
                Ok(e) => (RunState::Stopped, Some(i32::from(e.exit_code))),
                Err(e) => {
                    tracing::error!(run = %id, error = %e.chain(), "run failed");
                    (RunState::Failed, None)
                }
            };
            if stored.is_ok()
                && let Ok(mut s) = me.control()
            {
                let now = Timestamp::now().as_micros();
                if let Err(e) = s.run_finish(&tenant, &id, state, code, now) {
                    tracing::error!(run = %id, error = %e, "cannot record the run's end");
                }
            }
            let _ = std::fs::remove_dir_all(&workspace);
        })
        .map_err(|e| StartError(format!("cannot start the run's thread: {e}")))?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(run_id),
        Ok(Err(e)) => Err(StartError(e)),
        Err(_) => Err(StartError("the run's thread ended early".into())),
    }
}
