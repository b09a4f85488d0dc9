//! Stage 3, interception: TLS termination with a leaf for the CONNECT host,
//! and each request inside the tunnel (which may only address that host).

use super::forward::refuse_with_body;
use super::{Active, Inner, TunnelTarget, authority_string, resource, stopped};
use crate::body::ProxyBody;
use crate::respond;
use airlock_policy::{Host, Scheme};
use airlock_types::{Decision, Reason, RequestId};
use http::header::{self};
use http::{Method, Request, Response};
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
            // The first request line gets the same percent-encoded-host
            // treatment as outside a tunnel (the shared malformed-URL table
            // holds in both places).
            let Some(io) = self.first_line(io.into_inner(), &res).await else {
                return;
            };
            let io = TokioIo::new(io);
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
        // The URL the request names, parsed exactly as an absolute-form
        // request outside a tunnel is (the shared malformed-URL table holds
        // here too): the authority of an absolute-form target (userinfo
        // included) or of HTTP/2's `:authority`, else the `Host` header, else
        // the tunnel's own; always judged as HTTPS, on the tunnel's port when
        // none is written.
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let named = match req.uri().authority() {
            Some(a) => Ok(a.as_str().to_owned()),
            None => match req.headers().get(header::HOST).map(|v| v.to_str()) {
                Some(Ok(h)) => {
                    // A Host header is host[:port], never userinfo or a path.
                    airlock_policy::parse_authority(h, target.port).map(|_| h.to_owned())
                }
                Some(Err(_)) => Err(airlock_policy::HostError::NotUtf8),
                None => Ok(authority_string(Scheme::Https, &target.host, target.port)),
            },
        };
        let url = named.and_then(|named| {
            let named = with_port(&named, target.port);
            airlock_policy::parse_url_with_userinfo(&format!("https://{named}{pq}"))
        });
        let url = match url {
            Ok(u) => u,
            Err(e) => {
                let d = self.deny_invalid_url(&rid, &e);
                return refuse_with_body(req.into_body(), respond::denied(d));
            }
        };
        if url.host != target.host || url.port != target.port {
            // Another destination than the tunnel's. A URL with userinfo is
            // refused as such first, as the policy judges it first.
            let (reason, detail) = if url.userinfo.is_some() {
                (Reason::UserinfoInUrl, "URL carries user information")
            } else {
                (Reason::RuleDeny, "Host does not match the CONNECT target")
            };
            let res = resource(Scheme::Https, &target.host, target.port, "");
            let d = self.record_decision(
                airlock_types::Action::EgressRequest,
                &res,
                Decision::deny(reason),
                &rid,
                &[
                    ("via", "intercepted_tunnel".to_owned()),
                    ("detail", detail.to_owned()),
                ],
            );
            return refuse_with_body(req.into_body(), respond::denied(d));
        }
        let known = Some(target.addrs.clone());
        self.forward(req, url, known, rid, Some(target)).await
    }
}

/// `authority` with `:port` appended when it names none, so a host written
/// without a port inside a tunnel means the tunnel's port (not 443). An
/// authority that cannot be split is returned as is, for the URL parser to
/// refuse.
fn with_port(authority: &str, port: u16) -> String {
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let has_port = if host.starts_with('[') {
        host.rsplit_once(']')
            .is_some_and(|(_, rest)| rest.starts_with(':'))
    } else {
        host.contains(':')
    };
    if has_port || host.is_empty() {
        authority.to_owned()
    } else {
        format!("{authority}:{port}")
    }
}
