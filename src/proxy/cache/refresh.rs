//! Stale-while-revalidate: the background call that refreshes a stale answer while the request
//! that found it is served the stale one.
//!
//! At most one refresh per key runs at a time: only the request that leads the key's flight
//! (`Flights::try_lead`, never waiting) starts one. The refresh asks the plan's first target for
//! a whole (non-streamed) answer to the same request — the redacted one when the route redacts —
//! and stores it like a miss's answer. It is a provider call made for a tenant, so it is accounted
//! as one: it settles the limits' reservation of the request that triggered it (that request,
//! served from the cache, costs nothing itself) and leaves its own usage record, `cache:
//! refresh`, attributed to the same key, team and route. A refresh that fails changes nothing:
//! the stale answer stays servable until its window ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::super::ctx::RequestCtx;
use super::super::upstream::{peer_of, request_header};
use super::super::AppState;
use crate::api::chat::ChatResponse;
use crate::api::openai::LlmRequest;
use crate::cache::Pending;
use crate::config::Target;
use crate::limits::gate::Ticket;
use crate::usage::UsageRecord;

/// The most a refreshed answer may hold.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Starts the refresh of `pending`'s key with `target`.
pub(in crate::proxy) fn spawn(
    state: &Arc<AppState>,
    ctx: &mut RequestCtx,
    req: &LlmRequest,
    target: Arc<Target>,
    pending: Pending,
) {
    let Some(whole) = whole_request(req) else { return };
    let budget = ctx
        .live
        .as_ref()
        .map_or(Duration::from_secs(300), |l| l.snapshot.routing.budget);
    let base = UsageRecord {
        request_id: crate::usage::record::new_request_id(),
        trace_id: ctx.trace.trace_id.to_string(),
        ts_ms: i64::try_from(crate::time::unix_ms()).unwrap_or(0),
        endpoint: ctx.endpoint.map_or("", crate::api::Endpoint::as_str).to_string(),
        key_id: ctx.who.key_id.clone(),
        team: ctx.who.team.clone(),
        user: ctx.who.user.clone(),
        feature: ctx.who.feature.clone(),
        tier: ctx.who.tier.clone(),
        route: ctx.route.clone(),
        model: ctx.model.clone(),
        provider: Some(target.provider.name.clone()),
        served_model: Some(target.model.clone()),
        cache: "refresh".into(),
        priced: true,
        ..UsageRecord::default()
    };
    let admission = ctx.admission.take();
    let state = Arc::clone(state);
    tokio::spawn(async move {
        let started = Instant::now();
        let outcome = tokio::time::timeout(budget, call(&state, &target, &whole)).await;
        let (status, answer, error) = match outcome {
            Ok(Ok((status, resp))) => (status, resp, None),
            Ok(Err(e)) => (0, None, Some(e)),
            Err(_) => (0, None, Some("timeout".to_string())),
        };
        let usage = answer.as_ref().and_then(|r| r.usage);
        let price = target.price;
        let cost = match (&price, &usage) {
            (Some(p), Some(u)) => p.cost_nanos(u),
            _ => 0,
        };
        if let Some(e) = &error {
            tracing::debug!(provider = %target.provider.name, error = %e, "cache refresh failed");
        }
        match answer {
            Some(resp) => state.cache.store_answer(pending, &resp, price),
            // Dropping `pending` ends the flight: the next stale hit may try again.
            None => drop(pending),
        }
        let u = usage.unwrap_or_default();
        let rec = UsageRecord {
            attempts: format!(
                "{}:{}",
                target.provider.name,
                if status > 0 { status.to_string() } else { "error".into() }
            ),
            status,
            error: error.map(|_| "refresh_failed".to_string()),
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            cached_tokens: u.cached_tokens(),
            reasoning_tokens: u.reasoning_tokens(),
            cost_nanos: cost,
            priced: !(price.is_none() && usage.is_some()),
            latency_us: started.elapsed().as_micros() as u64,
            ..base
        };
        settle(admission, &rec);
        let model = rec.model.clone().unwrap_or_default();
        state
            .metrics
            .requests
            .with_label_values(&[
                model.as_str(),
                target.provider.name.as_str(),
                &crate::telemetry::metrics::status_label(status),
            ])
            .inc();
        state.metrics.cache.with_label_values(&["refresh"]).inc();
        if cost > 0 {
            state
                .metrics
                .cost
                .with_label_values(&[
                    model.as_str(),
                    target.provider.name.as_str(),
                    rec.team.as_deref().unwrap_or(""),
                ])
                .inc_by(rec.cost_usd());
        }
        if let Some(log) = &state.sinks.access_log {
            log.submit(rec.clone());
        }
        if let Some(ledger) = &state.sinks.ledger {
            ledger.submit(rec);
        }
    });
}

fn settle(admission: Option<Ticket>, rec: &UsageRecord) {
    if let Some(a) = admission {
        a.settle(
            rec.prompt_tokens + rec.completion_tokens,
            rec.cost_nanos,
            crate::time::unix_ms(),
        );
    }
}

/// The request asking for a whole answer (`stream: false`, no `stream_options`).
fn whole_request(req: &LlmRequest) -> Option<LlmRequest> {
    if !req.stream {
        return Some(req.clone());
    }
    let mut v: serde_json::Value = serde_json::from_slice(&req.body).ok()?;
    let top = v.as_object_mut()?;
    top.insert("stream".into(), serde_json::Value::Bool(false));
    top.remove("stream_options");
    let body = Bytes::from(serde_json::to_vec(&v).ok()?);
    let mut whole = LlmRequest::parse(req.endpoint, body).ok()?;
    whole.forward.clone_from(&req.forward);
    Some(whole)
}

/// One call to `target`: its status and, for a success it could read, the canonical answer.
async fn call(state: &AppState, target: &Target, req: &LlmRequest) -> Result<(u16, Option<ChatResponse>), String> {
    let adapter = target.provider.kind.adapter();
    let rendered = adapter
        .render(req, &target.render_target())
        .map_err(|e| e.to_string())?;
    let peer = peer_of(target.provider.peer.as_ref().ok_or("the provider is unavailable")?);
    let header = request_header(target, &rendered, false, None).map_err(|e| e.to_string())?;
    let (mut up, _) = state
        .connector
        .get_http_session(&*peer)
        .await
        .map_err(|e| e.to_string())?;
    let t = target.provider.timeouts;
    up.set_write_timeout(Some(t.first_byte));
    up.set_read_timeout(Some(t.first_byte));
    up.write_request_header(Box::new(header))
        .await
        .map_err(|e| e.to_string())?;
    up.write_request_body(rendered.body.clone(), true)
        .await
        .map_err(|e| e.to_string())?;
    up.finish_request_body().await.map_err(|e| e.to_string())?;
    up.read_response_header().await.map_err(|e| e.to_string())?;
    let status = up.response_header().map_or(0, |h| h.status.as_u16());
    up.set_read_timeout(Some(t.idle));
    let mut raw = BytesMut::new();
    while let Some(chunk) = up.read_response_body().await.map_err(|e| e.to_string())? {
        if raw.len() + chunk.len() > MAX_BODY {
            return Err("answer too large".into());
        }
        raw.extend_from_slice(&chunk);
    }
    if !(200..300).contains(&status) {
        return Ok((status, None));
    }
    let resp = adapter.parse_chat(&raw, &rendered).map_err(|f| f.message())?;
    if up.response_done() {
        if let Some(p) = target.provider.peer.as_ref() {
            let peer = peer_of(p);
            let idle = peer.options.idle_timeout;
            state.connector.release_http_session(up, &*peer, idle).await;
        }
    }
    Ok((status, Some(resp)))
}
