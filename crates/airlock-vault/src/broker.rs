//! The credential broker: per-run handles with caveats, redeemed only for the
//! destinations they are bound to.

use crate::VaultError;
use crate::binding::Binding;
use crate::handle::{self, find_handle_spans, find_handles};
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
    /// Build a grant (normally from [`crate::Vault::grant`]).
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

/// A refused credential use: the reason code and, when the handle was known,
/// the secret's name. Never a value or a handle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}{}", secret.as_ref().map(|s| format!(" (secret {s})")).unwrap_or_default())]
pub struct Denial {
    /// Why.
    pub reason: Reason,
    /// The secret the handle stood for, if the handle was known.
    pub secret: Option<String>,
}

impl Denial {
    /// The audit record of a refused credential use: action
    /// `credential.denied`, the real destination (no query) as resource, the
    /// reason code, and the secret's name. Never the handle or a value.
    pub fn audit_event(&self, tenant: TenantId, run: RunId, dest: &Destination<'_>) -> AuditEvent {
        let path = dest.path.split(['?', '#']).next().unwrap_or("");
        let resource = format!(
            "{}://{}:{}{}",
            dest.scheme.to_ascii_lowercase(),
            dest.host,
            dest.port,
            path
        );
        let mut ev = AuditEvent::new(
            tenant,
            Actor::new(ActorKind::Agent, run.as_str()),
            "credential.denied",
            resource,
            self.reason,
            EventResult::Denied,
        )
        .with_decision(Decision::deny(self.reason))
        .with_run(run)
        .with_detail("method", dest.method);
        if let Some(s) = &self.secret {
            ev = ev.with_detail("secret", s.as_str());
        }
        ev
    }

    fn new(reason: Reason, secret: Option<&str>) -> Denial {
        Denial {
            reason,
            secret: secret.map(str::to_owned),
        }
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
    ) -> Result<Vec<MintedHandle>, VaultError> {
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
            return Err(VaultError::RunExists { run: run.clone() });
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
    ) -> Result<(RunGuard, Vec<MintedHandle>), VaultError> {
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

    /// Check every caveat (and, for a header, that it is the bound one); on
    /// success count one use and return the grant.
    fn check(
        &self,
        handle: &str,
        dest: &Destination<'_>,
        header: Option<&str>,
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
        if header.is_some_and(|h| !live.binding.header.eq_ignore_ascii_case(h)) {
            return deny(Reason::CredentialHeaderMismatch);
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

    /// Redeem `handle` for `dest`: the full header value (the binding's
    /// format with the real secret), or the reason it is refused. Each
    /// success counts one use.
    pub fn redeem(&self, handle: &str, dest: &Destination<'_>) -> Result<Secret<String>, Reason> {
        self.check(handle, dest, None)
            .map(|l| l.rendered.duplicate())
            .map_err(|d| d.reason)
    }

    /// Inspect one request header for handles and compute its replacement.
    ///
    /// * no handle: `Ok(None)` — leave the header alone;
    /// * `Basic base64(user:handle)`: the handle is replaced by the real
    ///   value inside the credentials, which are re-encoded;
    /// * otherwise exactly one handle: the header becomes the binding's
    ///   format with the real value (`Bearer <secret>`).
    ///
    /// Refused (the request must be denied and audited): a malformed,
    /// unknown, revoked or expired handle, a destination outside the
    /// caveats, a header other than the one the secret is bound to
    /// ([`Reason::CredentialHeaderMismatch`]), several handles in one
    /// non-Basic header ([`Reason::MalformedRequest`]), or a value longer
    /// than [`MAX_INSPECTED_LEN`] ([`Reason::LimitExceeded`]).
    pub fn inject_header(
        &self,
        name: &str,
        value: &str,
        dest: &Destination<'_>,
    ) -> Result<Option<Secret<String>>, Denial> {
        if value.len() > MAX_INSPECTED_LEN {
            return Err(Denial::new(Reason::LimitExceeded, None));
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
            return Err(Denial::new(Reason::MalformedRequest, None));
        }
        let live = self.check(first, dest, Some(name))?;
        Ok(Some(live.rendered.duplicate()))
    }

    fn inject_basic(
        &self,
        header: &str,
        b64: &str,
        dest: &Destination<'_>,
    ) -> Result<Option<Secret<String>>, Denial> {
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
        let mut done = 0;
        for (pos, h) in find_handle_spans(text) {
            let live = self.check(h, dest, Some(header))?;
            out.expose_mut().push_str(&text[done..pos]);
            out.expose_mut().push_str(live.value.expose());
            done = pos + h.len();
        }
        out.expose_mut().push_str(&text[done..]);
        let encoded = STANDARD.encode(out.expose().as_bytes());
        Ok(Some(Secret::new(format!("Basic {encoded}"))))
    }

    /// Inspect a query string (without the `?`) for handles and replace each
    /// with its real value, percent-encoded. The same caveats apply except
    /// the header name. `Ok(None)` when there is no handle.
    pub fn inject_query(
        &self,
        query: &str,
        dest: &Destination<'_>,
    ) -> Result<Option<Secret<String>>, Denial> {
        if query.len() > MAX_INSPECTED_LEN {
            return Err(Denial::new(Reason::LimitExceeded, None));
        }
        if find_handles(query).next().is_none() {
            return Ok(None);
        }
        let mut out = Secret::new(String::with_capacity(query.len() + 64));
        let mut done = 0;
        for (pos, h) in find_handle_spans(query) {
            let live = self.check(h, dest, None)?;
            out.expose_mut().push_str(&query[done..pos]);
            percent_encode_into(live.value.expose(), out.expose_mut());
            done = pos + h.len();
        }
        out.expose_mut().push_str(&query[done..]);
        Ok(Some(out))
    }
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
