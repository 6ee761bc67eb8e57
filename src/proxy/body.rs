//! Reading the client's request body whole, bounded by the configured size and deadline.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;

use super::drain::Stop;
use crate::api::ApiError;

/// Reads the body within `within` (`server.body_timeout`: a trickled upload cannot hold a
/// connection), or until the gateway must stop. A declared `Content-Length` over the limit is refused before reading a byte; a
/// chunked body is refused as soon as it crosses the limit. On any failure the connection is not
/// reused: the rest of the body is still on it.
pub async fn read(session: &mut Session, limit: u64, within: Duration, stop: &mut Stop<'_>) -> Result<Bytes, ApiError> {
    let read = tokio::select! {
        r = tokio::time::timeout(within, read_all(session, limit)) => match r {
            Ok(r) => r,
            Err(_) => Err(ApiError::RequestTimeout(within.as_millis() as u64)),
        },
        _ = stop.stopped() => Err(ApiError::ShuttingDown),
    };
    if read.is_err() {
        session.set_keepalive(None);
    }
    read
}

async fn read_all(session: &mut Session, limit: u64) -> Result<Bytes, ApiError> {
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
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
