//! The back: connections to tool servers. A stdio server is started by a
//! [`Launcher`] (the runtime starts each in its own sandbox) and spoken to
//! over its pipes; an HTTP server is reached with one POST per message on
//! kept-alive connections, each dialed only after the server's egress
//! policy allowed its URL and every address the name resolves to (the
//! connection dials only a checked address). Plain `http://` is refused
//! for these POSTs (`write_requires_https`) unless every address is a
//! loopback one: the messages then never leave the machine.
//!
//! A connection that dies fails every call waiting on it
//! (`tool_server_failed`); the next use starts a new one. A call that
//! times out stops its connection (a stdio server's sandbox is killed).
//!
//! A server's `notifications/tools/list_changed` bumps the connection's
//! [`Conn::tools_epoch`] in the reader, before any later message of that
//! server is delivered: a response that follows the notification can never
//! be acted on with the definitions cached before it.

use crate::config::{ServerConfig, Transport};
use crate::jsonrpc;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
use tokio::sync::{mpsc, oneshot};

/// The protocol revision Airlock speaks to tool servers.
pub const UPSTREAM_PROTOCOL_VERSION: &str = "2025-11-25";

/// A started stdio server: its pipes and how to stop it.
pub struct Pipes {
    /// The server's stdin.
    pub stdin: std::fs::File,
    /// The server's stdout.
    pub stdout: std::fs::File,
    /// Stops the server (kills its sandbox); called when the connection is
    /// dropped or declared hung.
    pub stop: Box<dyn FnOnce() + Send>,
    /// The values of the vault secrets the server was granted, by name:
    /// a value in a result becomes `[SECRET:name]`.
    pub known_secrets: Vec<(String, airlock_types::Secret<String>)>,
}

impl std::fmt::Debug for Pipes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipes").finish_non_exhaustive()
    }
}

/// Starts stdio servers (blocking; called on a blocking thread).
pub trait Launcher: Send + Sync + std::fmt::Debug {
    /// Start `server` and hand back its pipes.
    fn launch(&self, server: &ServerConfig) -> Result<Pipes, String>;
}

/// Why a server could not answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// The server could not be started or reached.
    #[error("server {server} could not be started: {message}")]
    Start {
        /// The server.
        server: String,
        /// Why.
        message: String,
    },
    /// Its egress policy refuses its URL.
    #[error("server {server}: its URL is refused by its egress policy ({reason})")]
    Refused {
        /// The server.
        server: String,
        /// The policy's reason code.
        reason: String,
    },
    /// It exited, closed its pipe or answered with garbage.
    #[error("server {server} failed: {message}")]
    Failed {
        /// The server.
        server: String,
        /// What happened.
        message: String,
    },
    /// It did not answer in time.
    #[error("server {server} did not answer within {secs}s")]
    Timeout {
        /// The server.
        server: String,
        /// The limit.
        secs: u64,
    },
}

type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, String>>>>>;

/// One live connection.
#[derive(Debug)]
pub struct Conn {
    server: String,
    next_id: AtomicU64,
    alive: Arc<AtomicBool>,
    epoch: Arc<AtomicU64>,
    kind: ConnKind,
}

enum ConnKind {
    Stdio {
        tx: mpsc::Sender<Vec<u8>>,
        waiters: Waiters,
        stop: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    },
    Http(Box<HttpConn>),
}

impl std::fmt::Debug for ConnKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnKind::Stdio { .. } => f.write_str("Stdio"),
            ConnKind::Http(h) => f.debug_tuple("Http").field(&h.url).finish(),
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Conn {
    /// Is it still usable?
    pub fn alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// How many times the server announced that its tools changed; a
    /// definition cached at another epoch must be read again.
    pub fn tools_epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Stop it (a stdio server's sandbox is killed).
    pub fn kill(&self) {
        self.alive.store(false, Ordering::SeqCst);
        if let ConnKind::Stdio { stop, waiters, .. } = &self.kind {
            if let Some(f) = stop.lock().ok().and_then(|mut s| s.take()) {
                f();
            }
            fail_all(waiters, "the connection was closed");
        }
    }

    /// Every tool the server lists (`tools/list`, following `nextCursor`
    /// for at most 64 pages); entries without a string `name` are dropped.
    pub async fn list_tools(
        &self,
        server: &str,
        timeout: Duration,
    ) -> Result<Vec<Value>, UpstreamError> {
        let mut out = Vec::new();
        let mut cursor: Option<Value> = None;
        for _ in 0..64 {
            let params = cursor.take().map_or(json!({}), |c| json!({ "cursor": c }));
            let r = self.request("tools/list", params, timeout).await?;
            let tools = r
                .pointer("/result/tools")
                .and_then(Value::as_array)
                .ok_or_else(|| UpstreamError::Failed {
                    server: server.to_owned(),
                    message: "tools/list answered without tools".into(),
                })?;
            out.extend(
                tools
                    .iter()
                    .filter(|t| t.get("name").is_some_and(Value::is_string))
                    .cloned(),
            );
            cursor = r
                .pointer("/result/nextCursor")
                .filter(|c| !c.is_null())
                .cloned();
            if cursor.is_none() {
                break;
            }
        }
        Ok(out)
    }

    /// Send a request and wait for its response message (a result or the
    /// server's own JSON-RPC error).
    pub async fn request(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, UpstreamError> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let msg = jsonrpc::request(&json!(id), method, params);
        let failed = |message: String| UpstreamError::Failed {
            server: self.server.clone(),
            message,
        };
        let fut = async {
            match &self.kind {
                ConnKind::Stdio { tx, waiters, .. } => {
                    let (otx, orx) = oneshot::channel();
                    if let Ok(mut w) = waiters.lock() {
                        w.insert(id, otx);
                    }
                    if !self.alive() {
                        return Err(failed("the server is not running".into()));
                    }
                    let mut line = serde_json::to_vec(&msg).unwrap_or_default();
                    line.push(b'\n');
                    tx.send(line)
                        .await
                        .map_err(|_| failed("its stdin is closed".into()))?;
                    orx.await
                        .map_err(|_| failed("the server exited".into()))?
                        .map_err(failed)
                }
                ConnKind::Http(h) => h.post(&msg, Some(id)).await.map_err(failed),
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => {
                if let ConnKind::Stdio { waiters, .. } = &self.kind
                    && let Ok(mut w) = waiters.lock()
                {
                    w.remove(&id);
                }
                Err(UpstreamError::Timeout {
                    server: self.server.clone(),
                    secs: timeout.as_secs(),
                })
            }
        }
    }

    /// Send a notification.
    pub async fn notify(&self, method: &str, params: Value) -> Result<(), UpstreamError> {
        let msg = jsonrpc::notification(method, params);
        let failed = |message: String| UpstreamError::Failed {
            server: self.server.clone(),
            message,
        };
        match &self.kind {
            ConnKind::Stdio { tx, .. } => {
                let mut line = serde_json::to_vec(&msg).unwrap_or_default();
                line.push(b'\n');
                tx.send(line)
                    .await
                    .map_err(|_| failed("its stdin is closed".into()))
            }
            ConnKind::Http(h) => h.post(&msg, None).await.map(|_| ()).map_err(failed),
        }
    }
}

fn fail_all(waiters: &Waiters, why: &str) {
    if let Ok(mut w) = waiters.lock() {
        for (_, tx) in w.drain() {
            let _ = tx.send(Err(why.to_owned()));
        }
    }
}

/// Marks a server's announced tool changes: the epoch first (synchronously,
/// in the reader), then the event that tells the clients.
#[derive(Debug, Clone)]
struct Changed {
    server: String,
    epoch: Arc<AtomicU64>,
    events: mpsc::UnboundedSender<ServerEvent>,
}

impl Changed {
    fn seen(&self, method: &str) {
        if method == "notifications/tools/list_changed" {
            self.epoch.fetch_add(1, Ordering::SeqCst);
            let _ = self
                .events
                .send(ServerEvent::ToolsChanged(self.server.clone()));
        }
    }
}

/// Events a connection reports to the gateway.
#[derive(Debug, Clone)]
pub enum ServerEvent {
    /// `notifications/tools/list_changed` from this server.
    ToolsChanged(String),
}

/// Connect to `server` and run the initialize handshake.
pub async fn connect(
    server: &ServerConfig,
    launcher: Arc<dyn Launcher>,
    max_message: usize,
    timeout: Duration,
    events: mpsc::UnboundedSender<ServerEvent>,
) -> Result<Arc<Conn>, UpstreamError> {
    let name = server.name.clone();
    let conn = match &server.transport {
        Transport::Stdio { .. } => {
            let cfg = server.clone();
            let pipes = tokio::task::spawn_blocking(move || launcher.launch(&cfg))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r)
                .map_err(|message| UpstreamError::Start {
                    server: name.clone(),
                    message,
                })?;
            stdio_conn(&name, pipes, max_message, events)?
        }
        Transport::Http { url, ca } => {
            let epoch = Arc::new(AtomicU64::new(0));
            let changed = Changed {
                server: name.clone(),
                epoch: epoch.clone(),
                events,
            };
            Arc::new(Conn {
                server: name.clone(),
                next_id: AtomicU64::new(1),
                alive: Arc::new(AtomicBool::new(true)),
                epoch,
                kind: ConnKind::Http(Box::new(HttpConn::new(
                    server,
                    url,
                    ca.as_deref(),
                    max_message,
                    changed,
                )?)),
            })
        }
    };
    let init = conn
        .request(
            "initialize",
            json!({
                "protocolVersion": UPSTREAM_PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "airlock-mcp-gateway", "version": env!("CARGO_PKG_VERSION")}
            }),
            timeout,
        )
        .await?;
    if init.get("result").is_none() {
        conn.kill();
        return Err(UpstreamError::Failed {
            server: name,
            message: "initialize was refused".into(),
        });
    }
    if let ConnKind::Http(h) = &conn.kind
        && let Some(v) = init
            .pointer("/result/protocolVersion")
            .and_then(Value::as_str)
        && let Ok(mut p) = h.version.lock()
    {
        *p = v.to_owned();
    }
    conn.notify("notifications/initialized", json!({})).await?;
    Ok(conn)
}

/// Start `server`, read its whole tool list, stop it (for `airlock mcp
/// tools` and `airlock mcp pin`).
pub async fn list_server(
    server: &ServerConfig,
    launcher: Arc<dyn Launcher>,
    cfg: &crate::config::McpConfig,
) -> Result<Vec<Value>, UpstreamError> {
    let (tx, _rx) = mpsc::unbounded_channel();
    let conn = connect(
        server,
        launcher,
        cfg.max_message_bytes,
        cfg.call_timeout,
        tx,
    )
    .await?;
    let out = conn.list_tools(&server.name, cfg.call_timeout).await;
    conn.kill();
    out
}

fn stdio_conn(
    name: &str,
    pipes: Pipes,
    max_message: usize,
    events: mpsc::UnboundedSender<ServerEvent>,
) -> Result<Arc<Conn>, UpstreamError> {
    let start_err = |e: std::io::Error| UpstreamError::Start {
        server: name.to_owned(),
        message: e.to_string(),
    };
    let mut writer = tokio::net::unix::pipe::Sender::from_file(pipes.stdin).map_err(start_err)?;
    let reader = tokio::net::unix::pipe::Receiver::from_file(pipes.stdout).map_err(start_err)?;
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
    let waiters: Waiters = Arc::default();
    let alive = Arc::new(AtomicBool::new(true));
    let changed = Changed {
        server: name.to_owned(),
        epoch: Arc::new(AtomicU64::new(0)),
        events,
    };
    let conn = Arc::new(Conn {
        server: name.to_owned(),
        next_id: AtomicU64::new(1),
        alive: alive.clone(),
        epoch: changed.epoch.clone(),
        kind: ConnKind::Stdio {
            tx: tx.clone(),
            waiters: waiters.clone(),
            stop: Mutex::new(Some(pipes.stop)),
        },
    });
    tokio::spawn(async move {
        while let Some(line) = rx.recv().await {
            if writer.write_all(&line).await.is_err() {
                break;
            }
        }
    });
    let server = name.to_owned();
    tokio::spawn(async move {
        let mut r = tokio::io::BufReader::new(reader);
        let mut line = Vec::new();
        loop {
            line.clear();
            match read_line(&mut r, &mut line, max_message).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(server, "tool server output refused: {e}");
                    break;
                }
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match jsonrpc::parse(&line) {
                Ok(jsonrpc::Message::Response { id, raw }) => {
                    let waiter = id
                        .as_u64()
                        .and_then(|id| waiters.lock().ok().and_then(|mut w| w.remove(&id)));
                    if let Some(w) = waiter {
                        let _ = w.send(Ok(raw));
                    }
                }
                Ok(jsonrpc::Message::Notification { method, .. }) => changed.seen(&method),
                Ok(jsonrpc::Message::Request { id, method, .. }) => {
                    // The gateway offers its servers nothing (no sampling,
                    // roots or elicitation); a ping is answered.
                    let reply = if method == "ping" {
                        jsonrpc::result(&id, json!({}))
                    } else {
                        jsonrpc::error(
                            &id,
                            jsonrpc::METHOD_NOT_FOUND,
                            "not offered by the Airlock gateway",
                            airlock_types::Reason::RuleDeny,
                            json!({}),
                        )
                    };
                    let mut b = serde_json::to_vec(&reply).unwrap_or_default();
                    b.push(b'\n');
                    let _ = tx.send(b).await;
                }
                Err(_) => tracing::warn!(server, "tool server wrote a line that is not JSON-RPC"),
            }
        }
        alive.store(false, Ordering::SeqCst);
        fail_all(&waiters, "the server exited or closed its output");
    });
    Ok(conn)
}

/// Read one `\n`-terminated line of at most `max` bytes into `out`;
/// `Ok(false)` at end of input.
pub async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    out: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<bool> {
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok(!out.is_empty());
        }
        let (take, done) = match memchr_nl(buf) {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if out.len() + take > max + 1 {
            let n = buf.len();
            r.consume(n);
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a message is larger than {max} bytes"),
            ));
        }
        out.extend_from_slice(&buf[..take]);
        r.consume(take);
        if done {
            return Ok(true);
        }
    }
}

fn memchr_nl(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

/// A streamable-HTTP tool server.
struct HttpConn {
    url: String,
    uri: http::Uri,
    policy: airlock_policy::EgressPolicy,
    session: Mutex<Option<String>>,
    version: Mutex<String>,
    max_message: usize,
    tls: Option<tokio_rustls::TlsConnector>,
    changed: Changed,
    /// Kept-alive connections (each was dialed after the policy check).
    pool: Arc<Pool>,
}

/// An HTTP server's kept-alive connections.
#[derive(Default)]
struct Pool {
    /// Idle, ready for the next message.
    idle: Mutex<Vec<Sender>>,
    /// Connections still reading the end of an answered event stream.
    draining: AtomicU64,
    /// Fires when one of those lands in `idle` (or is given up).
    landed: tokio::sync::Notify,
}

impl Pool {
    fn pop(&self) -> Option<Sender> {
        while let Some(s) = self.idle.lock().ok().and_then(|mut v| v.pop()) {
            if s.is_ready() {
                return Some(s);
            }
        }
        None
    }

    /// Keep a connection whose exchange completed for the next message.
    fn keep(&self, s: Sender) {
        if let Ok(mut v) = self.idle.lock()
            && v.len() < MAX_IDLE
        {
            v.push(s);
        }
    }

    /// Keep `s` once `body` (an event stream whose answer was read) has
    /// ended: at once when its end is already here, else off the caller's
    /// path (bounded).
    fn keep_after<B>(self: &Arc<Self>, mut body: B, s: Sender)
    where
        B: hyper::body::Body<Data = Bytes> + Unpin + Send + 'static,
    {
        use futures_util::FutureExt as _;
        loop {
            match body.frame().now_or_never() {
                Some(Some(Ok(_))) => continue,
                Some(Some(Err(_))) => return,
                Some(None) => return self.keep(s),
                None => break,
            }
        }
        self.draining.fetch_add(1, Ordering::SeqCst);
        let pool = Arc::clone(self);
        tokio::spawn(async move {
            let drained = tokio::time::timeout(Duration::from_secs(5), async {
                while let Some(f) = body.frame().await {
                    if f.is_err() {
                        return false;
                    }
                }
                true
            });
            if drained.await == Ok(true) {
                pool.keep(s);
            }
            pool.draining.fetch_sub(1, Ordering::SeqCst);
            pool.landed.notify_waiters();
        });
    }
}

/// How long a message waits for a connection that is finishing its
/// previous answer before it dials a new one (a new connection costs the
/// server a TCP and maybe a TLS handshake).
const DRAIN_WAIT: Duration = Duration::from_millis(2);

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// How many idle connections one HTTP server keeps.
const MAX_IDLE: usize = 8;

impl HttpConn {
    fn new(
        server: &ServerConfig,
        url: &str,
        ca: Option<&[rustls_pki_types::CertificateDer<'static>]>,
        max_message: usize,
        changed: Changed,
    ) -> Result<HttpConn, UpstreamError> {
        let uri: http::Uri = url.parse().map_err(|_| UpstreamError::Start {
            server: server.name.clone(),
            message: "the url is not a URL".into(),
        })?;
        let tls = match uri.scheme_str() {
            Some("https") => {
                // A server with a `ca_file` trusts only those CAs: a
                // private CA names an internal server, and a public CA
                // has no say over it.
                let mut roots = rustls::RootCertStore::empty();
                match ca {
                    None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
                    Some(certs) => {
                        for c in certs {
                            roots.add(c.clone()).map_err(|e| UpstreamError::Start {
                                server: server.name.clone(),
                                message: format!("ca_file: {e}"),
                            })?;
                        }
                    }
                }
                let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::aws_lc_rs::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map_err(|e| UpstreamError::Start {
                    server: server.name.clone(),
                    message: e.to_string(),
                })?
                .with_root_certificates(roots)
                .with_no_client_auth();
                Some(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
            }
            _ => None,
        };
        Ok(HttpConn {
            url: url.to_owned(),
            uri,
            policy: server.policy.clone(),
            session: Mutex::new(None),
            version: Mutex::new(UPSTREAM_PROTOCOL_VERSION.to_owned()),
            max_message,
            tls,
            changed,
            pool: Arc::default(),
        })
    }

    /// Resolve, judge every address with the server's policy, and dial a
    /// checked one.
    async fn dial(&self) -> Result<tokio::net::TcpStream, String> {
        let parsed =
            airlock_policy::parse_url_with_userinfo(&self.url).map_err(|e| e.to_string())?;
        let host = self
            .uri
            .host()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_owned();
        let port = parsed.port;
        let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map(|a| a.collect())
            .unwrap_or_default();
        let ips: Vec<std::net::IpAddr> = addrs.iter().map(|a| a.ip()).collect();
        let checked = airlock_policy::check(&self.policy, "POST", &self.url, Some(ips), |_, _| {
            Vec::new()
        })
        .map_err(|e| e.to_string())?;
        if !checked.decision.is_allow() && !clear_text_stays_local(&checked.decision, &addrs) {
            return Err(format!(
                "its URL is refused by its egress policy ({})",
                checked.decision.reason.code()
            ));
        }
        let addr = addrs.first().ok_or("its host does not resolve")?;
        tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect: {e}"))
    }

    /// An idle kept-alive connection, or a newly dialed one.
    async fn sender(&self) -> Result<Sender, String> {
        let landed = self.pool.landed.notified();
        tokio::pin!(landed);
        landed.as_mut().enable();
        if let Some(s) = self.pool.pop() {
            return Ok(s);
        }
        if self.pool.draining.load(Ordering::SeqCst) > 0 {
            let _ = tokio::time::timeout(DRAIN_WAIT, landed).await;
            if let Some(s) = self.pool.pop() {
                return Ok(s);
            }
        }
        let tcp = self.dial().await?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => handshake(hyper_util::rt::TokioIo::new(tcp)).await,
            Some(tls) => {
                let name = rustls_pki_types::ServerName::try_from(
                    self.uri.host().unwrap_or_default().to_owned(),
                )
                .map_err(|e| e.to_string())?;
                let s = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS handshake failed: {e}"))?;
                handshake(hyper_util::rt::TokioIo::new(s)).await
            }
        }
    }

    /// Keep a connection whose exchange completed for the next message.
    fn keep(&self, s: Sender) {
        self.pool.keep(s);
    }

    async fn post(&self, msg: &Value, id: Option<u64>) -> Result<Value, String> {
        let mut sender = self.sender().await?;
        let body = serde_json::to_vec(msg).map_err(|e| e.to_string())?;
        let path = self
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_owned();
        let mut req = http::Request::post(path)
            .header(
                http::header::HOST,
                self.uri.authority().map(|a| a.as_str()).unwrap_or(""),
            )
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json, text/event-stream")
            .header(
                "mcp-protocol-version",
                self.version.lock().map(|v| v.clone()).unwrap_or_default(),
            );
        if let Some(s) = self.session.lock().ok().and_then(|s| s.clone()) {
            req = req.header("mcp-session-id", s);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        if let Some(s) = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            && let Ok(mut cur) = self.session.lock()
        {
            *cur = Some(s.to_owned());
        }
        let status = resp.status();
        let sse = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let limited = http_body_util::Limited::new(resp.into_body(), self.max_message);
        let Some(id) = id else {
            // Read the (empty) answer to the end so the connection can be kept.
            let read = limited.collect().await.is_ok();
            return if status.is_success() {
                if read {
                    self.keep(sender);
                }
                Ok(Value::Null)
            } else {
                Err(format!("answered {status}"))
            };
        };
        if !status.is_success() {
            return Err(format!("answered {status}"));
        }
        if sse {
            let mut limited = limited;
            let v = read_sse(&mut limited, id, &self.changed).await;
            if v.is_ok() {
                // The stream ends after the answer; once it has, the
                // connection is kept.
                self.pool.keep_after(limited, sender);
            }
            v
        } else {
            let body = limited
                .collect()
                .await
                .map_err(|e| format!("reading its answer: {e}"))?
                .to_bytes();
            let v = serde_json::from_slice(&body)
                .map_err(|_| "answered with something that is not JSON".to_owned());
            if v.is_ok() {
                self.keep(sender);
            }
            v
        }
    }
}

/// Whether a decision refused only because a POST would go in the clear,
/// to addresses that are all loopback ones (the message never leaves the
/// machine, so there is no wire to read it on).
fn clear_text_stays_local(d: &airlock_types::Decision, addrs: &[std::net::SocketAddr]) -> bool {
    d.reason == airlock_types::Reason::WriteRequiresHttps
        && !addrs.is_empty()
        && addrs.iter().all(|a| a.ip().is_loopback())
}

async fn handshake<T>(io: hyper_util::rt::TokioIo<T>) -> Result<Sender, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Read SSE events until the response with `id`; a `list_changed` on the
/// way is marked.
async fn read_sse<B>(body: &mut B, id: u64, changed: &Changed) -> Result<Value, String>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let frame = match body.frame().await {
            None => return Err("its event stream ended without an answer".into()),
            Some(Err(e)) => return Err(format!("reading its event stream: {e}")),
            Some(Ok(f)) => f,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        while let Some(end) = find_event_end(&buf) {
            let event: Vec<u8> = buf.drain(..end).collect();
            let mut payload = String::new();
            for line in String::from_utf8_lossy(&event).lines() {
                if let Some(d) = line.strip_prefix("data:") {
                    if !payload.is_empty() {
                        payload.push('\n');
                    }
                    payload.push_str(d.strip_prefix(' ').unwrap_or(d));
                }
            }
            if payload.is_empty() {
                continue;
            }
            match jsonrpc::parse(payload.as_bytes()) {
                Ok(jsonrpc::Message::Response { id: rid, raw }) if rid.as_u64() == Some(id) => {
                    return Ok(raw);
                }
                Ok(jsonrpc::Message::Notification { method, .. }) => changed.seen(&method),
                _ => {}
            }
        }
    }
}

fn find_event_end(b: &[u8]) -> Option<usize> {
    let a = b.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let c = b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    match (a, c) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_bounded() {
        let mut r = tokio::io::BufReader::new(&b"{\"a\":1}\nxxxxxxxxxxxxxxxxxxxx\n"[..]);
        let mut l = Vec::new();
        assert!(read_line(&mut r, &mut l, 10).await.unwrap());
        assert_eq!(l, b"{\"a\":1}\n");
        l.clear();
        assert!(read_line(&mut r, &mut l, 10).await.is_err());
    }

    #[test]
    fn clear_text_is_allowed_only_when_every_address_is_loopback() {
        use airlock_types::{Decision, Reason};
        let clear = Decision::deny(Reason::WriteRequiresHttps);
        let a = |s: &str| s.parse::<std::net::SocketAddr>().unwrap();
        assert!(clear_text_stays_local(&clear, &[a("127.0.0.1:80")]));
        assert!(clear_text_stays_local(
            &clear,
            &[a("[::1]:80"), a("127.0.0.2:80")]
        ));
        assert!(!clear_text_stays_local(&clear, &[]));
        assert!(!clear_text_stays_local(
            &clear,
            &[a("127.0.0.1:80"), a("10.0.0.1:80")]
        ));
        assert!(!clear_text_stays_local(
            &clear,
            &[a("[::ffff:10.0.0.1]:80")]
        ));
        // Any other refusal stands.
        let private = Decision::deny(Reason::PrivateAddress);
        assert!(!clear_text_stays_local(&private, &[a("127.0.0.1:80")]));
    }

    #[test]
    fn sse_event_boundaries() {
        assert_eq!(find_event_end(b"data: x\n\nrest"), Some(9));
        assert_eq!(find_event_end(b"data: x\r\n\r\n"), Some(11));
        assert_eq!(find_event_end(b"data: x\n"), None);
    }
}
