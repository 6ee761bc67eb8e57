//! What a request cost, in nano-USD, from OpenAI-normalised [`Usage`].
//!
//! `Usage.prompt_tokens` includes cache reads (`cached_tokens`) and cache writes
//! (`cache_write_tokens`); `completion_tokens` includes reasoning tokens, which every provider
//! bills as output. So the bill is
//! `uncached·input + cached·cached_input + written·cache_write + completion·output`, with
//! `uncached = prompt − cached − written` (saturating: a provider that reports more cached than
//! prompt tokens is billed for what it reported, never for a negative). Prices are per 1M tokens,
//! so the sum of `tokens × price` is in micro-USD; it is scaled to nanos and rounded once.

use crate::api::chat::Usage;

use super::{Price, Rates};

impl Price {
    /// Cost of one request in nano-USD (1e-9 USD), rounded once at the end. Saturates at
    /// `i64::MAX` rather than overflowing.
    pub fn cost_nanos(&self, usage: &Usage) -> i64 {
        let (cached, written) = usage
            .prompt_tokens_details
            .map_or((0, 0), |d| (d.cached_tokens, d.cache_write_tokens));
        let uncached = usage.prompt_tokens.saturating_sub(cached).saturating_sub(written);
        let r = self.rates(usage.prompt_tokens);
        micro_to_nanos(
            uncached as f64 * r.input
                + cached as f64 * r.cached_input
                + written as f64 * r.cache_write
                + usage.completion_tokens as f64 * r.output,
        )
    }

    /// Estimated cost before the call (the `cost` routing strategy, budget reservations): every
    /// prompt token uncached, `completion_tokens` at the output price.
    pub fn estimate_nanos(&self, prompt_tokens: u64, completion_tokens: u64) -> i64 {
        let r = self.rates(prompt_tokens);
        micro_to_nanos(prompt_tokens as f64 * r.input + completion_tokens as f64 * r.output)
    }

    /// The whole request moves to the long-context tier once its prompt passes the threshold
    /// (Google and Anthropic bill it this way, output included).
    fn rates(&self, prompt_tokens: u64) -> &Rates {
        match &self.long {
            Some(long) if prompt_tokens > long.above => &long.rates,
            _ => &self.base,
        }
    }
}

/// Micro-USD (tokens × USD per 1M tokens) to nano-USD, rounded half away from zero. Inputs are
/// finite and `>= 0` (prices are validated), and `as` saturates, so this cannot panic or wrap.
fn micro_to_nanos(micro_usd: f64) -> i64 {
    (micro_usd * 1000.0).round() as i64
}
