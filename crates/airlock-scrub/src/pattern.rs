//! The pattern a `context` rule stands for: its names, then the same tail
//! (the shapes of an assignment, the secret, the end of the value).

/// Name bytes a `context` pattern allows between the name and the quotes
/// or operator (`head::assignment_follows` relies on the same bound).
///
/// The shapes after the name are those configs and code write
/// (gitleaks' `GenerateSampleSecrets` lists them): `=`, `:`, `:=`, `::=`,
/// `:::=` (make), `=>`, `?=`, `+=`, `.=` (PHP), `,` (CSV), a type between
/// name and `=` (`var apiToken string = "…"`), quotes escaped inside JSON
/// strings (`\"api_token\": \"…\"`), aligned columns (up to 12 blanks)
/// and YAML block scalars (`token: |` with the value on the next line).
pub(crate) const NAME_STRETCH: usize = 24;

pub(crate) fn context_pattern(names: &[String], secret: &str) -> String {
    let alts: Vec<String> = names.iter().map(|n| regex_syntax::escape(n)).collect();
    format!("(?i:{}){}", alts.join("|"), context_tail(secret))
}

/// What follows the name in [`context_pattern`]: the rest of the
/// assignment, the secret as group `secret`, and the byte after the value.
pub(crate) fn context_tail(secret: &str) -> String {
    format!(
        r#"[A-Za-z0-9_.\-]{{0,{NAME_STRETCH}}}(?:\\?["'\]]){{0,2}}[ \t]{{0,12}}(?:(?:=|:{{1,3}}=|:|=>|[?+.]=|,)[ \t]{{0,12}}(?:[|>][\-+]?[ \t]{{0,4}}\r?\n[ \t]{{1,16}})?|[A-Za-z][A-Za-z0-9_]{{0,15}}[ \t]{{1,4}}=[ \t]{{0,4}})\\?["'`]?(?P<secret>(?:{secret}))(?:[^A-Za-z0-9_\-]|$)"#
    )
}
