//! Writing the gateway's own responses (JSON bodies and errors) to the client.

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use pingora::prelude::*;
use pingora::proxy::Session;

use super::ctx::RequestCtx;
use super::head::{names, Head};
use crate::api::ApiError;

/// Writes a complete JSON response. Returns `Ok(true)`: the response is sent, Pingora stops here.
pub async fn json(
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    body: Bytes,
    extra: &[(HeaderName, &str)],
) -> Result<bool> {
    let mut h = Head::new(status, 12 + extra.len())?;
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert_number(CONTENT_LENGTH, body.len() as u64);
    h.insert_str(names::REQUEST_ID, &ctx.request_id)?;
    h.insert_number(names::OVERHEAD_US, ctx.overhead(Duration::ZERO).as_micros() as u64);
    for (k, v) in extra {
        h.insert_str(k.clone(), v)?;
    }
    rate_headers(&mut h, ctx);
    ctx.status = status;
    session.write_response_header(h.finish(), false).await?;
    session.write_response_body(Some(body), true).await?;
    Ok(true)
}

/// OpenAI's `x-ratelimit-*` headers for the tenant's limits, and `Retry-After` on a refusal.
pub fn rate_headers(h: &mut Head, ctx: &RequestCtx) {
    limit_headers(h, ctx);
    retry_headers(h, ctx);
}

/// OpenAI's `x-ratelimit-*` headers for the tenant's limits (none without limits).
pub fn limit_headers(h: &mut Head, ctx: &RequestCtx) {
    if let Some(r) = &ctx.rate_headers {
        for (name, value) in r.pairs() {
            h.insert(name, value);
        }
    }
}

/// `Retry-After` (and `retry-after-ms`) when the gateway asks the client to wait.
pub fn retry_headers(h: &mut Head, ctx: &RequestCtx) {
    if let Some(ms) = ctx.retry_after_ms {
        h.insert_number(RETRY_AFTER, ms.div_ceil(1000).max(1));
        h.insert_number(names::RETRY_AFTER_MS, ms);
    }
}

/// Begins the client's response header with the gateway's headers that do not depend on the
/// provider's answer: the request id and the tenant's `x-ratelimit-*` (as refined). Done while the
/// provider works, so none of it is on the request's latency; `relay` finishes it.
pub fn begin_head(ctx: &RequestCtx) -> Result<Head> {
    // Room for everything `relay` adds without the map growing.
    let mut h = Head::begin(24);
    h.insert_str(names::REQUEST_ID, &ctx.request_id)?;
    limit_headers(&mut h, ctx);
    Ok(h)
}

/// Answers with an OpenAI-shaped error.
pub async fn error(session: &mut Session, ctx: &mut RequestCtx, e: &ApiError) -> Result<bool> {
    ctx.error = Some(e.code());
    let allow;
    let extra: &[(HeaderName, &str)] = match e {
        ApiError::MethodNotAllowed { allowed } => {
            allow = [(http::header::ALLOW, *allowed)];
            &allow
        }
        _ => &[],
    };
    let body = crate::api::client::error(ctx.client, e.status(), &e.body());
    if ctx.attempts.is_empty() {
        return json(session, ctx, e.status(), body, extra).await;
    }
    let attempts = ctx.attempts_summary();
    let mut with = extra.to_vec();
    with.push((names::ATTEMPTS, attempts.as_str()));
    json(session, ctx, e.status(), body, &with).await
}
