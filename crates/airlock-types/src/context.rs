//! Whose a run is: the context every connection, request and audit event of
//! a run carries.

use crate::{Actor, AgentId, RunId, TenantId};

/// The tenant, agent and run a piece of work belongs to, and who started
/// the run. Built by the front end that starts a run (the CLI, the control
/// plane), handed to the proxy with the run, and stamped on every audit
/// event the run produces ([`crate::AuditEvent::with_context`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RunContext {
    /// The tenant whose run it is (and whose audit log records it).
    pub tenant: TenantId,
    /// The agent the run is for, when the front end names one. The
    /// single-user CLI names none, so its records stay as they were.
    pub agent: Option<AgentId>,
    /// The run.
    pub run: RunId,
    /// Who started the run (an operator at the command line, an API token).
    pub actor: Actor,
}

impl RunContext {
    /// A context for `run` of `tenant`, started by `actor`, with no agent.
    pub fn new(tenant: TenantId, run: RunId, actor: Actor) -> Self {
        RunContext {
            tenant,
            agent: None,
            run,
            actor,
        }
    }

    /// Name the agent.
    pub fn with_agent(mut self, agent: AgentId) -> Self {
        self.agent = Some(agent);
        self
    }
}
