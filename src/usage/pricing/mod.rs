//! The pricing table: USD list prices per model, and what one request cost (`cost`).
//!
//! The built-in table is `src/usage/prices.yaml`, embedded in the binary and parsed once
//! ([`PriceTable::builtin`]); config entries replace or add to it ([`PriceTable::with_overrides`]),
//! which builds a new immutable table per config load. Invariants:
//! - every price in a table is finite and `>= 0`, every tier threshold is `> 0`, and no
//!   `(provider, model)` pair appears twice, so cost arithmetic cannot produce NaN or a negative;
//! - [`PriceTable::lookup`] runs on the request path and never allocates: a hash probe for the
//!   exact name, one for the normalised name, then one probe per `-`/`:`/`@` boundary of the
//!   normalised name, longest first, bounded by the family's longest model name;
//! - nothing here panics, whatever the input.

mod cost;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

/// The shipped data file.
const PRICES_YAML: &str = include_str!("../prices.yaml");

/// Characters that end a model-name prefix: `gpt-4o` prices `gpt-4o-2024-08-06`, not `gpt-4oxyz`.
const BOUNDARY: &[u8] = b"-:@";

/// Cross-region inference-profile prefixes Bedrock puts in front of a model id.
const REGION_PREFIXES: &[&str] = &["us.", "eu.", "apac.", "global.", "us-gov.", "jp.", "au."];

/// One model's list prices in USD per 1M tokens, as written in `prices.yaml` or the config.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PriceEntry {
    /// The provider family (`openai`, `anthropic`, `gemini`, `bedrock`, ...); `azure` uses `openai`.
    pub provider: String,
    /// The upstream model name, or a prefix of dated names (`gpt-4o` for `gpt-4o-2024-08-06`).
    pub model: String,
    /// Uncached prompt tokens.
    pub input: f64,
    /// Completion tokens, reasoning / thinking tokens included.
    pub output: f64,
    /// Prompt tokens read from a prompt cache; absent = billed as `input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<f64>,
    /// Prompt tokens written to a prompt cache; absent = billed as `input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<f64>,
    /// Long-context tier: a request whose prompt exceeds `tokens` is billed wholly at these prices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<Tier>,
}

/// A long-context price tier (Gemini above 200k prompt tokens, Claude Sonnet 4 above 200k, ...).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// The tier applies when the request's prompt tokens are strictly more than this.
    pub tokens: u64,
    pub input: f64,
    pub output: f64,
    /// Absent = billed as this tier's `input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<f64>,
    /// Absent = billed as this tier's `input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<f64>,
}

/// A compiled entry: optional prices resolved, USD per 1M tokens. `Copy`, no strings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    base: Rates,
    long: Option<LongContext>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Rates {
    input: f64,
    output: f64,
    cached_input: f64,
    cache_write: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct LongContext {
    /// Exclusive threshold on prompt tokens.
    above: u64,
    rates: Rates,
}

impl Price {
    /// Validates and compiles one entry; the error says which field is wrong.
    pub fn from_entry(entry: &PriceEntry) -> Result<Price, String> {
        let mut errors = Vec::new();
        let base = Rates::resolve(
            &mut errors,
            "",
            entry.input,
            entry.output,
            entry.cached_input,
            entry.cache_write,
        );
        let long = entry.above.as_ref().map(|t| {
            if t.tokens == 0 {
                errors.push("above.tokens must be > 0".to_string());
            }
            LongContext {
                above: t.tokens,
                rates: Rates::resolve(&mut errors, "above.", t.input, t.output, t.cached_input, t.cache_write),
            }
        });
        if errors.is_empty() {
            Ok(Price { base, long })
        } else {
            Err(errors.join(", "))
        }
    }
}

impl Rates {
    fn resolve(
        errors: &mut Vec<String>,
        at: &str,
        input: f64,
        output: f64,
        cached_input: Option<f64>,
        cache_write: Option<f64>,
    ) -> Rates {
        let mut check = |field: &str, v: f64| {
            if !v.is_finite() || v < 0.0 {
                errors.push(format!("{at}{field} must be a finite number >= 0, got {v}"));
            }
        };
        check("input", input);
        check("output", output);
        if let Some(v) = cached_input {
            check("cached_input", v);
        }
        if let Some(v) = cache_write {
            check("cache_write", v);
        }
        Rates {
            input,
            output,
            cached_input: cached_input.unwrap_or(input),
            cache_write: cache_write.unwrap_or(input),
        }
    }
}

/// The data-file format (`prices.yaml`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceFile {
    date: String,
    #[serde(default)]
    sources: Vec<String>,
    models: Vec<PriceEntry>,
}

/// One provider family's prices, keyed by model name (or model-name prefix).
#[derive(Debug, Default)]
struct Family {
    models: HashMap<String, Price>,
    /// Length in bytes of the longest key: prefix probes stop there.
    longest: usize,
}

impl Family {
    fn insert(&mut self, model: &str, price: Price) {
        self.longest = self.longest.max(model.len());
        self.models.insert(model.to_string(), price);
    }

    fn find(&self, raw: &str, normalised: &str) -> Option<&Price> {
        if let Some(p) = self.models.get(raw) {
            return Some(p);
        }
        if normalised.len() != raw.len() {
            if let Some(p) = self.models.get(normalised) {
                return Some(p);
            }
        }
        // Longest prefix ending at a boundary: probe each boundary position, right to left, that
        // a key could end at. Bounded by `longest`, so a hostile name costs a few dozen probes.
        let bytes = normalised.as_bytes();
        let window = bytes.get(..=self.longest).unwrap_or(bytes);
        for (i, b) in window.iter().enumerate().skip(1).rev() {
            if BOUNDARY.contains(b) {
                // A boundary byte is ASCII, so `i` is a char boundary and `get` always succeeds.
                if let Some(p) = normalised.get(..i).and_then(|prefix| self.models.get(prefix)) {
                    return Some(p);
                }
            }
        }
        None
    }
}

/// Immutable prices for every provider family; built once per config load.
#[derive(Debug, Default)]
pub struct PriceTable {
    date: String,
    sources: Vec<String>,
    /// Every entry, in file order then override order (for rebuilding with overrides).
    entries: Vec<PriceEntry>,
    families: HashMap<String, Family>,
}

impl PriceTable {
    /// The table shipped in the binary (`prices.yaml`), parsed once. If it ever failed to parse
    /// (a test guards against it), the error is logged and the table is empty: every request is
    /// then unpriced, never mispriced.
    pub fn builtin() -> Arc<PriceTable> {
        static BUILTIN: OnceLock<Arc<PriceTable>> = OnceLock::new();
        BUILTIN
            .get_or_init(|| {
                Arc::new(PriceTable::parse(PRICES_YAML).unwrap_or_else(|e| {
                    tracing::error!(error = %e, "built-in prices.yaml is invalid; requests will be unpriced");
                    PriceTable::default()
                }))
            })
            .clone()
    }

    /// Parses the data-file format. The error names the entry and field that are wrong.
    pub fn parse(yaml: &str) -> Result<PriceTable, String> {
        let de = serde_yaml::Deserializer::from_str(yaml);
        // serde_yaml's message already names the key path (`models[3].input: ...`) and the line;
        // serde_path_to_error keeps the path for errors that serde_yaml reports without one.
        let file: PriceFile = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let msg = e.into_inner().to_string();
            let first = path.split(['.', '[']).next().unwrap_or_default();
            if path == "." || msg.starts_with(first) {
                format!("prices: {msg}")
            } else {
                format!("prices: {path}: {msg}")
            }
        })?;
        PriceTable::build(file.date, file.sources, file.models, "models")
    }

    /// A new table where `extra` entries replace same `(provider, model)` entries and add new
    /// ones. Every problem is reported at once, each naming its entry.
    pub fn with_overrides(&self, extra: &[PriceEntry]) -> Result<PriceTable, String> {
        // Validated under their own names before merging, so errors point at the config entry
        // rather than at a position in the merged list.
        let mut errors = Vec::new();
        let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
        for (i, e) in extra.iter().enumerate() {
            let name = format!("pricing[{i}] ({}/{})", e.provider, e.model);
            if let Some(earlier) = seen.insert((e.provider.as_str(), e.model.as_str()), i) {
                errors.push(format!("{name}: same provider and model as pricing[{earlier}]"));
            }
            if let Err(msg) = validate(e) {
                errors.push(format!("{name}: {msg}"));
            }
        }
        if !errors.is_empty() {
            return Err(errors.join("; "));
        }
        let mut entries = self.entries.clone();
        let mut index: HashMap<(String, String), usize> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| ((e.provider.clone(), e.model.clone()), i))
            .collect();
        for e in extra {
            let key = (e.provider.clone(), e.model.clone());
            match index.get(&key).and_then(|&i| entries.get_mut(i)) {
                Some(slot) => *slot = e.clone(),
                None => {
                    index.insert(key, entries.len());
                    entries.push(e.clone());
                }
            }
        }
        PriceTable::build(self.date.clone(), self.sources.clone(), entries, "pricing")
    }

    fn build(date: String, sources: Vec<String>, entries: Vec<PriceEntry>, what: &str) -> Result<PriceTable, String> {
        let mut errors = Vec::new();
        let mut families: HashMap<String, Family> = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            let price = match validate(e) {
                Ok(p) => p,
                Err(msg) => {
                    errors.push(format!("{what}[{i}] ({}/{}): {msg}", e.provider, e.model));
                    continue;
                }
            };
            let family = families.entry(e.provider.clone()).or_default();
            if family.models.contains_key(&e.model) {
                errors.push(format!("{what}[{i}] ({}/{}): listed twice", e.provider, e.model));
                continue;
            }
            family.insert(&e.model, price);
        }
        if !errors.is_empty() {
            return Err(errors.join("; "));
        }
        Ok(PriceTable {
            date,
            sources,
            entries,
            families,
        })
    }

    /// When the prices were checked (`date:` of the data file).
    pub fn date(&self) -> &str {
        &self.date
    }

    /// The pricing pages the data file was checked against.
    pub fn sources(&self) -> &[String] {
        &self.sources
    }

    /// Every entry, built-in first, then added overrides.
    pub fn entries(&self) -> &[PriceEntry] {
        &self.entries
    }

    /// The price of `model` served by a provider of `family`, or `None` when unknown (the request
    /// is then unpriced, never guessed). No allocation: see the module doc for the matching rules.
    pub fn lookup(&self, family: &str, model: &str) -> Option<&Price> {
        let normalised = normalise(model);
        let found = self.families.get(family).and_then(|f| f.find(model, normalised));
        match found {
            Some(p) => Some(p),
            None if family == "azure" => self.families.get("openai").and_then(|f| f.find(model, normalised)),
            None => None,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn validate(e: &PriceEntry) -> Result<Price, String> {
    if e.provider.trim().is_empty() {
        return Err("provider must not be empty".into());
    }
    if e.model.trim().is_empty() {
        return Err("model must not be empty".into());
    }
    Price::from_entry(e)
}

/// The model name without decorations that do not change the price: Gemini's `models/`, a
/// Bedrock inference-profile region (`us.anthropic...`), a Vertex-style `@version` and `:latest`.
fn normalise(model: &str) -> &str {
    let mut m = model.strip_prefix("models/").unwrap_or(model);
    if let Some(rest) = REGION_PREFIXES.iter().find_map(|p| m.strip_prefix(p)) {
        m = rest;
    }
    if let Some((name, _version)) = m.split_once('@') {
        m = name;
    }
    m.strip_suffix(":latest").unwrap_or(m)
}

#[cfg(test)]
mod tests;
