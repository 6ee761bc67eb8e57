//! Reading the client's request body whole, bounded by the configured size and deadline, and by
//! what all the bodies held at once may take (`server.max_buffered_bytes`, counted by
//! `limits::buffered`): a declared `Content-Length` is taken from the request's lease before a
//! byte is read, a chunked body grows it chunk by chunk; a body that would go past the limit is
//! refused with 503 `overloaded` (and `Retry-After`). The lease lives in the request's context.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;

use super::ctx::RequestCtx;
use super::drain::Stop;
use crate::api::ApiError;
use crate::config::ServerSettings;
use crate::limits::buffered::{Buffered, Lease};

/// Reads the request's body under `server`'s bounds: its size (`max_body_bytes`), its deadline
/// (`body_timeout`: a trickled upload cannot hold a connection) and the bodies held at once
/// (`max_buffered_bytes`: the lease goes into `ctx` and lives as long as the request; a refusal
/// asks the client to come back in a second), or until the gateway must stop. A declared
/// `Content-Length` over a limit is refused before a byte is read; a chunked body as soon as it
/// crosses one. On any failure the connection is not reused: the rest of the body is still on it.
pub async fn read(
    session: &mut Session,
    ctx: &mut RequestCtx,
    server: &ServerSettings,
    buffered: &Arc<Buffered>,
    stop: &mut Stop<'_>,
) -> Result<Bytes, ApiError> {
    let mut lease = Lease::new(buffered);
    let (limit, within, cap) = (server.max_body_bytes, server.body_timeout, server.max_buffered_bytes);
    let read = tokio::select! {
        r = tokio::time::timeout(within, read_all(session, limit, &mut lease, cap)) => match r {
            Ok(r) => r,
            Err(_) => Err(ApiError::RequestTimeout(within.as_millis() as u64)),
        },
        _ = stop.stopped() => Err(ApiError::ShuttingDown),
    };
    ctx.body_lease = Some(lease);
    if let Err(e) = &read {
        session.set_keepalive(None);
        if matches!(e, ApiError::Overloaded { .. }) {
            ctx.retry_after_ms = Some(1000);
        }
    }
    read
}

async fn read_all(session: &mut Session, limit: u64, lease: &mut Lease, cap: u64) -> Result<Bytes, ApiError> {
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    if let Some(n) = declared {
        if !lease.grow(n, cap) {
            return Err(ApiError::Overloaded { limit: cap });
        }
    }
    // The common case is one chunk: keep it without copying.
    let mut first: Option<Bytes> = None;
    let mut buf: Option<BytesMut> = None;
    let mut total: u64 = 0;
    loop {
        let chunk = session
            .read_request_body()
            .await
            .map_err(|e| ApiError::ClientBody(e.etype().as_str().to_string()))?;
        let Some(chunk) = chunk else { break };
        total += chunk.len() as u64;
        if total > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        if !lease.grow(total, cap) {
            return Err(ApiError::Overloaded { limit: cap });
        }
        match (&mut first, &mut buf) {
            (None, None) => first = Some(chunk),
            (Some(f), None) => {
                let cap = declared.unwrap_or(total).max(total) as usize;
                let mut b = BytesMut::with_capacity(cap);
                b.extend_from_slice(f);
                b.extend_from_slice(&chunk);
                first = None;
                buf = Some(b);
            }
            (_, Some(b)) => b.extend_from_slice(&chunk),
        }
    }
    Ok(match (first, buf) {
        (_, Some(b)) => b.freeze(),
        (Some(f), None) => f,
        (None, None) => Bytes::new(),
    })
}
