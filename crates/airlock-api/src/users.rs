//! Users (operators) of a tenant: the people who log in to the dashboard.
//! A local account has an Argon2id password hash; the API creates one with
//! a generated one-time password, shown once in the answer and changed at
//! the first login. Accounts created by single sign-on appear here too.
//! Every change is recorded before it is made. Only `admin` tokens that are
//! not limited to agents list, create or delete users.
//!
//! The password primitives live here too, so that `airlock serve
//! --init-admin`, the dashboard's login and this API hash and check alike.

use crate::auth::Authed;
use crate::state::AppState;
use crate::{ApiError, ApiPath, JsonBody};
use airlock_store::{AccountStore, UserDeleted, UserRow};
use airlock_types::{Action, Actor, ActorKind, AuditEvent, EventResult, Reason, Secret, TenantId};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// Hashing or the system's random source failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PasswordError(pub String);

fn random_bytes<const N: usize>() -> Result<[u8; N], PasswordError> {
    let mut b = [0u8; N];
    aws_lc_rs::rand::fill(&mut b)
        .map_err(|_| PasswordError("system random source failed".into()))?;
    Ok(b)
}

/// Argon2id with the crate's defaults (m = 19 MiB, t = 2, p = 1: OWASP's
/// recommendation), as a PHC string.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::encode_b64(&random_bytes::<16>()?)
        .map_err(|e| PasswordError(format!("salt: {e}")))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError(format!("password hash: {e}")))
}

/// A stored hash every unknown username is checked against, so an unknown
/// name costs as much time as a wrong password.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        hash_password("airlock decoy password").unwrap_or_else(|_| {
            // Same parameters, so the same cost, even without randomness.
            "$argon2id$v=19$m=19456,t=2,p=1$YWlybG9jay1kZWNveS1zYWx0$h8Xc2l1Dx3Jb0oJg0s3cIoJq2QyQm0S6oP3q5b7S1nE".to_owned()
        })
    })
}

/// Whether `password` matches the PHC string `phc` (false on any error).
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// A one-time password for a new account: 20 characters from a
/// 32-letter alphabet without look-alikes (100 bits).
pub fn generate_password() -> Result<Secret<String>, PasswordError> {
    const ALPHABET: &[u8; 32] = b"abcdefghjkmnpqrstuvwxyz23456789Z";
    let bytes = random_bytes::<20>()?;
    let s: String = bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(b & 31)]))
        .collect();
    Ok(Secret::new(s))
}

/// Creating a local account failed.
#[derive(Debug, thiserror::Error)]
pub enum NewAccountError {
    /// The username is taken (in this installation).
    #[error("user {0} exists")]
    Exists(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] airlock_store::StoreError),
    /// Hashing or the random source failed.
    #[error(transparent)]
    Password(#[from] PasswordError),
}

/// Create the local account `username` in `tenant` with a generated
/// one-time password that must be changed at the first login; returns the
/// password (show it once: only its Argon2id hash is stored). The caller
/// records the creation first.
pub fn create_local_account(
    accounts: &mut dyn AccountStore,
    tenant: &TenantId,
    username: &str,
    admin: bool,
    now: i64,
) -> Result<Secret<String>, NewAccountError> {
    let password = generate_password()?;
    let row = UserRow {
        username: username.to_owned(),
        tenant: tenant.clone(),
        password_hash: hash_password(password.expose())?,
        admin,
        created_at: now,
        must_change_password: true,
    };
    if !accounts.user_create(&row)? {
        return Err(NewAccountError::Exists(username.to_owned()));
    }
    Ok(password)
}

/// A username the API creates: `NAME@TENANT` (the suffix is added when
/// the name has none), so that a tenant's local accounts can never collide
/// with another tenant's, and a taken name reveals nothing across tenants.
/// NAME: 1-64 characters of `[A-Za-z0-9._+-]`.
pub fn local_username(tenant: &TenantId, given: &str) -> Result<String, ApiError> {
    let suffix = format!("@{tenant}");
    let name = given.strip_suffix(suffix.as_str()).unwrap_or(given);
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'));
    if !ok {
        return Err(ApiError::BadRequest(format!(
            "username: 1-64 characters of [A-Za-z0-9._+-], optionally followed by {suffix}"
        )));
    }
    Ok(format!("{name}{suffix}"))
}

type S = State<Arc<AppState>>;
type A = Extension<Authed>;

/// A user of the tenant: never a password or its hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserInfo {
    /// The login name.
    pub username: String,
    /// Whether the user administers the tenant (decides approvals, sets
    /// secrets and budgets in the dashboard).
    pub admin: bool,
    /// `local` (a password) or `sso` (single sign-on).
    pub login: &'static str,
    /// A one-time password that has not been replaced yet.
    pub must_change_password: bool,
    /// When it was created (µs since the epoch).
    pub created_at: i64,
}

/// What an SSO account stores instead of a password hash (no PHC string
/// starts like this, so no password ever verifies against it).
fn is_sso(row: &UserRow) -> bool {
    !row.password_hash.starts_with('$')
}

impl From<UserRow> for UserInfo {
    fn from(r: UserRow) -> UserInfo {
        UserInfo {
            login: if is_sso(&r) { "sso" } else { "local" },
            username: r.username,
            admin: r.admin,
            must_change_password: r.must_change_password,
            created_at: r.created_at,
        }
    }
}

/// Create a local user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// `NAME` or `NAME@TENANT` (the tenant's suffix is added); NAME is 1-64
    /// characters of `[A-Za-z0-9._+-]`.
    pub username: String,
    /// Whether the user administers the tenant (default false).
    #[serde(default)]
    pub admin: bool,
}

/// The new user and its one-time password, shown only in this answer.
#[derive(Serialize, ToSchema)]
pub struct UserCreated {
    /// The login name.
    pub username: String,
    /// Whether the user administers the tenant.
    pub admin: bool,
    /// A one-time password: it must be changed at the first login.
    pub password: String,
}

impl std::fmt::Debug for UserCreated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserCreated")
            .field("username", &self.username)
            .field("admin", &self.admin)
            .field("password", &"[REDACTED]")
            .finish()
    }
}

fn event(a: &Authed, action: Action, username: &str) -> AuditEvent {
    AuditEvent::new(
        a.tenant.clone(),
        Actor::new(ActorKind::Token, a.token_id.clone()),
        action,
        format!("user:{username}"),
        Reason::Recorded,
        EventResult::Success,
    )
    .with_detail("via", "api")
}

/// The tenant's users (local and single sign-on), by name.
#[utoipa::path(get, path = "/v1/users", tag = "users", security(("token" = [])),
    responses((status = 200, body = [UserInfo])))]
pub async fn list(State(st): S, Extension(a): A) -> Result<Json<Vec<UserInfo>>, ApiError> {
    a.not_agent_limited("admin")?;
    let t = a.tenant.clone();
    let rows = st.db(move |s| s.users(&t)).await?;
    Ok(Json(rows.into_iter().map(UserInfo::from).collect()))
}

/// Create a local user with a one-time password (shown once).
#[utoipa::path(post, path = "/v1/users", tag = "users", security(("token" = [])),
    request_body = CreateUser,
    responses((status = 201, body = UserCreated), (status = 400, body = crate::ErrorBody),
        (status = 409, body = crate::ErrorBody)))]
pub async fn create(
    State(st): S,
    Extension(a): A,
    JsonBody(body): JsonBody<CreateUser>,
) -> Result<(StatusCode, Json<UserCreated>), ApiError> {
    a.not_agent_limited("admin")?;
    let username = local_username(&a.tenant, &body.username)?;
    let u = username.clone();
    if st.db(move |s| s.user(&u)).await?.is_some() {
        return Err(ApiError::Conflict(format!("user {username} exists")));
    }
    st.record(event(&a, Action::UserCreated, &username).with_detail("admin", body.admin))
        .await?;
    let (t, u, admin) = (a.tenant.clone(), username.clone(), body.admin);
    let now = airlock_types::Timestamp::now().as_micros();
    let me = st.clone();
    let password = tokio::task::spawn_blocking(move || {
        let mut guard = me.control()?;
        create_local_account(guard.as_mut(), &t, &u, admin, now).map_err(|e| match e {
            NewAccountError::Exists(u) => ApiError::Conflict(format!("user {u} exists")),
            NewAccountError::Store(e) => ApiError::store(e),
            NewAccountError::Password(e) => ApiError::Internal(e.0),
        })
    })
    .await
    .map_err(|e| ApiError::Internal(format!("store task failed: {e}")))??;
    Ok((
        StatusCode::CREATED,
        Json(UserCreated {
            username,
            admin,
            password: password.expose().clone(),
        }),
    ))
}

/// Delete a user; its dashboard sessions end at once. The tenant's last
/// administrator is not deleted (409).
#[utoipa::path(delete, path = "/v1/users/{username}", tag = "users", security(("token" = [])),
    params(("username" = String, Path, description = "the login name")),
    responses((status = 204), (status = 404, body = crate::ErrorBody),
        (status = 409, body = crate::ErrorBody)))]
pub async fn remove(
    State(st): S,
    Extension(a): A,
    ApiPath(username): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    a.not_agent_limited("admin")?;
    let t = a.tenant.clone();
    let users = st.db(move |s| s.users(&t)).await?;
    let Some(user) = users.iter().find(|u| u.username == username) else {
        return Err(ApiError::NotFound);
    };
    if user.admin && users.iter().filter(|u| u.admin).count() == 1 {
        return Err(ApiError::Conflict(
            "the tenant's last administrator is not deleted".into(),
        ));
    }
    st.record(event(&a, Action::UserChanged, &username).with_detail("deleted", true))
        .await?;
    let (t, u) = (a.tenant.clone(), username.clone());
    let now = airlock_types::Timestamp::now().as_micros();
    // The store checks again in the deletion's own transaction: of two
    // concurrent deletions of the last two administrators, one is refused.
    match st.db(move |s| s.user_delete(&t, &u, now)).await? {
        UserDeleted::Deleted => Ok(StatusCode::NO_CONTENT),
        UserDeleted::NotFound => Err(ApiError::NotFound),
        UserDeleted::LastAdmin => Err(ApiError::Conflict(
            "the tenant's last administrator is not deleted".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_only_against_its_own_hash() {
        let h = hash_password("correct horse").expect("hash");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct horsf", &h));
        assert!(!verify_password("correct horse", "not a phc string"));
        assert!(!verify_password("", decoy_hash()));
        assert_ne!(h, hash_password("correct horse").expect("hash"), "salted");
    }

    #[test]
    fn generated_passwords_are_long_and_distinct() {
        let a = generate_password().expect("pw");
        let b = generate_password().expect("pw");
        assert_eq!(a.expose().len(), 20);
        assert_ne!(a.expose(), b.expose());
        assert!(!format!("{a:?}").contains(a.expose().as_str()));
    }

    #[test]
    fn local_usernames_carry_their_tenant() {
        let t = TenantId::new("acme").expect("tenant");
        assert_eq!(local_username(&t, "alice").expect("ok"), "alice@acme");
        assert_eq!(local_username(&t, "alice@acme").expect("ok"), "alice@acme");
        for bad in [
            "",
            "@acme",
            "alice@globex",
            "a b",
            "alice@acme@acme",
            "é",
            &"x".repeat(65),
        ] {
            assert!(local_username(&t, bad).is_err(), "{bad:?}");
        }
    }
}
