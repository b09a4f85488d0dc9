//! The one regex syntax every rule pattern is read with: bytes, Unicode
//! off, no UTF-8 requirement (`rules::build_regex`'s settings). Rules are
//! parsed once at load; their full regex and their forward matcher both
//! compile from that parse.

/// Parse a rule pattern; the error is the parser's last line.
pub(crate) fn parse(pattern: &str) -> Result<regex_syntax::hir::Hir, String> {
    regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(pattern)
        .map_err(|e| {
            format!(
                "invalid regex: {}",
                e.to_string().lines().last().unwrap_or("")
            )
        })
}
