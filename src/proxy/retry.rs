//! The retry policy's small decisions: is a 400 a context-length error, the request's time
//! budget, a provider's `Retry-After`, and the jittered backoff between tries.

use std::time::Duration;

use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use crate::api::ApiError;

/// Whether a provider's 400 says the prompt does not fit the model's context window (OpenAI's
/// `context_length_exceeded`, Anthropic's "prompt is too long", Gemini's and Bedrock's wording).
pub(super) fn is_context_length_error(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(&body[..body.len().min(4096)]).to_ascii_lowercase();
    [
        "context_length_exceeded",
        "maximum context length",
        "prompt is too long",
        "input is too long",
        "exceeds the maximum number of tokens",
        "context window",
    ]
    .iter()
    .any(|m| text.contains(m))
}

/// The request's time budget: the configured one, lowered by `x-tollgate-timeout-ms`.
pub(super) fn client_budget(session: &Session, configured: Duration) -> std::result::Result<Duration, ApiError> {
    let Some(v) = session.req_header().headers.get("x-tollgate-timeout-ms") else {
        return Ok(configured);
    };
    match v
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|ms| *ms > 0)
    {
        Some(ms) => Ok(configured.min(Duration::from_millis(ms))),
        None => Err(ApiError::InvalidField {
            field: "x-tollgate-timeout-ms",
            message: "expected a positive number of milliseconds".into(),
        }),
    }
}

/// `retry-after-ms` (milliseconds) or `Retry-After` (seconds); HTTP dates are not honoured.
pub(super) fn retry_after(h: &ResponseHeader) -> Option<Duration> {
    let get = |name: &str| h.headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = get("retry-after-ms")
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    get("retry-after")
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Exponential backoff with full jitter: uniform in [0, min(max, base * 2^attempt)].
pub(super) fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let cap = base.saturating_mul(1u32 << attempt.min(16)).min(max);
    cap.mul_f64(jitter_unit())
}

/// A uniform value in [0, 1) from a per-thread xorshift generator (no lock, no syscall).
pub(super) fn jitter_unit() -> f64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0x9E37_79B9, |d| d.as_nanos() as u64) | 1,
        );
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}
