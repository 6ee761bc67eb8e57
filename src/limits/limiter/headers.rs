//! OpenAI's rate-limit headers (`x-ratelimit-*`), sent on every response so SDKs can pace
//! themselves. Resets are written as OpenAI writes them (Go's `time.Duration` format: `20ms`,
//! `1s`, `1.5s`, `6m0s`, `1h0m0s`): the time until the bucket is full again.

use std::fmt::Write;

use http::{HeaderName, HeaderValue};

use super::quota::Level;

const LIMIT_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
const LIMIT_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-limit-tokens");
const REMAINING_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-requests");
const REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");
const RESET_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");
const RESET_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-reset-tokens");

/// Values for the `x-ratelimit-*` headers; a `None` field is a header not sent.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RateHeaders {
    pub limit_requests: Option<u64>,
    pub remaining_requests: Option<u64>,
    pub reset_requests_ms: Option<u64>,
    pub limit_tokens: Option<u64>,
    pub remaining_tokens: Option<u64>,
    pub reset_tokens_ms: Option<u64>,
}

impl RateHeaders {
    /// `(header name, value)` for every field that is set, in OpenAI's order. Names are
    /// constants and values are made as header values directly: nothing is parsed.
    pub fn pairs(&self) -> impl Iterator<Item = (HeaderName, HeaderValue)> {
        let fields = [
            (LIMIT_REQUESTS, self.limit_requests.and_then(number)),
            (LIMIT_TOKENS, self.limit_tokens.and_then(number)),
            (REMAINING_REQUESTS, self.remaining_requests.and_then(number)),
            (REMAINING_TOKENS, self.remaining_tokens.and_then(number)),
            (RESET_REQUESTS, self.reset_requests_ms.and_then(reset)),
            (RESET_TOKENS, self.reset_tokens_ms.and_then(reset)),
        ];
        fields.into_iter().filter_map(|(name, value)| value.map(|v| (name, v)))
    }

    pub(super) fn set_requests(&mut self, level: Level) {
        self.limit_requests = Some(level.limit);
        self.remaining_requests = Some(level.limit.saturating_sub(level.used));
        self.reset_requests_ms = Some(level.reset_ms);
    }

    pub(super) fn set_tokens(&mut self, level: Level) {
        self.limit_tokens = Some(level.limit);
        self.remaining_tokens = Some(level.limit.saturating_sub(level.used));
        self.reset_tokens_ms = Some(level.reset_ms);
    }
}

/// Share of the limit still available (0..=1); the most restrictive scope has the lowest.
pub(super) fn remaining_share(level: Level) -> f64 {
    if level.limit == 0 {
        return 0.0;
    }
    level.limit.saturating_sub(level.used) as f64 / level.limit as f64
}

fn number(n: u64) -> Option<HeaderValue> {
    Some(HeaderValue::from(n))
}

fn reset(ms: u64) -> Option<HeaderValue> {
    HeaderValue::try_from(duration(ms)).ok()
}

/// Milliseconds in Go's `time.Duration` notation, which is what OpenAI sends.
pub(super) fn duration(ms: u64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let mut out = String::with_capacity(12);
    let (hours, minutes) = (ms / 3_600_000, ms / 60_000 % 60);
    let (seconds, millis) = (ms / 1_000 % 60, ms % 1_000);
    if hours > 0 {
        let _ = write!(out, "{hours}h");
    }
    if hours > 0 || minutes > 0 {
        let _ = write!(out, "{minutes}m");
    }
    let _ = write!(out, "{seconds}");
    if millis > 0 {
        let fraction = format!("{millis:03}");
        let _ = write!(out, ".{}", fraction.trim_end_matches('0'));
    }
    out.push('s');
    out
}
