//! The unified LLM endpoints, run inside `request_filter` ("handler mode", see DESIGN.md): read
//! and parse the body, plan the targets, then try them in order through Pingora's `Connector`
//! until one answers, and relay that answer (streamed or whole) to the client in its own format.
//!
//! Fallback to the next target happens only before anything was written to the client: on a
//! connect/TLS error, a first-byte timeout, a reset before the header, or a 429/5xx from a target
//! that is not the last. Once the response header went out, a failure ends the stream with an
//! explicit error event instead of a clean-looking end.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, TRANSFER_ENCODING};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

use super::ctx::{Attempt, AttemptOutcome, RequestCtx};
use super::drain::{interrupted, Interrupt, Stop};
use super::head::{names, Head};
use super::relay::Relay;
use super::retry::{backoff, client_budget, is_context_length_error, retry_after};
use super::tenant::{
    admit_provider, admit_tenant, attribute, completion_text_of, fill_missing_usage, fits_window, prompt_need,
    refine_reservation, rejection_error, wall_ms,
};
use super::upstream::{self, AttemptError, Upstream};
use super::{body, respond, AppState};
use crate::api::openai::LlmRequest;
use crate::api::{client, ApiError, Endpoint};
use crate::config::Target;
use crate::limits::limiter::{Scope, ScopeKind};
use crate::providers::anthropic::{BETA_HEADER, VERSION_HEADER};
use crate::providers::{Adapter, Rendered, Wire};
use crate::routing::breaker::{now_ms, Admission};
use crate::routing::routes::RouteInput;
use crate::telemetry::trace::SpanId;

/// Completion tokens assumed by the `cost` strategy when the request sets no maximum.
const COST_COMPLETION_GUESS: u64 = 512;

/// A whole (non-streamed) response body larger than this is refused rather than buffered.
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

pub async fn handle(state: &AppState, session: &mut Session, ctx: &mut RequestCtx, endpoint: Endpoint) -> Result<bool> {
    ctx.endpoint = Some(endpoint);
    let Some(live) = ctx.live.clone() else {
        return respond::error(session, ctx, &ApiError::UpstreamProtocol("no config loaded".into())).await;
    };
    let snapshot = &live.snapshot;
    // The shutdown's stop signal, for every wait of this request (see `drain`).
    let stopped = std::pin::pin!(state.drain.stopped());
    let mut stop = Stop::new(stopped);
    let (limit, within) = (snapshot.server.max_body_bytes, snapshot.server.body_timeout);
    let body = match body::read(session, limit, within, &mut stop).await {
        Ok(b) => b,
        Err(e) => return respond::error(session, ctx, &e).await,
    };
    let mut req = match LlmRequest::parse(endpoint, body) {
        Ok(r) => r,
        Err(e) => return respond::error(session, ctx, &e).await,
    };
    if req.client == Wire::Anthropic {
        for name in [VERSION_HEADER, BETA_HEADER] {
            if let Some(v) = session.req_header().headers.get(&name) {
                req.forward.push((name, v.clone()));
            }
        }
    }
    ctx.stream = req.stream;
    attribute(session, &req, ctx);
    if ctx.key.as_ref().is_some_and(|k| !k.allows_model(&req.model)) {
        let e = ApiError::ModelNotAllowedForKey {
            model: req.model.clone(),
        };
        return respond::error(session, ctx, &e).await;
    }
    if let Some(alias) = snapshot.model(&req.model) {
        ctx.model = Some(alias.name.clone());
    }
    // The policy table: the first matching route may restrict, rewrite and pin.
    let mut alias_name = req.model.as_str();
    let mut pinned = None;
    let route = {
        let task = session
            .req_header()
            .headers
            .get("x-tollgate-task")
            .and_then(|v| v.to_str().ok());
        let input = RouteInput {
            model: &req.model,
            task,
            metadata: req.metadata.as_ref(),
            key: ctx.who.key_id.as_deref(),
            team: ctx.who.team.as_deref(),
            tier: ctx.who.tier.as_deref(),
        };
        crate::routing::routes::select(&snapshot.routes, &input)
    };
    if let Some(r) = route {
        ctx.route = Some(r.name.clone());
        ctx.cache_policy = r.cache;
        ctx.guard_policy = r.guardrails;
        if r.cache
            .is_some_and(|c| c.mode == crate::routing::routes::CacheMode::Off)
        {
            ctx.cache = "bypass";
        }
        if !r.allows(&req.model) {
            let e = ApiError::ModelNotAllowed {
                model: req.model.clone(),
                route: r.name.clone(),
            };
            return respond::error(session, ctx, &e).await;
        }
        if let Some(m) = &r.rewrite {
            alias_name = m.as_str();
        }
        pinned = r.strategy;
    }
    // A/B split: a share of the alias's traffic goes to another alias (sticky per user).
    if let Some(ab) = snapshot.model(alias_name).and_then(|m| m.ab.as_ref()) {
        let user = session
            .req_header()
            .headers
            .get("x-tollgate-user")
            .and_then(|v| v.to_str().ok())
            .or(req.user.as_deref());
        let sticky = if ab.sticky_user { user } else { None };
        let b = crate::routing::balance::ab_arm(alias_name, sticky, ab.percent);
        ctx.ab_arm = Some(if b { "b" } else { "a" });
        if b {
            alias_name = ab.model.as_str();
        }
    }
    let plan = match crate::routing::plan(&snapshot, alias_name) {
        Ok(p) => p,
        Err(e) => return respond::error(session, ctx, &e).await,
    };
    // The alias's own targets in its strategy's order, then its fallbacks' in configured order.
    let order: Vec<usize> = match snapshot.model(alias_name) {
        Some(m) if m.own > 1 && pinned.unwrap_or(m.strategy) == crate::routing::balance::Strategy::Cost => {
            let need = prompt_need(&req, ctx).await;
            let prompt = need.map_or(0, |n| n.prompt);
            let completion = need.and_then(|n| n.max_output).unwrap_or(COST_COMPLETION_GUESS);
            let costs: Vec<Option<i64>> = plan[..m.own]
                .iter()
                .map(|t| t.price.as_ref().map(|p| p.estimate_nanos(prompt, completion)))
                .collect();
            let mut o = crate::routing::balance::order_by_cost(&costs);
            o.extend(m.own..plan.len());
            o
        }
        Some(m) if m.own > 1 => {
            let stats: Vec<&crate::routing::balance::TargetStats> = plan[..m.own]
                .iter()
                .filter_map(|t| live.target(t).map(|r| &*r.stats))
                .collect();
            let mut o = if stats.len() == m.own {
                crate::routing::balance::order(pinned.unwrap_or(m.strategy), m.own, m.weighted.as_ref(), &stats)
            } else {
                (0..m.own).collect()
            };
            o.extend(m.own..plan.len());
            o
        }
        _ => (0..plan.len()).collect(),
    };

    // Limits of who is asking (key, team, user): checked and reserved before any call.
    let mut demand = match admit_tenant(state, ctx, &req, &snapshot, plan).await {
        Ok(d) => d,
        Err(e) => return respond::error(session, ctx, &e).await,
    };

    let routing = &snapshot.routing;
    let budget = match client_budget(session, routing.budget) {
        Ok(b) => b,
        Err(e) => return respond::error(session, ctx, &e).await,
    };
    let deadline = ctx.started + budget;
    let mut last_error: Option<ApiError> = None;
    let mut budget_spent = false;
    'targets: for (i, target) in order.iter().map(|&i| &plan[i]).enumerate() {
        let last_target = i + 1 == plan.len();
        let runtime = live.target(target);
        // A target whose breaker is open is skipped; after the cooldown one request probes it.
        let probe = match runtime.map(|r| r.breaker.admit(now_ms())) {
            Some(Admission::Rejected) => {
                ctx.attempts.push(Attempt::skipped(target, "breaker_open"));
                last_error.get_or_insert(ApiError::NoProvider {
                    model: req.model.clone(),
                    reason: format!("the circuit breaker of {} is open", target.provider.name),
                });
                continue;
            }
            Some(Admission::Probe) => true,
            Some(Admission::Allowed) | None => false,
        };
        // A target whose context window the prompt (estimated) plus the completion budget exceed
        // is skipped before any call.
        if let Some(window) = target.context_window {
            if !fits_window(&req, ctx, window).await {
                ctx.attempts.push(Attempt::skipped(target, "context_window"));
                last_error.get_or_insert(ApiError::InvalidField {
                    field: "messages",
                    message: "the prompt is longer than the context window of every model that could serve it".into(),
                });
                continue;
            }
        }
        // The provider's own limits (and the tier's share of them): over them, try the next target.
        if let Some(limits) = &target.provider.limits {
            let scope = Scope {
                kind: ScopeKind::Provider,
                id: &target.provider.name,
                limits,
            };
            match admit_provider(state, ctx, &req, &snapshot, plan, scope, &mut demand).await {
                Ok(a) => {
                    if let Some(previous) = ctx.provider_admission.replace(a) {
                        previous.settle(0, 0, wall_ms());
                    }
                }
                Err(crate::limits::gate::Refusal::Limit(r)) => {
                    state.metrics.rate_limited.with_label_values(&[r.reason.label()]).inc();
                    ctx.attempts.push(Attempt::skipped(target, "provider_limit"));
                    last_error.get_or_insert(rejection_error(&r));
                    continue;
                }
                Err(crate::limits::gate::Refusal::Unavailable) => {
                    ctx.attempts.push(Attempt::skipped(target, "limits_unavailable"));
                    ctx.retry_after_ms = Some(1_000);
                    last_error.get_or_insert(ApiError::LimitsUnavailable);
                    continue;
                }
            }
        }
        let adapter = target.provider.kind.adapter();
        let rendered = match adapter.render(&req, target) {
            Ok(r) => r,
            Err(e) => {
                // This target cannot serve the request as asked (e.g. `n > 1` on Anthropic); another may.
                ctx.attempts.push(Attempt::skipped(target, "unsupported"));
                last_error.get_or_insert(e);
                continue;
            }
        };
        let retries = if probe { 0 } else { routing.retries };
        for attempt in 0..=retries {
            let final_try = last_target && attempt == retries;
            let Some(remaining) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else {
                budget_spent = true;
                break 'targets;
            };
            // No single wait may outlive the request's budget.
            let mut timeouts = target.provider.timeouts;
            timeouts.connect = timeouts.connect.min(remaining);
            timeouts.first_byte = timeouts.first_byte.min(remaining);
            let pool = runtime.map(|r| &*r.keys);
            let key = pool.and_then(|p| p.pick(now_ms()));
            let guard = runtime.map(|r| r.stats.start());
            let sent_at = Instant::now();
            // Each call is a child span of this request; the provider sees it as its parent.
            let span = SpanId::random();
            let traceparent = ctx.trace.upstream_header(span);
            let sent = upstream::send(
                &state.connector,
                session,
                target,
                &rendered,
                req.stream,
                timeouts,
                key,
                traceparent.as_deref(),
                &mut stop,
                // When the limits were reserved on a bound of the prompt, the tokenizer counts it
                // once the request is out, while the provider works.
                async {
                    demand = refine_reservation(&req, ctx, &snapshot, plan, demand).await;
                    ctx.head = begin_head(ctx).ok();
                },
            )
            .await;
            // (A no-op once done; a connection that failed before the request went out did not.)
            demand = refine_reservation(&req, ctx, &snapshot, plan, demand).await;
            let wait = match sent {
                Ok(mut up) => {
                    let status = up.session.response_header().map_or(0, |h| h.status.as_u16());
                    ctx.attempts
                        .push(Attempt::sent(target, AttemptOutcome::Status(status), up.started, span));
                    // The breaker tracks the target's health: 5xx and the other retry_on statuses
                    // count against it; a 429 is rate limiting (the key pool's business), not
                    // ill health, so it is not recorded (a probe that got one is let go).
                    let failed = (routing.retry_on.contains(&status) && status != 429) || status >= 500;
                    if let Some(r) = runtime {
                        if status == 429 {
                            if probe {
                                r.breaker.abandon_probe(now_ms());
                            }
                        } else {
                            r.breaker.record(!failed, now_ms());
                        }
                        if !failed && status != 429 {
                            r.stats.observe_ttfb(up.started.elapsed());
                        }
                    }
                    // A 429 or 401 on one key cools it down; with another key in the pool a 401 is
                    // worth retrying.
                    let mut other_key = false;
                    if let (Some(pool), Some(k), 429 | 401) = (pool, key, status) {
                        pool.cool_down(k, now_ms() + routing.key_cooldown.as_millis() as u64);
                        other_key = pool.available(now_ms()) > 0;
                    }
                    // A 400 saying the prompt is too long for this model: a later target may have a
                    // larger context window, so read the (small) body to tell.
                    let mut prefetched = None;
                    if status == 400 && !last_target {
                        match read_whole(session, &mut up, &mut stop).await {
                            Ok(body) if is_context_length_error(&body) => {
                                if let Some(a) = ctx.attempts.last_mut() {
                                    a.outcome = AttemptOutcome::Failed("context_length");
                                }
                                continue 'targets;
                            }
                            Ok(body) => prefetched = Some(body),
                            Err(ReadWhole::ClientGone) => return client_gone(ctx, "while the provider answered"),
                            Err(ReadWhole::Shutdown) => return shut_down(session, ctx).await,
                            Err(ReadWhole::Failed(e)) => {
                                last_error = Some(e);
                                continue 'targets;
                            }
                        }
                    }
                    let retry = routing.retry_on.contains(&status) || (status == 401 && other_key);
                    // A provider that asks to be left alone for longer than the gateway waits
                    // (`max_retry_after`) or than the budget has left is not tried again.
                    let provider_wait = up.session.response_header().and_then(retry_after);
                    let too_long =
                        provider_wait.is_some_and(|ra| ra > routing.max_retry_after || Instant::now() + ra >= deadline);
                    // With nothing left to try, the provider's own answer (and its Retry-After)
                    // tells the client more than any error of the gateway's.
                    if !retry || final_try || (last_target && too_long) {
                        ctx.inflight_guard = guard;
                        if i > 0 {
                            if let Some(m) = &ctx.model {
                                state.metrics.fallbacks.with_label_values(&[m]).inc();
                            }
                        }
                        ctx.served_by = Some(target.clone());
                        let answer = Answer {
                            target,
                            adapter,
                            rendered: &rendered,
                            status,
                            prefetched,
                        };
                        return relay(state, session, ctx, &req, answer, up, &mut stop).await;
                    }
                    ctx.upstream_time += up.started.elapsed();
                    state
                        .metrics
                        .upstream_errors
                        .with_label_values(&[&target.provider.name, "status"])
                        .inc();
                    drop(up); // not pooled: its body is unread
                    match provider_wait {
                        // The provider asks for longer than we wait: go to the next target now.
                        Some(_) if too_long => continue 'targets,
                        Some(ra) => ra,
                        None => backoff(routing.backoff, routing.backoff_max, attempt),
                    }
                }
                Err(AttemptError::ClientGone) => {
                    if let (true, Some(r)) = (probe, runtime) {
                        r.breaker.abandon_probe(now_ms());
                    }
                    return client_gone(ctx, "while waiting for the provider");
                }
                Err(AttemptError::Shutdown) => {
                    if let (true, Some(r)) = (probe, runtime) {
                        r.breaker.abandon_probe(now_ms());
                    }
                    return shut_down(session, ctx).await;
                }
                Err(e) => {
                    if let Some(r) = runtime {
                        r.breaker.record(false, now_ms());
                    }
                    ctx.attempts
                        .push(Attempt::sent(target, AttemptOutcome::Failed(e.kind()), sent_at, span));
                    ctx.upstream_time += sent_at.elapsed();
                    state
                        .metrics
                        .upstream_errors
                        .with_label_values(&[&target.provider.name, e.kind()])
                        .inc();
                    tracing::debug!(provider = %target.provider.name, kind = e.kind(), "upstream attempt failed: {e:?}");
                    last_error = Some(match e {
                        AttemptError::Timeout(m) => ApiError::UpstreamTimeout(m),
                        AttemptError::Connect(cause) => ApiError::UpstreamConnect {
                            provider: target.provider.name.clone(),
                            url: target.provider.display_url.clone(),
                            cause,
                        },
                        AttemptError::Protocol(m) => ApiError::UpstreamProtocol(m),
                        AttemptError::Unavailable | AttemptError::ClientGone | AttemptError::Shutdown => {
                            ApiError::NoProvider {
                                model: req.model.clone(),
                                reason: "no target could be tried".into(),
                            }
                        }
                    });
                    backoff(routing.backoff, routing.backoff_max, attempt)
                }
            };
            if attempt == retries {
                continue 'targets;
            }
            // Back off before retrying this target, within the budget and while the client stays.
            if Instant::now() + wait >= deadline {
                budget_spent = true;
                break 'targets;
            }
            state.metrics.retries.with_label_values(&[&target.provider.name]).inc();
            let slept = Instant::now();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                why = interrupted(session, &mut stop) => return match why {
                    Interrupt::ClientGone => client_gone(ctx, "during a retry backoff"),
                    Interrupt::Shutdown => shut_down(session, ctx).await,
                },
            }
            ctx.backoff_time += slept.elapsed();
        }
    }
    let err = if budget_spent {
        ApiError::BudgetExhausted {
            budget_ms: budget.as_millis() as u64,
            attempts: ctx.attempts_summary(),
        }
    } else {
        last_error.unwrap_or_else(|| ApiError::NoProvider {
            model: req.model.clone(),
            reason: "no target could be tried".into(),
        })
    };
    respond::error(session, ctx, &err).await
}

/// Begins the client's response header with the gateway's headers that do not depend on the
/// provider's answer: the request id and the tenant's `x-ratelimit-*` (as refined). Done while the
/// provider works, so none of it is on the request's latency; `relay` finishes it.
fn begin_head(ctx: &RequestCtx) -> Result<Head> {
    // Room for everything `relay` adds without the map growing.
    let mut h = Head::begin(24);
    h.insert_str(names::REQUEST_ID, &ctx.request_id)?;
    respond::limit_headers(&mut h, ctx);
    Ok(h)
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

/// Reads a whole upstream body (bounded), abandoning it if the client leaves or the gateway must
/// stop.
async fn read_whole(
    session: &mut Session,
    up: &mut Upstream,
    stop: &mut Stop<'_>,
) -> std::result::Result<Bytes, ReadWhole> {
    let mut buf = BytesMut::new();
    loop {
        let chunk = tokio::select! {
            r = up.session.read_response_body() => r,
            why = interrupted(session, stop) => return Err(match why {
                Interrupt::ClientGone => ReadWhole::ClientGone,
                Interrupt::Shutdown => ReadWhole::Shutdown,
            }),
        };
        match chunk {
            Ok(Some(c)) if buf.len() + c.len() <= MAX_RESPONSE_BYTES => buf.extend_from_slice(&c),
            Ok(Some(_)) => {
                return Err(ReadWhole::Failed(ApiError::UpstreamProtocol(
                    "response too large".into(),
                )))
            }
            Ok(None) => return Ok(buf.freeze()),
            Err(e) => {
                return Err(ReadWhole::Failed(match AttemptError::from_pingora(&e) {
                    AttemptError::Timeout(m) => ApiError::UpstreamTimeout(m),
                    other => ApiError::UpstreamProtocol(other.kind().to_string()),
                }))
            }
        }
    }
}

enum ReadWhole {
    ClientGone,
    Shutdown,
    Failed(ApiError),
}

/// The attempt whose answer goes to the client.
struct Answer<'a> {
    target: &'a Target,
    adapter: &'a dyn Adapter,
    rendered: &'a Rendered,
    /// The provider's status.
    status: u16,
    /// Its body, when it was already read (to tell a context-length 400).
    prefetched: Option<Bytes>,
}

async fn relay(
    state: &AppState,
    session: &mut Session,
    ctx: &mut RequestCtx,
    req: &LlmRequest,
    answer: Answer<'_>,
    mut up: Upstream,
    stop: &mut Stop<'_>,
) -> Result<bool> {
    let Answer {
        target,
        adapter,
        rendered,
        status,
        prefetched,
    } = answer;
    let h2 = session.as_downstream().is_http2();
    let Some(up_header) = up.session.response_header() else {
        return respond::error(session, ctx, &ApiError::UpstreamProtocol("no response header".into())).await;
    };
    let ok = (200..300).contains(&status);
    let is_sse = ok
        && up_header
            .headers
            .get(http::header::CONTENT_TYPE)
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
        None => begin_head(ctx)?,
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
    up.session.set_read_timeout(Some(target.provider.timeouts.idle));

    if !is_sse {
        let raw = match prefetched {
            Some(b) => Ok(b),
            None => read_whole(session, &mut up, stop).await,
        };
        let raw = match raw {
            Ok(b) => b,
            Err(ReadWhole::ClientGone) => return client_gone(ctx, "while the provider answered"),
            Err(ReadWhole::Shutdown) => {
                ctx.upstream_time += up.started.elapsed();
                return shut_down(session, ctx).await;
            }
            Err(ReadWhole::Failed(e)) => {
                ctx.upstream_time += up.started.elapsed();
                return respond::error(session, ctx, &e).await;
            }
        };
        ctx.upstream_time += up.started.elapsed();
        let body = if rendered.passthrough {
            if ok {
                ctx.usage = adapter.usage_of(&raw);
            }
            raw
        } else if ok && req.endpoint == Endpoint::Embeddings {
            match adapter.parse_embeddings(req, &raw, rendered) {
                Ok(body) => body,
                Err(fault) => {
                    tracing::warn!(provider = %target.provider.name, "unreadable provider response: {}", fault.message());
                    return respond::error(session, ctx, &ApiError::UpstreamProtocol(fault.message())).await;
                }
            }
        } else if ok {
            match adapter.parse_chat(&raw, rendered) {
                Ok(resp) => {
                    ctx.usage = resp.usage;
                    client::response(req.client, &resp)
                }
                Err(fault) => {
                    tracing::warn!(provider = %target.provider.name, "unreadable provider response: {}", fault.message());
                    return respond::error(session, ctx, &ApiError::UpstreamProtocol(fault.message())).await;
                }
            }
        } else {
            client::error(req.client, status, &adapter.error_body(status, &raw))
        };
        header.insert_number(CONTENT_LENGTH, body.len() as u64);
        header.insert_number(names::OVERHEAD_US, ctx.overhead(Duration::ZERO).as_micros() as u64);
        served_attempt_ended(ctx, up.started);
        release(state, up, target).await;
        ctx.status = status;
        if !ok {
            ctx.error = Some("upstream_status");
        }
        if ok {
            let text = if ctx.usage.is_none() && rendered.passthrough {
                completion_text_of(&body)
            } else {
                None
            };
            fill_missing_usage(req, ctx, text.as_deref()).await;
        }
        session.write_response_header(header.finish(), false).await?;
        ctx.first_byte = Some(Instant::now());
        session.write_response_body(Some(body), true).await?;
        return Ok(true);
    }

    // Stream: relay as it arrives. Several events often arrive in one read; Pingora hands them
    // back one HTTP chunk at a time, so whatever is already buffered is drained and written
    // together (one write, one packet) instead of one write per event.
    let mut relay = Relay::new(adapter, rendered, req.client, req.include_usage);
    ctx.status = status;
    header.insert_number(
        names::OVERHEAD_US,
        ctx.overhead(up.started.elapsed()).as_micros() as u64,
    );
    session.write_response_header(header.finish(), false).await?;
    let mut stashed: Option<pingora::Result<Option<Bytes>>> = None;
    let outcome: std::result::Result<(), (&'static str, String)> = loop {
        let chunk = match stashed.take() {
            Some(r) => r,
            None => tokio::select! {
                r = up.session.read_response_body() => r,
                why = interrupted(session, stop) => match why {
                    Interrupt::ClientGone => {
                        ctx.upstream_time += up.started.elapsed();
                        served_attempt_ended(ctx, up.started);
                        ctx.usage = relay.usage();
                        fill_missing_usage(req, ctx, relay.completion_text()).await;
                        return client_gone(ctx, "mid-stream");
                    }
                    Interrupt::Shutdown => break Err((
                        "shutdown",
                        "The gateway is shutting down; the stream was ended before it was complete.".into(),
                    )),
                },
            },
        };
        let out = match chunk {
            Ok(Some(c)) => {
                let mut out = relay.push(c);
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
                            stashed = Some(end_or_error);
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
            Ok(None) => match relay.finish() {
                Ok(tail) => {
                    if !tail.is_empty() {
                        session.write_response_body(Some(tail), false).await?;
                    }
                    break if relay.completed() {
                        Ok(())
                    } else {
                        Err((
                            "stream_incomplete",
                            "The provider ended the stream before it was complete.".into(),
                        ))
                    };
                }
                Err(fault) => break Err(("stream_error", fault.message())),
            },
            Err(e) => {
                break Err(match e.etype() {
                    ErrorType::ReadTimedout => (
                        "stream_idle_timeout",
                        "The provider stopped sending the stream (idle timeout).".into(),
                    ),
                    _ => ("stream_cut", "The provider's stream was interrupted.".into()),
                })
            }
        };
        match out {
            Ok(bytes) if bytes.is_empty() => {}
            Ok(bytes) => {
                if ctx.first_byte.is_none() {
                    ctx.first_byte = Some(Instant::now());
                }
                if let Err(e) = session.write_response_body(Some(bytes), false).await {
                    ctx.error = Some("client_gone");
                    ctx.upstream_time += up.started.elapsed();
                    served_attempt_ended(ctx, up.started);
                    ctx.usage = relay.usage();
                    fill_missing_usage(req, ctx, relay.completion_text()).await;
                    return Err(e);
                }
            }
            Err(fault) => break Err(("stream_error", fault.message())),
        }
    };
    ctx.upstream_time += up.started.elapsed();
    served_attempt_ended(ctx, up.started);
    ctx.usage = relay.usage();
    fill_missing_usage(req, ctx, relay.completion_text()).await;
    match outcome {
        Ok(()) => {
            release(state, up, target).await;
            session.write_response_body(None, true).await?;
        }
        Err((kind, message)) => {
            ctx.error = Some(kind);
            if kind == "shutdown" {
                session.set_keepalive(None);
            } else {
                state
                    .metrics
                    .upstream_errors
                    .with_label_values(&[&target.provider.name, kind])
                    .inc();
            }
            tracing::debug!(provider = %target.provider.name, kind, "stream failed: {message}");
            session
                .write_response_body(Some(relay.error_event(kind, &message)), true)
                .await?;
        }
    }
    Ok(true)
}

/// Most bytes coalesced into one client write.
const COALESCE_LIMIT: usize = 64 * 1024;

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

/// The grace period of a shutdown ran out before the provider answered: 503, and the request is
/// recorded with the error `shutdown`.
async fn shut_down(session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
    session.set_keepalive(None);
    let answered = respond::error(session, ctx, &ApiError::ShuttingDown).await;
    ctx.error = Some("shutdown");
    answered
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
