//! One engine for both ways in: parse, guard, redact, reserve, pick the
//! idempotency key; then restore, settle and audit the answer.

use crate::price::{Price, PriceTable};
use crate::provider::{Endpoint, ProviderKind, Usage, error_response};
use crate::redact::{self, Walk};
use crate::restore::{Format, Restorer, SseRestore};
use crate::writer::{Begin, Begun, Finish, Writer};
use airlock_hook::{BoxError, HookBody};
use airlock_scrub::{Category, Mask, Scrubber, Session, Stats};
use airlock_store::{CallBegin, CallEnd, CallScopes, SqliteStore, StoredResponse};
use airlock_types::{
    Action, Actor, ActorKind, AuditEvent, EventResult, EventSink, Reason, RequestId, Secret,
    TenantId, Timestamp,
};
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A model provider the gateway forwards to.
#[derive(Debug, Clone)]
pub struct Provider {
    /// Its name in config (`[gateway.providers.NAME]`).
    pub name: String,
    /// Its dialect.
    pub kind: ProviderKind,
    /// Where it is (`https://api.openai.com`); request paths are appended.
    pub base_url: http::Uri,
    /// The real API key, injected by the listener (the hook leaves
    /// injection to the credential hook).
    pub secret: Option<Arc<Secret<String>>>,
    /// What the gateway may keep of this provider's calls (the strictest
    /// of the gateway's, the provider's and the agent's applies).
    pub privacy: Privacy,
}

/// What the gateway keeps of a call's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Privacy {
    /// The provider's (redacted) answer is kept, encrypted, for replaying
    /// a retry, until the retention period ends.
    #[default]
    Standard,
    /// No content at all is kept: a retry of a completed call is refused
    /// (`idempotency_conflict`) rather than sent again.
    Strict,
}

impl Privacy {
    /// `standard` or `strict`.
    pub fn parse(s: &str) -> Option<Privacy> {
        match s {
            "standard" => Some(Privacy::Standard),
            "strict" => Some(Privacy::Strict),
            _ => None,
        }
    }
}

/// What `max_tokens_per_step` does to a call over it (or without a limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StepLimit {
    /// Refuse it (`token_limit_exceeded`).
    #[default]
    Deny,
    /// Lower its output limit to the cap (and set one when it has none).
    Clamp,
}

/// Limits on what an agent's calls may ask for. In
/// [`GatewayConfig::agents`], a field that is `None` falls back to
/// [`GatewayConfig::guardrails`].
#[derive(Debug, Clone, Default)]
pub struct Guardrails {
    /// Largest output limit one call may ask for.
    pub max_tokens_per_step: Option<u64>,
    /// What happens over `max_tokens_per_step`.
    pub step_limit: Option<StepLimit>,
    /// Tokens (input bound + output limit reserved, then usage) one run may use.
    pub max_tokens_per_run: Option<u64>,
    /// Micro-USD one run may spend (reserved, then settled).
    pub max_cost_per_run_micros: Option<i64>,
    /// Models the agent may call (`None`: any priced model).
    pub allowed_models: Option<Vec<String>>,
    /// What may be kept of its calls.
    pub privacy: Option<Privacy>,
}

impl Provider {
    /// The host of `base_url`, lower-case.
    pub fn host(&self) -> Option<String> {
        self.base_url.host().map(str::to_ascii_lowercase)
    }
}

/// What the gateway enforces.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The tenant calls are charged to and audited under.
    pub tenant: TenantId,
    /// The providers.
    pub providers: Vec<Provider>,
    /// Prices per model.
    pub prices: PriceTable,
    /// Largest request body, and largest answer kept for replay.
    pub max_body_bytes: usize,
    /// Mask personal data (secrets are always masked).
    pub redact_pii: bool,
    /// How long a call's derived idempotency key (same body, same run)
    /// counts a repeat as a retry.
    pub replay_window: Duration,
    /// Guardrails for every agent.
    pub guardrails: Guardrails,
    /// Per-agent guardrails (by agent name), over `guardrails`.
    pub agents: HashMap<String, Guardrails>,
    /// What may be kept of calls (strictest of this, the provider's and
    /// the agent's).
    pub privacy: Privacy,
    /// How long a stored answer is kept for replay.
    pub replay_retention: Duration,
}

impl GatewayConfig {
    /// Defaults: built-in prices, 4 MiB bodies, PII redacted, 10 minutes.
    pub fn new(tenant: TenantId, providers: Vec<Provider>) -> Self {
        GatewayConfig {
            tenant,
            providers,
            prices: PriceTable::builtin(),
            max_body_bytes: 4 << 20,
            redact_pii: true,
            replay_window: Duration::from_secs(600),
            guardrails: Guardrails::default(),
            agents: HashMap::new(),
            privacy: Privacy::Standard,
            replay_retention: Duration::from_secs(86_400),
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The agent.
    pub agent: String,
    /// Its team.
    pub team: Option<String>,
    /// The run (scrubbing session and idempotency are per run).
    pub run: Option<String>,
    /// The virtual key id, when it came with one.
    pub key: Option<String>,
    /// Models it may call (`None`: any priced model).
    pub allowed_models: Option<Vec<String>>,
}

/// The gateway could not be built.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The scrubber could not be built (a bad registered secret).
    #[error("gateway scrubber: {0}")]
    Scrubber(#[from] airlock_scrub::ScrubError),
    /// The key that seals stored answers could not be made.
    #[error("gateway: cannot make the key that seals stored answers")]
    Seal,
    /// Expired stored answers could not be purged.
    #[error("gateway: purging expired answers: {0}")]
    Purge(#[from] airlock_store::StoreError),
    /// The thread that does the store work of calls could not be started.
    #[error("gateway: cannot start the store thread: {0}")]
    StoreThread(std::io::Error),
}

pub(crate) struct Inner {
    pub cfg: GatewayConfig,
    scrubber: Scrubber,
    echo: Scrubber,
    pub store: Arc<Mutex<SqliteStore>>,
    /// Does the per-call store work (key lookup, reserve, settle) in
    /// group-committed batches.
    pub writer: Writer,
    /// Virtual keys seen live, by the SHA-256 of the key: tenant and row.
    /// A hit skips the lookup; the key is checked again (live, not
    /// revoked) in the store hop that reserves the call, before anything
    /// is forwarded (see `server`).
    pub keys: Mutex<HashMap<String, (String, airlock_store::KeyRow)>>,
    sink: Arc<dyn EventSink>,
    sessions: Mutex<HashMap<String, Arc<Mutex<Session>>>>,
    /// Per run (session key): tokens and micro-USD reserved or settled.
    meters: Mutex<HashMap<String, Meter>>,
    /// The key stored answers are sealed with: random per process, so
    /// what one process stored is unreadable once it is gone.
    seal: aws_lc_rs::aead::LessSafeKey,
    /// When stored answers were last purged (microseconds).
    purged: std::sync::atomic::AtomicI64,
}

/// What one run has used against its caps.
#[derive(Debug, Default, Clone, Copy)]
struct Meter {
    tokens: u64,
    micros: i64,
}

/// How often settlements purge expired answers (microseconds).
const PURGE_EVERY: i64 = 60_000_000;

/// The guardrails that apply to one caller.
#[derive(Debug, Clone, Default)]
struct Effective {
    max_tokens_per_step: Option<u64>,
    step_limit: StepLimit,
    max_tokens_per_run: Option<u64>,
    max_cost_per_run_micros: Option<i64>,
    allowed_models: Option<Vec<String>>,
    privacy: Privacy,
}

/// The gateway engine. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("providers", &self.inner.cfg.providers.len())
            .finish_non_exhaustive()
    }
}

/// One call in flight: everything needed to finish it.
#[derive(Debug)]
pub(crate) struct Call {
    kind: ProviderKind,
    provider: String,
    endpoint: Endpoint,
    model: String,
    stream: bool,
    row: Option<i64>,
    reserved: i64,
    price: Option<Price>,
    restorer: Restorer,
    stats: Stats,
    idem_key: String,
    started: Instant,
    caller: Caller,
    request: Option<RequestId>,
    retry: bool,
    est_input: u64,
    /// The run's meter key and what this call holds on it.
    meter: String,
    meter_tokens: u64,
    meter_micros: i64,
    privacy: Privacy,
    /// Counts the call as holding a reservation while it lives.
    _open: Option<crate::writer::Open>,
}

/// What `prepare` made of a request.
pub(crate) enum Prepared {
    /// Answer this (a refusal or a replay); nothing goes upstream.
    Answer(Response<HookBody>),
    /// Send `body` upstream with `Idempotency-Key: idem_key`.
    Go { call: Box<Call>, body: Bytes },
}

impl Call {
    pub(crate) fn idem_key(&self) -> &str {
        &self.idem_key
    }
}

pub(crate) fn full(b: impl Into<Bytes>) -> HookBody {
    Full::new(b.into())
        .map_err(|e| -> BoxError { match e {} })
        .boxed()
}

fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut c = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for p in parts {
        c.update(&(p.len() as u64).to_le_bytes());
        c.update(p);
    }
    hex::encode(c.finish().as_ref())
}

impl Gateway {
    /// Build the engine. `known` are registered secrets (the vault's), always
    /// masked on the way out and in the answers.
    pub fn new(
        cfg: GatewayConfig,
        known: &[(String, Secret<String>)],
        store: SqliteStore,
        sink: Arc<dyn EventSink>,
    ) -> Result<Gateway, GatewayError> {
        let mut b = Scrubber::builder()
            .mask_secrets(Mask::Placeholder)
            .mask_pii(Mask::Placeholder);
        if !cfg.redact_pii {
            b = b.only(Category::Secret);
        }
        let mut e = Scrubber::builder().only(Category::Secret);
        for (name, v) in known {
            b = b.known_secret(name, v);
            e = e.known_secret(name, v);
        }
        let mut key = [0u8; 32];
        aws_lc_rs::rand::fill(&mut key).map_err(|_| GatewayError::Seal)?;
        let unbound = aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, &key)
            .map_err(|_| GatewayError::Seal);
        zeroize::Zeroize::zeroize(&mut key);
        let mut store = store;
        let now = Timestamp::now().as_micros();
        let before = now - i64::try_from(cfg.replay_retention.as_micros()).unwrap_or(i64::MAX);
        store.gateway_purge_responses(before)?;
        let store = Arc::new(Mutex::new(store));
        let writer =
            Writer::start(store.clone(), sink.clone()).map_err(GatewayError::StoreThread)?;
        Ok(Gateway {
            inner: Arc::new(Inner {
                cfg,
                scrubber: b.build()?,
                echo: e.build()?,
                store,
                writer,
                keys: Mutex::new(HashMap::new()),
                sink,
                sessions: Mutex::new(HashMap::new()),
                meters: Mutex::new(HashMap::new()),
                seal: aws_lc_rs::aead::LessSafeKey::new(unbound?),
                purged: std::sync::atomic::AtomicI64::new(now),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &GatewayConfig {
        &self.inner.cfg
    }

    /// Forget a run's scrubbing session (its mapping is zeroized).
    pub fn end_run(&self, run: &str) {
        if let Ok(mut s) = self.inner.sessions.lock() {
            s.retain(|k, _| !k.ends_with(&format!("\0{run}")));
        }
    }

    fn session(&self, caller: &Caller) -> Option<Arc<Mutex<Session>>> {
        let key = run_key(caller);
        let mut m = self.inner.sessions.lock().ok()?;
        Some(
            m.entry(key)
                .or_insert_with(|| Arc::new(Mutex::new(self.inner.scrubber.session())))
                .clone(),
        )
    }

    /// The guardrails and privacy level that apply to `caller` calling
    /// `provider`.
    fn effective(&self, caller: &Caller, provider: &Provider) -> Effective {
        let cfg = &self.inner.cfg;
        let d = &cfg.guardrails;
        let a = cfg.agents.get(&caller.agent);
        let pick = |f: fn(&Guardrails) -> Option<u64>| a.and_then(f).or_else(|| f(d));
        Effective {
            max_tokens_per_step: pick(|g| g.max_tokens_per_step),
            step_limit: a
                .and_then(|g| g.step_limit)
                .or(d.step_limit)
                .unwrap_or_default(),
            max_tokens_per_run: pick(|g| g.max_tokens_per_run),
            max_cost_per_run_micros: a
                .and_then(|g| g.max_cost_per_run_micros)
                .or(d.max_cost_per_run_micros),
            allowed_models: caller
                .allowed_models
                .clone()
                .or_else(|| a.and_then(|g| g.allowed_models.clone()))
                .or_else(|| d.allowed_models.clone()),
            privacy: cfg
                .privacy
                .max(provider.privacy)
                .max(a.and_then(|g| g.privacy).unwrap_or_default())
                .max(d.privacy.unwrap_or_default()),
        }
    }

    /// Reserve `tokens` and `micros` on the run's meter, or say which cap
    /// it would go over.
    fn meter_reserve(
        &self,
        key: &str,
        eff: &Effective,
        tokens: u64,
        micros: i64,
    ) -> Result<(), (Reason, &'static str, Value)> {
        if eff.max_tokens_per_run.is_none() && eff.max_cost_per_run_micros.is_none() {
            return Ok(());
        }
        let Ok(mut m) = self.inner.meters.lock() else {
            return Err((
                Reason::CheckFailed,
                "detail",
                "run meter unavailable".into(),
            ));
        };
        let e = m.entry(key.to_string()).or_default();
        if let Some(cap) = eff.max_tokens_per_run
            && e.tokens.saturating_add(tokens) > cap
        {
            return Err((Reason::TokenLimitExceeded, "max_tokens_per_run", cap.into()));
        }
        if let Some(cap) = eff.max_cost_per_run_micros
            && e.micros.saturating_add(micros) > cap
        {
            return Err((
                Reason::BudgetExceeded,
                "max_cost_per_run_micros",
                cap.into(),
            ));
        }
        e.tokens += tokens;
        e.micros += micros;
        Ok(())
    }

    /// Replace what a call holds on its run's meter by what it used.
    fn meter_settle(&self, key: &str, held: (u64, i64), used: (u64, i64)) {
        if held == (0, 0) && used == (0, 0) {
            return;
        }
        if let Ok(mut m) = self.inner.meters.lock()
            && let Some(e) = m.get_mut(key)
        {
            e.tokens = e.tokens.saturating_sub(held.0).saturating_add(used.0);
            e.micros = e.micros.saturating_sub(held.1).saturating_add(used.1);
        }
    }

    /// What is stored for replay: under `strict`, nothing; else the
    /// answer sealed with AES-256-GCM under this process's key, bound to
    /// the call's idempotency key. Format: `1 || nonce || ciphertext+tag`.
    fn seal_stored(&self, call: &Call, r: StoredResponse) -> StoredResponse {
        let none = StoredResponse {
            status: r.status,
            content_type: String::new(),
            body: Vec::new(),
        };
        if call.privacy == Privacy::Strict {
            return none;
        }
        let mut nonce = [0u8; aws_lc_rs::aead::NONCE_LEN];
        if aws_lc_rs::rand::fill(&mut nonce).is_err() {
            return none;
        }
        let mut body = r.body;
        let aad = aws_lc_rs::aead::Aad::from(call.idem_key.as_bytes());
        let n = aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce);
        if self
            .inner
            .seal
            .seal_in_place_append_tag(n, aad, &mut body)
            .is_err()
        {
            return none;
        }
        let mut out = Vec::with_capacity(1 + nonce.len() + body.len());
        out.push(1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        StoredResponse {
            status: r.status,
            content_type: r.content_type,
            body: out,
        }
    }

    /// Open a stored answer; `None` when none was kept (strict privacy,
    /// purged, or sealed by another process).
    fn open_stored(&self, idem_key: &str, r: StoredResponse) -> Option<StoredResponse> {
        const N: usize = aws_lc_rs::aead::NONCE_LEN;
        let b = r.body;
        if b.len() < 1 + N || b[0] != 1 {
            return None;
        }
        let nonce = aws_lc_rs::aead::Nonce::try_assume_unique_for_key(&b[1..1 + N]).ok()?;
        let mut body = b[1 + N..].to_vec();
        let aad = aws_lc_rs::aead::Aad::from(idem_key.as_bytes());
        let len = self
            .inner
            .seal
            .open_in_place(nonce, aad, &mut body)
            .ok()?
            .len();
        body.truncate(len);
        Some(StoredResponse {
            status: r.status,
            content_type: r.content_type,
            body,
        })
    }

    /// Purge expired stored answers, at most once per [`PURGE_EVERY`].
    fn maybe_purge(&self) {
        use std::sync::atomic::Ordering;
        let now = Timestamp::now().as_micros();
        let last = self.inner.purged.load(Ordering::Relaxed);
        if now - last < PURGE_EVERY
            || self
                .inner
                .purged
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let keep = i64::try_from(self.inner.cfg.replay_retention.as_micros()).unwrap_or(i64::MAX);
        // Off the async threads: it waits for the store's lock.
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || {
            if let Ok(mut s) = store.lock()
                && let Err(e) = s.gateway_purge_responses(now.saturating_sub(keep))
            {
                tracing::warn!(error = %e, "gateway could not purge expired answers");
            }
        });
    }

    fn event(
        &self,
        caller: &Caller,
        request: Option<&RequestId>,
        resource: String,
        reason: Reason,
        result: EventResult,
    ) -> AuditEvent {
        let mut e = AuditEvent::new(
            self.inner.cfg.tenant.clone(),
            Actor::new(ActorKind::Agent, caller.agent.clone()),
            Action::GatewayCall,
            resource,
            reason,
            result,
        );
        if let Some(r) = caller
            .run
            .as_deref()
            .and_then(|r| airlock_types::RunId::new(r).ok())
        {
            e = e.with_run(r);
        }
        if let Some(r) = request {
            e = e.with_request(r.clone());
        }
        e
    }

    /// Refuse in the provider's shape, audited. If the audit sink refuses
    /// the record, the answer is `audit_unavailable`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn refuse(
        &self,
        kind: ProviderKind,
        caller: &Caller,
        request: Option<&RequestId>,
        resource: &str,
        status: StatusCode,
        reason: Reason,
        details: &[(&str, Value)],
    ) -> Response<HookBody> {
        let mut e = self.event(
            caller,
            request,
            resource.to_string(),
            reason,
            EventResult::Denied,
        );
        e = e.with_detail("provider", kind.as_str());
        for (k, v) in details {
            e = e.with_detail(k, v.clone());
        }
        let (status, reason) = match self.inner.sink.emit(e) {
            Ok(()) => (status, reason),
            Err(_) => (StatusCode::SERVICE_UNAVAILABLE, Reason::AuditUnavailable),
        };
        error_response(kind, status, reason).map(full)
    }

    /// Parse, guard, redact, reserve. Reads the body (bounded).
    pub(crate) async fn prepare(
        &self,
        provider: &Provider,
        caller: &Caller,
        request: Option<&RequestId>,
        parts: &http::request::Parts,
        body: HookBody,
    ) -> Prepared {
        let kind = provider.kind;
        let path = parts.uri.path();
        let resource = format!("{}:{}", provider.name, path);
        let refuse = |status, reason, details: &[(&str, Value)]| {
            Prepared::Answer(self.refuse(kind, caller, request, &resource, status, reason, details))
        };
        let Some(endpoint) = Endpoint::of(kind, &parts.method, path) else {
            return refuse(
                StatusCode::NOT_FOUND,
                Reason::MalformedRequest,
                &[("detail", "unsupported endpoint".into())],
            );
        };
        let started = Instant::now();
        let bytes = match collect_limited(body, self.inner.cfg.max_body_bytes).await {
            Ok(b) => b,
            Err(over) => {
                return if over {
                    refuse(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        Reason::LimitExceeded,
                        &[("limit_bytes", self.inner.cfg.max_body_bytes.into())],
                    )
                } else {
                    refuse(
                        StatusCode::BAD_REQUEST,
                        Reason::MalformedRequest,
                        &[("detail", "request body could not be read".into())],
                    )
                };
            }
        };
        let Some(session) = self.session(caller) else {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                Reason::CheckFailed,
                &[("detail", "scrubbing session unavailable".into())],
            );
        };
        let restorer = Restorer {
            session: session.clone(),
            echo: self.inner.echo.clone(),
        };
        if endpoint == Endpoint::Models {
            return Prepared::Go {
                call: Box::new(Call {
                    kind,
                    provider: provider.name.clone(),
                    endpoint,
                    model: String::new(),
                    stream: false,
                    row: None,
                    reserved: 0,
                    price: None,
                    restorer,
                    stats: Stats::default(),
                    idem_key: String::new(),
                    started,
                    caller: caller.clone(),
                    request: request.cloned(),
                    retry: false,
                    est_input: 0,
                    meter: String::new(),
                    meter_tokens: 0,
                    meter_micros: 0,
                    privacy: Privacy::Strict,
                    _open: None,
                }),
                body: bytes,
            };
        }
        let mut v: Value = match serde_json::from_slice(&bytes) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    Reason::MalformedRequest,
                    &[("detail", "body is not a JSON object".into())],
                );
            }
            Err(e) => {
                let detail = if std::str::from_utf8(&bytes).is_err() {
                    "body is not UTF-8"
                } else {
                    "body is not valid JSON"
                };
                let _ = e;
                return refuse(
                    StatusCode::BAD_REQUEST,
                    Reason::MalformedRequest,
                    &[("detail", detail.into())],
                );
            }
        };
        let Some(model) = v.get("model").and_then(Value::as_str).map(str::to_string) else {
            return refuse(
                StatusCode::BAD_REQUEST,
                Reason::MalformedRequest,
                &[("detail", "no model".into())],
            );
        };
        let details_model = [("model", Value::from(model.clone()))];
        let eff = self.effective(caller, provider);
        if let Some(allowed) = &eff.allowed_models
            && !allowed.iter().any(|m| m == &model)
        {
            return refuse(
                StatusCode::FORBIDDEN,
                Reason::ModelNotAllowed,
                &details_model,
            );
        }
        let Some(price) = self.inner.cfg.prices.get(&model).copied() else {
            return refuse(
                StatusCode::BAD_REQUEST,
                Reason::UnknownModelPrice,
                &details_model,
            );
        };
        if let Some(cap) = eff.max_tokens_per_step
            && endpoint.limits_output()
        {
            match endpoint.max_output(&v) {
                Some(n) if n <= cap => {}
                _ if eff.step_limit == StepLimit::Clamp => endpoint.set_max_output(&mut v, cap),
                requested => {
                    return refuse(
                        StatusCode::BAD_REQUEST,
                        Reason::TokenLimitExceeded,
                        &[
                            ("model", model.clone().into()),
                            ("max_tokens_per_step", cap.into()),
                            ("requested", requested.map_or(Value::Null, Value::from)),
                        ],
                    );
                }
            }
        }
        let max_out = match endpoint.max_output(&v) {
            Some(n) => n,
            None if price.max_output > 0 => price.max_output,
            None => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    Reason::UnknownModelPrice,
                    &details_model,
                );
            }
        };
        let stream = v.get("stream").and_then(Value::as_bool).unwrap_or(false);
        // Redact every text the provider would see. Fail closed: no
        // session, no call.
        let mut walk = Walk::default();
        {
            let Ok(mut s) = session.lock() else {
                return refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    Reason::CheckFailed,
                    &[("detail", "scrubbing session unavailable".into())],
                );
            };
            if let Some(obj) = v.as_object_mut() {
                for (k, x) in obj.iter_mut() {
                    if k != "model" {
                        redact::redact(x, &mut s, &mut walk);
                    }
                }
            }
        }
        if stream && endpoint == Endpoint::ChatCompletions {
            // Ask for usage in the stream, to settle to it.
            v["stream_options"]["include_usage"] = Value::Bool(true);
        }
        let body = Bytes::from(v.to_string());
        let est_input = redact::token_bound(&walk);
        let reserve = price.cost_micros(est_input, max_out);
        // The idempotency key: the caller's, else (run, step), else (run, body).
        let run = caller
            .run
            .as_deref()
            .or(caller.key.as_deref())
            .unwrap_or("");
        let body_hash = sha256_hex(&[&body]);
        let header = |n: &str| {
            parts
                .headers
                .get(n)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        };
        let (idem_src, window) = match (header("idempotency-key"), header("x-airlock-step")) {
            (Some(k), _) => (
                sha256_hex(&[
                    b"caller",
                    caller.agent.as_bytes(),
                    run.as_bytes(),
                    k.as_bytes(),
                ]),
                Duration::from_secs(86_400),
            ),
            (None, Some(s)) => (
                sha256_hex(&[
                    b"step",
                    caller.agent.as_bytes(),
                    run.as_bytes(),
                    s.as_bytes(),
                ]),
                Duration::from_secs(86_400),
            ),
            (None, None) => (
                sha256_hex(&[
                    b"body",
                    caller.agent.as_bytes(),
                    run.as_bytes(),
                    body_hash.as_bytes(),
                ]),
                self.inner.cfg.replay_window,
            ),
        };
        let idem_key = format!("alk-{}", &idem_src[..32]);
        // The run's caps, before anything is reserved in the store.
        let meter = run_key(caller);
        let meter_tokens = est_input.saturating_add(max_out);
        if let Err((reason, cap, limit)) = self.meter_reserve(&meter, &eff, meter_tokens, reserve) {
            let status = if reason == Reason::CheckFailed {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::TOO_MANY_REQUESTS
            };
            return refuse(
                status,
                reason,
                &[
                    ("model", model.clone().into()),
                    ("scope", "run".into()),
                    (cap, limit),
                ],
            );
        }
        let now = Timestamp::now().as_micros();
        let scopes = CallScopes {
            team: caller.team.clone(),
            agent: caller.agent.clone(),
            run: caller.run.clone(),
            key: caller.key.clone(),
        };
        let window_start = now - i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
        let open = self.inner.writer.opened();
        let begun = self
            .inner
            .writer
            .begin(Begin {
                tenant: self.inner.cfg.tenant.clone(),
                idem_key: idem_key.clone(),
                body_hash,
                scopes,
                reserve_micros: reserve,
                now,
                window_start,
            })
            .await;
        let mut details: Vec<(&str, Value)> = vec![
            ("model", model.clone().into()),
            ("reserved_micros", reserve.into()),
            ("idempotency_key", idem_key.clone().into()),
            (
                "masked",
                serde_json::to_value(&walk.stats.by_type).unwrap_or_default(),
            ),
        ];
        if !matches!(begun, Ok(Begun::Store(CallBegin::Reserved { .. }))) {
            self.meter_settle(&meter, (meter_tokens, reserve), (0, 0));
        }
        let (row, retry) = match begun {
            Ok(Begun::Store(CallBegin::Reserved { id, retry })) => (id, retry),
            Ok(Begun::Store(CallBegin::Exceeded { scope })) => {
                details.push(("scope", scope.into()));
                return refuse(
                    StatusCode::TOO_MANY_REQUESTS,
                    Reason::BudgetExceeded,
                    &details,
                );
            }
            Ok(Begun::Store(CallBegin::InFlight)) => {
                details.push(("detail", "in flight".into()));
                return refuse(StatusCode::CONFLICT, Reason::IdempotencyConflict, &details);
            }
            Ok(Begun::Store(CallBegin::KeyReused)) => {
                details.push(("detail", "key reused with a different body".into()));
                return refuse(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Reason::IdempotencyConflict,
                    &details,
                );
            }
            Ok(Begun::Store(CallBegin::Replay(stored))) => {
                let Some(stored) = self.open_stored(&idem_key, stored) else {
                    details.push((
                        "detail",
                        "already completed; its answer is not kept (privacy or retention)".into(),
                    ));
                    return refuse(StatusCode::CONFLICT, Reason::IdempotencyConflict, &details);
                };
                let call = Call {
                    kind,
                    provider: provider.name.clone(),
                    endpoint,
                    model,
                    stream,
                    row: None,
                    reserved: 0,
                    price: Some(price),
                    restorer,
                    stats: walk.stats,
                    idem_key,
                    started,
                    caller: caller.clone(),
                    request: request.cloned(),
                    retry: true,
                    est_input,
                    meter: String::new(),
                    meter_tokens: 0,
                    meter_micros: 0,
                    privacy: eff.privacy,
                    _open: None,
                };
                return Prepared::Answer(self.replay(call, stored));
            }
            Ok(Begun::KeyRevoked | Begun::Store(CallBegin::KeyRevoked)) => {
                return refuse(
                    StatusCode::UNAUTHORIZED,
                    Reason::VirtualKeyInvalid,
                    &[("detail", "virtual key revoked".into())],
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "gateway budget store failed");
                return refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    Reason::CheckFailed,
                    &[("detail", "budget store unavailable".into())],
                );
            }
        };
        Prepared::Go {
            call: Box::new(Call {
                kind,
                provider: provider.name.clone(),
                endpoint,
                model,
                stream,
                row: Some(row),
                reserved: reserve,
                price: Some(price),
                restorer,
                stats: walk.stats,
                idem_key,
                started,
                caller: caller.clone(),
                request: request.cloned(),
                retry,
                est_input,
                meter,
                meter_tokens,
                meter_micros: reserve,
                privacy: eff.privacy,
                _open: Some(open),
            }),
            body,
        }
    }

    /// Settle and audit one call. A settlement is queued on the store
    /// thread without waiting ([`Writer::finish`]): the thread commits it,
    /// then emits the audit record, so the answer's last byte does not
    /// wait for a commit. A call with nothing to settle is audited here.
    fn settle(
        &self,
        call: &Call,
        outcome: &str,
        status: u16,
        usage: Option<Usage>,
        end: CallEnd,
        replay: bool,
    ) {
        if let Some(event) = self.settle_start(call, outcome, status, usage, end, replay)
            && let Err(err) = self.inner.sink.emit(event)
        {
            tracing::error!(error = %err, "gateway audit record refused");
        }
    }

    /// Settle a call whose answer is already decided.
    fn settle_later(&self, call: Call, outcome: &'static str, status: u16, replay: bool) {
        self.settle(&call, outcome, status, None, CallEnd::Failed, replay);
    }

    /// Wait (blocking) until every settlement queued so far is committed
    /// and its audit record emitted. Dropping the last clone of a gateway
    /// does the same; tests and tools that read spend or audit records
    /// right after a call use this.
    pub fn flush(&self) {
        self.inner.writer.flush();
    }

    /// Meters, sealing, and the audit record: queued with the settlement
    /// on the store thread when there is a row to settle, else returned to
    /// be emitted now.
    fn settle_start(
        &self,
        call: &Call,
        outcome: &str,
        status: u16,
        usage: Option<Usage>,
        end: CallEnd,
        replay: bool,
    ) -> Option<AuditEvent> {
        let settled = match (&end, usage, call.price) {
            (_, _, None) => 0,
            (CallEnd::Done(_), Some(u), Some(p)) => p.cost_micros(u.input, u.output),
            (CallEnd::Done(_), None, _) => call.reserved,
            (CallEnd::Failed, _, _) if outcome == "upstream_error" => 0,
            (CallEnd::Failed, _, _) => call.reserved,
        };
        let used_tokens = match (&end, usage) {
            (CallEnd::Done(_), Some(u)) => u.input.saturating_add(u.output),
            (CallEnd::Failed, _) if outcome == "upstream_error" => 0,
            _ => call.meter_tokens,
        };
        self.meter_settle(
            &call.meter,
            (call.meter_tokens, call.meter_micros),
            (used_tokens, settled),
        );
        let end = match end {
            CallEnd::Done(r) => CallEnd::Done(self.seal_stored(call, r)),
            e => e,
        };
        let row = call.row.filter(|_| !replay);
        let ok = outcome == "ok" || outcome == "replayed";
        let mut e = self
            .event(
                &call.caller,
                call.request.as_ref(),
                format!("{}:{}", call.provider, call.endpoint.as_str()),
                if ok {
                    Reason::GatewayCall
                } else if outcome == "unrestorable" {
                    Reason::UnscrubbableResponse
                } else {
                    Reason::GatewayCall
                },
                if ok {
                    EventResult::Success
                } else {
                    EventResult::Failure
                },
            )
            .with_detail("provider", call.kind.as_str())
            .with_detail("endpoint", call.endpoint.as_str())
            .with_detail("model", call.model.clone())
            .with_detail("stream", call.stream)
            .with_detail("status", status)
            .with_detail("outcome", outcome)
            .with_detail(
                "tokens_in",
                usage.map(|u| u.input).unwrap_or(call.est_input),
            )
            .with_detail("tokens_out", usage.map(|u| u.output).unwrap_or(0))
            .with_detail("usage_reported", usage.is_some())
            .with_detail("reserved_micros", if replay { 0 } else { call.reserved })
            .with_detail("settled_micros", if replay { 0 } else { settled })
            .with_detail("cost_usd", if replay { 0.0 } else { settled as f64 / 1e6 })
            .with_detail(
                "masked",
                serde_json::to_value(&call.stats.by_type).unwrap_or_default(),
            )
            .with_detail("latency_ms", call.started.elapsed().as_millis() as u64)
            .with_detail("retry", call.retry)
            .with_detail(
                "privacy",
                match call.privacy {
                    Privacy::Standard => "standard",
                    Privacy::Strict => "strict",
                },
            )
            .with_detail("replayed", replay);
        if !call.idem_key.is_empty() {
            e = e.with_detail("idempotency_key", call.idem_key.clone());
        }
        let Some(id) = row else { return Some(e) };
        self.inner.writer.finish(Finish {
            id,
            settled,
            end,
            now: Timestamp::now().as_micros(),
            event: e,
        });
        self.maybe_purge();
        None
    }

    fn replay(&self, call: Call, stored: StoredResponse) -> Response<HookBody> {
        let kind = call.kind;
        let restored = if stored.content_type.starts_with("text/event-stream") {
            let mut sse = SseRestore::new(format_of(&call));
            sse.push(&call.restorer, &stored.body).and_then(|mut a| {
                a.extend(sse.finish(&call.restorer)?);
                Ok(a)
            })
        } else {
            call.restorer.body(&stored.body).map(|x| x.0)
        };
        match restored {
            Ok(body) => {
                let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
                let mut r = Response::new(full(body));
                *r.status_mut() = status;
                if let Ok(v) = HeaderValue::from_str(&stored.content_type) {
                    r.headers_mut().insert(http::header::CONTENT_TYPE, v);
                }
                r.headers_mut()
                    .insert("x-airlock-replayed", HeaderValue::from_static("true"));
                self.settle_later(call, "replayed", stored.status, true);
                r
            }
            Err(_) => {
                self.settle_later(call, "unrestorable", 502, true);
                error_response(kind, StatusCode::BAD_GATEWAY, Reason::UnscrubbableResponse)
                    .map(full)
            }
        }
    }

    /// The upstream could not be reached: settle at nothing, audit, answer.
    pub(crate) fn unreachable(&self, call: Box<Call>) -> Response<HookBody> {
        let kind = call.kind;
        self.settle_later(*call, "upstream_error", 502, false);
        error_response(kind, StatusCode::BAD_GATEWAY, Reason::UpstreamUnreachable).map(full)
    }

    /// Restore, settle and audit the upstream's answer as it streams.
    pub(crate) fn respond(&self, call: Box<Call>, resp: Response<HookBody>) -> Response<HookBody> {
        let (mut parts, body) = resp.into_parts();
        let status = parts.status;
        let ctype = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let encoded = parts
            .headers
            .get(http::header::CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes() != b"identity");
        parts.headers.remove(http::header::CONTENT_LENGTH);
        parts.headers.remove(http::header::TRANSFER_ENCODING);
        if encoded {
            // Compressed answers cannot be restored or scrubbed: refuse.
            let kind = call.kind;
            self.settle_later(*call, "unrestorable", 502, false);
            return error_response(kind, StatusCode::BAD_GATEWAY, Reason::UnscrubbableResponse)
                .map(full);
        }
        let sse = ctype.starts_with("text/event-stream") && status.is_success();
        let state = BodyState {
            gw: self.clone(),
            call: Some(call),
            body,
            sse: if sse {
                Some(SseRestore::new(Format::OpenAiChat))
            } else {
                None
            },
            raw: Vec::new(),
            status: status.as_u16(),
            ctype,
            done: false,
        };
        let state = state.init();
        let stream = futures_util::stream::unfold(state, |mut st| async move {
            st.next().await.map(|f| (f, st))
        });
        Response::from_parts(parts, StreamBody::new(stream).boxed())
    }
}

/// A caller's run: its scrubbing session and its meter are per agent and
/// run (or virtual key, outside a run).
fn run_key(caller: &Caller) -> String {
    format!(
        "{}\0{}",
        caller.agent,
        caller
            .run
            .as_deref()
            .or(caller.key.as_deref())
            .unwrap_or("")
    )
}

/// Read a whole body, at most `max` bytes. `Err(true)`: over the limit;
/// `Err(false)`: the body failed.
pub(crate) async fn collect_limited(mut body: HookBody, max: usize) -> Result<Bytes, bool> {
    let mut buf = Vec::new();
    while let Some(f) = body.frame().await {
        let Ok(f) = f else { return Err(false) };
        if let Ok(d) = f.into_data() {
            if buf.len() + d.len() > max {
                return Err(true);
            }
            buf.extend_from_slice(&d);
        }
    }
    Ok(Bytes::from(buf))
}

fn msg_err(m: &'static str) -> BoxError {
    Box::<dyn std::error::Error + Send + Sync>::from(m)
}

fn format_of(call: &Call) -> Format {
    match (call.kind, call.endpoint) {
        (ProviderKind::Anthropic, _) => Format::Anthropic,
        (_, Endpoint::Responses) => Format::OpenAiResponses,
        _ => Format::OpenAiChat,
    }
}

struct BodyState {
    gw: Gateway,
    call: Option<Box<Call>>,
    body: HookBody,
    sse: Option<SseRestore>,
    raw: Vec<u8>,
    status: u16,
    ctype: String,
    done: bool,
}

type Item = Result<Frame<Bytes>, BoxError>;

impl BodyState {
    fn init(mut self) -> Self {
        if let (Some(_), Some(call)) = (&self.sse, &self.call) {
            self.sse = Some(SseRestore::new(format_of(call)));
        }
        self
    }

    /// Finish the call (settle + audit) off the async threads.
    async fn end(&mut self, outcome: &'static str, usage: Option<Usage>, end: CallEnd) {
        if let Some(call) = self.call.take() {
            self.gw
                .settle(&call, outcome, self.status, usage, end, false);
        }
    }

    fn stored(&mut self) -> StoredResponse {
        StoredResponse {
            status: self.status,
            content_type: self.ctype.clone(),
            body: std::mem::take(&mut self.raw),
        }
    }

    fn error_event(&self) -> Bytes {
        let kind = self
            .call
            .as_ref()
            .map(|c| c.kind)
            .unwrap_or(ProviderKind::OpenAi);
        let v =
            crate::provider::error_json(kind, StatusCode::BAD_GATEWAY, Reason::UpstreamUnreachable);
        Bytes::from(match kind {
            ProviderKind::Anthropic => format!("event: error\ndata: {v}\n\n"),
            ProviderKind::OpenAi => format!("data: {v}\n\n"),
        })
    }

    async fn next(&mut self) -> Option<Item> {
        if self.done {
            return None;
        }
        let max = self.gw.inner.cfg.max_body_bytes;
        let Some(restorer) = self.call.as_ref().map(|c| c.restorer.clone()) else {
            self.done = true;
            return None;
        };
        if self.sse.is_some() {
            loop {
                match self.body.frame().await {
                    Some(Ok(f)) => {
                        let Ok(data) = f.into_data() else { continue };
                        if self.raw.len() + data.len() <= max {
                            self.raw.extend_from_slice(&data);
                        }
                        let sse = self.sse.as_mut()?;
                        match sse.push(&restorer, &data) {
                            Ok(out) if out.is_empty() => continue,
                            Ok(out) => return Some(Ok(Frame::data(Bytes::from(out)))),
                            Err(_) => {
                                self.done = true;
                                let ev = self.error_event();
                                self.end("unrestorable", None, CallEnd::Failed).await;
                                return Some(Ok(Frame::data(ev)));
                            }
                        }
                    }
                    Some(Err(_)) => {
                        // The stream was cut mid-way: tell the client in the
                        // provider's shape; the reservation stands.
                        self.done = true;
                        let ev = self.error_event();
                        self.end("stream_cut", None, CallEnd::Failed).await;
                        return Some(Ok(Frame::data(ev)));
                    }
                    None => {
                        self.done = true;
                        let sse = self.sse.as_mut()?;
                        let usage = sse.usage;
                        let tail = sse.finish(&restorer);
                        let complete = self.raw.len() <= max;
                        return match tail {
                            Ok(out) => {
                                let end = if complete {
                                    CallEnd::Done(self.stored())
                                } else {
                                    CallEnd::Failed
                                };
                                self.end("ok", usage, end).await;
                                Some(Ok(Frame::data(Bytes::from(out))))
                            }
                            Err(_) => {
                                let ev = self.error_event();
                                self.end("unrestorable", usage, CallEnd::Failed).await;
                                Some(Ok(Frame::data(ev)))
                            }
                        };
                    }
                }
            }
        }
        // Whole answers: read (bounded), restore, settle.
        self.done = true;
        let body = std::mem::replace(&mut self.body, full(Bytes::new()));
        let bytes = match collect_limited(body, max).await {
            Ok(b) => b,
            Err(_) => {
                self.end("stream_cut", None, CallEnd::Failed).await;
                return Some(Err(msg_err("the provider's answer was cut or too large")));
            }
        };
        match restorer.body(&bytes) {
            Ok((out, usage)) => {
                if (200..300).contains(&self.status) {
                    self.raw = bytes.to_vec();
                    let stored = self.stored();
                    self.end("ok", usage, CallEnd::Done(stored)).await;
                } else {
                    self.end("upstream_error", None, CallEnd::Failed).await;
                }
                Some(Ok(Frame::data(Bytes::from(out))))
            }
            Err(_) => {
                self.end("unrestorable", None, CallEnd::Failed).await;
                Some(Err(msg_err("the provider's answer could not be restored")))
            }
        }
    }
}
