//! Typed audit events.

use crate::{Action, AgentId, Decision, Outcome, Reason, RequestId, RunContext, RunId, TenantId};
use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current time. (Reading the clock is the one exception to "no I/O".)
    pub fn now() -> Self {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
    }
    /// Microseconds since the epoch.
    pub fn as_micros(self) -> i64 {
        self.0
    }
}

/// Who did something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// A person at the command line.
    Operator,
    /// The sandboxed agent (its traffic or its process).
    Agent,
    /// Airlock itself (start-up, shutdown, checkpoints).
    System,
    /// A control-plane API token.
    Token,
}

/// The actor of an event: its kind and an identifier (a user name, a run id,
/// a token id). Never a secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Actor {
    /// What kind of actor.
    pub kind: ActorKind,
    /// Which one.
    pub id: String,
}

impl Actor {
    /// Build an actor.
    pub fn new(kind: ActorKind, id: impl Into<String>) -> Self {
        Actor {
            kind,
            id: id.into(),
        }
    }
    /// Airlock itself.
    pub fn system() -> Self {
        Actor::new(ActorKind::System, "airlock")
    }
}

/// Whether the action was carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventResult {
    /// It was carried out and succeeded.
    Success,
    /// It was refused by a decision.
    Denied,
    /// It was attempted and failed.
    Failure,
}

/// One audit event. Carries ids, names and reason codes — never secret values.
/// Free-form detail goes in `details`, which producers must fill only with
/// non-secret, already-scrubbed data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When it happened.
    pub time: Timestamp,
    /// Which tenant it belongs to.
    pub tenant: TenantId,
    /// Who did it.
    pub actor: Actor,
    /// The agent it belongs to, when the front end that started the run
    /// named one (the single-user CLI names none; then the field is absent
    /// from the record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
    /// The run it belongs to, if any.
    pub run_id: Option<RunId>,
    /// The request it belongs to, if any.
    pub request_id: Option<RequestId>,
    /// What was done (serialized as its dotted name, `egress.request`).
    pub action: Action,
    /// What it was done to (a URL without credentials, a path, a secret's name).
    pub resource: String,
    /// The decision's outcome, when the event is a decision.
    pub decision: Option<Outcome>,
    /// The stable reason code.
    pub reason: Reason,
    /// Whether it was carried out.
    pub result: EventResult,
    /// Structured, non-secret detail.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl AuditEvent {
    /// A new event stamped now, with no decision, run, request or details.
    pub fn new(
        tenant: TenantId,
        actor: Actor,
        action: Action,
        resource: impl Into<String>,
        reason: Reason,
        result: EventResult,
    ) -> Self {
        AuditEvent {
            time: Timestamp::now(),
            tenant,
            actor,
            agent_id: None,
            run_id: None,
            request_id: None,
            action,
            resource: resource.into(),
            decision: None,
            reason,
            result,
            details: serde_json::Map::new(),
        }
    }

    /// Attach a decision (sets outcome, reason and result together).
    pub fn with_decision(mut self, d: Decision) -> Self {
        self.decision = Some(d.outcome);
        self.reason = d.reason;
        self.result = if d.is_allow() {
            EventResult::Success
        } else {
            EventResult::Denied
        };
        self
    }

    /// Attach a run id.
    pub fn with_run(mut self, run: RunId) -> Self {
        self.run_id = Some(run);
        self
    }

    /// Attach an agent id.
    pub fn with_agent(mut self, agent: AgentId) -> Self {
        self.agent_id = Some(agent);
        self
    }

    /// Stamp the run's tenant, agent and run id (the actor stays the one
    /// given at creation: the operator, the agent's traffic, Airlock).
    pub fn with_context(mut self, ctx: &RunContext) -> Self {
        self.tenant = ctx.tenant.clone();
        self.agent_id = ctx.agent.clone();
        self.run_id = Some(ctx.run.clone());
        self
    }

    /// Attach a request id.
    pub fn with_request(mut self, req: RequestId) -> Self {
        self.request_id = Some(req);
        self
    }

    /// Attach one detail field.
    pub fn with_detail(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }
}
