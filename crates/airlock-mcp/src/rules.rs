//! Tool authorization: which rules match a tool for an agent (strictest
//! wins, no match is `default_deny`), and the value constraints on a call's
//! arguments. Pure except for the host lookups a path constraint makes to
//! see through symlinks.

use crate::config::{ArgConstraint, RuleAction, ToolRule};
use airlock_policy::{EgressPolicy, EgressRequest, Unresolved};
use airlock_types::Reason;
use serde_json::Value;
use std::path::{Component, Path, PathBuf};

/// Does `glob` (`*`: any run of characters, possibly empty) match `name`?
pub fn glob_match(glob: &str, name: &str) -> bool {
    let (g, n) = (glob.as_bytes(), name.as_bytes());
    let (mut gi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if gi < g.len() && g[gi] == b'*' {
            star = Some(gi);
            mark = ni;
            gi += 1;
        } else if gi < g.len() && g[gi] == n[ni] {
            gi += 1;
            ni += 1;
        } else if let Some(s) = star {
            gi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while gi < g.len() && g[gi] == b'*' {
        gi += 1;
    }
    gi == g.len()
}

/// The rules' verdict on a tool for an agent.
#[derive(Debug, Clone)]
pub struct ToolVerdict<'r> {
    /// The strictest matching action (`None`: no rule matched).
    pub action: Option<RuleAction>,
    /// Every matching rule (their argument constraints all apply).
    pub matched: Vec<&'r ToolRule>,
}

impl ToolVerdict<'_> {
    /// Visible in `tools/list` (allowed or ask).
    pub fn visible(&self) -> bool {
        matches!(self.action, Some(RuleAction::Allow | RuleAction::Ask))
    }

    /// The refusal reason, when refused.
    pub fn refusal(&self) -> Option<Reason> {
        match self.action {
            None => Some(Reason::DefaultDeny),
            Some(RuleAction::Deny) => Some(Reason::RuleDeny),
            _ => None,
        }
    }

    /// A matching allow/ask rule explicitly allows this tool's writes.
    pub fn writes_allowed(&self) -> bool {
        self.matched
            .iter()
            .any(|r| r.allow_writes && r.action != RuleAction::Deny)
    }
}

/// Judge `tool` (namespaced) for `agent`.
pub fn judge<'r>(rules: &'r [ToolRule], agent: Option<&str>, tool: &str) -> ToolVerdict<'r> {
    let matched: Vec<&ToolRule> = rules
        .iter()
        .filter(|r| r.agents.is_empty() || agent.is_some_and(|a| r.agents.iter().any(|x| x == a)))
        .filter(|r| r.tools.iter().any(|g| glob_match(g, tool)))
        .collect();
    let action = matched.iter().map(|r| r.action).max();
    ToolVerdict { action, matched }
}

/// An argument broke a constraint.
#[derive(Debug, Clone, PartialEq)]
pub struct ArgRefusal {
    /// The argument's name.
    pub argument: String,
    /// What is wrong (no value).
    pub message: String,
}

/// Find `name` (dotted path) in the arguments object.
fn lookup<'a>(args: &'a Value, name: &str) -> Option<&'a Value> {
    name.split('.').try_fold(args, |v, k| v.get(k))
}

/// Check every matched rule's constraints against `args`. An absent
/// argument is not checked (the schema says whether it is required).
pub fn check_args(matched: &[&ToolRule], args: &Value) -> Result<(), ArgRefusal> {
    for rule in matched {
        for (name, c) in &rule.args {
            let Some(v) = lookup(args, name) else {
                continue;
            };
            check_one(c, v).map_err(|message| ArgRefusal {
                argument: name.clone(),
                message,
            })?;
        }
    }
    Ok(())
}

fn check_one(c: &ArgConstraint, v: &Value) -> Result<(), String> {
    match c {
        ArgConstraint::MaxBytes(max) => {
            let len = serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX);
            if len > *max {
                return Err(format!("is {len} bytes, more than {max}"));
            }
            Ok(())
        }
        ArgConstraint::Range { min, max } => {
            let Some(n) = v.as_f64() else {
                return Err("must be a number".into());
            };
            if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) || !n.is_finite() {
                return Err(format!(
                    "is outside [{}, {}]",
                    min.map_or("-inf".into(), |m| m.to_string()),
                    max.map_or("inf".into(), |m| m.to_string())
                ));
            }
            Ok(())
        }
        ArgConstraint::Pattern(re) => {
            let s = v.as_str().ok_or("must be a string")?;
            match re.find(s) {
                Some(m) if m.start() == 0 && m.end() == s.len() => Ok(()),
                _ => Err(format!("does not match the pattern {}", re.as_str())),
            }
        }
        ArgConstraint::PathPrefix(prefixes) => {
            let s = v.as_str().ok_or("must be a string")?;
            check_path(s, prefixes)
        }
        ArgConstraint::Url { method, policy } => {
            let s = v.as_str().ok_or("must be a string")?;
            check_url(policy, method, s)
        }
    }
}

/// Normalize an absolute path lexically: `.` dropped, `..` pops (refused
/// when it would climb above the root), no trailing separator.
pub fn normalize(p: &str) -> Result<PathBuf, String> {
    if p.contains('\0') {
        return Err("contains a NUL byte".into());
    }
    let path = Path::new(p);
    if !path.is_absolute() {
        return Err("must be an absolute path".into());
    }
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return Err("climbs above /".into());
                }
            }
            Component::Normal(n) => out.push(n),
            Component::Prefix(_) => return Err("not a Unix path".into()),
        }
    }
    Ok(out)
}

/// The longest existing ancestor of `p`, resolved (symlinks followed), with
/// the rest appended.
fn resolve_existing(p: &Path) -> PathBuf {
    let mut head = p.to_path_buf();
    let mut tail = Vec::new();
    loop {
        if let Ok(c) = std::fs::canonicalize(&head) {
            let mut out = c;
            for t in tail.iter().rev() {
                out.push(t);
            }
            return out;
        }
        match (head.file_name().map(|n| n.to_owned()), head.parent()) {
            (Some(n), Some(parent)) => {
                tail.push(n);
                head = parent.to_path_buf();
            }
            _ => return p.to_path_buf(),
        }
    }
}

fn check_path(s: &str, prefixes: &[PathBuf]) -> Result<(), String> {
    let n = normalize(s)?;
    let lexical = prefixes.iter().any(|pre| n.starts_with(pre));
    if !lexical {
        return Err("is outside the allowed directories".into());
    }
    // What exists on this host is judged as it resolves: a symlink inside
    // the prefix that leads out is refused.
    let real = resolve_existing(&n);
    let ok = prefixes
        .iter()
        .any(|pre| real.starts_with(resolve_existing(pre)));
    if !ok {
        return Err("leads outside the allowed directories through a symbolic link".into());
    }
    Ok(())
}

/// The egress decision for a URL argument, on every fact but DNS (the tool
/// server's own sandbox proxy judges the addresses when it connects).
fn check_url(policy: &EgressPolicy, method: &str, s: &str) -> Result<(), String> {
    let url = airlock_policy::parse_url_with_userinfo(s)
        .map_err(|e| format!("is not a URL the policy accepts: {e}"))?;
    if let Err(r) = policy.check_host(&url.host) {
        return Err(format!("is refused by the egress policy ({})", r.code()));
    }
    let req = EgressRequest {
        method,
        scheme: url.scheme,
        host: &url.host,
        port: url.port,
        path: &url.path,
        addrs: &[],
        run: None,
        userinfo: url.userinfo.is_some(),
    };
    match policy.decide_unresolved(&req) {
        Unresolved::Decided(d) if !d.is_allow() => Err(format!(
            "is refused by the egress policy ({})",
            d.reason.code()
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(tools: &[&str], action: RuleAction, agents: &[&str]) -> ToolRule {
        ToolRule {
            tools: tools.iter().map(|s| s.to_string()).collect(),
            action,
            agents: agents.iter().map(|s| s.to_string()).collect(),
            args: Vec::new(),
            allow_writes: false,
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("fs.*", "fs.read"));
        assert!(glob_match("*", "a.b"));
        assert!(glob_match("fs.read", "fs.read"));
        assert!(!glob_match("fs.read", "fs.readx"));
        assert!(glob_match("*.delete_*", "db.delete_row"));
        assert!(!glob_match("fs.*", "fsx.read"));
    }

    #[test]
    fn strictest_wins_and_no_match_is_default_deny() {
        let rules = vec![
            rule(&["fs.*"], RuleAction::Allow, &[]),
            rule(&["fs.write"], RuleAction::Ask, &[]),
            rule(&["fs.rm"], RuleAction::Deny, &[]),
            rule(&["db.*"], RuleAction::Allow, &["alice"]),
        ];
        assert_eq!(
            judge(&rules, None, "fs.read").action,
            Some(RuleAction::Allow)
        );
        assert_eq!(
            judge(&rules, None, "fs.write").action,
            Some(RuleAction::Ask)
        );
        assert_eq!(
            judge(&rules, None, "fs.rm").refusal(),
            Some(Reason::RuleDeny)
        );
        assert_eq!(
            judge(&rules, Some("bob"), "db.q").refusal(),
            Some(Reason::DefaultDeny)
        );
        assert!(judge(&rules, Some("alice"), "db.q").visible());
    }

    #[test]
    fn paths_are_normalized_and_held_under_their_prefix() {
        let pre = vec![PathBuf::from("/srv/data")];
        assert!(check_path("/srv/data/a/b.txt", &pre).is_ok());
        assert!(check_path("/srv/data/../../etc/passwd", &pre).is_err());
        assert!(check_path("/srv/database", &pre).is_err());
        assert!(check_path("relative/x", &pre).is_err());
        assert!(check_path("/../../..", &pre).is_err());
    }

    #[test]
    fn a_symlink_inside_the_prefix_that_leads_out_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("in")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("in/link")).unwrap();
        let pre = vec![root.join("in")];
        let bad = format!("{}/in/link/passwd", root.display());
        assert!(
            check_path(&bad, &pre)
                .unwrap_err()
                .contains("symbolic link")
        );
        let good = format!("{}/in/new/file", root.display());
        assert!(check_path(&good, &pre).is_ok());
    }

    #[test]
    fn values_are_checked() {
        let mut r = rule(&["*"], RuleAction::Allow, &[]);
        r.args = vec![
            (
                "n".into(),
                ArgConstraint::Range {
                    min: Some(1.0),
                    max: Some(10.0),
                },
            ),
            (
                "s".into(),
                ArgConstraint::Pattern(regex::Regex::new("[a-z]+").unwrap()),
            ),
            ("big".into(), ArgConstraint::MaxBytes(8)),
            (
                "u".into(),
                ArgConstraint::Url {
                    method: "GET".into(),
                    policy: EgressPolicy::read_public(),
                },
            ),
        ];
        let m = vec![&r];
        assert!(
            check_args(
                &m,
                &json!({"n": 5, "s": "abc", "big": "x", "u": "https://example.com/"})
            )
            .is_ok()
        );
        assert_eq!(check_args(&m, &json!({"n": 11})).unwrap_err().argument, "n");
        assert_eq!(
            check_args(&m, &json!({"s": "abc1"})).unwrap_err().argument,
            "s"
        );
        assert_eq!(
            check_args(&m, &json!({"big": "0123456789"}))
                .unwrap_err()
                .argument,
            "big"
        );
        assert_eq!(
            check_args(&m, &json!({"u": "http://10.0.0.1/"}))
                .unwrap_err()
                .argument,
            "u"
        );
        assert_eq!(
            check_args(&m, &json!({"u": "https://169.254.169.254/"}))
                .unwrap_err()
                .argument,
            "u"
        );
    }
}
