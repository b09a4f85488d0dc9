//! The gateway on the intercepted path of `airlock run`: requests to a
//! configured provider host go through the same engine before the
//! credential hook injects the real key.

use crate::engine::{Call, Caller, Gateway, Prepared};
use airlock_hook::{Hook, HookBody, OnRequest, Outcome, Refusal, RequestCtx, ResponseRefusal};
use airlock_types::{Decision, Reason};
use http::{HeaderValue, Request, Response};
use std::collections::HashMap;
use std::sync::Mutex;

/// See the module docs. Register it *before* the credential hook.
#[derive(Debug)]
pub struct GatewayHook {
    gw: Gateway,
    caller: Caller,
    pending: Mutex<HashMap<String, Box<Call>>>,
}

impl GatewayHook {
    /// A hook for one run: `caller` names the agent, team and run charged.
    pub fn new(gw: Gateway, caller: Caller) -> Self {
        GatewayHook {
            gw,
            caller,
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// The provider hosts this hook intercepts.
    pub fn hosts(&self) -> Vec<String> {
        self.gw
            .config()
            .providers
            .iter()
            .filter_map(|p| p.host())
            .collect()
    }
}

impl Hook for GatewayHook {
    fn on_request<'a>(&'a self, ctx: &'a RequestCtx, req: Request<HookBody>) -> OnRequest<'a> {
        Box::pin(async move {
            let host = ctx.host.to_ascii_lowercase();
            let Some(provider) = self
                .gw
                .config()
                .providers
                .iter()
                .find(|p| p.host().as_deref() == Some(host.as_str()))
                .cloned()
            else {
                return Outcome::Continue(req);
            };
            let mut caller = self.caller.clone();
            if let Some(r) = &ctx.run {
                caller.run = Some(r.as_str().to_string());
            }
            let (mut parts, body) = req.into_parts();
            match self
                .gw
                .prepare(&provider, &caller, Some(&ctx.request), &parts, body)
                .await
            {
                Prepared::Answer(resp) => {
                    let reason = resp
                        .headers()
                        .get("x-airlock-reason")
                        .and_then(|v| v.to_str().ok())
                        .and_then(Reason::from_code);
                    let decision = match reason {
                        Some(r) => Decision::deny(r),
                        // A replay: the stored answer, nothing goes upstream.
                        None => Decision::allow(Reason::GatewayCall),
                    };
                    Outcome::Refuse(
                        Refusal::new(decision, crate::engine::full(bytes::Bytes::new()))
                            .with_response(resp),
                    )
                }
                Prepared::Go { call, body } => {
                    let h = &mut parts.headers;
                    h.remove(http::header::CONTENT_LENGTH);
                    h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
                    h.insert(
                        http::header::ACCEPT_ENCODING,
                        HeaderValue::from_static("identity"),
                    );
                    if let Ok(v) = HeaderValue::from_str(call.idem_key())
                        && !call.idem_key().is_empty()
                    {
                        h.insert("idempotency-key", v);
                    }
                    if let Ok(mut p) = self.pending.lock() {
                        p.insert(ctx.request.as_str().to_string(), call);
                    }
                    Outcome::Continue(Request::from_parts(parts, crate::engine::full(body)))
                }
            }
        })
    }

    fn on_response(
        &self,
        ctx: &RequestCtx,
        resp: Response<HookBody>,
    ) -> Result<Response<HookBody>, ResponseRefusal> {
        let call = self
            .pending
            .lock()
            .ok()
            .and_then(|mut p| p.remove(ctx.request.as_str()));
        match call {
            Some(call) => Ok(self.gw.respond(call, resp)),
            None => Ok(resp),
        }
    }
}
