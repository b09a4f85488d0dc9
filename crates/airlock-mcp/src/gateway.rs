//! The gateway core: one aggregated MCP server over the configured tool
//! servers. It acts on `initialize`, `ping`, `tools/list` and `tools/call`
//! (and on servers' `notifications/tools/list_changed`); a call's params
//! are forwarded as sent (only `name` is un-namespaced), and a server's
//! result is passed back with its strings scrubbed.

use crate::config::{McpConfig, PinMode, RuleAction, ServerConfig};
use crate::jsonrpc::{self, Message};
use crate::pin;
use crate::rules;
use crate::upstream::{self, Conn, Launcher, ServerEvent, UpstreamError};
use airlock_types::{
    Action, Actor, ActorKind, ApprovalRequest, Approver, AuditEvent, Autonomy, Decision,
    EventResult, EventSink, Outcome, Reason, RunContext, Secret, Subject, TaintLabel, TaintTracker,
    TenantId, Verdict,
};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc};

/// Protocol revisions the front answers `initialize` with (the client's if
/// listed, else the newest).
pub const PROTOCOL_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// Where pinned definitions live.
pub trait PinStore: Send + Sync + std::fmt::Debug {
    /// The pinned hash of a tool.
    fn get(&self, server: &str, tool: &str) -> Result<Option<String>, String>;
    /// Pin if absent (trust on first use); true when this call pinned it.
    fn pin_if_absent(
        &self,
        server: &str,
        tool: &str,
        sha256: &str,
        def: &str,
    ) -> Result<bool, String>;
}

/// Pins in the tenant's SQLite database.
///
/// A pin read is remembered with the database's pin change stamp
/// ([`airlock_store::PinStamp`]) read before it: while the stamp is the
/// same and the read is younger than a second (`PIN_REMEMBERED`), the
/// next call is judged by the remembered pin without a query (one
/// `pread`). Any pin
/// written through `airlock-store` — `airlock mcp pin` in another process,
/// a first-use pin here — moves the stamp after its commit, so the next
/// call reads the database again. The age bound only ever adds reads: a
/// stamp that could not be moved (the writer is told) holds for at most
/// that long. A stamp that cannot be read means a query, as without it;
/// a query that fails refuses the call.
#[derive(Debug)]
pub struct SqlitePins {
    store: Mutex<airlock_store::SqliteStore>,
    tenant: TenantId,
    stamp: Option<airlock_store::PinStamp>,
    seen: Mutex<HashMap<String, HashMap<String, SeenPin>>>,
}

/// How long a remembered pin read is used (while the stamp is unchanged).
const PIN_REMEMBERED: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug)]
struct SeenPin {
    stamp: [u8; 16],
    at: std::time::Instant,
    sha256: Option<String>,
}

impl SqlitePins {
    /// Pins of `tenant` in `store`.
    pub fn new(store: airlock_store::SqliteStore, tenant: TenantId) -> Self {
        let stamp = store
            .mcp_pin_stamp()
            .inspect_err(|e| tracing::warn!("pins are read on every call: {e}"))
            .ok();
        SqlitePins {
            store: Mutex::new(store),
            tenant,
            stamp,
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn remembered(&self, server: &str, tool: &str, stamp: &[u8; 16]) -> Option<Option<String>> {
        let seen = self.seen.lock().ok()?;
        let p = seen.get(server)?.get(tool)?;
        (p.stamp == *stamp && p.at.elapsed() < PIN_REMEMBERED).then(|| p.sha256.clone())
    }
}

impl PinStore for SqlitePins {
    fn get(&self, server: &str, tool: &str) -> Result<Option<String>, String> {
        // The stamp first: a pin committed after this read moves it again.
        let stamp = self.stamp.as_ref().and_then(|s| {
            s.read()
                .inspect_err(|e| tracing::warn!("pin read from the database: {e}"))
                .ok()
        });
        if let Some(st) = &stamp
            && let Some(p) = self.remembered(server, tool, st)
        {
            return Ok(p);
        }
        let at = std::time::Instant::now();
        let pinned = {
            let s = self
                .store
                .lock()
                .map_err(|_| "pin store poisoned".to_owned())?;
            s.mcp_pin(&self.tenant, server, tool)
                .map(|p| p.map(|p| p.sha256))
                .map_err(|e| e.to_string())?
        };
        if let Some(stamp) = stamp
            && let Ok(mut seen) = self.seen.lock()
        {
            seen.entry(server.to_owned()).or_default().insert(
                tool.to_owned(),
                SeenPin {
                    stamp,
                    at,
                    sha256: pinned.clone(),
                },
            );
        }
        Ok(pinned)
    }
    fn pin_if_absent(
        &self,
        server: &str,
        tool: &str,
        sha256: &str,
        def: &str,
    ) -> Result<bool, String> {
        let mut s = self
            .store
            .lock()
            .map_err(|_| "pin store poisoned".to_owned())?;
        s.mcp_pin_if_absent(
            &self.tenant,
            &airlock_store::ToolPin {
                server: server.into(),
                tool: tool.into(),
                sha256: sha256.into(),
                definition: def.into(),
                pinned_by: "tofu".into(),
                pinned_at: airlock_types::Timestamp::now().as_micros(),
            },
        )
        .map_err(|e| e.to_string())
    }
}

/// Pins in memory (tests, dry runs).
#[derive(Debug, Default)]
pub struct MemoryPins(Mutex<HashMap<(String, String), String>>);

impl PinStore for MemoryPins {
    fn get(&self, server: &str, tool: &str) -> Result<Option<String>, String> {
        Ok(self
            .0
            .lock()
            .map_err(|_| "poisoned")?
            .get(&(server.into(), tool.into()))
            .cloned())
    }
    fn pin_if_absent(
        &self,
        server: &str,
        tool: &str,
        sha256: &str,
        _def: &str,
    ) -> Result<bool, String> {
        let mut m = self.0.lock().map_err(|_| "poisoned")?;
        let k = (server.to_owned(), tool.to_owned());
        if m.contains_key(&k) {
            return Ok(false);
        }
        m.insert(k, sha256.to_owned());
        Ok(true)
    }
}

/// Run taint in this process's memory (until the store-backed tracker is
/// wired in: then every front end serving a run shares it).
#[derive(Debug, Default)]
pub struct MemoryTaint(Mutex<HashMap<String, airlock_types::TaintSet>>);

impl TaintTracker for MemoryTaint {
    fn mark(
        &self,
        ctx: &RunContext,
        label: TaintLabel,
        _source: &str,
    ) -> Result<airlock_types::TaintSet, airlock_types::TaintError> {
        let mut m = self
            .0
            .lock()
            .map_err(|_| airlock_types::TaintError("poisoned".into()))?;
        let e = m.entry(ctx.run.to_string()).or_default();
        *e = e.with(label);
        Ok(*e)
    }
    fn labels(
        &self,
        ctx: &RunContext,
    ) -> Result<airlock_types::TaintSet, airlock_types::TaintError> {
        let m = self
            .0
            .lock()
            .map_err(|_| airlock_types::TaintError("poisoned".into()))?;
        Ok(m.get(ctx.run.as_str()).copied().unwrap_or_default())
    }
}

/// What the gateway needs from its embedder.
#[derive(Debug, Clone)]
pub struct Parts {
    /// Starts stdio servers (in a sandbox each).
    pub launcher: Arc<dyn Launcher>,
    /// The audit log.
    pub sink: Arc<dyn EventSink>,
    /// Asks reviewers (the approval service; `NoApprover` refuses every ask).
    pub approver: Arc<dyn Approver>,
    /// Run taint.
    pub taint: Arc<dyn TaintTracker>,
    /// Pinned definitions.
    pub pins: Arc<dyn PinStore>,
    /// The tenant (for records not stamped by a session).
    pub tenant: TenantId,
}

struct Slot {
    cfg: ServerConfig,
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
    /// The definitions last read.
    tools: Mutex<Option<Arc<Tools>>>,
    scrubber: Mutex<Option<Arc<airlock_scrub::Scrubber>>>,
}

/// A server's tool definitions as last read, with the connection's tools
/// epoch then. What every call needs of a definition (its pin hash, its
/// compiled input schema) is worked out once per read, not per call.
struct Tools {
    epoch: u64,
    list: Vec<Tool>,
}

/// One tool definition as the server announced it.
struct Tool {
    def: Value,
    name: String,
    /// [`pin::definition_hash`] of `def`.
    hash: String,
    /// Its `inputSchema` compiled on first use (`Err`: Airlock cannot use
    /// it); `None` inside when it declares none.
    validator: std::sync::OnceLock<Result<Option<Arc<jsonschema::Validator>>, ()>>,
}

impl Tool {
    fn new(def: Value) -> Tool {
        Tool {
            name: def
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            hash: pin::definition_hash(&def),
            def,
            validator: std::sync::OnceLock::new(),
        }
    }

    fn validator(&self) -> Result<Option<Arc<jsonschema::Validator>>, ()> {
        self.validator
            .get_or_init(|| match self.def.get("inputSchema") {
                None => Ok(None),
                Some(schema) => jsonschema::validator_for(schema)
                    .map(|v| Some(Arc::new(v)))
                    .map_err(|_| ()),
            })
            .clone()
    }
}

/// One client session: a run context.
#[derive(Debug, Clone)]
pub struct Session {
    /// Whose session it is; stamped on its audit records, keys its taint.
    pub ctx: RunContext,
    /// Where notifications for the client go (progress).
    pub notify: Option<mpsc::UnboundedSender<Value>>,
}

/// The gateway.
pub struct Gateway {
    cfg: Arc<McpConfig>,
    parts: Parts,
    slots: Vec<Slot>,
    events: mpsc::UnboundedSender<ServerEvent>,
    changed: broadcast::Sender<()>,
    reported: Mutex<HashSet<(String, String, String)>>,
    base_scrubber: Arc<airlock_scrub::Scrubber>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("servers", &self.slots.len())
            .finish_non_exhaustive()
    }
}

/// The gateway could not be built.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The scrubber's rules did not compile.
    #[error("cannot build the result scrubber: {0}")]
    Scrubber(String),
}

fn scrubber_builder(pii: bool) -> airlock_scrub::ScrubberBuilder {
    let b = airlock_scrub::Scrubber::builder();
    if pii {
        b
    } else {
        b.only(airlock_scrub::Category::Secret)
    }
}

impl Gateway {
    /// A gateway over `cfg`'s servers. Must be called inside a tokio runtime.
    pub fn new(cfg: McpConfig, parts: Parts) -> Result<Arc<Gateway>, GatewayError> {
        let base = scrubber_builder(cfg.redact_pii)
            .build()
            .map_err(|e| GatewayError::Scrubber(e.to_string()))?;
        let (etx, mut erx) = mpsc::unbounded_channel();
        let (ctx, _) = broadcast::channel(16);
        let slots = cfg
            .servers
            .iter()
            .map(|s| Slot {
                cfg: s.clone(),
                conn: tokio::sync::Mutex::new(None),
                tools: Mutex::new(None),
                scrubber: Mutex::new(None),
            })
            .collect();
        let gw = Arc::new(Gateway {
            cfg: Arc::new(cfg),
            parts,
            slots,
            events: etx,
            changed: ctx,
            reported: Mutex::new(HashSet::new()),
            base_scrubber: Arc::new(base),
        });
        let weak = Arc::downgrade(&gw);
        tokio::spawn(async move {
            while let Some(ServerEvent::ToolsChanged(server)) = erx.recv().await {
                let Some(gw) = weak.upgrade() else { break };
                if let Some(slot) = gw.slot(&server)
                    && let Ok(mut t) = slot.tools.lock()
                {
                    *t = None;
                }
                let _ = gw.changed.send(());
            }
        });
        Ok(gw)
    }

    /// The configuration.
    pub fn config(&self) -> &McpConfig {
        &self.cfg
    }

    /// Fires when a server reported that its tools changed (a front sends
    /// the client `notifications/tools/list_changed`).
    pub fn tools_changed(&self) -> broadcast::Receiver<()> {
        self.changed.subscribe()
    }

    fn slot(&self, name: &str) -> Option<&Slot> {
        self.slots.iter().find(|s| s.cfg.name == name)
    }

    fn audit(&self, ev: AuditEvent) -> Result<(), Reason> {
        self.parts.sink.emit(ev).map_err(|e| {
            tracing::error!("audit sink refused an MCP record: {e}");
            Reason::CheckFailed
        })
    }

    fn event(
        &self,
        s: &Session,
        action: Action,
        resource: &str,
        reason: Reason,
        result: EventResult,
    ) -> AuditEvent {
        AuditEvent::new(
            s.ctx.tenant.clone(),
            Actor::new(ActorKind::Agent, "mcp"),
            action,
            resource,
            reason,
            result,
        )
        .with_context(&s.ctx)
    }

    /// Handle one message from the client; `Some` is the response to send.
    pub async fn handle(&self, s: &Session, bytes: &[u8]) -> Option<Value> {
        if bytes.len() > self.cfg.max_message_bytes {
            let ev = self
                .event(
                    s,
                    Action::McpCall,
                    "-",
                    Reason::LimitExceeded,
                    EventResult::Denied,
                )
                .with_detail("bytes", bytes.len())
                .with_detail("max_bytes", self.cfg.max_message_bytes);
            let _ = self.audit(ev);
            return Some(jsonrpc::error(
                &Value::Null,
                jsonrpc::INVALID_REQUEST,
                &format!("message larger than {} bytes", self.cfg.max_message_bytes),
                Reason::LimitExceeded,
                json!({}),
            ));
        }
        match jsonrpc::parse(bytes) {
            Err(m) => {
                let ev = self
                    .event(s, Action::McpCall, "-", m.reason, EventResult::Denied)
                    .with_detail("error", m.message.clone());
                let _ = self.audit(ev);
                Some(jsonrpc::error(
                    &m.id,
                    m.code,
                    &m.message,
                    m.reason,
                    json!({}),
                ))
            }
            Ok(Message::Request { id, method, raw }) => {
                Some(self.request(s, &id, &method, &raw).await)
            }
            Ok(Message::Notification { .. } | Message::Response { .. }) => None,
        }
    }

    async fn request(&self, s: &Session, id: &Value, method: &str, raw: &Value) -> Value {
        let params = raw.get("params").cloned().unwrap_or(json!({}));
        match method {
            "initialize" => {
                let asked = params
                    .get("protocolVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let version = PROTOCOL_VERSIONS
                    .iter()
                    .find(|v| **v == asked)
                    .unwrap_or(&PROTOCOL_VERSIONS[0]);
                jsonrpc::result(
                    id,
                    json!({
                        "protocolVersion": version,
                        "capabilities": {"tools": {"listChanged": true}},
                        "serverInfo": {"name": "airlock", "version": env!("CARGO_PKG_VERSION")},
                        "instructions": "Tools are named SERVER.TOOL. Airlock checks every call against its rules; a refusal carries its reason in error.data.reason."
                    }),
                )
            }
            "ping" => jsonrpc::result(id, json!({})),
            "tools/list" => {
                let tools = self.list(s, true).await;
                let names: Vec<String> = tools
                    .iter()
                    .filter_map(|t| t.get("name").and_then(Value::as_str).map(str::to_owned))
                    .collect();
                let ev = self
                    .event(
                        s,
                        Action::McpList,
                        "tools/list",
                        Reason::Recorded,
                        EventResult::Success,
                    )
                    .with_detail("tools", names);
                if let Err(r) = self.audit(ev) {
                    return jsonrpc::error(
                        id,
                        jsonrpc::INTERNAL_ERROR,
                        "cannot audit",
                        r,
                        json!({}),
                    );
                }
                jsonrpc::result(id, json!({ "tools": tools }))
            }
            "tools/call" => self.call(s, id, params).await,
            _ => jsonrpc::error(
                id,
                jsonrpc::METHOD_NOT_FOUND,
                &format!("method {method} is not offered by the Airlock gateway"),
                Reason::RuleDeny,
                json!({}),
            ),
        }
    }

    async fn conn(&self, slot: &Slot) -> Result<Arc<Conn>, UpstreamError> {
        let mut g = slot.conn.lock().await;
        if let Some(c) = g.as_ref()
            && c.alive()
        {
            return Ok(c.clone());
        }
        *g = None;
        if let Ok(mut t) = slot.tools.lock() {
            *t = None;
        }
        let launcher = self.parts.launcher.clone();
        let known = Arc::new(Mutex::new(Vec::new()));
        let k2 = known.clone();
        let launcher: Arc<dyn Launcher> = Arc::new(Capture {
            inner: launcher,
            known: k2,
        });
        let c = upstream::connect(
            &slot.cfg,
            launcher,
            self.cfg.max_message_bytes,
            self.cfg.call_timeout,
            self.events.clone(),
        )
        .await?;
        // The server's vault secrets: their values become their names.
        let known: Vec<(String, Secret<String>)> = known
            .lock()
            .map(|mut k| std::mem::take(&mut *k))
            .unwrap_or_default();
        let scrubber = if known.is_empty() {
            self.base_scrubber.clone()
        } else {
            let mut b = scrubber_builder(self.cfg.redact_pii);
            for (n, v) in &known {
                b = b.known_secret(n, v);
            }
            Arc::new(b.build().map_err(|e| UpstreamError::Start {
                server: slot.cfg.name.clone(),
                message: e.to_string(),
            })?)
        };
        if let Ok(mut sc) = slot.scrubber.lock() {
            *sc = Some(scrubber);
        }
        *g = Some(c.clone());
        Ok(c)
    }

    /// A server that did not answer in time is stopped (a stdio server's
    /// sandbox is killed, every call waiting on it fails) and audited; the
    /// next use starts a new one.
    fn stop_hung(&self, s: &Session, slot: &Slot, conn: &Conn, e: &UpstreamError) {
        conn.kill();
        let ev = self
            .event(
                s,
                Action::McpServer,
                &slot.cfg.name,
                Reason::ToolServerFailed,
                EventResult::Failure,
            )
            .with_detail("error", e.to_string())
            .with_detail("stopped", true);
        let _ = self.audit(ev);
    }

    /// A server's tool definitions: read again on `refresh`, after the
    /// server announced a change (its connection's tools epoch moved) and
    /// on a new connection; else the cached ones.
    async fn server_tools(&self, slot: &Slot, refresh: bool) -> Result<Arc<Tools>, UpstreamError> {
        let conn = self.conn(slot).await?;
        let epoch = conn.tools_epoch();
        if !refresh
            && let Some(t) = slot.tools.lock().ok().and_then(|t| t.clone())
            && t.epoch == epoch
        {
            return Ok(t);
        }
        let out = match conn.list_tools(&slot.cfg.name, self.cfg.call_timeout).await {
            Ok(out) => out,
            Err(e) => {
                if matches!(e, UpstreamError::Timeout { .. }) {
                    // Audited as `mcp.server` by the caller.
                    conn.kill();
                }
                return Err(e);
            }
        };
        let out = Arc::new(Tools {
            epoch,
            list: out.into_iter().map(Tool::new).collect(),
        });
        if let Ok(mut t) = slot.tools.lock() {
            *t = Some(out.clone());
        }
        Ok(out)
    }

    /// The pin state of one tool: `Ok` when usable, else the refusal.
    fn pin_state(
        &self,
        s: &Session,
        server: &str,
        tool: &Tool,
        visible_by_rule: bool,
    ) -> Result<(), Reason> {
        let (name, hash) = (tool.name.as_str(), &tool.hash);
        let pinned = self.parts.pins.get(server, name).map_err(|e| {
            tracing::error!("pin store: {e}");
            Reason::CheckFailed
        })?;
        match pinned {
            Some(p) if p == *hash => Ok(()),
            Some(p) => {
                let key = (server.to_owned(), name.to_owned(), hash.clone());
                let first = self
                    .reported
                    .lock()
                    .map(|mut r| r.insert(key))
                    .unwrap_or(true);
                if first {
                    let ev = self
                        .event(
                            s,
                            Action::McpToolChanged,
                            &format!("{server}.{name}"),
                            Reason::ToolDefinitionChanged,
                            EventResult::Denied,
                        )
                        .with_detail("pinned_sha256", p)
                        .with_detail("seen_sha256", hash.clone());
                    self.audit(ev)?;
                }
                Err(Reason::ToolDefinitionChanged)
            }
            None if self.cfg.pin == PinMode::FirstUse && visible_by_rule => {
                let def = pin::canonical_definition(&tool.def);
                let pinned_now = self
                    .parts
                    .pins
                    .pin_if_absent(server, name, hash, &def)
                    .map_err(|e| {
                        tracing::error!("pin store: {e}");
                        Reason::CheckFailed
                    })?;
                if pinned_now {
                    let ev = self
                        .event(
                            s,
                            Action::McpToolPinned,
                            &format!("{server}.{name}"),
                            Reason::Recorded,
                            EventResult::Success,
                        )
                        .with_detail("sha256", hash.clone())
                        .with_detail("pinned_by", "tofu");
                    self.audit(ev)?;
                    Ok(())
                } else {
                    // Someone else pinned it meanwhile: judge against theirs.
                    self.pin_state(s, server, tool, visible_by_rule)
                }
            }
            None => Err(Reason::ToolDefinitionChanged),
        }
    }

    /// The tools this session may see, namespaced.
    pub async fn list(&self, s: &Session, refresh: bool) -> Vec<Value> {
        let agent = s.ctx.agent.as_ref().map(|a| a.as_str().to_owned());
        let mut out = Vec::new();
        for slot in &self.slots {
            let tools = match self.server_tools(slot, refresh).await {
                Ok(t) => t,
                Err(e) => {
                    let ev = self
                        .event(
                            s,
                            Action::McpServer,
                            &slot.cfg.name,
                            Reason::ToolServerFailed,
                            EventResult::Failure,
                        )
                        .with_detail("error", e.to_string());
                    let _ = self.audit(ev);
                    continue;
                }
            };
            for t in &tools.list {
                let full = format!("{}.{}", slot.cfg.name, t.name);
                if !rules::judge(&self.cfg.rules, agent.as_deref(), &full).visible() {
                    continue;
                }
                if self.pin_state(s, &slot.cfg.name, t, true).is_err() {
                    continue;
                }
                let mut t = t.def.clone();
                t["name"] = Value::String(full);
                out.push(t);
            }
        }
        out
    }

    fn refuse(
        &self,
        s: &Session,
        id: &Value,
        tool: &str,
        reason: Reason,
        message: String,
        extra: Value,
    ) -> Value {
        let mut ev = self
            .event(s, Action::McpCall, tool, reason, EventResult::Denied)
            .with_decision(Decision::deny(reason))
            .with_detail("error", message.clone());
        if let Value::Object(m) = &extra {
            for (k, v) in m {
                ev = ev.with_detail(k, v.clone());
            }
        }
        let _ = self.audit(ev);
        let code = match reason {
            Reason::ToolArgumentsInvalid => jsonrpc::INVALID_PARAMS,
            Reason::ToolServerFailed => jsonrpc::SERVER_FAILED,
            Reason::CheckFailed => jsonrpc::INTERNAL_ERROR,
            _ => jsonrpc::POLICY_REFUSED,
        };
        jsonrpc::error(id, code, &message, reason, extra)
    }

    async fn call(&self, s: &Session, id: &Value, params: Value) -> Value {
        let full = params
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let args = params.get("arguments").cloned().unwrap_or(json!({}));
        let unknown = |me: &Self| {
            me.refuse(
                s,
                id,
                &full,
                Reason::ToolUnknown,
                format!("no tool {full:?} (tools are named SERVER.TOOL)"),
                json!({}),
            )
        };
        let Some((server, tool)) = full.split_once('.') else {
            return unknown(self);
        };
        let Some(slot) = self.slot(server) else {
            return unknown(self);
        };
        let agent = s.ctx.agent.as_ref().map(|a| a.as_str().to_owned());
        let verdict = rules::judge(&self.cfg.rules, agent.as_deref(), &full);
        if let Some(r) = verdict.refusal() {
            return self.refuse(
                s,
                id,
                &full,
                r,
                format!("tool {full} is refused by the MCP rules ({})", r.code()),
                json!({}),
            );
        }
        let tools = match self.server_tools(slot, false).await {
            Ok(t) => t,
            Err(e) => {
                return self.refuse(
                    s,
                    id,
                    &full,
                    Reason::ToolServerFailed,
                    e.to_string(),
                    json!({}),
                );
            }
        };
        let Some(def) = tools.list.iter().find(|t| t.name == tool) else {
            return unknown(self);
        };
        if let Err(r) = self.pin_state(s, server, def, true) {
            let msg = if r == Reason::ToolDefinitionChanged {
                format!(
                    "tool {full} is not usable: its definition is not the pinned one (an operator must re-pin it: airlock mcp pin {full})"
                )
            } else {
                "the pin store could not be read".to_owned()
            };
            return self.refuse(s, id, &full, r, msg, json!({}));
        }
        // The tool's declared schema.
        if let Some(v) = def.validator().transpose() {
            match v {
                Err(()) => {
                    return self.refuse(
                        s,
                        id,
                        &full,
                        Reason::ToolArgumentsInvalid,
                        format!("tool {full} declares an input schema Airlock cannot use"),
                        json!({}),
                    );
                }
                Ok(v) => {
                    if let Some(err) = v.iter_errors(&args).next() {
                        let at = err.instance_path().to_string();
                        let kind = format!("{:?}", err.kind())
                            .split(['(', ' ', '{'])
                            .next()
                            .unwrap_or("")
                            .to_owned();
                        return self.refuse(
                            s,
                            id,
                            &full,
                            Reason::ToolArgumentsInvalid,
                            format!(
                                "arguments do not match the tool's input schema at {:?} ({kind})",
                                if at.is_empty() { "/" } else { &at }
                            ),
                            json!({"at": at}),
                        );
                    }
                }
            }
        }
        if let Err(a) = rules::check_args(&verdict.matched, &args) {
            return self.refuse(
                s,
                id,
                &full,
                Reason::ToolArgumentRefused,
                format!("argument {:?} {}", a.argument, a.message),
                json!({"argument": a.argument}),
            );
        }
        // Approval: the rule, the agent's autonomy, the trifecta guard.
        let labels = slot.cfg.labels_of(tool);
        let autonomy = agent
            .as_ref()
            .and_then(|a| self.cfg.autonomy.get(a))
            .copied()
            .unwrap_or(self.cfg.default_autonomy);
        let mut ask: Option<Reason> = match (verdict.action, autonomy) {
            (Some(RuleAction::Ask), _) | (_, Autonomy::AskAll) => Some(Reason::ApprovalRequired),
            (_, Autonomy::AskWrites) if labels.writes => Some(Reason::ApprovalRequired),
            _ => None,
        };
        let taint = match self.parts.taint.labels(&s.ctx) {
            Ok(t) => t,
            Err(e) => {
                return self.refuse(
                    s,
                    id,
                    &full,
                    Reason::CheckFailed,
                    format!("the run's taint cannot be read ({e}); refusing"),
                    json!({}),
                );
            }
        };
        if labels.writes && !verdict.writes_allowed() && taint.is_trifecta() {
            ask = Some(Reason::LethalTrifecta);
        }
        let mut approval: Option<(String, String)> = None;
        if let Some(reason) = ask {
            let req = ApprovalRequest {
                context: s.ctx.clone(),
                subject: Subject::Tool {
                    server: server.to_owned(),
                    tool: tool.to_owned(),
                    arguments: args.clone(),
                },
                policy_version: self.cfg.policy_version.clone(),
                reason,
                taint,
            };
            let token = params.pointer("/_meta/progressToken").cloned();
            let verdict = self.wait_approval(s, req, token, &full).await;
            match verdict {
                Verdict::Approved { id: aid, sha256 } => approval = Some((aid, sha256)),
                Verdict::Refused { id: aid, reason: r } => {
                    let why = if reason == Reason::LethalTrifecta {
                        format!(
                            "tool {full} writes, and this run holds private data and has read untrusted content (lethal trifecta): it needs approval, which was not given ({})",
                            r.code()
                        )
                    } else {
                        format!(
                            "tool {full} needs approval, which was not given ({})",
                            r.code()
                        )
                    };
                    let code = if r == Reason::ApprovalRequired {
                        reason
                    } else {
                        r
                    };
                    return self.refuse(s, id, &full, code, why, json!({"approval_id": aid, "asked_because": reason.code(), "taint": taint.labels()}));
                }
            }
        }
        // Run it.
        let conn = match self.conn(slot).await {
            Ok(c) => c,
            Err(e) => {
                return self.refuse(
                    s,
                    id,
                    &full,
                    Reason::ToolServerFailed,
                    e.to_string(),
                    json!({}),
                );
            }
        };
        let mut fwd = params.clone();
        fwd["name"] = Value::String(tool.to_owned());
        let resp = match conn.request("tools/call", fwd, self.cfg.call_timeout).await {
            Ok(r) => r,
            Err(e) => {
                if matches!(e, UpstreamError::Timeout { .. }) {
                    self.stop_hung(s, slot, &conn, &e);
                }
                return self.refuse(
                    s,
                    id,
                    &full,
                    Reason::ToolServerFailed,
                    e.to_string(),
                    json!({}),
                );
            }
        };
        let scrubber = slot
            .scrubber
            .lock()
            .ok()
            .and_then(|s| s.clone())
            .unwrap_or_else(|| self.base_scrubber.clone());
        let mut masked = 0usize;
        let mut resp = resp;
        let mut out = match resp.get_mut("result").map(Value::take) {
            Some(mut r) => {
                scrub_value(&scrubber, &mut r, &mut masked);
                jsonrpc::result(id, r)
            }
            None => {
                let mut e = resp
                    .get_mut("error")
                    .map(Value::take)
                    .unwrap_or(json!({"code": jsonrpc::SERVER_FAILED, "message": "no result"}));
                scrub_value(&scrubber, &mut e, &mut masked);
                json!({"jsonrpc": "2.0", "id": id, "error": e})
            }
        };
        // Taint: what this result brought into the run.
        let mut now = taint;
        for (on, label) in [
            (labels.private, TaintLabel::PrivateData),
            (labels.untrusted, TaintLabel::UntrustedContent),
        ] {
            if on {
                match self.parts.taint.mark(&s.ctx, label, &full) {
                    Ok(t) => now = t,
                    Err(e) => {
                        return self.refuse(
                            s,
                            id,
                            &full,
                            Reason::CheckFailed,
                            format!(
                                "the run's taint cannot be recorded ({e}); the result is withheld"
                            ),
                            json!({}),
                        );
                    }
                }
            }
        }
        if now != taint {
            let ev = self
                .event(
                    s,
                    Action::RunTaint,
                    &full,
                    Reason::Recorded,
                    EventResult::Success,
                )
                .with_detail("taint", now.labels());
            let _ = self.audit(ev);
        }
        let is_error = out.get("error").is_some()
            || out.pointer("/result/isError") == Some(&Value::Bool(true));
        let mut ev = self
            .event(
                s,
                Action::McpCall,
                &full,
                Reason::RuleAllow,
                if is_error {
                    EventResult::Failure
                } else {
                    EventResult::Success
                },
            )
            .with_decision(Decision {
                outcome: Outcome::Allow,
                ..Decision::allow(Reason::RuleAllow)
            })
            .with_detail("masked", masked)
            .with_detail("taint", now.labels());
        if is_error {
            ev.result = EventResult::Failure;
        }
        if let Some((aid, sha)) = &approval {
            ev = ev
                .with_detail("approval_id", aid.clone())
                .with_detail("approval_sha256", sha.clone());
            ev.reason = Reason::ApprovalGranted;
        }
        if let Err(r) = self.audit(ev) {
            out = jsonrpc::error(
                id,
                jsonrpc::INTERNAL_ERROR,
                "the call could not be audited; its result is withheld",
                r,
                json!({}),
            );
        }
        out
    }

    async fn wait_approval(
        &self,
        s: &Session,
        req: ApprovalRequest,
        token: Option<Value>,
        full: &str,
    ) -> Verdict {
        let ask = self.parts.approver.ask(req, self.cfg.approval_wait);
        tokio::pin!(ask);
        let mut tick = tokio::time::interval(self.cfg.progress_every);
        tick.tick().await;
        let mut n = 0u64;
        loop {
            tokio::select! {
                v = &mut ask => return v,
                _ = tick.tick() => {
                    n += 1;
                    if let (Some(t), Some(tx)) = (&token, &s.notify) {
                        let _ = tx.send(jsonrpc::notification("notifications/progress", json!({
                            "progressToken": t,
                            "progress": n,
                            "message": format!("waiting for approval of {full} (airlock approvals list)")
                        })));
                    }
                }
            }
        }
    }
}

/// A server's granted secrets, by name.
type KnownSecrets = Vec<(String, Secret<String>)>;

/// Records the known secrets a launch hands back.
#[derive(Debug)]
struct Capture {
    inner: Arc<dyn Launcher>,
    known: Arc<Mutex<KnownSecrets>>,
}

impl Launcher for Capture {
    fn launch(&self, server: &ServerConfig) -> Result<upstream::Pipes, String> {
        let mut p = self.inner.launch(server)?;
        if let Ok(mut k) = self.known.lock() {
            *k = std::mem::take(&mut p.known_secrets);
        }
        Ok(p)
    }
}

/// Mask every string in `v` (object keys included). A string is only
/// rebuilt when the scrubber finds something in it (most hold nothing:
/// `scan` costs a search, `redact` a search and a masker), and an object
/// only when one of its keys changes.
fn scrub_value(sc: &airlock_scrub::Scrubber, v: &mut Value, masked: &mut usize) {
    match v {
        Value::String(s) => {
            if let Some(r) = redacted(sc, s) {
                *masked += 1;
                *s = r;
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| scrub_value(sc, x, masked)),
        Value::Object(m) => {
            let keys: Vec<(String, String)> = m
                .keys()
                .filter_map(|k| redacted(sc, k).map(|r| (k.clone(), r)))
                .collect();
            for (old, new) in keys {
                *masked += 1;
                if let Some(x) = m.remove(&old) {
                    m.insert(new, x);
                }
            }
            m.values_mut().for_each(|x| scrub_value(sc, x, masked));
        }
        _ => {}
    }
}

/// `s` masked, or `None` when nothing in it is found.
fn redacted(sc: &airlock_scrub::Scrubber, s: &str) -> Option<String> {
    if sc.scan(s).is_empty() {
        return None;
    }
    let r = sc.redact(s);
    (r.text != s).then_some(r.text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_pin_gives_way_to_a_re_pin_from_another_connection() {
        let dir = tempfile::tempdir().expect("test");
        let db = dir.path().join("a.db");
        let tenant = TenantId::new("t1").expect("test");
        let pins = SqlitePins::new(
            airlock_store::SqliteStore::open(&db).expect("test"),
            tenant.clone(),
        );
        assert_eq!(pins.get("fs", "read"), Ok(None));
        assert_eq!(pins.pin_if_absent("fs", "read", "aa", "{}"), Ok(true));
        assert_eq!(pins.get("fs", "read"), Ok(Some("aa".into())));
        // Remembered: the next read is not a query.
        let stamp = pins.stamp.as_ref().expect("a stamp").read().expect("test");
        assert_eq!(
            pins.remembered("fs", "read", &stamp),
            Some(Some("aa".into()))
        );
        // An operator re-pins it, in another process (here: connection).
        let mut other = airlock_store::SqliteStore::open(&db).expect("test");
        other
            .mcp_set_pin(
                &tenant,
                &airlock_store::ToolPin {
                    server: "fs".into(),
                    tool: "read".into(),
                    sha256: "bb".into(),
                    definition: "{}".into(),
                    pinned_by: "operator".into(),
                    pinned_at: 2,
                },
            )
            .expect("test");
        assert_eq!(pins.get("fs", "read"), Ok(Some("bb".into())));
    }

    #[test]
    fn results_are_scrubbed_in_values_and_keys_and_left_alone_when_clean() {
        let secret = Secret::new("tok-9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a".to_owned());
        let sc = scrubber_builder(false)
            .known_secret("tok", &secret)
            .build()
            .expect("scrubber");
        let mut v = json!({
            "content": [{"type": "text", "text": "the token is tok-9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a."}],
            "structuredContent": {"tok-9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a": {"n": 1, "ok": "fine"}},
            "isError": false
        });
        let mut masked = 0;
        scrub_value(&sc, &mut v, &mut masked);
        assert_eq!(
            v,
            json!({
                "content": [{"type": "text", "text": "the token is [SECRET:tok]."}],
                "structuredContent": {"[SECRET:tok]": {"n": 1, "ok": "fine"}},
                "isError": false
            })
        );
        assert_eq!(masked, 2);
        let clean = json!({"content": [{"type": "text", "text": "hello"}], "isError": false});
        let mut c = clean.clone();
        let mut masked = 0;
        scrub_value(&sc, &mut c, &mut masked);
        assert_eq!((c, masked), (clean, 0));
    }
}
