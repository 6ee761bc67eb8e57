//! End-of-request accounting, run from `logging` for every request (success, error, cut stream,
//! client gone): metrics now; the usage record and spend ledger build on the same data.

use pingora::prelude::*;
use pingora::proxy::Session;

use super::ctx::RequestCtx;
use crate::telemetry::metrics::{status_label, Metrics};

pub fn finish(metrics: &Metrics, session: &Session, e: Option<&Error>, ctx: &mut RequestCtx) {
    if ctx.inflight {
        metrics.inflight.dec();
        ctx.inflight = false;
    }
    // A client that left before any header: record it as 499 (nginx's "client closed request").
    let status = match (ctx.status, session.response_written()) {
        (0, Some(h)) => h.status.as_u16(),
        (0, None) => 499,
        (s, _) => s,
    };
    let model = ctx.model.as_deref().unwrap_or("");
    let provider = ctx.served_by.as_ref().map_or("", |t| t.provider.name.as_str());
    metrics
        .requests
        .with_label_values(&[model, provider, &status_label(status)])
        .inc();
    let elapsed = ctx.started.elapsed();
    if ctx.endpoint.is_some() {
        metrics
            .duration
            .with_label_values(&[model, provider])
            .observe(elapsed.as_secs_f64());
    }
    if let Some(u) = ctx.usage {
        metrics
            .tokens
            .with_label_values(&[model, provider, "prompt"])
            .inc_by(u.prompt_tokens);
        metrics
            .tokens
            .with_label_values(&[model, provider, "completion"])
            .inc_by(u.completion_tokens);
    }
    tracing::debug!(
        status,
        model,
        provider,
        stream = ctx.stream,
        attempts = %ctx.attempts_summary(),
        error = ctx.error.unwrap_or(""),
        pingora_error = e.map(|e| e.etype().as_str()).unwrap_or(""),
        elapsed_us = elapsed.as_micros() as u64,
        upstream_us = ctx.upstream_time.as_micros() as u64,
        "request"
    );
}
