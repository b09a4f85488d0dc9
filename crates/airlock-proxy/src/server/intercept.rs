//! Stage 3, interception: TLS termination with a leaf for the CONNECT host,
//! and each request inside the tunnel (which may only address that host).

use super::forward::refuse_with_body;
use super::{Active, Inner, TunnelTarget, authority_string, resource, stopped};
use crate::body::ProxyBody;
use crate::respond;
use airlock_policy::{Host, Scheme};
use airlock_types::{Decision, Reason, RequestId};
use http::header::{self};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

impl Inner {
    /// Record a failed step of the client-side TLS handshake: the client's
    /// TLS error, or `None` when the step did not finish in time.
    pub(super) fn client_tls_failed(
        &self,
        res: &str,
        rid: &RequestId,
        error: Option<std::io::Error>,
    ) {
        let (reason, detail) = match error {
            Some(e) => (Reason::MalformedRequest, format!("client TLS: {e}")),
            None => (
                Reason::LimitExceeded,
                "client TLS handshake timed out".into(),
            ),
        };
        self.record_failure(airlock_types::Action::EgressTls, res, reason, rid, detail);
    }

    /// Terminate the client's TLS with a leaf for the CONNECT host, then
    /// serve HTTP/2 or HTTP/1.1 inside, deciding every request.
    pub(super) async fn intercept<I>(
        self: Arc<Self>,
        io: I,
        target: TunnelTarget,
        res: String,
        rid: RequestId,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let host_name = match &target.host {
            Host::Domain(d) => d.clone(),
            Host::Ip(ip) => ip.to_string(),
        };
        let t = &self.cfg.timeouts;
        // The client must speak TLS, and its SNI, when sent, must name the
        // host the tunnel was allowed for.
        let Some(io) = self.tunnel_hello(io, &target, &res, &rid, false).await else {
            return;
        };
        let acceptor =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
        let start = match tokio::time::timeout(t.tls_handshake, acceptor).await {
            Ok(Ok(s)) => s,
            failed => return self.client_tls_failed(&res, &rid, failed.ok().and_then(Result::err)),
        };
        let cfg = match self.ca.server_config(&host_name) {
            Ok(c) => c,
            Err(e) => {
                return self.record_failure(
                    airlock_types::Action::EgressTls,
                    &res,
                    Reason::CheckFailed,
                    &rid,
                    e.to_string(),
                );
            }
        };
        let tls = match tokio::time::timeout(t.tls_handshake, start.into_stream(cfg)).await {
            Ok(Ok(s)) => s,
            failed => return self.client_tls_failed(&res, &rid, failed.ok().and_then(Result::err)),
        };
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let target = Arc::new(target);
        let this = self.clone();
        let svc = service_fn(move |req| {
            let this = this.clone();
            let target = target.clone();
            async move { Ok::<_, Infallible>(this.inner_request(req, &target).await) }
        });
        let io = TokioIo::new(tls);
        let _active = Active::new(&self);
        let mut stop = self.stop.subscribe();
        let result = if h2 {
            let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            b.timer(TokioTimer::new()).max_header_list_size(
                u32::try_from(self.cfg.limits.max_header_bytes).unwrap_or(u32::MAX),
            );
            let conn = b.serve_connection(io, svc);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => r,
                () = stopped(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            }
        } else {
            let conn = self.h1_server().serve_connection(io, svc).with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => r,
                () = stopped(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            }
        };
        if let Err(e) = result {
            self.connection_error(&e, &res);
        }
    }

    /// One request inside an intercepted tunnel. It may only address the
    /// tunnel's host and port; its addresses are the ones checked at CONNECT.
    pub(super) async fn inner_request(
        self: Arc<Self>,
        req: Request<Incoming>,
        target: &TunnelTarget,
    ) -> Response<ProxyBody> {
        let rid = self.request_id();
        // A CONNECT inside the tunnel (HTTP/1.1, or HTTP/2 with or without
        // the extended-CONNECT `:protocol`) would open a stream whose bytes
        // are never judged: refused like any other upgrade.
        if req.method() == Method::CONNECT
            || req.extensions().get::<hyper::ext::Protocol>().is_some()
        {
            let res = resource(Scheme::Https, &target.host, target.port, "");
            let d = self.record_decision(
                airlock_types::Action::EgressRequest,
                &res,
                Decision::deny(Reason::UpgradeRefused),
                &rid,
                &[
                    ("via", "intercepted_tunnel".to_owned()),
                    ("detail", "CONNECT inside an intercepted tunnel".to_owned()),
                ],
            );
            return refuse_with_body(req.into_body(), respond::denied(d));
        }
        let named = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                req.headers()
                    .get(header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            });
        if let Some(named) = named {
            match airlock_policy::parse_authority(&named, target.port) {
                Ok((h, p)) if h == target.host && p == target.port => {}
                _ => {
                    let res = resource(Scheme::Https, &target.host, target.port, "");
                    let d = self.record_decision(
                        airlock_types::Action::EgressRequest,
                        &res,
                        Decision::deny(Reason::RuleDeny),
                        &rid,
                        &[("detail", "Host does not match the CONNECT target".into())],
                    );
                    return refuse_with_body(req.into_body(), respond::denied(d));
                }
            }
        }
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let text = format!(
            "https://{}{}",
            authority_string(Scheme::Https, &target.host, target.port),
            pq
        );
        let url = match airlock_policy::parse_url(&text) {
            Ok(u) => u,
            Err(e @ airlock_policy::HostError::AmbiguousPath(_)) => {
                let d = self.deny_invalid_url(&rid, &e);
                return refuse_with_body(req.into_body(), respond::denied(d));
            }
            Err(e) => {
                self.record_failure(
                    airlock_types::Action::EgressRequest,
                    "<invalid URL>",
                    Reason::MalformedRequest,
                    &rid,
                    e.to_string(),
                );
                let resp = respond::error(StatusCode::BAD_REQUEST, Reason::MalformedRequest);
                return refuse_with_body(req.into_body(), resp);
            }
        };
        let known = Some(target.addrs.clone());
        self.forward(req, url, known, rid, Some(target)).await
    }
}
