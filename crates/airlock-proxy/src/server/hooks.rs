//! The hook chain around one forwarded request: request hooks in order,
//! response hooks in reverse order (see `airlock_hook`). A refusal is
//! recorded before it is answered; a sink that refuses the record turns it
//! into `audit_unavailable`.

use super::Inner;
use super::forward::refuse_with_body;
use crate::body::ProxyBody;
use crate::respond;
use airlock_hook::{Outcome, Refusal, RequestCtx};
use airlock_types::{Decision, Reason, RequestId};
use http::{Request, Response};

impl Inner {
    /// Run every request hook over `req`, in order. `Err`: the answer to
    /// give the client instead (a refusal, already recorded). A hook that
    /// changed the method or path the policy judged is refused
    /// (`check_failed`): hooks cannot redirect a request.
    pub(super) async fn request_hooks(
        &self,
        ctx: &RequestCtx,
        res: &str,
        mut req: Request<ProxyBody>,
    ) -> Result<Request<ProxyBody>, Response<ProxyBody>> {
        for (i, hook) in self.hooks.iter().enumerate() {
            match hook.on_request(ctx, req).await {
                Outcome::Continue(r) if r.method() == ctx.method && r.uri().path() == ctx.path => {
                    req = r;
                }
                Outcome::Continue(r) => {
                    let detail = format!("hook {i} changed the request's method or path");
                    self.record_failure(
                        airlock_types::Action::EgressHook,
                        res,
                        Reason::CheckFailed,
                        &ctx.request,
                        detail,
                    );
                    let d = Decision::deny(Reason::CheckFailed);
                    return Err(refuse_with_body(r.into_body(), respond::denied(d)));
                }
                Outcome::Refuse(refusal) => return Err(self.hook_refused(refusal)),
            }
        }
        Ok(req)
    }

    /// A held (`ask`) request that no hook marked approved: refused
    /// (`approval_required`) and recorded, fail closed.
    pub(super) fn unapproved(
        &self,
        res: &str,
        rid: &RequestId,
        body: ProxyBody,
    ) -> Response<ProxyBody> {
        self.record_failure(
            airlock_types::Action::EgressHook,
            res,
            Reason::ApprovalRequired,
            rid,
            "no hook had the held request approved".to_owned(),
        );
        refuse_with_body(
            body,
            respond::denied(Decision::ask(Reason::ApprovalRequired)),
        )
    }

    /// Record a hook's refusal, then answer it.
    fn hook_refused(&self, r: Refusal) -> Response<ProxyBody> {
        let recorded = match r.event {
            None => true,
            Some(ev) => match self.sink.emit(self.stamp(ev)) {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!(error = %e, "audit sink refused a hook's refusal; denying");
                    false
                }
            },
        };
        let resp = match (recorded, r.response) {
            (true, Some(resp)) => resp,
            (true, None) => respond::denied(r.decision),
            (false, _) => respond::denied(Decision::deny(Reason::AuditUnavailable)),
        };
        refuse_with_body(r.request_body, resp)
    }

    /// Run every response hook over `resp`, in reverse order. `Err`: the
    /// answer to give instead (the refusal is recorded as an
    /// `egress.response` failure).
    #[expect(
        clippy::result_large_err,
        reason = "both sides are the response to send, moved once per request"
    )]
    pub(super) fn response_hooks(
        &self,
        ctx: &RequestCtx,
        res: &str,
        mut resp: Response<ProxyBody>,
    ) -> Result<Response<ProxyBody>, Response<ProxyBody>> {
        for hook in self.hooks.iter().rev() {
            match hook.on_response(ctx, resp) {
                Ok(r) => resp = r,
                Err(refusal) => {
                    let (reason, rid) = (refusal.reason, &ctx.request);
                    self.record_failure(
                        airlock_types::Action::EgressResponse,
                        res,
                        reason,
                        rid,
                        refusal.detail,
                    );
                    return Err(respond::error(refusal.status, reason));
                }
            }
        }
        Ok(resp)
    }
}
