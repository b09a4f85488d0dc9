//! Model prices as data: a dated built-in table, overridable in config.

use serde::Deserialize;
use std::collections::BTreeMap;

/// The built-in table and the date its prices were published.
const BUILTIN: &str = include_str!("../prices/2026-12-01.toml");

/// One model's prices, USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Input (prompt) tokens.
    pub input_per_mtok: f64,
    /// Cached input tokens, where the provider has a cheaper rate.
    #[serde(default)]
    pub cached_input_per_mtok: Option<f64>,
    /// Output (completion) tokens.
    pub output_per_mtok: f64,
    /// The model's largest completion, in tokens: the worst case when a
    /// request sets no limit.
    pub max_output: u64,
}

impl Price {
    /// Cost in micro-USD of `input` and `output` tokens, rounded up.
    /// (USD per million tokens × tokens = micro-USD.)
    pub fn cost_micros(&self, input: u64, output: u64) -> i64 {
        let c = input as f64 * self.input_per_mtok + output as f64 * self.output_per_mtok;
        if c.is_finite() && c >= 0.0 {
            // Saturating: a cost too large for i64 can never fit a budget.
            c.ceil().min(i64::MAX as f64) as i64
        } else {
            i64::MAX
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    date: String,
    models: BTreeMap<String, Price>,
}

/// Prices per model.
#[derive(Debug, Clone)]
pub struct PriceTable {
    date: String,
    models: BTreeMap<String, Price>,
}

/// The price file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("price table: {0}")]
pub struct PriceError(String);

impl PriceTable {
    /// The built-in table.
    pub fn builtin() -> PriceTable {
        // A parse failure here is caught by this crate's tests.
        Self::parse(BUILTIN).unwrap_or(PriceTable {
            date: String::new(),
            models: BTreeMap::new(),
        })
    }

    /// Parse a table in the built-in file's format.
    pub fn parse(text: &str) -> Result<PriceTable, PriceError> {
        let f: File = toml::from_str(text).map_err(|e| PriceError(e.to_string()))?;
        for (m, p) in &f.models {
            let ok = [p.input_per_mtok, p.output_per_mtok]
                .into_iter()
                .chain(p.cached_input_per_mtok)
                .all(|x| x.is_finite() && x >= 0.0);
            if !ok {
                return Err(PriceError(format!("{m}: prices must be finite and >= 0")));
            }
        }
        Ok(PriceTable {
            date: f.date,
            models: f.models,
        })
    }

    /// Add or replace one model's price (config overrides).
    pub fn set(&mut self, model: &str, price: Price) {
        self.models.insert(model.to_string(), price);
    }

    /// The date the built-in prices were published.
    pub fn date(&self) -> &str {
        &self.date
    }

    /// The price of `model`: an exact entry, else the longest entry that
    /// the model name starts with followed by `-` (dated snapshots such as
    /// `gpt-4o-2024-08-06` price as `gpt-4o`).
    pub fn get(&self, model: &str) -> Option<&Price> {
        if let Some(p) = self.models.get(model) {
            return Some(p);
        }
        self.models
            .iter()
            .filter(|(k, _)| {
                model.len() > k.len()
                    && model.starts_with(k.as_str())
                    && model.as_bytes()[k.len()] == b'-'
            })
            .max_by_key(|(k, _)| k.len())
            .map(|(_, p)| p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_parses_and_snapshots_price_as_their_family() {
        let t = PriceTable::parse(BUILTIN).expect("built-in table parses");
        assert_eq!(t.date(), "2026-12-01");
        assert_eq!(t.get("gpt-4o-2024-08-06"), t.get("gpt-4o"));
        assert_eq!(t.get("gpt-4o-mini-2024-07-18"), t.get("gpt-4o-mini"));
        assert!(t.get("gpt-4").is_none());
        let p = t.get("gpt-4o").expect("gpt-4o");
        assert_eq!(p.cost_micros(1_000_000, 0), 2_500_000);
        assert_eq!(p.cost_micros(1, 1), 13);
    }
}
