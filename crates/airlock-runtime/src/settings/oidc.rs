//! `[serve.oidc]`: single sign-on for the dashboard through an OpenID
//! Connect provider (authorization-code flow with PKCE).

use airlock_policy::document::{DocumentError, SourceText};
use airlock_types::{Secret, TenantId};
use serde::Deserialize;
use serde_spanned::Spanned;
use std::net::SocketAddr;
use std::sync::Arc;

/// Raw `[serve.oidc]` section.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawOidc {
    /// The provider's issuer URL (its discovery document is at
    /// `ISSUER/.well-known/openid-configuration`). `https://`, or `http://`
    /// on a loopback address only.
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub issuer: Option<Spanned<String>>,
    /// This dashboard's client id at the provider (the ID token's audience).
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub client_id: Option<Spanned<String>>,
    /// The client secret, for a confidential client (sent with HTTP Basic
    /// authentication to the token endpoint; never printed).
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub client_secret: Option<Spanned<String>>,
    /// Where the provider sends the browser back (default
    /// `SCHEME://LISTEN/login/oidc/callback`, which needs a listen address
    /// that is not unspecified or port 0).
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub redirect_url: Option<Spanned<String>>,
    /// The ID token claim that names the user's tenant (exclusive with
    /// `tenant`).
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub tenant_claim: Option<Spanned<String>>,
    /// The tenant every SSO user belongs to (default `default` when
    /// `tenant_claim` is not set either).
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub tenant: Option<Spanned<String>>,
    /// The claim that becomes the username (default: `email`, else `sub`
    /// when the token has no `email`).
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub username_claim: Option<Spanned<String>>,
    /// The scopes requested (default `openid email profile`; `openid` is
    /// always included).
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub scopes: Option<Spanned<String>>,
    /// Usernames (after the claim mapping) made tenant admins at their first
    /// SSO login; everyone else is not an admin.
    #[cfg_attr(feature = "schema", schemars(with = "Option<Vec<String>>"))]
    pub admins: Option<Spanned<Vec<String>>>,
}

/// How an SSO user's tenant is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantSource {
    /// Every user is in this tenant.
    Fixed(TenantId),
    /// The ID token's claim of this name names it.
    Claim(String),
}

/// The validated `[serve.oidc]` section.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// The issuer, exactly as configured; the discovery document and the
    /// ID tokens must name exactly the same (OIDC Discovery §4.3).
    pub issuer: String,
    /// The client id.
    pub client_id: String,
    /// The client secret, if any.
    pub client_secret: Option<Arc<Secret<String>>>,
    /// The redirect URL registered at the provider; `None`: derived from
    /// the address served ([`OidcSettings::redirect_url_for`]).
    pub redirect_url: Option<String>,
    /// The tenant mapping.
    pub tenant: TenantSource,
    /// The username claim; `None`: `email`, else `sub`.
    pub username_claim: Option<String>,
    /// The requested scopes, space separated, starting with `openid`.
    pub scopes: String,
    /// Usernames made admins at their first login.
    pub admins: Vec<String>,
}

impl PartialEq for OidcSettings {
    fn eq(&self, o: &Self) -> bool {
        let secret = match (&self.client_secret, &o.client_secret) {
            (None, None) => true,
            (Some(a), Some(b)) => a.expose() == b.expose(),
            _ => false,
        };
        secret
            && self.issuer == o.issuer
            && self.client_id == o.client_id
            && self.redirect_url == o.redirect_url
            && self.tenant == o.tenant
            && self.username_claim == o.username_claim
            && self.scopes == o.scopes
            && self.admins == o.admins
    }
}
impl Eq for OidcSettings {}

impl OidcSettings {
    /// The redirect URL: the configured one, else
    /// `SCHEME://LISTEN/login/oidc/callback` (an error when `listen` does not
    /// name this server: unspecified address or port 0).
    pub fn redirect_url_for(&self, listen: SocketAddr, tls: bool) -> Result<String, String> {
        if let Some(u) = &self.redirect_url {
            return Ok(u.clone());
        }
        if listen.ip().is_unspecified() || listen.port() == 0 {
            return Err(format!(
                "serve.oidc.redirect_url: missing, and the listen address {listen} does not name this server"
            ));
        }
        let scheme = if tls { "https" } else { "http" };
        Ok(format!("{scheme}://{listen}/login/oidc/callback"))
    }
}

/// Whether `url` is `https://HOST…`, or `http://` to a loopback host.
pub fn url_allowed(url: &str) -> Result<(), &'static str> {
    let uri: http::Uri = url.parse().map_err(|_| "not a URL")?;
    let host = uri.host().ok_or("not an absolute URL")?;
    if uri.query().is_some() {
        return Err("must not have a query");
    }
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if is_loopback_host(host) => Ok(()),
        Some("http") => Err("http:// only on a loopback address; use https://"),
        _ => Err("must be an https:// URL"),
    }
}

/// `localhost`, `127.0.0.0/8` or `[::1]`.
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn claim_name(
    src: &SourceText<'_>,
    field: &str,
    v: &Spanned<String>,
) -> Result<String, DocumentError> {
    let s = v.get_ref();
    if s.is_empty() || s.len() > 128 || s.chars().any(char::is_control) {
        return Err(src.error(v.span(), field, "must be 1-128 printable characters"));
    }
    Ok(s.clone())
}

/// Validate `[serve.oidc]`.
pub fn validate(raw: &RawOidc, src: &SourceText<'_>) -> Result<OidcSettings, DocumentError> {
    let issuer = raw
        .issuer
        .as_ref()
        .ok_or_else(|| src.error(0..0, "serve.oidc.issuer", "missing"))?;
    url_allowed(issuer.get_ref()).map_err(|m| src.error(issuer.span(), "serve.oidc.issuer", m))?;
    let client_id = raw
        .client_id
        .as_ref()
        .ok_or_else(|| src.error(0..0, "serve.oidc.client_id", "missing"))?;
    let client_id_s = claim_name(src, "serve.oidc.client_id", client_id)?;
    let redirect_url = match &raw.redirect_url {
        Some(r) => {
            url_allowed(r.get_ref())
                .map_err(|m| src.error(r.span(), "serve.oidc.redirect_url", m))?;
            Some(r.get_ref().clone())
        }
        None => None,
    };
    let tenant = match (&raw.tenant_claim, &raw.tenant) {
        (Some(c), Some(_)) => {
            return Err(src.error(
                c.span(),
                "serve.oidc.tenant_claim",
                "set either tenant_claim or tenant, not both",
            ));
        }
        (Some(c), None) => TenantSource::Claim(claim_name(src, "serve.oidc.tenant_claim", c)?),
        (None, Some(t)) => TenantSource::Fixed(
            TenantId::new(t.get_ref())
                .map_err(|e| src.error(t.span(), "serve.oidc.tenant", e.to_string()))?,
        ),
        (None, None) => TenantSource::Fixed(TenantId::default_tenant()),
    };
    let username_claim = raw
        .username_claim
        .as_ref()
        .map(|c| claim_name(src, "serve.oidc.username_claim", c))
        .transpose()?;
    let scopes = match &raw.scopes {
        None => "openid email profile".to_owned(),
        Some(s) => {
            let words: Vec<&str> = s.get_ref().split_whitespace().collect();
            let ok = words.iter().all(|w| {
                w.bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
            });
            if !ok || words.is_empty() {
                return Err(src.error(
                    s.span(),
                    "serve.oidc.scopes",
                    "space-separated scope names",
                ));
            }
            let mut out = vec!["openid"];
            out.extend(words.into_iter().filter(|w| *w != "openid"));
            out.join(" ")
        }
    };
    Ok(OidcSettings {
        issuer: issuer.get_ref().clone(),
        client_id: client_id_s,
        client_secret: raw
            .client_secret
            .as_ref()
            .map(|s| Arc::new(Secret::new(s.get_ref().clone()))),
        redirect_url,
        tenant,
        username_claim,
        scopes,
        admins: raw
            .admins
            .as_ref()
            .map(|a| a.get_ref().clone())
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<OidcSettings, DocumentError> {
        #[derive(Deserialize)]
        struct Top {
            oidc: RawOidc,
        }
        let src = SourceText::new("t.toml", text);
        let top: Top = src.deserialize()?;
        validate(&top.oidc, &src)
    }

    #[test]
    fn defaults_are_derived_and_the_secret_is_not_printed() {
        let s = parse(
            "[oidc]\nissuer = \"https://idp.example/\"\nclient_id = \"airlock\"\nclient_secret = \"hunter22\"\n",
        )
        .expect("valid");
        assert_eq!(s.issuer, "https://idp.example/");
        let here = SocketAddr::from(([127, 0, 0, 1], 8443));
        assert_eq!(
            s.redirect_url_for(here, true).as_deref(),
            Ok("https://127.0.0.1:8443/login/oidc/callback")
        );
        assert!(
            s.redirect_url_for(SocketAddr::from(([0, 0, 0, 0], 8443)), true)
                .is_err()
        );
        assert_eq!(s.scopes, "openid email profile");
        assert_eq!(s.tenant, TenantSource::Fixed(TenantId::default_tenant()));
        assert_eq!(s.username_claim, None);
        assert!(s.admins.is_empty());
        assert!(!format!("{s:?}").contains("hunter22"));
        let s = parse(
            "[oidc]\nissuer = \"http://127.0.0.1:9400\"\nclient_id = \"a\"\ntenant_claim = \"org\"\nscopes = \"email\"\n",
        )
        .expect("loopback http");
        assert_eq!(s.tenant, TenantSource::Claim("org".into()));
        assert_eq!(s.scopes, "openid email");
    }

    #[test]
    fn errors_are_located() {
        let cases = [
            (
                "[oidc]\nissuer = \"http://idp.example\"\nclient_id = \"a\"\n",
                "t.toml:2:10: serve.oidc.issuer: http:// only on a loopback",
            ),
            (
                "[oidc]\nissuer = \"ftp://idp.example\"\nclient_id = \"a\"\n",
                "t.toml:2:10: serve.oidc.issuer: must be an https:// URL",
            ),
            (
                "[oidc]\nissuer = \"https://idp.example\"\n",
                "serve.oidc.client_id: missing",
            ),
            (
                "[oidc]\nissuer = \"https://i.example\"\nclient_id = \"a\"\ntenant = \"t\"\ntenant_claim = \"org\"\n",
                "t.toml:5:16: serve.oidc.tenant_claim: set either",
            ),
            (
                "[oidc]\nissuer = \"https://i.example\"\nclient_id = \"a\"\nnope = 1\n",
                "t.toml:4:1: oidc.nope: unknown field `nope`",
            ),
        ];
        for (text, want) in cases {
            let e = parse(text).expect_err(text).to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
