//! End-of-request accounting, run from `logging` for every request (served, failed, cut, client
//! gone): the usage record (priced), metrics, and the hand-over to the access log, the spend
//! ledger and the trace exporter. Nothing here waits: the sinks are bounded queues.

use std::sync::OnceLock;
use std::time::Instant;

use pingora::prelude::*;
use pingora::proxy::Session;

use super::ctx::{AttemptOutcome, RequestCtx};
use super::AppState;
use crate::api::Endpoint;
use crate::telemetry::metrics::{status_label, Metrics};
use crate::telemetry::trace::{AttrValue, Clock, Span, SpanKind};
use crate::usage::UsageRecord;

/// Wall-clock time of `Instant`s without a syscall per request: one anchor per process.
fn clock() -> &'static Clock {
    static CLOCK: OnceLock<Clock> = OnceLock::new();
    CLOCK.get_or_init(Clock::now)
}

pub fn finish(state: &AppState, session: &Session, e: Option<&Error>, ctx: &mut RequestCtx) {
    let metrics = &state.metrics;
    // A client that left before any header: record it as 499 (nginx's "client closed request").
    let status = match (ctx.status, session.response_written()) {
        (0, Some(h)) => h.status.as_u16(),
        (0, None) => 499,
        (s, _) => s,
    };
    if status == 499 && ctx.error.is_none() {
        ctx.error = Some("client_gone");
    }
    if ctx.error == Some("request_timeout") {
        // The body deadline closed the connection (see `body::read`).
        metrics
            .connections_closed
            .with_label_values(&["data", "body_timeout"])
            .inc();
    }
    super::guard::note_output(state, ctx);
    let now = Instant::now();
    let rec = build(ctx, status, now);
    // Replace the reservations with what was used (nothing, when no usage came back).
    let used_tokens = rec.prompt_tokens + rec.completion_tokens;
    let wall = crate::time::unix_ms();
    if let Some(a) = ctx.admission.take() {
        a.settle(used_tokens, rec.cost_nanos, wall);
    }
    if let Some(a) = ctx.provider_admission.take() {
        a.settle(used_tokens, rec.cost_nanos, wall);
    }
    observe(metrics, ctx, &rec);
    tracing::debug!(
        request_id = %rec.request_id,
        status,
        model = rec.model.as_deref().unwrap_or(""),
        provider = rec.provider.as_deref().unwrap_or(""),
        attempts = %rec.attempts,
        error = rec.error.as_deref().unwrap_or(""),
        pingora_error = e.map(|e| e.etype().as_str()).unwrap_or(""),
        latency_us = rec.latency_us,
        overhead_us = rec.overhead_us,
        "request"
    );
    let sinks = &state.sinks;
    if let (true, Some(tracer)) = (ctx.trace.sampled, &sinks.tracer) {
        tracer.export(spans(ctx, &rec, now));
    }
    match (&sinks.access_log, &sinks.ledger) {
        (Some(log), Some(ledger)) => {
            // One record for both: the ledger's spooler takes it over once the log is done.
            let rec = std::sync::Arc::new(rec);
            log.submit_shared(std::sync::Arc::clone(&rec));
            ledger.submit_shared(rec);
        }
        (Some(log), None) => log.submit(rec),
        (None, Some(ledger)) => ledger.submit(rec),
        (None, None) => {}
    }
    // Last: the shutdown waits for this count to reach zero before it flushes the sinks, so a
    // request stops counting only once its record is in them.
    if ctx.inflight {
        metrics.inflight.dec();
        ctx.inflight = false;
    }
}

/// The usage record of a finished request.
pub fn build(ctx: &RequestCtx, status: u16, now: Instant) -> UsageRecord {
    let usage = ctx.usage.unwrap_or_default();
    let served = ctx.served_by.as_deref();
    let price = served.and_then(|t| t.price.as_ref());
    let cost_nanos = match (price, ctx.usage.is_some()) {
        (Some(p), true) => p.cost_nanos(&usage),
        _ => 0,
    };
    let total = now.saturating_duration_since(ctx.started);
    UsageRecord {
        request_id: ctx.request_id.clone(),
        client_request_id: ctx.client_request_id.clone(),
        trace_id: ctx.trace.trace_id.to_string(),
        ts_ms: (clock().unix_nanos(ctx.started) / 1_000_000) as i64,
        endpoint: match ctx.passthrough {
            Some(_) => "passthrough",
            None => ctx.endpoint.map_or("", Endpoint::as_str),
        }
        .to_string(),
        key_id: ctx.who.key_id.clone(),
        team: ctx.who.team.clone(),
        user: ctx.who.user.clone(),
        client_ip: ctx.who.ip.clone(),
        feature: ctx.who.feature.clone(),
        tier: ctx.who.tier.clone(),
        route: ctx.route.clone(),
        model: ctx.model.clone(),
        provider: served.map(|t| t.provider.name.clone()),
        served_model: served.map(|t| t.model.clone()),
        attempts: ctx.attempts_summary(),
        status,
        error: ctx.error.map(str::to_string),
        stream: ctx.stream,
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        cached_tokens: usage.cached_tokens(),
        cache_write_tokens: usage.prompt_tokens_details.map_or(0, |d| d.cache_write_tokens),
        reasoning_tokens: usage.reasoning_tokens(),
        tokens_estimated: ctx.tokens_estimated,
        cost_nanos,
        // Unpriced means "served, used tokens, and the table had no price": never a silent 0.
        priced: !(served.is_some() && price.is_none() && ctx.usage.is_some()),
        latency_us: total.as_micros() as u64,
        ttft_us: ctx
            .first_byte
            .map(|t| t.saturating_duration_since(ctx.started).as_micros() as u64),
        overhead_us: total.saturating_sub(ctx.upstream_time + ctx.backoff_time).as_micros() as u64,
        cache: ctx.cache.to_string(),
        cache_saved_nanos: ctx.cache_saved_nanos,
        guardrails: ctx.guardrails.clone(),
        ab_arm: ctx.ab_arm.map(str::to_string),
    }
}

fn observe(metrics: &Metrics, ctx: &RequestCtx, rec: &UsageRecord) {
    let model = rec.model.as_deref().unwrap_or("");
    let provider = rec.provider.as_deref().unwrap_or("");
    metrics
        .requests
        .with_label_values(&[model, provider, &status_label(rec.status)])
        .inc();
    if ctx.endpoint.is_none() && ctx.passthrough.is_none() {
        return;
    }
    if ctx.cache != "none" {
        metrics.cache.with_label_values(&[ctx.cache]).inc();
    }
    metrics
        .duration
        .with_label_values(&[model, provider])
        .observe(rec.latency_us as f64 / 1e6);
    metrics.overhead.observe(rec.overhead_us as f64 / 1e6);
    if let Some(t) = rec.ttft_us {
        metrics
            .ttft
            .with_label_values(&[model, provider])
            .observe(t as f64 / 1e6);
    }
    if ctx.usage.is_some() {
        let uncached = rec
            .prompt_tokens
            .saturating_sub(rec.cached_tokens + rec.cache_write_tokens);
        for (kind, n) in [
            ("prompt", rec.prompt_tokens),
            ("completion", rec.completion_tokens),
            ("cached", rec.cached_tokens),
            ("cache_write", rec.cache_write_tokens),
            ("reasoning", rec.reasoning_tokens),
            ("uncached_prompt", uncached),
        ] {
            if n > 0 {
                metrics.tokens.with_label_values(&[model, provider, kind]).inc_by(n);
            }
        }
        if rec.tokens_estimated {
            metrics.estimated_usage.with_label_values(&[model, provider]).inc();
        }
        if !rec.priced {
            metrics.unpriced.with_label_values(&[model, provider]).inc();
        }
    }
    if rec.cost_nanos > 0 {
        // Teams are a label only when they come from a virtual key (a bounded set), never from
        // a request header.
        let team = match (&ctx.who.key_id, &rec.team) {
            (Some(_), Some(t)) => t.as_str(),
            _ => "",
        };
        metrics
            .cost
            .with_label_values(&[model, provider, team])
            .inc_by(rec.cost_usd());
    }
}

/// The request's span and one child per upstream call, with `gen_ai.*` attributes.
fn spans(ctx: &RequestCtx, rec: &UsageRecord, now: Instant) -> Vec<Span> {
    let c = clock();
    let t = &ctx.trace;
    let operation = match ctx.endpoint {
        Some(Endpoint::Embeddings) => "embeddings",
        Some(Endpoint::Completions) => "text_completion",
        _ => "chat",
    };
    let model = rec.model.as_deref().unwrap_or("");
    let mut attributes: Vec<(&'static str, AttrValue)> = vec![
        ("gen_ai.operation.name", operation.into()),
        ("gen_ai.request.model", model.into()),
        ("http.response.status_code", i64::from(rec.status).into()),
        ("tollgate.request_id", rec.request_id.as_str().into()),
        ("tollgate.attempts", rec.attempts.as_str().into()),
        ("tollgate.overhead_us", rec.overhead_us.into()),
        ("tollgate.cost_usd", rec.cost_usd().into()),
        ("tollgate.stream", rec.stream.into()),
    ];
    if let Some(served) = ctx.served_by.as_deref() {
        attributes.push(("gen_ai.provider.name", served.provider.kind.as_str().into()));
        attributes.push(("gen_ai.response.model", served.model.as_str().into()));
        attributes.push(("tollgate.provider", served.provider.name.as_str().into()));
    }
    if ctx.usage.is_some() {
        attributes.push(("gen_ai.usage.input_tokens", rec.prompt_tokens.into()));
        attributes.push(("gen_ai.usage.output_tokens", rec.completion_tokens.into()));
    }
    if let Some(r) = &rec.route {
        attributes.push(("tollgate.route", r.as_str().into()));
    }
    if let Some(ttft) = rec.ttft_us {
        attributes.push(("tollgate.ttft_us", ttft.into()));
    }
    // The guardrails' audit: kinds, counts, action and injection verdict, never a value.
    let g = &rec.guardrails;
    for (name, value) in [
        ("tollgate.guardrails.action", &g.action),
        ("tollgate.guardrails.entities", &g.entities),
        ("tollgate.guardrails.output_entities", &g.output_entities),
    ] {
        if !value.is_empty() {
            attributes.push((name, value.as_str().into()));
        }
    }
    if let Some(family) = &g.injection_family {
        attributes.push(("tollgate.guardrails.injection_family", family.as_str().into()));
    }
    if let Some(score) = g.injection_score {
        attributes.push(("tollgate.guardrails.injection_score", f64::from(score).into()));
    }
    let error = (rec.status >= 500 || rec.error.is_some()).then(|| rec.error.clone().unwrap_or_default());
    let mut out = Vec::with_capacity(2 + ctx.attempts.len());
    let first_call = ctx.attempts.iter().find_map(|a| a.started);
    out.push(Span {
        trace_id: t.trace_id,
        span_id: t.span_id,
        parent: t.parent,
        name: format!("{operation} {model}"),
        kind: SpanKind::Server,
        start_unix_nanos: c.unix_nanos(ctx.started),
        end_unix_nanos: c.unix_nanos(now),
        attributes,
        error,
    });
    // Policy: everything before the first provider call (body, routing, limits, plan).
    if let Some(first) = first_call {
        out.push(Span {
            trace_id: t.trace_id,
            span_id: crate::telemetry::trace::SpanId::random(),
            parent: Some(t.span_id),
            name: "policy".into(),
            kind: SpanKind::Internal,
            start_unix_nanos: c.unix_nanos(ctx.started),
            end_unix_nanos: c.unix_nanos(first),
            attributes: vec![("tollgate.route", rec.route.as_deref().unwrap_or("").into())],
            error: None,
        });
    }
    for a in &ctx.attempts {
        let (Some(started), Some(span)) = (a.started, a.span) else {
            continue;
        };
        let (status, error) = match &a.outcome {
            AttemptOutcome::Status(s) => (i64::from(*s), (*s >= 400).then(|| format!("http {s}"))),
            AttemptOutcome::Failed(kind) => (0, Some((*kind).to_string())),
        };
        let mut attrs: Vec<(&'static str, AttrValue)> = vec![
            ("gen_ai.operation.name", operation.into()),
            ("gen_ai.provider.name", a.target.provider.kind.as_str().into()),
            ("gen_ai.request.model", a.target.model.as_str().into()),
            ("tollgate.provider", a.target.provider.name.as_str().into()),
        ];
        if status > 0 {
            attrs.push(("http.response.status_code", status.into()));
        }
        if let Some(kind) = &error {
            attrs.push(("error.type", kind.as_str().into()));
        }
        out.push(Span {
            trace_id: t.trace_id,
            span_id: span,
            parent: Some(t.span_id),
            name: format!("{operation} {}", a.target.model),
            kind: SpanKind::Client,
            start_unix_nanos: c.unix_nanos(started),
            end_unix_nanos: c.unix_nanos(started + a.elapsed),
            attributes: attrs,
            error,
        });
    }
    out
}
