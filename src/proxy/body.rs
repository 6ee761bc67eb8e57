//! Reading the client's request body whole, bounded by the configured size and deadline, and by
//! what all the bodies held at once may take (`server.max_buffered_bytes`): a thousand clients
//! each sending a 30 MiB body must not take the process's memory with them.
//!
//! `Buffered` counts the bytes of the bodies being read or held by requests in flight; each
//! request holds a `Lease` on its share until it ends (the lease lives in the request's context,
//! and gives its bytes back when dropped). A declared `Content-Length` is taken before a byte is
//! read; a chunked body grows its lease chunk by chunk. Either way, a body that would go past the
//! limit is refused with 503 `overloaded` (and `Retry-After`), and what it took is given back.
//! Copies the gateway makes of a body (a translation, a redaction) are not counted: they are
//! bounded by the body's own size and live no longer than it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;

use super::drain::Stop;
use crate::api::ApiError;

/// The bytes of the request bodies the process holds (see the module doc).
#[derive(Debug)]
pub struct Buffered {
    used: AtomicU64,
    /// `tollgate_buffered_body_bytes`, kept equal to `used`.
    gauge: prometheus::IntGauge,
}

impl Buffered {
    pub fn new(gauge: prometheus::IntGauge) -> Arc<Buffered> {
        Arc::new(Buffered {
            used: AtomicU64::new(0),
            gauge,
        })
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

/// A request's share of `Buffered`, given back when dropped.
#[derive(Debug)]
pub struct Lease {
    pool: Arc<Buffered>,
    bytes: u64,
}

impl Lease {
    pub fn new(pool: &Arc<Buffered>) -> Lease {
        Lease {
            pool: Arc::clone(pool),
            bytes: 0,
        }
    }

    /// Grows the lease to `to` bytes, unless the pool would then hold more than `cap`.
    fn grow(&mut self, to: u64, cap: u64) -> bool {
        let Some(more) = to.checked_sub(self.bytes).filter(|&m| m > 0) else {
            return true;
        };
        let taken = self
            .pool
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(more).filter(|&n| n <= cap)
            });
        if taken.is_err() {
            return false;
        }
        self.bytes = to;
        self.pool.gauge.add(more as i64);
        true
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.pool.used.fetch_sub(self.bytes, Ordering::AcqRel);
            self.pool.gauge.sub(self.bytes as i64);
        }
    }
}

/// Reads the body within `within` (`server.body_timeout`: a trickled upload cannot hold a
/// connection), or until the gateway must stop. A declared `Content-Length` over the limit is refused before reading a byte; a
/// chunked body is refused as soon as it crosses the limit. The body's bytes are taken from
/// `lease` (which the caller keeps as long as it keeps the body), up to `cap` for all requests
/// together. On any failure the connection is not reused: the rest of the body is still on it.
pub async fn read(
    session: &mut Session,
    limit: u64,
    within: Duration,
    stop: &mut Stop<'_>,
    lease: &mut Lease,
    cap: u64,
) -> Result<Bytes, ApiError> {
    let read = tokio::select! {
        r = tokio::time::timeout(within, read_all(session, limit, lease, cap)) => match r {
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
