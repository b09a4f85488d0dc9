//! The listener, the per-connection HTTP/1.1 server, and the three paths a
//! request can take: absolute-form forwarding, a blind CONNECT tunnel, or an
//! intercepted CONNECT tunnel whose inner requests are each decided.

use crate::body::{OnEnd, Prefixed, ProxyBody, TimeoutBody, empty};
use crate::burst::{self, Admit, Bursts};
use crate::ca::CertAuthority;
use crate::config::ProxyConfig;
use crate::creds::Credentials;
use crate::error::ProxyError;
use crate::glue::{self, ConnectPlan, RequestFacts};
use crate::hello::{self, Hello};
use crate::idle::{SpliceEnd, splice};
use crate::pool::{Pool, PoolKey, Sender};
use crate::resolve::Resolver;
use crate::respond;
use crate::upstream::{self, DialError};
use airlock_broker::{Broker, Destination};
use airlock_policy::{Host, Scheme};
use airlock_types::{
    Actor, ActorKind, AuditEvent, Decision, EventResult, EventSink, Reason, RequestId, RunId,
    TenantId,
};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The egress proxy. Cheap to clone: clones share the CA, the leaf cache, the
/// resolver, the connection pool and the connection limit.
#[derive(Clone, Debug)]
pub struct Proxy {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cfg: ProxyConfig,
    policy: Arc<airlock_policy::EgressPolicy>,
    sink: Arc<dyn EventSink>,
    run: Option<RunId>,
    actor: Actor,
    tenant: TenantId,
    ca: CertAuthority,
    resolver: Resolver,
    tls_client: Arc<rustls::ClientConfig>,
    tls_client_h1: Arc<rustls::ClientConfig>,
    pool: Pool,
    conns: Arc<Semaphore>,
    boot: u64,
    counter: AtomicU64,
    creds: Option<Credentials>,
    /// Set once by [`Proxy::drain`]: every connection finishes what it is
    /// doing and closes.
    stop: tokio::sync::watch::Sender<bool>,
    /// Client connections and intercepted tunnels still being served.
    active: AtomicUsize,
    /// Woken when `active` drops to zero.
    idle: tokio::sync::Notify,
    /// Repeated identical failures, aggregated per second.
    bursts: Bursts,
    /// Set once the ticker that flushes `bursts` runs.
    ticking: AtomicBool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.flush_bursts(true);
    }
}

/// Counts one served connection while alive.
struct Active(Arc<Inner>);

impl Active {
    fn new(inner: &Arc<Inner>) -> Active {
        inner.active.fetch_add(1, Ordering::SeqCst);
        Active(inner.clone())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            // notify_one keeps a permit, so a drain that starts waiting
            // just after this still sees it.
            self.0.idle.notify_one();
        }
    }
}

/// What an intercepted tunnel was allowed to reach: inner requests may only
/// go there, over the addresses checked when the tunnel was opened.
#[derive(Debug, Clone)]
struct TunnelTarget {
    host: Host,
    port: u16,
    addrs: Vec<IpAddr>,
}

impl Proxy {
    /// Build a proxy: generates the in-memory interception CA, the upstream
    /// TLS configuration and the resolver.
    pub fn new(
        cfg: ProxyConfig,
        policy: Arc<airlock_policy::EgressPolicy>,
        sink: Arc<dyn EventSink>,
        run: Option<RunId>,
    ) -> Result<Self, ProxyError> {
        Proxy::build(cfg, policy, sink, run, None)
    }

    /// A proxy for a run that holds credential handles minted by `broker`:
    /// on every request, handles in headers and the query are redeemed
    /// against the real destination and replaced by the real values (or the
    /// request is denied and audited as `credential.denied`); responses pass
    /// through a scrubber that knows the run's real values. Set
    /// [`ProxyConfig::intercept_all`] too, so that no handle can leave in a
    /// blind tunnel.
    pub fn with_credentials(
        cfg: ProxyConfig,
        policy: Arc<airlock_policy::EgressPolicy>,
        sink: Arc<dyn EventSink>,
        run: RunId,
        broker: Arc<Broker>,
    ) -> Result<Self, ProxyError> {
        let creds = Credentials::new(broker, run.clone()).map_err(ProxyError::Scrubber)?;
        Proxy::build(cfg, policy, sink, Some(run), Some(creds))
    }

    fn build(
        cfg: ProxyConfig,
        policy: Arc<airlock_policy::EgressPolicy>,
        sink: Arc<dyn EventSink>,
        run: Option<RunId>,
        creds: Option<Credentials>,
    ) -> Result<Self, ProxyError> {
        let ca = CertAuthority::generate()?;
        let tls_client = upstream::client_tls(cfg.upstream_extra_ca_pem.as_deref())?;
        let mut h1_only = (*tls_client).clone();
        h1_only.alpn_protocols = vec![b"http/1.1".to_vec()];
        let resolver = Resolver::new(&cfg.resolver)?;
        let actor = Actor::new(
            ActorKind::Agent,
            run.as_ref().map_or("proxy", |r| r.as_str()),
        );
        let boot = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let conns = Arc::new(Semaphore::new(cfg.limits.max_connections.max(1)));
        Ok(Proxy {
            inner: Arc::new(Inner {
                cfg,
                policy,
                sink,
                run,
                actor,
                tenant: TenantId::default_tenant(),
                ca,
                resolver,
                tls_client,
                tls_client_h1: Arc::new(h1_only),
                pool: Pool::default(),
                conns,
                boot,
                counter: AtomicU64::new(0),
                creds,
                stop: tokio::sync::watch::Sender::new(false),
                active: AtomicUsize::new(0),
                idle: tokio::sync::Notify::new(),
                bursts: Bursts::default(),
                ticking: AtomicBool::new(false),
            }),
        })
    }

    /// The interception CA certificate (PEM), for the sandbox trust bundle.
    /// The CA's private key never leaves this process's memory.
    pub fn ca_cert_pem(&self) -> String {
        self.inner.ca.cert_pem().to_owned()
    }

    /// What the first intercepted CONNECT to a new host pays: mint a leaf for
    /// `host` and build its TLS server configuration (then cached). For
    /// benchmarks.
    #[doc(hidden)]
    pub fn mint_leaf_for_bench(&self, host: &str) -> Result<(), ProxyError> {
        self.inner.ca.server_config(host).map(|_| ())
    }

    /// Graceful drain, after [`Proxy::serve`] has returned: every client
    /// connection and intercepted tunnel finishes the request it is serving
    /// and closes (idle keep-alive connections at once; HTTP/2 sends
    /// GOAWAY). Waits until none is left or `grace` has passed, and returns
    /// how many were still open then (they are cut off when the runtime
    /// stops). Blind tunnels and upgraded (WebSocket) streams carry no
    /// request boundaries: they are not waited for.
    pub async fn drain(&self, grace: std::time::Duration) -> usize {
        let inner = &self.inner;
        inner.stop.send_replace(true);
        let deadline = tokio::time::Instant::now() + grace;
        let open = loop {
            let open = inner.active.load(Ordering::SeqCst);
            if open == 0 {
                break 0;
            }
            if tokio::time::timeout_at(deadline, inner.idle.notified())
                .await
                .is_err()
            {
                break inner.active.load(Ordering::SeqCst);
            }
        };
        inner.flush_bursts(true);
        open
    }

    /// Serve one already-established client connection (any byte stream).
    /// Used by the fuzz targets; `serve` is the normal entry point.
    #[doc(hidden)]
    pub async fn serve_io<S>(&self, io: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let peer = SocketAddr::from(([127, 0, 0, 1], 0));
        self.inner.clone().connection(io, peer).await;
    }

    /// Serve connections accepted on `listener` until `shutdown` resolves.
    /// May be called for several listeners at once (they share limits). When
    /// `shutdown` resolves, no new connections are accepted; connections
    /// already accepted run to completion on their own tasks (call
    /// [`Proxy::drain`] to close them gracefully). Aggregated failure
    /// counts are recorded when `shutdown` resolves, and by `drain`.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ProxyError> {
        if !self.inner.ticking.swap(true, Ordering::SeqCst) {
            // Report the repeats of closed aggregation windows even when no
            // further failure comes to flush them. Ends with the proxy.
            let weak = Arc::downgrade(&self.inner);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(burst::WINDOW / 4);
                loop {
                    tick.tick().await;
                    match weak.upgrade() {
                        Some(inner) => inner.flush_bursts(false),
                        None => return,
                    }
                }
            });
        }
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => {
                    // The repeats counted so far are recorded now, while
                    // the audit sink surely still takes them (a run stops
                    // its proxy this way, without a drain).
                    self.inner.flush_bursts(true);
                    return Ok(());
                }
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let inner = self.inner.clone();
                        let _ = stream.set_nodelay(true);
                        tokio::spawn(async move { inner.connection(stream, peer).await });
                    }
                    Err(e) => {
                        // Out of descriptors or a connection reset before
                        // accept: transient. Back off briefly, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                }
            }
        }
    }
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
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

/// Remove hop-by-hop headers, including any named in `Connection`.
fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    let listed: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
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

fn is_upgrade<B>(req: &Request<B>) -> bool {
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

/// `scheme://host[:port]/path`: no userinfo, no query, no fragment.
fn resource(scheme: Scheme, host: &Host, port: u16, path: &str) -> String {
    if port == scheme.default_port() {
        format!("{scheme}://{host}{path}")
    } else {
        format!("{scheme}://{host}:{port}{path}")
    }
}

/// The audit resource for a client connection: its address without the
/// (ever-changing) source port, so repeated failures of one client are
/// identical and aggregate.
fn client(peer: SocketAddr) -> String {
    format!("client {}", peer.ip())
}

/// The protocol a request asks to upgrade to (every `Upgrade` value, joined),
/// or `None` when it does not ask (HTTP/1.1 with `Connection: upgrade`).
fn upgrade_protocol<B>(req: &Request<B>) -> Option<String> {
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
fn switched_to(headers: &HeaderMap, asked: &str) -> bool {
    let mut values = headers.get_all(header::UPGRADE).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => v
            .to_str()
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case(asked.trim())),
        _ => false,
    }
}

fn authority_string(scheme: Scheme, host: &Host, port: u16) -> String {
    if port == scheme.default_port() {
        host.to_string()
    } else {
        format!("{host}:{port}")
    }
}

impl Inner {
    fn request_id(&self) -> RequestId {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        RequestId::new(format!("{:x}-{n:x}", self.boot))
            .expect("invariant: hex digits and '-' form a valid id")
    }

    fn event(
        &self,
        action: &str,
        resource: &str,
        reason: Reason,
        result: EventResult,
        rid: &RequestId,
    ) -> AuditEvent {
        let mut ev = AuditEvent::new(
            self.tenant.clone(),
            self.actor.clone(),
            action,
            resource,
            reason,
            result,
        )
        .with_request(rid.clone());
        if let Some(r) = &self.run {
            ev = ev.with_run(r.clone());
        }
        ev
    }

    /// Record a decision. If the sink refuses, the decision becomes a denial
    /// with `audit_unavailable`: nothing passes unrecorded.
    fn record_decision(
        &self,
        action: &str,
        resource: &str,
        d: Decision,
        rid: &RequestId,
        details: &[(&str, String)],
    ) -> Decision {
        let mut ev = self
            .event(action, resource, d.reason, EventResult::Success, rid)
            .with_decision(d);
        for (k, v) in details {
            ev = ev.with_detail(k, v.clone());
        }
        match self.sink.emit(ev) {
            Ok(()) => d,
            Err(e) => {
                tracing::error!(error = %e, "audit sink refused an egress decision; denying");
                Decision::deny(Reason::AuditUnavailable)
            }
        }
    }

    /// Record a URL that cannot be parsed, both as a failure (with the
    /// parser's detail) and as the deny decision the client is answered with:
    /// the error's own reason (`invalid_host`, `malformed_request`,
    /// `ambiguous_path`, `userinfo_in_url`), as `airlock policy check` says.
    fn deny_invalid_url(&self, rid: &RequestId, e: &airlock_policy::HostError) -> Decision {
        let resource = "<invalid URL>";
        let reason = e.reason();
        self.record_failure("egress.request", resource, reason, rid, e.to_string());
        let d = Decision::deny(reason);
        self.record_decision("egress.request", resource, d, rid, &[])
    }

    /// Record a failed step of the client-side TLS handshake: the client's
    /// TLS error, or `None` when the step did not finish in time.
    fn client_tls_failed(&self, res: &str, rid: &RequestId, error: Option<std::io::Error>) {
        let (reason, detail) = match error {
            Some(e) => (Reason::MalformedRequest, format!("client TLS: {e}")),
            None => (
                Reason::LimitExceeded,
                "client TLS handshake timed out".into(),
            ),
        };
        self.record_failure("egress.tls", res, reason, rid, detail);
    }

    /// Record a failure that is not a policy decision (malformed input, a
    /// limit, an upstream failure). Best effort: the action is refused anyway.
    /// Identical failures within a second are aggregated (see `burst`): the
    /// first is recorded at once, the repeats as one record with a count.
    fn record_failure(
        &self,
        action: &str,
        resource: &str,
        reason: Reason,
        rid: &RequestId,
        detail: String,
    ) {
        let key = burst::Key {
            action: action.to_owned(),
            resource: resource.to_owned(),
            reason,
            detail,
        };
        let (admit, closed) = self.bursts.admit(key.clone(), std::time::Instant::now());
        self.emit_repeats(closed);
        if admit == Admit::Record {
            let ev = self
                .event(action, resource, reason, EventResult::Failure, rid)
                .with_detail("detail", key.detail);
            if let Err(e) = self.sink.emit(ev) {
                tracing::error!(error = %e, "audit sink refused a failure record");
            }
        }
    }

    /// Record the repeats counted in closed aggregation windows (all open
    /// windows with `all`).
    fn flush_bursts(&self, all: bool) {
        let closed = self.bursts.flush(std::time::Instant::now(), all);
        self.emit_repeats(closed);
    }

    fn emit_repeats(&self, closed: Vec<(burst::Key, u64)>) {
        for (key, repeats) in closed {
            let rid = self.request_id();
            let ev = self
                .event(
                    &key.action,
                    &key.resource,
                    key.reason,
                    EventResult::Failure,
                    &rid,
                )
                .with_detail("detail", key.detail)
                .with_detail("repeated", repeats)
                .with_detail("window_ms", burst::WINDOW.as_millis() as u64);
            if let Err(e) = self.sink.emit(ev) {
                tracing::error!(error = %e, "audit sink refused an aggregated failure record");
            }
        }
    }

    fn h1_server(&self) -> hyper::server::conn::http1::Builder {
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

    async fn connection<S>(self: Arc<Self>, mut stream: S, peer: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Ok(_permit) = self.conns.clone().try_acquire_owned() else {
            let rid = self.request_id();
            self.record_failure(
                "egress.connection",
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
        let stream = match self.first_line(stream, peer).await {
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
    /// `invalid_host` and closed. `None`: the connection is done.
    async fn first_line<S>(&self, mut stream: S, peer: SocketAddr) -> Option<Prefixed<S>>
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
                let who = client(peer);
                let what = "request head not received in time".into();
                self.record_failure("egress.connection", &who, Reason::LimitExceeded, &rid, what);
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
    fn connection_error(&self, e: &hyper::Error, who: &str) {
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
        self.record_failure("egress.connection", who, reason, &rid, what.into());
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<ProxyBody> {
        let rid = self.request_id();
        let target = req.uri().to_string();
        if target.len() > self.cfg.limits.max_request_line {
            self.record_failure(
                "egress.request",
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
                "egress.request",
                "<origin-form request>",
                Reason::MalformedRequest,
                &rid,
                "request target is not an absolute URL".into(),
            );
            return respond::error(StatusCode::BAD_REQUEST, Reason::MalformedRequest);
        };
        let Some(scheme) = Scheme::parse(scheme_str) else {
            self.record_failure(
                "egress.request",
                "<unsupported scheme>",
                Reason::MalformedRequest,
                &rid,
                "scheme is not http or https".into(),
            );
            return respond::error(StatusCode::BAD_REQUEST, Reason::MalformedRequest);
        };
        let url = match airlock_policy::parse_url(&target) {
            Ok(u) => u,
            Err(e) => {
                let d = self.deny_invalid_url(&rid, &e);
                return respond::denied(d);
            }
        };
        debug_assert_eq!(url.scheme, scheme);
        self.forward(req, url, None, rid, None).await
    }

    /// The addresses of `host`: an IP literal is itself; a name is resolved,
    /// unless the policy already refuses the name itself (mixed scripts,
    /// look-alikes), in which case no DNS query leaves for it and the
    /// decision names the host's reason.
    async fn lookup(&self, host: &Host) -> Option<Vec<IpAddr>> {
        match host {
            Host::Ip(ip) => Some(vec![*ip]),
            Host::Domain(_) if self.policy.check_host(host).is_err() => None,
            Host::Domain(name) => self.resolver.resolve(name).await,
        }
    }

    /// Decide one request (absolute-form, or inside an intercepted tunnel)
    /// and, if allowed, forward it to exactly a checked address. `known`:
    /// the addresses already checked for an intercepted tunnel; `None`: the
    /// name is resolved here, and only when the policy could allow the
    /// request (a name refused anyway is never looked up).
    async fn forward(
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
        let (decision, addrs) = match known {
            Some(a) => (
                glue::decide_request(&self.policy, &facts, Some(&a)),
                Some(a),
            ),
            None => match glue::decide_unresolved(&self.policy, &facts) {
                // Decided on the name alone; an allowed IP literal is its
                // own address (no DNS).
                Some(d) if d.is_allow() => (d, self.lookup(&url.host).await),
                Some(d) => (d, None),
                None => {
                    let a = self.lookup(&url.host).await;
                    (glue::decide_request(&self.policy, &facts, a.as_deref()), a)
                }
            },
        };
        let mut details = Vec::new();
        if tunnel.is_some() {
            details.push(("via", "intercepted_tunnel".to_owned()));
        }
        if url.query.is_some() {
            // That there was one, never its text.
            details.push(("query", "true".to_owned()));
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
        let decision = self.record_decision("egress.request", &res, decision, &rid, &details);
        if !decision.is_allow() {
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
        let tls_name = match &url.host {
            Host::Domain(d) => d.clone(),
            Host::Ip(ip) => ip.to_string(),
        };
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
        let upgrade = asked.is_some();
        let is_head = req.method() == Method::HEAD;
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
        if let Some(creds) = &self.creds {
            let dest = Destination {
                scheme: url.scheme.as_str(),
                host: &tls_name,
                port: url.port,
                method: parts.method.as_str(),
                path: &url.path,
            };
            match creds.inject(&mut parts.headers, &url.path, url.query.as_deref(), &dest) {
                Ok(placed) => {
                    let sink = self.sink.as_ref();
                    if creds
                        .record_uses(sink, &self.tenant, &rid, &dest, &placed.uses)
                        .is_err()
                    {
                        let d = Decision::deny(Reason::AuditUnavailable);
                        return refuse_with_body(body, respond::denied(d));
                    }
                    if let Some(q) = placed.query {
                        path_and_query = format!("{}?{}", url.path, q.expose());
                    }
                }
                Err(denial) => {
                    let ev = denial
                        .audit_event(self.tenant.clone(), creds.run.clone(), &dest)
                        .with_request(rid.clone());
                    let d = match self.sink.emit(ev) {
                        Ok(()) => Decision::deny(denial.reason),
                        Err(e) => {
                            tracing::error!(error = %e, "audit sink refused a credential denial");
                            Decision::deny(Reason::AuditUnavailable)
                        }
                    };
                    return refuse_with_body(body, respond::denied(d));
                }
            }
        }
        let body: ProxyBody = TimeoutBody::new(body, self.cfg.timeouts.body_read).boxed();

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
                    "egress.upstream",
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
            let idle = self.cfg.timeouts.idle;
            tokio::spawn(async move {
                if let (Ok(c), Ok(u)) = (client_upgrade.await, upstream_upgrade.await) {
                    let _ = splice(TokioIo::new(c), TokioIo::new(u), idle).await;
                }
            });
            let (mut parts, _) = resp.into_parts();
            if let Some(creds) = &self.creds {
                // The same header scrubbing as any response (the body is
                // empty; the frames after it are not scrubbed).
                let _ = creds.scrub_response(&mut parts.headers, empty(), true);
            }
            return Response::from_parts(parts, empty());
        }

        let (mut parts, body) = resp.into_parts();
        if let Some(creds) = &self.creds
            && let Err(detail) = creds.check_response(parts.status, &parts.headers, is_head)
        {
            let reason = Reason::UnscrubbableResponse;
            self.record_failure("egress.response", &res, reason, &rid, detail);
            return respond::error(StatusCode::BAD_GATEWAY, reason);
        }
        strip_hop_by_hop(&mut parts.headers, false);
        let body = TimeoutBody::new(body, self.cfg.timeouts.body_read);
        let body: ProxyBody = match sender {
            Sender::H1(s) if !upgrade => {
                let me = self.clone();
                OnEnd::new(body, move || me.pool.checkin(key, addr, Sender::H1(s))).boxed()
            }
            _ => body.boxed(),
        };
        let body = match &self.creds {
            Some(creds) => creds.scrub_response(&mut parts.headers, body, is_head),
            None => body,
        };
        Response::from_parts(parts, body)
    }

    /// Refuse a 101 that does not match the request's upgrade: the upstream
    /// connection is dropped (closed), the client gets a 502.
    fn upgrade_mismatch(&self, res: &str, rid: &RequestId, detail: &str) -> Response<ProxyBody> {
        let d = self.record_decision(
            "egress.upgrade",
            res,
            Decision::deny(Reason::UpgradeMismatch),
            rid,
            &[("detail", detail.to_owned())],
        );
        respond::error(StatusCode::BAD_GATEWAY, d.reason)
    }

    fn upstream_failed(&self, res: &str, rid: &RequestId, e: DialError) -> Response<ProxyBody> {
        let (reason, detail) = match e {
            DialError::Unreachable(d) => (Reason::UpstreamUnreachable, d),
            DialError::Tls(d) => (Reason::UpstreamTlsFailed, d),
        };
        self.record_failure("egress.upstream", res, reason, rid, detail);
        respond::error(StatusCode::BAD_GATEWAY, reason)
    }

    /// Dial a checked address, add TLS when `https`, and handshake HTTP.
    async fn open(
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

    async fn connect(
        self: Arc<Self>,
        req: Request<Incoming>,
        rid: RequestId,
    ) -> Response<ProxyBody> {
        let raw = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default();
        let parsed = match raw.strip_suffix(":0") {
            Some(h) => airlock_policy::parse_authority(h, 0).map(|(h, _)| (h, 0)),
            None => airlock_policy::parse_authority(&raw, 0),
        };
        let (host, port) = match parsed {
            // A CONNECT target must name its port; an explicit port 0 is
            // judged like any other (the host decides), then fails to dial.
            Ok((h, p)) if p != 0 || raw.ends_with(":0") => (h, p),
            Ok(_) | Err(_) => {
                let d = self.record_decision(
                    "egress.connect",
                    "<invalid CONNECT target>",
                    Decision::deny(Reason::InvalidHost),
                    &rid,
                    &[("detail", "CONNECT target is not host:port".into())],
                );
                return respond::denied(d);
            }
        };
        let res = format!("{}:{port}", host);
        let intercept_all = self.cfg.intercept_all;
        // Refused on the name (host, port, rules, mode): no DNS query.
        let (plan, addrs) =
            match glue::decide_connect_unresolved(&self.policy, &host, port, intercept_all) {
                Some(ConnectPlan::Deny(d)) => (ConnectPlan::Deny(d), None),
                // An IP literal: its own address.
                Some(p) => (p, self.lookup(&host).await),
                None => {
                    let a = self.lookup(&host).await;
                    let p = glue::decide_connect(
                        &self.policy,
                        &host,
                        port,
                        a.as_deref(),
                        intercept_all,
                    );
                    (p, a)
                }
            };
        let (decision, mode) = match plan {
            ConnectPlan::Deny(d) => (d, "deny"),
            ConnectPlan::Tunnel(d) => (d, "tunnel"),
            ConnectPlan::Intercept(d) => (d, "intercept"),
        };
        let decision = self.record_decision(
            "egress.connect",
            &res,
            decision,
            &rid,
            &[("mode", mode.into())],
        );
        let (true, Some(addrs)) = (decision.is_allow(), addrs) else {
            return respond::denied(if decision.is_allow() {
                Decision::deny(Reason::UnresolvableHost)
            } else {
                decision
            });
        };
        match plan {
            ConnectPlan::Deny(_) => respond::denied(decision),
            ConnectPlan::Tunnel(_) => {
                let target = TunnelTarget { host, port, addrs };
                self.tunnel(req, &res, target, rid).await
            }
            ConnectPlan::Intercept(_) => {
                let target = TunnelTarget { host, port, addrs };
                let this = self.clone();
                tokio::spawn(async move {
                    match hyper::upgrade::on(req).await {
                        Ok(up) => this.intercept(TokioIo::new(up), target, res, rid).await,
                        Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
                    }
                });
                Response::new(empty())
            }
        }
    }

    /// A blind tunnel: dial the checked address first, answer 200 only then.
    /// Nothing is relayed until the client's first bytes are a TLS
    /// ClientHello naming the CONNECT host (they are then replayed to the
    /// upstream): plaintext, another protocol or TLS to another name is
    /// refused (`tunnel_not_tls`, `sni_mismatch`) and the tunnel closed.
    async fn tunnel(
        self: Arc<Self>,
        req: Request<Incoming>,
        res: &str,
        target: TunnelTarget,
        rid: RequestId,
    ) -> Response<ProxyBody> {
        let sockets: Vec<SocketAddr> = target
            .addrs
            .iter()
            .map(|ip| SocketAddr::new(*ip, target.port))
            .collect();
        let tcp = match upstream::dial(&sockets, self.cfg.timeouts.connect).await {
            Ok((tcp, _)) => tcp,
            Err(e) => return self.upstream_failed(res, &rid, e),
        };
        let idle = self.cfg.timeouts.idle;
        let this = self.clone();
        let res = res.to_owned();
        tokio::spawn(async move {
            let up = match hyper::upgrade::on(req).await {
                Ok(up) => up,
                Err(e) => return tracing::debug!(error = %e, "CONNECT upgrade failed"),
            };
            let Some(client) = this
                .tunnel_hello(TokioIo::new(up), &target, &res, &rid, true)
                .await
            else {
                return;
            };
            {
                match splice(client, tcp, idle).await {
                    SpliceEnd::Idle => {
                        this.record_failure(
                            "egress.connect",
                            &res,
                            Reason::LimitExceeded,
                            &rid,
                            "tunnel idle timeout".into(),
                        );
                    }
                    SpliceEnd::Done(up, down) => tracing::debug!(%res, up, down, "tunnel closed"),
                    SpliceEnd::Error(e) => {
                        tracing::debug!(%res, error = %e, "tunnel ended with an error")
                    }
                }
            }
        });
        Response::new(empty())
    }

    /// Read a tunnel's first bytes: a TLS ClientHello for the tunnel's host
    /// gives the client stream back with those bytes to replay. Anything
    /// else is refused and audited as an `egress.tls` decision, and the
    /// client (when it spoke HTTP) answered with a 403. A missing server
    /// name is accepted for an IP-literal CONNECT (clients send none for
    /// addresses) and, when `blind` is false, for an intercepted tunnel (the
    /// leaf is minted for the CONNECT host and every request inside is
    /// judged); a blind tunnel to a name requires it.
    async fn tunnel_hello<I>(
        &self,
        mut io: I,
        target: &TunnelTarget,
        res: &str,
        rid: &RequestId,
        blind: bool,
    ) -> Option<Prefixed<I>>
    where
        I: AsyncRead + AsyncWrite + Unpin,
    {
        let (buf, hello) = hello::read_client_hello(&mut io, self.cfg.timeouts.tls_handshake).await;
        let mode = if blind { "tunnel" } else { "intercept" };
        let host_name = match &target.host {
            Host::Domain(d) => Some(d.as_str()),
            Host::Ip(_) => None,
        };
        let (reason, detail, answer_http) = match hello {
            Hello::Tls { sni: Some(sni) } => match host_name {
                Some(h) if hello::sni_matches(&sni, h) => return Some(Prefixed::new(buf, io)),
                // An IP-literal CONNECT: a server name would be a name
                // the policy never judged.
                _ => (
                    Reason::SniMismatch,
                    "the ClientHello names another server than the CONNECT host".to_owned(),
                    false,
                ),
            },
            Hello::Tls { sni: None } if host_name.is_none() || !blind => {
                return Some(Prefixed::new(buf, io));
            }
            Hello::Tls { sni: None } => (
                Reason::SniMismatch,
                "the ClientHello names no server (SNI required for a tunnel to a name)".to_owned(),
                false,
            ),
            Hello::NotTls { detail, looks_http } => (Reason::TunnelNotTls, detail, looks_http),
            Hello::Incomplete { detail } => (Reason::TunnelNotTls, detail, false),
            Hello::Closed => {
                tracing::debug!(%res, "client closed the tunnel before sending anything");
                return None;
            }
        };
        let d = self.record_decision(
            "egress.tls",
            res,
            Decision::deny(reason),
            rid,
            &[("mode", mode.to_owned()), ("detail", detail)],
        );
        if answer_http {
            let _ = tokio::time::timeout(
                self.cfg.timeouts.header_read,
                io.write_all(&respond::raw_denied(d)),
            )
            .await;
        }
        let _ = io.shutdown().await;
        None
    }

    /// Terminate the client's TLS with a leaf for the CONNECT host, then
    /// serve HTTP/2 or HTTP/1.1 inside, deciding every request.
    async fn intercept<I>(self: Arc<Self>, io: I, target: TunnelTarget, res: String, rid: RequestId)
    where
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
                    "egress.tls",
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
    async fn inner_request(
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
                "egress.request",
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
                        "egress.request",
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
                    "egress.request",
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

/// When the first request line in `buf` has an absolute-form target whose
/// host is percent-encoded, replace the target by its normalized URL (same
/// scheme, decoded and canonical host, port, path and query; no userinfo or
/// fragment). Any other line is left alone for the HTTP layer to judge. An
/// error: the host is not valid even once decoded.
fn rewrite_encoded_host(buf: &mut Vec<u8>) -> Result<(), airlock_policy::HostError> {
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

/// Resolves once [`Proxy::drain`] has begun (or the proxy is gone).
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    // The borrow guard is dropped here, not held across the caller's awaits.
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
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
fn refuse_with_body(body: Incoming, resp: Response<ProxyBody>) -> Response<ProxyBody> {
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
async fn drain(body: &mut Incoming, max: usize, time: std::time::Duration) {
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
async fn handshake<I>(io: I, h2: bool, upgrade: bool) -> Result<Sender, DialError>
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
