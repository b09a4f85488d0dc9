//! The hook on Airlock's intercepted HTTP path.
//!
//! **Boundary.** A [`Hook`] sees every request the proxy can read — each
//! plain (absolute-form) request and each request inside an intercepted
//! tunnel — *after* the egress policy allowed it and *before* anything is
//! dialled, and the upstream's response on its way back. It may rewrite the
//! request (headers, query, body), refuse it with its own answer
//! ([`Refusal`]), and rewrite the response (headers, streamed body) or refuse
//! it ([`ResponseRefusal`]). Credential injection and response scrubbing
//! (`airlock-proxy`) are the first hook; the LLM and MCP gateways are next.
//! This crate is vocabulary only: it depends on `http`, `bytes`,
//! `http-body-util` and `airlock-types`, so the proxy and a gateway can both
//! see it without depending on each other.
//!
//! **Order.** Hooks run in a fixed order: on the request in the order they
//! were registered, on the response in reverse order (the first hook sees
//! the request first and the response last). Only the hooks whose
//! `on_request` continued see the response. The proxy's own answers
//! (denials, upstream failures) and a hook's refusal go through no hook.
//!
//! **What it trusts.** Hooks run inside the proxy's trust zone: they see
//! the request as it will leave, and the proxy trusts them to stream
//! bodies (hold back only what they must) and to fail closed (a body error
//! ends the response).
//!
//! **What it does not guarantee.** A hook cannot change where a request
//! goes: the destination (scheme, host, port, method, canonical path) was
//! decided by the policy and is given in [`RequestCtx`]; the proxy refuses
//! (`check_failed`) a request whose method or path a hook changed, ignores
//! the scheme and authority of the returned URI, and sets `Host` and the
//! HTTP version itself. Upgraded streams (WebSocket frames after a `101`)
//! and blind tunnels are not seen by hooks; a `101`'s headers are.
#![forbid(unsafe_code)]

use airlock_types::{AuditEvent, Decision, Reason, RequestId, RunContext, RunId, TenantId};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use std::future::Future;
use std::pin::Pin;

/// Any error travelling in a body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streamed request or response body, boxed. Hooks that transform a body
/// wrap it (see `http_body_util::BodyExt::boxed`); a body error ends the
/// exchange.
pub type HookBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// What [`Hook::on_request`] returns: a future, boxed so the trait stays
/// object-safe (`Arc<dyn Hook>`) without an extra dependency.
pub type OnRequest<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// How the request reached the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Via {
    /// An absolute-form request (`GET http://host/path`).
    Plain,
    /// A request inside an intercepted (TLS-terminated) `CONNECT` tunnel.
    InterceptedTunnel,
}

/// Where a request goes and whose it is: facts the proxy decided on, for
/// hooks to read. The request handed to the hook carries the same method
/// and path; the destination cannot be changed by a hook.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RequestCtx {
    /// The tenant the run belongs to.
    pub tenant: TenantId,
    /// The run, when the proxy serves one.
    pub run: Option<RunId>,
    /// Whose the request is — tenant, agent, run and who started the run —
    /// when the proxy serves a run (`tenant` and `run` above are the same
    /// as its own). Hooks stamp it on their audit events
    /// ([`AuditEvent::with_context`]).
    pub context: Option<RunContext>,
    /// The proxy's id for this request (on every audit record about it).
    pub request: RequestId,
    /// `http` or `https`: the scheme the request goes out with.
    pub scheme: http::uri::Scheme,
    /// The host, as decided (a domain name, or an IP address's text).
    pub host: String,
    /// The port the connection goes to.
    pub port: u16,
    /// The method.
    pub method: Method,
    /// The canonical path (the one the policy judged and the upstream gets).
    pub path: String,
    /// How the request arrived.
    pub via: Via,
    /// The policy's decision: an allow (its reason says why: a rule, or
    /// `public_read`), or an `ask` the proxy let through pending approval
    /// (only when its policy has an approver,
    /// `EgressPolicy::with_approvals`): then a hook must consume an
    /// approval for exactly this request and mark it [`Approved`], or the
    /// proxy refuses it (`approval_required`).
    pub decision: Decision,
}

/// Put in a request's extensions by the hook that had exactly this request
/// approved (and consumed the approval): the proxy sends an `ask`ed request
/// only when it carries this mark. Hooks after it must keep the request's
/// extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approved {
    /// The approval's id.
    pub id: String,
    /// The SHA-256 (hex) the reviewer approved.
    pub sha256: String,
}

impl RequestCtx {
    /// The context of one request. Built by the proxy (and by tests).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        tenant: TenantId,
        run: Option<RunId>,
        request: RequestId,
        scheme: http::uri::Scheme,
        host: impl Into<String>,
        port: u16,
        method: Method,
        path: impl Into<String>,
        via: Via,
    ) -> Self {
        RequestCtx {
            tenant,
            run,
            context: None,
            request,
            scheme,
            host: host.into(),
            port,
            method,
            path: path.into(),
            via,
            decision: Decision::allow(Reason::RuleAllow),
        }
    }

    /// Set the policy's decision (see [`RequestCtx::decision`]).
    pub fn with_decision(mut self, decision: Decision) -> Self {
        self.decision = decision;
        self
    }
}

impl RequestCtx {
    /// Attach the run's context (its tenant and run replace `tenant` and
    /// `run`, so the two never disagree).
    pub fn with_context(mut self, ctx: RunContext) -> Self {
        self.tenant = ctx.tenant.clone();
        self.run = Some(ctx.run.clone());
        self.context = Some(ctx);
        self
    }

    /// Stamp this request's run context, when there is one, on `event`.
    pub fn stamp(&self, event: AuditEvent) -> AuditEvent {
        match &self.context {
            Some(c) => event.with_context(c),
            None => event,
        }
    }
}

/// A request a hook refuses: nothing goes upstream.
#[derive(Debug)]
pub struct Refusal {
    /// The decision (a deny with its reason): answered by the proxy's
    /// standard denial (403, `X-Airlock-Reason`) unless `response` is set.
    pub decision: Decision,
    /// The audit record of the refusal, recorded by the proxy before it
    /// answers. If the sink refuses it, the client gets the standard
    /// `audit_unavailable` denial instead. `None` only when the hook has
    /// already recorded what there was to record (or recording is what
    /// failed).
    pub event: Option<AuditEvent>,
    /// The hook's own answer, in the caller's format (its status, headers,
    /// body). `None`: the proxy's standard denial for `decision`.
    pub response: Option<Response<HookBody>>,
    /// The request's body, handed back: the proxy reads and discards it
    /// (bounded) so that the client receives the answer before the stream
    /// is reset.
    pub request_body: HookBody,
}

impl Refusal {
    /// Refuse with `decision`, answered by the proxy's standard denial.
    /// `request_body` is the body of the request being refused.
    pub fn new(decision: Decision, request_body: HookBody) -> Self {
        Refusal {
            decision,
            event: None,
            response: None,
            request_body,
        }
    }

    /// Record `event` before answering.
    pub fn with_event(mut self, event: AuditEvent) -> Self {
        self.event = Some(event);
        self
    }

    /// Answer with `response` (the hook's own format) instead of the
    /// standard denial.
    pub fn with_response(mut self, response: Response<HookBody>) -> Self {
        self.response = Some(response);
        self
    }
}

/// What a hook made of a request.
#[derive(Debug)]
pub enum Outcome {
    /// Send this request on (to the next hook, then upstream).
    Continue(Request<HookBody>),
    /// Answer the client instead; no later hook runs, nothing goes upstream.
    Refuse(Refusal),
}

/// A response a hook refuses to pass: the client gets `status` with the
/// reason code, and the proxy records a failure with `detail` (never a
/// secret value).
#[derive(Debug, Clone)]
pub struct ResponseRefusal {
    /// The status the client gets (e.g. 502).
    pub status: StatusCode,
    /// The stable reason code.
    pub reason: Reason,
    /// What was wrong, for the audit record.
    pub detail: String,
}

/// Logic on the intercepted HTTP path. Object-safe: the proxy holds
/// `Arc<dyn Hook>`s.
pub trait Hook: Send + Sync + std::fmt::Debug {
    /// Look at, rewrite or refuse one request. `req` has the origin-form
    /// URI (canonical path and query), the headers without hop-by-hop
    /// fields, and the streamed body. Async: a hook may wait (a budget
    /// store, an approval).
    fn on_request<'a>(&'a self, ctx: &'a RequestCtx, req: Request<HookBody>) -> OnRequest<'a>;

    /// Rewrite (or refuse) the upstream's response. Synchronous: work that
    /// must wait belongs in the returned body, which is polled as the client
    /// reads it. For a `101 Switching Protocols` only the headers count
    /// (the body is empty and the frames after it are not seen). The
    /// default passes the response through.
    fn on_response(
        &self,
        ctx: &RequestCtx,
        resp: Response<HookBody>,
    ) -> Result<Response<HookBody>, ResponseRefusal> {
        let _ = ctx;
        Ok(resp)
    }
}
