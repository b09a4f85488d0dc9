//! Stage 1, the listener: one client connection — the connection limit, its
//! first request line (percent-encoded hosts normalized), the HTTP/1.1
//! server, and the split between `CONNECT` and absolute-form requests.

use super::{Active, Inner, client, resource, stopped};
use crate::body::{Prefixed, ProxyBody};
use crate::respond;
use airlock_policy::Scheme;
use airlock_types::Reason;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

impl Inner {
    pub(super) fn h1_server(&self) -> hyper::server::conn::http1::Builder {
        let l = &self.cfg.limits;
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(self.cfg.timeouts.header_read)
            .max_buf_size(l.max_header_bytes.saturating_add(1024).max(8192))
            .max_header_size(l.max_header_bytes)
            .max_headers(l.max_headers)
            .keep_alive(true);
        b
    }

    pub(super) async fn connection<S>(self: Arc<Self>, mut stream: S, peer: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Ok(_permit) = self.conns.clone().try_acquire_owned() else {
            let rid = self.request_id();
            self.record_failure(
                airlock_types::Action::EgressConnection,
                &client(peer),
                Reason::LimitExceeded,
                &rid,
                "too many concurrent connections".into(),
            );
            let _ = tokio::time::timeout(
                self.cfg.timeouts.header_read,
                stream.write_all(&respond::raw_overloaded()),
            )
            .await;
            return;
        };
        let _active = Active::new(&self);
        let stream = match self.first_line(stream, &client(peer)).await {
            Some(s) => s,
            None => return,
        };
        let this = self.clone();
        let svc = service_fn(move |req| {
            let this = this.clone();
            async move { Ok::<_, Infallible>(this.handle(req).await) }
        });
        let conn = self
            .h1_server()
            .serve_connection(TokioIo::new(stream), svc)
            .with_upgrades();
        tokio::pin!(conn);
        let mut stop = self.stop.subscribe();
        let result = tokio::select! {
            r = conn.as_mut() => r,
            () = stopped(&mut stop) => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = result {
            self.connection_error(&e, &client(peer));
        }
    }

    /// Read a new connection up to the end of its first request line (within
    /// the request-line limit and the header-read timeout) and hand it on
    /// with those bytes replayed. The HTTP layer refuses to parse a request
    /// target whose host is percent-encoded (`http://%31%32%37.0.0.1/`), which
    /// would make it a `malformed_request`; such a target is rewritten here to
    /// its WHATWG-normalized URL, so the request is judged on the host it
    /// really names, or, when even the decoded host is invalid, denied with
    /// `invalid_host` and closed. `None`: the connection is done. `who`:
    /// the audit resource of a failure (the client, or the tunnel).
    pub(super) async fn first_line<S>(&self, mut stream: S, who: &str) -> Option<Prefixed<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let limit = self.cfg.limits.max_request_line.saturating_add(64);
        let mut buf = Vec::with_capacity(2048);
        let mut stop = self.stop.subscribe();
        let read = tokio::time::timeout(self.cfg.timeouts.header_read, async {
            let mut chunk = [0u8; 2048];
            while !buf.contains(&b'\n') && buf.len() <= limit {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Ok::<_, std::io::Error>(())
        });
        // A drain closes a connection that has not sent its request yet.
        let read = tokio::select! {
            r = read => r,
            () = stopped(&mut stop) => return None,
        };
        match read {
            Ok(Ok(())) if !buf.is_empty() => {}
            Ok(_) => return None, // closed or failed before sending anything
            Err(_) => {
                let rid = self.request_id();
                let what = "request head not received in time".into();
                self.record_failure(
                    airlock_types::Action::EgressConnection,
                    who,
                    Reason::LimitExceeded,
                    &rid,
                    what,
                );
                return None;
            }
        }
        match rewrite_encoded_host(&mut buf) {
            Ok(()) => Some(Prefixed::new(buf, stream)),
            Err(e) => {
                let rid = self.request_id();
                let d = self.deny_invalid_url(&rid, &e);
                let _ = tokio::time::timeout(
                    self.cfg.timeouts.header_read,
                    stream.write_all(&respond::raw_denied(d)),
                )
                .await;
                None
            }
        }
    }

    /// Audit a client connection that ended in a protocol error.
    pub(super) fn connection_error(&self, e: &hyper::Error, who: &str) {
        let (reason, what) = if e.is_parse_too_large() {
            (Reason::LimitExceeded, "request head too large")
        } else if e.is_timeout() {
            (Reason::LimitExceeded, "request head not received in time")
        } else if e.is_parse() || e.is_parse_status() {
            (Reason::MalformedRequest, "malformed request")
        } else if e.is_incomplete_message() {
            (Reason::MalformedRequest, "connection closed mid-request")
        } else {
            return; // the client went away; nothing was asked
        };
        let rid = self.request_id();
        self.record_failure(
            airlock_types::Action::EgressConnection,
            who,
            reason,
            &rid,
            what.into(),
        );
    }

    pub(super) async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<ProxyBody> {
        let rid = self.request_id();
        let target = req.uri().to_string();
        if target.len() > self.cfg.limits.max_request_line {
            self.record_failure(
                airlock_types::Action::EgressRequest,
                "<request target too long>",
                Reason::LimitExceeded,
                &rid,
                format!("request target of {} bytes", target.len()),
            );
            return respond::error(StatusCode::URI_TOO_LONG, Reason::LimitExceeded);
        }
        if req.method() == Method::CONNECT {
            return self.connect(req, rid).await;
        }
        let Some(scheme_str) = req.uri().scheme_str() else {
            self.record_failure(
                airlock_types::Action::EgressRequest,
                "<origin-form request>",
                Reason::MalformedRequest,
                &rid,
                "request target is not an absolute URL".into(),
            );
            return respond::error(StatusCode::BAD_REQUEST, Reason::MalformedRequest);
        };
        let Some(scheme) = Scheme::parse(scheme_str) else {
            self.record_failure(
                airlock_types::Action::EgressRequest,
                "<unsupported scheme>",
                Reason::MalformedRequest,
                &rid,
                "scheme is not http or https".into(),
            );
            return respond::error(StatusCode::BAD_REQUEST, Reason::MalformedRequest);
        };
        // Userinfo is kept for the policy to judge (`allow_userinfo`).
        let url = match airlock_policy::parse_url_with_userinfo(&target) {
            Ok(u) => u,
            Err(e) => {
                let d = self.deny_invalid_url(&rid, &e);
                return respond::denied(d);
            }
        };
        debug_assert_eq!(url.scheme, scheme);
        self.forward(req, url, None, rid, None).await
    }
}

/// When the first request line in `buf` has an absolute-form target whose
/// host is percent-encoded, replace the target by its normalized URL (same
/// scheme, decoded and canonical host, port, path and query; no userinfo or
/// fragment). Any other line is left alone for the HTTP layer to judge. An
/// error: the host is not valid even once decoded.
pub(super) fn rewrite_encoded_host(buf: &mut Vec<u8>) -> Result<(), airlock_policy::HostError> {
    let Some(nl) = buf.iter().position(|b| *b == b'\n') else {
        return Ok(());
    };
    let end = if nl > 0 && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    let line = &buf[..end];
    let mut parts = line.splitn(3, |b| *b == b' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Ok(());
    };
    let Ok(target) = std::str::from_utf8(target) else {
        return Ok(());
    };
    let Some((scheme, rest)) = target.split_once("://") else {
        return Ok(());
    };
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return Ok(());
    }
    let authority = &rest[..rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len())];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if !host_port.contains('%') {
        return Ok(());
    }
    let url = airlock_policy::parse_url(target)?;
    let mut line = Vec::with_capacity(end + 16);
    line.extend_from_slice(method);
    line.push(b' ');
    line.extend_from_slice(resource(url.scheme, &url.host, url.port, &url.path).as_bytes());
    if let Some(q) = &url.query {
        line.push(b'?');
        line.extend_from_slice(q.as_bytes());
    }
    line.push(b' ');
    line.extend_from_slice(version);
    buf.splice(..end, line);
    Ok(())
}
