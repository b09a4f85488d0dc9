//! The agents and policies pages: the tenant's agents with their active
//! policy version (`/agents`), and an agent's stored policy versions
//! (version, SHA-256, author, when) with a line diff between two of them
//! (`/agents/{name}?from=N&to=M`; by default the last two), computed on
//! the server with `similar` and every line escaped. Read-only: policies
//! are stored and activated through the API (`/v1/agents/{agent}/policies`).

use crate::html::{esc, time};
use crate::pages::{Session, html_page};
use crate::{Dash, DashError};
use airlock_store::{AgentRow, PolicyVersionRow};
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use serde::Deserialize;
use similar::{ChangeTag, TextDiff};
use std::fmt::Write as _;
use std::sync::Arc;

/// Lines of context around each change in a diff.
const CONTEXT: usize = 3;

pub(crate) async fn agents(State(d): State<Arc<Dash>>, s: Session) -> Result<Response, DashError> {
    let t = s.tenant.clone();
    let rows: Vec<AgentRow> = d.api.db(move |c| c.agents(&t)).await?;
    let mut b = String::from(
        "<p>Each agent's active policy version. Store and activate versions with \
         <code>POST /v1/agents/NAME/policies</code>.</p>\n\
         <table id=\"agents\"><thead><tr><th>Agent</th><th>Team</th><th>Active policy</th><th>Created (UTC)</th></tr></thead><tbody>\n",
    );
    for a in &rows {
        let _ = writeln!(
            b,
            "<tr id=\"agent-{n}\"><td class=\"mono\"><a href=\"/agents/{n}\">{n}</a></td><td>{}</td><td class=\"active\">{}</td><td>{}</td></tr>",
            esc(a.team.as_deref().unwrap_or("")),
            a.active_policy
                .map_or_else(|| "none".to_owned(), |v| format!("v{v}")),
            time(a.created_at),
            n = esc(&a.name),
        );
    }
    if rows.is_empty() {
        b.push_str("<tr><td colspan=\"4\" id=\"none\">No agents.</td></tr>\n");
    }
    b.push_str("</tbody></table>");
    Ok(html_page("Agents", &s, &b))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DiffQuery {
    from: Option<u32>,
    to: Option<u32>,
}

/// A unified line diff of `old` → `new` as HTML (every line escaped):
/// hunks with [`CONTEXT`] lines around each change.
pub(crate) fn diff_html(old: &str, new: &str) -> String {
    let diff = TextDiff::from_lines(old, new);
    let mut s = String::new();
    for (i, group) in diff.grouped_ops(CONTEXT).iter().enumerate() {
        if i > 0 {
            s.push_str("<span class=\"hunk\">…</span>\n");
        }
        for op in group {
            for c in diff.iter_changes(op) {
                let (class, sign) = match c.tag() {
                    ChangeTag::Delete => ("del", '-'),
                    ChangeTag::Insert => ("ins", '+'),
                    ChangeTag::Equal => ("same", ' '),
                };
                let line = c.value();
                let line = line.strip_suffix('\n').unwrap_or(line);
                let line = line.strip_suffix('\r').unwrap_or(line);
                let _ = writeln!(s, "<span class=\"{class}\">{sign} {}</span>", esc(line));
            }
        }
    }
    s
}

pub(crate) async fn agent(
    State(d): State<Arc<Dash>>,
    s: Session,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, DashError> {
    let q: DiffQuery = match q {
        Some(q) => serde_urlencoded::from_str(&q).map_err(|_| DashError::BadRequest)?,
        None => DiffQuery::default(),
    };
    let (t, n) = (s.tenant.clone(), name.clone());
    let found = d
        .api
        .db(move |c| {
            let Some(agent) = c.agent(&t, &n)? else {
                return Ok(None);
            };
            Ok(Some((agent, c.policy_versions(&t, &n)?)))
        })
        .await?;
    let Some((agent, versions)) = found else {
        return Err(DashError::NotFound);
    };
    let pick = |v: u32| versions.iter().find(|p| p.version == v);
    let latest = versions.last().map_or(0, |p| p.version);
    let (from, to) = match (q.from, q.to) {
        (None, None) => (latest.saturating_sub(1), latest),
        (Some(f), Some(t)) => (f, t),
        (Some(f), None) => (f, latest),
        (None, Some(t)) => (t.saturating_sub(1), t),
    };
    let explicit = q.from.is_some() || q.to.is_some();
    let pair: Option<(&PolicyVersionRow, &PolicyVersionRow)> = match (pick(from), pick(to)) {
        (Some(a), Some(b)) => Some((a, b)),
        _ if explicit => return Err(DashError::NotFound),
        _ => None,
    };

    let mut b = format!(
        "<p>Team {} · active policy {}</p>\n<table id=\"versions\"><thead><tr><th>Version</th><th>SHA-256</th><th>Author</th><th>Created (UTC)</th><th></th></tr></thead><tbody>\n",
        esc(agent.team.as_deref().unwrap_or("none")),
        agent
            .active_policy
            .map_or_else(|| "none".to_owned(), |v| format!("v{v}")),
    );
    for p in versions.iter().rev() {
        let active = if agent.active_policy == Some(p.version) {
            "<b class=\"ok\">active</b>"
        } else {
            ""
        };
        let _ = writeln!(
            b,
            "<tr id=\"version-{v}\"><td>v{v}</td><td class=\"mono sha256\">{}</td><td class=\"mono\">{}</td><td>{}</td><td>{active}</td></tr>",
            esc(&p.sha256),
            esc(&p.author),
            time(p.created_at),
            v = p.version,
        );
    }
    if versions.is_empty() {
        b.push_str("<tr><td colspan=\"5\" id=\"none\">No policy stored.</td></tr>\n");
    }
    b.push_str("</tbody></table>\n");
    if versions.len() > 1 {
        let options = |sel: u32| {
            versions
                .iter()
                .map(|p| {
                    format!(
                        "<option value=\"{v}\"{}>v{v}</option>",
                        if p.version == sel { " selected" } else { "" },
                        v = p.version
                    )
                })
                .collect::<String>()
        };
        let _ = writeln!(
            b,
            "<form method=\"get\" action=\"/agents/{}\" class=\"box\">Compare <select name=\"from\">{}</select> with <select name=\"to\">{}</select> <button type=\"submit\">Diff</button></form>",
            esc(&agent.name),
            options(from),
            options(to)
        );
    }
    if let Some((a, z)) = pair {
        let _ = write!(
            b,
            "<h2>v{} → v{}</h2>\n<pre class=\"mono diff\" id=\"diff\">{}</pre>\n",
            a.version,
            z.version,
            diff_html(&a.text, &z.text)
        );
        if a.text == z.text {
            b.push_str("<p id=\"same\">The two versions are identical.</p>\n");
        }
    }
    Ok(html_page(&format!("Agent {}", agent.name), &s, &b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diff_marks_removed_and_added_lines_and_escapes_them() {
        let old = "# one\nmode = \"read_public\"\n[a]\nx = 1\n";
        let new = "# one\nmode = \"deny_all\"\n[a]\nx = 1\n# <script>alert(1)</script>\n";
        assert_eq!(
            diff_html(old, new),
            "<span class=\"same\">  # one</span>\n\
             <span class=\"del\">- mode = &quot;read_public&quot;</span>\n\
             <span class=\"ins\">+ mode = &quot;deny_all&quot;</span>\n\
             <span class=\"same\">  [a]</span>\n\
             <span class=\"same\">  x = 1</span>\n\
             <span class=\"ins\">+ # &lt;script&gt;alert(1)&lt;/script&gt;</span>\n"
        );
        assert_eq!(diff_html("a\n", "a\n"), "");
    }

    #[test]
    fn far_apart_changes_are_separate_hunks_with_context() {
        let old: String = (0..20).map(|i| format!("l{i}\n")).collect();
        let new = old.replace("l1\n", "L1\n").replace("l18\n", "L18\n");
        let d = diff_html(&old, &new);
        assert_eq!(d.matches("class=\"hunk\"").count(), 1, "{d}");
        assert!(!d.contains("  l9<"), "far from any change: {d}");
        assert!(d.contains("- l1<") && d.contains("+ L18<"), "{d}");
    }
}
