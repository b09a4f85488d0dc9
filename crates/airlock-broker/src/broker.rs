//! The credential broker: per-run handles with caveats, redeemed only for the
//! destinations they are bound to.

use crate::BrokerError;
use crate::binding::Binding;
use crate::handle::{self, HANDLE_PREFIX, find_handle_spans, find_handles};
use airlock_types::{
    Actor, ActorKind, AuditEvent, Decision, EventResult, Reason, RunId, Secret, TenantId, Timestamp,
};
use aws_lc_rs::digest;
use base64::Engine as _;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The longest header value or query string the broker inspects. Anything
/// longer is refused ([`Reason::LimitExceeded`]) rather than half-scanned.
pub const MAX_INSPECTED_LEN: usize = 64 * 1024;
/// How many revoked handles are remembered (to answer `credential_revoked`
/// rather than `credential_unknown`); older ones are forgotten and then
/// refused as unknown, which is just as denied.
const REVOKED_MEMORY: usize = 100_000;

/// A secret the policy grants a run: its name, binding and real value.
#[derive(Debug)]
pub struct Grant {
    name: String,
    binding: Binding,
    value: Secret<String>,
}

impl Grant {
    /// Build a grant (normally from `airlock_vault::Vault::grant`).
    pub fn new(name: &str, binding: Binding, value: Secret<String>) -> Grant {
        Grant {
            name: name.to_owned(),
            binding,
            value,
        }
    }
    /// The secret's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Its binding.
    pub fn binding(&self) -> &Binding {
        &self.binding
    }
}

/// Limits applied to every handle of a run, on top of each binding's hosts,
/// methods and paths.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunLimits {
    /// Handles expire this long after minting.
    pub ttl: Option<Duration>,
    /// Each handle may be redeemed at most this many times.
    pub max_uses: Option<u64>,
}

/// A handle minted for a run: set it in the sandbox environment under `env`.
#[derive(Debug)]
pub struct MintedHandle {
    /// The secret's name.
    pub name: String,
    /// The environment variable to set (from the binding), if any.
    pub env: Option<String>,
    /// The handle itself (a bearer token for this broker only).
    pub handle: Secret<String>,
}

/// A run's secret as the scrubber needs it: the real value to look for, and
/// the handle to show instead.
#[derive(Debug)]
pub struct KnownSecret {
    /// The secret's name.
    pub name: String,
    /// The real value.
    pub value: Secret<String>,
    /// Its handle in this run.
    pub handle: Secret<String>,
}

/// Where a request is really going, as the proxy established it (after its
/// own policy check and DNS pinning), not as the agent claims.
#[derive(Debug, Clone, Copy)]
pub struct Destination<'a> {
    /// `https` or `http`.
    pub scheme: &'a str,
    /// The host name.
    pub host: &'a str,
    /// The port.
    pub port: u16,
    /// The HTTP method.
    pub method: &'a str,
    /// The request path (a query, if present, is ignored).
    pub path: &'a str,
}

/// Where in a request a handle was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found<'a> {
    /// As (part of) the value of this header.
    Header(&'a str),
    /// As the password inside `Basic` credentials in this header.
    Basic(&'a str),
    /// As the user name inside `Basic` credentials in this header.
    BasicUser(&'a str),
    /// As the whole value of this query parameter (name percent-decoded).
    Query(&'a str),
    /// In the query string, but not as the whole value of a parameter.
    QueryOther,
    /// In the path.
    Path,
}

impl Found<'_> {
    /// `header:NAME`, `basic:NAME`, `basic-user:NAME`, `query:NAME`,
    /// `query`, `path`. A name
    /// that is long, not printable ASCII or holds a handle is left out.
    pub fn describe(&self) -> String {
        let named = |kind: &str, n: &str| {
            if n.len() <= 64
                && n.bytes().all(|b| b.is_ascii_graphic())
                && !n.contains(handle::HANDLE_PREFIX)
            {
                format!("{kind}:{n}")
            } else {
                kind.to_owned()
            }
        };
        match self {
            Found::Header(h) => named("header", h),
            Found::Basic(h) => named("basic", h),
            Found::BasicUser(h) => named("basic-user", h),
            Found::Query(q) => named("query", q),
            Found::QueryOther => "query".to_owned(),
            Found::Path => "path".to_owned(),
        }
    }
}

/// A refused credential use: the reason code, the secret's name when the
/// handle was known, and where the handle was found. Never a value or a
/// handle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}{}", secret.as_ref().map(|s| format!(" (secret {s})")).unwrap_or_default())]
pub struct Denial {
    /// Why.
    pub reason: Reason,
    /// The secret the handle stood for, if the handle was known.
    pub secret: Option<String>,
    /// Where the handle was found ([`Found::describe`]), when known.
    pub found: Option<String>,
}

/// A handle swapped for its real value: the secret's name and where the
/// value was placed ([`Binding::location`]). Never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Use {
    /// The secret's name.
    pub secret: String,
    /// `header:NAME`, `basic:NAME` or `query:NAME`.
    pub location: String,
}

impl Use {
    /// The audit record of a credential injection: action
    /// `credential.used`, the real destination (no query) as resource,
    /// reason `credential_used`, the secret's name, the method and where the
    /// value was placed. Never the handle or the value.
    pub fn audit_event(&self, tenant: TenantId, run: RunId, dest: &Destination<'_>) -> AuditEvent {
        AuditEvent::new(
            tenant,
            Actor::new(ActorKind::Agent, run.as_str()),
            airlock_types::Action::CredentialUsed,
            dest.resource(),
            Reason::CredentialUsed,
            EventResult::Success,
        )
        .with_decision(Decision::allow(Reason::CredentialUsed))
        .with_run(run)
        .with_detail("method", dest.method)
        .with_detail("secret", self.secret.as_str())
        .with_detail("location", self.location.as_str())
    }
}

/// The replacement for one header or query string, and the uses it makes.
#[derive(Debug)]
pub struct Injection {
    /// The new header value or query string.
    pub value: Secret<String>,
    /// One entry per handle swapped.
    pub uses: Vec<Use>,
}

impl Destination<'_> {
    /// `scheme://host:port/path`, without the query.
    pub fn resource(&self) -> String {
        let path = self.path.split(['?', '#']).next().unwrap_or("");
        format!(
            "{}://{}:{}{}",
            self.scheme.to_ascii_lowercase(),
            self.host,
            self.port,
            path
        )
    }
}

impl Denial {
    /// The audit record of a refused credential use: action
    /// `credential.denied`, the real destination (no query) as resource, the
    /// reason code, and the secret's name. Never the handle or a value.
    pub fn audit_event(&self, tenant: TenantId, run: RunId, dest: &Destination<'_>) -> AuditEvent {
        let mut ev = AuditEvent::new(
            tenant,
            Actor::new(ActorKind::Agent, run.as_str()),
            airlock_types::Action::CredentialDenied,
            dest.resource(),
            self.reason,
            EventResult::Denied,
        )
        .with_decision(Decision::deny(self.reason))
        .with_run(run)
        .with_detail("method", dest.method);
        if let Some(s) = &self.secret {
            ev = ev.with_detail("secret", s.as_str());
        }
        if let Some(f) = &self.found {
            ev = ev.with_detail("found", f.as_str());
        }
        ev
    }

    /// A denial with no secret or place (malformed input, limits).
    pub fn bare(reason: Reason) -> Denial {
        Denial {
            reason,
            secret: None,
            found: None,
        }
    }

    fn new(reason: Reason, secret: Option<&str>) -> Denial {
        Denial {
            reason,
            secret: secret.map(str::to_owned),
            found: None,
        }
    }

    fn at(mut self, found: Found<'_>) -> Denial {
        self.found = Some(found.describe());
        self
    }
}

type HandleKey = [u8; 32];

fn key_of(handle: &str) -> HandleKey {
    let d = digest::digest(&digest::SHA256, handle.as_bytes());
    let mut k = [0u8; 32];
    k.copy_from_slice(d.as_ref());
    k
}

#[derive(Debug)]
struct Live {
    name: String,
    binding: Binding,
    value: Secret<String>,
    rendered: Secret<String>,
    handle: Secret<String>,
    expires_at: Option<Timestamp>,
    uses_left: Option<AtomicU64>,
}

#[derive(Debug, Default)]
struct State {
    /// Keyed by SHA-256 of the handle, so the map holds no bearer token in clear.
    live: HashMap<HandleKey, Arc<Live>>,
    runs: HashMap<RunId, Vec<HandleKey>>,
    revoked: HashSet<HandleKey>,
    revoked_order: VecDeque<HandleKey>,
}

/// Mints, checks and revokes credential handles. Shared by the proxy's tasks
/// (`Arc<Broker>`); lookups take a read lock only.
#[derive(Debug, Default)]
pub struct Broker {
    state: RwLock<State>,
}

impl Broker {
    /// An empty broker.
    pub fn new() -> Broker {
        Broker::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // A panic while holding the lock cannot leave State half-updated in a
        // way that grants more than before (inserts and removals are single
        // map operations), so a poisoned lock is still safe to use.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Mint one handle per grant for `run`. Fails if the run already has handles.
    pub fn start_run(
        &self,
        run: &RunId,
        grants: Vec<Grant>,
        limits: RunLimits,
    ) -> Result<Vec<MintedHandle>, BrokerError> {
        let expires_at = match limits.ttl {
            Some(ttl) => {
                let micros = i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX);
                Some(Timestamp(
                    Timestamp::now().as_micros().saturating_add(micros),
                ))
            }
            None => None,
        };
        let mut minted = Vec::with_capacity(grants.len());
        let mut lives = Vec::with_capacity(grants.len());
        for g in grants {
            let h = handle::mint()?;
            let rendered = Secret::new(g.binding.render(g.value.expose()));
            minted.push(MintedHandle {
                name: g.name.clone(),
                env: g.binding.env.clone(),
                handle: Secret::new(h.clone()),
            });
            lives.push((
                key_of(&h),
                Arc::new(Live {
                    name: g.name,
                    binding: g.binding,
                    value: g.value,
                    rendered,
                    handle: Secret::new(h),
                    expires_at,
                    uses_left: limits.max_uses.map(AtomicU64::new),
                }),
            ));
        }
        let mut st = self.write();
        if st.runs.contains_key(run) {
            return Err(BrokerError::RunExists { run: run.clone() });
        }
        st.runs
            .insert(run.clone(), lives.iter().map(|(k, _)| *k).collect());
        for (k, l) in lives {
            st.live.insert(k, l);
        }
        Ok(minted)
    }

    /// [`Broker::start_run`], returning a guard that ends the run (revoking
    /// its handles) when dropped — on every path out of `airlock run`,
    /// including errors and panics.
    pub fn start_run_guarded(
        self: &Arc<Self>,
        run: &RunId,
        grants: Vec<Grant>,
        limits: RunLimits,
    ) -> Result<(RunGuard, Vec<MintedHandle>), BrokerError> {
        let minted = self.start_run(run, grants, limits)?;
        Ok((
            RunGuard {
                broker: Arc::clone(self),
                run: run.clone(),
            },
            minted,
        ))
    }

    /// Revoke every handle of `run`; any later use is `credential_revoked`.
    /// Returns how many handles were revoked.
    pub fn end_run(&self, run: &RunId) -> usize {
        let mut st = self.write();
        let keys = st.runs.remove(run).unwrap_or_default();
        for k in &keys {
            st.live.remove(k);
            if st.revoked.insert(*k) {
                st.revoked_order.push_back(*k);
            }
        }
        while st.revoked_order.len() > REVOKED_MEMORY {
            if let Some(old) = st.revoked_order.pop_front() {
                st.revoked.remove(&old);
            }
        }
        keys.len()
    }

    /// The run's real values and handles, to register with the scrubber.
    pub fn run_secrets(&self, run: &RunId) -> Vec<KnownSecret> {
        let st = self.read();
        let Some(keys) = st.runs.get(run) else {
            return Vec::new();
        };
        keys.iter()
            .filter_map(|k| st.live.get(k))
            .map(|l| KnownSecret {
                name: l.name.clone(),
                value: l.value.duplicate(),
                handle: l.handle.duplicate(),
            })
            .collect()
    }

    /// Check every caveat and, when `found` is given, that the handle sits
    /// where its binding sends the value; on success count one use and
    /// return the grant.
    fn check(
        &self,
        handle: &str,
        dest: &Destination<'_>,
        found: Option<Found<'_>>,
    ) -> Result<Arc<Live>, Denial> {
        self.check_inner(handle, dest, found)
            .map_err(|d| match found {
                Some(f) => d.at(f),
                None => d,
            })
    }

    fn check_inner(
        &self,
        handle: &str,
        dest: &Destination<'_>,
        found: Option<Found<'_>>,
    ) -> Result<Arc<Live>, Denial> {
        if !handle::is_well_formed(handle) {
            return Err(Denial::new(Reason::CredentialUnknown, None));
        }
        let key = key_of(handle);
        let live = {
            let st = self.read();
            match st.live.get(&key) {
                Some(l) => l.clone(),
                None if st.revoked.contains(&key) => {
                    return Err(Denial::new(Reason::CredentialRevoked, None));
                }
                None => return Err(Denial::new(Reason::CredentialUnknown, None)),
            }
        };
        let deny = |reason| Err(Denial::new(reason, Some(&live.name)));
        if live.expires_at.is_some_and(|t| Timestamp::now() >= t) {
            return deny(Reason::CredentialExpired);
        }
        if !dest.scheme.eq_ignore_ascii_case("https") {
            return deny(Reason::CredentialInsecureTransport);
        }
        if !live.binding.allows_host(dest.host, dest.port) {
            return deny(Reason::CredentialHostMismatch);
        }
        if !live.binding.allows_method(dest.method) {
            return deny(Reason::CredentialMethodMismatch);
        }
        if !live.binding.allows_path(dest.path) {
            return deny(Reason::CredentialPathMismatch);
        }
        if let Some(f) = found
            && !placed_as_bound(&live.binding, f)
        {
            return deny(Reason::CredentialWrongLocation);
        }
        if let Some(uses) = &live.uses_left {
            // Counted last, so a refused attempt does not burn a use.
            if uses
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_err()
            {
                return deny(Reason::CredentialUsesExhausted);
            }
        }
        Ok(live)
    }

    /// Redeem `handle` for `dest` regardless of where it was found: the
    /// full header value (the binding's format with the real secret), or the
    /// reason it is refused. Each success counts one use. The proxy uses
    /// [`Broker::inject_header`] and [`Broker::inject_query`], which also
    /// check the place.
    pub fn redeem(&self, handle: &str, dest: &Destination<'_>) -> Result<Secret<String>, Reason> {
        self.check(handle, dest, None)
            .map(|l| l.rendered.duplicate())
            .map_err(|d| d.reason)
    }

    /// The refusal for a handle found where no binding can place a value
    /// (the path): the first caveat it fails, else
    /// [`Reason::CredentialWrongLocation`]. Never counts a use.
    pub fn refuse_misplaced(
        &self,
        handle: &str,
        dest: &Destination<'_>,
        found: Found<'_>,
    ) -> Denial {
        match self.check(handle, dest, Some(found)) {
            Err(d) => d,
            // Unreachable: no binding places a value at `found`; refuse anyway.
            Ok(live) => Denial::new(Reason::CredentialWrongLocation, Some(&live.name)).at(found),
        }
    }

    /// Inspect one request header for handles and compute its replacement.
    ///
    /// * no handle: `Ok(None)` — leave the header alone;
    /// * `Basic base64(user:handle)` in the header of a secret bound as a
    ///   Basic password: the handle is replaced by the real value inside the
    ///   credentials, which are re-encoded;
    /// * otherwise exactly one handle, in the header its secret is bound to:
    ///   the header becomes the binding's format with the real value
    ///   (`Bearer <secret>`).
    ///
    /// Refused (the request must be denied and audited): a malformed,
    /// unknown, revoked or expired handle, a destination outside the
    /// caveats, a handle anywhere but where its binding places the value
    /// (another header, Basic credentials for a header binding or the other
    /// way round, a secret bound to a query parameter:
    /// [`Reason::CredentialWrongLocation`]), several handles in one
    /// non-Basic header ([`Reason::MalformedRequest`]), or a value longer
    /// than [`MAX_INSPECTED_LEN`] ([`Reason::LimitExceeded`]).
    pub fn inject_header(
        &self,
        name: &str,
        value: &str,
        dest: &Destination<'_>,
    ) -> Result<Option<Injection>, Denial> {
        if value.len() > MAX_INSPECTED_LEN {
            return Err(Denial::bare(Reason::LimitExceeded));
        }
        let trimmed = value.trim_start();
        if trimmed.len() > 6
            && trimmed.is_char_boundary(6)
            && trimmed[..6].eq_ignore_ascii_case("basic ")
            && let Some(out) = self.inject_basic(name, trimmed[6..].trim(), dest)?
        {
            return Ok(Some(out));
        }
        let mut found = find_handles(value);
        let Some(first) = found.next() else {
            return Ok(None);
        };
        if found.next().is_some() {
            return Err(Denial::bare(Reason::MalformedRequest).at(Found::Header(name)));
        }
        let live = self.check(first, dest, Some(Found::Header(name)))?;
        Ok(Some(Injection {
            value: live.rendered.duplicate(),
            uses: vec![live.used()],
        }))
    }

    fn inject_basic(
        &self,
        header: &str,
        b64: &str,
        dest: &Destination<'_>,
    ) -> Result<Option<Injection>, Denial> {
        use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
        let Some(decoded) = STANDARD
            .decode(b64)
            .or_else(|_| STANDARD_NO_PAD.decode(b64))
            .ok()
        else {
            return Ok(None);
        };
        let decoded = Secret::new(decoded);
        let Ok(text) = std::str::from_utf8(decoded.expose()) else {
            return Ok(None);
        };
        if find_handles(text).next().is_none() {
            return Ok(None);
        }
        let mut out = Secret::new(String::with_capacity(text.len() + 64));
        let mut uses = Vec::new();
        let mut done = 0;
        for (pos, h) in find_handle_spans(text) {
            // Only the password: a handle in the user name is misplaced.
            if !text[..pos].contains(':') {
                return Err(self.refuse_misplaced(h, dest, Found::BasicUser(header)));
            }
            let live = self.check(h, dest, Some(Found::Basic(header)))?;
            out.expose_mut().push_str(&text[done..pos]);
            out.expose_mut().push_str(live.value.expose());
            uses.push(live.used());
            done = pos + h.len();
        }
        out.expose_mut().push_str(&text[done..]);
        let encoded = STANDARD.encode(out.expose().as_bytes());
        Ok(Some(Injection {
            value: Secret::new(format!("Basic {encoded}")),
            uses,
        }))
    }

    /// Inspect a query string (without the `?`) for handles and replace
    /// each with its real value, percent-encoded. A handle is swapped only
    /// when it is the whole value of the parameter its secret is bound to
    /// (the name compared after percent-decoding); anywhere else in the
    /// query — another parameter, a name, part of a value — it is refused
    /// ([`Reason::CredentialWrongLocation`]) after the other caveats.
    /// `Ok(None)` when there is no handle.
    pub fn inject_query(
        &self,
        query: &str,
        dest: &Destination<'_>,
    ) -> Result<Option<Injection>, Denial> {
        if query.len() > MAX_INSPECTED_LEN {
            return Err(Denial::bare(Reason::LimitExceeded));
        }
        if find_handles(query).next().is_none() {
            return Ok(None);
        }
        let mut out = Secret::new(String::with_capacity(query.len() + 64));
        let mut uses = Vec::new();
        for (i, param) in query.split('&').enumerate() {
            if i > 0 {
                out.expose_mut().push('&');
            }
            let mut handles = find_handles(param);
            let Some(first) = handles.next() else {
                out.expose_mut().push_str(param);
                continue;
            };
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            if value != first || handles.next().is_some() || name.contains(HANDLE_PREFIX) {
                return Err(self.refuse_misplaced(first, dest, Found::QueryOther));
            }
            let name_text = String::from_utf8_lossy(&percent_decode(name.as_bytes())).into_owned();
            let live = self.check(first, dest, Some(Found::Query(&name_text)))?;
            out.expose_mut().push_str(name);
            out.expose_mut().push('=');
            percent_encode_into(live.value.expose(), out.expose_mut());
            uses.push(live.used());
        }
        Ok(Some(Injection { value: out, uses }))
    }
}

/// Whether a handle found at `found` sits where `b` places the value.
fn placed_as_bound(b: &Binding, found: Found<'_>) -> bool {
    match found {
        Found::Header(h) => b.query.is_none() && !b.basic && b.header.eq_ignore_ascii_case(h),
        Found::Basic(h) => b.query.is_none() && b.basic && b.header.eq_ignore_ascii_case(h),
        Found::Query(q) => b.query.as_deref() == Some(q),
        Found::BasicUser(_) | Found::QueryOther | Found::Path => false,
    }
}

impl Live {
    fn used(&self) -> Use {
        Use {
            secret: self.name.clone(),
            location: self.binding.location(),
        }
    }
}

/// Percent-decode every valid escape (a query parameter's name).
fn percent_decode(input: &[u8]) -> Vec<u8> {
    let hex = |b: u8| {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%'
            && let (Some(h), Some(l)) = (
                input.get(i + 1).copied().and_then(hex),
                input.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(if input[i] == b'+' { b' ' } else { input[i] });
        i += 1;
    }
    out
}

fn percent_encode_into(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
}

/// Ends its run (revoking every handle) when dropped.
#[derive(Debug)]
pub struct RunGuard {
    broker: Arc<Broker>,
    run: RunId,
}

impl RunGuard {
    /// The run.
    pub fn run(&self) -> &RunId {
        &self.run
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.broker.end_run(&self.run);
    }
}
