//! The mock's socket side: reading a request body (bounded), writing JSON and timed SSE replies
//! (each event one flushed body write, `close_after` counted on content events), hanging until
//! shutdown or the client leaves, and handing a finished connection back for keep-alive.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora::apps::{HttpPersistentSettings, ReusedHttpStream};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;

use super::behavior::Behavior;
use super::{EventSource, Flow, Reply, MAX_BODY_BYTES};

pub(super) async fn sleep_ms(ms: u64) {
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// Wait until the server shuts down or the client goes away.
pub(super) async fn hang(session: &mut ServerSession, shutdown: &ShutdownWatch) {
    let mut watch = shutdown.clone();
    let shut = async move {
        loop {
            if *watch.borrow_and_update() || watch.changed().await.is_err() {
                return;
            }
        }
    };
    tokio::pin!(shut);
    tokio::select! {
        _ = &mut shut => {}
        // With the body fully read this only returns when the client closes or misbehaves.
        r = session.read_body_or_idle(true) => {
            if r.is_ok() {
                shut.await;
            }
        }
    }
}

/// Read the whole request body. `Err` if the connection broke; `Ok((partial, true))` if the body
/// exceeds [`MAX_BODY_BYTES`].
pub(super) async fn read_body(session: &mut ServerSession) -> Result<(Bytes, bool), ()> {
    let mut first: Option<Bytes> = None;
    let mut more: Option<BytesMut> = None;
    let mut total = 0usize;
    while let Some(chunk) = session.read_request_body().await.map_err(|_| ())? {
        total += chunk.len();
        if total > MAX_BODY_BYTES {
            let partial = more.map(BytesMut::freeze).or(first).unwrap_or_default();
            return Ok((partial, true));
        }
        match (&mut first, &mut more) {
            (None, None) => first = Some(chunk),
            (Some(f), None) => {
                let mut buf = BytesMut::with_capacity(f.len() + chunk.len());
                buf.extend_from_slice(f);
                buf.extend_from_slice(&chunk);
                more = Some(buf);
            }
            (_, Some(buf)) => buf.extend_from_slice(&chunk),
        }
    }
    Ok((more.map(BytesMut::freeze).or(first).unwrap_or_default(), false))
}

pub(super) async fn write_reply(session: &mut ServerSession, reply: Reply, b: &Behavior, seq: Option<u64>) -> Flow {
    let res = match reply {
        Reply::Json { status, body, headers } => write_json(session, status, body, &headers, seq).await,
        Reply::Sse(events) => return write_sse(session, events, b, seq).await,
    };
    match res {
        Ok(()) => Flow::Finished,
        Err(_) => Flow::Close,
    }
}

type PResult<T> = pingora::Result<T>;

pub(super) async fn write_json(
    session: &mut ServerSession,
    status: u16,
    body: Bytes,
    extra: &[(&'static str, String)],
    seq: Option<u64>,
) -> PResult<()> {
    let mut h = ResponseHeader::build(status, Some(4 + extra.len()))?;
    h.insert_header("content-type", "application/json")?;
    h.insert_header("content-length", body.len().to_string())?;
    if let Some(seq) = seq {
        h.insert_header("x-mock-seq", seq.to_string())?;
    }
    for (k, v) in extra {
        h.insert_header(*k, v.as_str())?;
    }
    session.write_response_header(Box::new(h)).await?;
    session.write_response_body(body, true).await
}

pub(super) async fn write_sse(
    session: &mut ServerSession,
    mut events: Box<dyn EventSource>,
    b: &Behavior,
    seq: Option<u64>,
) -> Flow {
    let content_type = events.content_type();
    let head = async {
        let mut h = ResponseHeader::build(200, Some(5))?;
        h.insert_header("content-type", content_type)?;
        h.insert_header("cache-control", "no-cache")?;
        if !session.is_http2() {
            h.insert_header("transfer-encoding", "chunked")?;
        }
        if let Some(seq) = seq {
            h.insert_header("x-mock-seq", seq.to_string())?;
        }
        session.write_response_header(Box::new(h)).await
    };
    if head.await.is_err() {
        return Flow::Close;
    }
    let mut written = 0usize;
    let mut content = 0u32;
    while let Some(ev) = events.next_event() {
        sleep_ms(if written == 0 {
            b.first_chunk_ms
        } else {
            b.chunk_delay_ms
        })
        .await;
        if session.write_response_body(ev.data, false).await.is_err() {
            return Flow::Close;
        }
        written += 1;
        if ev.content {
            content += 1;
            if b.close_after == Some(content) {
                return Flow::Close;
            }
        }
    }
    match session.write_response_body(Bytes::new(), true).await {
        Ok(()) => Flow::Finished,
        Err(_) => Flow::Close,
    }
}

pub(super) async fn finish(session: ServerSession) -> Option<ReusedHttpStream> {
    let settings = HttpPersistentSettings::for_session(&session);
    match session.finish().await {
        Ok(Some(stream)) => Some(ReusedHttpStream::from_reusable_stream(stream, settings)),
        _ => None,
    }
}
