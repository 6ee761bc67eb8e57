//! Writing the gateway's own responses (JSON bodies and errors) to the client.

use std::time::Duration;

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

use super::ctx::RequestCtx;
use crate::api::ApiError;

/// Writes a complete JSON response. Returns `Ok(true)`: the response is sent, Pingora stops here.
pub async fn json(
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    body: Bytes,
    extra: &[(&'static str, &str)],
) -> Result<bool> {
    let mut h = ResponseHeader::build(status, Some(5 + extra.len()))?;
    h.insert_header("content-type", "application/json")?;
    h.insert_header("content-length", body.len())?;
    h.insert_header("x-request-id", ctx.request_id.as_str())?;
    h.insert_header(
        "x-tollgate-overhead-us",
        ctx.overhead(Duration::ZERO).as_micros() as u64,
    )?;
    for (k, v) in extra {
        h.insert_header(*k, *v)?;
    }
    rate_headers(&mut h, ctx)?;
    ctx.status = status;
    session.write_response_header(Box::new(h), false).await?;
    session.write_response_body(Some(body), true).await?;
    Ok(true)
}

/// OpenAI's `x-ratelimit-*` headers for the tenant's limits, and `Retry-After` on a refusal.
pub fn rate_headers(h: &mut ResponseHeader, ctx: &RequestCtx) -> Result<()> {
    if let Some(r) = &ctx.rate_headers {
        for (name, value) in r.pairs() {
            h.insert_header(name, value)?;
        }
    }
    if let Some(ms) = ctx.retry_after_ms {
        h.insert_header("retry-after", ms.div_ceil(1000).max(1))?;
        h.insert_header("retry-after-ms", ms)?;
    }
    Ok(())
}

/// Answers with an OpenAI-shaped error.
pub async fn error(session: &mut Session, ctx: &mut RequestCtx, e: &ApiError) -> Result<bool> {
    ctx.error = Some(e.code());
    let allow;
    let extra: &[(&'static str, &str)] = match e {
        ApiError::MethodNotAllowed { allowed } => {
            allow = [("allow", *allowed)];
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
    with.push(("x-tollgate-attempts", attempts.as_str()));
    json(session, ctx, e.status(), body, &with).await
}
