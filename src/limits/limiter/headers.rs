//! OpenAI's rate-limit headers (`x-ratelimit-*`), sent on every response so SDKs can pace
//! themselves. Resets are written as OpenAI writes them (Go's `time.Duration` format: `20ms`,
//! `1s`, `1.5s`, `6m0s`, `1h0m0s`): the time until the bucket is full again.

use std::fmt::Write;

use bytes::BytesMut;
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
    /// constants; the values are written into one buffer and share it (one allocation).
    pub fn pairs(&self) -> impl Iterator<Item = (HeaderName, HeaderValue)> {
        let mut buf = BytesMut::new();
        let mut value = |n: Option<u64>, as_duration: bool| {
            let n = n?;
            if buf.capacity() < 24 {
                buf.reserve(96);
            }
            if as_duration {
                write_duration(&mut buf, n);
            } else {
                let _ = write!(buf, "{n}");
            }
            HeaderValue::from_maybe_shared(buf.split().freeze()).ok()
        };
        let fields = [
            (LIMIT_REQUESTS, value(self.limit_requests, false)),
            (LIMIT_TOKENS, value(self.limit_tokens, false)),
            (REMAINING_REQUESTS, value(self.remaining_requests, false)),
            (REMAINING_TOKENS, value(self.remaining_tokens, false)),
            (RESET_REQUESTS, value(self.reset_requests_ms, true)),
            (RESET_TOKENS, value(self.reset_tokens_ms, true)),
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

/// Milliseconds in Go's `time.Duration` notation, which is what OpenAI sends.
#[cfg(test)]
pub(super) fn duration(ms: u64) -> String {
    let mut out = String::new();
    write_duration(&mut out, ms);
    out
}

fn write_duration(out: &mut impl Write, ms: u64) {
    if ms < 1_000 {
        let _ = if ms == 0 {
            write!(out, "0s")
        } else {
            write!(out, "{ms}ms")
        };
        return;
    }
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
        // Milliseconds as a fraction without trailing zeros: 500 -> .5, 250 -> .25, 5 -> .005.
        let (mut digits, mut width) = (millis, 3);
        while digits % 10 == 0 {
            digits /= 10;
            width -= 1;
        }
        let _ = write!(out, ".{digits:0width$}");
    }
    let _ = write!(out, "s");
}
