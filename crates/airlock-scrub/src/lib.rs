//! Airlock's scrubbing boundary: every byte leaving an agent, a tool, an
//! upstream response or the audit trail can pass through one [`Scrubber`]
//! that finds credentials and personal data and masks them.
//!
//! **What it enforces.** Findings come from four sources: credential
//! formats kept as data (`rules/secrets.toml`, 270+ rules, one entry per provider
//! format with its documentation source, checksums verified where the format
//! has one), structural secrets (private-key blocks, JWTs, URLs and
//! connection strings with passwords, secret-named assignments with
//! entropy), PII (`rules/pii.toml`: email, phones validated with
//! libphonenumber metadata for their own country code or the configured
//! default regions, SSN, payment cards of every scheme's IIN ranges, IBAN,
//! IPv4/IPv6, dates of birth, US/UK/military street addresses) and *known
//! secrets* registered at run time, matched in plain, base64 (both
//! alphabets, every alignment), hex, percent-encoded and JSON-escaped form.
//! Credential values with little information — placeholders, templates
//! (`${VAR}`, `{{ var }}`), values another tool masked (`****`, `…`,
//! `[REDACTED]`), runs and sequences — are not findings, except for formats
//! with a checksum or structure of their own.
//! Every rule has a bounded maximum match length, checked when rules load;
//! that bound is what lets [`StreamScrubber`] emit exactly what whole-input
//! redaction would, while holding back only that many bytes.
//!
//! **What it trusts.** Nothing about its input: any bytes (invalid UTF-8,
//! NUL, megabytes without a newline) are scanned in time linear in their
//! length and never cause a panic. It trusts its own rule files (validated
//! at load and by tests) and any [`NerHook`] the caller installs (whose
//! spans are clamped, not believed).
//!
//! **What it does not guarantee.** Detection is pattern-based: a secret in
//! an unknown format, split by the writer into pieces, or encoded in a way
//! not listed above (compressed, encrypted, reversed) passes through unless
//! it was registered *and* appears in one of the listed encodings. Base64
//! matches of a known secret leave up to two boundary characters (≤ 12 bits)
//! unmasked. A real credential whose value reads like a placeholder
//! (`…EXAMPLE…`, a run of one character, `123456…`) is not reported unless
//! its format is checksummed. Phone numbers written without a country
//! code are found only when valid in a configured region. NER output is
//! not covered by the streaming guarantee. The
//! library does no I/O and holds reversible mappings in memory only.
//!
//! ```
//! use airlock_scrub::{Scrubber, Category};
//! use airlock_types::Secret;
//!
//! let s = Scrubber::builder()
//!     .known_secret("vault_db_password", &Secret::new("hunter2-but-longer".to_string()))
//!     .build()?;
//! let r = s.redact("mail bob@example.org, password hunter2-but-longer");
//! assert_eq!(r.text, "mail [EMAIL_1], password [SECRET:vault_db_password]");
//! assert_eq!(r.stats.pii, 1);
//! # Ok::<(), airlock_scrub::ScrubError>(())
//! ```
#![forbid(unsafe_code)]

mod blocks;
mod checks;
mod digits;
mod engine;
mod error;
mod forward;
mod head;
mod keywords;
mod known;
mod mask;
mod names;
mod ner;
mod pattern;
mod phone;
mod rules;
mod scan;
mod scrubber;
mod stream;
mod syntax;

pub use error::ScrubError;
pub use mask::{Mask, Stats};
pub use ner::{NerHook, NerKind, NerSpan};
pub use rules::RuleInfo;
pub use scrubber::{
    Category, Finding, Redacted, RedactedBytes, Scrubber, ScrubberBuilder, Session,
};
pub use stream::StreamScrubber;

/// Format helpers, public so tests and benchmarks can generate
/// format-valid synthetic tokens instead of committing real-looking ones.
pub mod testing {
    pub use crate::checks::{base62_checksum, crc32, iban_ok, luhn_ok};
    pub use crate::rules::builtin_anchored_only;

    /// For the compile-cost benchmark: compile `pattern` as the engine
    /// compiles a rule it only tries anchored (forward-only matcher).
    pub fn compile_forward(pattern: &str) -> Result<(), String> {
        crate::forward::Forward::build(pattern).map(drop)
    }

    /// For the compile-cost benchmark: compile `pattern` as the engine
    /// compiles every other rule (a full `meta::Regex`).
    pub fn compile_regex(pattern: &str) -> Result<(), String> {
        crate::rules::build_regex(pattern).map(drop)
    }

    /// A GitHub/npm-style token (`prefix_` + 30 chars + CRC32 checksum) whose
    /// random part is `random` (must be 30 base62 characters).
    pub fn github_style_token(prefix: &str, random: &str) -> String {
        let sum = base62_checksum(crc32(random.as_bytes()));
        format!("{prefix}_{random}{}", String::from_utf8_lossy(&sum))
    }
}
