//! Errors. Messages never contain scanned text or secret values.

/// What went wrong in the scrubber.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ScrubError {
    /// A rule file is not valid TOML or has unknown fields.
    #[error("{file}: {message}")]
    RuleFile { file: String, message: String },
    /// One rule is invalid (bad regex, unbounded match, unknown check…).
    #[error("{file}: rule {id}: {message}")]
    Rule {
        file: String,
        id: String,
        message: String,
    },
    /// A known secret cannot be registered (empty or too short to match safely).
    #[error("known secret {name:?}: {message}")]
    KnownSecret { name: String, message: String },
    /// The known-secret or keyword automaton could not be built.
    #[error("building the {what} matcher failed: {message}")]
    Automaton { what: &'static str, message: String },
    /// A phone region is not an ISO 3166-1 alpha-2 code libphonenumber knows.
    #[error("phone region {region:?} is not a known ISO 3166-1 alpha-2 code")]
    PhoneRegion { region: String },
    /// The stream held back more than its limit without finding a safe cut
    /// (adversarial chain of overlapping matches); it failed closed.
    #[error("stream scrubber held back {held} bytes (limit {limit}); output stopped")]
    StreamLimit { held: usize, limit: usize },
    /// The stream failed earlier and emits nothing further.
    #[error("stream scrubber failed earlier; output stopped")]
    StreamFailed,
}
