//! The proxy and its shared state, split by stage: `listener` (accept,
//! first line, the HTTP/1.1 connection), `connect` (the CONNECT decision,
//! blind tunnels, the ClientHello check), `intercept` (TLS termination and
//! the requests inside), `forward` (deciding and forwarding one request,
//! upstream pool and dial, upgrades), and `hooks` (running the hook chain
//! around a forwarded request). This module holds
//! [`Proxy`], the state every stage shares, and the audit helpers.

mod connect;
mod forward;
mod hooks;
mod intercept;
mod listener;

use crate::burst::{self, Admit, Bursts};
use crate::ca::CertAuthority;
use crate::config::ProxyConfig;
use crate::creds::Credentials;
use crate::error::ProxyError;
use crate::pool::Pool;
use crate::resolve::Resolver;
use crate::upstream;
use airlock_broker::Broker;
use airlock_hook::Hook;
use airlock_policy::{Host, Scheme};
use airlock_types::{
    Action, Actor, ActorKind, AuditEvent, Decision, EventResult, EventSink, Reason, RequestId,
    RunContext, RunId, TenantId,
};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use tokio::io::{AsyncRead, AsyncWrite};
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
    /// The run's context (tenant, agent, run, who started it), stamped on
    /// every event and handed to every hook.
    context: Option<RunContext>,
    ca: CertAuthority,
    resolver: Resolver,
    tls_client: Arc<rustls::ClientConfig>,
    tls_client_h1: Arc<rustls::ClientConfig>,
    pool: Pool,
    conns: Arc<Semaphore>,
    boot: u64,
    counter: AtomicU64,
    /// The hooks on every request the proxy can read, in request order
    /// (the credentials hook, when there is one, last).
    hooks: Vec<Arc<dyn Hook>>,
    /// Whether the last hook is the credentials hook.
    has_creds: bool,
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

/// Whose traffic a proxy carries: stamped on every audit event it records
/// and handed to every hook.
#[derive(Debug, Clone)]
pub enum Scope {
    /// A proxy serving a tenant outside any run (`airlock proxy`).
    Tenant(TenantId),
    /// A proxy serving one run.
    Run(RunContext),
}

impl From<RunContext> for Scope {
    fn from(ctx: RunContext) -> Self {
        Scope::Run(ctx)
    }
}

impl Proxy {
    /// Build a proxy for `scope`: generates the in-memory interception CA,
    /// the upstream TLS configuration and the resolver.
    pub fn new(
        cfg: ProxyConfig,
        policy: Arc<airlock_policy::EgressPolicy>,
        sink: Arc<dyn EventSink>,
        scope: Scope,
    ) -> Result<Self, ProxyError> {
        Proxy::build(cfg, policy, sink, scope, None)
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
        run: RunContext,
        broker: Arc<Broker>,
    ) -> Result<Self, ProxyError> {
        let creds = Credentials::new(broker, run.run.clone(), sink.clone())
            .map_err(ProxyError::Scrubber)?;
        Proxy::build(cfg, policy, sink, Scope::Run(run), Some(creds))
    }

    /// Add a [`Hook`] on every request the proxy can read (plain requests
    /// and requests inside intercepted tunnels). Hooks run on the request in
    /// the order they were added and on the response in reverse order; the
    /// credentials hook of [`Proxy::with_credentials`] stays last on the
    /// request and first on the response, so no other hook sees a real
    /// secret value. Only before the proxy is cloned or serves:
    /// [`ProxyError::HookAfterStart`] otherwise.
    pub fn with_hook(mut self, hook: Arc<dyn Hook>) -> Result<Self, ProxyError> {
        let inner = Arc::get_mut(&mut self.inner).ok_or(ProxyError::HookAfterStart)?;
        let at = inner.hooks.len() - usize::from(inner.has_creds);
        inner.hooks.insert(at, hook);
        Ok(self)
    }

    fn build(
        cfg: ProxyConfig,
        policy: Arc<airlock_policy::EgressPolicy>,
        sink: Arc<dyn EventSink>,
        scope: Scope,
        creds: Option<Credentials>,
    ) -> Result<Self, ProxyError> {
        let (tenant, context) = match scope {
            Scope::Tenant(t) => (t, None),
            Scope::Run(c) => (c.tenant.clone(), Some(c)),
        };
        let run = context.as_ref().map(|c| c.run.clone());
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
                tenant,
                context,
                ca,
                resolver,
                tls_client,
                tls_client_h1: Arc::new(h1_only),
                pool: Pool::default(),
                conns,
                boot,
                counter: AtomicU64::new(0),
                has_creds: creds.is_some(),
                hooks: creds
                    .map(|c| Arc::new(c) as Arc<dyn Hook>)
                    .into_iter()
                    .collect(),
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

/// `scheme://host[:port]/path`: no userinfo, no query, no fragment.
/// Built by hand, not with `format!`: it runs for every request.
fn resource(scheme: Scheme, host: &Host, port: u16, path: &str) -> String {
    let mut out =
        String::with_capacity(scheme.as_str().len() + 3 + host_len(host) + 6 + path.len());
    out.push_str(scheme.as_str());
    out.push_str("://");
    push_host(&mut out, host);
    if port != scheme.default_port() {
        out.push(':');
        push_decimal(&mut out, u64::from(port));
    }
    out.push_str(path);
    out
}

/// The audit resource for a client connection: its address without the
/// (ever-changing) source port, so repeated failures of one client are
/// identical and aggregate.
fn client(peer: SocketAddr) -> String {
    format!("client {}", peer.ip())
}

fn authority_string(scheme: Scheme, host: &Host, port: u16) -> String {
    let mut out = String::with_capacity(host_len(host) + 6);
    push_host(&mut out, host);
    if port != scheme.default_port() {
        out.push(':');
        push_decimal(&mut out, u64::from(port));
    }
    out
}

/// A host's text without URL brackets (an IPv6 address bare), as TLS names
/// and pool keys use it.
fn host_name(host: &Host) -> String {
    match host {
        Host::Domain(d) => d.clone(),
        Host::Ip(IpAddr::V4(a)) => {
            let mut out = String::with_capacity(15);
            push_ipv4(&mut out, *a);
            out
        }
        Host::Ip(ip) => ip.to_string(),
    }
}

/// An upper bound of the host's text length (for capacity only).
fn host_len(host: &Host) -> usize {
    match host {
        Host::Domain(d) => d.len(),
        Host::Ip(_) => 41,
    }
}

/// Append the host as [`Host`]'s `Display` writes it (IPv6 in brackets).
fn push_host(out: &mut String, host: &Host) {
    match host {
        Host::Domain(d) => out.push_str(d),
        Host::Ip(IpAddr::V4(a)) => push_ipv4(out, *a),
        Host::Ip(IpAddr::V6(a)) => {
            use std::fmt::Write as _;
            let _ = write!(out, "[{a}]");
        }
    }
}

/// Dotted decimal, as `Ipv4Addr`'s `Display` writes it.
fn push_ipv4(out: &mut String, a: std::net::Ipv4Addr) {
    for (i, o) in a.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        push_decimal(out, u64::from(o));
    }
}

fn push_decimal(out: &mut String, n: u64) {
    push_digits(out, n, 10);
}

fn push_hex(out: &mut String, n: u64) {
    push_digits(out, n, 16);
}

/// `n` in base `radix` (10 or 16, lowercase), without leading zeros.
fn push_digits(out: &mut String, mut n: u64, radix: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        // `n % radix` < 16: always an index of DIGITS.
        buf[i] = DIGITS[(n % radix) as usize];
        n /= radix;
        if n == 0 {
            break;
        }
    }
    for &b in &buf[i..] {
        out.push(char::from(b));
    }
}

impl Inner {
    fn request_id(&self) -> RequestId {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut id = String::with_capacity(33);
        push_hex(&mut id, self.boot);
        id.push('-');
        push_hex(&mut id, n);
        RequestId::new(id).expect("invariant: hex digits and '-' form a valid id")
    }

    fn event(
        &self,
        action: Action,
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
        if let Some(a) = self.context.as_ref().and_then(|c| c.agent.as_ref()) {
            ev = ev.with_agent(a.clone());
        }
        ev
    }

    /// Stamp the run's context (tenant, agent, run) on an event a hook made.
    fn stamp(&self, ev: AuditEvent) -> AuditEvent {
        match &self.context {
            Some(c) => ev.with_context(c),
            None => ev,
        }
    }

    /// Record a decision. If the sink refuses, the decision becomes a denial
    /// with `audit_unavailable`: nothing passes unrecorded.
    fn record_decision(
        &self,
        action: Action,
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
        self.record_failure(Action::EgressRequest, resource, reason, rid, e.to_string());
        let d = Decision::deny(reason);
        self.record_decision(Action::EgressRequest, resource, d, rid, &[])
    }

    /// Record a failure that is not a policy decision (malformed input, a
    /// limit, an upstream failure). Best effort: the action is refused anyway.
    /// Identical failures within a second are aggregated (see `burst`): the
    /// first is recorded at once, the repeats as one record with a count.
    fn record_failure(
        &self,
        action: Action,
        resource: &str,
        reason: Reason,
        rid: &RequestId,
        detail: String,
    ) {
        let key = burst::Key {
            action,
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
                    key.action,
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
}

/// Resolves once [`Proxy::drain`] has begun (or the proxy is gone).
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    // The borrow guard is dropped here, not held across the caller's awaits.
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// The hand-built strings are exactly what `format!` made before.
    #[test]
    fn strings_match_format() {
        let hosts = [
            Host::Domain("example.com".into()),
            Host::Ip(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1))),
            Host::Ip(IpAddr::V4(Ipv4Addr::new(0, 255, 10, 100))),
            Host::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            Host::Ip(IpAddr::V6("2001:db8::1:0".parse().unwrap())),
        ];
        for scheme in [Scheme::Http, Scheme::Https] {
            for host in &hosts {
                for port in [80u16, 443, 1, 8080, 65535] {
                    let res = if port == scheme.default_port() {
                        format!("{scheme}://{host}/a?b")
                    } else {
                        format!("{scheme}://{host}:{port}/a?b")
                    };
                    assert_eq!(resource(scheme, host, port, "/a?b"), res);
                    let auth = if port == scheme.default_port() {
                        host.to_string()
                    } else {
                        format!("{host}:{port}")
                    };
                    assert_eq!(authority_string(scheme, host, port), auth);
                }
                let name = match host {
                    Host::Domain(d) => d.clone(),
                    Host::Ip(ip) => ip.to_string(),
                };
                assert_eq!(host_name(host), name);
            }
        }
        for n in [0u64, 9, 10, 255, 0xdead_beef, u64::MAX] {
            let mut s = String::new();
            push_hex(&mut s, n);
            assert_eq!(s, format!("{n:x}"));
            s.clear();
            push_decimal(&mut s, n);
            assert_eq!(s, n.to_string());
        }
    }
}
