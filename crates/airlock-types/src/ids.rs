//! Identifiers. All are short printable ASCII strings, validated on creation so
//! that they can go into headers, file names and audit records verbatim.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An identifier was empty, too long or contained characters outside
/// `[A-Za-z0-9_.:-]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind}: must be 1-128 characters of [A-Za-z0-9_.:-]")]
pub struct IdError {
    kind: &'static str,
}

fn valid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validate and wrap.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                if valid(&s) { Ok(Self(s)) } else { Err(IdError { kind: $kind }) }
            }
            /// The id as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }
    };
}

id_type!(
    /// A tenant. Every stored object belongs to exactly one.
    TenantId,
    "tenant id"
);
id_type!(
    /// One `airlock run` (or one proxy session).
    RunId,
    "run id"
);
id_type!(
    /// One agent: the program a tenant runs under Airlock (one agent has
    /// many runs).
    AgentId,
    "agent id"
);
id_type!(
    /// One request through a proxy or gateway.
    RequestId,
    "request id"
);

impl TenantId {
    /// The tenant used by the embedded single-user default.
    pub fn default_tenant() -> Self {
        TenantId("default".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_reject_unprintable_and_empty() {
        assert!(TenantId::new("acme-1").is_ok());
        assert!(TenantId::new("").is_err());
        assert!(RunId::new("a b").is_err());
        assert!(RunId::new("a\nb").is_err());
        assert!(RunId::new("x".repeat(129)).is_err());
        let err = serde_json::from_str::<TenantId>("\"bad/id\"").unwrap_err();
        assert!(err.to_string().contains("invalid tenant id"));
    }
}
