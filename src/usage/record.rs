//! The usage record: one per request, whatever happened to it (served, failed, cut, cached).
//! Built in `logging`, then handed to the access log, the spend ledger and the trace exporter.
//! It never holds a key, a prompt or a completion.

use serde::{Deserialize, Serialize};

/// Costs are kept in nano-USD (1e-9 USD) so that sums over millions of records are exact.
pub const NANOS_PER_USD: f64 = 1e9;

/// A new request id: 32 hex digits, the first 12 the Unix time in milliseconds, the other 20
/// random (80 bits). Time-ordered, so the ledger's primary-key index grows at its end instead
/// of taking each insert at a random leaf: a batch of 500 records dirtied ~400 index pages with
/// random ids, and writing those pages to the WAL and back was most of the SQLite writer's time.
/// Written digit by digit: `format!` took 3x as long, on every request.
pub fn new_request_id() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let ms = u128::from(crate::time::unix_ms() & 0xffff_ffff_ffff);
    let v = (ms << 80) | (rand::random::<u128>() >> 48);
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = HEX[((v >> (124 - 4 * i)) & 0xf) as usize];
    }
    out.iter().map(|&b| char::from(b)).collect()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// Unique per request, made by the gateway (the ledger's primary key); sent back to the
    /// client as `x-request-id`.
    pub request_id: String,
    /// The client's own `x-request-id`, when it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_request_id: Option<String>,
    /// W3C trace id (32 hex digits).
    pub trace_id: String,
    /// Request start, Unix milliseconds.
    pub ts_ms: i64,
    /// `chat`, `messages`, `embeddings`, `completions`, `count_tokens`, `models`, or `` for a path
    /// the gateway does not serve.
    pub endpoint: String,
    /// The virtual key's id (never the secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The client's address: the connection's peer, or what trusted proxies say it was
    /// (`server.trusted_proxies`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The alias the client asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The provider (config name) that served the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The upstream model name that served the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_model: Option<String>,
    /// `provider:outcome,…`, e.g. `openai:429,anthropic:200`.
    pub attempts: String,
    pub status: u16,
    /// Why the request failed or was cut (`model_not_found`, `stream_cut`, `client_gone`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub stream: bool,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Prompt tokens read from a provider-side prompt cache (part of `prompt_tokens`).
    pub cached_tokens: u64,
    /// Prompt tokens written to a provider-side prompt cache (part of `prompt_tokens`).
    pub cache_write_tokens: u64,
    /// Reasoning tokens (part of `completion_tokens`).
    pub reasoning_tokens: u64,
    /// The tokens were counted by the gateway, not reported by the provider.
    pub tokens_estimated: bool,
    /// Cost in nano-USD.
    pub cost_nanos: i64,
    /// False when the served model is not in the pricing table (cost is then 0, never a guess).
    pub priced: bool,
    pub latency_us: u64,
    /// Time to first token (first body byte to the client), when one went out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_us: Option<u64>,
    /// The gateway's own time: total minus the time spent waiting on providers.
    pub overhead_us: u64,
    /// What the response cache did: `none` (the route has no cache policy), `hit`, `coalesced`
    /// (answered by an identical request's call in progress), `miss`, `bypass` (not cacheable,
    /// or the client asked not to).
    pub cache: String,
    /// What a hit saved: the cost of the call that made its answer, in nano-USD (0 otherwise).
    #[serde(default)]
    pub cache_saved_nanos: i64,
    #[serde(default)]
    pub guardrails: GuardrailCounts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ab_arm: Option<String>,
}

/// The guardrails' audit of one request: entity types with counts, the action taken, the
/// injection verdict. Never a value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GuardrailCounts {
    /// Values replaced in the request (redacted or masked) and in the answer (masked).
    pub redactions: u32,
    /// 1 when the request scored at or above the route's injection threshold.
    pub injections: u32,
    /// The request, or its answer, was refused by a guardrail.
    pub blocked: bool,
    /// Entity types found in the request, with counts: `CARD:1,EMAIL:2` (sorted by type).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub entities: String,
    /// Entity types found in the answer (output checks), the same way.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output_entities: String,
    /// The strongest action taken: `log`, `flag`, `mask`, `redact` or `block` (empty: none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub action: String,
    /// The strongest injection family matched, when the route scores injection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injection_family: Option<String>,
    /// The injection score (0–1), when the route scores injection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injection_score: Option<f32>,
}

impl UsageRecord {
    pub fn cost_usd(&self) -> f64 {
        self.cost_nanos as f64 / NANOS_PER_USD
    }
}

#[cfg(test)]
mod tests {
    use super::new_request_id;

    #[test]
    fn request_ids_are_hex_start_with_the_time_and_differ() {
        let before = crate::time::unix_ms();
        let a = new_request_id();
        let after = crate::time::unix_ms();
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{a}"
        );
        let ms = u64::from_str_radix(&a[..12], 16).unwrap();
        assert!((before..=after).contains(&ms), "{ms} not in {before}..={after}");
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| new_request_id()).collect();
        assert_eq!(ids.len(), 1000);
    }

    #[test]
    fn later_request_ids_sort_after_earlier_ones() {
        let first = new_request_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = new_request_id();
        assert!(second > first, "{second} <= {first}");
    }
}
