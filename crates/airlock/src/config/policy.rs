//! `[policy]` section (and standalone `--policy FILE`s, whose top level has
//! the same fields): what the agent's traffic may reach. Parsing and
//! validation live in `airlock_policy::document`; this module reads the file
//! and reports errors as configuration errors.

use super::{ConfigError, SourceFile};
use std::path::Path;

pub use airlock_policy::PolicyDocument as PolicySettings;
pub use airlock_policy::document::RawPolicy;

/// Validate the `[policy]` section of the main configuration.
pub fn validate(raw: &RawPolicy, src: &SourceFile) -> Result<PolicySettings, ConfigError> {
    Ok(airlock_policy::document::validate_section(
        raw,
        src.text(),
        src.name(),
        "policy.",
    )?)
}

/// Read, parse and validate a standalone policy file (`--policy FILE`).
pub fn load_file(path: &Path) -> Result<PolicySettings, ConfigError> {
    let src = SourceFile::read(path)?;
    Ok(airlock_policy::parse_document(src.text(), src.name())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_section_errors_carry_the_policy_prefix() {
        let src = SourceFile::new(
            "airlock.toml",
            "[policy]\nallow_private = [\"nope\"]\n".to_owned(),
        );
        let msg = super::super::parse(&src).expect_err("invalid").to_string();
        assert_eq!(
            msg,
            "airlock.toml:2:18: policy.allow_private[0]: \"nope\" is not an IP address or CIDR"
        );
    }

    #[test]
    fn absent_section_is_not_configured() {
        let src = SourceFile::new("airlock.toml", "[audit]\ncheckpoint_every = 5\n".to_owned());
        assert!(!super::super::parse(&src).expect("valid").policy.configured);
    }
}
