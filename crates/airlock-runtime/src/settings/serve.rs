//! `[serve]`: the control-plane API server (`airlock serve`).

use super::in_range;
use airlock_policy::document::{DocumentError, SourceText};
use serde::Deserialize;
use serde_spanned::Spanned;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Raw `[serve]` section.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawServe {
    /// Address to listen on (default `127.0.0.1:8443`). Plain HTTP
    /// (`dangerously_plain_http`) is accepted only on a loopback address.
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub listen: Option<Spanned<String>>,
    /// PEM certificate chain for TLS. Without it (and `tls_key_file`), a
    /// self-signed development certificate is generated at start (refused
    /// in production mode).
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub tls_cert_file: Option<Spanned<PathBuf>>,
    /// PEM private key for `tls_cert_file`.
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub tls_key_file: Option<Spanned<PathBuf>>,
    /// This server's node name: runs record it, tokens may be limited to
    /// nodes (default `local`).
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub node: Option<Spanned<String>>,
    /// Largest request body in bytes (default 1048576).
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<u64>", range(min = 1024, max = 67_108_864))
    )]
    pub max_body_bytes: Option<Spanned<u64>>,
    /// DEVELOPMENT ONLY: serve plain HTTP (only on a loopback address;
    /// refused in production mode).
    pub dangerously_plain_http: Option<bool>,
    /// Single sign-on for the dashboard (OpenID Connect).
    pub oidc: Option<super::oidc::RawOidc>,
}

/// The validated `[serve]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeSettings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Certificate chain and key files, when configured.
    pub tls_files: Option<(PathBuf, PathBuf)>,
    /// This node's name.
    pub node: String,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Serve plain HTTP (loopback only).
    pub plain_http: bool,
    /// The dashboard's single sign-on, when configured.
    pub oidc: Option<super::oidc::OidcSettings>,
}

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";

/// Validate the `[serve]` section.
pub fn validate(raw: &RawServe, src: &SourceText<'_>) -> Result<ServeSettings, DocumentError> {
    let listen = match &raw.listen {
        None => SocketAddr::from(([127, 0, 0, 1], 8443)),
        Some(s) => s.get_ref().parse().map_err(|_| {
            src.error(
                s.span(),
                "serve.listen",
                format!("{:?} is not an address:port", s.get_ref()),
            )
        })?,
    };
    let plain_http = raw.dangerously_plain_http.unwrap_or(false);
    if plain_http && !listen.ip().is_loopback() {
        let span = raw.listen.as_ref().map(|s| s.span()).unwrap_or(0..0);
        return Err(src.error(
            span,
            "serve.listen",
            "plain HTTP is served only on a loopback address; configure TLS",
        ));
    }
    let tls_files = match (&raw.tls_cert_file, &raw.tls_key_file) {
        (None, None) => None,
        (Some(c), Some(k)) => Some((c.get_ref().clone(), k.get_ref().clone())),
        (Some(c), None) => {
            return Err(src.error(
                c.span(),
                "serve.tls_key_file",
                "missing (tls_cert_file is set)",
            ));
        }
        (None, Some(k)) => {
            return Err(src.error(
                k.span(),
                "serve.tls_cert_file",
                "missing (tls_key_file is set)",
            ));
        }
    };
    let node = match &raw.node {
        None => "local".to_owned(),
        Some(n) => {
            let ok = !n.get_ref().is_empty()
                && n.get_ref().len() <= 64
                && n.get_ref()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !ok {
                return Err(src.error(
                    n.span(),
                    "serve.node",
                    "must be 1-64 characters of A-Z a-z 0-9 - _ .",
                ));
            }
            n.get_ref().clone()
        }
    };
    let max_body = in_range(
        src,
        "serve.max_body_bytes",
        raw.max_body_bytes.as_ref(),
        1024,
        67_108_864,
        1 << 20,
    )?;
    Ok(ServeSettings {
        listen,
        tls_files,
        node,
        max_body_bytes: usize::try_from(max_body).unwrap_or(1 << 20),
        plain_http,
        oidc: raw
            .oidc
            .as_ref()
            .map(|o| super::oidc::validate(o, src))
            .transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ServeSettings, DocumentError> {
        #[derive(Deserialize)]
        struct Top {
            serve: RawServe,
        }
        let src = SourceText::new("t.toml", text);
        let top: Top = src.deserialize()?;
        validate(&top.serve, &src)
    }

    #[test]
    fn defaults_and_errors_are_located() {
        let s = parse("[serve]\n").expect("defaults");
        assert_eq!(s.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(
            (s.node.as_str(), s.max_body_bytes, s.plain_http),
            ("local", 1 << 20, false)
        );
        let e = parse("[serve]\nlisten = \"0.0.0.0:80\"\ndangerously_plain_http = true\n")
            .expect_err("plain on a public address");
        assert_eq!(
            e.to_string(),
            "t.toml:2:10: serve.listen: plain HTTP is served only on a loopback address; configure TLS"
        );
        let e = parse("[serve]\nnode = \"a/b\"\n").expect_err("bad node");
        assert!(e.to_string().starts_with("t.toml:2:8: serve.node:"), "{e}");
        let e = parse("[serve]\ntls_cert_file = \"c.pem\"\n").expect_err("no key");
        assert!(e.to_string().contains("serve.tls_key_file: missing"), "{e}");
        assert!(parse("[serve]\nlisten_on = 1\n").is_err());
    }
}
