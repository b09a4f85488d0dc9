//! Credential injection and reverse scrubbing, active when the proxy serves a
//! run that holds credential handles.
//!
//! Request side: every header value, the query string and the path are
//! searched for handles (`alh_…`). A handle is swapped for the real value
//! only where its binding places it — the bound header (with its format),
//! the password of Basic credentials in the bound header, or the whole
//! value of the bound query parameter — and only after the [`Broker`]
//! checked the *real* destination (the URL the proxy decided on, with its
//! canonical path, and the address it pinned). Anywhere else (another
//! header or parameter, a parameter name, part of a value, the path) the
//! request is refused: `credential_wrong_location`, or the first caveat the
//! destination fails. Any refusal denies the whole request and is audited
//! as `credential.denied` with the secret's name and where the handle was
//! found; every swap is audited as `credential.used` (secret name,
//! destination, method, place — never the value) before the request
//! leaves, and a sink that refuses that record refuses the request
//! (`audit_unavailable`). Request bodies are streamed and NOT searched: a
//! handle in a body reaches the upstream as the handle itself, which is
//! worthless outside this broker.
//!
//! Response side: `Accept-Encoding` is removed from requests so responses
//! come back uncompressed; a response that still carries a body in a
//! `Content-Encoding` other than `identity`, or a `Transfer-Encoding` other
//! than `chunked`, cannot be scrubbed and is refused with
//! `unscrubbable_response` (502). Every other response header and body
//! passes through a scrubber holding the run's real values (plus the
//! built-in credential rules), so a value an upstream echoes reaches the
//! agent as `[SECRET:name]`. Bodies stay streamed: only the scrubber's
//! hold-back is buffered. A scrubber failure ends the body with an error
//! (fail closed).
//!
//! It is the proxy's first [`Hook`]: registered by
//! `Proxy::with_credentials`, it runs last on the request (after every other
//! hook, so none of them sees a real value) and first on the response (so
//! every other hook sees it scrubbed).

use crate::body::{BoxError, ProxyBody};
use crate::respond;
use airlock_broker::{Broker, Denial, Destination, Found, HANDLE_PREFIX, Use, find_handles};
use airlock_hook::{Hook, OnRequest, Outcome, Refusal, RequestCtx, ResponseRefusal};
use airlock_scrub::{Category, ScrubError, Scrubber, StreamScrubber};
use airlock_types::{Decision, EventSink, Reason, RunId, Secret};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The run's credentials as the proxy uses them.
#[derive(Debug)]
pub(crate) struct Credentials {
    pub(crate) broker: Arc<Broker>,
    pub(crate) run: RunId,
    scrubber: Scrubber,
    /// Where `credential.used` is recorded, before the request leaves.
    sink: Arc<dyn EventSink>,
}

/// What injection did to a request: the new query (only when it changed)
/// and the swaps made, to audit.
#[derive(Debug)]
pub(crate) struct Placed {
    pub(crate) query: Option<Secret<String>>,
    pub(crate) uses: Vec<Use>,
}

/// Whether a header value may hold a handle: in clear, or inside `Basic`
/// credentials (base64, so the prefix does not show).
fn may_hold_handle(bytes: &[u8]) -> bool {
    let trimmed = bytes.trim_ascii_start();
    bytes
        .windows(HANDLE_PREFIX.len())
        .any(|w| w == HANDLE_PREFIX.as_bytes())
        || trimmed
            .get(..6)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"basic "))
}

impl Credentials {
    /// Build the scrubber from the run's real values. Fails if the run holds
    /// a value the scrubber cannot register (it would then pass unscrubbed).
    pub(crate) fn new(
        broker: Arc<Broker>,
        run: RunId,
        sink: Arc<dyn EventSink>,
    ) -> Result<Credentials, ScrubError> {
        let mut b = Scrubber::builder().only(Category::Secret);
        for k in broker.run_secrets(&run) {
            b = b.known_secret(&k.name, &k.value);
        }
        Ok(Credentials {
            broker,
            run,
            scrubber: b.build()?,
            sink,
        })
    }

    /// Swap handles in `headers` and the query for real values where their
    /// bindings place them, or refuse the request.
    pub(crate) fn inject(
        &self,
        headers: &mut HeaderMap,
        path: &str,
        query: Option<&str>,
        dest: &Destination<'_>,
    ) -> Result<Placed, Denial> {
        // Responses must come back in a form the scrubber can read.
        headers.remove(header::ACCEPT_ENCODING);
        if let Some(h) = find_handles(path).next() {
            return Err(self.broker.refuse_misplaced(h, dest, Found::Path));
        }
        let mut uses = Vec::new();
        let query = match query {
            Some(q) => self.broker.inject_query(q, dest)?.map(|inj| {
                uses.extend(inj.uses);
                inj.value
            }),
            None => None,
        };
        if headers.values().any(|v| may_hold_handle(v.as_bytes())) {
            let old = std::mem::take(headers);
            let mut current: Option<HeaderName> = None;
            for (name, value) in old {
                if let Some(n) = name {
                    current = Some(n);
                }
                let Some(name) = current.clone() else {
                    continue; // invariant: the first entry always has a name
                };
                let replaced = if may_hold_handle(value.as_bytes()) {
                    let text = value
                        .to_str()
                        .map_err(|_| Denial::bare(airlock_types::Reason::MalformedRequest))?;
                    match self.broker.inject_header(name.as_str(), text, dest)? {
                        Some(inj) => {
                            let mut v = HeaderValue::from_str(inj.value.expose())
                                .map_err(|_| Denial::bare(airlock_types::Reason::CheckFailed))?;
                            v.set_sensitive(true);
                            uses.extend(inj.uses);
                            v
                        }
                        None => value,
                    }
                } else {
                    value
                };
                headers.append(name, replaced);
            }
        }
        Ok(Placed { query, uses })
    }

    /// Record one `credential.used` event per swap, before the request
    /// leaves. `Err` when the sink refuses one: the request must then be
    /// refused (`audit_unavailable`), nothing leaves unrecorded.
    pub(crate) fn record_uses(
        &self,
        sink: &dyn EventSink,
        ctx: &RequestCtx,
        dest: &Destination<'_>,
        uses: &[Use],
    ) -> Result<(), ()> {
        for u in uses {
            let ev = u
                .audit_event(ctx.tenant.clone(), self.run.clone(), dest)
                .with_request(ctx.request.clone());
            let ev = ctx.stamp(ev);
            if let Err(e) = sink.emit(ev) {
                tracing::error!(error = %e, "audit sink refused a credential use; refusing the request");
                return Err(());
            }
        }
        Ok(())
    }

    /// Whether a response can be scrubbed: its body (if it has one) must be
    /// in no content coding but `identity` and no transfer coding but
    /// `chunked` (the scrubber reads plain bytes; the proxy asked for no
    /// compression). `Err` names the coding, for the audit record.
    pub(crate) fn check_response(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        is_head: bool,
    ) -> Result<(), String> {
        let no_body = is_head
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        if no_body {
            return Ok(());
        }
        let codings = |name: header::HeaderName| -> Vec<String> {
            headers
                .get_all(name)
                .iter()
                .flat_map(|v| {
                    String::from_utf8_lossy(v.as_bytes())
                        .split(',')
                        .map(|t| t.trim().to_ascii_lowercase())
                        .filter(|t| !t.is_empty())
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let short = |t: &str| t.chars().take(32).collect::<String>();
        if let Some(c) = codings(header::CONTENT_ENCODING)
            .iter()
            .find(|c| c.as_str() != "identity")
        {
            return Err(format!("response body in Content-Encoding {:?}", short(c)));
        }
        if let Some(c) = codings(header::TRANSFER_ENCODING)
            .iter()
            .find(|c| c.as_str() != "chunked")
        {
            return Err(format!("response body in Transfer-Encoding {:?}", short(c)));
        }
        Ok(())
    }

    /// Scrub response headers in place and wrap the body.
    pub(crate) fn scrub_response(
        &self,
        headers: &mut HeaderMap,
        body: ProxyBody,
        keep_length: bool,
    ) -> ProxyBody {
        let names: Vec<HeaderName> = headers.keys().cloned().collect();
        for name in names {
            let values: Vec<HeaderValue> = headers.get_all(&name).iter().cloned().collect();
            let mut changed = false;
            let mut out = Vec::with_capacity(values.len());
            for v in values {
                let r = self.scrubber.redact_bytes(v.as_bytes());
                if r.bytes != v.as_bytes() {
                    changed = true;
                    // Masks are printable ASCII; if not, drop the value.
                    if let Ok(nv) = HeaderValue::from_bytes(&r.bytes) {
                        out.push(nv);
                    }
                } else {
                    out.push(v);
                }
            }
            if changed {
                headers.remove(&name);
                for v in out {
                    headers.append(name.clone(), v);
                }
            }
        }
        if !keep_length {
            headers.remove(header::CONTENT_LENGTH);
        }
        ScrubBody {
            inner: body,
            stream: Some(self.scrubber.stream()),
            trailers: None,
        }
        .boxed()
    }
}

impl Hook for Credentials {
    fn on_request<'a>(&'a self, ctx: &'a RequestCtx, req: Request<ProxyBody>) -> OnRequest<'a> {
        Box::pin(std::future::ready(self.request(ctx, req)))
    }

    fn on_response(
        &self,
        ctx: &RequestCtx,
        resp: Response<ProxyBody>,
    ) -> Result<Response<ProxyBody>, ResponseRefusal> {
        let (mut parts, body) = resp.into_parts();
        let is_head = ctx.method == Method::HEAD;
        if let Err(detail) = self.check_response(parts.status, &parts.headers, is_head) {
            return Err(ResponseRefusal {
                status: StatusCode::BAD_GATEWAY,
                reason: Reason::UnscrubbableResponse,
                detail,
            });
        }
        // A 101 keeps its length header (its body is empty; the frames after
        // it are not scrubbed).
        let keep_length = is_head || parts.status == StatusCode::SWITCHING_PROTOCOLS;
        let body = self.scrub_response(&mut parts.headers, body, keep_length);
        Ok(Response::from_parts(parts, body))
    }
}

impl Credentials {
    /// Swap the request's handles (or refuse it) and record each swap.
    fn request(&self, ctx: &RequestCtx, req: Request<ProxyBody>) -> Outcome {
        let (mut parts, body) = req.into_parts();
        let dest = Destination {
            scheme: ctx.scheme.as_str(),
            host: &ctx.host,
            port: ctx.port,
            method: ctx.method.as_str(),
            path: &ctx.path,
        };
        let query = parts.uri.query().map(str::to_owned);
        match self.inject(&mut parts.headers, &ctx.path, query.as_deref(), &dest) {
            Ok(placed) => {
                let sink = self.sink.as_ref();
                if self.record_uses(sink, ctx, &dest, &placed.uses).is_err() {
                    let d = Decision::deny(Reason::AuditUnavailable);
                    return Outcome::Refuse(Refusal::new(d, body));
                }
                if let Some(q) = placed.query {
                    match format!("{}?{}", ctx.path, q.expose()).parse::<Uri>() {
                        Ok(uri) => parts.uri = uri,
                        Err(_) => {
                            let reason = Reason::MalformedRequest;
                            let resp = respond::error(StatusCode::BAD_REQUEST, reason);
                            let refusal = Refusal::new(Decision::deny(reason), body);
                            return Outcome::Refuse(refusal.with_response(resp));
                        }
                    }
                }
                Outcome::Continue(Request::from_parts(parts, body))
            }
            Err(denial) => {
                let ev = ctx.stamp(
                    denial
                        .audit_event(ctx.tenant.clone(), self.run.clone(), &dest)
                        .with_request(ctx.request.clone()),
                );
                let refusal = Refusal::new(Decision::deny(denial.reason), body);
                Outcome::Refuse(refusal.with_event(ev))
            }
        }
    }
}

/// A response body passed through a [`StreamScrubber`].
struct ScrubBody {
    inner: ProxyBody,
    /// `None` once finished (or failed).
    stream: Option<StreamScrubber>,
    /// Trailers waiting until the scrubbed tail has been sent.
    trailers: Option<HeaderMap>,
}

impl ScrubBody {
    fn finish(&mut self) -> Result<Option<Bytes>, BoxError> {
        match self.stream.take() {
            Some(s) => {
                let (out, _) = s.finish()?;
                Ok((!out.is_empty()).then(|| Bytes::from(out)))
            }
            None => Ok(None),
        }
    }
}

impl Body for ScrubBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if this.stream.is_none() {
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => {
                    this.stream = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => None,
                Poll::Ready(Some(Ok(f))) => Some(f),
            };
            let Some(frame) = frame else {
                return match this.finish() {
                    Ok(Some(b)) => Poll::Ready(Some(Ok(Frame::data(b)))),
                    Ok(None) => Poll::Ready(None),
                    Err(e) => Poll::Ready(Some(Err(e))),
                };
            };
            match frame.into_data() {
                Ok(data) => {
                    let Some(s) = this.stream.as_mut() else {
                        continue;
                    };
                    match s.push(&data) {
                        Ok(out) if out.is_empty() => continue,
                        Ok(out) => return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out))))),
                        Err(e) => {
                            this.stream = None;
                            return Poll::Ready(Some(Err(Box::new(e))));
                        }
                    }
                }
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        this.trailers = Some(t);
                    }
                    return match this.finish() {
                        Ok(Some(b)) => Poll::Ready(Some(Ok(Frame::data(b)))),
                        Ok(None) => {
                            Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))))
                        }
                        Err(e) => Poll::Ready(Some(Err(e))),
                    };
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.stream.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::full;

    fn frames(parts: &[&'static [u8]]) -> ProxyBody {
        let stream = futures_util::stream::iter(
            parts
                .iter()
                .map(|p| Ok::<_, BoxError>(Frame::data(Bytes::from_static(p))))
                .collect::<Vec<_>>(),
        );
        http_body_util::StreamBody::new(stream).boxed()
    }

    #[tokio::test]
    async fn a_value_split_across_frames_is_scrubbed_in_body_and_headers() {
        let broker = Arc::new(Broker::new());
        let run = RunId::new("run-test").expect("id");
        let binding = airlock_broker::Binding::new(
            "TOK",
            vec!["api.example.com".into()],
            None,
            None,
            vec![],
            vec![],
            None,
        )
        .expect("binding");
        let grant = airlock_broker::Grant::new(
            "TOK",
            binding,
            Secret::new("split-value-0123456789abcdef".to_owned()),
        );
        broker
            .start_run(&run, vec![grant], airlock_broker::RunLimits::default())
            .expect("start");
        let sink: Arc<dyn EventSink> = Arc::new(airlock_types::NullSink);
        let creds = Credentials::new(broker, run, sink).expect("creds");
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-echo",
            HeaderValue::from_static("Bearer split-value-0123456789abcdef"),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("44"));
        let body = frames(&[b"you sent: split-val", b"ue-0123456", b"789abcdef!"]);
        let out = creds.scrub_response(&mut headers, body, false);
        let bytes = out.collect().await.expect("body").to_bytes();
        assert_eq!(&bytes[..], b"you sent: [SECRET:TOK]!");
        assert_eq!(headers["x-echo"], "Bearer [SECRET:TOK]");
        assert!(headers.get(header::CONTENT_LENGTH).is_none());
        // An empty body stays empty.
        let out = creds.scrub_response(&mut HeaderMap::new(), full(Bytes::new()), true);
        assert!(out.collect().await.expect("body").to_bytes().is_empty());
    }
}
