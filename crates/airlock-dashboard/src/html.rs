//! Hand-written HTML with one escaping function, [`esc`], through which
//! every value that did not come from this file passes — agents write
//! URLs, hostnames and tool arguments into their own audit trail, and
//! some will try to put script or terminal escapes there.

use std::fmt::Write as _;

/// `s` as HTML text or a double-quoted attribute value: the five HTML
/// metacharacters become entities; C0/C1 control characters (an ANSI
/// escape's ESC among them) become visible symbols (U+2400 block, `␡`,
/// U+FFFD); bidirectional overrides and isolates (which can make text
/// read differently from what it is) become U+FFFD.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(shown(c)),
        }
    }
    out
}

/// `s` as plain text for a page's script to set with `textContent` (the
/// live timeline): the same visible symbols as [`esc`] for control and
/// bidirectional characters, and no entities (none are parsed there).
pub fn visible(s: &str) -> String {
    s.chars().map(shown).collect()
}

/// What a character is displayed as: control characters as visible
/// symbols, bidirectional controls as U+FFFD, anything else as itself.
fn shown(c: char) -> char {
    match c {
        '\n' | '\t' => c,
        '\u{0}'..='\u{1f}' => char::from_u32(0x2400 + u32::from(c)).unwrap_or('\u{fffd}'),
        '\u{7f}' => '\u{2421}',
        '\u{80}'..='\u{9f}'
        | '\u{202a}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}'
        | '\u{200e}'
        | '\u{200f}'
        | '\u{061c}' => '\u{fffd}',
        _ => c,
    }
}

/// A time in microseconds since the epoch as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn time(us: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000).map_or_else(
        |_| us.to_string(),
        |t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        },
    )
}

/// Who is logged in, for the page header.
pub struct Who<'a> {
    /// The user.
    pub username: &'a str,
    /// Their tenant.
    pub tenant: &'a str,
    /// The session's CSRF token (for the logout form).
    pub csrf: &'a str,
}

/// A whole page: the header (navigation, user, logout) and `body`, which
/// the caller built with [`esc`] around every value.
pub fn page(title: &str, who: Option<&Who<'_>>, body: &str) -> String {
    let mut s = String::with_capacity(body.len() + 1024);
    let _ = write!(
        s,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · Airlock</title><link rel=\"stylesheet\" href=\"/static/app.css\"></head><body>\n",
        esc(title)
    );
    s.push_str("<header><span class=\"brand\">Airlock</span>");
    if let Some(w) = who {
        let _ = write!(
            s,
            "<a href=\"/runs\">Runs</a><a href=\"/audit\">Audit</a><a href=\"/approvals\">Approvals</a><a href=\"/budgets\">Budgets</a><a href=\"/agents\">Agents</a><a href=\"/secrets\">Secrets</a><a href=\"/tokens\">Tokens</a>\
             <form method=\"post\" action=\"/logout\"><span class=\"who\">{} · {}</span> \
             <input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\" id=\"logout\">Log out</button></form>",
            esc(w.username),
            esc(w.tenant),
            esc(w.csrf)
        );
    }
    let _ = write!(
        s,
        "</header>\n<main>\n<h1>{}</h1>\n{body}\n</main></body></html>\n",
        esc(title)
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_terminal_escapes_are_inert() {
        assert_eq!(
            esc("<script>alert('x')</script>&\"\u{1b}[31m\u{202e}"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;\u{241b}[31m\u{fffd}"
        );
        assert_eq!(
            visible("<b>&\u{1b}[31m\u{202e}\u{85}\t"),
            "<b>&\u{241b}[31m\u{fffd}\u{fffd}\t"
        );
        assert_eq!(esc("\u{7f}\u{9b}ok\n"), "\u{2421}\u{fffd}ok\n");
        for s in ["<", ">", "\"", "'", "\u{1b}", "\u{0}"] {
            let e = esc(s);
            assert!(!e.contains(s) || s == "&", "{s:?} -> {e:?}");
        }
    }

    #[test]
    fn times_are_utc_calendar_dates() {
        assert_eq!(time(0), "1970-01-01 00:00:00");
        assert_eq!(time(1_798_761_599_000_000), "2026-12-31 23:59:59");
        assert_eq!(time(951_782_400_000_000), "2000-02-29 00:00:00");
    }

    #[test]
    fn a_page_escapes_its_title_and_user() {
        let p = page(
            "<b>",
            Some(&Who {
                username: "a<b",
                tenant: "t",
                csrf: "c\"d",
            }),
            "",
        );
        assert!(p.contains("<title>&lt;b&gt; · Airlock</title>"), "{p}");
        assert!(
            p.contains("a&lt;b · t") && p.contains("value=\"c&quot;d\""),
            "{p}"
        );
        assert!(!p.contains("<script"), "no script on any page");
    }
}
