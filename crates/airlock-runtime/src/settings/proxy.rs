//! `[proxy]` section: the egress proxy's limits, timeouts, extra upstream CA,
//! DNS servers and interception switch.

use super::in_range;
use airlock_policy::document::{DocumentError, SourceText};
use airlock_proxy::{Limits, ProxyConfig, ResolverSettings, Timeouts};
use serde::Deserialize;
use serde_spanned::Spanned;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Raw `[proxy]` section.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    /// Largest request head (request line and headers) in bytes (default 32768); larger gets 431.
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<u64>", range(min = 1024, max = 1_048_576))
    )]
    pub max_header_bytes: Option<Spanned<u64>>,
    /// Most headers in one request (default 100).
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<u64>", range(min = 8, max = 10_000))
    )]
    pub max_headers: Option<Spanned<u64>>,
    /// Longest request target (URL) in bytes (default 8192); longer gets 414.
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<u64>", range(min = 256, max = 1_048_576))
    )]
    pub max_request_line: Option<Spanned<u64>>,
    /// Most client connections at once (default 1024); more are refused with 503.
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<u64>", range(min = 1, max = 1_000_000))
    )]
    pub max_connections: Option<Spanned<u64>>,
    /// Seconds a client has to send a complete request head; also the keep-alive idle limit (default 10).
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<u64>", range(min = 1, max = 3600))
    )]
    pub header_read_timeout_secs: Option<Spanned<u64>>,
    /// Longest pause in seconds between two pieces of a body, either direction (default 30).
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<u64>", range(min = 1, max = 3600))
    )]
    pub body_read_timeout_secs: Option<Spanned<u64>>,
    /// Seconds a tunnel or upgraded connection may stay silent (default 300).
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<u64>", range(min = 1, max = 86_400))
    )]
    pub idle_timeout_secs: Option<Spanned<u64>>,
    /// Seconds to connect (TCP and TLS) to an upstream (default 10).
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<u64>", range(min = 1, max = 600))
    )]
    pub connect_timeout_secs: Option<Spanned<u64>>,
    /// Seconds an upstream has to send its response head (default 60).
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<u64>", range(min = 1, max = 3600))
    )]
    pub upstream_response_timeout_secs: Option<Spanned<u64>>,
    /// Seconds a client has to complete its TLS handshake on an intercepted tunnel (default 10).
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<u64>", range(min = 1, max = 600))
    )]
    pub tls_handshake_timeout_secs: Option<Spanned<u64>>,
    /// A PEM file of extra CA certificates trusted for upstream TLS, besides the built-in web PKI roots.
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub upstream_ca_file: Option<Spanned<String>>,
    /// DNS servers (`"ip:port"`) to resolve with instead of the system's.
    #[cfg_attr(feature = "schema", schemars(with = "Option<Vec<String>>"))]
    pub nameservers: Option<Vec<Spanned<String>>>,
    /// Intercept (TLS-terminate and inspect) every allowed HTTPS connection (default false).
    pub intercept_all: Option<bool>,
}

fn secs(
    src: &SourceText<'_>,
    field: &str,
    v: Option<&Spanned<u64>>,
    min: u64,
    max: u64,
    default: u64,
) -> Result<Duration, DocumentError> {
    in_range(src, field, v, min, max, default).map(Duration::from_secs)
}

fn size(
    src: &SourceText<'_>,
    field: &str,
    v: Option<&Spanned<u64>>,
    min: u64,
    max: u64,
    default: u64,
) -> Result<usize, DocumentError> {
    let n = in_range(src, field, v, min, max, default)?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// Validate `[proxy]` into the proxy's configuration (reads the upstream CA
/// file it names).
pub fn validate(raw: &RawProxy, src: &SourceText<'_>) -> Result<ProxyConfig, DocumentError> {
    let d = Limits::default();
    let limits = Limits {
        max_header_bytes: size(
            src,
            "proxy.max_header_bytes",
            raw.max_header_bytes.as_ref(),
            1024,
            1_048_576,
            d.max_header_bytes as u64,
        )?,
        max_headers: size(
            src,
            "proxy.max_headers",
            raw.max_headers.as_ref(),
            8,
            10_000,
            d.max_headers as u64,
        )?,
        max_request_line: size(
            src,
            "proxy.max_request_line",
            raw.max_request_line.as_ref(),
            256,
            1_048_576,
            d.max_request_line as u64,
        )?,
        max_connections: size(
            src,
            "proxy.max_connections",
            raw.max_connections.as_ref(),
            1,
            1_000_000,
            d.max_connections as u64,
        )?,
    };
    let t = Timeouts::default();
    let timeouts = Timeouts {
        header_read: secs(
            src,
            "proxy.header_read_timeout_secs",
            raw.header_read_timeout_secs.as_ref(),
            1,
            3600,
            t.header_read.as_secs(),
        )?,
        body_read: secs(
            src,
            "proxy.body_read_timeout_secs",
            raw.body_read_timeout_secs.as_ref(),
            1,
            3600,
            t.body_read.as_secs(),
        )?,
        idle: secs(
            src,
            "proxy.idle_timeout_secs",
            raw.idle_timeout_secs.as_ref(),
            1,
            86_400,
            t.idle.as_secs(),
        )?,
        connect: secs(
            src,
            "proxy.connect_timeout_secs",
            raw.connect_timeout_secs.as_ref(),
            1,
            600,
            t.connect.as_secs(),
        )?,
        upstream_response: secs(
            src,
            "proxy.upstream_response_timeout_secs",
            raw.upstream_response_timeout_secs.as_ref(),
            1,
            3600,
            t.upstream_response.as_secs(),
        )?,
        tls_handshake: secs(
            src,
            "proxy.tls_handshake_timeout_secs",
            raw.tls_handshake_timeout_secs.as_ref(),
            1,
            600,
            t.tls_handshake.as_secs(),
        )?,
    };
    let upstream_extra_ca_pem = match &raw.upstream_ca_file {
        None => None,
        Some(p) => {
            let path = PathBuf::from(p.get_ref());
            let pem = airlock_store::read_limited(&path, super::MAX_PEM_BYTES).map_err(|e| {
                src.error(
                    p.span(),
                    "proxy.upstream_ca_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            // Fail at load, with a location, rather than at the first request.
            airlock_proxy::check_extra_ca(&pem)
                .map_err(|e| src.error(p.span(), "proxy.upstream_ca_file", e.to_string()))?;
            Some(pem)
        }
    };
    let resolver = match &raw.nameservers {
        None => ResolverSettings::System,
        Some(list) if list.is_empty() => ResolverSettings::System,
        Some(list) => {
            let mut out = Vec::new();
            for (i, s) in list.iter().enumerate() {
                let a: SocketAddr = s.get_ref().parse().map_err(|_| {
                    src.error(
                        s.span(),
                        &format!("proxy.nameservers[{i}]"),
                        format!("{:?} is not ip:port", s.get_ref()),
                    )
                })?;
                out.push(a);
            }
            ResolverSettings::NameServers(out)
        }
    };
    Ok(ProxyConfig {
        limits,
        timeouts,
        upstream_extra_ca_pem,
        resolver,
        intercept_all: raw.intercept_all.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Default)]
    struct Doc {
        #[serde(default)]
        proxy: RawProxy,
    }

    fn parse_str(text: &str) -> String {
        let src = SourceText::new("t.toml", text);
        match src
            .deserialize::<Doc>()
            .and_then(|d| validate(&d.proxy, &src))
        {
            Ok(_) => "ok".into(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn proxy_limits_are_range_checked_with_location() {
        assert_eq!(
            parse_str("[proxy]\nmax_header_bytes = 10\n"),
            "t.toml:2:20: proxy.max_header_bytes: must be between 1024 and 1048576, got 10"
        );
    }

    #[test]
    fn bad_nameserver_is_located() {
        assert_eq!(
            parse_str("[proxy]\nnameservers = [\"127.0.0.1\"]\n"),
            "t.toml:2:16: proxy.nameservers[0]: \"127.0.0.1\" is not ip:port"
        );
    }

    #[test]
    fn missing_ca_file_is_located() {
        let msg = parse_str("[proxy]\nupstream_ca_file = \"/nonexistent/ca.pem\"\n");
        assert!(
            msg.starts_with("t.toml:2:20: proxy.upstream_ca_file: cannot read /nonexistent/ca.pem"),
            "{msg}"
        );
    }

    #[test]
    fn non_pem_ca_file_is_located() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("ca.pem");
        std::fs::write(&p, "not a certificate").expect("write");
        let msg = parse_str(&format!(
            "[proxy]\nupstream_ca_file = {:?}\n",
            p.display().to_string()
        ));
        assert!(
            msg.starts_with(
                "t.toml:2:20: proxy.upstream_ca_file: extra upstream CA: no CERTIFICATE block found"
            ),
            "{msg}"
        );
    }
}
