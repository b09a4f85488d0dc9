//! Scoped API tokens: minting, hashing, and the check every request passes.
//!
//! A token is `alt_` + 64 hex digits (256 bits from aws-lc-rs's system
//! random). Only its SHA-256 is stored; a request's token is hashed, looked
//! up by hash, and the stored hash compared again in constant time.

use crate::ApiError;
use airlock_store::ApiTokenRow;
use airlock_types::TenantId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a token may do. `admin` grants every other scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum Scope {
    /// Read runs.
    #[serde(rename = "runs:read")]
    RunsRead,
    /// Start and stop runs.
    #[serde(rename = "runs:write")]
    RunsWrite,
    /// Read, verify, export and prove the audit log.
    #[serde(rename = "audit:read")]
    AuditRead,
    /// List and show approvals.
    #[serde(rename = "approvals:read")]
    ApprovalsRead,
    /// Decide approvals.
    #[serde(rename = "approvals:decide")]
    ApprovalsDecide,
    /// Read secret names and metadata.
    #[serde(rename = "secrets:read")]
    SecretsRead,
    /// Set secrets.
    #[serde(rename = "secrets:write")]
    SecretsWrite,
    /// Read policies.
    #[serde(rename = "policies:read")]
    PoliciesRead,
    /// Store and activate policies (never for a token limited to agents).
    #[serde(rename = "policies:write")]
    PoliciesWrite,
    /// Read teams and agents.
    #[serde(rename = "agents:read")]
    AgentsRead,
    /// Create teams and agents.
    #[serde(rename = "agents:write")]
    AgentsWrite,
    /// Create, list and revoke tokens.
    #[serde(rename = "tokens:write")]
    TokensWrite,
    /// Read budgets and usage.
    #[serde(rename = "budgets:read")]
    BudgetsRead,
    /// Set budgets.
    #[serde(rename = "budgets:write")]
    BudgetsWrite,
    /// Everything.
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 15] = [
        Scope::RunsRead,
        Scope::RunsWrite,
        Scope::AuditRead,
        Scope::ApprovalsRead,
        Scope::ApprovalsDecide,
        Scope::SecretsRead,
        Scope::SecretsWrite,
        Scope::PoliciesRead,
        Scope::PoliciesWrite,
        Scope::AgentsRead,
        Scope::AgentsWrite,
        Scope::TokensWrite,
        Scope::BudgetsRead,
        Scope::BudgetsWrite,
        Scope::Admin,
    ];

    /// The spelling in tokens and documents.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::RunsRead => "runs:read",
            Scope::RunsWrite => "runs:write",
            Scope::AuditRead => "audit:read",
            Scope::ApprovalsRead => "approvals:read",
            Scope::ApprovalsDecide => "approvals:decide",
            Scope::SecretsRead => "secrets:read",
            Scope::SecretsWrite => "secrets:write",
            Scope::PoliciesRead => "policies:read",
            Scope::PoliciesWrite => "policies:write",
            Scope::AgentsRead => "agents:read",
            Scope::AgentsWrite => "agents:write",
            Scope::TokensWrite => "tokens:write",
            Scope::BudgetsRead => "budgets:read",
            Scope::BudgetsWrite => "budgets:write",
            Scope::Admin => "admin",
        }
    }

    /// Parse a scope.
    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Scope, String> {
        Scope::parse(s).ok_or_else(|| {
            let all: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
            format!("unknown scope {s:?} (one of: {})", all.join(", "))
        })
    }
}

/// A freshly minted token: the text (shown once) and its stored row.
#[derive(Debug)]
pub struct Minted {
    /// `alt_…`: print it once; it is not stored.
    pub token: airlock_types::Secret<String>,
    /// The row to store.
    pub row: ApiTokenRow,
}

/// SHA-256 of a token's text.
pub fn token_hash(token: &str) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn random_hex(bytes: usize) -> Result<String, ApiError> {
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buf)
        .map_err(|_| ApiError::Internal("system random source failed".into()))?;
    Ok(hex::encode(buf))
}

/// What a new token is for.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    /// Its scopes (at least one).
    pub scopes: Vec<Scope>,
    /// Agents it is limited to (empty: all).
    pub agents: Vec<String>,
    /// Nodes it is limited to (empty: all).
    pub nodes: Vec<String>,
    /// A label.
    pub description: String,
    /// When it expires (µs since the epoch).
    pub expires_at: Option<i64>,
}

/// Mint a token for `tenant`.
pub fn mint(tenant: &TenantId, spec: &TokenSpec, now: i64) -> Result<Minted, ApiError> {
    if spec.scopes.is_empty() {
        return Err(ApiError::BadRequest(
            "a token needs at least one scope".into(),
        ));
    }
    let token = format!("alt_{}", random_hex(32)?);
    let mut scopes: Vec<String> = spec.scopes.iter().map(|s| s.as_str().to_owned()).collect();
    scopes.sort();
    scopes.dedup();
    let row = ApiTokenRow {
        id: format!("tok_{}", random_hex(8)?),
        tenant: tenant.clone(),
        sha256: token_hash(&token),
        scopes,
        agents: spec.agents.clone(),
        nodes: spec.nodes.clone(),
        description: spec.description.clone(),
        expires_at: spec.expires_at,
        revoked_at: None,
        created_at: now,
        last_used_at: None,
    };
    Ok(Minted {
        token: airlock_types::Secret::new(token),
        row,
    })
}

/// Why a presented token was refused (recorded, never returned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization: Bearer alt_…` header.
    Missing,
    /// Not a token this installation issued.
    Unknown,
    /// Past its expiry.
    Expired,
    /// Revoked.
    Revoked,
    /// Limited to other nodes.
    WrongNode,
}

impl Refusal {
    /// The detail recorded in the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Unknown => "unknown",
            Refusal::Expired => "expired",
            Refusal::Revoked => "revoked",
            Refusal::WrongNode => "wrong_node",
        }
    }
}

/// The bearer token of an `Authorization` header value, if it has the shape of one.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let v = header?.strip_prefix("Bearer ")?.trim();
    let ok = v.len() == 68
        && v.starts_with("alt_")
        && v[4..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    ok.then_some(v)
}

/// Check a looked-up row against the presented token, the clock and this node.
pub fn check(row: &ApiTokenRow, presented: &[u8; 32], now: i64, node: &str) -> Result<(), Refusal> {
    if aws_lc_rs::constant_time::verify_slices_are_equal(&row.sha256, presented).is_err() {
        return Err(Refusal::Unknown);
    }
    if row.revoked_at.is_some() {
        return Err(Refusal::Revoked);
    }
    if row.expires_at.is_some_and(|e| e <= now) {
        return Err(Refusal::Expired);
    }
    if !row.nodes.is_empty() && !row.nodes.iter().any(|n| n == node) {
        return Err(Refusal::WrongNode);
    }
    Ok(())
}

/// An authenticated request's token.
#[derive(Debug, Clone)]
pub struct Authed {
    /// The tenant it acts for.
    pub tenant: TenantId,
    /// The token's public id.
    pub token_id: String,
    /// Its scopes.
    pub scopes: Vec<Scope>,
    /// The agents it is limited to (empty: all).
    pub agents: Vec<String>,
}

impl Authed {
    /// Refuse (403 `scope_missing`, naming `scope`) when the token is
    /// limited to agents: what only an operator may do — tenant-wide reads
    /// of the audit log, approvals, secrets, budgets, agents, users.
    pub(crate) fn not_agent_limited(&self, scope: &str) -> Result<(), ApiError> {
        if self.agents.is_empty() {
            Ok(())
        } else {
            Err(ApiError::ScopeMissing(format!(
                "{scope} (a token limited to agents)"
            )))
        }
    }

    /// From a checked row (unknown scope names grant nothing).
    pub fn from_row(row: &ApiTokenRow) -> Authed {
        Authed {
            tenant: row.tenant.clone(),
            token_id: row.id.clone(),
            scopes: row.scopes.iter().filter_map(|s| Scope::parse(s)).collect(),
            agents: row.agents.clone(),
        }
    }

    /// Whether the token holds `scope` (directly or through `admin`).
    pub fn holds(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }

    /// Refuse unless the token holds `scope`. A token limited to agents
    /// never writes policies: an agent cannot edit its own rules.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if scope == Scope::PoliciesWrite && !self.agents.is_empty() {
            return Err(ApiError::ScopeMissing(
                "policies:write (a token limited to agents never writes policies)".into(),
            ));
        }
        if self.holds(scope) {
            Ok(())
        } else {
            Err(ApiError::ScopeMissing(scope.as_str().into()))
        }
    }

    /// Whether the token may act on `agent`.
    pub fn may_agent(&self, agent: Option<&str>) -> bool {
        match agent {
            _ if self.agents.is_empty() => true,
            Some(a) => self.agents.iter().any(|x| x == a),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_have_the_shape_and_hash_and_are_distinct() {
        let t = TenantId::new("acme").expect("tenant");
        let spec = TokenSpec {
            scopes: vec![Scope::RunsRead, Scope::RunsRead],
            agents: vec![],
            nodes: vec![],
            description: String::new(),
            expires_at: None,
        };
        let a = mint(&t, &spec, 1).expect("mint");
        let b = mint(&t, &spec, 1).expect("mint");
        let text = a.token.expose().clone();
        assert_eq!(bearer(Some(&format!("Bearer {text}"))), Some(text.as_str()));
        assert_eq!(a.row.sha256, token_hash(&text));
        assert_eq!(a.row.scopes, vec!["runs:read".to_owned()]);
        assert_ne!(a.row.sha256, b.row.sha256);
        assert_ne!(a.row.id, b.row.id);
        assert!(
            !format!("{a:?}").contains(&text),
            "Debug never shows the token"
        );
        assert_eq!(check(&a.row, &token_hash(&text), 2, "n"), Ok(()));
        assert_eq!(check(&a.row, &[0; 32], 2, "n"), Err(Refusal::Unknown));
    }

    #[test]
    fn refusals_and_scope_rules() {
        let mut row = mint(
            &TenantId::new("a").expect("t"),
            &TokenSpec {
                scopes: vec![Scope::PoliciesWrite],
                agents: vec!["bot".into()],
                nodes: vec!["n1".into()],
                description: String::new(),
                expires_at: Some(10),
            },
            1,
        )
        .expect("mint")
        .row;
        let h = row.sha256;
        assert_eq!(check(&row, &h, 10, "n1"), Err(Refusal::Expired));
        assert_eq!(check(&row, &h, 5, "n2"), Err(Refusal::WrongNode));
        let a = Authed::from_row(&row);
        assert!(matches!(
            a.require(Scope::PoliciesWrite),
            Err(ApiError::ScopeMissing(_))
        ));
        assert!(a.may_agent(Some("bot")) && !a.may_agent(Some("other")) && !a.may_agent(None));
        row.revoked_at = Some(3);
        assert_eq!(check(&row, &h, 5, "n1"), Err(Refusal::Revoked));
        assert_eq!(bearer(Some("Bearer alt_XYZ")), None);
        assert_eq!(bearer(Some("Basic abc")), None);
    }
}
