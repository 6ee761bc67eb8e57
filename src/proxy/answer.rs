//! The relay of the provider's answer to the client, whole or streamed, in the client's format.
//!
//! The provider's bytes go through the translator (`relay::Relay`, which also counts the usage)
//! and then through the response observers (`api::observe`, built by `observers`); a whole answer
//! is read (bounded) first. Once the header went out nothing is tried again: a stream that
//! breaks ends with an explicit error event (`routing::attempts::Cut`), never a clean-looking
//! end. The usage is counted however the answer ends, the client's leaving included.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, TRANSFER_ENCODING};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

use super::ctx::RequestCtx;
use super::drain::{interrupted, Interrupt, Stop};
use super::head::{names, Head};
use super::relay::{ParseErrors, Relay};
use super::tenant::{completion_text_of, fill_missing_usage};
use super::upstream::{classify, Upstream};
use super::{respond, AppState};
use crate::api::chat::Usage;
use crate::api::observe::Observers;
use crate::api::openai::LlmRequest;
use crate::api::{client, ApiError, Endpoint};
use crate::config::Target;
use crate::providers::{Adapter, Rendered};
use crate::routing::attempts::Cut;
use crate::routing::attempts::Failure;

/// The answer the attempt policy chose to relay: the input of this stage.
pub(super) struct Answer<'p> {
    pub target: &'p Arc<Target>,
    pub rendered: Rendered,
    /// The provider's status.
    pub status: u16,
    /// Its body, when it was already read (to tell a context-length 400).
    pub prefetched: Option<Bytes>,
    /// (Boxed once it answered: the connection is large, and a value held across an await takes
    /// room in the request's future, which Pingora moves once per request; one allocation costs
    /// less than moving it from stage to stage.)
    pub up: Box<Upstream>,
}

/// A whole (non-streamed) response body larger than this is refused rather than buffered.
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// Most bytes coalesced into one client write.
const COALESCE_LIMIT: usize = 64 * 1024;

/// Relays `answer` to the client. `Ok(true)`: a response was sent; `Err`: the client's
/// connection failed.
pub(super) async fn relay(
    state: &AppState,
    session: &mut Session,
    ctx: &mut RequestCtx,
    req: &LlmRequest,
    answer: Answer<'_>,
    stop: &mut Stop<'_>,
) -> Result<bool> {
    let Answer {
        target,
        rendered,
        status,
        prefetched,
        mut up,
    } = answer;
    let h2 = session.as_downstream().is_http2();
    let Some(up_header) = up.session.response_header() else {
        return respond::error(session, ctx, &ApiError::UpstreamProtocol("no response header".into())).await;
    };
    let ok = (200..300).contains(&status);
    let is_sse = ok
        && up_header
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                ct.starts_with("text/event-stream") || ct.starts_with("application/vnd.amazon.eventstream")
            });
    let translated_ct = (!rendered.passthrough).then_some(if is_sse {
        "text/event-stream"
    } else {
        "application/json"
    });
    let begun = match ctx.head.take() {
        Some(h) => h,
        None => respond::begin_head(ctx)?,
    };
    let mut header = client_header(begun, up_header, status, target, translated_ct, is_sse, h2)?;
    header.insert_str(names::ATTEMPTS, &ctx.attempts_summary())?;
    respond::retry_headers(&mut header, ctx);
    if let Some(arm) = ctx.ab_arm {
        header.insert_str(names::AB, arm)?;
    }
    if let Some(route) = &ctx.route {
        header.insert_str(names::ROUTE, route)?;
    }
    if ctx.cache != "none" {
        header.insert_str(names::CACHE, super::head::cache_outcome(ctx.cache))?;
    }
    if let Some(k) = &ctx.cache_key {
        header.insert_str(names::CACHE_KEY, &k.hex())?;
    }
    up.session.set_read_timeout(Some(target.provider.timeouts.idle));
    if rendered.native_responses {
        if let Some(p) = ctx.responses.as_mut() {
            p.encoder.go_native();
        }
    }
    let served = Served {
        target,
        adapter: target.provider.kind.adapter(),
        rendered: &rendered,
        observers: super::chain::relayed(state, ctx, req.client, (&rendered, target), is_sse, ok),
        status,
    };
    if is_sse {
        stream(state, session, ctx, req, served, up, header, stop).await
    } else {
        whole(state, session, ctx, req, served, up, prefetched, header, stop).await
    }
}

/// The attempt being relayed and what its body goes through.
struct Served<'a> {
    target: &'a Arc<Target>,
    adapter: &'a dyn Adapter,
    rendered: &'a Rendered,
    observers: Observers,
    status: u16,
}

/// A whole answer: read (unless its body was already read), translated, written at once.
#[allow(clippy::too_many_arguments)]
async fn whole(
    state: &AppState,
    session: &mut Session,
    ctx: &mut RequestCtx,
    req: &LlmRequest,
    mut served: Served<'_>,
    mut up: Box<Upstream>,
    prefetched: Option<Bytes>,
    mut header: Head,
    stop: &mut Stop<'_>,
) -> Result<bool> {
    let raw = match prefetched {
        Some(b) => Ok(b),
        None => read_whole(session, &mut up, stop).await,
    };
    let raw = match raw {
        Ok(b) => b,
        Err(ReadWhole::Interrupted(Interrupt::ClientGone)) => return client_gone(ctx, "while the provider answered"),
        Err(ReadWhole::Interrupted(Interrupt::Shutdown)) => {
            ctx.upstream_time += up.started.elapsed();
            return shut_down(session, ctx).await;
        }
        Err(ReadWhole::Failed(e)) => {
            ctx.upstream_time += up.started.elapsed();
            return respond::error(session, ctx, &e).await;
        }
    };
    ctx.upstream_time += up.started.elapsed();
    let status = served.status;
    let ok = (200..300).contains(&status);
    let body = match translate_whole(req, ctx, &served, raw) {
        Ok(b) => b,
        Err(e) => return respond::error(session, ctx, &e).await,
    };
    let body = served.observers.body(body);
    let body = crate::api::observe::join(body, served.observers.end(ok));
    if let Some(refused) = served.observers.refusal() {
        // An output guardrail refused the answer: the call was made (its usage counts), the
        // client gets the refusal instead.
        served_attempt_ended(ctx, up.started);
        release(state, up, served.target).await;
        return respond::error(session, ctx, &refused).await;
    }
    let text = if ok && ctx.usage.is_none() && served.rendered.passthrough {
        completion_text_of(&body)
    } else {
        None
    };
    let body = super::responses::whole(ctx, body, ok);
    super::responses::finish(state, ctx);
    header.insert_number(CONTENT_LENGTH, body.len() as u64);
    header.insert_number(names::OVERHEAD_US, ctx.overhead(Duration::ZERO).as_micros() as u64);
    served_attempt_ended(ctx, up.started);
    release(state, up, served.target).await;
    ctx.status = status;
    if !ok {
        ctx.error = Some("upstream_status");
    }
    if ok {
        fill_missing_usage(req, ctx, text.as_deref()).await;
    }
    session.write_response_header(header.finish(), false).await?;
    ctx.first_byte = Some(Instant::now());
    session.write_response_body(Some(body), true).await?;
    Ok(true)
}

/// A whole provider body in the client's format (its usage into `ctx`); an error status's body
/// becomes the client's error shape with the provider's message.
fn translate_whole(req: &LlmRequest, ctx: &mut RequestCtx, served: &Served<'_>, raw: Bytes) -> Result<Bytes, ApiError> {
    let (adapter, rendered, status) = (served.adapter, served.rendered, served.status);
    if !(200..300).contains(&status) {
        return Ok(if rendered.passthrough {
            raw
        } else {
            client::error(req.client, status, &adapter.error_body(status, &raw))
        });
    }
    let unreadable = |fault: crate::providers::StreamFault| {
        tracing::warn!(provider = %served.target.provider.name, "unreadable provider response: {}", fault.message());
        ApiError::UpstreamProtocol(fault.message())
    };
    if rendered.passthrough {
        ctx.usage = adapter.usage_of(&raw);
        Ok(raw)
    } else if req.endpoint == Endpoint::Embeddings {
        adapter.parse_embeddings(req, &raw, rendered).map_err(unreadable)
    } else {
        let resp = adapter.parse_chat(&raw, rendered).map_err(unreadable)?;
        ctx.usage = resp.usage;
        Ok(client::response(req.client, &resp))
    }
}

/// A stream: relayed as it arrives. Several events often arrive in one read; Pingora hands them
/// back one HTTP chunk at a time, so whatever is already buffered is drained and written
/// together (one write, one packet) instead of one write per event.
#[allow(clippy::too_many_arguments)]
async fn stream(
    state: &AppState,
    session: &mut Session,
    ctx: &mut RequestCtx,
    req: &LlmRequest,
    mut served: Served<'_>,
    mut up: Box<Upstream>,
    mut header: Head,
    stop: &mut Stop<'_>,
) -> Result<bool> {
    let parse_errors = ParseErrors::new(&state.metrics.stream_parse_errors, &served.target.provider.name);
    let mut relay = Relay::new(
        served.adapter,
        served.rendered,
        req.client,
        req.include_usage,
        parse_errors,
    );
    ctx.status = served.status;
    header.insert_number(
        names::OVERHEAD_US,
        ctx.overhead(up.started.elapsed()).as_micros() as u64,
    );
    session.write_response_header(header.finish(), false).await?;
    let observers = &mut served.observers;
    let mut stashed: Option<pingora::Result<Option<Bytes>>> = None;
    let outcome: std::result::Result<(), Cut> = loop {
        let chunk = match stashed.take() {
            Some(r) => r,
            None => tokio::select! {
                r = up.session.read_response_body() => r,
                why = interrupted(session, stop) => match why {
                    Interrupt::ClientGone => {
                        attempt_ended(req, ctx, &up, relay.usage(), relay.completion_text()).await;
                        return client_gone(ctx, "mid-stream");
                    }
                    Interrupt::Shutdown => break Err(Cut::Shutdown),
                },
            },
        };
        let out = match chunk {
            Ok(Some(c)) => coalesce(&mut relay, &mut up, c, &mut stashed),
            // The provider's body ended: what the translator and the observers held back goes
            // out, then the stream is over, complete or not.
            Ok(None) => match relay.finish() {
                Ok(tail) => {
                    let complete = relay.completed();
                    let tail = crate::api::observe::join(observers.body(tail), observers.end(complete));
                    let tail = super::responses::outgoing(ctx, tail);
                    if !tail.is_empty() {
                        session.write_response_body(Some(tail), false).await?;
                    }
                    if let Some(refused) = observers.refusal() {
                        break Err(Cut::Blocked(refused.to_string()));
                    }
                    break if complete { Ok(()) } else { Err(Cut::Incomplete) };
                }
                Err(fault) => break Err(Cut::Malformed(fault.message())),
            },
            Err(e) => {
                break Err(match e.etype() {
                    ErrorType::ReadTimedout => Cut::IdleTimeout,
                    _ => Cut::Interrupted,
                })
            }
        };
        let bytes = match out {
            Ok(bytes) => observers.body(bytes),
            Err(fault) => break Err(Cut::Malformed(fault.message())),
        };
        if let Some(refused) = observers.refusal() {
            // An output guardrail refused the rest: what it let out goes, then the error event.
            let bytes = super::responses::outgoing(ctx, bytes);
            if !bytes.is_empty() {
                session.write_response_body(Some(bytes), false).await?;
            }
            break Err(Cut::Blocked(refused.to_string()));
        }
        let bytes = super::responses::outgoing(ctx, bytes);
        super::responses::finish(state, ctx);
        if bytes.is_empty() {
            continue;
        }
        if ctx.first_byte.is_none() {
            ctx.first_byte = Some(Instant::now());
        }
        if let Err(e) = session.write_response_body(Some(bytes), false).await {
            ctx.error = Some("client_gone");
            attempt_ended(req, ctx, &up, relay.usage(), relay.completion_text()).await;
            return Err(e);
        }
    };
    attempt_ended(req, ctx, &up, relay.usage(), relay.completion_text()).await;
    match outcome {
        Ok(()) => {
            release(state, up, served.target).await;
            session.write_response_body(None, true).await?;
            super::responses::finish(state, ctx);
        }
        Err(cut) => {
            let blocked = matches!(cut, Cut::Blocked(_));
            if cut != Cut::Incomplete && !blocked {
                // (An incomplete stream's observers heard its end above; a refusing one is done.)
                let _ = observers.end(false);
            }
            let provider = &served.target.provider.name;
            let shutdown = cut == Cut::Shutdown;
            let (kind, message) = cut.event();
            ctx.error = Some(kind);
            if shutdown {
                session.set_keepalive(None);
            } else if !blocked {
                state.metrics.upstream_errors.with_label_values(&[provider, kind]).inc();
            }
            tracing::debug!(provider = %provider, kind, "stream failed: {message}");
            let event =
                super::responses::failed(ctx, kind, &message).unwrap_or_else(|| relay.error_event(kind, &message));
            session.write_response_body(Some(event), true).await?;
        }
    }
    Ok(true)
}

/// One upstream chunk through the translator, with whatever more is already buffered (up to
/// `COALESCE_LIMIT`); an end or error met on the way is kept in `stashed` for the next turn.
fn coalesce(
    relay: &mut Relay,
    up: &mut Upstream,
    first: Bytes,
    stashed: &mut Option<pingora::Result<Option<Bytes>>>,
) -> std::result::Result<Bytes, crate::providers::StreamFault> {
    let mut out = relay.push(first);
    let mut merged: Option<BytesMut> = None;
    while out.is_ok() && merged.as_ref().map_or(0, BytesMut::len) < COALESCE_LIMIT {
        match poll_now(up.session.read_response_body()) {
            Some(Ok(Some(more))) => match relay.push(more) {
                Ok(b) => {
                    let m = merged.get_or_insert_with(|| {
                        let mut m = BytesMut::new();
                        if let Ok(first) = &out {
                            m.extend_from_slice(first);
                        }
                        m
                    });
                    m.extend_from_slice(&b);
                }
                Err(f) => out = Err(f),
            },
            Some(end_or_error) => {
                *stashed = Some(end_or_error);
                break;
            }
            None => break,
        }
    }
    match (out, merged) {
        (Ok(_), Some(m)) => Ok(m.freeze()),
        (other, _) => other,
    }
}

/// The served attempt is over, however it ended: its time, and the usage it counted (the
/// gateway's count when the provider reported none).
async fn attempt_ended(
    req: &LlmRequest,
    ctx: &mut RequestCtx,
    up: &Upstream,
    usage: Option<Usage>,
    text: Option<&str>,
) {
    ctx.upstream_time += up.started.elapsed();
    served_attempt_ended(ctx, up.started);
    ctx.usage = usage;
    fill_missing_usage(req, ctx, text).await;
}

/// Polls a future once: its output if it is ready now, `None` (and the future dropped) if not.
/// Used only on reads that are cancellation-safe (a pending read has consumed nothing).
fn poll_now<F: std::future::Future>(fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

/// Finishes the client's response header (begun by `begin_head`) from the upstream's.
fn client_header(
    mut h: Head,
    up: &ResponseHeader,
    status: u16,
    target: &Target,
    content_type: Option<&'static str>,
    stream: bool,
    h2: bool,
) -> Result<Head> {
    h.set_status(status)?;
    match content_type {
        Some(ct) => h.insert(CONTENT_TYPE, HeaderValue::from_static(ct)),
        None => {
            if let Some(v) = up.headers.get(CONTENT_TYPE) {
                h.insert(CONTENT_TYPE, v.clone());
            }
        }
    }
    for name in [RETRY_AFTER, names::RETRY_AFTER_MS, names::ANTHROPIC_REQUESTS_RESET] {
        if let Some(v) = up.headers.get(&name) {
            let v = v.clone();
            h.insert(name, v);
        }
    }
    h.insert_str(names::PROVIDER, &target.provider.name)?;
    h.insert_str(names::MODEL, &target.model)?;
    if stream {
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        if !h2 {
            h.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        }
    }
    Ok(h)
}

/// The served attempt's span lasts until its body ended.
fn served_attempt_ended(ctx: &mut RequestCtx, started: Instant) {
    if let Some(a) = ctx.attempts.last_mut() {
        a.elapsed = started.elapsed();
    }
}

/// Why `read_whole` has no body.
pub(super) enum ReadWhole {
    Interrupted(Interrupt),
    Failed(ApiError),
}

/// Reads a whole upstream body (bounded), abandoning it if the client leaves or the gateway must
/// stop.
pub(super) async fn read_whole(
    session: &mut Session,
    up: &mut Upstream,
    stop: &mut Stop<'_>,
) -> std::result::Result<Bytes, ReadWhole> {
    let mut buf = BytesMut::new();
    let deadline = tokio::time::Instant::from_std(up.deadline);
    loop {
        let chunk = tokio::select! {
            r = up.session.read_response_body() => r,
            why = interrupted(session, stop) => return Err(ReadWhole::Interrupted(why)),
            // A whole answer must be in by the attempt's first-byte deadline, however it trickles.
            () = tokio::time::sleep_until(deadline) => {
                return Err(ReadWhole::Failed(
                    Failure::Timeout("the whole answer did not arrive within timeouts.first_byte".into()).body_error(),
                ))
            }
        };
        match chunk {
            Ok(Some(c)) if buf.len() + c.len() <= MAX_RESPONSE_BYTES => buf.extend_from_slice(&c),
            Ok(Some(_)) => {
                return Err(ReadWhole::Failed(ApiError::UpstreamProtocol(
                    "response too large".into(),
                )))
            }
            Ok(None) => return Ok(buf.freeze()),
            Err(e) => return Err(ReadWhole::Failed(classify(&e).body_error())),
        }
    }
}

/// The grace period of a shutdown ran out before the provider answered: 503, and the request is
/// recorded with the error `shutdown`.
pub(super) async fn shut_down(session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
    session.set_keepalive(None);
    let answered = respond::error(session, ctx, &ApiError::ShuttingDown).await;
    ctx.error = Some("shutdown");
    answered
}

/// The client closed its connection: nothing more can be written. A downstream-sourced error
/// makes Pingora skip its own error response, and `logging` records the request as 499.
pub(super) fn client_gone(ctx: &mut RequestCtx, when: &'static str) -> Result<bool> {
    ctx.error = Some("client_gone");
    Err(Error::explain(ErrorType::ConnectionClosed, format!("client went away {when}")).into_down())
}

/// Returns a fully read upstream connection to the pool of the peer it was taken for.
async fn release(state: &AppState, up: Box<Upstream>, target: &Target) {
    let mut up = *up;
    if let Some(p) = target.provider.peer.as_ref() {
        if up.session.response_done() {
            let peer = super::upstream::peer_of(p);
            let idle = peer.options.idle_timeout;
            state.connector.release_http_session(up.session, &*peer, idle).await;
        }
    }
}
