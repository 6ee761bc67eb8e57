//! The unified LLM endpoints, run inside `request_filter` ("handler mode", see DESIGN.md): read
//! and parse the body, plan the targets, then try them in order through Pingora's `Connector`
//! until one answers, and relay that answer (streamed or whole) to the client.
//!
//! Fallback to the next target happens only before anything was written to the client: on a
//! connect/TLS error, a first-byte timeout, a reset before the header, or a 429/5xx from a target
//! that is not the last. Once the response header went out, a failure ends the stream with an
//! explicit SSE error event instead of a clean-looking end.

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

use super::ctx::{Attempt, AttemptOutcome, RequestCtx};
use super::upstream::{self, AttemptError, Upstream};
use super::{body, respond, AppState};
use crate::api::error::error_body;
use crate::api::openai::LlmRequest;
use crate::api::{ApiError, Endpoint};
use crate::config::Target;
use crate::sse::encode_event;

/// Upstream statuses worth trying the next target for.
fn retryable(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504)
}

/// A whole (non-streamed) response body larger than this is refused rather than buffered.
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

pub async fn handle(state: &AppState, session: &mut Session, ctx: &mut RequestCtx, endpoint: Endpoint) -> Result<bool> {
    ctx.endpoint = Some(endpoint);
    let Some(snapshot) = ctx.snapshot.clone() else {
        return respond::error(session, ctx, &ApiError::UpstreamProtocol("no config loaded".into())).await;
    };
    let body = match body::read(session, snapshot.server.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return respond::error(session, ctx, &e).await,
    };
    let req = match LlmRequest::parse(endpoint, body) {
        Ok(r) => r,
        Err(e) => return respond::error(session, ctx, &e).await,
    };
    ctx.stream = req.stream;
    if let Some(alias) = snapshot.model(&req.model) {
        ctx.model = Some(alias.name.clone());
    }
    let plan = match crate::routing::plan(&snapshot, &req.model) {
        Ok(p) => p,
        Err(e) => return respond::error(session, ctx, &e).await,
    };

    let mut last_error: Option<AttemptError> = None;
    for (i, target) in plan.iter().enumerate() {
        let last = i + 1 == plan.len();
        let adapter = target.provider.kind.adapter();
        let rendered = match adapter.render(&req, target) {
            Ok(r) => r,
            Err(e) => return respond::error(session, ctx, &e).await,
        };
        let timeouts = target.provider.timeouts;
        let attempt = upstream::send(&state.connector, session, target, &rendered, req.stream, timeouts).await;
        match attempt {
            Ok(up) => {
                let status = up.session.response_header().map_or(0, |h| h.status.as_u16());
                ctx.attempts.push(Attempt {
                    target: Arc::clone(target),
                    outcome: AttemptOutcome::Status(status),
                });
                if retryable(status) && !last {
                    ctx.upstream_time += up.started.elapsed();
                    state
                        .metrics
                        .upstream_errors
                        .with_label_values(&[&target.provider.name, "status"])
                        .inc();
                    continue; // dropped, not pooled: its body is unread
                }
                if i > 0 {
                    if let Some(m) = &ctx.model {
                        state.metrics.fallbacks.with_label_values(&[m]).inc();
                    }
                }
                ctx.served_by = Some(target.clone());
                return relay(state, session, ctx, &req, target, up, status).await;
            }
            Err(AttemptError::ClientGone) => return client_gone(ctx, "while waiting for the provider"),
            Err(e) => {
                ctx.attempts.push(Attempt {
                    target: Arc::clone(target),
                    outcome: AttemptOutcome::Failed(e.kind()),
                });
                state
                    .metrics
                    .upstream_errors
                    .with_label_values(&[&target.provider.name, e.kind()])
                    .inc();
                tracing::debug!(provider = %target.provider.name, kind = e.kind(), "upstream attempt failed: {e:?}");
                last_error = Some(e);
            }
        }
    }
    let err = match last_error {
        Some(AttemptError::Timeout(m)) => ApiError::UpstreamTimeout(m),
        Some(AttemptError::Connect(m)) => ApiError::UpstreamConnect(m),
        Some(AttemptError::Protocol(m)) => ApiError::UpstreamProtocol(m),
        Some(AttemptError::Unavailable) | Some(AttemptError::ClientGone) | None => ApiError::NoProvider {
            model: req.model.clone(),
            reason: "no target could be tried".into(),
        },
    };
    respond::error(session, ctx, &err).await
}

/// Builds the client's response header from the upstream's.
fn client_header(up: &ResponseHeader, status: u16, target: &Target, stream: bool, h2: bool) -> Result<ResponseHeader> {
    let mut h = ResponseHeader::build(status, Some(8))?;
    for name in [http::header::CONTENT_TYPE, http::header::RETRY_AFTER] {
        if let Some(v) = up.headers.get(&name) {
            h.insert_header(name, v.clone())?;
        }
    }
    if let Some(v) = up.headers.get("retry-after-ms") {
        h.insert_header("retry-after-ms", v.clone())?;
    }
    h.insert_header("x-tollgate-provider", target.provider.name.as_str())?;
    h.insert_header("x-tollgate-model", target.model.as_str())?;
    if stream {
        h.insert_header(http::header::CACHE_CONTROL, "no-cache")?;
        if !h2 {
            h.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
        }
    }
    Ok(h)
}

async fn relay(
    state: &AppState,
    session: &mut Session,
    ctx: &mut RequestCtx,
    req: &LlmRequest,
    target: &Target,
    mut up: Upstream,
    status: u16,
) -> Result<bool> {
    let h2 = session.as_downstream().is_http2();
    let Some(up_header) = up.session.response_header() else {
        return respond::error(session, ctx, &ApiError::UpstreamProtocol("no response header".into())).await;
    };
    let is_sse = up_header
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    let header = client_header(up_header, status, target, is_sse, h2)?;
    up.session.set_read_timeout(Some(target.provider.timeouts.idle));

    if !is_sse {
        // Whole response: read it, then answer with an exact length.
        let mut header = header;
        let mut buf = BytesMut::new();
        let read = loop {
            let chunk = tokio::select! {
                r = up.session.read_response_body() => r,
                _ = session.read_body_or_idle(true) => return client_gone(ctx, "while the provider answered"),
            };
            match chunk {
                Ok(Some(c)) if buf.len() + c.len() <= MAX_RESPONSE_BYTES => buf.extend_from_slice(&c),
                Ok(Some(_)) => break Err(ApiError::UpstreamProtocol("response too large".into())),
                Ok(None) => break Ok(buf.freeze()),
                Err(e) => {
                    break Err(match AttemptError::from_pingora(&e) {
                        AttemptError::Timeout(m) => ApiError::UpstreamTimeout(m),
                        other => ApiError::UpstreamProtocol(other.kind().to_string()),
                    })
                }
            }
        };
        ctx.upstream_time += up.started.elapsed();
        let body = match read {
            Ok(b) => b,
            Err(e) => return respond::error(session, ctx, &e).await,
        };
        if (200..300).contains(&status) {
            ctx.usage = target.provider.kind.adapter().response_usage(&body);
        }
        header.insert_header(http::header::CONTENT_LENGTH, body.len())?;
        release(state, up, target).await;
        ctx.status = status;
        if !(200..300).contains(&status) {
            ctx.error = Some("upstream_status");
        }
        session.write_response_header(Box::new(header), false).await?;
        ctx.first_byte = Some(Instant::now());
        session.write_response_body(Some(body), true).await?;
        return Ok(true);
    }

    // Stream: relay chunk by chunk as it arrives.
    let mut translator = target.provider.kind.adapter().stream_translator(req);
    ctx.status = status;
    session.write_response_header(Box::new(header), false).await?;
    let outcome: std::result::Result<(), &'static str> = loop {
        let chunk = tokio::select! {
            r = up.session.read_response_body() => r,
            _ = session.read_body_or_idle(true) => {
                ctx.usage = translator.usage();
                return client_gone(ctx, "mid-stream");
            }
        };
        match chunk {
            Ok(Some(c)) => {
                let out = translator.push(c);
                if !out.is_empty() {
                    if ctx.first_byte.is_none() {
                        ctx.first_byte = Some(Instant::now());
                    }
                    if let Err(e) = session.write_response_body(Some(out), false).await {
                        ctx.error = Some("client_gone");
                        ctx.usage = translator.usage();
                        return Err(e);
                    }
                }
            }
            Ok(None) => {
                let tail = translator.finish();
                if !tail.is_empty() {
                    session.write_response_body(Some(tail), false).await?;
                }
                break if translator.completed() || !(200..300).contains(&status) {
                    Ok(())
                } else {
                    Err("stream_incomplete")
                };
            }
            Err(e) => {
                break Err(match e.etype() {
                    ErrorType::ReadTimedout => "stream_idle_timeout",
                    _ => "stream_cut",
                })
            }
        }
    };
    ctx.upstream_time += up.started.elapsed();
    ctx.usage = translator.usage();
    match outcome {
        Ok(()) => {
            release(state, up, target).await;
            session.write_response_body(None, true).await?;
        }
        Err(kind) => {
            ctx.error = Some(kind);
            state
                .metrics
                .upstream_errors
                .with_label_values(&[&target.provider.name, kind])
                .inc();
            let message = match kind {
                "stream_idle_timeout" => "The provider stopped sending the stream (idle timeout).",
                "stream_incomplete" => "The provider ended the stream before it was complete.",
                _ => "The provider's stream was interrupted.",
            };
            let mut ev = BytesMut::new();
            let body = error_body(message, "api_error", None, Some(kind));
            encode_event(&mut ev, None, std::str::from_utf8(&body).unwrap_or("{}"));
            session.write_response_body(Some(ev.freeze()), true).await?;
        }
    }
    Ok(true)
}

/// The client closed its connection: nothing more can be written. A downstream-sourced error
/// makes Pingora skip its own error response, and `logging` records the request as 499.
fn client_gone(ctx: &mut RequestCtx, when: &'static str) -> Result<bool> {
    ctx.error = Some("client_gone");
    Err(Error::explain(ErrorType::ConnectionClosed, format!("client went away {when}")).into_down())
}

/// Returns a fully read upstream connection to the pool.
async fn release(state: &AppState, mut up: Upstream, target: &Target) {
    if let Some(peer) = target.provider.peer.as_ref() {
        if up.session.response_done() {
            state
                .connector
                .release_http_session(up.session, peer, peer.options.idle_timeout)
                .await;
        }
    }
}
