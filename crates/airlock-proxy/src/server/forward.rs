//! Stage 4, forwarding one request: the decision, the hooks, dialling
//! exactly a checked address (or reusing a pooled connection), the upstream
//! exchange, upgrades, and the response on its way back.

use super::{Inner, TunnelTarget, authority_string, host_name, resource};
use crate::body::{OnEnd, ProxyBody, TimeoutBody, empty};
use crate::glue::{self, RequestFacts};
use crate::idle::splice;
use crate::pool::{PoolKey, Sender};
use crate::respond;
use crate::upstream::{self, DialError};
use airlock_hook::{RequestCtx, Via};
use airlock_policy::{Host, Scheme, Unresolved};
use airlock_types::{Decision, Reason, RequestId};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

impl Inner {
    /// The addresses of `host`, once the policy has judged everything but
    /// them: an IP literal is itself; a name is resolved (`None`: it did
    /// not resolve).
    pub(super) async fn resolve(&self, host: &Host) -> Option<Vec<IpAddr>> {
        match host {
            Host::Ip(ip) => Some(vec![*ip]),
            Host::Domain(name) => self.resolver.resolve(name).await,
        }
    }

    /// Decide one request (absolute-form, or inside an intercepted tunnel)
    /// and, if allowed, forward it to exactly a checked address. `known`:
    /// the addresses already checked for an intercepted tunnel; `None`: the
    /// name is resolved here, and only when the policy could allow the
    /// request (a name refused anyway is never looked up).
    pub(super) async fn forward(
        self: Arc<Self>,
        req: Request<Incoming>,
        url: airlock_policy::Url,
        known: Option<Vec<IpAddr>>,
        rid: RequestId,
        tunnel: Option<&TunnelTarget>,
    ) -> Response<ProxyBody> {
        let res = resource(url.scheme, &url.host, url.port, &url.path);
        let asked = upgrade_protocol(&req);
        let facts = RequestFacts {
            method: req.method(),
            url: &url,
            run: self.run.as_ref(),
            upgrade: asked.as_deref(),
        };
        // The policy judges everything it can without DNS once; a name it
        // refuses is never looked up, and one it allows is finished with
        // its addresses (the tunnel's, already checked, or resolved here).
        let (decision, addrs) = match glue::decide_unresolved(&self.policy, &facts) {
            // An allowed IP literal is its own address.
            Unresolved::Decided(d) if d.is_allow() => {
                (d, known.or_else(|| url.host.ip().map(|ip| vec![ip])))
            }
            Unresolved::Decided(d) => (d, None),
            Unresolved::Resolve(p) => {
                let a = match known {
                    Some(a) => Some(a),
                    None => self.resolve(&url.host).await,
                };
                (glue::decide_resolved(p, a.as_deref()), a)
            }
        };
        let mut details = Vec::new();
        if tunnel.is_some() {
            details.push(("via", "intercepted_tunnel".to_owned()));
        }
        if url.query.is_some() {
            // That there was one, never its text.
            details.push(("query", "true".to_owned()));
        }
        if url.userinfo.is_some() {
            // Likewise: that the URL carried credentials, never them.
            details.push(("userinfo", "true".to_owned()));
        }
        if let Some(p) = &asked {
            // The protocol token as sent, bounded; header values are
            // visible ASCII or dropped here.
            let p: String = p
                .chars()
                .filter(|c| c.is_ascii_graphic() || *c == ' ')
                .take(64)
                .collect();
            details.push(("upgrade", p));
        }
        let decision = self.record_decision(
            airlock_types::Action::EgressRequest,
            &res,
            decision,
            &rid,
            &details,
        );
        // An `ask` goes on to the hooks only when an approver is on the
        // path; it is sent only if a hook marks it approved (below).
        let held = decision.outcome == airlock_types::Outcome::Ask && self.policy.approvals();
        if !decision.is_allow() && (!held || self.hooks.is_empty()) {
            return refuse_with_body(req.into_body(), respond::denied(decision));
        }
        let Some(addrs) = addrs else {
            // The policy allowed a name we could not resolve: it must not
            // (unresolvable ⇒ deny), so refuse rather than guess.
            let d = Decision::deny(Reason::UnresolvableHost);
            return refuse_with_body(req.into_body(), respond::denied(d));
        };
        let sockets: Vec<SocketAddr> = addrs
            .iter()
            .map(|ip| SocketAddr::new(*ip, url.port))
            .collect();
        let https = url.scheme == Scheme::Https;
        let tls_name = host_name(&url.host);
        let key = PoolKey {
            https,
            host: tls_name.clone(),
            port: url.port,
        };
        let authority = authority_string(url.scheme, &url.host, url.port);
        let mut path_and_query = url.path.clone();
        if let Some(q) = &url.query {
            path_and_query.push('?');
            path_and_query.push_str(q);
        }
        let via = if tunnel.is_some() {
            Via::InterceptedTunnel
        } else {
            Via::Plain
        };
        let upgrade = asked.is_some();
        let (mut parts, body) = req.into_parts();
        let client_upgrade = if upgrade {
            let mut tmp = Request::from_parts(parts, ());
            let on = hyper::upgrade::on(&mut tmp);
            parts = tmp.into_parts().0;
            Some(on)
        } else {
            None
        };
        strip_hop_by_hop(&mut parts.headers, upgrade);
        if let Some(u) = &url.userinfo {
            basic_from_userinfo(&mut parts.headers, u);
        }
        let mut body: ProxyBody = TimeoutBody::new(body, self.cfg.timeouts.body_read).boxed();
        // The hooks (the credentials hook last): they may rewrite headers,
        // query and body, or refuse; never the destination.
        let ctx = if self.hooks.is_empty() {
            None
        } else {
            let scheme = match url.scheme {
                Scheme::Https => http::uri::Scheme::HTTPS,
                Scheme::Http => http::uri::Scheme::HTTP,
            };
            let ctx = RequestCtx::new(
                self.tenant.clone(),
                self.run.clone(),
                rid.clone(),
                scheme,
                tls_name.clone(),
                url.port,
                parts.method.clone(),
                url.path.clone(),
                via,
            );
            let ctx = match &self.context {
                Some(c) => ctx.with_context(c.clone()),
                None => ctx,
            }
            .with_decision(decision);
            let Ok(uri) = path_and_query.parse::<Uri>() else {
                return respond::error(StatusCode::BAD_REQUEST, Reason::MalformedRequest);
            };
            parts.uri = uri;
            match self
                .request_hooks(&ctx, &res, Request::from_parts(parts, body))
                .await
            {
                Ok(req) => (parts, body) = req.into_parts(),
                Err(answer) => return answer,
            }
            if held && parts.extensions.get::<airlock_hook::Approved>().is_none() {
                // Fail closed: no hook had exactly this request approved.
                return self.unapproved(&res, &rid, body);
            }
            if let Some(pq) = parts.uri.path_and_query() {
                path_and_query = pq.as_str().to_owned();
            }
            Some(ctx)
        };

        // Reuse a pooled connection to a checked address, or dial one.
        let pooled = if upgrade {
            None
        } else {
            self.pool.checkout(&key, &sockets)
        };
        let (addr, mut sender) = match pooled {
            Some(p) => p,
            None => match self.open(&sockets, https, &tls_name, upgrade).await {
                Ok(p) => p,
                Err(e) => return self.upstream_failed(&res, &rid, e),
            },
        };
        if let Sender::H1(s) = &mut sender
            && s.ready().await.is_err()
        {
            match self.open(&sockets, https, &tls_name, upgrade).await {
                Ok((_, fresh)) => sender = fresh,
                Err(e) => return self.upstream_failed(&res, &rid, e),
            }
        }

        let h2 = matches!(sender, Sender::H2(_));
        if h2 {
            parts.headers.remove(header::HOST);
            parts.version = Version::HTTP_2;
            parts.uri = match Uri::builder()
                .scheme(url.scheme.as_str())
                .authority(authority.as_str())
                .path_and_query(path_and_query.as_str())
                .build()
            {
                Ok(u) => u,
                Err(_) => return respond::error(StatusCode::BAD_REQUEST, Reason::MalformedRequest),
            };
        } else {
            parts.version = Version::HTTP_11;
            let Ok(host_value) = HeaderValue::from_str(&authority) else {
                return respond::error(StatusCode::BAD_REQUEST, Reason::MalformedRequest);
            };
            parts.headers.insert(header::HOST, host_value);
            parts.uri = match path_and_query.parse() {
                Ok(u) => u,
                Err(_) => return respond::error(StatusCode::BAD_REQUEST, Reason::MalformedRequest),
            };
        }
        let up_req = Request::from_parts(parts, body);
        let timeout = self.cfg.timeouts.upstream_response;
        let sent = match &mut sender {
            Sender::H1(s) => tokio::time::timeout(timeout, s.send_request(up_req)).await,
            Sender::H2(s) => tokio::time::timeout(timeout, s.send_request(up_req)).await,
        };
        let mut resp = match sent {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                return self.upstream_failed(
                    &res,
                    &rid,
                    DialError::Unreachable(format!("upstream exchange failed: {e}")),
                );
            }
            Err(_) => {
                self.record_failure(
                    airlock_types::Action::EgressUpstream,
                    &res,
                    Reason::UpstreamUnreachable,
                    &rid,
                    format!("no response head within {timeout:?}"),
                );
                return respond::error(StatusCode::GATEWAY_TIMEOUT, Reason::UpstreamUnreachable);
            }
        };

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            // Only the protocol that was asked for (and allowed): an
            // upstream switching to anything else, or switching unasked,
            // would carry unjudged bytes.
            let (Some(client_upgrade), Some(asked)) = (client_upgrade, asked.as_deref()) else {
                return self.upgrade_mismatch(
                    &res,
                    &rid,
                    "101 to a request that asked for no upgrade",
                );
            };
            if !switched_to(resp.headers(), asked) {
                return self.upgrade_mismatch(
                    &res,
                    &rid,
                    "101 to another protocol than the one asked for",
                );
            }
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            let (mut parts, _) = resp.into_parts();
            if let Some(ctx) = &ctx {
                // The same header hooks as any response (the body is empty;
                // the frames after it are not seen).
                let head = Response::from_parts(parts, empty());
                match self.response_hooks(ctx, &res, head) {
                    Ok(r) => parts = r.into_parts().0,
                    Err(answer) => return answer,
                }
            }
            let idle = self.cfg.timeouts.idle;
            tokio::spawn(async move {
                if let (Ok(c), Ok(u)) = (client_upgrade.await, upstream_upgrade.await) {
                    let _ = splice(TokioIo::new(c), TokioIo::new(u), idle).await;
                }
            });
            return Response::from_parts(parts, empty());
        }

        let (mut parts, body) = resp.into_parts();
        let body = TimeoutBody::new(body, self.cfg.timeouts.body_read);
        let body: ProxyBody = match sender {
            Sender::H1(s) if !upgrade => {
                let me = self.clone();
                OnEnd::new(body, move || me.pool.checkin(key, addr, Sender::H1(s))).boxed()
            }
            _ => body.boxed(),
        };
        let Some(ctx) = &ctx else {
            strip_hop_by_hop(&mut parts.headers, false);
            return Response::from_parts(parts, body);
        };
        // Hooks see the headers as the upstream sent them (a body's codings
        // included); the hop-by-hop fields named before the hooks ran are
        // removed after them, with any a hook added.
        let listed = connection_listed(&parts.headers);
        let (mut parts, body) =
            match self.response_hooks(ctx, &res, Response::from_parts(parts, body)) {
                Ok(r) => r.into_parts(),
                Err(answer) => return answer,
            };
        for name in listed {
            parts.headers.remove(&name);
        }
        strip_hop_by_hop(&mut parts.headers, false);
        Response::from_parts(parts, body)
    }

    /// Refuse a 101 that does not match the request's upgrade: the upstream
    /// connection is dropped (closed), the client gets a 502.
    pub(super) fn upgrade_mismatch(
        &self,
        res: &str,
        rid: &RequestId,
        detail: &str,
    ) -> Response<ProxyBody> {
        let d = self.record_decision(
            airlock_types::Action::EgressUpgrade,
            res,
            Decision::deny(Reason::UpgradeMismatch),
            rid,
            &[("detail", detail.to_owned())],
        );
        respond::error(StatusCode::BAD_GATEWAY, d.reason)
    }

    pub(super) fn upstream_failed(
        &self,
        res: &str,
        rid: &RequestId,
        e: DialError,
    ) -> Response<ProxyBody> {
        let (reason, detail) = match e {
            DialError::Unreachable(d) => (Reason::UpstreamUnreachable, d),
            DialError::Tls(d) => (Reason::UpstreamTlsFailed, d),
        };
        self.record_failure(
            airlock_types::Action::EgressUpstream,
            res,
            reason,
            rid,
            detail,
        );
        respond::error(StatusCode::BAD_GATEWAY, reason)
    }

    /// Dial a checked address, add TLS when `https`, and handshake HTTP.
    pub(super) async fn open(
        &self,
        sockets: &[SocketAddr],
        https: bool,
        tls_name: &str,
        upgrade: bool,
    ) -> Result<(SocketAddr, Sender), DialError> {
        let t = &self.cfg.timeouts;
        let (tcp, addr) = upstream::dial(sockets, t.connect).await?;
        if !https {
            return Ok((addr, handshake(tcp, false, upgrade).await?));
        }
        let cfg = if upgrade {
            &self.tls_client_h1
        } else {
            &self.tls_client
        };
        let tls = upstream::tls(cfg, tcp, tls_name, t.connect).await?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok((addr, handshake(tls, h2, upgrade).await?))
    }
}

/// A URL's userinfo, which a rule allowed (`allow_userinfo`), is never sent
/// in the request target: it becomes `Authorization: Basic`, as a client
/// does with it, unless the request already has an `Authorization` header
/// (which then wins, as it does in curl) or the userinfo is empty. It goes
/// in before the hooks run, so the credentials hook sees it like any Basic
/// header (a vault handle there is redeemed or refused). Marked sensitive,
/// so no HTTP/2 table keeps it.
fn basic_from_userinfo(headers: &mut HeaderMap, userinfo: &airlock_policy::Userinfo) {
    if userinfo.is_empty() || headers.contains_key(header::AUTHORIZATION) {
        return;
    }
    let creds = userinfo.basic_credentials();
    let mut value = airlock_types::Secret::new(String::from("Basic "));
    let engine = &base64::engine::general_purpose::STANDARD;
    base64::Engine::encode_string(engine, creds.expose(), value.expose_mut());
    if let Ok(mut v) = HeaderValue::from_str(value.expose()) {
        v.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, v);
    }
}

pub(super) fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "proxy-connection"
            | "keep-alive"
            | "proxy-authorization"
            | "proxy-authenticate"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// The header names listed in `Connection` (hop-by-hop by that listing).
fn connection_listed(h: &HeaderMap) -> Vec<HeaderName> {
    h.get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect()
}

/// Remove hop-by-hop headers, including any named in `Connection`.
pub(super) fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    let listed = connection_listed(h);
    for name in listed {
        if !(keep_upgrade && name == header::UPGRADE) {
            h.remove(&name);
        }
    }
    let names: Vec<HeaderName> = h.keys().filter(|n| is_hop_by_hop(n)).cloned().collect();
    for name in names {
        if !(keep_upgrade && name == header::UPGRADE) {
            h.remove(&name);
        }
    }
    if keep_upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

pub(super) fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// The protocol a request asks to upgrade to (every `Upgrade` value, joined),
/// or `None` when it does not ask (HTTP/1.1 with `Connection: upgrade`).
pub(super) fn upgrade_protocol<B>(req: &Request<B>) -> Option<String> {
    if !is_upgrade(req) {
        return None;
    }
    let values: Vec<String> = req
        .headers()
        .get_all(header::UPGRADE)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    Some(values.join(", "))
}

/// Whether a 101 switched to exactly `asked` (one `Upgrade` value, that
/// protocol, any case).
pub(super) fn switched_to(headers: &HeaderMap, asked: &str) -> bool {
    let mut values = headers.get_all(header::UPGRADE).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => v
            .to_str()
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case(asked.trim())),
        _ => false,
    }
}

/// Answer `resp` (a refusal) to a request whose body may still be arriving.
/// The body is read and discarded on its own task (bounded in bytes and
/// time) and released only once the response has gone out. Releasing it
/// earlier made HTTP/2 reset the stream (CANCEL) in place of the answer; now
/// the client reads the 403 first and, for a large upload, then gets a
/// NO_ERROR reset telling it to stop sending. HTTP/1.1 keeps the connection
/// when the body was small enough to read to its end.
///
/// "Sent" means the response's last frame was handed to the connection, not
/// that it was written: an HTTP/2 stream reset at that moment can still
/// discard it (seen under load as curl's "stream error"). So after the
/// answer the body is read and discarded a little longer (≤ 1 s, ≤ 16 MiB)
/// before it is dropped.
pub(super) fn refuse_with_body<B>(body: B, resp: Response<ProxyBody>) -> Response<ProxyBody>
where
    B: Body<Data = Bytes> + Unpin + Send + 'static,
{
    let (sent_tx, sent_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut body = body;
        drain(&mut body, 64 * 1024, std::time::Duration::from_millis(500)).await;
        // Until the response body is dropped (sent or abandoned), bounded.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), sent_rx).await;
        drain(&mut body, 16 << 20, std::time::Duration::from_secs(1)).await;
        drop(body);
    });
    resp.map(|b| OnEnd::new(b, move || drop(sent_tx)).boxed())
}

/// Read and discard up to `max` bytes of a refused request's body, for at
/// most `time`: a large upload is simply cut off.
async fn drain<B>(body: &mut B, max: usize, time: std::time::Duration)
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut seen = 0usize;
    let _ = tokio::time::timeout(time, async {
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(d) = frame.data_ref() {
                seen += d.len();
                if seen > max {
                    break;
                }
            }
        }
    })
    .await;
}

/// Handshake HTTP/1.1 or HTTP/2 over an upstream connection and drive it on
/// its own task.
pub(super) async fn handshake<I>(io: I, h2: bool, upgrade: bool) -> Result<Sender, DialError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    if h2 {
        let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(io)
            .await
            .map_err(|e| DialError::Unreachable(format!("HTTP/2 handshake: {e}")))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Sender::H2(sender))
    } else {
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| DialError::Unreachable(format!("HTTP/1.1 handshake: {e}")))?;
        tokio::spawn(async move {
            let _ = if upgrade {
                conn.with_upgrades().await
            } else {
                conn.await
            };
        });
        Ok(Sender::H1(sender))
    }
}
