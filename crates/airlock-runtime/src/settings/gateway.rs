//! `[gateway]` section: the LLM gateway's providers, limits and prices.

use super::in_range;
use airlock_gateway::{Price, ProviderKind};
use airlock_policy::document::{DocumentError, SourceText};
use serde::Deserialize;
use serde_spanned::Spanned;
use std::collections::BTreeMap;

/// Raw `[gateway]` section.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawGateway {
    /// Model providers by name. Default: `openai` (`https://api.openai.com`,
    /// vault secret `openai`) and `anthropic` (`https://api.anthropic.com`,
    /// vault secret `anthropic`).
    #[serde(default)]
    pub providers: BTreeMap<String, RawProvider>,
    /// Largest request body in bytes (default 4194304).
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<u64>", range(min = 1024, max = 268_435_456))
    )]
    pub max_body_bytes: Option<Spanned<u64>>,
    /// Mask personal data before it reaches the provider (default true; secrets are always masked).
    pub redact_pii: Option<bool>,
    /// Prices per model (USD per million tokens), added to or replacing the built-in table.
    #[serde(default)]
    pub prices: BTreeMap<String, RawPrice>,
}

/// Raw `[gateway.providers.NAME]`.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    /// `openai` or `anthropic`.
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub kind: Spanned<String>,
    /// Base URL, e.g. `https://api.openai.com` (request paths are appended).
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub base_url: Spanned<String>,
    /// The vault secret holding the provider's real API key.
    pub secret: Option<String>,
}

/// Raw `[gateway.prices."MODEL"]`.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    /// USD per million input tokens.
    pub input_per_mtok: f64,
    /// USD per million cached input tokens.
    pub cached_input_per_mtok: Option<f64>,
    /// USD per million output tokens.
    pub output_per_mtok: f64,
    /// The model's largest completion in tokens (bounds calls without max_tokens).
    pub max_output: u64,
}

/// One validated provider.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// The provider's name in configuration.
    pub name: String,
    /// Its wire format.
    pub kind: ProviderKind,
    /// Base URL; request paths are appended.
    pub base_url: http::Uri,
    /// The vault secret holding its real key.
    pub secret: Option<String>,
}

/// Validated `[gateway]` settings.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// Providers, configured or the defaults.
    pub providers: Vec<ProviderSettings>,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Whether personal data is masked (secrets always are).
    pub redact_pii: bool,
    /// Prices added to or replacing the built-in table.
    pub prices: Vec<(String, Price)>,
}

/// Validate `[gateway]`; with no providers, the two well-known ones.
pub fn validate(raw: &RawGateway, src: &SourceText<'_>) -> Result<GatewaySettings, DocumentError> {
    let mut providers = Vec::new();
    for (name, p) in &raw.providers {
        let field = |f: &str| format!("gateway.providers.{name}.{f}");
        let kind = ProviderKind::parse(p.kind.get_ref()).ok_or_else(|| {
            src.error(
                p.kind.span(),
                &field("kind"),
                "must be \"openai\" or \"anthropic\"",
            )
        })?;
        let base_url: http::Uri = p
            .base_url
            .get_ref()
            .parse()
            .ok()
            .filter(|u: &http::Uri| {
                matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
            })
            .ok_or_else(|| {
                src.error(
                    p.base_url.span(),
                    &field("base_url"),
                    "must be an http(s) URL with a host",
                )
            })?;
        providers.push(ProviderSettings {
            name: name.clone(),
            kind,
            base_url,
            secret: p.secret.clone(),
        });
    }
    if raw.providers.is_empty() {
        for (name, kind, url) in [
            ("openai", ProviderKind::OpenAi, "https://api.openai.com"),
            (
                "anthropic",
                ProviderKind::Anthropic,
                "https://api.anthropic.com",
            ),
        ] {
            providers.push(ProviderSettings {
                name: name.into(),
                kind,
                base_url: http::Uri::from_static(url),
                secret: Some(name.into()),
            });
        }
    }
    let max_body_bytes = in_range(
        src,
        "gateway.max_body_bytes",
        raw.max_body_bytes.as_ref(),
        1024,
        268_435_456,
        4 << 20,
    )? as usize;
    let mut prices = Vec::new();
    for (model, p) in &raw.prices {
        let ok = [p.input_per_mtok, p.output_per_mtok]
            .into_iter()
            .chain(p.cached_input_per_mtok)
            .all(|x| x.is_finite() && x >= 0.0);
        if !ok {
            return Err(src.error(
                0..0,
                &format!("gateway.prices.{model}"),
                "prices must be finite and >= 0",
            ));
        }
        prices.push((
            model.clone(),
            Price {
                input_per_mtok: p.input_per_mtok,
                cached_input_per_mtok: p.cached_input_per_mtok,
                output_per_mtok: p.output_per_mtok,
                max_output: p.max_output,
            },
        ));
    }
    Ok(GatewaySettings {
        providers,
        max_body_bytes,
        redact_pii: raw.redact_pii.unwrap_or(true),
        prices,
    })
}
