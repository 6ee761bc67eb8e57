//! The guardrail stage of the request path (`guard::request` decides; this runs it): the
//! external analyzer's call when the route asks for one, the redacted body swapped in, the
//! audit noted for the record, the metrics and the trace, and the vault kept for the answer's
//! restoration (`answer::observers`).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use pingora::http::RequestHeader;

use super::ctx::RequestCtx;
use super::AppState;
use crate::api::openai::LlmRequest;
use crate::api::ApiError;
use crate::config::snapshot::{GuardSettings, Peer};
use crate::guard::detect::Allowance;
use crate::guard::entity::Catalog;
use crate::guard::policy::{InjectionMode, OnFailure, Policy};
use crate::guard::presidio::{Batch, Settings};
use crate::guard::request::{self, Audit, Checked, External};
use crate::guard::{redact, Guard};

/// The most an analyzer's answer may hold.
const MAX_ANALYZER_ANSWER: usize = 4 * 1024 * 1024;

/// Bodies above this size are checked on a blocking thread, not on the proxy's worker: the check
/// costs ~1-4 µs per KB (README, Guardrails, Cost), so a large prompt would hold the worker's
/// other requests for milliseconds. Below it, the hand-off would cost more than the check.
const INLINE_LIMIT: usize = 32 * 1024;

/// What a check on the proxy's worker may spend on one text: a tenth of the full allowance
/// (`Allowance::DEFAULT`). Real text of up to `INLINE_LIMIT` bytes stays inside it (the densest
/// measured, a table of card-like numbers, takes ~2.6 ms at 32 KB against 3.7); text that does
/// not (crafted to cost the detector time in the square of its length) is checked again on a
/// blocking thread with the full allowance, so it holds the worker's other requests for 4 ms at
/// most instead of up to 37.
const INLINE_ALLOWANCE: Allowance = Allowance::calibrated(Allowance {
    base: Duration::from_micros(500),
    per_kb: Duration::from_micros(100),
});

/// The check on a blocking thread, with the full allowance.
async fn off_worker(
    guard: &Arc<Guard>,
    policy: &Arc<Policy>,
    req: &LlmRequest,
    external: Option<External>,
) -> Result<Checked, ApiError> {
    let (guard, policy, body, client) = (Arc::clone(guard), Arc::clone(policy), req.body.clone(), req.client);
    let check = move || request::check(&guard, &policy, client, &body, external.as_ref(), Allowance::DEFAULT);
    match tokio::task::spawn_blocking(check).await {
        Ok(checked) => Ok(checked),
        // As a panic of the check on this thread would: it goes on unwinding.
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only at shutdown, when the blocking pool stops.
        Err(_) => Err(ApiError::ShuttingDown),
    }
}

/// Runs the route's request-side guardrails. Returns the request to send (redacted when the
/// policy says so), or the error to answer with.
pub(super) async fn request(
    state: &AppState,
    ctx: &mut RequestCtx,
    req: LlmRequest,
    settings: Option<&GuardSettings>,
) -> Result<LlmRequest, ApiError> {
    let (Some(policy), Some(settings)) = (ctx.guard_policy.clone(), settings) else {
        return Ok(req);
    };
    if !policy.checks_input() {
        return Ok(req);
    }
    let guard = &settings.guard;
    let external = match (&guard.presidio, &settings.presidio_peer) {
        (Some(p), Some(peer)) if policy.presidio => analyzer(state, guard, p, peer, &req.body).await?,
        _ => None,
    };
    let started = std::time::Instant::now();
    let checked = if req.body.len() > INLINE_LIMIT {
        off_worker(guard, &policy, &req, external).await?
    } else {
        match request::check(
            guard,
            &policy,
            req.client,
            &req.body,
            external.as_ref(),
            INLINE_ALLOWANCE,
        ) {
            // Crafted text, or text far denser than usual: the full allowance, off the worker.
            Checked::Unchecked { .. } => off_worker(guard, &policy, &req, external).await?,
            checked => checked,
        }
    };
    state.metrics.guardrail_check.observe(started.elapsed().as_secs_f64());
    match checked {
        Checked::Block { kinds, audit } => {
            note(state, ctx, guard.catalog(), &policy, &audit, true);
            let catalog = guard.catalog();
            let message = if kinds.is_empty() {
                let family = audit.injection.and_then(|v| v.family).map_or("unknown", |f| f.as_str());
                format!(
                    "The request was blocked by the gateway's guardrails: it looks like prompt injection ({family})."
                )
            } else {
                let names: Vec<&str> = kinds.iter().map(|k| catalog.name(*k)).collect();
                format!(
                    "The request was blocked by the gateway's guardrails: it contains {} (values are not shown).",
                    names.join(", ")
                )
            };
            Err(ApiError::ContentBlocked(message))
        }
        Checked::Unchecked { audit } => {
            note(state, ctx, guard.catalog(), &policy, &audit, true);
            ctx.guardrails.action = "block".into();
            state.metrics.guardrails.add("unchecked", "block", 1);
            Err(crate::guard::unchecked("request"))
        }
        Checked::Pass {
            body,
            shifts,
            vault,
            audit,
        } => {
            note(state, ctx, guard.catalog(), &policy, &audit, false);
            ctx.guard_vault = vault.map(Arc::new);
            match body {
                None => Ok(req),
                Some(body) => {
                    // `model` is never rewritten: its value only moves (no second parse).
                    let span = &req.model_span;
                    let start = redact::shifted(span.start, &shifts);
                    Ok(req.with_body(Bytes::from(body), start..start + span.len()))
                }
            }
        }
    }
}

/// The audit of the request side: into the record (`ctx.guardrails`) and the metrics.
fn note(state: &AppState, ctx: &mut RequestCtx, catalog: &Catalog, policy: &Policy, audit: &Audit, blocked: bool) {
    let g = &mut ctx.guardrails;
    g.redactions += audit.replaced;
    g.blocked |= blocked;
    g.entities = catalog.counted(audit.found.iter().map(|(k, n, _)| (*k, *n)));
    if let Some(a) = audit.action() {
        g.action = a.to_string();
    }
    for (k, n, a) in &audit.found {
        state.metrics.guardrails.add(catalog.name(*k), a.as_str(), *n);
    }
    if let Some(v) = audit.injection {
        g.injection_score = Some((v.score * 1000.0).round() / 1000.0);
        g.injection_family = v.family.map(|f| f.as_str().to_string());
        if audit.injection_hit {
            g.injections = 1;
            state.metrics.guardrails.add("injection", policy.injection.as_str(), 1);
            if policy.injection == InjectionMode::Block {
                g.action = "block".into();
            }
        }
    }
}

/// The audit of the answer side (the output checks), into the record and the metrics: once,
/// when the request is recorded.
pub(super) fn note_output(state: &AppState, ctx: &mut RequestCtx) {
    let Some(shared) = ctx.guard_output.take() else {
        return;
    };
    let Some(settings) = ctx.live.as_ref().and_then(|l| l.snapshot.guard.as_ref()) else {
        return;
    };
    let catalog = settings.guard.catalog();
    let audit = std::mem::take(&mut *shared.lock().unwrap_or_else(|p| p.into_inner()));
    let action = ctx.guard_policy.as_ref().map_or("log", |p| p.output.as_str());
    if audit.unchecked {
        state
            .metrics
            .guardrails
            .add("unchecked", &format!("output_{action}"), 1);
    }
    if audit.found.is_empty() && !audit.unchecked {
        return;
    }
    let g = &mut ctx.guardrails;
    g.redactions += audit.masked;
    g.blocked |= audit.blocked;
    let mut found = audit.found;
    found.sort_by_key(|(k, _)| *k);
    g.output_entities = catalog.counted(found.iter().copied());
    if g.action.is_empty() || (audit.blocked && g.action != "block") {
        g.action = format!("output_{action}");
    }
    let label = format!("output_{action}");
    for (k, n) in &found {
        state.metrics.guardrails.add(catalog.name(*k), &label, *n);
    }
}

/// The analyzer's findings for the body's texts; on failure, none (`on_failure: open`) or the
/// request's refusal (`closed`).
async fn analyzer(
    state: &AppState,
    guard: &Guard,
    settings: &Settings,
    peer: &Peer,
    body: &[u8],
) -> Result<Option<External>, ApiError> {
    let mut batch = Batch::default();
    redact::for_each_string(body, &mut |text| batch.push(text));
    if batch.is_blank() {
        return Ok(None);
    }
    let answer = tokio::time::timeout(settings.timeout, call(state, settings, peer, batch.body(settings))).await;
    let result = match answer {
        Ok(Ok(bytes)) => batch.findings(&bytes, settings, guard.catalog()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("no answer within {} ms", settings.timeout.as_millis())),
    };
    match result {
        Ok(found) => Ok(Some(found)),
        Err(why) => {
            state.metrics.guardrails.add("analyzer", "failed", 1);
            match settings.on_failure {
                OnFailure::Open => {
                    tracing::warn!(why = %why, "guardrails: the PII analyzer failed; going on without it (on_failure: open)");
                    Ok(None)
                }
                OnFailure::Closed => Err(ApiError::GuardrailUnavailable(why)),
            }
        }
    }
}

/// One `POST /analyze` on a pooled connection.
async fn call(state: &AppState, settings: &Settings, peer: &Peer, body: Vec<u8>) -> Result<Bytes, String> {
    let peer = super::upstream::peer_of(peer);
    let failed = |e: Box<pingora::Error>| e.to_string();
    let (mut up, _) = state.connector.get_http_session(&*peer).await.map_err(failed)?;
    let mut header = RequestHeader::build("POST", settings.path.as_bytes(), Some(4)).map_err(failed)?;
    header.insert_header(HOST, settings.host.as_str()).map_err(failed)?;
    header.insert_header(CONTENT_TYPE, "application/json").map_err(failed)?;
    header.insert_header(CONTENT_LENGTH, body.len()).map_err(failed)?;
    up.write_request_header(Box::new(header)).await.map_err(failed)?;
    up.write_request_body(Bytes::from(body), true).await.map_err(failed)?;
    up.finish_request_body().await.map_err(failed)?;
    up.read_response_header().await.map_err(failed)?;
    let status = up.response_header().map_or(0, |h| h.status.as_u16());
    let mut answer = BytesMut::new();
    while let Some(chunk) = up.read_response_body().await.map_err(failed)? {
        if answer.len() + chunk.len() > MAX_ANALYZER_ANSWER {
            return Err("the analyzer's answer is too large".into());
        }
        answer.extend_from_slice(&chunk);
    }
    if !(200..300).contains(&status) {
        return Err(format!("the analyzer answered {status}"));
    }
    if up.response_done() {
        let idle = peer.options.idle_timeout;
        state.connector.release_http_session(up, &*peer, idle).await;
    }
    Ok(answer.freeze())
}
