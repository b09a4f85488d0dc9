//! Secret names and bindings: where a secret may be sent and how.
//!
//! Untrusted text (CLI arguments, stored JSON) becomes a validated
//! [`Binding`] at the edge; matching a destination against it is pure.

use crate::BrokerError;
use serde::{Deserialize, Serialize};

/// The default header a secret is injected into.
pub const DEFAULT_HEADER: &str = "Authorization";
/// The default header value format; `{}` is replaced by the secret.
pub const DEFAULT_FORMAT: &str = "Bearer {}";
/// The longest secret value accepted.
pub const MAX_VALUE_LEN: usize = 16 * 1024;

/// Check a secret's name: 1-64 characters of `[A-Za-z0-9_.-]`, starting with
/// a letter or digit.
pub fn validate_name(name: &str) -> Result<(), BrokerError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(BrokerError::InvalidName {
            name: name.escape_debug().to_string(),
        })
    }
}

/// Check a secret's value: non-empty, at most [`MAX_VALUE_LEN`] bytes, and
/// free of control characters (which would let it split an HTTP header).
/// The error never contains the value.
pub fn validate_value(value: &str) -> Result<(), BrokerError> {
    let bad = |detail: &'static str| Err(BrokerError::InvalidValue { detail });
    if value.is_empty() {
        return bad("the value is empty");
    }
    if value.len() > MAX_VALUE_LEN {
        return bad("the value is longer than 16 KiB");
    }
    if value.chars().any(char::is_control) {
        return bad("the value contains control characters (newline, tab, NUL, ...)");
    }
    Ok(())
}

/// Where and how a secret may be used. Stored in clear (and bound into the
/// secret's ciphertext, so editing it makes the secret unreadable).
///
/// A binding names exactly one place for the value: the header `header`
/// with the value rendered by `format` (the default); or, with `basic`, the
/// password inside `Authorization: Basic` credentials in `header`; or, with
/// `query`, the value of one query parameter. A handle anywhere else is
/// refused (`credential_wrong_location`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Binding {
    /// Hosts the secret may be sent to: `api.github.com`, `*.example.com`,
    /// optionally with `:port` (without one, only 443).
    pub hosts: Vec<String>,
    /// The request header it is injected into.
    pub header: String,
    /// The header value, with `{}` standing for the secret.
    pub format: String,
    /// Allowed methods (upper case); empty means any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Allowed paths: exact, or a prefix ending in `*`; empty means any.
    #[serde(default)]
    pub paths: Vec<String>,
    /// The environment variable the handle is set in for `airlock run`.
    #[serde(default)]
    pub env: Option<String>,
    /// The query parameter the value is sent in, instead of a header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The value is the password of HTTP Basic credentials in `header`
    /// (`Basic base64(user:handle)` becomes `Basic base64(user:value)`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub basic: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The longest query parameter name a binding may name.
const MAX_QUERY_NAME: usize = 128;

impl Binding {
    /// Validate and normalise a binding (hosts lower case, methods upper case,
    /// default header and format, `env` defaulting to the secret's name when
    /// that is a valid variable name).
    pub fn new(
        name: &str,
        hosts: Vec<String>,
        header: Option<String>,
        format: Option<String>,
        methods: Vec<String>,
        paths: Vec<String>,
        env: Option<String>,
    ) -> Result<Binding, BrokerError> {
        let env = env.or_else(|| valid_env(name).then(|| name.to_owned()));
        let b = Binding {
            hosts: hosts
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .collect(),
            header: header.unwrap_or_else(|| DEFAULT_HEADER.to_owned()),
            format: format.unwrap_or_else(|| DEFAULT_FORMAT.to_owned()),
            methods: methods
                .iter()
                .map(|m| m.trim().to_ascii_uppercase())
                .collect(),
            paths: paths.iter().map(|p| p.trim().to_owned()).collect(),
            env,
            query: None,
            basic: false,
        };
        b.validate()?;
        Ok(b)
    }

    /// Send the value only as the query parameter `param` (never in a
    /// header). The name is matched exactly, after percent-decoding.
    pub fn in_query(mut self, param: &str) -> Result<Binding, BrokerError> {
        self.query = Some(param.to_owned());
        self.validate()?;
        Ok(self)
    }

    /// Send the value only as the password of HTTP Basic credentials in the
    /// binding's header: the agent sends `Basic base64(user:handle)`.
    pub fn as_basic_password(mut self) -> Result<Binding, BrokerError> {
        self.basic = true;
        self.validate()?;
        Ok(self)
    }

    /// The binding as JSON, for records, listings and APIs (no value: a
    /// binding never holds one).
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "hosts": self.hosts,
            "header": self.header,
            "format": self.format,
            "methods": self.methods,
            "paths": self.paths,
            "env": self.env,
            "location": self.location(),
        });
        if let Some(q) = &self.query {
            v["query"] = q.as_str().into();
        }
        if self.basic {
            v["basic"] = true.into();
        }
        v
    }

    /// Where the value goes, for records and listings: `header:NAME`,
    /// `basic:NAME` or `query:NAME`.
    pub fn location(&self) -> String {
        match &self.query {
            Some(q) => format!("query:{q}"),
            None if self.basic => format!("basic:{}", self.header),
            None => format!("header:{}", self.header),
        }
    }

    /// Check every field; the error names the field and the offending entry.
    pub fn validate(&self) -> Result<(), BrokerError> {
        let bad = |field: &'static str, detail: String| {
            Err(BrokerError::InvalidBinding { field, detail })
        };
        if self.hosts.is_empty() {
            return bad("hosts", "at least one host is required (--host)".into());
        }
        for h in &self.hosts {
            if let Err(detail) = HostPattern::parse(h) {
                return bad(
                    "hosts",
                    format!("{:?}: {detail}", h.escape_debug().to_string()),
                );
            }
        }
        if self.header.is_empty() || !self.header.bytes().all(is_tchar) {
            return bad(
                "header",
                format!(
                    "{:?} is not a valid HTTP header name",
                    self.header.escape_debug().to_string()
                ),
            );
        }
        if self.format.matches("{}").count() != 1 {
            return bad("format", "must contain `{}` exactly once".into());
        }
        if self.format.chars().any(char::is_control) || self.format.len() > 256 {
            return bad(
                "format",
                "must be at most 256 characters without control characters".into(),
            );
        }
        for m in &self.methods {
            if m.is_empty() || m.len() > 32 || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                return bad(
                    "methods",
                    format!("{:?} is not an HTTP method", m.escape_debug().to_string()),
                );
            }
        }
        for p in &self.paths {
            let body = p.strip_suffix('*').unwrap_or(p);
            if !p.starts_with('/')
                || body.contains('*')
                || p.contains('?')
                || p.len() > 1024
                || has_dot_segment(body)
            {
                return bad(
                    "paths",
                    format!(
                        "{:?}: must start with `/`, may end in `*`, and contain no `?`, `..` or other `*`",
                        p.escape_debug().to_string()
                    ),
                );
            }
            if p.chars().any(|c| c.is_control() || c == ' ') {
                return bad(
                    "paths",
                    format!(
                        "{:?} contains spaces or control characters",
                        p.escape_debug().to_string()
                    ),
                );
            }
        }
        if let Some(q) = &self.query {
            if q.is_empty()
                || q.len() > MAX_QUERY_NAME
                || !q
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~[]".contains(&b))
            {
                return bad(
                    "query",
                    format!(
                        "{:?} is not a query parameter name (1-{MAX_QUERY_NAME} of [A-Za-z0-9-._~[]])",
                        q.escape_debug().to_string()
                    ),
                );
            }
            if self.basic {
                return bad(
                    "query",
                    "a value sent as a query parameter cannot also be a Basic password".into(),
                );
            }
        }
        if let Some(e) = &self.env
            && !valid_env(e)
        {
            return bad(
                "env",
                format!(
                    "{:?} is not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*)",
                    e.escape_debug().to_string()
                ),
            );
        }
        Ok(())
    }

    /// The header value for a secret: the format with `{}` replaced.
    pub(crate) fn render(&self, value: &str) -> String {
        self.format.replacen("{}", value, 1)
    }

    /// Whether `host:port` is one of the bound hosts.
    pub fn allows_host(&self, host: &str, port: u16) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        self.hosts
            .iter()
            .filter_map(|h| HostPattern::parse(h).ok())
            .any(|p| p.matches(&host, port))
    }

    /// Whether the method is allowed.
    pub fn allows_method(&self, method: &str) -> bool {
        self.methods.is_empty() || self.methods.iter().any(|m| m.eq_ignore_ascii_case(method))
    }

    /// Whether the path (query ignored) is allowed. With path rules, a path
    /// that could mean something else after normalisation (dot segments,
    /// encoded `.`, `/` or `\`) never matches.
    pub fn allows_path(&self, path: &str) -> bool {
        if self.paths.is_empty() {
            return true;
        }
        let path = path.split(['?', '#']).next().unwrap_or("");
        if !path.starts_with('/')
            || has_dot_segment(path)
            || has_encoded_separator(path)
            || path.contains('\\')
        {
            return false;
        }
        // Servers that drop `;` parameters (Tomcat, Jetty) read the path
        // without them: both readings must be allowed.
        let stripped = strip_parameters(path);
        let allowed = |path: &str| {
            self.paths.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => path.starts_with(prefix),
                None => path == p,
            })
        };
        allowed(path) && allowed(&stripped)
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn valid_env(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && (s.as_bytes()[0].is_ascii_alphabetic() || s.as_bytes()[0] == b'_')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `path` with the `;` parameters of every segment removed.
fn strip_parameters(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(seg.split(';').next().unwrap_or(""));
    }
    out
}

/// A `.` or `..` segment, also with `;` parameters (`..;`, which Tomcat
/// reads as `..`).
fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|seg| {
        let base = seg.split(';').next().unwrap_or("");
        base == "." || base == ".."
    })
}

fn has_encoded_separator(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    ["%2e", "%2f", "%5c", "%00", "%3b", "%25"]
        .iter()
        .any(|e| lower.contains(e))
}

/// A parsed host pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostPattern<'a> {
    /// `*.example.com` matches any subdomain of `example.com` (not itself).
    wildcard: bool,
    domain: &'a str,
    port: u16,
}

impl<'a> HostPattern<'a> {
    fn parse(s: &'a str) -> Result<HostPattern<'a>, String> {
        if s.starts_with('[') || s.matches(':').count() > 1 {
            return Err("IPv6 literals are not supported; bind a host name".into());
        }
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) => {
                let port: u16 = p.parse().map_err(|_| format!("bad port {p:?}"))?;
                if port == 0 {
                    return Err("port 0 is not a port".into());
                }
                (h, port)
            }
            None => (s, 443),
        };
        let (wildcard, domain) = match host.strip_prefix("*.") {
            Some(d) => (true, d),
            None => (false, host),
        };
        if !domain.is_ascii() {
            return Err("write international names in their xn-- (punycode) form".into());
        }
        let labels_ok = !domain.is_empty()
            && domain.len() <= 253
            && domain.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            });
        if !labels_ok {
            return Err("not a valid host name (lower-case letters, digits, `-` and `.`; optional `*.` prefix and `:port`)".into());
        }
        if wildcard && !domain.contains('.') {
            return Err(
                "a wildcard must cover a domain with at least two labels (`*.example.com`)".into(),
            );
        }
        Ok(HostPattern {
            wildcard,
            domain,
            port,
        })
    }

    fn matches(&self, host: &str, port: u16) -> bool {
        if port != self.port {
            return false;
        }
        if self.wildcard {
            host.len() > self.domain.len() + 1
                && host.ends_with(self.domain)
                && host.as_bytes()[host.len() - self.domain.len() - 1] == b'.'
        } else {
            host == self.domain
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(hosts: &[&str], methods: &[&str], paths: &[&str]) -> Binding {
        Binding::new(
            "GITHUB_TOKEN",
            hosts.iter().map(|s| s.to_string()).collect(),
            None,
            None,
            methods.iter().map(|s| s.to_string()).collect(),
            paths.iter().map(|s| s.to_string()).collect(),
            None,
        )
        .expect("valid binding")
    }

    #[test]
    fn defaults_and_normalisation() {
        let x = b(&["API.GitHub.com"], &["get"], &[]);
        assert_eq!(x.hosts, vec!["api.github.com".to_owned()]);
        assert_eq!(x.methods, vec!["GET".to_owned()]);
        assert_eq!(
            (x.header.as_str(), x.format.as_str()),
            ("Authorization", "Bearer {}")
        );
        assert_eq!(x.env.as_deref(), Some("GITHUB_TOKEN"));
        assert_eq!(x.render("v"), "Bearer v");
    }

    #[test]
    fn hosts_match_exactly_with_port_443_by_default() {
        let x = b(
            &["api.github.com", "*.example.com", "local.test:8443"],
            &[],
            &[],
        );
        assert!(x.allows_host("api.github.com", 443));
        assert!(x.allows_host("API.GITHUB.COM.", 443));
        assert!(!x.allows_host("api.github.com", 8443));
        assert!(!x.allows_host("api.github.com.evil.test", 443));
        assert!(!x.allows_host("evilapi.github.com", 443));
        assert!(x.allows_host("a.b.example.com", 443));
        assert!(!x.allows_host("example.com", 443));
        assert!(!x.allows_host("badexample.com", 443));
        assert!(x.allows_host("local.test", 8443));
        assert!(!x.allows_host("local.test", 443));
    }

    #[test]
    fn paths_match_exactly_or_by_prefix_and_refuse_traversal() {
        let x = b(&["h.test"], &[], &["/repos/*", "/user"]);
        assert!(x.allows_path("/repos/a/b?x=1"));
        assert!(x.allows_path("/user"));
        assert!(!x.allows_path("/user/emails"));
        assert!(!x.allows_path("/admin"));
        assert!(!x.allows_path("/repos/../admin"));
        assert!(!x.allows_path("/repos/%2e%2e/admin"));
        assert!(!x.allows_path("/repos/a%2Fb"));
        assert!(!x.allows_path("/repos\\..\\admin"));
        assert!(b(&["h.test"], &[], &[]).allows_path("/anything/../at/all"));
        // `;` parameters: both readings must be allowed.
        assert!(x.allows_path("/repos/a;x=1/b"));
        assert!(!x.allows_path("/user;x"));
        assert!(!x.allows_path("/repos;/../admin"));
        assert!(!x.allows_path("/repos/..;/admin"));
    }

    #[test]
    fn a_binding_names_one_location() {
        let x = b(&["h.test"], &[], &[]);
        assert_eq!(x.location(), "header:Authorization");
        let q = x.clone().in_query("api_key").expect("query binding");
        assert_eq!(q.location(), "query:api_key");
        let basic = x.as_basic_password().expect("basic binding");
        assert_eq!(basic.location(), "basic:Authorization");
        assert_eq!(
            basic.clone().in_query("k").expect_err("both").to_string(),
            "invalid binding: query: a value sent as a query parameter cannot also be a Basic password"
        );
        assert!(
            b(&["h.test"], &[], &[])
                .in_query("a&b")
                .expect_err("bad name")
                .to_string()
                .starts_with("invalid binding: query: \"a&b\" is not a query parameter name")
        );
        // Old stored bindings (without the new fields) still parse, and a
        // header binding serializes as before.
        let old = r#"{"hosts":["h.test"],"header":"Authorization","format":"Bearer {}","methods":[],"paths":[],"env":null}"#;
        let parsed: Binding = serde_json::from_str(old).expect("old binding");
        assert_eq!(parsed.location(), "header:Authorization");
        assert_eq!(serde_json::to_string(&parsed).expect("json"), old);
    }

    #[test]
    fn bad_bindings_name_the_field() {
        let err = |hosts: &[&str],
                   header: Option<&str>,
                   format: Option<&str>,
                   methods: &[&str],
                   paths: &[&str],
                   env: Option<&str>| {
            Binding::new(
                "X",
                hosts.iter().map(|s| s.to_string()).collect(),
                header.map(str::to_owned),
                format.map(str::to_owned),
                methods.iter().map(|s| s.to_string()).collect(),
                paths.iter().map(|s| s.to_string()).collect(),
                env.map(str::to_owned),
            )
            .expect_err("must fail")
            .to_string()
        };
        assert_eq!(
            err(&[], None, None, &[], &[], None),
            "invalid binding: hosts: at least one host is required (--host)"
        );
        assert!(
            err(&["a b"], None, None, &[], &[], None)
                .starts_with("invalid binding: hosts: \"a b\": not a valid host name")
        );
        assert!(err(&["*.com"], None, None, &[], &[], None).contains("at least two labels"));
        assert!(err(&["h.test:0"], None, None, &[], &[], None).contains("port 0"));
        assert!(
            err(&["h.test"], Some("Bad Header"), None, &[], &[], None)
                .starts_with("invalid binding: header:")
        );
        assert!(
            err(&["h.test"], None, Some("Bearer"), &[], &[], None).contains("`{}` exactly once")
        );
        assert!(
            err(&["h.test"], None, Some("x {}\r\nEvil: {}"), &[], &[], None)
                .starts_with("invalid binding: format:")
        );
        assert!(
            err(&["h.test"], None, None, &["G ET"], &[], None)
                .starts_with("invalid binding: methods:")
        );
        assert!(
            err(&["h.test"], None, None, &[], &["/a/../b"], None)
                .starts_with("invalid binding: paths:")
        );
        assert!(
            err(&["h.test"], None, None, &[], &[], Some("1X")).starts_with("invalid binding: env:")
        );
    }

    #[test]
    fn names_and_values_are_checked_without_echoing_values() {
        assert!(validate_name("GITHUB_TOKEN").is_ok());
        assert!(validate_name("-x").is_err());
        assert!(validate_name("a/b").is_err());
        let e = validate_value("ghp_abc\r\nX-Evil: 1")
            .expect_err("must fail")
            .to_string();
        assert!(!e.contains("ghp_abc"), "{e}");
        assert!(validate_value("").is_err());
        assert!(validate_value(&"x".repeat(MAX_VALUE_LEN + 1)).is_err());
    }
}
