//! The approvals hook on the egress path ([`EgressGuard`]): holds the
//! requests that need approval — an `ask` rule, the agent's autonomy, or
//! the lethal-trifecta guard — until an [`Approver`] answers, and marks the
//! run's taint as requests go out.

use crate::canonical::sha256_hex;
use airlock_hook::{Approved, Hook, HookBody, OnRequest, Outcome, Refusal, RequestCtx};
use airlock_policy::{EgressPolicy, EgressRequest, Scheme};
use airlock_types::{
    Action, ApprovalRequest, Approver, AuditEvent, Autonomy, Decision, EventResult, EventSink,
    Reason, RequestId, RunContext, Subject, TaintLabel, TaintSet, TaintTracker, Verdict,
};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A host pattern in `[approvals]`: a name exactly, or `*.suffix` (the
/// suffix's subdomains, not the suffix itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLabel(String);

impl HostLabel {
    /// A pattern (lower-cased).
    pub fn new(pattern: &str) -> Self {
        HostLabel(pattern.trim().to_ascii_lowercase())
    }

    fn matches(&self, host: &str) -> bool {
        match self.0.strip_prefix("*.") {
            Some(suffix) => host.len() > suffix.len() + 1 && host.ends_with(&format!(".{suffix}")),
            None => host == self.0,
        }
    }
}

/// What the guard does, as configured.
#[derive(Debug, Clone)]
pub struct EgressGuardConfig {
    /// The agent's default approval mode on egress (`ask_writes` and
    /// `ask_all` ask before every allowed write).
    pub autonomy: Autonomy,
    /// Hosts whose content is the run's private data (reading one sets
    /// `private_data`).
    pub private_hosts: Vec<HostLabel>,
    /// Hosts whose content is untrusted besides every public read
    /// (reading one sets `untrusted_content`).
    pub untrusted_hosts: Vec<HostLabel>,
    /// Whether a run with both labels asks before writes that no rule
    /// explicitly allows (default on).
    pub trifecta: bool,
    /// Largest request body held for hashing; a larger one is refused
    /// (`limit_exceeded`).
    pub max_body: usize,
    /// How long a request is held waiting for a decision.
    pub wait: Duration,
    /// The policy's version, bound into every proposal.
    pub policy_version: String,
}

/// The approvals hook. Runs after the LLM gateway's hook (which may
/// redact the body) and before the credentials hook, so the reviewer sees
/// the request as it will go out except for the credential handles, which
/// the credentials hook then swaps for their values.
#[derive(Debug)]
pub struct EgressGuard {
    approver: Arc<dyn Approver>,
    taint: Arc<dyn TaintTracker>,
    policy: Arc<EgressPolicy>,
    sink: Arc<dyn EventSink>,
    cfg: EgressGuardConfig,
    /// Approved requests in flight, for their `approval.result` record.
    running: Mutex<HashMap<RequestId, (String, String, RunContext)>>,
}

impl EgressGuard {
    /// A guard asking `approver`, keeping taint in `taint`, judging
    /// explicit write allows by `policy`, recording to `sink`.
    pub fn new(
        approver: Arc<dyn Approver>,
        taint: Arc<dyn TaintTracker>,
        policy: Arc<EgressPolicy>,
        sink: Arc<dyn EventSink>,
        cfg: EgressGuardConfig,
    ) -> Self {
        EgressGuard {
            approver,
            taint,
            policy,
            sink,
            cfg,
            running: Mutex::new(HashMap::new()),
        }
    }

    fn explicit_write(&self, ctx: &RequestCtx) -> bool {
        let Ok(host) = airlock_policy::parse_host(&ctx.host) else {
            return false;
        };
        let scheme = if ctx.scheme == http::uri::Scheme::HTTPS {
            Scheme::Https
        } else {
            Scheme::Http
        };
        self.policy.explicitly_allows_write(&EgressRequest {
            method: ctx.method.as_str(),
            scheme,
            host: &host,
            port: ctx.port,
            path: &ctx.path,
            addrs: &[],
            run: ctx.run.as_ref(),
            userinfo: false,
        })
    }

    /// The taint marks this request sets: a private host or a credential
    /// handle (a vault secret the credentials hook will inject) is private
    /// data; a public read or an untrusted host is untrusted content.
    fn marks(&self, ctx: &RequestCtx, req: &Request<HookBody>) -> Vec<(TaintLabel, String)> {
        let mut m = Vec::new();
        if self.cfg.private_hosts.iter().any(|h| h.matches(&ctx.host)) {
            m.push((TaintLabel::PrivateData, ctx.host.clone()));
        }
        if carries_handle(req) {
            m.push((TaintLabel::PrivateData, "vault".to_owned()));
        }
        if ctx.decision.reason == Reason::PublicRead
            || self
                .cfg
                .untrusted_hosts
                .iter()
                .any(|h| h.matches(&ctx.host))
        {
            m.push((TaintLabel::UntrustedContent, ctx.host.clone()));
        }
        m
    }

    async fn request(&self, ctx: &RequestCtx, req: Request<HookBody>) -> Outcome {
        let held = ctx.decision.outcome == airlock_types::Outcome::Ask;
        let Some(run) = ctx.context.clone() else {
            // No run to bind an approval to: an ask stays refused.
            if held {
                return refuse_plain(Decision::ask(Reason::ApprovalRequired), req.into_body());
            }
            return Outcome::Continue(req);
        };
        let write = !airlock_policy::is_read(ctx.method.as_str());
        let mut taint = TaintSet::default();
        for (label, source) in self.marks(ctx, &req) {
            match self.taint.mark(&run, label, &source) {
                Ok(t) => taint = t,
                Err(e) => {
                    tracing::error!(error = %e, "run taint unavailable; refusing");
                    return refuse_plain(Decision::deny(Reason::CheckFailed), req.into_body());
                }
            }
        }
        if write && self.cfg.trifecta && !taint.is_trifecta() {
            match self.taint.labels(&run) {
                Ok(t) => taint = t,
                Err(e) => {
                    tracing::error!(error = %e, "run taint unavailable; refusing");
                    return refuse_plain(Decision::deny(Reason::CheckFailed), req.into_body());
                }
            }
        }
        let trifecta =
            write && self.cfg.trifecta && taint.is_trifecta() && !self.explicit_write(ctx);
        let autonomy = write && matches!(self.cfg.autonomy, Autonomy::AskWrites | Autonomy::AskAll);
        if !(held || trifecta || autonomy) {
            return Outcome::Continue(req);
        }
        let reason = if trifecta {
            Reason::LethalTrifecta
        } else {
            Reason::ApprovalRequired
        };

        // Hold the body to hash it (bounded).
        let (mut parts, body) = req.into_parts();
        let bytes = match collect_limited(body, self.cfg.max_body).await {
            Ok(b) => b,
            Err(over) => {
                let r = if over {
                    Reason::LimitExceeded
                } else {
                    Reason::MalformedRequest
                };
                let ev = ctx
                    .stamp(self.refusal_event(ctx, Decision::deny(r), reason, taint, None))
                    .with_detail("max_body", self.cfg.max_body);
                return Outcome::Refuse(
                    Refusal::new(Decision::deny(r), empty())
                        .with_event(ev)
                        .with_response(self.answer(r, reason, taint, None)),
                );
            }
        };
        let pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| ctx.path.clone());
        let host = if ctx.host.contains(':') {
            format!("[{}]", ctx.host)
        } else {
            ctx.host.clone()
        };
        let subject = Subject::Egress {
            method: ctx.method.to_string(),
            url: format!("{}://{}:{}{}", ctx.scheme, host, ctx.port, pq),
            body_sha256: sha256_hex(&bytes),
        };
        let request = ApprovalRequest {
            context: run.clone(),
            subject,
            policy_version: self.cfg.policy_version.clone(),
            reason,
            taint,
        };
        match self.approver.ask(request, self.cfg.wait).await {
            Verdict::Approved { id, sha256 } => {
                if let Ok(mut r) = self.running.lock() {
                    r.insert(ctx.request.clone(), (id.clone(), sha256.clone(), run));
                }
                parts.extensions.insert(Approved { id, sha256 });
                let body = Full::new(bytes).map_err(|e| match e {}).boxed();
                Outcome::Continue(Request::from_parts(parts, body))
            }
            Verdict::Refused { id, reason: r } => {
                let d = Decision::deny(r);
                let ev = ctx.stamp(self.refusal_event(ctx, d, reason, taint, id.as_deref()));
                Outcome::Refuse(
                    Refusal::new(d, empty())
                        .with_event(ev)
                        .with_response(self.answer(r, reason, taint, id.as_deref())),
                )
            }
        }
    }

    fn refusal_event(
        &self,
        ctx: &RequestCtx,
        d: Decision,
        asked: Reason,
        taint: TaintSet,
        id: Option<&str>,
    ) -> AuditEvent {
        let res = format!("{}://{}:{}{}", ctx.scheme, ctx.host, ctx.port, ctx.path);
        let mut ev = AuditEvent::new(
            ctx.tenant.clone(),
            airlock_types::Actor::system(),
            Action::EgressHook,
            res,
            d.reason,
            EventResult::Denied,
        )
        .with_decision(d)
        .with_request(ctx.request.clone())
        .with_detail("asked_because", asked.code())
        .with_detail("taint", taint.labels());
        if let Some(id) = id {
            ev = ev.with_detail("approval", id);
        }
        ev
    }

    /// The 403 the agent gets: the reason, why it was asked, the run's
    /// labels and the approval's id (so an operator can find it).
    fn answer(
        &self,
        r: Reason,
        asked: Reason,
        taint: TaintSet,
        id: Option<&str>,
    ) -> Response<HookBody> {
        let message = match r {
            Reason::ApprovalDenied => "a reviewer denied this request",
            Reason::ApprovalExpired => "this request was not approved in time",
            Reason::ApprovalRequired => "this request needs approval, which has not been given",
            Reason::LimitExceeded => "the request body is too large to be held for approval",
            _ => "this request could not be put to approval",
        };
        let why = if asked == Reason::LethalTrifecta {
            " (asked because the run holds private data and has read untrusted content: lethal_trifecta)"
        } else {
            ""
        };
        let body = serde_json::json!({
            "error": "denied",
            "reason": r.code(),
            "message": format!("{message}{why}"),
            "asked_because": asked.code(),
            "taint": taint.labels(),
            "approval": id,
        });
        let mut resp = Response::new(full(format!("{body}\n")));
        *resp.status_mut() = StatusCode::FORBIDDEN;
        resp.headers_mut()
            .insert("x-airlock-reason", HeaderValue::from_static(r.code()));
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}

fn full(s: String) -> HookBody {
    Full::new(Bytes::from(s)).map_err(|e| match e {}).boxed()
}

fn empty() -> HookBody {
    full(String::new())
}

/// The whole body, at most `max` bytes. `Err(true)`: larger; `Err(false)`:
/// the body failed. Trailers are not kept.
async fn collect_limited(mut body: HookBody, max: usize) -> Result<Bytes, bool> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| false)?.into_data() else {
            continue;
        };
        if out.len() + data.len() > max {
            return Err(true);
        }
        out.extend_from_slice(&data);
    }
    Ok(Bytes::from(out))
}

fn refuse_plain(d: Decision, body: HookBody) -> Outcome {
    Outcome::Refuse(Refusal::new(d, body))
}

/// Whether the request carries a credential handle (`alh_…`) where the
/// credentials hook looks: the URI or a header.
fn carries_handle(req: &Request<HookBody>) -> bool {
    const H: &[u8] = b"alh_";
    let has = |b: &[u8]| b.windows(H.len()).any(|w| w == H);
    has(req.uri().to_string().as_bytes()) || req.headers().values().any(|v| has(v.as_bytes()))
}

impl Hook for EgressGuard {
    fn on_request<'a>(&'a self, ctx: &'a RequestCtx, req: Request<HookBody>) -> OnRequest<'a> {
        Box::pin(self.request(ctx, req))
    }

    fn on_response(
        &self,
        ctx: &RequestCtx,
        resp: Response<HookBody>,
    ) -> Result<Response<HookBody>, airlock_hook::ResponseRefusal> {
        let done = self
            .running
            .lock()
            .ok()
            .and_then(|mut r| r.remove(&ctx.request));
        if let Some((id, sha256, run)) = done {
            let ev = AuditEvent::new(
                run.tenant.clone(),
                run.actor.clone(),
                Action::ApprovalResult,
                id.as_str(),
                Reason::ApprovalGranted,
                EventResult::Success,
            )
            .with_context(&run)
            .with_request(ctx.request.clone())
            .with_detail("sha256", sha256.as_str())
            .with_detail("status", resp.status().as_u16());
            if let Err(e) = self.sink.emit(ev) {
                tracing::error!(error = %e, "audit refused approval.result");
                return Err(airlock_hook::ResponseRefusal {
                    status: StatusCode::BAD_GATEWAY,
                    reason: Reason::AuditUnavailable,
                    detail: "approval.result could not be recorded".into(),
                });
            }
        }
        Ok(resp)
    }
}
