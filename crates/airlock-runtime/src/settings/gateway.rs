//! `[gateway]` section: the LLM gateway's providers, limits and prices.

use super::in_range;
use airlock_gateway::{Guardrails, Price, Privacy, ProviderKind, StepLimit};
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
    /// Largest output limit (`max_tokens`, `max_completion_tokens`,
    /// `max_output_tokens`) one call may ask for; a call that sets none
    /// counts as over it. Default: no cap.
    #[cfg_attr(feature = "schema", schemars(with = "Option<u64>", range(min = 1)))]
    pub max_tokens_per_step: Option<Spanned<u64>>,
    /// Over `max_tokens_per_step`: `deny` (refused, `token_limit_exceeded`;
    /// the default) or `clamp` (the limit is lowered to the cap).
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub max_tokens_mode: Option<Spanned<String>>,
    /// Tokens one run may use (prompt bound + output limit reserved before
    /// each call, then the reported usage). Default: no cap.
    #[cfg_attr(feature = "schema", schemars(with = "Option<u64>", range(min = 1)))]
    pub max_tokens_per_run: Option<Spanned<u64>>,
    /// USD one run may spend (worst case reserved before each call, then
    /// the settled cost). Default: no cap.
    #[cfg_attr(feature = "schema", schemars(with = "Option<f64>"))]
    pub max_cost_per_run_usd: Option<Spanned<f64>>,
    /// What is kept of calls: `standard` (the provider's redacted answer,
    /// encrypted, for replaying retries, until `replay_retention_hours`;
    /// the default) or `strict` (no content at all).
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub privacy: Option<Spanned<String>>,
    /// Hours a stored answer is kept for replay (default 24).
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<u64>", range(min = 0, max = 8760))
    )]
    pub replay_retention_hours: Option<Spanned<u64>>,
    /// Per-agent guardrails, by agent name (over the ones above).
    #[serde(default)]
    pub agents: BTreeMap<String, RawAgent>,
}

/// Raw `[gateway.agents.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    /// Models this agent may call (others are refused, `model_not_allowed`).
    pub allowed_models: Option<Vec<String>>,
    /// As `gateway.max_tokens_per_step`, for this agent.
    #[cfg_attr(feature = "schema", schemars(with = "Option<u64>", range(min = 1)))]
    pub max_tokens_per_step: Option<Spanned<u64>>,
    /// As `gateway.max_tokens_mode`, for this agent.
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub max_tokens_mode: Option<Spanned<String>>,
    /// As `gateway.max_tokens_per_run`, for this agent.
    #[cfg_attr(feature = "schema", schemars(with = "Option<u64>", range(min = 1)))]
    pub max_tokens_per_run: Option<Spanned<u64>>,
    /// As `gateway.max_cost_per_run_usd`, for this agent.
    #[cfg_attr(feature = "schema", schemars(with = "Option<f64>"))]
    pub max_cost_per_run_usd: Option<Spanned<f64>>,
    /// As `gateway.privacy`, for this agent (the strictest level applies).
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub privacy: Option<Spanned<String>>,
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
    /// As `gateway.privacy`, for this provider (the strictest level applies).
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub privacy: Option<Spanned<String>>,
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
    /// What may be kept of its calls.
    pub privacy: Privacy,
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
    /// Guardrails for every agent.
    pub guardrails: Guardrails,
    /// Per-agent guardrails.
    pub agents: Vec<(String, Guardrails)>,
    /// What may be kept of calls.
    pub privacy: Privacy,
    /// How long a stored answer is kept for replay.
    pub replay_retention: std::time::Duration,
}

fn privacy(
    src: &SourceText<'_>,
    field: &str,
    v: Option<&Spanned<String>>,
) -> Result<Option<Privacy>, DocumentError> {
    v.map(|p| {
        Privacy::parse(p.get_ref())
            .ok_or_else(|| src.error(p.span(), field, "must be \"standard\" or \"strict\""))
    })
    .transpose()
}

fn guardrails(
    src: &SourceText<'_>,
    at: &str,
    step: Option<&Spanned<u64>>,
    mode: Option<&Spanned<String>>,
    run: Option<&Spanned<u64>>,
    cost: Option<&Spanned<f64>>,
    level: Option<&Spanned<String>>,
) -> Result<Guardrails, DocumentError> {
    let positive = |v: Option<&Spanned<u64>>, f: &str| {
        v.map(|x| {
            if *x.get_ref() >= 1 {
                Ok(*x.get_ref())
            } else {
                Err(src.error(x.span(), &format!("{at}{f}"), "must be at least 1"))
            }
        })
        .transpose()
    };
    let step_limit = mode
        .map(|m| match m.get_ref().as_str() {
            "deny" => Ok(StepLimit::Deny),
            "clamp" => Ok(StepLimit::Clamp),
            _ => Err(src.error(
                m.span(),
                &format!("{at}max_tokens_mode"),
                "must be \"deny\" or \"clamp\"",
            )),
        })
        .transpose()?;
    let max_cost_per_run_micros = cost
        .map(|c| {
            let usd = *c.get_ref();
            if usd.is_finite() && usd >= 0.0 {
                Ok((usd * 1e6).floor() as i64)
            } else {
                Err(src.error(
                    c.span(),
                    &format!("{at}max_cost_per_run_usd"),
                    "must be a finite amount >= 0",
                ))
            }
        })
        .transpose()?;
    Ok(Guardrails {
        max_tokens_per_step: positive(step, "max_tokens_per_step")?,
        step_limit,
        max_tokens_per_run: positive(run, "max_tokens_per_run")?,
        max_cost_per_run_micros,
        allowed_models: None,
        privacy: privacy(src, &format!("{at}privacy"), level)?,
    })
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
            privacy: privacy(src, &field("privacy"), p.privacy.as_ref())?.unwrap_or_default(),
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
                privacy: Privacy::Standard,
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
    let mut global = guardrails(
        src,
        "gateway.",
        raw.max_tokens_per_step.as_ref(),
        raw.max_tokens_mode.as_ref(),
        raw.max_tokens_per_run.as_ref(),
        raw.max_cost_per_run_usd.as_ref(),
        None,
    )?;
    let level = privacy(src, "gateway.privacy", raw.privacy.as_ref())?.unwrap_or_default();
    global.privacy = None;
    let mut agents = Vec::new();
    for (name, a) in &raw.agents {
        let mut g = guardrails(
            src,
            &format!("gateway.agents.{name}."),
            a.max_tokens_per_step.as_ref(),
            a.max_tokens_mode.as_ref(),
            a.max_tokens_per_run.as_ref(),
            a.max_cost_per_run_usd.as_ref(),
            a.privacy.as_ref(),
        )?;
        g.allowed_models = a.allowed_models.clone();
        agents.push((name.clone(), g));
    }
    let hours = in_range(
        src,
        "gateway.replay_retention_hours",
        raw.replay_retention_hours.as_ref(),
        0,
        8760,
        24,
    )?;
    Ok(GatewaySettings {
        providers,
        max_body_bytes,
        redact_pii: raw.redact_pii.unwrap_or(true),
        prices,
        guardrails: global,
        agents,
        privacy: level,
        replay_retention: std::time::Duration::from_secs(hours * 3600),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<GatewaySettings, String> {
        #[derive(Deserialize)]
        struct Doc {
            gateway: RawGateway,
        }
        let src = SourceText::new("airlock.toml", text);
        let doc: Doc = toml::from_str(text).map_err(|e| e.to_string())?;
        validate(&doc.gateway, &src).map_err(|e| e.to_string())
    }

    #[test]
    fn guardrails_privacy_and_retention_are_read_per_agent_and_provider() {
        let s = parse(
            r#"
[gateway]
max_tokens_per_step = 2048
max_tokens_mode = "clamp"
max_cost_per_run_usd = 1.5
replay_retention_hours = 2
[gateway.providers.local]
kind = "openai"
base_url = "http://127.0.0.1:9"
privacy = "strict"
[gateway.agents.triage]
allowed_models = ["gpt-4o-mini"]
max_tokens_per_run = 100000
privacy = "strict"
"#,
        )
        .expect("valid");
        assert_eq!(s.guardrails.max_tokens_per_step, Some(2048));
        assert_eq!(s.guardrails.step_limit, Some(StepLimit::Clamp));
        assert_eq!(s.guardrails.max_cost_per_run_micros, Some(1_500_000));
        assert_eq!(s.replay_retention, std::time::Duration::from_secs(7200));
        assert_eq!(s.privacy, Privacy::Standard);
        assert_eq!(s.providers[0].privacy, Privacy::Strict);
        let (name, a) = &s.agents[0];
        assert_eq!(name, "triage");
        assert_eq!(a.allowed_models, Some(vec!["gpt-4o-mini".to_string()]));
        assert_eq!(a.max_tokens_per_run, Some(100_000));
        assert_eq!(a.privacy, Some(Privacy::Strict));
    }

    #[test]
    fn bad_guardrails_name_the_field_and_place() {
        for (text, want) in [
            (
                "[gateway]\nmax_tokens_mode = \"trim\"\n",
                "airlock.toml:2:19: gateway.max_tokens_mode",
            ),
            (
                "[gateway]\nprivacy = \"secret\"\n",
                "airlock.toml:2:11: gateway.privacy",
            ),
            (
                "[gateway.agents.a]\nmax_tokens_per_step = 0\n",
                "airlock.toml:2:23: gateway.agents.a.max_tokens_per_step",
            ),
            (
                "[gateway]\nmax_cost_per_run_usd = -1.0\n",
                "airlock.toml:2:24: gateway.max_cost_per_run_usd",
            ),
        ] {
            let e = parse(text).expect_err("invalid");
            assert!(e.starts_with(want), "{e}");
        }
    }
}
