//! Passwords, session tokens, CSRF tokens and the same-origin check: the
//! pure parts of the dashboard's login, unit-tested here.

use airlock_store::SessionRow;
use airlock_types::Secret;
use aws_lc_rs::{constant_time, digest, hmac};

/// The dashboard could not do a check (the random source or hashing
/// failed): the same error as the API's password primitives.
pub use airlock_api::PasswordError as AuthError;
pub use airlock_api::{decoy_hash, hash_password, verify_password};

/// How long a session lives: without use (idle) and at most (absolute),
/// in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Ends after this long without a request.
    pub idle_us: i64,
    /// Ends this long after login, used or not.
    pub absolute_us: i64,
}

impl Default for SessionLimits {
    /// 30 minutes idle, 12 hours absolute.
    fn default() -> Self {
        SessionLimits {
            idle_us: 30 * 60 * 1_000_000,
            absolute_us: 12 * 3600 * 1_000_000,
        }
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N], AuthError> {
    let mut b = [0u8; N];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| AuthError("system random source failed".into()))?;
    Ok(b)
}

/// A new session's cookie value (`als_` + 256 random bits in hex).
pub fn new_session_token() -> Result<Secret<String>, AuthError> {
    Ok(Secret::new(format!(
        "als_{}",
        hex::encode(random_bytes::<32>()?)
    )))
}

/// SHA-256 of a cookie value: what the store keeps and looks up.
pub fn session_hash(token: &str) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The session's CSRF token: HMAC-SHA-256 keyed by the cookie value, so
/// only a holder of the cookie can compute it and nothing more is stored.
pub fn csrf_token(session_token: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, session_token.as_bytes());
    hex::encode(hmac::sign(&key, b"airlock dashboard csrf v1").as_ref())
}

/// Whether `presented` is the session's CSRF token (constant time).
pub fn csrf_ok(session_token: &str, presented: &str) -> bool {
    constant_time::verify_slices_are_equal(
        csrf_token(session_token).as_bytes(),
        presented.as_bytes(),
    )
    .is_ok()
}

/// Why a stored session no longer counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dead {
    /// Logged out or replaced by a later login.
    Revoked,
    /// Past its absolute end.
    Expired,
    /// Unused for longer than the idle limit.
    Idle,
}

/// Whether `row` is a live session at `now`.
pub fn live(row: &SessionRow, now: i64, limits: SessionLimits) -> Result<(), Dead> {
    if row.revoked_at.is_some() {
        return Err(Dead::Revoked);
    }
    if now >= row.expires_at {
        return Err(Dead::Expired);
    }
    if now.saturating_sub(row.last_seen_at) >= limits.idle_us {
        return Err(Dead::Idle);
    }
    Ok(())
}

/// The browser's view of where a state-changing request came from.
#[derive(Debug, Clone, Copy)]
pub struct Provenance<'a> {
    /// The `Origin` header, if sent.
    pub origin: Option<&'a str>,
    /// The `Sec-Fetch-Site` header, if sent.
    pub fetch_site: Option<&'a str>,
    /// The `Host` header.
    pub host: Option<&'a str>,
    /// Whether the server speaks TLS.
    pub tls: bool,
}

/// Whether a state-changing request comes from this site. A browser's
/// `Sec-Fetch-Site` (which pages cannot forge) must be `same-origin`; an
/// `Origin` must be this server's own — except `null`, which a browser
/// sends for its own form posts under `Referrer-Policy: no-referrer`, and
/// which is accepted only together with `Sec-Fetch-Site: same-origin`. A
/// client that sends neither header (not a browser) passes here and still
/// needs the CSRF token.
pub fn same_origin(p: Provenance<'_>) -> bool {
    let scheme = if p.tls { "https" } else { "http" };
    let own = |o: &str| p.host.is_some_and(|h| o == format!("{scheme}://{h}"));
    match (p.fetch_site, p.origin) {
        (Some(site), _) if site != "same-origin" => false,
        (Some(_), None | Some("null")) => true,
        (Some(_), Some(o)) => own(o),
        (None, None) => true,
        (None, Some(o)) => own(o),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_types::TenantId;

    #[test]
    fn generated_secrets_are_long_and_distinct() {
        let t = new_session_token().expect("token");
        assert!(t.expose().starts_with("als_") && t.expose().len() == 68);
        assert!(
            !format!("{t:?}").contains(t.expose().as_str()),
            "no value in Debug"
        );
    }

    #[test]
    fn the_csrf_token_belongs_to_its_session() {
        let (a, b) = ("als_aaaa", "als_bbbb");
        assert!(csrf_ok(a, &csrf_token(a)));
        assert!(!csrf_ok(a, &csrf_token(b)));
        assert!(!csrf_ok(a, ""));
        assert!(!csrf_ok(a, &csrf_token(a)[..63]));
    }

    #[test]
    fn sessions_end_when_revoked_expired_or_idle() {
        let l = SessionLimits {
            idle_us: 100,
            absolute_us: 1000,
        };
        let row = SessionRow {
            sha256: [0; 32],
            tenant: TenantId::new("acme").expect("t"),
            username: "u".into(),
            created_at: 0,
            last_seen_at: 500,
            expires_at: 1000,
            revoked_at: None,
        };
        assert_eq!(live(&row, 550, l), Ok(()));
        assert_eq!(live(&row, 600, l), Err(Dead::Idle));
        let mut late = row.clone();
        late.last_seen_at = 990;
        assert_eq!(live(&late, 1000, l), Err(Dead::Expired));
        let mut gone = row.clone();
        gone.revoked_at = Some(510);
        assert_eq!(live(&gone, 520, l), Err(Dead::Revoked));
    }

    #[test]
    fn only_this_sites_browser_requests_pass_the_origin_check() {
        let p = |origin, fetch_site| Provenance {
            origin,
            fetch_site,
            host: Some("127.0.0.1:8443"),
            tls: true,
        };
        assert!(same_origin(p(
            Some("https://127.0.0.1:8443"),
            Some("same-origin")
        )));
        assert!(
            same_origin(p(None, None)),
            "not a browser: the token decides"
        );
        assert!(!same_origin(p(Some("https://evil.example"), None)));
        assert!(!same_origin(p(Some("null"), None)));
        assert!(
            same_origin(p(Some("null"), Some("same-origin"))),
            "a same-origin form post under no-referrer"
        );
        assert!(!same_origin(p(Some("null"), Some("cross-site"))));
        assert!(!same_origin(p(
            Some("https://evil.example"),
            Some("same-origin")
        )));
        assert!(
            !same_origin(p(Some("http://127.0.0.1:8443"), None)),
            "scheme"
        );
        assert!(!same_origin(p(None, Some("cross-site"))));
        assert!(!same_origin(p(None, Some("same-site"))));
        assert!(!same_origin(p(
            Some("https://127.0.0.1:8443"),
            Some("cross-site")
        )));
    }
}
